// Software prefetch: a hint that asks for the cache line holding an address before a kernel reads
// it. A hint never faults; prefetch(p, ahead) forms its address as an integer, so a line past a
// buffer's end (a stream running ahead of its last row) is no out-of-bounds pointer.
#pragma once

#include <cstdint>

#include "tformer/core/arch.hpp"
#include "tformer/core/views.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

// Where a prefetched line lands: every level down to L1 (x86 prefetcht0), or L2 and beyond, per
// the ISA (prefetcht1), for data read later than the next few hundred cycles.
enum class CacheLevel { L1, L2 };

// Asks for the line holding p into `level`, for reading.
template <CacheLevel level>
inline void prefetch(const void* p) noexcept {
  __builtin_prefetch(p, 0, level == CacheLevel::L1 ? 3 : 2);
}

// Asks for the line `ahead` bytes past p, which may lie past p's buffer: the address is formed as
// an integer, never as an out-of-bounds pointer.
template <CacheLevel level>
inline void prefetch(const void* p, index ahead) noexcept {
  prefetch<level>(
      reinterpret_cast<const void*>(reinterpret_cast<std::uintptr_t>(p) + std::uintptr_t(ahead)));
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
