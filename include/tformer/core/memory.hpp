// AlignedBuffer: the owning, 64-byte aligned array behind every table, cache and workspace, and
// checked_size(): the product of sizes every constructor computes before it allocates.
//
// Move-only; a deep copy is the explicit copy(), so a costly copy is never an accident.
#pragma once

#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <new>
#include <span>
#include <sstream>
#include <string_view>
#include <type_traits>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "tformer/core/arch.hpp"
#include "tformer/core/error.hpp"
#include "tformer/core/views.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

// One cache line; also the widest SIMD register (AVX-512).
inline constexpr std::size_t buffer_alignment = 64;

// Buffers of at least 2 huge pages (4 MiB: caches, weights) start on a 2 MiB boundary and ask
// Linux for transparent huge pages before they are first written (madvise; nothing changes where
// THP is off or already "always"). A stream through a KV cache then crosses a TLB page every
// 2 MiB, not every 4 KiB (a 128 MiB read stream on Zen 4: 7.2 ms on 4 KiB pages, 4.8 ms on huge
// pages; docs/PERFORMANCE.md).
inline constexpr std::size_t huge_page_bytes = std::size_t(2) << 20;
inline constexpr std::size_t alignment_for(std::size_t bytes) noexcept {
  return bytes >= 2 * huge_page_bytes ? huge_page_bytes : buffer_alignment;
}

// The most bytes one buffer may hold: 1 TiB, past any CPU machine's memory. A larger size is bad
// input (usually a wrapped or garbage size), reported before anything is allocated.
inline constexpr std::size_t max_buffer_bytes = std::size_t(1) << 40;

// The product of `factors`, checked: every factor >= 0, and the product times `element_bytes` at
// most max_buffer_bytes, so it neither wraps nor asks for absurd memory. Otherwise throws
//   "KVCache: sequences * layers * kv_heads * slots * head_dim: expected a product of at most
//    2^40 bytes (4-byte elements), got 2 * 3 * 4611686018427387904 * 8 * 128".
inline index checked_size(std::string_view where, std::string_view what,
                          std::initializer_list<index> factors, std::size_t element_bytes) {
  std::size_t product = element_bytes;
  bool ok = true;
  for (const index f : factors)
    ok = ok && f >= 0 && !__builtin_mul_overflow(product, static_cast<std::size_t>(f), &product) &&
         product <= max_buffer_bytes;
  if (!ok) [[unlikely]] {
    std::ostringstream expected, given;
    expected << "a product of at most 2^40 bytes (" << element_bytes << "-byte elements)";
    const char* sep = "";
    for (const index f : factors) given << std::exchange(sep, " * ") << f;
    detail::fail_check(where, what, expected.str(), given.str());
  }
  return static_cast<index>(product / element_bytes);
}

template <class T>
class AlignedBuffer {
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>,
                "AlignedBuffer holds plain numbers");

 public:
  AlignedBuffer() = default;
  // `size` elements, zero-initialised.
  // Throws tformer::Error, stating the bytes, for more than max_buffer_bytes or when the
  // allocation fails (never std::bad_alloc).
  explicit AlignedBuffer(std::size_t size) : size_(size) {
    if (size_ == 0) return;
    if (size_ > max_buffer_bytes / sizeof(T)) [[unlikely]]
      fail_allocation("at most 2^40 bytes");
    const std::size_t alignment = alignment_for(bytes());
    data_ = static_cast<T*>(::operator new (bytes(), std::align_val_t{alignment}, std::nothrow));
    if (data_ == nullptr) [[unlikely]]
      fail_allocation("memory the system can give");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (alignment == huge_page_bytes) madvise(data_, bytes(), MADV_HUGEPAGE);  // advice: may fail
#endif
    std::fill_n(data_, size_, T{});
  }
  AlignedBuffer(AlignedBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { release(); }

  [[nodiscard]] AlignedBuffer copy() const {
    AlignedBuffer out(size_);
    std::copy_n(data_, size_, out.data_);
    return out;
  }

  T* data() noexcept { return data_; }
  const T* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t bytes() const noexcept { return size_ * sizeof(T); }
  T& operator[](std::size_t i) noexcept { return data_[i]; }
  const T& operator[](std::size_t i) const noexcept { return data_[i]; }
  std::span<T> span() noexcept { return {data_, size_}; }
  std::span<const T> span() const noexcept { return {data_, size_}; }

 private:
  void release() noexcept {
    if (data_) ::operator delete (data_, std::align_val_t{alignment_for(bytes())});
    data_ = nullptr;
    size_ = 0;
  }

  [[noreturn]] void fail_allocation(const char* expected) {
    std::ostringstream given;
    given << size_ << " elements of " << sizeof(T) << " bytes";
    size_ = 0;
    detail::fail_check("AlignedBuffer", "size", expected, given.str());
  }

  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
