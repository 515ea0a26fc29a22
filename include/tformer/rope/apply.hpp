// RoPE kernels: rotate the first rotary_dim dimensions of every head vector by its position.
//
// Layouts (both rotate pair i by the angle pos · inv_freq[i], i in [0, d/2), d = rotary_dim):
//   Interleaved  pairs (x[2i], x[2i+1])    Meta's Llama, GPT-J, llama2.c, llama.cpp NORMAL mode
//   RotateHalf   pairs (x[i], x[i + d/2])  Hugging Face Llama/Qwen/Mistral/Gemma, GPT-NeoX
// Each pair (a, b) becomes (a·cos − b·sin, a·sin + b·cos); the inverse rotation negates sin and
// is also RoPE's backward. Dimensions [rotary_dim, head_dim) pass through unchanged.
//
// Entry points check shapes and positions and throw tformer::Error; rotate_token() is the
// kernel they call and checks nothing. Single-threaded; allocation-free.
#pragma once

#include <algorithm>
#include <cstddef>
#include <sstream>
#include <string>

#include "tformer/core/error.hpp"
#include "tformer/core/positions.hpp"
#include "tformer/core/simd.hpp"
#include "tformer/core/views.hpp"
#include "tformer/rope/table.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

enum class RopeLayout { Interleaved, RotateHalf };
enum class RopeDirection { Forward, Inverse };

inline const char* to_string(RopeLayout layout) noexcept {
  return layout == RopeLayout::Interleaved ? "interleaved" : "rotate_half";
}

// GCC 12 warns (-Warray-bounds) that a SIMD load could leave a small stack array when it
// inlines a kernel whose vector loop can never run for that array (e.g. head_dim 4 on AVX2).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
#endif

namespace rope_kernels {

#if TFORMER_HAS_SIMD
// Lane patterns that spread frequency j over lanes 2j and 2j+1, taken from the low or the high
// half of a batch of frequencies (the interleaved layout's cos and sin).
struct DuplicateLow {
  static constexpr unsigned get(unsigned lane, unsigned) { return lane / 2; }
};
struct DuplicateHigh {
  static constexpr unsigned get(unsigned lane, unsigned lanes) { return lanes / 2 + lane / 2; }
};
#endif

// Rotates `heads` head vectors of one token, all at one position: head h reads
// x[h·head_dim + j] and writes y[h·head_dim + j] for j in [0, 2·half). `c` and `s` are the
// position's cos and sin rows (half = rotary_dim / 2 values each). y may equal x; no other
// overlap. Inverse rotates by the negated angles.
//
// Frequencies are the outer loop: a step loads (and for Interleaved, spreads) the cos/sin of
// one register's worth of pairs once, then applies it to every head.
template <RopeLayout Layout, bool Inverse>
inline void rotate_token(const float* x, float* y, index heads, index head_dim, const float* c,
                         const float* s, index half) noexcept {
  index i = 0;  // first pair not yet rotated
#if TFORMER_HAS_SIMD
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  if constexpr (Layout == RopeLayout::RotateHalf) {
    // Pairs (x[i], x[i + half]): y_lo = lo·c − hi·s, y_hi = hi·c + lo·s. No shuffles.
    for (; i + W <= half; i += W) {
      const B cv = B::load_unaligned(c + i);
      const B sv = Inverse ? -B::load_unaligned(s + i) : B::load_unaligned(s + i);
      for (index h = 0; h < heads; ++h) {
        const float* xh = x + h * head_dim;
        float* yh = y + h * head_dim;
        const B lo = B::load_unaligned(xh + i);
        const B hi = B::load_unaligned(xh + half + i);
        xsimd::fnma(hi, sv, lo * cv).store_unaligned(yh + i);
        xsimd::fma(lo, sv, hi * cv).store_unaligned(yh + half + i);
      }
    }
  } else {
    // Pairs (x[2i], x[2i+1]): y = x·[c0 c0 c1 c1 …] + swap_pairs(x)·[−s0 s0 −s1 s1 …].
    // W pairs fill two registers (a, b); their spread cos/sin are built once for all heads.
    constexpr auto spread_lo = xsimd_compat::index_constant<B, DuplicateLow>();
    constexpr auto spread_hi = xsimd_compat::index_constant<B, DuplicateHigh>();
    alignas(64) float signs[W];
    for (index lane = 0; lane < W; ++lane) signs[lane] = (lane % 2 == 0) != Inverse ? -1.f : 1.f;
    const B sign = B::load_aligned(signs);
    for (; i + W <= half; i += W) {
      const B cv = B::load_unaligned(c + i);
      const B sv = B::load_unaligned(s + i);
      const B ca = xsimd::swizzle(cv, spread_lo), cb = xsimd::swizzle(cv, spread_hi);
      const B sa = xsimd::swizzle(sv, spread_lo) * sign;
      const B sb = xsimd::swizzle(sv, spread_hi) * sign;
      for (index h = 0; h < heads; ++h) {
        const float* xh = x + h * head_dim + 2 * i;
        float* yh = y + h * head_dim + 2 * i;
        const B a = B::load_unaligned(xh);
        const B b = B::load_unaligned(xh + W);
        xsimd::fma(a, ca, xsimd_compat::swap_adjacent_pairs(a) * sa).store_unaligned(yh);
        xsimd::fma(b, cb, xsimd_compat::swap_adjacent_pairs(b) * sb).store_unaligned(yh + W);
      }
    }
  }
#endif
  // Remaining pairs (all of them in the scalar build), head by head so that the compiler can
  // vectorise the inner loop.
  for (index h = 0; h < heads; ++h) {
    const float* xh = x + h * head_dim;
    float* yh = y + h * head_dim;
    for (index j = i; j < half; ++j) {
      const index ia = Layout == RopeLayout::Interleaved ? 2 * j : j;
      const index ib = Layout == RopeLayout::Interleaved ? 2 * j + 1 : j + half;
      const float a = xh[ia], b = xh[ib];
      const float cs = c[j], sn = Inverse ? -s[j] : s[j];
      yh[ia] = a * cs - b * sn;
      yh[ib] = a * sn + b * cs;
    }
  }
}

// Rotates every head of every token of `in` into `out` (which may be `in`).
// Preconditions: checked by the entry points below.
template <RopeLayout Layout, bool Inverse>
void rotate_heads(const RopeTable& table, HeadsView<const float> in, HeadsView<float> out,
                  const Positions& positions) noexcept {
  const index half = table.half();
  const index rotary_dim = table.rotary_dim();
  const index head_dim = in.head_dim();
  const bool copy_tail = in.data() != out.data() && rotary_dim < head_dim;
  for (index t = 0; t < in.tokens(); ++t) {
    const index p = positions(t);
    rotate_token<Layout, Inverse>(in.row(t, 0), out.row(t, 0), in.heads(), head_dim, table.cos(p),
                                  table.sin(p), half);
    if (copy_tail)
      for (index h = 0; h < in.heads(); ++h)
        std::copy(in.row(t, h) + rotary_dim, in.row(t, h) + head_dim, out.row(t, h) + rotary_dim);
  }
}

template <class T>
void check_rope_view(const char* where, const char* name, const RopeTable& table,
                     const HeadsView<T>& v) {
  check_view(where, name, v);
  if (v.head_dim() % 2 == 0 && v.head_dim() >= table.rotary_dim()) [[likely]]
    return;
  std::ostringstream expected;
  expected << "an even number >= rotary_dim (" << table.rotary_dim() << ")";
  detail::fail_check(where, std::string(name) + ".head_dim", expected.str(), v.head_dim());
}

template <RopeLayout Layout>
void dispatch_rope(const RopeTable& table, HeadsView<const float> in, HeadsView<float> out,
                   const Positions& positions, RopeDirection direction) {
  if (direction == RopeDirection::Forward)
    rope_kernels::rotate_heads<Layout, false>(table, in, out, positions);
  else
    rope_kernels::rotate_heads<Layout, true>(table, in, out, positions);
}

}  // namespace rope_kernels

// out = RoPE(in) for `[tokens, heads, head_dim]` data at `positions`. `out` must have in's shape
// and must not overlap it (use apply_rope_inplace for that).
template <RopeLayout Layout>
void apply_rope(const RopeTable& table, HeadsView<const float> in, HeadsView<float> out,
                const Positions& positions, RopeDirection direction = RopeDirection::Forward) {
  constexpr const char* where = "apply_rope";
  rope_kernels::check_rope_view(where, "in", table, in);
  check_view(where, "out", out);
  check_eq(where, "out.tokens", in.tokens(), out.tokens());
  check_eq(where, "out.heads", in.heads(), out.heads());
  check_eq(where, "out.head_dim", in.head_dim(), out.head_dim());
  positions.validate(where, in.tokens(), table.max_positions());
  rope_kernels::dispatch_rope<Layout>(table, in, out, positions, direction);
}

// x = RoPE(x) in place.
template <RopeLayout Layout>
void apply_rope_inplace(const RopeTable& table, HeadsView<float> x, const Positions& positions,
                        RopeDirection direction = RopeDirection::Forward) {
  constexpr const char* where = "apply_rope_inplace";
  rope_kernels::check_rope_view(where, "x", table, x);
  positions.validate(where, x.tokens(), table.max_positions());
  rope_kernels::dispatch_rope<Layout>(table, x, x, positions, direction);
}

// Queries `[T, Hq, D]` and keys `[T, Hkv, D]` of the same tokens, rotated in place: the form an
// attention layer calls after its Q and K projections.
template <RopeLayout Layout>
void apply_rope_inplace(const RopeTable& table, HeadsView<float> q, HeadsView<float> k,
                        const Positions& positions,
                        RopeDirection direction = RopeDirection::Forward) {
  constexpr const char* where = "apply_rope_inplace";
  rope_kernels::check_rope_view(where, "q", table, q);
  rope_kernels::check_rope_view(where, "k", table, k);
  check_eq(where, "k.tokens (= q.tokens)", q.tokens(), k.tokens());
  check_eq(where, "k.head_dim (= q.head_dim)", q.head_dim(), k.head_dim());
  positions.validate(where, q.tokens(), table.max_positions());
  rope_kernels::dispatch_rope<Layout>(table, q, q, positions, direction);
  rope_kernels::dispatch_rope<Layout>(table, k, k, positions, direction);
}

// Run-time layout choice, for engines that read it from a checkpoint's config.
inline void apply_rope_inplace(RopeLayout layout, const RopeTable& table, HeadsView<float> x,
                               const Positions& positions,
                               RopeDirection direction = RopeDirection::Forward) {
  if (layout == RopeLayout::Interleaved)
    apply_rope_inplace<RopeLayout::Interleaved>(table, x, positions, direction);
  else
    apply_rope_inplace<RopeLayout::RotateHalf>(table, x, positions, direction);
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
