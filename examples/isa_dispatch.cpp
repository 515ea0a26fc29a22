// One binary for every x86-64 CPU: the engine's decoder code is compiled once per instruction-set
// level (tformer_add_isa_variants in examples/CMakeLists.txt) and the best level this CPU runs is
// chosen at startup; TFORMER_ISA=<level> forces one (avx512, avx2_fma, sse4_2, sse2, scalar).
// This file itself is built for the baseline, so it runs anywhere.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "tformer/core/isa.hpp"

TFORMER_DECLARE_ISA_VARIANTS(engine, generate,
                             std::vector<std::int32_t>(std::span<const std::int32_t>, int,
                                                       std::string&))

int main() try {
  const auto compiled = TFORMER_ISA_VARIANTS(engine, generate);
  std::printf("compiled levels:");
  for (const auto& v : compiled) {
    const auto missing = tformer::isa_missing_feature(v.isa);
    std::printf(" %s%s", std::string(tformer::isa_name(v.isa)).c_str(),
                missing.empty() ? "" : (" (this CPU lacks " + missing + ")").c_str());
  }
  std::printf("\n");
  const auto chosen = tformer::select_isa_variant(compiled);  // reads TFORMER_ISA
  const std::vector<std::int32_t> prompt = {1, 5, 9, 2};
  std::string kernels;
  const auto tokens = chosen.fn(prompt, 6, kernels);
  std::printf("chosen: %s (kernels: tformer::%s)\ntokens:",
              std::string(tformer::isa_name(chosen.isa)).c_str(), kernels.c_str());
  for (auto t : tokens) std::printf(" %d", t);
  std::printf("\n");
  // Every other level the CPU runs must generate the same greedy tokens.
  for (const auto& v : compiled) {
    if (!tformer::isa_supported(v.isa) || v.isa == chosen.isa) continue;
    std::string other;
    const bool same = v.fn(prompt, 6, other) == tokens;
    std::printf("  %-9s %s\n", std::string(tformer::isa_name(v.isa)).c_str(),
                same ? "same tokens" : "DIFFERENT tokens");
    if (!same) return 1;
  }
  return 0;
} catch (const tformer::Error& e) {
  std::fprintf(stderr, "isa_dispatch: %s\n", e.what());
  return 2;
}
