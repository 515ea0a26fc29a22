// RMSNorm: y = x / sqrt(mean(x²) + eps) · w over each row, as Hugging Face computes it in
// float32 (LlamaRMSNorm), or · (1 + w) (Gemma's RMSNorm, NormScale::OnePlusWeight).
//
// Precision: the sum of squares is accumulated in float over partial sums (8 SIMD registers,
// then 4 scalar sums for the tail), combined pairwise; mean, eps and the reciprocal square root
// are taken in double and rounded once. The relative error of an output is at most
// (max_terms_per_partial_sum(n) + 12)·u, u = 2^−24: the longest partial sum, the pairwise
// combination (≤ 9 levels), the rsqrt rounding and the two products (the tests use this bound).
//
// Range: a float sum of squares overflows for rows past ~1e19 (float32 PyTorch then returns 0),
// and underflows for rows below ~1e-19. Such a row, found by one comparison of its sum, is
// normalised again in double (sum, scale and products; one rounding per output): rare and off
// the hot loop. The bound above then holds for every finite row of any magnitude (eps = 0
// included; a zero row with eps = 0 is 0/0, NaN). Non-finite data follow float32 PyTorch: a
// NaN makes its row NaN; an inf makes mean(x²) inf, so that element gives NaN and the finite
// ones 0. eps must be finite and >= 0.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <span>
#include <type_traits>

#include "tformer/core/error.hpp"
#include "tformer/core/prefetch.hpp"
#include "tformer/core/simd.hpp"
#include "tformer/core/views.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

// How the normalised row is scaled: x̂·w (Llama, Qwen, Mistral) or x̂·(1 + w) (Gemma 1/2/3).
enum class NormScale { Weight, OnePlusWeight };

namespace rmsnorm_kernels {

// The sum of squares runs over 8 registers (8·lanes partial sums: they cover the FMA latency on
// two FMA ports); the last n mod 8·lanes values go one register at a time into those partial
// sums, the last partial register through a masked load, so a short row (a 64- or 128-float
// q/k-norm head) is vector code on every instruction set. The scalar build keeps 4 partial sums.
inline constexpr index vector_block = TFORMER_HAS_SIMD ? 8 * static_cast<index>(simd::lanes) : 0;

// The most terms any partial sum of a row of n adds: what its rounding error grows with.
constexpr index max_terms_per_partial_sum(index n) noexcept {
  if constexpr (vector_block > 0) {
    // AVX-512 rows shorter than 8 registers run in AVX2 registers (sum_squares).
    const index block = vector_block == 128 && n < 128 ? 64 : vector_block;
    return n / block + (n % block > 0 ? 1 : 0);
  }
  return (n + 3) / 4;
}

#if TFORMER_HAS_SIMD
// Σ v[i]² for i < n, in float, over the partial sums described above, in registers of
// architecture A; v = x, or with Add, v = x + add stored back into x.
template <bool Add, class A, class X>
inline float sum_squares_in(X* x, const float* add, index n) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr index W = static_cast<index>(B::size);
  B acc[8] = {B(0.0f), B(0.0f), B(0.0f), B(0.0f), B(0.0f), B(0.0f), B(0.0f), B(0.0f)};
  index i = 0;
  const index vector_end = n / (8 * W) * (8 * W);
  for (; i < vector_end; i += 8 * W) {
    for (int a = 0; a < 8; ++a) {
      B v = B::load_unaligned(x + i + a * W);
      if constexpr (Add) {
        v += B::load_unaligned(add + i + a * W);
        v.store_unaligned(x + i + a * W);
      }
      acc[a] = xsimd_compat::fma(v, v, acc[a]);
    }
  }
  int a = 0;
  for (; i + W <= n; i += W, ++a) {  // fewer than 8 full registers left
    B v = B::load_unaligned(x + i);
    if constexpr (Add) {
      v += B::load_unaligned(add + i);
      v.store_unaligned(x + i);
    }
    acc[a] = xsimd_compat::fma(v, v, acc[a]);
  }
  if (i < n) {  // the last, partial register, masked
    const std::size_t m = static_cast<std::size_t>(n - i);
    B v = xsimd_compat::load_partial<A>(x + i, m);
    if constexpr (Add) {
      v += xsimd_compat::load_partial<A>(add + i, m);
      xsimd_compat::store_partial(x + i, v, m);
    }
    acc[a] = xsimd_compat::fma(v, v, acc[a]);
  }
  return xsimd_compat::reduce_add(((acc[0] + acc[1]) + (acc[2] + acc[3])) +
                                  ((acc[4] + acc[5]) + (acc[6] + acc[7])));
}
#endif

// Σ v[i]² for i < n, in float, over the partial sums described above; v = x, or with Add,
// v = x + add stored back into x (the fused residual form reads x once). On AVX-512 a row
// shorter than 8 registers (128 floats: a q/k-norm head) runs in 8 AVX2 registers instead,
// whose chains and reduction are shorter: blocks are sized in floats, not in registers.
template <bool Add, class X>
inline float sum_squares(X* x, const float* add, index n) noexcept {
  static_assert(Add != std::is_const_v<X>, "only the Add form writes x");
#if TFORMER_HAS_SIMD
#if defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
  if constexpr (simd::lanes == 16)
    if (n < 8 * 16) return sum_squares_in<Add, xsimd::fma3<xsimd::avx2>>(x, add, n);
#endif
  return sum_squares_in<Add, simd::arch>(x, add, n);
#else
  float tail[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (index i = 0; i < n; ++i) {
    if constexpr (Add) x[i] += add[i];
    tail[i % 4] += x[i] * x[i];
  }
  return (tail[0] + tail[1]) + (tail[2] + tail[3]);
#endif
}

// y = x · scale · w (Weight) or x · scale · (1 + w) (OnePlusWeight), n values; y may equal x.
// When `next` is non-null, the next row (n values) is prefetched meanwhile. The last partial
// register is masked.
template <NormScale Scale>
inline void scale_row(const float* x, const float* w, float scale, float* y, index n,
                      const float* next = nullptr) noexcept {
#if TFORMER_HAS_SIMD
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  const B s(scale), one(1.0f);
  index i = 0;
  const index vector_end = n / W * W;
  for (; i < vector_end; i += W) {
    if (next && i % 16 == 0) prefetch<CacheLevel::L1>(next + i);
    const B wv =
        Scale == NormScale::Weight ? B::load_unaligned(w + i) : one + B::load_unaligned(w + i);
    (B::load_unaligned(x + i) * s * wv).store_unaligned(y + i);
  }
  if (i < n) {
    const std::size_t m = static_cast<std::size_t>(n - i);
    const B wv = xsimd_compat::load_partial<simd::arch>(w + i, m);
    const B xv = xsimd_compat::load_partial<simd::arch>(x + i, m);
    xsimd_compat::store_partial(y + i, xv * s * (Scale == NormScale::Weight ? wv : one + wv), m);
  }
#else
  (void)next;
  for (index i = 0; i < n; ++i)
    y[i] = x[i] * scale * (Scale == NormScale::Weight ? w[i] : 1.0f + w[i]);
#endif
}

// 1 / sqrt(sum_sq / n + eps), in double, rounded once.
inline float inverse_rms(float sum_sq, index n, float eps) noexcept {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(sum_sq) / n + eps));
}

// Whether a row's float sum of squares lost its value: overflowed (or holds the NaN or inf of
// the row), or underflowed below FLT_MIN where eps does not dominate it.
inline bool sum_lost(float sum_sq, float eps) noexcept {
  return !(sum_sq <= FLT_MAX) || (sum_sq < FLT_MIN && eps < FLT_MIN);
}

// The rare path of such a row: the whole normalisation in double, each output rounded once
// (y may equal x).
template <NormScale Scale>
[[gnu::noinline, gnu::cold]] inline void norm_row_wide(const float* x, const float* w, float eps,
                                                       float* y, index n) noexcept {
  double sum_sq = 0.0;
  for (index i = 0; i < n; ++i) sum_sq += static_cast<double>(x[i]) * x[i];
  const double inv = 1.0 / std::sqrt(sum_sq / static_cast<double>(n) + eps);
  for (index i = 0; i < n; ++i) {
    const double wi = Scale == NormScale::Weight ? w[i] : 1.0 + static_cast<double>(w[i]);
    y[i] = static_cast<float>(static_cast<double>(x[i]) * inv * wi);
  }
}

// Normalises one row of n values from x into y (y may equal x), scaling with `inv` unless the
// sum of squares was lost. `next`: the row to prefetch meanwhile, or null.
template <NormScale Scale>
inline void finish_row(const float* x, float sum_sq, const float* w, float eps, float* y, index n,
                       const float* next = nullptr) noexcept {
  if (sum_lost(sum_sq, eps)) [[unlikely]]
    return norm_row_wide<Scale>(x, w, eps, y, n);
  scale_row<Scale>(x, w, inverse_rms(sum_sq, n, eps), y, n, next);
}

// Normalises one row of n values from x into y (y may equal x).
template <NormScale Scale>
inline void norm_row(const float* x, const float* w, float eps, float* y, index n) noexcept {
  finish_row<Scale>(x, sum_squares<false>(x, nullptr, n), w, eps, y, n);
}

// x += add, then normalises x into y (y must not overlap x or add).
template <NormScale Scale>
inline void add_norm_row(float* x, const float* add, const float* w, float eps, float* y,
                         index n) noexcept {
  finish_row<Scale>(x, sum_squares<true>(x, add, n), w, eps, y, n);
}

// Rows [first, first + count) of y = RMSNorm(x) (rmsnorm; y may be x). Past the caches,
// prefetching the next row during the scale pass hides its latency (measured on the 2-vCPU EPYC
// of docs/PERFORMANCE.md: +40 % at 8 MiB); within them it only costs instructions (−8 % at 1 MiB).
template <NormScale Scale>
inline void norm_rows(MatrixView<const float> x, const float* w, float eps, MatrixView<float> y,
                      index first, index count) noexcept {
  const bool prefetch_next = x.rows() * x.cols() * index(sizeof(float)) > (index(4) << 20);
  for (index r = first; r < first + count; ++r) {
    const float* xr = x.row(r);
    finish_row<Scale>(xr, sum_squares<false>(xr, nullptr, x.cols()), w, eps, y.row(r), x.cols(),
                      prefetch_next && r + 1 < x.rows() ? x.row(r + 1) : nullptr);
  }
}

// Rows [first, first + count) of rmsnorm_residual: x += residual, then y = RMSNorm(x).
template <NormScale Scale>
inline void add_norm_rows(MatrixView<float> x, MatrixView<const float> residual, const float* w,
                          float eps, MatrixView<float> y, index first, index count) noexcept {
  for (index r = first; r < first + count; ++r)
    add_norm_row<Scale>(x.row(r), residual.row(r), w, eps, y.row(r), x.cols());
}

// Tokens [first, first + count) of rmsnorm_heads: each head normalised in place.
template <NormScale Scale>
inline void norm_head_rows(HeadsView<float> x, const float* w, float eps, index first,
                           index count) noexcept {
  for (index t = first; t < first + count; ++t)
    for (index h = 0; h < x.heads(); ++h)
      norm_row<Scale>(x.row(t, h), w, eps, x.row(t, h), x.head_dim());
}

}  // namespace rmsnorm_kernels

namespace rmsnorm_detail {
inline void check_eps(const char* where, float eps) {
  check(std::isfinite(eps) && eps >= 0.0f, where, "eps", "a finite value >= 0", eps);
}
}  // namespace rmsnorm_detail

// y [T, n] = RMSNorm(x [T, n]) with weight [n]. y may be x itself (same data and stride) or must
// not overlap it.
template <NormScale Scale = NormScale::Weight>
void rmsnorm(MatrixView<const float> x, std::span<const float> weight, float eps,
             MatrixView<float> y) {
  constexpr const char* where = "rmsnorm";
  check_view(where, "x", x);
  check_shape(where, "y", y, x.rows(), x.cols());
  if (y.data() != x.data() || y.row_stride() != x.row_stride())
    check_disjoint(where, "y", y, "x", x);
  check_eq(where, "weight size (= x.cols)", x.cols(), index(weight.size()));
  rmsnorm_detail::check_eps(where, eps);
  rmsnorm_kernels::norm_rows<Scale>(x, weight.data(), eps, y, 0, x.rows());
}

// The fused residual form of a pre-norm block: x += residual, then y = RMSNorm(x), reading x
// once for both. x [T, n] is updated in place; y must not overlap x or residual.
template <NormScale Scale = NormScale::Weight>
void rmsnorm_residual(MatrixView<float> x, MatrixView<const float> residual,
                      std::span<const float> weight, float eps, MatrixView<float> y) {
  constexpr const char* where = "rmsnorm_residual";
  check_view(where, "x", x);
  check_shape(where, "residual", residual, x.rows(), x.cols());
  check_shape(where, "y", y, x.rows(), x.cols());
  check_disjoint(where, "y", y, "x", x);
  check_disjoint(where, "y", y, "residual", residual);
  check_disjoint(where, "x", x, "residual", residual);
  check_eq(where, "weight size (= x.cols)", x.cols(), index(weight.size()));
  rmsnorm_detail::check_eps(where, eps);
  rmsnorm_kernels::add_norm_rows<Scale>(x, residual, weight.data(), eps, y, 0, x.rows());
}

// Per-head RMSNorm in place over head_dim (Qwen3 and Gemma 3 q/k-norm, applied before RoPE),
// with one weight [head_dim] shared by all heads.
template <NormScale Scale = NormScale::Weight>
void rmsnorm_heads(HeadsView<float> x, std::span<const float> weight, float eps) {
  constexpr const char* where = "rmsnorm_heads";
  check_view(where, "x", x);
  check_eq(where, "weight size (= x.head_dim)", x.head_dim(), index(weight.size()));
  rmsnorm_detail::check_eps(where, eps);
  rmsnorm_kernels::norm_head_rows<Scale>(x, weight.data(), eps, 0, x.tokens());
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
