// The compile-time SIMD choice (core/arch.hpp) as types: the xsimd architecture and batch that
// kernels are written against, or none in the scalar build, where kernels run their tail loops
// over the whole range.
#pragma once

#include <cmath>
#include <cstddef>

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
