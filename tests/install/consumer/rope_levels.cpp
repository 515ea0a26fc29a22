// Compiled once per level by tformer_add_isa_variants: the worked RoPE example at this level.
#include <tformer/tformer.hpp>

#include <vector>

namespace consumer::TFORMER_ISA_NS {
float rotated_q0() {
  tformer::RopeTable table(tformer::RopeConfig{.rotary_dim = 4, .max_positions = 2});
  std::vector<float> q = {3.5f, 2.1f, -1.2f, 0.8f};
  tformer::apply_rope_inplace<tformer::RopeLayout::RotateHalf>(
      table, tformer::HeadsView<float>(q.data(), 1, 1, 4), tformer::Positions::offset(1));
  return q[0];
}
}  // namespace consumer::TFORMER_ISA_NS
