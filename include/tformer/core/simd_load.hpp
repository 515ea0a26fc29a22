// Values stored as float, bf16, f16 or int8 read as floats: one at a time (as_float) or a
// register's worth at a time (simd::load_float). Every bf16, f16 and int8 is a float, so all are
// exact (an int8 reads as its integer; whoever knows its scale applies it).
//   bf16: its 16 bits moved to the top of a 32-bit lane (the sse2, sse4_2, avx2, avx2_fma and
//         avx512 levels); elsewhere (avx without AVX2, neon64) one value at a time;
//   f16:  F16C's vcvtph2ps (x86 levels with F16C: avx2_fma, avx512); elsewhere one at a time;
//   int8: sign-extended to 32 bits, then converted (sse2 by unpacking and an arithmetic shift,
//         sse4_2, avx2, avx2_fma and avx512 by pmovsxbd); elsewhere (avx, neon64) one at a time.
#pragma once

#include <concepts>
#include <cstdint>
#include <cstring>

#include "tformer/core/arch.hpp"
#include "tformer/core/numeric.hpp"
#include "tformer/core/simd.hpp"

#if TFORMER_HAS_SIMD && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#endif

namespace tformer {

// Types that kernels read as float: float itself, the 16-bit storage types, and int8 (the KV
// cache's q8 rows, scaled by the kernel that reads them).
template <class T>
concept FloatStorage = std::same_as<T, float> || std::same_as<T, bf16> || std::same_as<T, f16> ||
    std::same_as<T, std::int8_t>;

inline namespace TFORMER_ARCH_NS {

inline float as_float(float x) noexcept { return x; }
inline float as_float(bf16 x) noexcept { return to_float(x); }
inline float as_float(f16 x) noexcept { return to_float(x); }
inline float as_float(std::int8_t x) noexcept { return static_cast<float>(x); }

namespace simd {
#if TFORMER_HAS_SIMD

// simd::lanes values from p (unaligned), as floats.
inline batch load_float(const float* p) noexcept { return batch::load_unaligned(p); }

inline batch load_float(const bf16* p) noexcept {
#if defined(__AVX512F__)
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
#elif defined(__AVX2__)
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
#elif defined(__SSE2__) && !defined(__AVX__)  // 4 lanes
  const __m128i h = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), h));  // (0, h) per lane
#else
  alignas(64) float f[lanes];
  for (std::size_t i = 0; i < lanes; ++i) f[i] = to_float(p[i]);
  return batch::load_aligned(f);
#endif
}

inline batch load_float(const f16* p) noexcept {
#if defined(__AVX512F__)
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
#elif defined(__AVX__) && defined(__F16C__)  // 8 lanes
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#else
  alignas(64) float f[lanes];
  for (std::size_t i = 0; i < lanes; ++i) f[i] = to_float(p[i]);
  return batch::load_aligned(f);
#endif
}

inline batch load_float(const std::int8_t* p) noexcept {
#if defined(__AVX512F__)
  return _mm512_cvtepi32_ps(
      _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#elif defined(__AVX2__)
  return _mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
#elif defined(__SSE2__) && !defined(__AVX__)  // 4 lanes
  std::int32_t four;
  std::memcpy(&four, p, sizeof four);
  const __m128i b = _mm_cvtsi32_si128(four);
#if defined(__SSE4_1__)
  return _mm_cvtepi32_ps(_mm_cvtepi8_epi32(b));
#else
  const __m128i w = _mm_unpacklo_epi16(_mm_unpacklo_epi8(b, b), _mm_unpacklo_epi8(b, b));
  return _mm_cvtepi32_ps(_mm_srai_epi32(w, 24));  // each byte at the top of its lane, shifted down
#endif
#else
  alignas(64) float f[lanes];
  for (std::size_t i = 0; i < lanes; ++i) f[i] = static_cast<float>(p[i]);
  return batch::load_aligned(f);
#endif
}

#endif
}  // namespace simd
}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
