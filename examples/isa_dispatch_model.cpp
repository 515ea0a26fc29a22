// The engine's per-ISA code: compiled once per instruction-set level by tformer_add_isa_variants
// (examples/CMakeLists.txt), each copy in namespace engine::<level> with tformer's kernels for
// that level. Here: one decode step of a small seeded Llama-shaped decoder.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tformer/tformer.hpp"

namespace engine::TFORMER_ISA_NS {

// The logits of the token after `prompt`, then (appended) those after `steps` greedy tokens,
// with seeded random weights (the same in every copy); `kernels`: the namespace that ran.
std::vector<float> generate(std::span<const std::int32_t> prompt, int steps, std::string& kernels) {
  using Config = tformer::configs::TrafficVLM;
  const tformer::OwnedWeights<Config> weights({}, /*seed=*/7);
  tformer::Decoder<Config> decoder(weights.view());
  std::vector<float> vision(std::size_t(196) * 768, 0.01f);
  decoder.set_encoder(0, {vision.data(), 196, 768});
  const auto vocab = decoder.dims().vocab;
  std::vector<float> logits(2 * static_cast<std::size_t>(vocab));
  decoder.forward(0, prompt, {logits.data(), 1, vocab});
  std::vector<std::int32_t> out(static_cast<std::size_t>(steps));
  tformer::Rng rng(1);
  decoder.reset(0);
  decoder.set_encoder(0, {vision.data(), 196, 768});
  decoder.generate(0, prompt, steps, tformer::Sampler::greedy(), rng, out);
  decoder.forward(0, std::span<const std::int32_t>(out).last(1), {logits.data() + vocab, 1, vocab});
  kernels = tformer::simd::arch_name;
  return logits;
}

}  // namespace engine::TFORMER_ISA_NS
