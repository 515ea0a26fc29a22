// tformer_isa_gate LEVEL[+avxvnni] PROGRAM [ARGS...]: runs PROGRAM (a test executable built for
// LEVEL, and with AVX-VNNI where the level names it: avx2_fma+avxvnni only) when this CPU can,
// else prints "skipped LEVEL: this CPU lacks FEATURE" and exits 77 (ctest reads the message).
// tformer_isa_gate --list: prints each level and whether this CPU runs it.
// Built without -march flags, so that it runs on every x86-64 CPU.
#include <unistd.h>

#include <cstdio>
#include <string>
#include <string_view>

#include "tformer/core/isa.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif

namespace {

// AVX-VNNI (the VEX-encoded vpdpbusd of Alder Lake and Zen 5): CPUID leaf 7, subleaf 1, EAX bit 4.
// Asked directly: clang 14's __builtin_cpu_supports does not know it. The OS's saving of the
// 256-bit registers is the avx2_fma level's own check.
bool has_avx_vnni() {
#if defined(__x86_64__) || defined(_M_X64)
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid_count(7, 1, &a, &b, &c, &d) != 0 && (a >> 4 & 1u) != 0;
#else
  return false;
#endif
}

constexpr std::string_view avx_vnni_suffix = "+avxvnni";

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--list") {
    for (tformer::Isa isa : tformer::all_isas) {
      const auto missing = tformer::isa_missing_feature(isa);
      std::printf("  %-9s %s\n", std::string(tformer::isa_name(isa)).c_str(),
                  missing.empty() ? "runs here" : ("skipped: this CPU lacks " + missing).c_str());
    }
    std::string missing = tformer::isa_missing_feature(tformer::Isa::avx2_fma);
    if (missing.empty() && !has_avx_vnni()) missing = "avxvnni";
    std::printf("  %-9s %s (the int8 matmul tests)\n", "avx2_fma+avxvnni",
                missing.empty() ? "runs here" : ("skipped: this CPU lacks " + missing).c_str());
    return 0;
  }
  if (argc < 3) {
    std::fprintf(stderr, "usage: tformer_isa_gate LEVEL[+avxvnni] PROGRAM [ARGS...] | --list\n");
    return 2;
  }
  std::string_view level = argv[1];
  const bool vnni = level.ends_with(avx_vnni_suffix);
  if (vnni) level.remove_suffix(avx_vnni_suffix.size());
  const auto isa = tformer::parse_isa(level);
  if (!isa || (vnni && *isa != tformer::Isa::avx2_fma)) {  // AVX-VNNI only on top of AVX2 + FMA
    std::fprintf(stderr, "tformer_isa_gate: unknown level %s\n", argv[1]);
    return 2;
  }
  std::string missing = tformer::isa_missing_feature(*isa);
  if (missing.empty() && vnni && !has_avx_vnni()) missing = "avxvnni";
  if (!missing.empty()) {
    std::printf("skipped %s: this CPU lacks %s\n", argv[1], missing.c_str());
    return 77;
  }
  execv(argv[2], argv + 2);
  std::perror("tformer_isa_gate: execv");
  return 2;
}
