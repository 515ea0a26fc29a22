// WeightView: a linear weight `[rows = out, cols = in]` in any storage type, over memory the
// engine owns (a buffer, a memory-mapped checkpoint), read in place by the matmul kernels.
//
// Rows are `row_stride` bytes apart; within a row the values (f32, bf16, f16) or blocks of 32
// values (q8_0, q4_0) are packed, as PyTorch, safetensors and GGUF store them. q8_group keeps its
// scales apart: int8 values, packed rows, and a separate f32 array with one scale per `group`
// values of a row (llama2.c's version-2 checkpoints; per-group int8 tensors with a scale tensor).
// The type is chosen per matrix at run time, so one model may mix them (4-bit FFN, 8-bit
// attention, f32 norms).
//
// q4_0x16 and q8_0x16 are q4_0 and q8_0 repacked for the int8 kernel (nn/matmul_int8.hpp;
// convert_weights or repack_x16 in core/convert.hpp write them): rows in groups of 16, the last
// padded with zero rows, each group `row_stride` bytes from the last (row_group). Per block of 32
// columns a group holds the 16 rows' values, then their 16 f16 scales:
//   q4_0x16 (288 bytes): 256 of nibbles, where byte 64c + 4r + i (c, i < 4, r < 16) is byte 4c + i
//     of row r's q4_0 block (low nibble: value 4c + i, high nibble: value 16 + 4c + i);
//   q8_0x16 (544 bytes): 512 of values, where byte 64c + 4r + i (c < 8, i < 4) is value 4c + i of
//     row r, stored as q + 128 (q ⊕ 0x80: the unsigned operand vpdpbusd takes).
// One 64-byte load gives 4 bytes of each of 16 rows, so one broadcast dword of x meets 16 rows at
// once and the 16 outputs need no horizontal sums (ggml's block_q4_0x8 and ik_llama.cpp's Q4_0_R8
// and Q8_0_R8 are the same idea at 8 rows).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>

#include "tformer/core/error.hpp"
#include "tformer/core/numeric.hpp"
#include "tformer/core/views.hpp"

namespace tformer {

// How a weight's values are stored. Plain data, outside the instruction-set namespace.
enum class WeightType : std::uint8_t { f32, bf16, f16, q8_0, q4_0, q8_group, q4_0x16, q8_0x16 };

// What x is multiplied in: float as given (every type); int8, each block of 32 values
// quantized once per call with its own f32 scale (q8_0, q4_0 and q8_group with a power-of-two
// group >= 32: integer dot products, as llama.cpp's q8_0 activations; nn/matmul_int8.hpp;
// q4_0x16 and q8_0x16 have these only); or
// bf16, x rounded to bf16 once per call (bf16 weights: AVX512_BF16's vdpbf16ps, as llama.cpp's
// bf16 activations; nn/matmul_bf16.hpp).
enum class Activations : std::uint8_t { f32, int8, bf16 };

inline const char* activations_name(Activations a) noexcept {
  switch (a) {
    case Activations::f32: return "f32";
    case Activations::int8: return "int8";
    case Activations::bf16: return "bf16";
  }
  return "unknown";
}

inline namespace TFORMER_ARCH_NS {

// Values per block (1 for the element types) and bytes per block (the x16 types: of 16 rows).
struct WeightTypeInfo {
  const char* name;
  index block_values;
  index block_bytes;
  index alignment;  // of the data and the row stride, in bytes
};

constexpr WeightTypeInfo type_info(WeightType type) noexcept {
  switch (type) {
    case WeightType::f32: return {"f32", 1, 4, 4};
    case WeightType::bf16: return {"bf16", 1, 2, 2};
    case WeightType::f16: return {"f16", 1, 2, 2};
    case WeightType::q8_0: return {"q8_0", 32, 34, 2};
    case WeightType::q4_0: return {"q4_0", 32, 18, 2};
    case WeightType::q8_group: return {"q8_group", 1, 1, 1};  // the int8 values; scales apart
    case WeightType::q4_0x16:
      return {"q4_0x16", 32, 288, 2};
    case WeightType::q8_0x16:
      return {"q8_0x16", 32, 544, 2};
  }
  return {"unknown", 1, 0, 1};
}

inline const char* type_name(WeightType type) noexcept { return type_info(type).name; }

// Whether a type interleaves rows in groups of 16: q4_0x16 and q8_0x16.
constexpr bool is_x16(WeightType type) noexcept {
  return type == WeightType::q4_0x16 || type == WeightType::q8_0x16;
}

// Rows per stored row of a type: 16 for the x16 types (a row group), else 1.
constexpr index rows_per_group(WeightType type) noexcept { return is_x16(type) ? 16 : 1; }

// Bytes of one packed row of `cols` values (cols a multiple of the block size; for q8_group,
// the int8 values only; for the x16 types, of one group of 16 rows).
constexpr index row_bytes(WeightType type, index cols) noexcept {
  const WeightTypeInfo info = type_info(type);
  // Wraps (defined, unsigned) for absurd cols, which check_weight_view refuses.
  return static_cast<index>(static_cast<std::size_t>(cols / info.block_values) *
                            static_cast<std::size_t>(info.block_bytes));
}

class WeightView {
 public:
  constexpr WeightView() = default;
  // Packed rows.
  constexpr WeightView(WeightType type, const void* data, index rows, index cols,
                       const char* name = "weight")
      : WeightView(type, data, rows, cols, tformer::row_bytes(type, cols), name) {}
  // Rows `row_stride` bytes apart.
  constexpr WeightView(WeightType type, const void* data, index rows, index cols, index row_stride,
                       const char* name = "weight")
      : data_(static_cast<const std::byte*>(data)),
        rows_(rows),
        cols_(cols),
        row_stride_(row_stride),
        type_(type),
        name_(name) {}
  // q8_group: int8 values [rows, cols], packed rows, and f32 scales [rows, cols / group]; value
  // (r, c) is values[r·cols + c] · scales[(r·cols + c) / group].
  static WeightView q8_group(const std::int8_t* values, const float* scales, index group,
                                       index rows, index cols, const char* name = "weight") {
    WeightView w(WeightType::q8_group, values, rows, cols, name);
    w.scales_ = reinterpret_cast<const std::byte*>(scales);
    w.group_ = group;
    return w;
  }
  // f32 [rows, cols], packed rows, as `{data, rows, cols}` builds a MatrixView.
  WeightView(const float* data, index rows, index cols, const char* name = "weight")
      : WeightView(WeightType::f32, data, rows, cols, name) {}
  // An f32 matrix view (its row stride in floats becomes bytes).
  WeightView(MatrixView<const float> m, const char* name = "weight")  // NOLINT: a view converts
      : WeightView(WeightType::f32, m.data(), m.rows(), m.cols(),
                   static_cast<index>(static_cast<std::size_t>(m.row_stride()) * sizeof(float)),
                   name) {}  // a wrapped stride fails check_weight_view, never UB here

  constexpr WeightType type() const noexcept { return type_; }
  constexpr const std::byte* data() const noexcept { return data_; }
  constexpr index rows() const noexcept { return rows_; }
  constexpr index cols() const noexcept { return cols_; }
  constexpr index row_stride() const noexcept { return row_stride_; }
  // The tensor's name, for error messages.
  constexpr const char* name() const noexcept { return name_; }
  // Row r (not for the x16 types, whose rows are interleaved: row_group).
  constexpr const std::byte* row(index r) const noexcept { return data_ + r * row_stride_; }
  // The x16 types: the group of rows [16g, 16g + 16).
  constexpr const std::byte* row_group(index g) const noexcept { return data_ + g * row_stride_; }
  // Stored rows: rows, or for the x16 types their groups of 16.
  constexpr index stored_rows() const noexcept {
    const index per = rows_per_group(type_);
    return (rows_ + per - 1) / per;
  }
  // q8_group: values per scale, and the f32 scales of row r (cols / group of them, unaligned).
  constexpr index group() const noexcept { return group_; }
  constexpr const std::byte* scales() const noexcept { return scales_; }
  constexpr const std::byte* scale_row(index r) const noexcept {
    return scales_ + r * scale_row_bytes();
  }
  constexpr index scale_row_bytes() const noexcept {
    return group_ > 0 ? cols_ / group_ * index(sizeof(float)) : 0;
  }
  // Rows [first, first + count): e.g. the K rows of a fused QKV weight. x16 types: first must
  // be a multiple of 16 (check_weight_view refuses the slice otherwise).
  constexpr WeightView row_slice(index first, index count) const noexcept {
    const index per = rows_per_group(type_), at = lane_ + first;  // from this view's group
    WeightView w{type_, row_group(at / per), count, cols_, row_stride_, name_};
    w.lane_ = static_cast<std::uint8_t>(at % per);
    if (type_ == WeightType::q8_group) {
      w.scales_ = scale_row(first);
      w.group_ = group_;
    }
    w.activations_ = activations_;
    return w;
  }
  // How matmul multiplies x with this weight (Activations above; f32 unless set).
  constexpr Activations activations() const noexcept { return activations_; }
  constexpr WeightView with_activations(Activations a) const noexcept {
    WeightView w = *this;
    w.activations_ = a;
    return w;
  }
  // Bytes from the first stored row's start to the last one's end.
  constexpr index extent_bytes() const noexcept {
    return rows_ == 0 ? 0 : (stored_rows() - 1) * row_stride_ + tformer::row_bytes(type_, cols_);
  }
  // x16 types: the row within its group where a row_slice began (0 for a valid view).
  constexpr index first_lane() const noexcept { return lane_; }
  // Bytes of the separate scales (q8_group; 0 for the other types).
  constexpr index scales_extent_bytes() const noexcept {
    return type_ == WeightType::q8_group ? rows_ * scale_row_bytes() : 0;
  }
  // The f32 matrix this view is (precondition: type() == f32).
  MatrixView<const float> f32() const noexcept {
    return {reinterpret_cast<const float*>(data_), rows_, cols_,
            row_stride_ / index(sizeof(float))};
  }

 private:
  const std::byte* data_ = nullptr;
  index rows_ = 0;
  index cols_ = 0;
  index row_stride_ = 0;
  const std::byte* scales_ = nullptr;  // q8_group only
  index group_ = 0;                    // q8_group only
  WeightType type_ = WeightType::f32;
  Activations activations_ = Activations::f32;
  std::uint8_t lane_ = 0;  // x16 types: first_lane()
  const char* name_ = "weight";
};

// Whether w's type (and group) can multiply int8 activations: q8_0, q4_0, the x16 types, and
// q8_group in power-of-two groups of at least 32 (one scale per block of x).
constexpr bool takes_int8_activations(const WeightView& w) noexcept {
  return w.type() == WeightType::q8_0 || w.type() == WeightType::q4_0 || is_x16(w.type()) ||
         (w.type() == WeightType::q8_group && w.group() >= 32 &&
          (w.group() & (w.group() - 1)) == 0);
}

// Whether w can multiply activations `a`: f32 (every type but the x16 ones), int8 as above, bf16
// with bf16 weights.
constexpr bool takes_activations(const WeightView& w, Activations a) noexcept {
  return (a == Activations::f32 && !is_x16(w.type())) ||
         (a == Activations::int8 && takes_int8_activations(w)) ||
         (a == Activations::bf16 && w.type() == WeightType::bf16);
}

namespace detail {
// "<name> (<type>) <what>", with `name` when given, else the view's own.
inline std::string weight_what(const WeightView& w, std::string_view what,
                               std::string_view name = {}) {
  return std::string(!name.empty() ? name : w.name() ? w.name() : "weight") + " (" +
         type_name(w.type()) + ") " + std::string(what);
}
}  // namespace detail

// Throws unless the view is well formed: a known type, non-negative sizes, cols a multiple of the
// block size, rows that do not overlap, data aligned for the type (4 bytes for f32, 2 for the
// 16-bit and block types), and data unless it is empty; for q8_group a group > 0 that divides
// cols and scales; int8 or bf16 activations only with a type that has them. Reads no weight.
// `name`, when given, replaces the view's own in the message. Builds no string unless it throws.
inline void check_weight_view(std::string_view where, const WeightView& w,
                              std::string_view name = {}) {
  const WeightTypeInfo info = type_info(w.type());
  if (info.block_bytes == 0)
    detail::fail_check(where, detail::weight_what(w, "type", name),
                       "f32, bf16, f16, q8_0, q4_0, q8_group, q4_0x16 or q8_0x16", int(w.type()));
  if (w.rows() < 0 || w.cols() < 0) {
    std::ostringstream given;
    given << "[" << w.rows() << ", " << w.cols() << "]";
    detail::fail_check(where, detail::weight_what(w, "shape", name), "non-negative sizes", given.str());
  }
  if (w.cols() / info.block_values > std::numeric_limits<index>::max() / info.block_bytes ||
      detail::span_overflows<std::byte>(w.stored_rows(), w.row_stride(),
                                        row_bytes(w.type(), w.cols()))) {
    std::ostringstream given;
    given << "[" << w.rows() << ", " << w.cols() << "], row_stride " << w.row_stride();
    detail::fail_check(where, detail::weight_what(w, "shape", name),
                       "sizes spanning fewer than 2^63 bytes", given.str());
  }
  if (w.cols() % info.block_values != 0) {
    std::ostringstream expected;
    expected << "a multiple of " << info.block_values << " (whole blocks)";
    detail::fail_check(where, detail::weight_what(w, "cols", name), expected.str(), w.cols());
  }
  if (w.type() == WeightType::q8_group && (w.group() <= 0 || w.cols() % w.group() != 0)) {
    std::ostringstream expected;
    expected << "a divisor of cols (" << w.cols() << ")";
    detail::fail_check(where, detail::weight_what(w, "group", name), expected.str(), w.group());
  }
  if (index row = 0, all = 0;
      w.type() == WeightType::q8_group &&
      (__builtin_mul_overflow(w.cols() / w.group(), index(sizeof(float)), &row) ||
       __builtin_mul_overflow(w.rows(), row, &all)))
    detail::fail_check(where, detail::weight_what(w, "scales", name),
                       "rows * cols / group * 4 bytes fewer than 2^63", "an overflow");
  if (w.first_lane() != 0)
    detail::fail_check(where, detail::weight_what(w, "row_slice start", name),
                       "a multiple of 16 (whole groups of rows)",
                       "16k + " + std::to_string(w.first_lane()));
  if (!takes_activations(w, w.activations()))
    detail::fail_check(
        where, detail::weight_what(w, "activations", name),
        is_x16(w.type())
            ? std::string("int8 (") + type_name(w.type()) + " is a layout of the int8 kernel)"
            : std::string("f32, int8 with q8_0, q4_0 or q8_group in power-of-two groups >= 32, "
                          "or bf16 with bf16"),
        w.type() == WeightType::q8_group && w.activations() == Activations::int8
            ? "int8 with a group of " + std::to_string(w.group())
            : std::string(activations_name(w.activations())));
  if (w.stored_rows() > 1 && w.row_stride() < row_bytes(w.type(), w.cols())) {
    std::ostringstream expected;
    expected << ">= " << row_bytes(w.type(), w.cols()) << " bytes (one packed row)";
    detail::fail_check(where, detail::weight_what(w, "row_stride", name), expected.str(),
                       w.row_stride());
  }
  if (w.rows() == 0 || w.cols() == 0) return;
  if (w.data() == nullptr)
    detail::fail_check(where, detail::weight_what(w, "data", name), "a non-null pointer", "nullptr");
  if (w.type() == WeightType::q8_group && w.scales() == nullptr)
    detail::fail_check(where, detail::weight_what(w, "scales", name), "a non-null pointer",
                       "nullptr");
  const auto address = reinterpret_cast<std::uintptr_t>(w.data());
  if (address % std::uintptr_t(info.alignment) != 0 ||
      (w.stored_rows() > 1 && w.row_stride() % info.alignment != 0)) {
    std::ostringstream expected, given;
    expected << "data and row_stride multiples of " << info.alignment << " bytes";
    given << "address " << address % 64 << " mod 64, row_stride " << w.row_stride();
    detail::fail_check(where, detail::weight_what(w, "alignment", name), expected.str(), given.str());
  }
}

// check_weight_view under another name, for code generic over MatrixView and WeightView, with
// `name` in the message.
inline void check_view(std::string_view where, std::string_view name, const WeightView& w) {
  check_weight_view(where, w, name);
}

// check_weight_view, then throws unless w is [rows, cols]; `name` is the member being checked.
inline void check_shape(std::string_view where, std::string_view name, const WeightView& w,
                        index rows, index cols) {
  check_view(where, name, w);
  if (w.rows() == rows && w.cols() == cols) [[likely]]
    return;
  std::ostringstream expected, given;
  expected << "[" << rows << ", " << cols << "]";
  given << "[" << w.rows() << ", " << w.cols() << "] (" << type_name(w.type()) << ")";
  detail::fail_check(where, std::string(name) + " shape", expected.str(), given.str());
}

// Throws unless the view lies inside [begin, begin + size) (e.g. a mapped file): the check a
// reader makes before handing a view out, so a truncated tensor is an error, not a read past the
// mapping.
inline void check_weight_within(std::string_view where, const WeightView& w, const void* begin,
                                std::size_t size) {
  const auto lo = reinterpret_cast<std::uintptr_t>(begin);
  const auto inside = [&](const std::byte* at, index bytes, const char* what) {
    const auto p = reinterpret_cast<std::uintptr_t>(at);
    const auto extent = std::uintptr_t(bytes);
    if (extent == 0) return;
    if (p < lo || p - lo > size || extent > size - (p - lo)) {
      std::ostringstream expected, given;
      expected << extent << " bytes inside a buffer of " << size;
      given << "offset " << (p >= lo ? std::to_string(p - lo) : "before the start");
      detail::fail_check(where, detail::weight_what(w, what), expected.str(), given.str());
    }
  };
  inside(w.data(), w.extent_bytes(), "extent");
  inside(w.scales(), w.scales_extent_bytes(), "scales extent");
}

// Throws unless every scale of a q8_0 / q4_0 / q8_group view is finite (a NaN or inf scale turns
// a whole block of outputs into NaN). Reads one scale per block: O(rows·cols/32); element types
// pass at once. Readers call it once per tensor; the kernels do not.
inline void check_weight_scales(std::string_view where, const WeightView& w) {
  check_weight_view(where, w);
  const WeightTypeInfo info = type_info(w.type());
  if (w.type() == WeightType::q8_group) {
    const index groups = w.cols() / w.group();
    for (index r = 0; r < w.rows(); ++r)
      for (index g = 0; g < groups; ++g) {
        float d;
        std::memcpy(&d, w.scale_row(r) + g * index(sizeof d), sizeof d);
        if (!std::isfinite(d)) [[unlikely]] {
          std::ostringstream what;
          what << "scale of row " << r << " group " << g;
          detail::fail_check(where, detail::weight_what(w, what.str()), "a finite f32", d);
        }
      }
    return;
  }
  if (info.block_values == 1) return;
  const index blocks = w.cols() / info.block_values;
  for (index r = 0; r < w.rows(); ++r)
    for (index b = 0; b < blocks; ++b) {
      // x16 types: row r's scale follows its group's values (the block's last 32 bytes)
      const std::byte* at =
          is_x16(w.type()) ? w.row_group(r / 16) + (b + 1) * info.block_bytes - 32 + 2 * (r % 16)
                           : w.row(r) + b * info.block_bytes;
      if (const float d = f16_at(at); !std::isfinite(d)) [[unlikely]] {
        std::ostringstream what;
        what << "scale of row " << r << " block " << b;
        detail::fail_check(where, detail::weight_what(w, what.str()), "a finite f16", d);
      }
    }
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
