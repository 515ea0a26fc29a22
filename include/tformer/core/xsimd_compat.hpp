// The one place that knows which xsimd release we build against (Debian bookworm ships 8.1).
//
// xsimd 8.1 names differ from later releases: the horizontal sum is `hadd` (later `reduce_add`),
// constants are `batch_constant<batch<T, A>, V...>` (later `batch_constant<T, A, V...>`). Kernels
// call the helpers below, never those names directly, so a move to a newer xsimd touches this file.
//
// Also the one place that includes xsimd (fenced: TFORMER_THIRD_PARTY_BEGIN in core/arch.hpp).
#pragma once

#include "tformer/core/arch.hpp"

TFORMER_THIRD_PARTY_BEGIN
#include <xsimd/xsimd.hpp>
TFORMER_THIRD_PARTY_END

#if !defined(XSIMD_VERSION_MAJOR) || XSIMD_VERSION_MAJOR != 8
#error "tformer/core/xsimd_compat.hpp is written for xsimd 8.x (Debian bookworm's libxsimd-dev 8.1)"
#endif

#include <algorithm>
#include <cstddef>
#include <limits>
#include <type_traits>

namespace tformer {
inline namespace TFORMER_ARCH_NS {
namespace xsimd_compat {

// x·y + z rounded once. xsimd 8.1 has no AVX-512 fma: its generic fallback computes x·y + z with
// two roundings in two instructions (half the FMA throughput); here one vfmadd on every ISA
// that has it.
template <class A>
inline xsimd::batch<float, A> fma(const xsimd::batch<float, A>& x, const xsimd::batch<float, A>& y,
                                  const xsimd::batch<float, A>& z) noexcept {
#if defined(__AVX512F__)
  if constexpr (xsimd::batch<float, A>::size == 16) return _mm512_fmadd_ps(x, y, z);
#endif
  return xsimd::fma(x, y, z);
}

// z − x·y rounded once (the same fix).
template <class A>
inline xsimd::batch<float, A> fnma(const xsimd::batch<float, A>& x, const xsimd::batch<float, A>& y,
                                   const xsimd::batch<float, A>& z) noexcept {
#if defined(__AVX512F__)
  if constexpr (xsimd::batch<float, A>::size == 16) return _mm512_fnmadd_ps(x, y, z);
#endif
  return xsimd::fnma(x, y, z);
}

#if defined(__AVX__)
// An AVX lane mask selecting the first n of 8 lanes (the sign bit of each 32-bit lane).
inline __m256i avx_lane_mask(std::size_t n) noexcept {
  alignas(64) static constexpr int ones_then_zeros[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                          0,  0,  0,  0,  0,  0,  0,  0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ones_then_zeros + 8 - n));
}
#endif

// Sum of all lanes.
template <class T, class A>
inline T reduce_add(const xsimd::batch<T, A>& x) noexcept {
  return xsimd::hadd(x);
}

// Largest lane; NaN lanes are skipped (all NaN or all −inf gives −inf). On x86: NaN lanes become
// −inf, then a tree of log2(lanes) shuffle + max steps, no serial chain of one max per lane (decode
// attention asks once per head and tile of keys); elsewhere lane by lane.
template <class A>
inline float reduce_max(const xsimd::batch<float, A>& x) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
#if defined(__AVX512F__)
  if constexpr (B::size == 16) {
    __m512 v =
        _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), _mm512_set1_ps(neg_inf));
    v = _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));  // 256-bit halves
    v = _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, 0xB1));  // 128-bit quarters
    v = _mm512_max_ps(v, _mm512_permute_ps(v, 0x4E));        // pairs of lanes
    v = _mm512_max_ps(v, _mm512_permute_ps(v, 0xB1));        // lanes
    return _mm512_cvtss_f32(v);
  }
#endif
#if defined(__AVX__)
  if constexpr (B::size == 8) {
    __m256 v = _mm256_blendv_ps(x, _mm256_set1_ps(neg_inf), _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    v = _mm256_max_ps(v, _mm256_permute2f128_ps(v, v, 0x01));
    v = _mm256_max_ps(v, _mm256_permute_ps(v, 0x4E));
    v = _mm256_max_ps(v, _mm256_permute_ps(v, 0xB1));
    return _mm256_cvtss_f32(v);
  }
#endif
#if defined(__SSE2__)
  if constexpr (B::size == 4 && std::is_base_of_v<xsimd::sse2, A>) {
    const __m128 nan = _mm_cmpunord_ps(x, x);
    __m128 v = _mm_or_ps(_mm_andnot_ps(nan, x), _mm_and_ps(nan, _mm_set1_ps(neg_inf)));
    v = _mm_max_ps(v, _mm_shuffle_ps(v, v, 0x4E));
    v = _mm_max_ps(v, _mm_shuffle_ps(v, v, 0xB1));
    return _mm_cvtss_f32(v);
  }
#endif
  alignas(64) float lanes[B::size];
  x.store_aligned(lanes);
  float m = neg_inf;
  for (std::size_t i = 0; i < B::size; ++i) m = std::max(m, lanes[i]);
  return m;
}

// The first n lanes (0 <= n <= lanes) from p, the others 0; reads no float past p + n.
// One masked load on AVX-512 and AVX; through a zeroed buffer elsewhere.
template <class A>
inline xsimd::batch<float, A> load_partial(const float* p, std::size_t n) noexcept {
  using B = xsimd::batch<float, A>;
#if defined(__AVX512F__)
  if constexpr (B::size == 16) return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1u), p);
#endif
#if defined(__AVX__)
  if constexpr (B::size == 8) return _mm256_maskload_ps(p, avx_lane_mask(n));
#endif
  alignas(64) float lanes[B::size] = {};
  for (std::size_t i = 0; i < n; ++i) lanes[i] = p[i];
  return B::load_aligned(lanes);
}

// Stores the first n lanes (0 <= n <= lanes) of x to p; writes no float past p + n.
template <class A>
inline void store_partial(float* p, const xsimd::batch<float, A>& x, std::size_t n) noexcept {
  using B = xsimd::batch<float, A>;
#if defined(__AVX512F__)
  if constexpr (B::size == 16) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), x);
    return;
  }
#endif
#if defined(__AVX__)
  if constexpr (B::size == 8) {
    _mm256_maskstore_ps(p, avx_lane_mask(n), x);
    return;
  }
#endif
  alignas(64) float lanes[B::size];
  x.store_aligned(lanes);
  for (std::size_t i = 0; i < n; ++i) p[i] = lanes[i];
}

// Lane i of the result = the sum of all lanes of rows[i]: as many rows as a register has lanes,
// reduced together by transposing and adding, so no row pays a horizontal sum of its own.
// Replaces xsimd::haddp, whose AVX-512 float version (8.1 and upstream as of 2026) returns the
// sums with lanes 2<->4, 3<->5, 10<->12 and 11<->13 exchanged (docs/CONVENTIONS.md).
template <class A>
inline xsimd::batch<float, A> reduce_add_rows(const xsimd::batch<float, A>* rows) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr std::size_t W = B::size;
#if defined(__AVX512F__)
  if constexpr (W == 16) {
    // c_i holds rows (i, i + 4) for i < 4 and (i + 4, i + 8) for i >= 4, each folded 512 -> 256
    // bits; then the 8-row scheme below within each 256-bit half; then the two 128-bit halves
    // of every row's partial sums meet.
    __m512 c[8];
    for (std::size_t i = 0; i < 8; ++i) {
      const __m512 a = rows[i < 4 ? i : i + 4], b = rows[i < 4 ? i + 4 : i + 8];
      c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    }
    // Within each 128-bit lane: [a0 + a1, a2 + a3, b0 + b1, b2 + b3] (what _mm_hadd_ps does).
    const auto hadd = [](__m512 a, __m512 b) {
      return _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x88), _mm512_shuffle_ps(a, b, 0xDD));
    };
    const __m512 lo = hadd(hadd(c[0], c[1]), hadd(c[2], c[3]));  // rows 0-3 | rows 4-7
    const __m512 hi = hadd(hadd(c[4], c[5]), hadd(c[6], c[7]));  // rows 8-11 | rows 12-15
    return _mm512_add_ps(_mm512_shuffle_f32x4(lo, hi, 0x88), _mm512_shuffle_f32x4(lo, hi, 0xDD));
  }
#endif
#if defined(__AVX__)
  if constexpr (W == 8) {
    const __m256 h01 = _mm256_hadd_ps(rows[0], rows[1]), h23 = _mm256_hadd_ps(rows[2], rows[3]);
    const __m256 h45 = _mm256_hadd_ps(rows[4], rows[5]), h67 = _mm256_hadd_ps(rows[6], rows[7]);
    const __m256 lo = _mm256_hadd_ps(h01, h23);  // rows 0-3: first half | second half
    const __m256 hi = _mm256_hadd_ps(h45, h67);  // rows 4-7: first half | second half
    return _mm256_add_ps(_mm256_permute2f128_ps(lo, hi, 0x20), _mm256_permute2f128_ps(lo, hi, 0x31));
  }
#endif
#if defined(__SSE2__)
  if constexpr (W == 4 && std::is_base_of_v<xsimd::sse2, A>) {
    // [r0 lanes 0+2, r1 lanes 0+2, r0 lanes 1+3, r1 lanes 1+3], likewise for rows 2 and 3.
    const __m128 s01 = _mm_add_ps(_mm_unpacklo_ps(rows[0], rows[1]), _mm_unpackhi_ps(rows[0], rows[1]));
    const __m128 s23 = _mm_add_ps(_mm_unpacklo_ps(rows[2], rows[3]), _mm_unpackhi_ps(rows[2], rows[3]));
    return _mm_add_ps(_mm_movelh_ps(s01, s23), _mm_movehl_ps(s23, s01));
  }
#endif
  // Any other architecture: through memory, plainly.
  alignas(64) float lanes[W * W];
  for (std::size_t i = 0; i < W; ++i) rows[i].store_aligned(lanes + i * W);
  alignas(64) float sums[W];
  for (std::size_t i = 0; i < W; ++i) {
    float t = 0.0f;
    for (std::size_t j = 0; j < W; ++j) t += lanes[i * W + j];
    sums[i] = t;
  }
  return B::load_aligned(sums);
}

// A compile-time lane pattern built from Gen::get(lane, lanes), for swizzle().
template <class Batch, class Gen>
constexpr auto index_constant() noexcept {
  using index_batch = xsimd::batch<xsimd::as_unsigned_integer_t<typename Batch::value_type>,
                                   typename Batch::arch_type>;
  return xsimd::make_batch_constant<index_batch, Gen>();
}

// [x1, x0, x3, x2, …]: swaps the two lanes of each adjacent pair. One in-lane shuffle
// (vpermilps / shufps) where xsimd 8.1's generic swizzle would emit a cross-lane permute.
template <class A>
inline xsimd::batch<float, A> swap_adjacent_pairs(const xsimd::batch<float, A>& x) noexcept {
#if defined(__AVX512F__)
  if constexpr (std::is_base_of_v<xsimd::avx512f, A>) return _mm512_permute_ps(x, 0xB1);
#endif
#if defined(__AVX__)
  if constexpr (std::is_base_of_v<xsimd::avx, A>) return _mm256_permute_ps(x, 0xB1);
#endif
#if defined(__SSE2__)
  if constexpr (std::is_base_of_v<xsimd::sse2, A> && xsimd::batch<float, A>::size == 4)
    return _mm_shuffle_ps(x, x, 0xB1);
#endif
  struct Swap {
    static constexpr unsigned get(unsigned lane, unsigned) { return lane ^ 1u; }
  };
  return xsimd::swizzle(x, index_constant<xsimd::batch<float, A>, Swap>());
}

}  // namespace xsimd_compat
}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
