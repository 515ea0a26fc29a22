// RoPE kernels: rotate the first rotary_dim dimensions of every head vector by its position.
//
// Layouts (both rotate pair i by the angle pos · inv_freq[i], i in [0, d/2), d = rotary_dim):
//   Interleaved  pairs (x[2i], x[2i+1])    Meta's Llama, GPT-J, llama2.c, llama.cpp NORMAL mode
//   RotateHalf   pairs (x[i], x[i + d/2])  Hugging Face Llama/Qwen/Mistral/Gemma, GPT-NeoX
// Each pair (a, b) becomes (a·cos − b·sin, a·sin + b·cos), cos and sin carrying the table's
// attention factor f (1 unless YaRN or LongRoPE): y = f·R(θ)·x. Directions:
//   Forward    y = f·R(θ)·x
//   Transpose  y = f·R(−θ)·x   RoPE's backward (its vector-Jacobian product)
//   Inverse    y = R(−θ)·x / f the exact inverse of Forward (= Transpose when f = 1)
// Dimensions [rotary_dim, head_dim) pass through unchanged.
//
// Entry points check shapes, positions, the direction and (run-time form) the layout, and throw
// tformer::Error; rotate_token() is the kernel they call and checks nothing. NaN and infinity in
// the data stay in the pair they are in. Single-threaded; allocation-free.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <span>
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
enum class RopeDirection { Forward, Transpose, Inverse };

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

// `heads` head vectors of one token, head_dim apart: read from x, written to y (y may equal x).
struct HeadRun {
  const float* x;
  float* y;
  index heads;
};

#if TFORMER_HAS_SIMD
// Lane patterns that spread frequency j over lanes 2j and 2j+1, taken from the low or the high
// half of a register of frequencies (the interleaved layout's cos and sin).
struct SpreadLow {
  static constexpr unsigned get(unsigned lane, unsigned) { return lane / 2; }
};
struct SpreadHigh {
  static constexpr unsigned get(unsigned lane, unsigned lanes) { return lanes / 2 + lane / 2; }
};
#endif

// Rotates the heads of `runs`, all of one token at one position, by the angles whose cos and
// sin rows are `c` and `s` (half = rotary_dim / 2 values each): head vector v has its values
// [0, 2·half) rotated, the rest untouched. Negate rotates by the negated angles. Memory is
// walked head by head (Interleaved: 4 heads at a time), each head's values in order, so large
// prefills stream from DRAM.
template <RopeLayout Layout, bool Negate>
inline void rotate_token(std::span<const HeadRun> runs, index head_dim, const float* c,
                         const float* s, index half) noexcept {
  index done = 0;  // pairs rotated in every head by the SIMD part
#if TFORMER_HAS_SIMD
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  if constexpr (Layout == RopeLayout::RotateHalf) {
    // Pairs (x[i], x[i + half]): y_lo = lo·c − hi·s, y_hi = hi·c + lo·s. No shuffles.
    done = half / W * W;
    for (const HeadRun& run : runs) {
      for (index h = 0; h < run.heads; ++h) {
        const float* x = run.x + h * head_dim;
        float* y = run.y + h * head_dim;
        for (index i = 0; i < done; i += W) {
          const B cv = B::load_unaligned(c + i);
          const B sv = Negate ? -B::load_unaligned(s + i) : B::load_unaligned(s + i);
          const B lo = B::load_unaligned(x + i);
          const B hi = B::load_unaligned(x + half + i);
          xsimd_compat::fnma(hi, sv, lo * cv).store_unaligned(y + i);
          xsimd_compat::fma(lo, sv, hi * cv).store_unaligned(y + half + i);
        }
      }
    }
  } else {
    // Pairs (x[2i], x[2i+1]): y = x·[c0 c0 c1 c1 …] + swap_pairs(x)·[−s0 s0 −s1 s1 …].
    // W pairs fill two registers. Their spread cos and signed sin are built in registers once
    // per group of 4 heads, walked together: 4 streams are what the hardware prefetcher follows
    // well (8 halve DRAM throughput at head_dim 128), and the spread's 4 cross-lane shuffles
    // are shared by 8 registers of data.
    constexpr index group = 4;
    constexpr auto spread_lo = xsimd_compat::index_constant<B, SpreadLow>();
    constexpr auto spread_hi = xsimd_compat::index_constant<B, SpreadHigh>();
    alignas(64) float signs[W];
    for (index lane = 0; lane < W; ++lane) signs[lane] = (lane % 2 == 0) != Negate ? -1.f : 1.f;
    const B sign = B::load_aligned(signs);
    done = half / W * W;
    for (const HeadRun& run : runs) {
      for (index h0 = 0; h0 < run.heads; h0 += group) {
        const index h1 = std::min(run.heads, h0 + group);
        for (index i = 0; i < done; i += W) {
          const B cv = B::load_unaligned(c + i);
          const B sv = B::load_unaligned(s + i);
          const B ca = xsimd::swizzle(cv, spread_lo), cb = xsimd::swizzle(cv, spread_hi);
          const B sa = xsimd::swizzle(sv, spread_lo) * sign;
          const B sb = xsimd::swizzle(sv, spread_hi) * sign;
          for (index h = h0; h < h1; ++h) {
            const float* x = run.x + h * head_dim + 2 * i;
            float* y = run.y + h * head_dim + 2 * i;
            const B a = B::load_unaligned(x);
            const B b = B::load_unaligned(x + W);
            xsimd_compat::fma(a, ca, xsimd_compat::swap_adjacent_pairs(a) * sa).store_unaligned(y);
            xsimd_compat::fma(b, cb, xsimd_compat::swap_adjacent_pairs(b) * sb).store_unaligned(y + W);
          }
        }
      }
    }
  }
#endif
  // The remaining pairs (all of them in the scalar build), head by head so that the compiler
  // can vectorise the inner loop.
  for (const HeadRun& run : runs) {
    for (index h = 0; h < run.heads; ++h) {
      const float* x = run.x + h * head_dim;
      float* y = run.y + h * head_dim;
      for (index i = done; i < half; ++i) {
        const index ia = Layout == RopeLayout::Interleaved ? 2 * i : i;
        const index ib = Layout == RopeLayout::Interleaved ? 2 * i + 1 : i + half;
        const float a = x[ia], b = x[ib];
        const float cs = c[i], sn = Negate ? -s[i] : s[i];
        y[ia] = a * cs - b * sn;
        y[ib] = a * sn + b * cs;
      }
    }
  }
}

// Rotates every head of every token of each `in[v]` into `out[v]` (which may be `in[v]`); all
// views have the same tokens and head_dim; the rotated values are then multiplied by `scale`
// unless it is 1. Preconditions: checked by the entry points below.
// row_of(t) gives token t's cos row (its sin row follows after half values).
template <RopeLayout Layout, bool Negate, std::size_t Views, class RowOf>
void rotate_heads(const RowOf& row_of, index rotary_dim,
                  const std::array<HeadsView<const float>, Views>& in,
                  const std::array<HeadsView<float>, Views>& out, float scale) noexcept {
  const index half = rotary_dim / 2;
  const index head_dim = in[0].head_dim();
  std::array<HeadRun, Views> runs;
  for (index t = 0; t < in[0].tokens(); ++t) {
    for (std::size_t v = 0; v < Views; ++v)
      runs[v] = {in[v].row(t, 0), out[v].row(t, 0), in[v].heads()};
    const float* c = row_of(t);
    rotate_token<Layout, Negate>(runs, head_dim, c, c + half, half);
    for (std::size_t v = 0; v < Views; ++v) {
      for (index h = 0; h < in[v].heads(); ++h) {
        float* y = out[v].row(t, h);
        if (scale != 1.0f)
          for (index i = 0; i < rotary_dim; ++i) y[i] *= scale;
        if (in[v].data() != out[v].data())  // out of place: copy what does not rotate
          std::copy(in[v].row(t, h) + rotary_dim, in[v].row(t, h) + head_dim, y + rotary_dim);
      }
    }
  }
}

inline void check_direction(const char* where, RopeDirection direction) {
  const int d = static_cast<int>(direction);
  check(d >= 0 && d <= static_cast<int>(RopeDirection::Inverse), where, "direction",
        "Forward, Transpose or Inverse (0, 1 or 2)", d);
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

template <RopeLayout Layout, std::size_t Views>
void dispatch_rope(const RopeTable& table, const std::array<HeadsView<const float>, Views>& in,
                   const std::array<HeadsView<float>, Views>& out, const Positions& positions,
                   RopeDirection direction) {
  const double f = table.attention_factor();
  const auto row_of = [&](index t) { return table.cos(positions(t)); };
  const index d = table.rotary_dim();
  switch (direction) {
    case RopeDirection::Forward:
      return rotate_heads<Layout, false>(row_of, d, in, out, 1.0f);
    case RopeDirection::Transpose:
      return rotate_heads<Layout, true>(row_of, d, in, out, 1.0f);
    case RopeDirection::Inverse:
      return rotate_heads<Layout, true>(row_of, d, in, out, static_cast<float>(1.0 / (f * f)));
  }
  check_direction("apply_rope", direction);  // unreachable: the entry points checked it
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
  check_disjoint(where, "out", out, "in (or use apply_rope_inplace)", in);
  rope_kernels::check_direction(where, direction);
  positions.validate(where, in.tokens(), table.max_positions());
  rope_kernels::dispatch_rope<Layout, 1>(table, {in}, {out}, positions, direction);
}

// x = RoPE(x) in place.
template <RopeLayout Layout>
void apply_rope_inplace(const RopeTable& table, HeadsView<float> x, const Positions& positions,
                        RopeDirection direction = RopeDirection::Forward) {
  constexpr const char* where = "apply_rope_inplace";
  rope_kernels::check_rope_view(where, "x", table, x);
  rope_kernels::check_direction(where, direction);
  positions.validate(where, x.tokens(), table.max_positions());
  rope_kernels::dispatch_rope<Layout, 1>(table, {x}, {x}, positions, direction);
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
  check_disjoint(where, "k", k, "q", q);
  rope_kernels::check_direction(where, direction);
  positions.validate(where, q.tokens(), table.max_positions());
  rope_kernels::dispatch_rope<Layout, 2>(table, {q, k}, {q, k}, positions, direction);
}

// Queries and keys rotated in place (Forward) by explicit rows, one per token: rows
// [T, rotary_dim] laid out as a RopeTable row (cos, then sin), e.g. from
// RopeTable::compute_rows for positions past the table.
template <RopeLayout Layout>
void apply_rope_rows_inplace(MatrixView<const float> rows, HeadsView<float> q, HeadsView<float> k) {
  constexpr const char* where = "apply_rope_rows_inplace";
  check_view(where, "rows", rows);
  check_view(where, "q", q);
  check_view(where, "k", k);
  check(rows.cols() > 0 && rows.cols() % 2 == 0, where, "rows.cols (rotary_dim)", "even, > 0",
        rows.cols());
  check_eq(where, "rows.rows (= q.tokens)", q.tokens(), rows.rows());
  check_eq(where, "k.tokens (= q.tokens)", q.tokens(), k.tokens());
  check_eq(where, "k.head_dim (= q.head_dim)", q.head_dim(), k.head_dim());
  if (q.head_dim() % 2 != 0 || q.head_dim() < rows.cols()) [[unlikely]]
    detail::fail_check(where, "q.head_dim", "an even number >= rows.cols", q.head_dim());
  check_disjoint(where, "k", k, "q", q);
  rope_kernels::rotate_heads<Layout, false, 2>([&](index t) { return rows.row(t); }, rows.cols(),
                                              {q, k}, {q, k}, 1.0f);
}

// Run-time layout choice, for engines that read it from a checkpoint's config.
inline void apply_rope_inplace(RopeLayout layout, const RopeTable& table, HeadsView<float> x,
                               const Positions& positions,
                               RopeDirection direction = RopeDirection::Forward) {
  const int l = static_cast<int>(layout);
  check(l == 0 || l == 1, "apply_rope_inplace", "layout", "Interleaved or RotateHalf (0 or 1)", l);
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
