// y = x · Wᵀ for a bf16 weight with bf16 activations (a WeightView whose activations() is
// Activations::bf16): x is rounded to bf16 once per call (nearest, ties to even: core/numeric.hpp's
// to_bf16), and every product of a bf16 x with a bf16 weight, exact in f32, is accumulated in f32.
// Rows of x round the same in any batch, so decode and prefill multiply the same values (their
// float sums may differ in order: decode takes whole rows, prefill slices of 1024).
//
// Kernels:
//   AVX512_BF16: vdpbf16ps, 32 products a register per instruction (twice an FMA's 16). It
//     treats subnormal inputs and results as zero (|x| or |w| below 2^-126: a product below
//     2^-126·|other|, far under the f32 rounding of any sum it would join).
//   Any other level: the same products by float FMAs, both sides widened in registers
//   (matmul_tile::dot_tile, the f32 prefill's tile; plain loops in the scalar build).
// Tiles of tile_m rows of x × tile_n rows of W, one vector accumulator each, along `in` (as the
// f32 prefill panels of nn/matmul.hpp); one horizontal sum per output.
//
// No allocation: x is rounded into a 64 KiB stack buffer, a block of rows × a slice of `in` at a
// time (rows padded with zeros to whole 32-value steps); W is read in place, each panel of tile_n
// rows meeting every x tile of the block from L1.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "tformer/core/numeric.hpp"
#include "tformer/core/simd.hpp"
#include "tformer/core/views.hpp"
#include "tformer/core/weight_view.hpp"
#include "tformer/nn/matmul_tile.hpp"

#if defined(__AVX512BF16__) && defined(__AVX512BW__) && !defined(TFORMER_SIMD_SCALAR)
#define TFORMER_BF16_DOT 1
#else
#define TFORMER_BF16_DOT 0
#endif

namespace tformer {
inline namespace TFORMER_ARCH_NS {
namespace matmul_bf16_kernels {

inline constexpr index step = 32;                     // values per step (one 512-bit register)
inline constexpr index buffer_values = 32 * 1024;     // 64 KiB of rounded x
inline constexpr index slice_values = 1024;           // W panel: tile_n rows × 2 KiB in L1
inline constexpr index tile_m = 3;
inline constexpr index tile_n = TFORMER_HAS_SIMD && simd::lanes == 16 ? 8 : 4;

// x[0, n) rounded to bf16 into out[0, padded), zeros after n.
inline void round_row(const float* x, index n, index padded, std::uint16_t* out) noexcept {
  for (index k = 0; k < n; ++k) out[k] = to_bf16(x[k]).bits;
  std::fill(out + n, out + padded, std::uint16_t(0));
}

#if TFORMER_BF16_DOT
inline __m512bh as_bh(__m512i v) noexcept { return (__m512bh)v; }

// acc[m·PN + n] += the products of 32 values of x_m and w_n from k; W loads masked by `mask`.
template <index PM, index PN, bool Masked>
[[gnu::always_inline]] inline void dot_step(const std::uint16_t* const* x,
                                            const std::uint16_t* const* w, index k,
                                            __mmask32 mask, simd::batch* acc) noexcept {
  using B = simd::batch;
  __m512i xv[PM];
  TFORMER_UNROLL for (index m = 0; m < PM; ++m) xv[m] = _mm512_loadu_si512(x[m] + k);
  TFORMER_UNROLL for (index n = 0; n < PN; ++n) {
    __m512i wv;
    if constexpr (Masked) {
      wv = _mm512_maskz_loadu_epi16(mask, w[n] + k);
    } else {
      wv = _mm512_loadu_si512(w[n] + k);
      simd::in_register(wv);  // one load per W row, not one per product
    }
    TFORMER_UNROLL for (index m = 0; m < PM; ++m)
      acc[m * PN + n] = B(_mm512_dpbf16_ps(acc[m * PN + n], as_bh(xv[m]), as_bh(wv)));
  }
}

// out[m·PN + n] = Σ over [0, len) of x_m · w_n, x rows padded to whole steps (the W rows are
// read only up to len).
template <index PM, index PN>
inline void tile(const std::uint16_t* const* x, const std::uint16_t* const* w, index len,
                 float* out) noexcept {
  using B = simd::batch;
  constexpr index N = PM * PN, groups = (N + 15) / 16;
  B acc[groups * 16];
  for (index i = 0; i < groups * 16; ++i) acc[i] = B(0.0f);
  index k = 0;
  for (; k + step <= len; k += step) dot_step<PM, PN, false>(x, w, k, 0, acc);
  if (k < len) dot_step<PM, PN, true>(x, w, k, __mmask32((1u << (len - k)) - 1), acc);
  for (index g = 0; g < groups; ++g) {
    alignas(64) float lanes[16];
    xsimd_compat::reduce_add_rows(acc + g * 16).store_aligned(lanes);
    for (index i = 0; i < 16 && g * 16 + i < N; ++i) out[g * 16 + i] = lanes[i];
  }
}
#else
template <index PM, index PN>
inline void tile(const std::uint16_t* const* x, const std::uint16_t* const* w, index len,
                 float* out) noexcept {
  matmul_tile::dot_tile<PM, PN>(x, w, len, out);
}
#endif

// Buffer rows x[0, count), 0 < count <= PM, against W rows [n0, n0 + valid) (tile_n row
// pointers, the last repeated past valid): y rows [t0, t0 + count) written (first slice) or added.
template <index PM = tile_m>
inline void rows_against(const std::uint16_t* const* x, index count, const std::uint16_t* const* w,
                         index len, index t0, index n0, index valid, bool first_slice,
                         MatrixView<float> y) noexcept {
  if constexpr (PM > 1) {
    if (count < PM) return rows_against<PM - 1>(x, count, w, len, t0, n0, valid, first_slice, y);
  }
  float r[PM * tile_n];
  tile<PM, tile_n>(x, w, len, r);
  matmul_tile::store_tile(r, PM, tile_n, valid, y, t0, n0, !first_slice);
}

// y = x · Wᵀ + b with bf16 activations. Preconditions: as matmul_kernels::project, and w bf16.
inline void project(MatrixView<const float> x, const WeightView& w, std::span<const float> bias,
                    MatrixView<float> y) noexcept {
  const index rows = x.rows(), in = x.cols();
  if (rows == 0 || w.rows() == 0) return;
  if (in == 0) {
    for (index t = 0; t < rows; ++t) std::fill_n(y.row(t), y.cols(), 0.0f);
  } else {
    // A few rows (decode): whole rows of W (up to 10,912 values), tile_n adjacent rows at a
    // time; more: slices whose panel fits L1.
    const index slice = std::min(in, rows <= tile_m ? buffer_values / tile_m / step * step : slice_values);
    const index padded = (slice + step - 1) / step * step;
    const index block = std::min(rows, buffer_values / padded);  // all rows, or >= 32
    alignas(64) std::uint16_t buffer[buffer_values];
    for (index t0 = 0; t0 < rows; t0 += block) {
      const index count = std::min(block, rows - t0);
      for (index k0 = 0; k0 < in; k0 += slice) {
        const index n = std::min(slice, in - k0);
        for (index m = 0; m < count; ++m) round_row(x.row(t0 + m) + k0, n, padded, buffer + m * padded);
        for (index n0 = 0; n0 < w.rows(); n0 += tile_n) {
          const std::uint16_t* wr[tile_n];
          for (index i = 0; i < tile_n; ++i)
            wr[i] = reinterpret_cast<const std::uint16_t*>(w.row(std::min(n0 + i, w.rows() - 1))) + k0;
          const index valid = std::min(tile_n, w.rows() - n0);
          for (index m0 = 0; m0 < count; m0 += tile_m) {
            const index c = std::min(tile_m, count - m0);
            const std::uint16_t* xt[tile_m];
            for (index m = 0; m < tile_m; ++m) xt[m] = buffer + (m0 + std::min(m, c - 1)) * padded;
            rows_against(xt, c, wr, n, t0 + m0, n0, valid, k0 == 0, y);
          }
        }
      }
    }
  }
  if (!bias.empty())
    for (index t = 0; t < rows; ++t)
      for (index o = 0; o < y.cols(); ++o) y.row(t)[o] += bias[std::size_t(o)];
}

}  // namespace matmul_bf16_kernels
}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
