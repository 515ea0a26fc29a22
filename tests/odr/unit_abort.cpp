// Built with TFORMER_NO_EXCEPTIONS (exceptions still on in the compiler), linked before
// odr_test.cpp: the same templates instantiated here must not replace the throwing ones there.
#include <string>
#include <vector>

#include "tformer/core/simd.hpp"
#include "tformer/rope/apply.hpp"

std::string abort_unit_namespace() {
  tformer::RopeTable table(tformer::RopeConfig{.rotary_dim = 8, .max_positions = 16});
  std::vector<float> x(2 * 8, 1.0f);
  tformer::apply_rope_inplace<tformer::RopeLayout::RotateHalf>(
      table, tformer::HeadsView<float>(x.data(), 2, 1, 8), tformer::Positions::offset(0));
  return tformer::simd::arch_name;
}
