#include <tformer/tformer.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#if defined(TFORMER_ISA_VARIANT_sse2)
#include <tformer/core/isa.hpp>
TFORMER_DECLARE_ISA_VARIANTS(consumer, rotated_q0, float())
#endif

// The worked example of shared/reference: rotate-half, head_dim 4, position 1.
int main() {
  tformer::RopeTable table(tformer::RopeConfig{.rotary_dim = 4, .max_positions = 2});
  std::vector<float> q = {3.5f, 2.1f, -1.2f, 0.8f};
  tformer::apply_rope_inplace<tformer::RopeLayout::RotateHalf>(
      table, tformer::HeadsView<float>(q.data(), 1, 1, 4), tformer::Positions::offset(1));
  const float expected[] = {2.90082f, 2.09190f, 2.29679f, 0.82096f};
  for (int i = 0; i < 4; ++i)
    if (std::abs(q[i] - expected[i]) > 1e-5f) {
      std::printf("consumer: q[%d] = %f, expected %f\n", i, q[i], expected[i]);
      return 1;
    }
#if defined(TFORMER_ISA_VARIANT_sse2)
  const auto chosen = tformer::select_isa_variant(TFORMER_ISA_VARIANTS(consumer, rotated_q0));
  if (std::abs(chosen.fn() - expected[0]) > 1e-5f) {
    std::printf("consumer: the %s variant is wrong\n", std::string(tformer::isa_name(chosen.isa)).c_str());
    return 1;
  }
  std::printf("consumer: runtime dispatch chose %s\n", std::string(tformer::isa_name(chosen.isa)).c_str());
#endif
  std::printf("consumer: installed tformer works (%s kernels)\n", tformer::simd::arch_name);
  return 0;
}
