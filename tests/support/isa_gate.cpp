// tformer_isa_gate LEVEL PROGRAM [ARGS...]: runs PROGRAM (a test executable built for LEVEL)
// when this CPU can, else prints "skipped LEVEL: this CPU lacks FEATURE" and exits 77 (ctest
// reads the message: skipped).
// tformer_isa_gate --list: prints each level and whether this CPU runs it.
// Built without -march flags, so that it runs on every x86-64 CPU.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "tformer/core/isa.hpp"

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--list") {
    for (tformer::Isa isa : tformer::all_isas) {
      const auto missing = tformer::isa_missing_feature(isa);
      std::printf("  %-9s %s\n", std::string(tformer::isa_name(isa)).c_str(),
                  missing.empty() ? "runs here" : ("skipped: this CPU lacks " + missing).c_str());
    }
    return 0;
  }
  if (argc < 3) {
    std::fprintf(stderr, "usage: tformer_isa_gate LEVEL PROGRAM [ARGS...] | --list\n");
    return 2;
  }
  const auto isa = tformer::parse_isa(argv[1]);
  if (!isa) {
    std::fprintf(stderr, "tformer_isa_gate: unknown level %s\n", argv[1]);
    return 2;
  }
  if (const auto missing = tformer::isa_missing_feature(*isa); !missing.empty()) {
    std::printf("skipped %s: this CPU lacks %s\n", argv[1], missing.c_str());
    return 77;
  }
  execv(argv[2], argv + 2);
  std::perror("tformer_isa_gate: execv");
  return 2;
}
