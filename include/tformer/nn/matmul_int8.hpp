// y = x · Wᵀ with int8 activations (a WeightView whose activations() is Activations::int8): each
// block of 32 values of x is quantized once per call, d = max|x|/127 (f32), q = nearbyint(x/d)
// (as x · (1/d), ties to even), and each output is Σ over blocks of d_w·d_x · Σ q_w·q_x, the
// integer sums exact. The x blocks start at every multiple of 32 of a row, so a row quantizes the
// same in any batch (decode and prefill agree). A block holding a NaN or an infinity gets d = NaN:
// every output it meets is NaN, as in float. A block with 0 < max|x| < 127·2^−126 (d subnormal)
// gets d = 0 and q = 0, as an all-zero block does (block_scale).
//
// Kernels (one block of 32 = one 256-bit register of bytes; with AVX512_VNNI two blocks per
// 512-bit register, which halves the instructions and loads: 1.3–1.5× the 256-bit loop; and for
// one x row, 16 blocks at a time whose integer sums are reduced to one lane each before any
// float work: one conversion and one FMA per 16 blocks instead of one per 2):
//   AVX512_VNNI + VL, or AVX-VNNI: vpdpbusd (unsigned × signed bytes, 4 per int32 lane). q4_0's
//     nibbles n are the unsigned side; q8 weights become unsigned as w ⊕ 0x80 = w + 128. The
//     excess (8 or 128)·Σq_x, computed with x's quantization, starts lane 0 negated (the
//     one-row kernel adds it to each block's reduced sum), so the lanes sum to Σ q_w·q_x exactly.
//   AVX2 (with FMA and F16C): vpmaddubsw + vpmaddwd. q8 as |w| · sign(w)·q_x (pairs within
//     ±32512, no saturation), q4_0 as n·q_x with the same −8·Σq_x start.
//   Otherwise: the integer sums in plain loops.
// Per block and x row: the lanes to float, times d_w·d_x (rounded once), into float accumulators.
// q4_0x16 and q8_0x16 (q4_0 and q8_0 repacked 16 rows at a time, core/weight_view.hpp) have a
// kernel of their own, x16 below: 16 rows of W per step, x's dwords in every lane (broadcast or
// shuffled: dwords_by_shuffle), no horizontal sums.
//
// No allocation: x is quantized into a 64 KiB stack buffer, up to 16 rows and a slice of `in`
// at a time (one row: up to 52,000 values a slice, 43,000 with the 512-bit kernel's SixteenScales;
// 16 rows: 3,264 or 3,232); each slice of W meets the rows of a buffer from L1/L2 (W row outer,
// groups of 4 x rows inner).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <utility>

#include "tformer/core/numeric.hpp"
#include "tformer/core/prefetch.hpp"
#include "tformer/core/simd.hpp"
#include "tformer/core/views.hpp"
#include "tformer/core/weight_view.hpp"

// The 256-bit kernels need AVX2 with FMA and F16C (x86-64-v3 and above); other builds take the
// plain loops.
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) && !defined(TFORMER_SIMD_SCALAR)
#define TFORMER_INT8_AVX2 1
#include <immintrin.h>
#else
#define TFORMER_INT8_AVX2 0
#endif

namespace tformer {
inline namespace TFORMER_ARCH_NS {
namespace matmul_int8_kernels {

inline constexpr index block = 32;

// One quantized block of x: its scale, and −excess·Σq (the kernel's correction, below).
struct BlockScale {
  float d;
  std::int32_t correction;
};

// d = m/127 and 1/d for a block whose largest |x| is m; (0, 0) when d is not a normal float
// (m < 127·2^−126 ≈ 1.5e-36, zero included), where 1/d would overflow or d's rounding could push
// a q past 127: such a block quantizes to q = 0.
struct ScaleAndInverse {
  float d, id;
};
inline ScaleAndInverse block_scale(float m) noexcept {
  const float d = m / 127.0f;
  if (!(d >= std::numeric_limits<float>::min())) return {0.0f, 0.0f};
  return {d, 1.0f / d};
}

// One block of x, xb[0, 32), into q[0, 32), by the definition above; returns its BlockScale.
inline BlockScale quantize_block(const float* xb, std::int32_t excess, std::int8_t* q) noexcept {
#if TFORMER_INT8_AVX2
  // The same operations in 8 lanes: |x| and its maximum (exact in any order), x · (1/d) rounded
  // by vcvtps2dq in the current rounding mode (nearbyint's), then packed to bytes in order.
  const __m256 sign = _mm256_set1_ps(-0.0f), inf = _mm256_set1_ps(INFINITY);
  __m256 v[4], m = _mm256_setzero_ps(), finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  TFORMER_UNROLL for (int k = 0; k < 4; ++k) {
    v[k] = _mm256_loadu_ps(xb + 8 * k);
    const __m256 a = _mm256_andnot_ps(sign, v[k]);
    m = _mm256_max_ps(m, a);
    finite = _mm256_and_ps(finite, _mm256_cmp_ps(a, inf, _CMP_LT_OQ));  // false for NaN and inf
  }
  if (_mm256_movemask_ps(finite) != 0xFF) [[unlikely]] {
    std::memset(q, 0, block);
    return {std::numeric_limits<float>::quiet_NaN(), 0};
  }
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  const auto [d, id] = block_scale(_mm_cvtss_f32(h));
  __m256i i[4];
  TFORMER_UNROLL for (int k = 0; k < 4; ++k)
      i[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], _mm256_set1_ps(id)));
  // Bytes in dwords [x0–3, x8–11, x16–19, x24–27, x4–7, …] after the two packs; then in order.
  const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3]));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q),
                      _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  __m256i t = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
  __m128i t4 = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
  t4 = _mm_add_epi32(t4, _mm_shuffle_epi32(t4, _MM_SHUFFLE(1, 0, 3, 2)));
  t4 = _mm_add_epi32(t4, _mm_shuffle_epi32(t4, _MM_SHUFFLE(2, 3, 0, 1)));
  return {d, -excess * _mm_cvtsi128_si32(t4)};
#else
  float m = 0;
  bool finite = true;
  for (index j = 0; j < block; ++j) {
    m = std::max(m, std::fabs(xb[j]));
    finite &= std::isfinite(xb[j]);
  }
  const auto [d, id] = block_scale(m);
  std::int32_t sum = 0;
  for (index j = 0; j < block; ++j) {
    const std::int32_t v = finite ? std::int32_t(std::nearbyint(xb[j] * id)) : 0;
    q[j] = std::int8_t(v);
    sum += v;
  }
  return {finite ? d : std::numeric_limits<float>::quiet_NaN(), -excess * sum};
#endif
}

// x[0, n) (n a multiple of 32) into q[0, n) and s[0, n/32), a block at a time.
inline void quantize_input(const float* x, index n, std::int32_t excess, std::int8_t* q,
                           BlockScale* s) noexcept {
  for (index b = 0; b < n / block; ++b) s[b] = quantize_block(x + b * block, excess, q + b * block);
}

// The 512-bit kernels: VNNI, with BW (word shuffles), VL (the q8 excess of 128 assumes the VNNI
// kernels, `vnni` below) and DQ (extractf32x8), on top of the 256-bit kernels' AVX2.
#if TFORMER_INT8_AVX2 && defined(__AVX512VNNI__) && defined(__AVX512BW__) && \
    defined(__AVX512VL__) && defined(__AVX512DQ__)
#define TFORMER_INT8_VNNI512 1
#else
#define TFORMER_INT8_VNNI512 0
#endif

// The one-row 512-bit kernel's lane order: lane l of its 16 block sums is block sixteen_lane[l]
// (block_sums below).
inline constexpr int sixteen_lane[16] = {0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15};

// 16 blocks of x in that lane order: each block's correction and scale.
struct alignas(64) SixteenScale {
  std::int32_t correction[16];
  float d[16];
};

// Blocks [0, 16·groups) of s, 16 at a time.
inline void sixteen_scales(const BlockScale* s, index groups, SixteenScale* out) noexcept {
  for (index g = 0; g < groups; ++g)
    for (int l = 0; l < 16; ++l) {
      const BlockScale& b = s[16 * g + sixteen_lane[l]];
      out[g].correction[l] = b.correction;
      out[g].d[l] = b.d;
    }
}

// One row of W as these kernels read it.
struct WRow {
  const std::byte* values;
  const std::byte* scales;  // q8_group
  int shift;                // q8_group: log2(group)
};

// Block b of a row: its scale and its bytes (q8: 32 int8; q4_0: 16 bytes of nibble pairs).
template <WeightType T>
inline float weight_scale(const WRow& w, index b) noexcept {
  if constexpr (T == WeightType::q8_group) {
    float d;
    std::memcpy(&d, w.scales + ((b * block) >> w.shift) * index(sizeof d), sizeof d);
    return d;
  } else {
    static_assert(T == WeightType::q8_0 || T == WeightType::q4_0);  // the scale leads the block
    return f16_at(w.values + b * type_info(T).block_bytes);
  }
}
#if TFORMER_INT8_AVX2
// The same scale in all 8 lanes (an f16 scale broadcast, then converted: no scalar round trip).
template <WeightType T>
inline __m256 weight_scale_lanes(const WRow& w, index b) noexcept {
  if constexpr (T == WeightType::q8_group) {
    return _mm256_set1_ps(weight_scale<T>(w, b));
  } else {
    std::int16_t bits;
    std::memcpy(&bits, w.values + b * type_info(T).block_bytes, 2);
    return _mm256_cvtph_ps(_mm_set1_epi16(bits));
  }
}
#endif

template <WeightType T>
inline const std::byte* weight_bytes(const WRow& w, index b) noexcept {
  static_assert(T == WeightType::q8_group || T == WeightType::q8_0 || T == WeightType::q4_0);
  if constexpr (T == WeightType::q8_group) {
    return w.values + b * block;
  } else {
    return w.values + b * type_info(T).block_bytes + 2;  // past the f16 scale
  }
}

#if TFORMER_INT8_AVX2
inline constexpr bool vnni =
#if (defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__)
    true;
#else
    false;
#endif

// init + Σ of u·s per lane of 4 bytes (u unsigned, s signed). Without VNNI, pairs of u·s must stay
// within ±32767 (vpmaddubsw saturates); the callers' operands keep them there.
inline __m256i dot_lanes(__m256i init, __m256i u, __m256i s) noexcept {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(init, u, s);
#elif defined(__AVXVNNI__)
  return _mm256_dpbusd_avx_epi32(init, u, s);
#else
  return _mm256_add_epi32(init, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

#if TFORMER_INT8_VNNI512
// Lane l = the sum of the 8 lanes of block sixteen_lane[l], where p[k] holds blocks 2k (lanes
// 0–7) and 2k + 1 (lanes 8–15): a tree of 14 shuffles and 7 additions, exact in integers.
inline __m512i block_sums(const __m512i* p) noexcept {
  __m512i q[4], r[2];
  for (int k = 0; k < 4; ++k)  // 128-bit lane i: [P0+P2, Q0+Q2, P1+P3, Q1+Q3] of p[2k], p[2k + 1]
    q[k] = _mm512_add_epi32(_mm512_unpacklo_epi32(p[2 * k], p[2 * k + 1]),
                            _mm512_unpackhi_epi32(p[2 * k], p[2 * k + 1]));
  for (int k = 0; k < 2; ++k)  // 128-bit lane i, lane j: that 128-bit lane of p[4k + j], summed
    r[k] = _mm512_add_epi32(_mm512_unpacklo_epi64(q[2 * k], q[2 * k + 1]),
                            _mm512_unpackhi_epi64(q[2 * k], q[2 * k + 1]));
  // A block is two 128-bit lanes of its register: 0 and 1 (even blocks) or 2 and 3 (odd).
  return _mm512_add_epi32(_mm512_shuffle_i32x4(r[0], r[1], _MM_SHUFFLE(2, 0, 2, 0)),
                          _mm512_shuffle_i32x4(r[0], r[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

// Blocks b and b + 1 of W as vpdpbusd's unsigned operand, in the layout of 64 bytes of x.
template <WeightType T>
inline __m512i unsigned_pair(const WRow& w, index b) noexcept {
  const std::byte *p0 = weight_bytes<T>(w, b), *p1 = weight_bytes<T>(w, b + 1);
  if constexpr (T == WeightType::q4_0) {
    // [bytes b, bytes b, bytes b + 1, bytes b + 1] (16 each), the second and fourth copies
    // shifted to their high nibbles, then the nibbles alone.
    __m512i raw = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p0)));
    raw = _mm512_mask_broadcast_i32x4(raw, 0xFF00,
                                      _mm_loadu_si128(reinterpret_cast<const __m128i*>(p1)));
    const __m512i shifts = _mm512_set_epi64(0x0004000400040004, 0x0004000400040004, 0, 0,
                                            0x0004000400040004, 0x0004000400040004, 0, 0);
    return _mm512_and_si512(_mm512_srlv_epi16(raw, shifts), _mm512_set1_epi8(15));
  } else {
    const __m512i q = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p0))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p1)), 1);
    return _mm512_xor_si512(q, _mm512_set1_epi8(char(0x80)));
  }
}

// W's scales of blocks [b, b + 16) in sixteen_lane order, as floats. q4_0: each 8 blocks' f16
// scales are words 0, 9, …, 63 of the 128 bytes from their first block, one two-register word
// permute each. q8_0 (f16) and q8_group (f32): gathered one at a time through a small array,
// which GCC turns into vmovd/vpinsrw and unpacks (forcing the store and a wide reload instead
// measured slower: the wide load waits for the narrow stores).
template <WeightType T>
inline __m512 sixteen_weight_scales(const WRow& w, index b) noexcept {
  if constexpr (T == WeightType::q4_0) {
    static_assert(type_info(T).block_bytes == 18, "the word indices below count 18-byte blocks");
    const auto* p = reinterpret_cast<const char*>(w.values + b * 18);
    const __m512i to_lanes = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  //
                                              63, 45, 27, 9, 54, 36, 18, 0,   // lanes 8–15
                                              63, 45, 27, 9, 54, 36, 18, 0);  // lanes 0–7
    const __m512i first =
        _mm512_permutex2var_epi16(_mm512_loadu_si512(p), to_lanes, _mm512_loadu_si512(p + 64));
    const __m512i second = _mm512_permutex2var_epi16(_mm512_loadu_si512(p + 144), to_lanes,
                                                     _mm512_loadu_si512(p + 208));
    return _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_mask_blend_epi16(0xFF00u, first, second)));
  } else if constexpr (T == WeightType::q8_group) {
    alignas(64) float d[16];
    for (int l = 0; l < 16; ++l) d[l] = weight_scale<T>(w, b + sixteen_lane[l]);
    return _mm512_load_ps(d);
  } else {
    alignas(32) std::uint16_t h[16];
    for (int l = 0; l < 16; ++l)
      std::memcpy(&h[l], w.values + (b + sixteen_lane[l]) * type_info(T).block_bytes, 2);
    return _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(h)));
  }
}

// Σ over blocks [b, b + 16) of one x row (its bytes xq from block b, its scales xs) against W.
template <WeightType T>
inline __m512 sixteen_blocks(const WRow& w, index b, const std::int8_t* xq, const SixteenScale& xs,
                             __m512 acc) noexcept {
  __m512i p[8];
  TFORMER_UNROLL for (int k = 0; k < 8; ++k) {
    const __m512i x = _mm512_loadu_si512(xq + 2 * k * block);
    p[k] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), unsigned_pair<T>(w, b + 2 * k), x);
  }
  const __m512i sums = _mm512_add_epi32(block_sums(p), _mm512_load_si512(xs.correction));
  const __m512 scale = _mm512_mul_ps(sixteen_weight_scales<T>(w, b), _mm512_load_ps(xs.d));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), scale, acc);
}
#endif

inline float horizontal_sum(__m256 v) noexcept {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// out[m] = Σ over blocks [b0, b1) for the x rows m < RM against one row of W. A = 4/RM
// accumulators per row, taking blocks in turn, so 4 FMA chains cover the FMA latency when few
// rows share a block (one token: A = 4).
template <WeightType T, index RM>
inline void tile(const WRow& w, const std::int8_t* const* xq, const BlockScale* const* xs,
                 [[maybe_unused]] const SixteenScale* const* xg, index b0, index b1,
                 float* out) noexcept {
  constexpr index A = std::max<index>(1, 4 / RM);
  __m256 acc[RM * A];
  TFORMER_UNROLL for (index i = 0; i < RM * A; ++i) acc[i] = _mm256_setzero_ps();
  const auto step = [&](index b, index a) {
    const __m256 dw = weight_scale_lanes<T>(w, b);
    const std::byte* p = weight_bytes<T>(w, b);
    __m256i u, q = _mm256_setzero_si256();
    if constexpr (T == WeightType::q4_0) {
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      u = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(15));
    } else {
      q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
      if constexpr (vnni)
        u = _mm256_xor_si256(q, _mm256_set1_epi8(char(0x80)));
      else
        u = _mm256_sign_epi8(q, q);  // |w|; the sign moves to x below
    }
    TFORMER_UNROLL for (index m = 0; m < RM; ++m) {
      __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[m] + (b - b0) * block));
      if constexpr (T != WeightType::q4_0 && !vnni) s = _mm256_sign_epi8(s, q);
      const BlockScale& xb = xs[m][b - b0];
      const __m256i init = _mm256_zextsi128_si256(_mm_cvtsi32_si128(xb.correction));
      const __m256i lanes = dot_lanes(init, u, s);
      acc[m * A + a] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes),
                                       _mm256_mul_ps(dw, _mm256_set1_ps(xb.d)), acc[m * A + a]);
    }
  };
  index b = b0;
#if TFORMER_INT8_VNNI512
  if constexpr (RM == 1) {  // one x row: 16 blocks a step, then pairs and single blocks below
    __m512 acc16 = _mm512_setzero_ps();
    for (; b + 16 <= b1; b += 16)
      acc16 = sixteen_blocks<T>(w, b, xq[0] + (b - b0) * block, xg[0][(b - b0) / 16], acc16);
    acc[0] = _mm256_add_ps(
        acc[0], _mm256_add_ps(_mm512_castps512_ps256(acc16), _mm512_extractf32x8_ps(acc16, 1)));
  }
#endif
#if TFORMER_INT8_VNNI512
  // Two blocks per 512-bit register: half the instructions, and fewer loads (the limit at one a
  // block: 5 loads per 32 values). Lanes 0–7 hold block b, 8–15 block b + 1.
  __m512 acc2[RM * A];
  TFORMER_UNROLL for (index i = 0; i < RM * A; ++i) acc2[i] = _mm512_setzero_ps();
  const __m512i pick_scale = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const __m512i pick_correction = _mm512_setr_epi32(1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0);
  const auto pair = [&](index b, index a) {
    const std::byte *p0 = weight_bytes<T>(w, b), *p1 = weight_bytes<T>(w, b + 1);
    __m512i u;
    if constexpr (T == WeightType::q4_0) {
      const __m256i raw = _mm256_inserti128_si256(
          _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p0))),
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(p1)), 1);
      const __m256i high = _mm256_srli_epi16(raw, 4);
      // [low nibbles 0, high nibbles 0, low 1, high 1] in 64-bit lanes, then the nibbles alone.
      u = _mm512_and_si512(_mm512_permutex2var_epi64(_mm512_castsi256_si512(raw),
                                                      _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11),
                                                      _mm512_castsi256_si512(high)),
                           _mm512_set1_epi8(15));
    } else {
      const __m512i q = _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p0))),
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p1)), 1);
      u = _mm512_xor_si512(q, _mm512_set1_epi8(char(0x80)));
    }
    __m128 dw;  // [scale b, scale b + 1, –, –]
    if constexpr (T == WeightType::q8_group) {
      dw = _mm_unpacklo_ps(_mm_set_ss(weight_scale<T>(w, b)), _mm_set_ss(weight_scale<T>(w, b + 1)));
    } else {
      std::uint16_t h0, h1;
      std::memcpy(&h0, p0 - 2, 2);
      std::memcpy(&h1, p1 - 2, 2);
      dw = _mm_cvtph_ps(_mm_insert_epi16(_mm_cvtsi32_si128(h0), h1, 1));
    }
    TFORMER_UNROLL for (index m = 0; m < RM; ++m) {
      // xs of blocks b, b + 1: [d, correction, d, correction].
      const __m128 xb = _mm_loadu_ps(reinterpret_cast<const float*>(xs[m] + (b - b0)));
      const __m128 scale = _mm_mul_ps(dw, _mm_shuffle_ps(xb, xb, _MM_SHUFFLE(2, 0, 2, 0)));
      const __m512i init = _mm512_maskz_permutexvar_epi32(0x0101, pick_correction,
                                                          _mm512_castsi128_si512(_mm_castps_si128(xb)));
      const __m512i x = _mm512_loadu_si512(xq[m] + (b - b0) * block);
      const __m512i lanes = _mm512_dpbusd_epi32(init, u, x);
      acc2[m * A + a] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes),
                                        _mm512_permutexvar_ps(pick_scale, _mm512_castps128_ps512(scale)),
                                        acc2[m * A + a]);
    }
  };
  for (; b + 2 * A <= b1; b += 2 * A) {
#pragma GCC unroll 4
    for (index a = 0; a < A; ++a) pair(b + 2 * a, a);
  }
  for (index i = 0; i < RM * A; ++i)
    acc[i] = _mm256_add_ps(acc[i], _mm256_add_ps(_mm512_castps512_ps256(acc2[i]),
                                                 _mm512_extractf32x8_ps(acc2[i], 1)));
#endif
  for (; b + A <= b1; b += A) {
#pragma GCC unroll 4
    for (index a = 0; a < A; ++a) step(b + a, a);
  }
  for (; b < b1; ++b) step(b, 0);
  for (index m = 0; m < RM; ++m) {
    for (index a = 1; a < A; ++a) acc[m * A] = _mm256_add_ps(acc[m * A], acc[m * A + a]);
    out[m] = horizontal_sum(acc[m * A]);
  }
}
#else
// The integer sums in plain loops.
template <WeightType T, index RM>
inline void tile(const WRow& w, const std::int8_t* const* xq, const BlockScale* const* xs,
                 [[maybe_unused]] const SixteenScale* const* xg, index b0, index b1,
                 float* out) noexcept {
  float acc[RM] = {};
  for (index b = b0; b < b1; ++b) {
    const float dw = weight_scale<T>(w, b);
    const auto* p = reinterpret_cast<const std::uint8_t*>(weight_bytes<T>(w, b));
    std::int32_t wq[block];
    for (index j = 0; j < block; ++j) {
      if constexpr (T == WeightType::q4_0)
        wq[j] = std::int32_t(j < 16 ? p[j] & 15 : p[j - 16] >> 4) - 8;
      else
        wq[j] = std::int8_t(p[j]);
    }
    for (index m = 0; m < RM; ++m) {
      const std::int8_t* x = xq[m] + (b - b0) * block;
      std::int32_t sum = 0;
      for (index j = 0; j < block; ++j) sum += wq[j] * std::int32_t(x[j]);
      acc[m] += float(sum) * (dw * xs[m][b - b0].d);
    }
  }
  for (index m = 0; m < RM; ++m) out[m] = acc[m];
}
#endif

// The x16 types (core/weight_view.hpp): one group of 16 rows of W against RM x rows at a time.
// Per block, 64-byte loads that each hold 4 bytes of every row (4 for q4_0x16, whose nibbles make
// two operands each; 8 for q8_0x16); they meet x's dwords in all lanes, so lane r sums
// row r and the 16 outputs need no horizontal sums.
namespace x16 {
template <WeightType T>
inline constexpr index block_bytes = type_info(T).block_bytes;  // 288 or 544
template <WeightType T>
inline constexpr index scales_at = block_bytes<T> - 32;  // the 16 f16 scales follow the values

// The block `prefetch_distance` bytes ahead: the groups follow one another, so this runs ahead
// of one stream, into the next group (measured 1.2–1.8× in a 110M decode from L3;
// docs/CONVENTIONS.md). Past the matrix's end it asks for lines beyond it, harmless for a hint;
// prefetch(p, ahead) forms that address as an integer, never as an out-of-bounds pointer (the
// pointer sum before it measured the same: docs/PERFORMANCE.md, session 53).
inline constexpr index prefetch_distance = 8192;
template <WeightType T>
inline void prefetch_ahead([[maybe_unused]] const std::byte* block) noexcept {
#if TFORMER_INT8_AVX2
  TFORMER_UNROLL for (int c = 0; c < (block_bytes<T> + 63) / 64; ++c)
      prefetch<CacheLevel::L1>(block, prefetch_distance + 64 * c);
#endif
}

// x's 4 bytes [4i, 4i + 4) of block b, as one int32 for a broadcast.
inline std::int32_t dword(const std::int8_t* xb, index i) noexcept {
  std::int32_t v;
  std::memcpy(&v, xb + 4 * i, 4);
  return v;
}

// x's 8 dwords of a block, each in all lanes: 8 broadcasts from memory, or two 16-byte loads into
// every 128-bit lane and a shuffle a dword. The shuffles trade loads for shuffle-pipe work, which
// paid in cache where loads limit the loop: q8_0x16 (8 weight loads a block) with VNNI (the AVX2
// kernel also asks for `vnni`), and q4_0x16 in one-row tiles on AVX-512. Elsewhere they measured
// 0.80–0.95× (q4_0x16: its nibble work takes the same pipes) and 0.94–1.04× (q8_0x16 without VNNI)
// (docs/PERFORMANCE.md, "x's dwords by shuffles").
template <WeightType T, index RM>
inline constexpr bool dwords_by_shuffle = T == WeightType::q8_0x16 ||
                                          (RM == 1 && TFORMER_INT8_VNNI512);
#if TFORMER_INT8_VNNI512
// Bytes [16h, 16h + 16) of x's block in all four 128-bit lanes; dword_lanes<c> of it is the
// block's dword 4h + c in every lane.
inline __m512i quad_lanes(const std::int8_t* xb, int h) noexcept {
  return _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xb + 16 * h)));
}
template <int C>
inline __m512i dword_lanes(__m512i quads) noexcept {
  return _mm512_shuffle_epi32(quads, _MM_PERM_ENUM(C * 0x55));
}
#endif
#if TFORMER_INT8_AVX2
// The same in both 128-bit lanes of a 256-bit register.
inline __m256i quad_lanes_256(const std::int8_t* xb, int h) noexcept {
  return _mm256_broadcastsi128_si256(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(xb + 16 * h)));
}
template <int C>
inline __m256i dword_lanes(__m256i quads) noexcept {
  return _mm256_shuffle_epi32(quads, C * 0x55);
}
#endif

#if TFORMER_INT8_VNNI512
inline constexpr index rm = 4;
// The 64-byte weight vectors of a block: 4 for q4_0x16 (both nibbles), 8 for q8_0x16.
template <WeightType T>
inline constexpr int vectors = T == WeightType::q4_0x16 ? 4 : 8;
// out[m][r] = Σ over blocks [0, blocks) of x row m against row r of the group at `group`.
// Precondition: blocks ≥ 1.
template <WeightType T, index RM>
inline void group_tile(const std::byte* group, const std::int8_t* const* xq,
                       const BlockScale* const* xs, index blocks, float (*out)[16]) noexcept {
  __m512 acc[RM];
  TFORMER_UNROLL for (index m = 0; m < RM; ++m) acc[m] = _mm512_setzero_ps();
  const __m512i low = _mm512_set1_epi8(15);
  // acc[m] += x row m · block b, whose vectors are v.
  const auto add_block = [&](const __m512i(&v)[vectors<T>], index b) {
    // The unsigned operands: of x's dwords c (chain 0) and 4 + c (chain 1). q4_0x16: the low
    // nibbles, and the high ones as they lie (16× their value); q8_0x16: the bytes as stored.
    __m512i u[2][4];
    TFORMER_UNROLL for (int c = 0; c < 4; ++c) {
      if constexpr (T == WeightType::q4_0x16) {
        u[0][c] = _mm512_and_si512(v[c], low);
        u[1][c] = _mm512_andnot_si512(low, v[c]);
      } else {
        u[0][c] = v[c];
        u[1][c] = v[4 + c];
      }
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(group + b * block_bytes<T> + scales_at<T>)));
    TFORMER_UNROLL for (index m = 0; m < RM; ++m) {
      const std::int8_t* xb = xq[m] + b * block;
      __m512i s0 = _mm512_set1_epi32(xs[m][b].correction), s1 = _mm512_setzero_si512();
      if constexpr (dwords_by_shuffle<T, RM>) {
        const __m512i x0 = quad_lanes(xb, 0), x1 = quad_lanes(xb, 1);  // dwords 0–3, 4–7
        [&]<int... C>(std::integer_sequence<int, C...>) {
          ((s0 = _mm512_dpbusd_epi32(s0, u[0][C], dword_lanes<C>(x0)),
            s1 = _mm512_dpbusd_epi32(s1, u[1][C], dword_lanes<C>(x1))),
           ...);
        }
        (std::make_integer_sequence<int, 4>{});
      } else {
        TFORMER_UNROLL for (int c = 0; c < 4; ++c) {
          s0 = _mm512_dpbusd_epi32(s0, u[0][c], _mm512_set1_epi32(dword(xb, c)));
          s1 = _mm512_dpbusd_epi32(s1, u[1][c], _mm512_set1_epi32(dword(xb, 4 + c)));
        }
      }
      if constexpr (T == WeightType::q4_0x16) s1 = _mm512_srai_epi32(s1, 4);  // 16·Σ, exact
      acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)),
                               _mm512_mul_ps(dw, _mm512_set1_ps(xs[m][b].d)), acc[m]);
    }
  };
  const auto load = [&](__m512i(&v)[vectors<T>], index b) {
    TFORMER_UNROLL for (int c = 0; c < vectors<T>; ++c) v[c] =
        _mm512_loadu_si512(group + b * block_bytes<T> + 64 * c);
  };
  __m512i v[vectors<T>];
  if constexpr (T == WeightType::q4_0x16) {
    // Block b + 1's vectors load before block b's arithmetic: from DRAM the 1.1B step took 4–14 %
    // less time than with each block's loads in its own iteration. q8_0x16 (8 vectors a block),
    // pipelined so, took 8–20 % longer in L2 and was no faster from DRAM (session 44). The
    // vectors are carried in registers, so `and` and `andnot` take one load (no in_register).
    load(v, 0);
    for (index b = 0; b + 1 < blocks; ++b) {
      prefetch_ahead<T>(group + b * block_bytes<T>);
      __m512i next[vectors<T>];
      load(next, b + 1);
      add_block(v, b);
      TFORMER_UNROLL for (int c = 0; c < vectors<T>; ++c) v[c] = next[c];
    }
    prefetch_ahead<T>(group + (blocks - 1) * block_bytes<T>);
    add_block(v, blocks - 1);
  } else {
    for (index b = 0; b < blocks; ++b) {
      prefetch_ahead<T>(group + b * block_bytes<T>);
      load(v, b);
      add_block(v, b);
    }
  }
  TFORMER_UNROLL for (index m = 0; m < RM; ++m) _mm512_storeu_ps(out[m], acc[m]);
}
#elif TFORMER_INT8_AVX2
inline constexpr index rm = 2;
// As above, rows 0–7 of the group (the low 32 bytes of each 64) and then rows 8–15.
template <WeightType T, index RM>
inline void group_tile(const std::byte* group, const std::int8_t* const* xq,
                       const BlockScale* const* xs, index blocks, float (*out)[16]) noexcept {
  const __m256i low = _mm256_set1_epi8(15);
  for (index h = 0; h < 2; ++h) {
    __m256 acc[RM];
    TFORMER_UNROLL for (index m = 0; m < RM; ++m) acc[m] = _mm256_setzero_ps();
    for (index b = 0; b < blocks; ++b) {
      const std::byte* p = group + b * block_bytes<T> + 32 * h;
      if (h == 0) prefetch_ahead<T>(p);
      const auto load = [&](int c) {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 64 * c));
      };
      __m256i u[8];  // the operands of x's dwords 0–7
      TFORMER_UNROLL for (int c = 0; c < 4; ++c) {
        if constexpr (T == WeightType::q4_0x16) {
          __m256i v = load(c);
          simd::in_register(v);  // one load for both nibbles
          u[c] = _mm256_and_si256(v, low);
          u[4 + c] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);  // vpmaddubsw: pairs small
        } else {
          u[c] = load(c);
          u[4 + c] = load(4 + c);
        }
      }
      const __m256 dw = _mm256_cvtph_ps(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(p - 32 * h + scales_at<T> + 16 * h)));
      TFORMER_UNROLL for (index m = 0; m < RM; ++m) {
        const std::int8_t* xb = xq[m] + b * block;
        __m256i s0 = _mm256_set1_epi32(xs[m][b].correction), s1 = _mm256_setzero_si256();
        __m256i xd[8];  // x's dwords, each in all lanes
        if constexpr (vnni && dwords_by_shuffle<T, RM>) {
          const __m256i x0 = quad_lanes_256(xb, 0), x1 = quad_lanes_256(xb, 1);
          [&]<int... C>(std::integer_sequence<int, C...>) {
            ((xd[C] = dword_lanes<C>(x0), xd[4 + C] = dword_lanes<C>(x1)), ...);
          }
          (std::make_integer_sequence<int, 4>{});
        } else {
          TFORMER_UNROLL for (int c = 0; c < 8; ++c) xd[c] = _mm256_set1_epi32(dword(xb, c));
        }
        TFORMER_UNROLL for (int c = 0; c < 8; ++c) {
          __m256i w = u[c], x = xd[c];
          if constexpr (T == WeightType::q8_0x16 && !vnni) {
            // q + 128 → q, then |q| · sign(q)·x: vpmaddubsw's pairs within ±32512
            const __m256i q = _mm256_xor_si256(w, _mm256_set1_epi8(char(0x80)));
            w = _mm256_sign_epi8(q, q);
            x = _mm256_sign_epi8(x, q);
          }
          (c % 2 ? s1 : s0) = dot_lanes(c % 2 ? s1 : s0, w, x);
        }
        acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)),
                                 _mm256_mul_ps(dw, _mm256_set1_ps(xs[m][b].d)), acc[m]);
      }
    }
    TFORMER_UNROLL for (index m = 0; m < RM; ++m) _mm256_storeu_ps(out[m] + 8 * h, acc[m]);
  }
}
#else
inline constexpr index rm = 2;
// The integer sums in plain loops, a row of the group at a time.
template <WeightType T, index RM>
inline void group_tile(const std::byte* group, const std::int8_t* const* xq,
                       const BlockScale* const* xs, index blocks, float (*out)[16]) noexcept {
  for (index m = 0; m < RM; ++m) std::fill_n(out[m], 16, 0.0f);
  for (index b = 0; b < blocks; ++b) {
    const std::byte* block_at = group + b * block_bytes<T>;
    const auto* p = reinterpret_cast<const std::uint8_t*>(block_at);
    for (index r = 0; r < 16; ++r) {
      std::int32_t wq[block];
      for (index c = 0; c < 8; ++c)
        for (index i = 0; i < 4; ++i) {
          if constexpr (T == WeightType::q4_0x16) {
            const std::uint8_t v = p[64 * (c % 4) + 4 * r + i];
            wq[4 * c + i] = std::int32_t(c < 4 ? v & 15 : v >> 4) - 8;
          } else {
            wq[4 * c + i] = std::int32_t(p[64 * c + 4 * r + i]) - 128;
          }
        }
      const float dw = f16_at(block_at + scales_at<T> + 2 * r);
      for (index m = 0; m < RM; ++m) {
        const std::int8_t* xb = xq[m] + b * block;
        std::int32_t sum = 0;
        for (index j = 0; j < block; ++j) sum += wq[j] * std::int32_t(xb[j]);
        out[m][r] += float(sum) * (dw * xs[m][b].d);
      }
    }
  }
}
#endif
}  // namespace x16

// Calls tile.template operator()<R>(m0) for tiles [m0, m0 + R) covering [m0, count): R = RM while
// RM rows remain, then one smaller tile for the rest.
template <index RM, class Tile>
inline void for_tiles(index m0, index count, Tile& tile) noexcept {
  for (; count - m0 >= RM; m0 += RM) tile.template operator()<RM>(m0);
  if constexpr (RM > 1)
    if (m0 < count) for_tiles<RM - 1>(m0, count, tile);
}

// The unsigned operand's offset per unit of Σq_x, which the kernel subtracts: 8 for q4_0's
// nibbles, 128 for q8 weights made unsigned (VNNI); none where the kernel multiplies signed values.
template <WeightType T>
inline constexpr std::int32_t excess = 0;
#if TFORMER_INT8_AVX2
template <>
inline constexpr std::int32_t excess<WeightType::q4_0> = 8;
template <>
inline constexpr std::int32_t excess<WeightType::q4_0x16> = 8;
template <>
inline constexpr std::int32_t excess<WeightType::q8_0> = vnni ? 128 : 0;
template <>
inline constexpr std::int32_t excess<WeightType::q8_0x16> = vnni ? 128 : 0;
template <>
inline constexpr std::int32_t excess<WeightType::q8_group> = vnni ? 128 : 0;
#endif

// Rows of x quantized together, the stack buffer, and 4 x rows per tile.
inline constexpr index rows_per_buffer = 16;
inline constexpr index buffer_bytes = 64 * 1024;
inline constexpr index rm = 4;

// One buffer of quantized x: rows [t0, t0 + count) and values [k0, k0 + 32·blocks) of x; row m
// of the buffer has its bytes xq[m], its block scales xs[m] and (xg[m], the 512-bit one-row
// kernel's, when asked for) its SixteenScales.
struct XBuffer {
  index t0, count, k0, blocks;
  const std::int8_t* const* xq;
  const BlockScale* const* xs;
  const SixteenScale* const* xg;
};

// Quantizes x (quantize_input, with x_excess: the kernel's excess<T>) into the stack buffer, up
// to rows_per_buffer rows and as many whole blocks of `in` as fit, and calls body(const XBuffer&)
// for each buffer.
// `sixteen`: also SixteenScales for the one row that meets W alone (project_typed's last tile when
// count % rm == 1), a sixteenth of one per block, the array on the next 64-byte boundary.
template <class Body>
inline void for_quantized_x(MatrixView<const float> x, std::int32_t x_excess, bool sixteen,
                            Body&& body) noexcept {
  const index T_ = x.rows(), in = x.cols();
  const index R = std::min(T_, rows_per_buffer);
  const index group_bytes = sixteen ? index(sizeof(SixteenScale)) / 16 : 0;
  const index room = buffer_bytes - (sixteen ? 64 : 0);
  const index slice =
      std::min(in, room / (R * (block + index(sizeof(BlockScale))) + group_bytes) * block);
  alignas(64) std::byte buffer[buffer_bytes];
  for (index t0 = 0; t0 < T_; t0 += R) {
    const index count = std::min(R, T_ - t0);
    for (index k0 = 0; k0 < in; k0 += slice) {
      const index n = std::min(slice, in - k0), blocks = n / block;
      std::int8_t* xq[rows_per_buffer];
      BlockScale* xs[rows_per_buffer];
      SixteenScale* xg[rows_per_buffer] = {};
      const index groups_at = (count * (n + blocks * index(sizeof(BlockScale))) + 63) / 64 * 64;
      for (index m = 0; m < count; ++m) {
        xq[m] = reinterpret_cast<std::int8_t*>(buffer) + m * n;
        xs[m] = reinterpret_cast<BlockScale*>(buffer + count * n) + m * blocks;
        quantize_input(x.row(t0 + m) + k0, n, x_excess, xq[m], xs[m]);
        if (sixteen && m == count - 1 && count % rm == 1) {
          xg[m] = reinterpret_cast<SixteenScale*>(buffer + groups_at);
          sixteen_scales(xs[m], blocks / 16, xg[m]);
        }
      }
      body(XBuffer{t0, count, k0, blocks, xq, xs, xg});
    }
  }
}

// y = x · Wᵀ for q8_0, q4_0 and q8_group: each row of W against the buffer's rows, rm at a time.
template <WeightType T>
inline void project_typed(MatrixView<const float> x, const WeightView& w,
                          MatrixView<float> y) noexcept {
  const int shift =
      w.type() == WeightType::q8_group ? std::countr_zero(std::uint64_t(w.group())) : 0;
  for_quantized_x(x, excess<T>, TFORMER_INT8_VNNI512, [&](const XBuffer& xb) {
    const index b0 = xb.k0 / block, b1 = b0 + xb.blocks;
    for (index o = 0; o < w.rows(); ++o) {
      const WRow row{w.row(o), w.scale_row(o), shift};
      auto tile_at = [&]<index RM>(index m0) {
        float r[RM];
        tile<T, RM>(row, xb.xq + m0, xb.xs + m0, xb.xg + m0, b0, b1, r);
        for (index m = 0; m < RM; ++m) {
          float& dst = y.row(xb.t0 + m0 + m)[o];
          dst = xb.k0 == 0 ? r[m] : dst + r[m];
        }
      };
      for_tiles<rm>(0, xb.count, tile_at);
    }
  });
}

// y = x · Wᵀ for the x16 types: each group of 16 rows of W against the buffer's rows, x16::rm at
// a time, into 16 columns of y (fewer for the last group, whose padding rows are not stored).
template <WeightType T>
inline void project_x16(MatrixView<const float> x, const WeightView& w,
                        MatrixView<float> y) noexcept {
  for_quantized_x(x, excess<T>, false, [&](const XBuffer& xb) {
    for (index g = 0; g < w.stored_rows(); ++g) {
      const std::byte* group = w.row_group(g) + xb.k0 / block * x16::block_bytes<T>;
      const index o0 = 16 * g, n = std::min<index>(16, w.rows() - o0);
      auto tile_at = [&]<index RM>(index m0) {
        alignas(64) float r[RM][16];
        x16::group_tile<T, RM>(group, xb.xq + m0, xb.xs + m0, xb.blocks, r);
        for (index m = 0; m < RM; ++m) {
          float* dst = y.row(xb.t0 + m0 + m) + o0;
          for (index i = 0; i < n; ++i) dst[i] = xb.k0 == 0 ? r[m][i] : dst[i] + r[m][i];
        }
      };
      for_tiles<x16::rm>(0, xb.count, tile_at);
    }
  });
}

// y = x · Wᵀ + b with int8 activations. Preconditions: as matmul_kernels::project, and w's type
// supports int8 activations (check_weight_view).
inline void project(MatrixView<const float> x, const WeightView& w, std::span<const float> bias,
                    MatrixView<float> y) noexcept {
  if (x.rows() == 0 || w.rows() == 0) return;
  if (x.cols() == 0) {
    for (index t = 0; t < y.rows(); ++t) std::fill_n(y.row(t), y.cols(), 0.0f);
  } else if (w.type() == WeightType::q8_0) {
    project_typed<WeightType::q8_0>(x, w, y);
  } else if (w.type() == WeightType::q4_0) {
    project_typed<WeightType::q4_0>(x, w, y);
  } else if (w.type() == WeightType::q4_0x16) {
    project_x16<WeightType::q4_0x16>(x, w, y);
  } else if (w.type() == WeightType::q8_0x16) {
    project_x16<WeightType::q8_0x16>(x, w, y);
  } else {
    project_typed<WeightType::q8_group>(x, w, y);
  }
  if (!bias.empty())
    for (index t = 0; t < y.rows(); ++t)
      for (index o = 0; o < y.cols(); ++o) y.row(t)[o] += bias[std::size_t(o)];
}

}  // namespace matmul_int8_kernels
}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
