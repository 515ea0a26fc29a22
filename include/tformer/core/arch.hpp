// The compile-time instruction-set choice, as macros; no includes, so every header can use it.
//
// TFORMER_ARCH_NS names the inline namespace that holds all of tformer but `tformer::Error`
// (tformer::avx512, tformer::avx2_fma, tformer::sse2, tformer::scalar, ...). Any inline function
// may be compiled with the instructions a translation unit's -m flags allow, so two units built
// with different flags must not share a symbol: the linker keeps one copy, and the other unit
// would run instructions its flags ruled out. Different namespaces make them different symbols.
// TFORMER_SIMD_SCALAR selects the plain-loop build (namespace `scalar`).
// TFORMER_NO_EXCEPTIONS changes what every check compiles to (abort instead of throw), so it
// too is part of the name: tformer::avx512_abort, tformer::scalar_abort, ...
// TFORMER_ISA_NS is the instruction-set part alone.
#pragma once

#if defined(TFORMER_SIMD_SCALAR)
#define TFORMER_ISA_NS scalar
#elif defined(__AVX512F__)
#define TFORMER_ISA_NS avx512
#define TFORMER_XSIMD_ARCH xsimd::avx512f
#elif defined(__AVX2__) && defined(__FMA__)
#define TFORMER_ISA_NS avx2_fma
#define TFORMER_XSIMD_ARCH xsimd::fma3<xsimd::avx2>
#elif defined(__AVX2__)
#define TFORMER_ISA_NS avx2
#define TFORMER_XSIMD_ARCH xsimd::avx2
#elif defined(__AVX__)
#define TFORMER_ISA_NS avx
#define TFORMER_XSIMD_ARCH xsimd::avx
#elif defined(__SSE4_2__)
#define TFORMER_ISA_NS sse4_2
#define TFORMER_XSIMD_ARCH xsimd::sse4_2
#elif defined(__SSE2__) || defined(_M_X64)
#define TFORMER_ISA_NS sse2
#define TFORMER_XSIMD_ARCH xsimd::sse2
#elif defined(__aarch64__)
#define TFORMER_ISA_NS neon64
#define TFORMER_XSIMD_ARCH xsimd::neon64
#else
#define TFORMER_ISA_NS scalar
#endif

#define TFORMER_STRINGIFY_IMPL(x) #x
#define TFORMER_STRINGIFY(x) TFORMER_STRINGIFY_IMPL(x)
#define TFORMER_CONCAT_IMPL(a, b) a##b
#define TFORMER_CONCAT(a, b) TFORMER_CONCAT_IMPL(a, b)

// A per-ISA build (tformer_add_isa_variants defines TFORMER_ISA_VARIANT=<level>) must compile for
// that level: a stray -m flag in the project's flags would put it in another namespace.
#if defined(TFORMER_ISA_VARIANT)
#define TFORMER_ISA_ID_scalar 1
#define TFORMER_ISA_ID_sse2 2
#define TFORMER_ISA_ID_sse4_2 3
#define TFORMER_ISA_ID_avx 4
#define TFORMER_ISA_ID_avx2 5
#define TFORMER_ISA_ID_avx2_fma 6
#define TFORMER_ISA_ID_avx512 7
#define TFORMER_ISA_ID_neon64 8
#if TFORMER_CONCAT(TFORMER_ISA_ID_, TFORMER_ISA_VARIANT) != TFORMER_CONCAT(TFORMER_ISA_ID_, TFORMER_ISA_NS)
#error "TFORMER_ISA_VARIANT names another level than this unit's flags select (core/arch.hpp)"
#endif
#endif

#if defined(TFORMER_NO_EXCEPTIONS)
#define TFORMER_ARCH_NS TFORMER_CONCAT(TFORMER_ISA_NS, _abort)
#else
#define TFORMER_ARCH_NS TFORMER_ISA_NS
#endif

// Fences around the includes of Eigen and xsimd: GCC 12 reports false -Wmaybe-uninitialized /
// -Wuninitialized inside their AVX-512 intrinsics even through -isystem.
#if defined(__GNUC__) && !defined(__clang__)
#define TFORMER_THIRD_PARTY_BEGIN                                                            \
  _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"") \
      _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")
#define TFORMER_THIRD_PARTY_END _Pragma("GCC diagnostic pop")
#else
#define TFORMER_THIRD_PARTY_BEGIN
#define TFORMER_THIRD_PARTY_END
#endif

// Unrolls the next loop completely (GCC, Clang): small fixed-count loops over arrays of SIMD
// accumulators, which stay in registers only when unrolled; -O2 does not unroll them by itself.
#if defined(__GNUC__) || defined(__clang__)
#define TFORMER_UNROLL _Pragma("GCC unroll 64")
#else
#define TFORMER_UNROLL
#endif
