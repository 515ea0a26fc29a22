// AlignedBuffer: the owning, 64-byte aligned array behind every table, cache and workspace.
//
// Move-only; a deep copy is the explicit copy(), so a costly copy is never an accident.
#pragma once

#include <algorithm>
#include <cstddef>
#include <new>
#include <span>
#include <type_traits>
#include <utility>

#include "tformer/core/arch.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

// One cache line; also the widest SIMD register (AVX-512).
inline constexpr std::size_t buffer_alignment = 64;

template <class T>
class AlignedBuffer {
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>,
                "AlignedBuffer holds plain numbers");

 public:
  AlignedBuffer() = default;
  // `size` elements, zero-initialised.
  explicit AlignedBuffer(std::size_t size) : size_(size) {
    if (size_ == 0) return;
    data_ = static_cast<T*>(::operator new (size_ * sizeof(T), std::align_val_t{buffer_alignment}));
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
    if (data_) ::operator delete (data_, std::align_val_t{buffer_alignment});
    data_ = nullptr;
    size_ = 0;
  }

  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
