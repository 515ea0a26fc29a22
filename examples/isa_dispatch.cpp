// One binary for every x86-64 CPU: the engine's decoder code is compiled once per instruction-set
// level (tformer_add_isa_variants in examples/CMakeLists.txt) and the best level this CPU runs is
// chosen at startup; TFORMER_ISA=<level> forces one (avx512, avx2_fma, sse4_2, sse2, scalar).
// This file itself is built for the baseline, so it runs anywhere.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "tformer/core/isa.hpp"

TFORMER_DECLARE_ISA_VARIANTS(engine, generate,
                             std::vector<float>(std::span<const std::int32_t>, int, std::string&))

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
  const auto logits = chosen.fn(prompt, 6, kernels);
  float top = 0.0f;
  for (float l : logits) top = std::max(top, std::abs(l));
  std::printf(
      "chosen: %s (kernels: tformer::%s), logits after the prompt and after 6 greedy "
      "tokens, max |logit| %.3f\n",
      std::string(tformer::isa_name(chosen.isa)).c_str(), kernels.c_str(), top);
  // Every other level the CPU runs must give the same logits within float rounding: the
  // decoder's tolerance against its double reference is 1e-5·(1 + max|logit|); twice that.
  for (const auto& v : compiled) {
    if (!tformer::isa_supported(v.isa) || v.isa == chosen.isa) continue;
    std::string other;
    const auto theirs = v.fn(prompt, 6, other);
    float diff = 0.0f;
    for (std::size_t i = 0; i < logits.size(); ++i)
      diff = std::max(diff, std::abs(theirs[i] - logits[i]));
    const bool same = diff <= 2e-5f * (1.0f + top);
    std::printf("  %-9s max |Δlogit| %.2e: %s\n", std::string(tformer::isa_name(v.isa)).c_str(),
                diff, same ? "agrees" : "DIFFERENT");
    if (!same) return 1;
  }
  return 0;
} catch (const tformer::Error& e) {
  std::fprintf(stderr, "isa_dispatch: %s\n", e.what());
  return 2;
}
