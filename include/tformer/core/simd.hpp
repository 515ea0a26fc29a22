// The compile-time SIMD choice (core/arch.hpp) as types: the xsimd architecture and batch that
// kernels are written against, or none in the scalar build, where kernels run their tail loops
// over the whole range.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "tformer/core/arch.hpp"

#if defined(TFORMER_XSIMD_ARCH)
#define TFORMER_HAS_SIMD 1
#include "tformer/core/xsimd_compat.hpp"
#else
#define TFORMER_HAS_SIMD 0
#endif

namespace tformer {
inline namespace TFORMER_ARCH_NS {
namespace simd {

// The name of the inline namespace this translation unit's tformer lives in.
inline constexpr const char* arch_name = TFORMER_STRINGIFY(TFORMER_ARCH_NS);
// Its instruction-set part (arch_name without the _abort of TFORMER_NO_EXCEPTIONS).
inline constexpr const char* isa_name = TFORMER_STRINGIFY(TFORMER_ISA_NS);

#if TFORMER_HAS_SIMD
using arch = TFORMER_XSIMD_ARCH;
using batch = xsimd::batch<float, arch>;
// Floats in one register.
inline constexpr std::size_t lanes = batch::size;

// exp(x) lane by lane for x ≤ 0 (softmax weights: a score less the running maximum) in 16
// vector operations against xsimd::exp's 20 (AVX-512, GCC 12): no overflow test, and 2^k added to
// the exponent bits, not multiplied. Cephes' range reduction and xsimd's polynomial (as
// xsimd::exp): relative error within 2^−22 for −86.5 ≤ x ≤ 88 (tests/core/xsimd_compat_test.cpp).
// Below −86.5 (e^−86.5 ≈ 2.7e−38, near float's smallest normal) and at −inf the result is 0;
// NaN, whatever its payload, stays NaN. Undefined for x > 88.
inline batch exp_nonpositive(const batch& x) noexcept {
  // Added to a float below 2^22 in magnitude, leaves its nearest integer in the mantissa.
  const batch round(0x1.8p23f);
  const batch t = xsimd_compat::fma(x, batch(1.44269504088896341f), round);  // x·log2(e) + round
  const batch k = t - round;                                                 // the integer k
  batch r = xsimd_compat::fnma(k, batch(0.693359375f), x);  // x − k·ln 2 in two parts
  r = xsimd_compat::fnma(k, batch(-2.12194440e-4f), r);     // |r| ≤ ln 2 / 2
  batch p = xsimd_compat::fma(batch(1.3997796e-3f), r, batch(8.3955629e-3f));
  p = xsimd_compat::fma(p, r, batch(4.1665401e-2f));
  p = xsimd_compat::fma(p, r, batch(1.6666277e-1f));
  p = xsimd_compat::fma(p, r, batch(0.5f));
  p = xsimd_compat::fma(p, r * r, r) + batch(1.0f);  // e^r
  // e^r · 2^k: k shifted into the exponent field. (Not t's low bits: a NaN's payload would land
  // there and could make a number of it; a NaN k converts to 0x80000000, which shifts to 0.)
  using ints = xsimd::batch<std::int32_t, arch>;
  const ints scaled = xsimd::bitwise_cast<ints>(p) + (xsimd::to_int(k) << 23);
  return xsimd::select(x < batch(-86.5f), batch(0.0f), xsimd::bitwise_cast<batch>(scaled));
}
#else
inline constexpr std::size_t lanes = 1;
#endif

// Keeps a loaded vector (an intrinsic's type, or a batch's .data) in a register. GCC folds a load
// into every instruction that uses the value, so a vector used n times is loaded n times; where
// loads limit a loop (the matmul tiles), that costs. No code: an empty asm that claims to change v.
template <class V>
inline void in_register([[maybe_unused]] V& v) noexcept {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  asm("" : "+v"(v));
#endif
}

// a·b + c: one rounding where the target has a fused multiply-add, two otherwise, alike in every
// inlined copy (`c += a * b` is fused or not per copy, at GCC's choice). For scalar tails whose
// bits must match across storage types.
inline float multiply_add(float a, float b, float c) noexcept {
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA) || defined(__FP_FAST_FMAF)
  return std::fma(a, b, c);
#else
  return a * b + c;  // no fused instruction to contract into
#endif
}

}  // namespace simd
}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
