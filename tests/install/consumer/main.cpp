#include <tformer/tformer.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

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
  std::printf("consumer: installed tformer works (%s kernels)\n", tformer::simd::arch_name);
  return 0;
}
