// The project's own matmul: y [T, out] = x [T, in] · Wᵀ for a weight W [out, in] of any storage
// type (core/weight_view.hpp), read in its stored layout, in place, without repacking.
//
// Design (llamafile's tinyBLAS, gemma.cpp's MatMul): a tile of RM rows of x times RN rows of W
// keeps RM·RN vector accumulators, each a dot product along `in`; per step of 32 values it decodes
// 32 values of each W row to float registers once and multiplies them with all RM rows of x.
// One horizontal sum per output at the end, RM·RN of them together (reduce_add_rows).
//   - One token: W one row at a time, a single sequential stream (gemv below), or 8 rows a tile
//     when rows are longer than gemv_max_in; f32 rows 8 (AVX-512) or 4 at a time in place,
//     sharing each load of x (gemv_f32).
//   - A few tokens (T <= max_rm): one tile of RM = T rows against 4 rows of W at a time; W
//     streams from memory once. f32 rows in place through matmul_tile::dot_tile (gemv_f32).
//   - Prefill (SIMD builds): W in panels of 8 (AVX-512) or 4 rows × a slice of `in`, decoded once
//     to f32 in L1 (project_panels); x's rows stream from L2 in tiles of 3 against the panel,
//     24 or 12 accumulators (matmul_tile::dot_tile). The scalar build runs the RM×RN tiles instead.
// A view with int8 activations goes to nn/matmul_int8.hpp instead (integer dot products), one
// with bf16 activations to nn/matmul_bf16.hpp (vdpbf16ps).
// Weights decode to exactly their stored value (core/numeric.hpp), so every type computes the
// same float dot product of x with W's values; accumulation is float, in per-lane partial sums
// (the error bound is derived in tests/nn/matmul_test.cpp).
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "tformer/core/convert.hpp"
#include "tformer/core/error.hpp"
#include "tformer/core/numeric.hpp"
#include "tformer/core/prefetch.hpp"
#include "tformer/core/simd.hpp"
#include "tformer/core/views.hpp"
#include "tformer/core/weight_view.hpp"
#include "tformer/nn/matmul_bf16.hpp"
#include "tformer/nn/matmul_int8.hpp"
#include "tformer/nn/matmul_tile.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {
namespace matmul_kernels {

// Values per decode step: one q8_0 / q4_0 block.
inline constexpr index step = 32;

// One token, float x (SIMD builds): rows longer than this go 8 at a time (tile), each line of x
// fetched once per step for all 8. An x past 24 KiB (half of Zen 4/5's L1d) is evicted by W's
// stream and reloaded from L2 for every row: bf16 and f16 4096×11008 from DRAM read at 0.52–0.59
// of the bandwidth one row at a time, 0.78–0.84 eight at a time. Rows this long are long streams,
// which the prefetchers follow; shorter rows stay one at a time (8-row tiles over a 110M step's
// rows of 768 and 2048 values: 0.71–0.74 against 0.88–0.92 of the bandwidth from DRAM).
inline constexpr index gemv_max_in = 24 * 1024 / index(sizeof(float));

// Types without blocks: a row may end in a partial step.
template <WeightType T>
inline constexpr bool element_type = type_info(T).block_values == 1;

// One row of W as the kernels read it: its values, and for q8_group its scales.
struct Row {
  const std::byte* values = nullptr;
  const std::byte* scales = nullptr;  // q8_group
  index group = 0;                    // q8_group
  int shift = -1;                     // q8_group: log2(group) for a power of two, else −1
};
inline Row row_of(const WeightView& w, index r) noexcept {
  const index g = w.group();
  return {w.row(r), w.scale_row(r), g,
          g > 0 && (g & (g - 1)) == 0 ? std::countr_zero(std::uint64_t(g)) : -1};
}

// q8_group: the scale of value k of the row (a shift for a power-of-two group, not a division).
inline float group_scale(const Row& row, index k) noexcept {
  const index g = row.shift >= 0 ? k >> row.shift : k / row.group;
  float d;
  std::memcpy(&d, row.scales + g * index(sizeof d), sizeof d);
  return d;
}

// The values [k, k + 32) of a weight row into 32 floats at `out` (scalar, any ISA).
template <WeightType T>
inline void decode_step_scalar(const Row& r, index k, float* out) noexcept {
  const std::byte* row = r.values;
  if constexpr (T == WeightType::f32) {
    std::memcpy(out, row + 4 * k, 4 * step);
  } else if constexpr (T == WeightType::bf16 || T == WeightType::f16) {
    using E = std::conditional_t<T == WeightType::bf16, bf16, f16>;
    E v[step];
    std::memcpy(v, row + 2 * k, sizeof v);
    for (index j = 0; j < step; ++j) out[j] = to_float(v[j]);
  } else if constexpr (T == WeightType::q8_0) {
    dequantize(load_block<BlockQ8_0>(row + k / 32 * 34), out);
  } else if constexpr (T == WeightType::q4_0) {
    dequantize(load_block<BlockQ4_0>(row + k / 32 * 18), out);
  } else {  // q8_group: q·d rounded once, as llama2.c's runq.c dequantizes
    for (index j = 0; j < step; ++j)
      out[j] = float(std::int8_t(row[k + j])) * group_scale(r, k + j);
  }
}

// One value of an element-type row (the tail of a row whose length is not a multiple of 32).
template <WeightType T>
inline float decode_one(const Row& r, index k) noexcept {
  const std::byte* row = r.values;
  if constexpr (T == WeightType::f32) {
    float v;
    std::memcpy(&v, row + 4 * k, 4);
    return v;
  } else if constexpr (T == WeightType::q8_group) {
    return float(std::int8_t(row[k])) * group_scale(r, k);
  } else {
    std::conditional_t<T == WeightType::bf16, bf16, f16> v;
    std::memcpy(&v, row + 2 * k, 2);
    return to_float(v);
  }
}

// Cache blocking for many rows of x: the rows of x into blocks whose slice of `in` fits in
// x_block_bytes (L2). SIMD builds slice `in` by panel_k (project_panels); the scalar build by
// slice_values, where a panel of RN rows of W (RN·slice values, in L1) meets every RM rows of the
// block before the next panel is read (project_typed).
inline constexpr index slice_values = 1024;
inline constexpr index x_block_bytes = 512 * 1024;

#if TFORMER_HAS_SIMD
using B = simd::batch;
inline constexpr index W = index(simd::lanes);
inline constexpr index V = step / W;  // registers per step

// decode_step through a buffer (any type, any level), out of line: the rare q8_group with a
// group that is not a power of two >= 32 keeps the hot loop free of its division.
template <WeightType T>
[[gnu::noinline]] inline void decode_step_buffered(const Row& r, index k, B* out) noexcept {
  alignas(64) float values[step];
  decode_step_scalar<T>(r, k, values);
  for (index v = 0; v < V; ++v) out[v] = B::load_aligned(values + v * W);
}

// The values [k, k + 32) of a weight row into V registers. Preconditions: k + 32 <= cols; k a
// multiple of 32 for the block types.
template <WeightType T>
inline void decode_step(const Row& r, index k, B* out) noexcept {
  const std::byte* row = r.values;
  if constexpr (T == WeightType::f32) {
    const float* p = reinterpret_cast<const float*>(row) + k;
    for (index v = 0; v < V; ++v) out[v] = B::load_unaligned(p + v * W);
    return;
  }
#if defined(__AVX512F__)  // (arch.hpp: 16 lanes)
  {
    if constexpr (T == WeightType::bf16) {  // bf16 → f32: the 16 bits move to the top
      for (index v = 0; v < V; ++v)
        out[v] = matmul_tile::lanes_at(reinterpret_cast<const std::uint16_t*>(row) + k + v * W);
    } else if constexpr (T == WeightType::f16) {
      for (index v = 0; v < V; ++v)
        out[v] = _mm512_cvtph_ps(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * (k + v * 16))));
    } else if constexpr (T == WeightType::q8_0) {
      const std::byte* b = row + k / 32 * 34;
      const __m512 d = _mm512_set1_ps(f16_at(b));
      for (index v = 0; v < V; ++v) {
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2 + 16 * v));
        out[v] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), d);
      }
    } else if constexpr (T == WeightType::q4_0) {  // (n − 8)·d = n·d − 8d, one FMA, exact
      const std::byte* b = row + k / 32 * 18;
      const float df = f16_at(b);
      const __m512 d = _mm512_set1_ps(df), m = _mm512_set1_ps(-8.0f * df);
      const __m512i n = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2)));
      out[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(n, _mm512_set1_epi32(15))), d, m);
      out[1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(n, 4)), d, m);
    } else if constexpr (T == WeightType::q8_group) {
      if (r.shift >= 5) [[likely]] {  // a power of two >= 32: one scale (llama2.c: 32, 64)
        const __m512 d = _mm512_set1_ps(group_scale(r, k));
        for (index v = 0; v < V; ++v) {
          const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k + 16 * v));
          out[v] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), d);
        }
        return;
      }
      decode_step_buffered<T>(r, k, out);
    }
    return;
  }
#elif defined(__AVX2__)  // 8 lanes
  {
    if constexpr (T == WeightType::bf16) {
      for (index v = 0; v < V; ++v)
        out[v] = matmul_tile::lanes_at(reinterpret_cast<const std::uint16_t*>(row) + k + v * W);
      return;
    } else if constexpr (T == WeightType::q8_0) {
      const std::byte* b = row + k / 32 * 34;
      const __m256 d = _mm256_set1_ps(f16_at(b));
      for (index v = 0; v < V; ++v) {
        const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 2 + 8 * v));
        out[v] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
      }
      return;
    } else if constexpr (T == WeightType::q4_0) {
      const std::byte* b = row + k / 32 * 18;
      const float df = f16_at(b);
      const __m256 d = _mm256_set1_ps(df), m = _mm256_set1_ps(-8.0f * df);
      const __m256i mask = _mm256_set1_epi32(15);
      const __m256i n0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 2)));
      const __m256i n1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 10)));
      const auto fma = [](__m256 a, __m256 s, __m256 c) {
#if defined(__FMA__)
        return _mm256_fmadd_ps(a, s, c);
#else
        return _mm256_add_ps(_mm256_mul_ps(a, s), c);  // a·s exact here, so the same value
#endif
      };
      out[0] = fma(_mm256_cvtepi32_ps(_mm256_and_si256(n0, mask)), d, m);
      out[1] = fma(_mm256_cvtepi32_ps(_mm256_and_si256(n1, mask)), d, m);
      out[2] = fma(_mm256_cvtepi32_ps(_mm256_srli_epi32(n0, 4)), d, m);
      out[3] = fma(_mm256_cvtepi32_ps(_mm256_srli_epi32(n1, 4)), d, m);
      return;
    } else if constexpr (T == WeightType::q8_group) {
      if (r.shift >= 5) [[likely]] {  // a power of two >= 32: one scale
        const __m256 d = _mm256_set1_ps(group_scale(r, k));
        for (index v = 0; v < V; ++v) {
          const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + k + 8 * v));
          out[v] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
        }
        return;
      }
      return decode_step_buffered<T>(r, k, out);
    }
#if defined(__F16C__)
    if constexpr (T == WeightType::f16) {
      for (index v = 0; v < V; ++v)
        out[v] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * (k + v * 8))));
      return;
    }
#endif
  }
#endif
  // Any other level: through a buffer, plainly.
  alignas(64) float values[step];
  decode_step_scalar<T>(r, k, values);
  for (index v = 0; v < V; ++v) out[v] = B::load_aligned(values + v * W);
}

// Tile shapes. RN = 4 rows of W per pass, for any RM; 8 (long_rn) for one token whose rows are
// longer than gemv_max_in. W's rows are adjacent in memory, so a pass reads RN neighbouring
// streams (16 rows 16 KiB apart, as a 4096-wide f32 matrix has, fight over the same L1/L2 sets and
// the prefetchers' stream slots: 10–30× slower from DRAM, measured).
// RM·RN outputs, each with A accumulators (A partial sums along `in`, A <= V) so that at least
// 8 independent FMA chains cover the FMA latency; the accumulators fill half the register file.
inline constexpr index rn = 4;
inline constexpr index long_rn = 8;
inline constexpr index accumulators = W == 16 ? 16 : 8;
inline constexpr index max_rm = W == 16 ? 4 : 2;
template <index RM, index RN>
inline constexpr index chains_for = std::clamp<index>(accumulators / (RM * RN), 1, V);
inline constexpr bool x_in_registers = W == 16;

// out[m·RN + n] = x_m · w_n over [k0, k1) for the rows x[0..RM) and w[0..RN).
// Preconditions: every row holds [k0, k1); k0 a multiple of 32 for the block types, and k1 too
// unless k1 = cols of an element type (then the last k1 − k0 mod 32 values go through decode_one).
template <WeightType T, index RM, index RN>
inline void tile(const float* const* x, const Row* w, index k0, index k1,
                 float* out) noexcept {
  constexpr index A = chains_for<RM, RN>;
  constexpr index N = RM * RN;
  constexpr index groups = (N + W - 1) / W;
  B acc[N * A];
  TFORMER_UNROLL for (index i = 0; i < N * A; ++i) acc[i] = B(0.0f);
  index k = k0;
  for (; k + step <= k1; k += step) {
    // AVX-512 (32 registers): x's RM·V registers are loaded once per step and stay (in_register:
    // GCC would fold the loads into every FMA); below, they are reloaded per W row (memory
    // operands of the FMA), which is what 16 registers allow.
    B xv[x_in_registers ? RM * V : 1];
    if constexpr (x_in_registers) {
      TFORMER_UNROLL for (index i = 0; i < RM * V; ++i) {
        xv[i] = B::load_unaligned(x[i / V] + k + (i % V) * W);
        simd::in_register(xv[i].data);
      }
    }
    TFORMER_UNROLL for (index n = 0; n < RN; ++n) {
      B wv[V];
      decode_step<T>(w[n], k, wv);
      TFORMER_UNROLL for (index v = 0; v < V; ++v)
        TFORMER_UNROLL for (index m = 0; m < RM; ++m) {
          B& a = acc[(m * RN + n) * A + v % A];
          if constexpr (x_in_registers)
            a = xsimd_compat::fma(xv[m * V + v], wv[v], a);
          else
            a = xsimd_compat::fma(B::load_unaligned(x[m] + k + v * W), wv[v], a);
        }
    }
  }
  B sums[groups * W];
  for (index i = 0; i < groups * W; ++i) {
    sums[i] = B(0.0f);
    if (i < N)
      for (index a = 0; a < A; ++a) sums[i] += acc[i * A + a];
  }
  for (index g = 0; g < groups; ++g) {
    alignas(64) float lanes[W];
    xsimd_compat::reduce_add_rows(sums + g * W).store_aligned(lanes);
    for (index i = 0; i < W && g * W + i < N; ++i) out[g * W + i] = lanes[i];
  }
  if constexpr (element_type<T>) {
    for (; k < k1; ++k)
      for (index n = 0; n < RN; ++n) {
        const float wk = decode_one<T>(w[n], k);
        for (index m = 0; m < RM; ++m) out[m * RN + n] += x[m][k] * wk;
      }
  }
}

// One token, rows up to gemv_max_in: W one row at a time, so the whole matrix is one sequential
// stream for the prefetchers (4-row tiles start 3 new short streams per tile: measured 1.5–2×
// slower from DRAM inside a decoder step). `unroll` steps with their own accumulators keep 8 FMA
// chains; the totals of W rows are reduced together. dot_row reads [0, full), full a multiple of
// 32 (tile's preconditions otherwise).
inline constexpr index unroll = std::max<index>(1, 8 / V);

template <WeightType T>
inline B dot_row(const float* x, const Row& w, index full) noexcept {
  B acc[unroll * V];
  for (index i = 0; i < unroll * V; ++i) acc[i] = B(0.0f);
  index k = 0;
  for (; k + unroll * step <= full; k += unroll * step)
    for (index u = 0; u < unroll; ++u) {
      B wv[V];
      decode_step<T>(w, k + u * step, wv);
      for (index v = 0; v < V; ++v)
        acc[u * V + v] = xsimd_compat::fma(B::load_unaligned(x + k + u * step + v * W), wv[v],
                                           acc[u * V + v]);
    }
  for (; k + step <= full; k += step) {
    B wv[V];
    decode_step<T>(w, k, wv);
    for (index v = 0; v < V; ++v)
      acc[v] = xsimd_compat::fma(B::load_unaligned(x + k + v * W), wv[v], acc[v]);
  }
  for (index i = 1; i < unroll * V; ++i) acc[0] += acc[i];
  return acc[0];
}

// x on a 64-byte boundary keeps each of its loads within one cache line: bf16 and f16 768×288 in
// L2 took 1.3–1.5× as long on AVX-512 with x 16 bytes off (measured; the decoder's buffers are
// aligned). The caller's x is read as is: an aligned copy on the stack, tried, was 4–6 % slower
// from DRAM (bf16 5632×2048) than reading the misaligned x.
template <WeightType T>
inline void gemv(const float* x, const WeightView& w, float* y) noexcept {
  const index in = w.cols(), full = in / step * step;
  // Row r from a base pointer and strides read once per call, not from the view per row (row_of):
  // bf16 and f16 32000×288 from L3 took 1.3–1.5× as long with row_of per row (measured).
  const Row first = row_of(w, 0);
  const index stride = w.row_stride(), scale_stride = w.scale_row_bytes();
  const auto row_at = [&](index r) {
    Row row = first;
    row.values += r * stride;
    if constexpr (T == WeightType::q8_group) row.scales += r * scale_stride;
    return row;
  };
  for (index r0 = 0; r0 < w.rows(); r0 += W) {
    const index n = std::min(W, w.rows() - r0);
    B totals[W];
    for (index i = 0; i < W; ++i) totals[i] = i < n ? dot_row<T>(x, row_at(r0 + i), full) : B(0.0f);
    alignas(64) float sums[W];
    xsimd_compat::reduce_add_rows(totals).store_aligned(sums);
    for (index i = 0; i < n; ++i) {
      float r = sums[i];
      if constexpr (element_type<T>) {
        const Row row = row_at(r0 + i);
        for (index k = full; k < in; ++k) r += x[k] * decode_one<T>(row, k);
      }
      y[r0 + i] = r;
    }
  }
}

// Prefill (T > max_rm): W in panels of PN rows × a slice of `in` that fit in L1, f32 (a reduced
// type decodes its panel once into a buffer, then every x row of the block reuses it); x's rows
// stream from L2 in tiles of PM. A tile keeps PM·PN vector accumulators; per W lanes of `in` it
// loads PM x vectors and PN panel vectors for PM·PN FMAs, so L2 delivers PM loads per PM·PN FMAs
// (AVX-512: 3 per 24, 16 B a cycle at two FMAs a cycle, a quarter of what Zen's L2 can give).
inline constexpr index panel_m = 3;
inline constexpr index panel_n = W == 16 ? 8 : 4;                 // 24 or 12 accumulators
inline constexpr index panel_k = 24 * 1024 / (panel_n * 4) / step * step;  // 24 KiB of panel

// Rows [m0, m0 + count) of x, 0 < count <= PM, against the panel: y's outputs [n0, n0 + valid)
// written (first slice) or added.
template <index PM = panel_m>
inline void panel_rows(MatrixView<const float> x, index m0, index count, index k0,
                       const float* const* p, index len, index n0, index valid, bool first_slice,
                       MatrixView<float> y) noexcept {
  if constexpr (PM > 1) {
    if (count < PM) return panel_rows<PM - 1>(x, m0, count, k0, p, len, n0, valid, first_slice, y);
  }
  const float* xr[PM];
  for (index m = 0; m < PM; ++m) xr[m] = x.row(m0 + m) + k0;
  float r[PM * panel_n];
  matmul_tile::dot_tile<PM, panel_n>(xr, p, len, r);
  matmul_tile::store_tile(r, PM, panel_n, valid, y, m0, n0, !first_slice);
}

// The panel rows [n0, n0 + PN) × [k0, k1) decoded to f32 into `buffer` (PN rows of panel_k), every
// type, f32 too (a contiguous, aligned panel, one code path; f32 rows used in place measured no
// faster);
// `p` gets the rows. Past the last row of W, the last row repeats.
// Each step also asks for the same bytes of row n0 + panel_n + n (the next panel's row n) into L2,
// so the next panel comes from DRAM while this one is multiplied: 1.04–1.44× from DRAM from 8
// tokens up, 0.87–0.97× at 5–8 tokens in cache (docs/PERFORMANCE.md, session 51). q8_group's
// scales are not asked for.
template <WeightType T>
inline void load_panel(const WeightView& w, index n0, index k0, index k1, float* buffer,
                       const float** p) noexcept {
  constexpr index step_bytes = row_bytes(T, step);
  for (index n = 0; n < panel_n; ++n) {
    const Row row = row_of(w, std::min(n0 + n, w.rows() - 1));
    const std::byte* next = w.row(std::min(n0 + panel_n + n, w.rows() - 1)) + row_bytes(T, k0);
    {
      float* out = buffer + n * panel_k;
      index k = k0;
      for (; k + step <= k1; k += step, next += step_bytes) {
        TFORMER_UNROLL for (index c = 0; c < step_bytes; c += 64)
            prefetch<CacheLevel::L2>(next + c);
        B v[V];
        decode_step<T>(row, k, v);
        for (index i = 0; i < V; ++i) v[i].store_aligned(out + (k - k0) + i * W);
      }
      for (; k < k1; ++k) out[k - k0] = decode_one<T>(row, k);
      p[n] = out;
    }
  }
}

// RM <= max_rm tokens against f32 rows in place: PN adjacent rows (one contiguous stream) share
// each load of x. One token: 0.95–0.98× Eigen's row-major GEMV from L2 to DRAM, 1.4–1.6× the
// one-row gemv (which reloads x for every row: two loads per FMA).
template <index RM>
inline void gemv_f32(MatrixView<const float> x, const WeightView& w, MatrixView<float> y) noexcept {
  constexpr index PN = RM == 1 ? panel_n : rn;  // RM·PN accumulators: 8 or 16 (AVX-512)
  const float* xr[RM];
  for (index m = 0; m < RM; ++m) xr[m] = x.row(m);
  for (index r0 = 0; r0 < w.rows(); r0 += PN) {
    const float* p[PN];
    for (index n = 0; n < PN; ++n)
      p[n] = reinterpret_cast<const float*>(w.row(std::min(r0 + n, w.rows() - 1)));
    float r[RM * PN];
    matmul_tile::dot_tile<RM, PN>(xr, p, w.cols(), r);
    matmul_tile::store_tile(r, RM, PN, std::min(PN, w.rows() - r0), y, 0, r0, false);
  }
}

template <WeightType T>
inline void project_panels(MatrixView<const float> x, const WeightView& w,
                           MatrixView<float> y) noexcept {
  const index rows = x.rows(), in = x.cols();
  const index slice = std::min(in, panel_k);
  const index block = std::max(panel_m, x_block_bytes / (slice * index(sizeof(float))) / panel_m * panel_m);
  alignas(64) float buffer[panel_n * panel_k];
  for (index k0 = 0; k0 < in; k0 += slice) {
    const index k1 = std::min(in, k0 + slice);
    for (index b0 = 0; b0 < rows; b0 += block) {
      const index b1 = std::min(rows, b0 + block);
      for (index n0 = 0; n0 < w.rows(); n0 += panel_n) {
        const float* p[panel_n];
        load_panel<T>(w, n0, k0, k1, buffer, p);
        const index valid = std::min(panel_n, w.rows() - n0);
        for (index m0 = b0; m0 < b1; m0 += panel_m)
          panel_rows(x, m0, std::min(panel_m, b1 - m0), k0, p, k1 - k0, n0, valid, k0 == 0, y);
      }
    }
  }
}

#else  // the scalar build: the same tiles in plain loops
inline constexpr index rn = 4;
inline constexpr index max_rm = 4;

template <WeightType T, index RM, index RN>
inline void tile(const float* const* x, const Row* w, index k0, index k1,
                 float* out) noexcept {
  float acc[RM * RN] = {};
  index k = k0;
  for (; k + step <= k1; k += step)
    for (index n = 0; n < RN; ++n) {
      float wv[step];
      decode_step_scalar<T>(w[n], k, wv);
      for (index m = 0; m < RM; ++m)
        for (index j = 0; j < step; ++j) acc[m * RN + n] += x[m][k + j] * wv[j];
    }
  if constexpr (element_type<T>) {
    for (; k < k1; ++k)
      for (index n = 0; n < RN; ++n) {
        const float wk = decode_one<T>(w[n], k);
        for (index m = 0; m < RM; ++m) acc[m * RN + n] += x[m][k] * wk;
      }
  }
  for (index i = 0; i < RM * RN; ++i) out[i] = acc[i];
}
#endif


// outputs [m0, m0 + RM) × [n0, n0 + RN) over [k0, k1): written (first slice) or added.
template <WeightType T, index RM, index RN>
inline void tile_into(MatrixView<const float> x, index m0, const WeightView& w, index n0, index k0,
                      index k1, bool first_slice, MatrixView<float> y) noexcept {
  const float* xr[RM];
  for (index m = 0; m < RM; ++m) xr[m] = x.row(m0 + m);
  Row wr[RN];
  // Past the last row of W, repeat it: computed, never stored.
  for (index n = 0; n < RN; ++n) wr[n] = row_of(w, std::min(n0 + n, w.rows() - 1));
  float r[RM * RN];
  tile<T, RM, RN>(xr, wr, k0, k1, r);
  matmul_tile::store_tile(r, RM, RN, std::min(RN, w.rows() - n0), y, m0, n0, !first_slice);
}

// Rows [m0, m0 + count) of x, 0 < count <= max_rm, against rows [n0, n0 + RN) of W.
template <WeightType T, index RN, index RM = max_rm>
inline void tile_rows(MatrixView<const float> x, index m0, index count, const WeightView& w,
                      index n0, index k0, index k1, bool first_slice, MatrixView<float> y) noexcept {
  if constexpr (RM > 1) {
    if (count < RM) return tile_rows<T, RN, RM - 1>(x, m0, count, w, n0, k0, k1, first_slice, y);
  }
  tile_into<T, RM, RN>(x, m0, w, n0, k0, k1, first_slice, y);
}

// Every output: all RM rows of x against RN rows of W a tile, W streaming once.
template <WeightType T, index RM, index RN>
inline void tiles_over_w(MatrixView<const float> x, const WeightView& w,
                         MatrixView<float> y) noexcept {
  for (index n0 = 0; n0 < w.rows(); n0 += RN)
    tile_into<T, RM, RN>(x, 0, w, n0, 0, x.cols(), true, y);
}

// Decode: all rows of x in one tile of RM rows, rn rows of W per pass; W streams once.
template <WeightType T, index RM = max_rm>
inline void project_few(MatrixView<const float> x, const WeightView& w,
                        MatrixView<float> y) noexcept {
  if constexpr (RM > 1) {
    if (x.rows() < RM) return project_few<T, RM - 1>(x, w, y);
  }
#if TFORMER_HAS_SIMD
  if constexpr (T == WeightType::f32) return gemv_f32<RM>(x, w, y);
  if constexpr (RM == 1) {
    if (x.cols() <= gemv_max_in) return gemv<T>(x.row(0), w, y.row(0));
    return tiles_over_w<T, 1, long_rn>(x, w, y);
  }
#endif
  tiles_over_w<T, RM, rn>(x, w, y);
}

template <WeightType T>
inline void project_typed(MatrixView<const float> x, const WeightView& w,
                          MatrixView<float> y) noexcept {
  const index rows = x.rows(), in = x.cols();
  if (rows <= max_rm) return project_few<T>(x, w, y);
#if TFORMER_HAS_SIMD
  return project_panels<T>(x, w, y);
#endif
  constexpr index RN = rn;
  const index slice = std::min(in, slice_values);
  const index block = std::max(max_rm, x_block_bytes / (slice * index(sizeof(float))) / max_rm * max_rm);
  for (index k0 = 0; k0 < in; k0 += slice) {
    const index k1 = std::min(in, k0 + slice);
    for (index b0 = 0; b0 < rows; b0 += block) {
      const index b1 = std::min(rows, b0 + block);
      for (index n0 = 0; n0 < w.rows(); n0 += RN)
        for (index m0 = b0; m0 < b1; m0 += max_rm)
          tile_rows<T, RN>(x, m0, std::min(max_rm, b1 - m0), w, n0, k0, k1, k0 == 0, y);
    }
  }
}

// y = x · Wᵀ + b (b may be empty). Preconditions: shapes agree (x.cols = w.cols, y [x.rows,
// w.rows]), w well formed, y overlaps neither x nor w.
inline void project(MatrixView<const float> x, const WeightView& w, std::span<const float> bias,
                    MatrixView<float> y) noexcept {
  if (w.activations() == Activations::int8) return matmul_int8_kernels::project(x, w, bias, y);
  if (w.activations() == Activations::bf16) return matmul_bf16_kernels::project(x, w, bias, y);
  if (x.rows() == 0 || w.rows() == 0) return;
  if (x.cols() == 0) {
    for (index t = 0; t < y.rows(); ++t) std::fill_n(y.row(t), y.cols(), 0.0f);
  } else {
    switch (w.type()) {
      case WeightType::f32: project_typed<WeightType::f32>(x, w, y); break;
      case WeightType::bf16: project_typed<WeightType::bf16>(x, w, y); break;
      case WeightType::f16: project_typed<WeightType::f16>(x, w, y); break;
      case WeightType::q8_0: project_typed<WeightType::q8_0>(x, w, y); break;
      case WeightType::q4_0: project_typed<WeightType::q4_0>(x, w, y); break;
      case WeightType::q8_group: project_typed<WeightType::q8_group>(x, w, y); break;
      case WeightType::q4_0x16:
      case WeightType::q8_0x16:
        break;  // int8 activations only (check_weight_view), above
    }
  }
  if (!bias.empty())
    for (index t = 0; t < y.rows(); ++t)
      for (index o = 0; o < y.cols(); ++o) y.row(t)[o] += bias[std::size_t(o)];
}

}  // namespace matmul_kernels

// y [T, out] = x [T, in] · wᵀ + bias [out] for a weight of any storage type (bias may be empty).
// Allocates nothing. Throws, writing nothing, unless w is well formed, x.cols = w.cols, y is
// [T, w.rows] and overlaps neither x nor w.
inline void matmul(MatrixView<const float> x, const WeightView& w, std::span<const float> bias,
                   MatrixView<float> y) {
  constexpr const char* where = "matmul";
  check_view(where, "x", x);
  check_weight_view(where, w);
  check_eq(where, "x.cols (= w.cols, the input width)", w.cols(), x.cols());
  check_shape(where, "y", y, x.rows(), w.rows());
  check_disjoint(where, "y", y, "x", x);
  if (y.rows() * y.cols() > 0 && w.rows() * w.cols() > 0) {
    const auto yb = reinterpret_cast<std::uintptr_t>(y.data());
    const auto ye = reinterpret_cast<std::uintptr_t>(y.row(y.rows() - 1) + y.cols());
    const auto wb = reinterpret_cast<std::uintptr_t>(w.data());
    const auto sb = reinterpret_cast<std::uintptr_t>(w.scales());
    if ((yb < wb + std::uintptr_t(w.extent_bytes()) && wb < ye) ||
        (yb < sb + std::uintptr_t(w.scales_extent_bytes()) && sb < ye))
      detail::fail_check(where, "y", "memory disjoint from w", "an overlapping view");
  }
  if (!bias.empty()) check_eq(where, "bias size (= w.rows)", w.rows(), index(bias.size()));
  matmul_kernels::project(x, w, bias, y);
}

inline void matmul(MatrixView<const float> x, const WeightView& w, MatrixView<float> y) {
  matmul(x, w, {}, y);
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
