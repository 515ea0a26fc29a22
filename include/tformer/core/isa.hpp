// Instruction sets at run time: which of the x86-64 levels tformer compiles for this CPU can run,
// and the choice among an engine's per-ISA builds of one function (tformer_add_isa_variants in
// cmake/tformerIsa.cmake), overridable by the environment variable TFORMER_ISA.
//
// The levels, best first, with the flags cmake/tformerIsa.cmake compiles each with:
//   avx512    -march=x86-64-v4  (AVX-512 F, BW, CD, DQ, VL: the skylake-avx512 level)
//   avx2_fma  -march=x86-64-v3  (AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE)
//   sse4_2    -march=x86-64-v2  (SSE3 to SSE4.2, POPCNT)
//   sse2      -march=x86-64     (every x86-64 CPU)
//   scalar    TFORMER_SIMD_SCALAR (plain loops; any CPU)
// The CPU is asked through the compiler's __builtin_cpu_supports, which also checks that the OS
// saves the wide registers: feature by feature (to name what is missing), then, with GCC 12 or
// later, the level as a whole. Not through xsimd 8.1's available_architectures(): it reads SSE2 and
// AVX from the wrong CPUID registers and never asks the OS (docs/CONVENTIONS.md).
#pragma once

#include <array>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "tformer/core/arch.hpp"
#include "tformer/core/error.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

enum class Isa { scalar, sse2, sse4_2, avx2_fma, avx512 };

inline constexpr std::array<Isa, 5> all_isas = {Isa::avx512, Isa::avx2_fma, Isa::sse4_2, Isa::sse2,
                                                Isa::scalar};  // best first

constexpr std::string_view isa_name(Isa isa) noexcept {
  switch (isa) {
    case Isa::scalar:
      return "scalar";
    case Isa::sse2:
      return "sse2";
    case Isa::sse4_2:
      return "sse4_2";
    case Isa::avx2_fma:
      return "avx2_fma";
    case Isa::avx512:
      return "avx512";
  }
  return "?";
}

constexpr std::optional<Isa> parse_isa(std::string_view name) noexcept {
  for (Isa isa : all_isas)
    if (isa_name(isa) == name) return isa;
  return std::nullopt;
}

// The CPU features a level needs beyond the one below it, as __builtin_cpu_supports names them.
namespace isa_detail {
inline constexpr const char* sse4_2_features[] = {"sse3", "ssse3", "sse4.1", "sse4.2", "popcnt"};
inline constexpr const char* avx2_fma_features[] = {"avx", "avx2", "fma", "bmi", "bmi2"};
inline constexpr const char* avx512_features[] = {"avx512f", "avx512bw", "avx512cd", "avx512dq",
                                                  "avx512vl"};
}  // namespace isa_detail
constexpr std::span<const char* const> isa_features(Isa isa) noexcept {
  switch (isa) {
    case Isa::sse4_2:
      return isa_detail::sse4_2_features;
    case Isa::avx2_fma:
      return isa_detail::avx2_fma_features;
    case Isa::avx512:
      return isa_detail::avx512_features;
    default:
      return {};
  }
}

// Whether this CPU (and OS) can run code built for `isa`; empty when it can, else the missing
// feature ("avx512bw", or "x86-64" on another architecture).
inline std::string isa_missing_feature(Isa isa) {
  if (isa == Isa::scalar) return {};
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  // __builtin_cpu_supports needs a string literal, so each name is spelled out once here.
  const auto has = [](std::string_view f) {
    if (f == "sse2") return __builtin_cpu_supports("sse2") != 0;
    if (f == "sse3") return __builtin_cpu_supports("sse3") != 0;
    if (f == "ssse3") return __builtin_cpu_supports("ssse3") != 0;
    if (f == "sse4.1") return __builtin_cpu_supports("sse4.1") != 0;
    if (f == "sse4.2") return __builtin_cpu_supports("sse4.2") != 0;
    if (f == "popcnt") return __builtin_cpu_supports("popcnt") != 0;
    if (f == "avx") return __builtin_cpu_supports("avx") != 0;
    if (f == "avx2") return __builtin_cpu_supports("avx2") != 0;
    if (f == "fma") return __builtin_cpu_supports("fma") != 0;
    if (f == "bmi") return __builtin_cpu_supports("bmi") != 0;
    if (f == "bmi2") return __builtin_cpu_supports("bmi2") != 0;
    if (f == "avx512f") return __builtin_cpu_supports("avx512f") != 0;
    if (f == "avx512bw") return __builtin_cpu_supports("avx512bw") != 0;
    if (f == "avx512cd") return __builtin_cpu_supports("avx512cd") != 0;
    if (f == "avx512dq") return __builtin_cpu_supports("avx512dq") != 0;
    if (f == "avx512vl") return __builtin_cpu_supports("avx512vl") != 0;
    return false;
  };
  if (!has("sse2")) return "sse2";
  for (Isa level : {Isa::sse4_2, Isa::avx2_fma, Isa::avx512}) {
    if (static_cast<int>(level) > static_cast<int>(isa)) break;
    for (const char* f : isa_features(level))
      if (!has(f)) return f;
  }
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
  // GCC 12 also knows the levels as a whole (F16C, LZCNT, MOVBE, CX16, LAHF, … besides the
  // features above), exactly what -march=x86-64-vN may use.
  const bool level = isa == Isa::sse2       ? __builtin_cpu_supports("x86-64") != 0
                     : isa == Isa::sse4_2   ? __builtin_cpu_supports("x86-64-v2") != 0
                     : isa == Isa::avx2_fma ? __builtin_cpu_supports("x86-64-v3") != 0
                                            : __builtin_cpu_supports("x86-64-v4") != 0;
  if (!level) {
    static constexpr const char* names[] = {"", "x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"};
    return std::string("a feature of ") + names[static_cast<int>(isa)];
  }
#endif
  return {};
#else
  return "x86-64";
#endif
}

inline bool isa_supported(Isa isa) { return isa_missing_feature(isa).empty(); }

// The best level this CPU runs.
inline Isa best_supported_isa() {
  for (Isa isa : all_isas)
    if (isa_supported(isa)) return isa;
  return Isa::scalar;
}

// One per-ISA build of a function: which level, and the function.
template <class Fn>
struct IsaVariant {
  Isa isa;
  Fn* fn;
};

// The variant to run: the one TFORMER_ISA names (an error if it was not compiled or the CPU
// cannot run it), else the best the CPU supports. `compiled` lists what was built, any order.
template <class Fn>
IsaVariant<Fn> select_isa_variant(std::span<const IsaVariant<Fn>> compiled,
                                  const char* override_name = std::getenv("TFORMER_ISA")) {
  constexpr const char* where = "select_isa_variant";
  std::string built;
  for (const auto& v : compiled)
    built += (built.empty() ? "" : ", ") + std::string(isa_name(v.isa));
  if (override_name != nullptr && *override_name != '\0') {
    const auto wanted = parse_isa(override_name);
    if (!wanted) [[unlikely]]
      detail::fail_check(where, "TFORMER_ISA", "one of avx512, avx2_fma, sse4_2, sse2, scalar",
                         override_name);
    for (const auto& v : compiled)
      if (v.isa == *wanted) {
        if (const auto missing = isa_missing_feature(v.isa); !missing.empty()) [[unlikely]]
          detail::fail_check(where, "TFORMER_ISA",
                             "a level this CPU runs (it lacks " + missing + ")", override_name);
        return v;
      }
    detail::fail_check(where, "TFORMER_ISA", "a level that was compiled (" + built + ")",
                       override_name);
  }
  const IsaVariant<Fn>* best = nullptr;
  for (const auto& v : compiled)
    if ((best == nullptr || static_cast<int>(v.isa) > static_cast<int>(best->isa)) &&
        isa_supported(v.isa))
      best = &v;
  if (best == nullptr) [[unlikely]]
    detail::fail_check(where, "compiled variants", "one this CPU runs",
                       built.empty() ? "none" : built);
  return *best;
}

template <class Fn, std::size_t N>
IsaVariant<Fn> select_isa_variant(const std::array<IsaVariant<Fn>, N>& compiled,
                                  const char* override_name = std::getenv("TFORMER_ISA")) {
  return select_isa_variant(std::span<const IsaVariant<Fn>>(compiled), override_name);
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer

// Declares and lists an engine's per-ISA builds of one function. tformer_add_isa_variants
// defines TFORMER_ISA_VARIANT_<isa> on the target for each level it compiled; a variant source
// defines the function in namespace NS::TFORMER_ISA_NS (e.g. engine::avx512::forward).
//   TFORMER_DECLARE_ISA_VARIANTS(engine, forward, float(const float*, int))   // at global scope
//   auto chosen = tformer::select_isa_variant(TFORMER_ISA_VARIANTS(engine, forward));
#if defined(TFORMER_ISA_VARIANT_avx512)
#define TFORMER_IF_ISA_avx512(X, ...) X(avx512, __VA_ARGS__)
#else
#define TFORMER_IF_ISA_avx512(X, ...)
#endif
#if defined(TFORMER_ISA_VARIANT_avx2_fma)
#define TFORMER_IF_ISA_avx2_fma(X, ...) X(avx2_fma, __VA_ARGS__)
#else
#define TFORMER_IF_ISA_avx2_fma(X, ...)
#endif
#if defined(TFORMER_ISA_VARIANT_sse4_2)
#define TFORMER_IF_ISA_sse4_2(X, ...) X(sse4_2, __VA_ARGS__)
#else
#define TFORMER_IF_ISA_sse4_2(X, ...)
#endif
#if defined(TFORMER_ISA_VARIANT_sse2)
#define TFORMER_IF_ISA_sse2(X, ...) X(sse2, __VA_ARGS__)
#else
#define TFORMER_IF_ISA_sse2(X, ...)
#endif
#if defined(TFORMER_ISA_VARIANT_scalar)
#define TFORMER_IF_ISA_scalar(X, ...) X(scalar, __VA_ARGS__)
#else
#define TFORMER_IF_ISA_scalar(X, ...)
#endif
// X(isa, args...) for each compiled level, best first.
#define TFORMER_FOR_EACH_ISA_VARIANT(X, ...)                                    \
  TFORMER_IF_ISA_avx512(X, __VA_ARGS__) TFORMER_IF_ISA_avx2_fma(X, __VA_ARGS__) \
      TFORMER_IF_ISA_sse4_2(X, __VA_ARGS__) TFORMER_IF_ISA_sse2(X, __VA_ARGS__) \
          TFORMER_IF_ISA_scalar(X, __VA_ARGS__)

#define TFORMER_DECLARE_ISA_VARIANT_ONE(isa, ns, fn, ...) \
  namespace ns::isa {                                     \
  using fn##_signature = __VA_ARGS__;                     \
  fn##_signature fn;                                      \
  }
#define TFORMER_DECLARE_ISA_VARIANTS(ns, fn, ...) \
  TFORMER_FOR_EACH_ISA_VARIANT(TFORMER_DECLARE_ISA_VARIANT_ONE, ns, fn, __VA_ARGS__)

#define TFORMER_ISA_VARIANT_ENTRY(isa, ns, fn) \
  tformer::IsaVariant<ns::isa::fn##_signature>{tformer::Isa::isa, &ns::isa::fn},
// A std::array of the compiled variants of ns::<isa>::fn.
#define TFORMER_ISA_VARIANTS(ns, fn) \
  std::to_array({TFORMER_FOR_EACH_ISA_VARIANT(TFORMER_ISA_VARIANT_ENTRY, ns, fn)})
