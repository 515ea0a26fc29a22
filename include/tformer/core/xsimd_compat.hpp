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

#include <type_traits>

namespace tformer {
inline namespace TFORMER_ARCH_NS {
namespace xsimd_compat {

// Sum of all lanes.
template <class T, class A>
inline T reduce_add(const xsimd::batch<T, A>& x) noexcept {
  return xsimd::hadd(x);
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
