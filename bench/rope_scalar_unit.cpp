// tformer's RoPE built as the scalar kernels, linked into bench_rope beside the SIMD ones; the
// inline namespace (tformer::scalar) keeps the two apart, so one run measures both.
#ifndef TFORMER_SIMD_SCALAR
#define TFORMER_SIMD_SCALAR
#endif
#include "rope_scalar_unit.hpp"

#include <memory>

#include "tformer/rope/apply.hpp"

ScalarRope make_scalar_rope(bool interleaved, int tokens, int q_heads, int kv_heads, int head_dim,
                            int max_positions) {
  auto table = std::make_shared<tformer::RopeTable>(
      tformer::RopeConfig{.rotary_dim = head_dim, .max_positions = max_positions});
  return [=](float* q, float* k, int offset) {
    tformer::HeadsView<float> qv(q, tokens, q_heads, head_dim), kv(k, tokens, kv_heads, head_dim);
    const auto at = tformer::Positions::offset(offset);
    if (interleaved)
      tformer::apply_rope_inplace<tformer::RopeLayout::Interleaved>(*table, qv, kv, at);
    else
      tformer::apply_rope_inplace<tformer::RopeLayout::RotateHalf>(*table, qv, kv, at);
  };
}
