// The engine's per-ISA code: compiled once per instruction-set level by tformer_add_isa_variants
// (examples/CMakeLists.txt), each copy in namespace engine::<level> with tformer's kernels for
// that level. Here: one decode step of a small seeded Llama-shaped decoder.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tformer/tformer.hpp"

namespace engine::TFORMER_ISA_NS {

// Greedy-decodes `steps` tokens after `prompt` with seeded random weights (the same in every
// copy); returns the tokens and, in `kernels`, the namespace whose kernels ran.
std::vector<std::int32_t> generate(std::span<const std::int32_t> prompt, int steps,
                                   std::string& kernels) {
  using Config = tformer::configs::TrafficVLM;
  const tformer::OwnedWeights<Config> weights({}, /*seed=*/7);
  tformer::Decoder<Config> decoder(weights.view());
  std::vector<float> vision(std::size_t(196) * 768, 0.01f);
  decoder.set_encoder(0, {vision.data(), 196, 768});
  std::vector<std::int32_t> out(static_cast<std::size_t>(steps));
  tformer::Rng rng(1);
  decoder.generate(0, prompt, steps, tformer::Sampler::greedy(), rng, out);
  kernels = tformer::simd::arch_name;
  return out;
}

}  // namespace engine::TFORMER_ISA_NS
