// Storage number formats for weights: bf16, f16, and the 8-bit and 4-bit blocks of llama.cpp
// (q8_0, q4_0), with conversions from and to float.
//
// Compute is always float; these are how weights sit in memory. The block layouts are GGUF's,
// byte for byte, so a GGUF tensor of these types is used in place:
//   q8_0: 34 bytes = f16 scale d, then 32 int8 q;       value j = q[j]·d
//   q4_0: 18 bytes = f16 scale d, then 16 bytes of nibbles; value j = (n_j − 8)·d with
//         n_j = byte[j] & 0xF for j < 16 and byte[j − 16] >> 4 for j >= 16 (low nibbles first).
// Every decoded value is exact in float (a 4- or 8-bit integer times an 11-bit f16 mantissa), so
// kernels that decode a weight to float compute with exactly the stored value.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "tformer/core/arch.hpp"

#if defined(__F16C__) && !defined(TFORMER_SIMD_SCALAR)
// Fenced: this may be the first include of the intrinsics (to_float below).
TFORMER_THIRD_PARTY_BEGIN
#include <immintrin.h>
TFORMER_THIRD_PARTY_END
#endif

namespace tformer {

// The storage types are plain data outside the instruction-set namespace (like tformer::Error):
// they hold no code, so units built for different instruction sets share them.

// bfloat16: the top 16 bits of a float.
struct bf16 {
  std::uint16_t bits;
};
// IEEE 754 binary16.
struct f16 {
  std::uint16_t bits;
};

// 32 values: an f16 scale and 32 signed 8-bit integers (GGML_TYPE_Q8_0).
struct BlockQ8_0 {
  f16 d;
  std::int8_t q[32];
};
// 32 values: an f16 scale and 32 4-bit integers offset by 8, low nibbles first (GGML_TYPE_Q4_0).
struct BlockQ4_0 {
  f16 d;
  std::uint8_t q[16];
};
static_assert(sizeof(bf16) == 2 && sizeof(f16) == 2);
static_assert(sizeof(BlockQ8_0) == 34 && offsetof(BlockQ8_0, q) == 2, "GGUF's q8_0 block");
static_assert(sizeof(BlockQ4_0) == 18 && offsetof(BlockQ4_0, q) == 2, "GGUF's q4_0 block");

inline namespace TFORMER_ARCH_NS {

// Exact: every bf16 is a float.
inline float to_float(bf16 x) noexcept { return std::bit_cast<float>(std::uint32_t(x.bits) << 16); }

// Round to nearest, ties to even; NaN stays NaN (quiet); overflow rounds to ±inf as IEEE does.
inline bf16 to_bf16(float x) noexcept {
  std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {std::uint16_t((u >> 16) | 0x0040u)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return {std::uint16_t(u >> 16)};
}

// Exact: every f16 (subnormals and ±inf included) is a float; a NaN keeps its payload, quieted
// (as F16C's vcvtph2ps does: the same bits on every build). By F16C where the build has it,
// elsewhere by the bits.
inline float to_float(f16 x) noexcept {
#if defined(__F16C__) && !defined(TFORMER_SIMD_SCALAR)
  return _cvtsh_ss(x.bits);
#else
  const std::uint32_t sign = std::uint32_t(x.bits & 0x8000u) << 16;
  const std::uint32_t exponent = (x.bits >> 10) & 0x1fu, mantissa = x.bits & 0x3ffu;
  if (exponent == 0) {  // zero or subnormal: mantissa · 2^−24, exact in float
    const float magnitude = float(mantissa) * 0x1p-24f;
    return std::bit_cast<float>(sign | std::bit_cast<std::uint32_t>(magnitude));
  }
  if (exponent == 31)  // ±inf, or a NaN with the quiet bit set
    return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13) |
                                (mantissa != 0 ? 0x00400000u : 0u));
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
#endif
}

// The f16 stored at p (any alignment: a block's scale), as float.
inline float f16_at(const std::byte* p) noexcept {
  f16 d;
  std::memcpy(&d, p, sizeof d);
  return to_float(d);
}

// Round to nearest, ties to even, as F16C's vcvtps2ph with rounding mode 0: |x| >= 65520 gives
// ±inf, results below 2^−14 are subnormal, NaN stays NaN (quiet).
inline f16 to_f16(float x) noexcept {
  std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  u &= 0x7fffffffu;
  std::uint32_t h;
  if (u >= 0x47800000u) {  // >= 2^16 (65520 up to there carries into the exponent below)
    h = u > 0x7f800000u ? 0x7e00u : 0x7c00u;
  } else if (u < 0x38800000u) {  // below 2^−14: a subnormal result
    // Adding 0.5 aligns the value's bits at 2^−24 into the low mantissa bits; the float adder
    // rounds to nearest even there.
    const float aligned = std::bit_cast<float>(u) + 0.5f;
    h = std::bit_cast<std::uint32_t>(aligned) - std::bit_cast<std::uint32_t>(0.5f);
  } else {
    const std::uint32_t odd = (u >> 13) & 1u;
    u += 0xc8000fffu + odd;  // rebias the exponent (−112 << 23, mod 2^32) and round
    h = u >> 13;
  }
  return {std::uint16_t(h | sign)};
}

// One q8_0 block from 32 floats: d = max|x| / 127 rounded to f16, q = round(x / d) clamped to
// [−127, 127]. Round trip: |x − q·d| <= d/2 for every element (the clamp moves an element by at
// most 127·|d − max|x|/127| <= max|x|·2^−11 < d/2). Precondition: the 32 values are finite.
inline BlockQ8_0 quantize_q8_0(const float* x) noexcept {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
  BlockQ8_0 b;
  b.d = to_f16(amax / 127.0f);
  const float d = to_float(b.d), inv = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < 32; ++j) {
    const float q = std::nearbyint(x[j] * inv);
    b.q[j] = std::int8_t(std::fmin(127.0f, std::fmax(-127.0f, q)));
  }
  return b;
}

// One q4_0 block from 32 floats, as llama.cpp: the element of largest magnitude m maps to −8, so
// d = −m/8 (sign included) rounded to f16, n = round(x/d) + 8 clamped to [0, 15]. Round trip:
// |x − (n − 8)·d| <= |d|/2 (+ |x|·2^−11 from d's rounding), except that an element near −m is
// clamped to 7·d and may be off by up to |d| = max|x|/8. Precondition: the 32 values are finite.
inline BlockQ4_0 quantize_q4_0(const float* x) noexcept {
  float m = 0.0f;
  for (int j = 0; j < 32; ++j)
    if (std::fabs(x[j]) > std::fabs(m)) m = x[j];
  BlockQ4_0 b;
  b.d = to_f16(m / -8.0f);
  const float d = to_float(b.d), inv = d != 0.0f ? 1.0f / d : 0.0f;
  auto nibble = [&](float v) {
    const float n = std::nearbyint(v * inv) + 8.0f;
    return std::uint8_t(std::fmin(15.0f, std::fmax(0.0f, n)));
  };
  for (int j = 0; j < 16; ++j) b.q[j] = std::uint8_t(nibble(x[j]) | (nibble(x[j + 16]) << 4));
  return b;
}

// The 32 values of a block.
inline void dequantize(const BlockQ8_0& b, float* out) noexcept {
  const float d = to_float(b.d);
  for (int j = 0; j < 32; ++j) out[j] = float(b.q[j]) * d;
}
inline void dequantize(const BlockQ4_0& b, float* out) noexcept {
  const float d = to_float(b.d);
  for (int j = 0; j < 16; ++j) {
    out[j] = float(int(b.q[j] & 0x0f) - 8) * d;
    out[j + 16] = float(int(b.q[j] >> 4) - 8) * d;
  }
}

// A block read from memory at any alignment (GGUF packs 34- and 18-byte blocks back to back).
template <class Block>
inline Block load_block(const std::byte* p) noexcept {
  Block b;
  std::memcpy(&b, p, sizeof(Block));
  return b;
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
