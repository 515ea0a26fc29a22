// The tile both float-accumulating matmul kernels share (nn/matmul.hpp's prefill panels and
// one-token f32 rows, nn/matmul_bf16.hpp below AVX512_BF16): PM rows of x against PN rows of W,
// each row a pointer to f32 values or to bf16 values widened in registers, one vector
// accumulator per output along the rows, one horizontal sum per output; and the store of a
// tile's outputs into y.
#pragma once

#include <cstdint>
#include <cstring>

#include "tformer/core/numeric.hpp"
#include "tformer/core/simd.hpp"
#include "tformer/core/simd_load.hpp"
#include "tformer/core/views.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {
namespace matmul_tile {

// y[r0 + m][c0 + n] = r[m·stride + n] (or += when `add`), m < rows, n < cols.
inline void store_tile(const float* r, index rows, index stride, index cols, MatrixView<float> y,
                       index r0, index c0, bool add) noexcept {
  for (index m = 0; m < rows; ++m) {
    float* yr = y.row(r0 + m) + c0;
    if (add)
      for (index n = 0; n < cols; ++n) yr[n] += r[m * stride + n];
    else
      for (index n = 0; n < cols; ++n) yr[n] = r[m * stride + n];
  }
}

// One value as float: f32 as is, bf16 (which may point into any bytes, a weight's memory) read
// as bytes and widened exactly.
inline float value_at(const float* p) noexcept { return *p; }
inline float value_at(const std::uint16_t* p) noexcept {
  std::uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return to_float(bf16{v});
}

#if TFORMER_HAS_SIMD
using B = simd::batch;
inline constexpr index W = index(simd::lanes);

// W values from p as floats, in a register (bf16 widened exactly: its 16 bits to the top). In a
// register: otherwise GCC folds the load into each of the PM FMAs that use it, PM loads instead
// of one (the f32 tile is then load-bound: 0.70 of the FMA peak).
inline B lanes_at(const float* p) noexcept {
  B v = B::load_unaligned(p);
  simd::in_register(v.data);
  return v;
}
inline B lanes_at(const std::uint16_t* p) noexcept {
  return simd::load_float(reinterpret_cast<const bf16*>(p));
}
#endif

// out[m·PN + n] = x_m · w_n over [0, len) (E = float or bf16's std::uint16_t).
template <index PM, index PN, class E>
inline void dot_tile(const E* const* x, const E* const* w, index len, float* out) noexcept {
  index k = 0;
#if TFORMER_HAS_SIMD
  constexpr index N = PM * PN, groups = (N + W - 1) / W;
  // The accumulators live in registers only if every loop over them is unrolled: -O2 does not
  // unroll by itself (the f32 GEMM ran 3–4× slower at -O2 than at -O3 without the pragmas).
  B acc[groups * W];
  TFORMER_UNROLL for (index i = 0; i < groups * W; ++i) acc[i] = B(0.0f);
  for (; k + W <= len; k += W) {
    B xv[PM];
    TFORMER_UNROLL for (index m = 0; m < PM; ++m) xv[m] = lanes_at(x[m] + k);
    TFORMER_UNROLL for (index n = 0; n < PN; ++n) {
      const B wv = lanes_at(w[n] + k);
      TFORMER_UNROLL for (index m = 0; m < PM; ++m)
        acc[m * PN + n] = xsimd_compat::fma(xv[m], wv, acc[m * PN + n]);
    }
  }
  for (index g = 0; g < groups; ++g) {
    alignas(64) float lanes[W];
    xsimd_compat::reduce_add_rows(acc + g * W).store_aligned(lanes);
    for (index i = 0; i < W && g * W + i < N; ++i) out[g * W + i] = lanes[i];
  }
#else
  for (index i = 0; i < PM * PN; ++i) out[i] = 0.0f;
#endif
  for (; k < len; ++k)
    for (index m = 0; m < PM; ++m)
      for (index n = 0; n < PN; ++n) out[m * PN + n] += value_at(x[m] + k) * value_at(w[n] + k);
}

}  // namespace matmul_tile
}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
