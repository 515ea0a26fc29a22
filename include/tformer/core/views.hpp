// Non-owning views over caller-owned activations and weights.
//
// HeadsView<T> describes `[tokens, heads, head_dim]` data: head_dim innermost and contiguous, the
// heads of one token adjacent, and tokens `token_stride` elements apart. A token stride larger
// than heads·head_dim lets one view select Q, K or V inside a fused QKV row without a copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>

#include "tformer/core/arch.hpp"
#include "tformer/core/error.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

namespace detail {
// The error of a failed check_view: a null pointer, or `shape` breaking `rule`.
[[noreturn]] inline void fail_view(std::string_view where, std::string_view name, bool data_ok,
                                   bool sizes_ok, const char* stride_rule,
                                   const std::string& shape) {
  if (!data_ok) fail_check(where, std::string(name) + " data", "a non-null pointer", "nullptr");
  fail_check(where, std::string(name) + " shape",
             sizes_ok ? stride_rule : "non-negative sizes spanning fewer than 2^63 bytes", shape);
}
}  // namespace detail

// Signed sizes and indices, as Eigen's Index.
using index = std::ptrdiff_t;

namespace detail {
// Whether `outer` rows `stride` elements apart, each `inner` elements long (all >= 0), span
// more bytes of T than an index can count: the products a view's accessors compute then wrap.
template <class T>
constexpr bool span_overflows(index outer, index stride, index inner) noexcept {
  index last = 0, end = 0, bytes = 0;
  return outer > 0 && (__builtin_mul_overflow(outer - 1, stride, &last) ||
                       __builtin_add_overflow(last, inner, &end) ||
                       __builtin_mul_overflow(end, index(sizeof(T)), &bytes));
}
}  // namespace detail

template <class T>
class HeadsView {
 public:
  using element_type = T;

  constexpr HeadsView() = default;
  // Dense `[tokens, heads, head_dim]` (a product that wraps makes check_view fail, never UB here).
  constexpr HeadsView(T* data, index tokens, index heads, index head_dim)
      : HeadsView(data, tokens, heads, head_dim,
                  static_cast<index>(static_cast<std::size_t>(heads) *
                                     static_cast<std::size_t>(head_dim))) {}
  // Tokens `token_stride` elements apart.
  constexpr HeadsView(T* data, index tokens, index heads, index head_dim, index token_stride)
      : data_(data),
        tokens_(tokens),
        heads_(heads),
        head_dim_(head_dim),
        token_stride_(token_stride) {}

  // A view of const T converts from a view of T.
  template <class U>
  requires(std::is_same_v<const U, T> &&
           !std::is_same_v<U, T>) constexpr HeadsView(const HeadsView<U>& other)
      : HeadsView(other.data(), other.tokens(), other.heads(), other.head_dim(),
                  other.token_stride()) {}

  constexpr T* data() const noexcept { return data_; }
  constexpr index tokens() const noexcept { return tokens_; }
  constexpr index heads() const noexcept { return heads_; }
  constexpr index head_dim() const noexcept { return head_dim_; }
  constexpr index token_stride() const noexcept { return token_stride_; }
  constexpr index size() const noexcept { return tokens_ * heads_ * head_dim_; }

  // The head_dim contiguous values of head `h` of token `t`.
  constexpr T* row(index t, index h) const noexcept {
    return data_ + t * token_stride_ + h * head_dim_;
  }
  constexpr std::span<T> row_span(index t, index h) const noexcept {
    return {row(t, h), static_cast<std::size_t>(head_dim_)};
  }

  // Tokens [first, first + count).
  constexpr HeadsView tokens_slice(index first, index count) const noexcept {
    return {data_ + first * token_stride_, count, heads_, head_dim_, token_stride_};
  }

 private:
  T* data_ = nullptr;
  index tokens_ = 0;
  index heads_ = 0;
  index head_dim_ = 0;
  index token_stride_ = 0;
};

// MatrixView<T> describes row-major `[rows, cols]` data with rows `row_stride` elements apart:
// activations `[tokens, hidden]`, or a linear weight `[out, in]` as PyTorch stores it. A row
// range of a weight is a view too, so fused projections (Q|K|V, gate|up) need no copy.
template <class T>
class MatrixView {
 public:
  using element_type = T;

  constexpr MatrixView() = default;
  constexpr MatrixView(T* data, index rows, index cols) : MatrixView(data, rows, cols, cols) {}
  constexpr MatrixView(T* data, index rows, index cols, index row_stride)
      : data_(data), rows_(rows), cols_(cols), row_stride_(row_stride) {}
  template <class U>
  requires(std::is_same_v<const U, T> &&
           !std::is_same_v<U, T>) constexpr MatrixView(const MatrixView<U>& other)
      : MatrixView(other.data(), other.rows(), other.cols(), other.row_stride()) {}

  constexpr T* data() const noexcept { return data_; }
  constexpr index rows() const noexcept { return rows_; }
  constexpr index cols() const noexcept { return cols_; }
  constexpr index row_stride() const noexcept { return row_stride_; }
  constexpr T* row(index r) const noexcept { return data_ + r * row_stride_; }
  // Rows [first, first + count): e.g. the K rows of a fused QKV weight.
  constexpr MatrixView row_slice(index first, index count) const noexcept {
    return {row(first), count, cols_, row_stride_};
  }
  // Columns [first, first + count) of every row.
  constexpr MatrixView col_slice(index first, index count) const noexcept {
    return {data_ + first, rows_, count, row_stride_};
  }

 private:
  T* data_ = nullptr;
  index rows_ = 0;
  index cols_ = 0;
  index row_stride_ = 0;
};

// Throws unless the matrix has non-negative sizes, row_stride >= cols, data, and spans fewer than
// 2^63 bytes (so no index computed from it wraps).
template <class T>
void check_view(std::string_view where, std::string_view name, const MatrixView<T>& m) {
  const bool sizes_ok = m.rows() >= 0 && m.cols() >= 0 &&
                        !detail::span_overflows<T>(m.rows(), m.row_stride(), m.cols());
  const bool stride_ok = m.row_stride() >= m.cols();
  const bool data_ok = m.rows() == 0 || m.cols() == 0 || m.data() != nullptr;
  if (sizes_ok && stride_ok && data_ok) [[likely]]
    return;
  std::ostringstream shape;
  shape << "[rows " << m.rows() << ", cols " << m.cols() << ", row_stride " << m.row_stride()
        << "]";
  detail::fail_view(where, name, data_ok, sizes_ok, "row_stride >= cols", shape.str());
}

// Whether two HeadsViews share memory. Views whose address ranges intersect are still disjoint when
// they interleave row by row, as Q and K inside a fused QKV row do.
template <class T, class U>
bool overlap(const HeadsView<T>& a, const HeadsView<U>& b) noexcept {
  if (a.size() == 0 || b.size() == 0) return false;
  auto bytes = [](index n) { return static_cast<std::uintptr_t>(n) * sizeof(float); };
  auto extent = [&](const auto& v) {
    return bytes((v.tokens() - 1) * v.token_stride() + v.heads() * v.head_dim());
  };
  const auto pa = reinterpret_cast<std::uintptr_t>(a.data());
  const auto pb = reinterpret_cast<std::uintptr_t>(b.data());
  if (pa + extent(a) <= pb || pb + extent(b) <= pa) return false;
  if (a.token_stride() != b.token_stride() || a.tokens() != b.tokens()) return true;
  // Same stride: the later view's row starts `gap` bytes after the earlier one's and must fit
  // between the end of that row and the start of the next.
  const bool a_first = pa <= pb;
  const std::uintptr_t gap = a_first ? pb - pa : pa - pb;
  const std::uintptr_t first_row = bytes((a_first ? a : b).heads() * (a_first ? a : b).head_dim());
  const std::uintptr_t second_row = bytes((a_first ? b : a).heads() * (a_first ? b : a).head_dim());
  return !(gap >= first_row && gap + second_row <= bytes(a.token_stride()));
}

// Whether the address ranges of two matrices intersect (conservative: strided views that
// interleave without sharing an element also count).
template <class T, class U>
bool overlap(const MatrixView<T>& a, const MatrixView<U>& b) noexcept {
  if (a.rows() * a.cols() == 0 || b.rows() * b.cols() == 0) return false;
  auto begin = [](const auto& m) { return reinterpret_cast<std::uintptr_t>(m.data()); };
  auto end = [](const auto& m) {
    return reinterpret_cast<std::uintptr_t>(m.data() + (m.rows() - 1) * m.row_stride() + m.cols());
  };
  return begin(a) < end(b) && begin(b) < end(a);
}

// Throws if views `a` and `b` (both MatrixView or both HeadsView) share memory.
template <class A, class B>
void check_disjoint(std::string_view where, std::string_view a_name, const A& a,
                    std::string_view b_name, const B& b) {
  if (!overlap(a, b)) [[likely]]
    return;
  detail::fail_check(where, std::string(a_name), "memory disjoint from " + std::string(b_name),
                     "an overlapping view");
}

// Throws unless m is [rows, cols].
template <class T>
void check_shape(std::string_view where, std::string_view name, const MatrixView<T>& m, index rows,
                 index cols) {
  check_view(where, name, m);
  if (m.rows() == rows && m.cols() == cols) [[likely]]
    return;
  std::ostringstream expected, given;
  expected << "[" << rows << ", " << cols << "]";
  given << "[" << m.rows() << ", " << m.cols() << "]";
  detail::fail_check(where, std::string(name) + " shape", expected.str(), given.str());
}

// Throws unless the view's sizes are non-negative, its rows do not overlap, it has data, and it
// spans fewer than 2^63 bytes (so no index computed from it wraps). Builds no string unless it
// throws.
template <class T>
void check_view(std::string_view where, std::string_view name, const HeadsView<T>& v) {
  index row = 0;
  const bool sizes_ok = v.tokens() >= 0 && v.heads() >= 0 && v.head_dim() >= 0 &&
                        !__builtin_mul_overflow(v.heads(), v.head_dim(), &row) &&
                        !detail::span_overflows<T>(v.tokens(), v.token_stride(), row);
  const bool stride_ok = v.token_stride() >= row;
  const bool data_ok = v.tokens() == 0 || row == 0 || v.data() != nullptr;
  if (sizes_ok && stride_ok && data_ok) [[likely]]
    return;
  std::ostringstream shape;
  shape << "[tokens " << v.tokens() << ", heads " << v.heads() << ", head_dim " << v.head_dim()
        << ", token_stride " << v.token_stride() << "]";
  detail::fail_view(where, name, data_ok, sizes_ok, "token_stride >= heads * head_dim",
                    shape.str());
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
