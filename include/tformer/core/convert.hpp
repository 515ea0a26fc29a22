// Converting float weights to a storage type, and rows of any type back to float.
//
// Round-trip error of one value x, with m = the largest |x| of its block of 32 (core/numeric.hpp):
//   f32   exact
//   bf16  |x − x̂| <= 2^−8·|x|   (8 significant bits, round to nearest even)
//   f16   |x − x̂| <= 2^−11·|x| for 2^−14 <= |x| <= 65504; <= 2^−25 below (subnormals)
//   q8_0  |x − x̂| <= d/2, d = m/127 rounded to f16 (so about m/254)
//   q4_0  |x − x̂| <= |d|/2 + 2^−11·|x|, d = m/8 rounded to f16, except the values clamped at
//         the positive end (x near −(the signed extreme)): <= |d|, i.e. m/8
//   q4_0x16, q8_0x16  as q4_0 and q8_0 (the same blocks, interleaved 16 rows at a time:
//            core/weight_view.hpp)
// (q8_group is read, not written: its scales live apart, in the checkpoint's own layout.)
// (The block bounds hold while d is a normal f16: m >= 127·2^−14 for q8_0, m >= 8·2^−14 for
// q4_0; smaller blocks lose relative precision to d's subnormal rounding.)
#pragma once

#include <cmath>
#include <cstddef>
#include <cstring>
#include <span>
#include <sstream>
#include <type_traits>

#include "tformer/core/error.hpp"
#include "tformer/core/numeric.hpp"
#include "tformer/core/views.hpp"
#include "tformer/core/weight_view.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

// Bytes that convert_weights writes for a [rows, cols] matrix of `type`, rows packed (the x16
// types: groups of 16 rows, the last padded).
constexpr index converted_bytes(WeightType type, index rows, index cols) noexcept {
  const index per = rows_per_group(type);
  return (rows + per - 1) / per * row_bytes(type, cols);
}

// The x16 type that interleaves blocks of `type` (q4_0 → q4_0x16, q8_0 → q8_0x16), or `type`.
constexpr WeightType x16_type(WeightType type) noexcept {
  return type == WeightType::q4_0   ? WeightType::q4_0x16
         : type == WeightType::q8_0 ? WeightType::q8_0x16
                                    : type;
}

namespace convert_kernels {
// Block b of row r of an x16 matrix, whose group's block b starts at `at`, from and to the q4_0
// or q8_0 block it is (core/weight_view.hpp: byte 64c + 4r + i of the values is byte 4c + i of
// row r's; q8_0's stored ⊕ 0x80).
template <class Block>
inline constexpr index x16_values = 16 * index(sizeof(Block::q));  // bytes before the scales
template <class Block>
inline void put_x16(std::byte* at, index r, const Block& b) noexcept {
  constexpr std::uint8_t flip = std::is_same_v<Block, BlockQ8_0> ? 0x80 : 0;
  for (index c = 0; c < index(sizeof b.q) / 4; ++c)
    for (index i = 0; i < 4; ++i)
      at[64 * c + 4 * r + i] = std::byte(std::uint8_t(b.q[4 * c + i]) ^ flip);
  std::memcpy(at + x16_values<Block> + 2 * r, &b.d, 2);
}
template <class Block>
inline Block get_x16(const std::byte* at, index r) noexcept {
  constexpr std::uint8_t flip = std::is_same_v<Block, BlockQ8_0> ? 0x80 : 0;
  Block b;
  using Q = std::remove_cvref_t<decltype(b.q[0])>;
  for (index c = 0; c < index(sizeof b.q) / 4; ++c)
    for (index i = 0; i < 4; ++i) b.q[4 * c + i] = Q(std::uint8_t(at[64 * c + 4 * r + i]) ^ flip);
  std::memcpy(&b.d, at + x16_values<Block> + 2 * r, 2);
  return b;
}
// f(Block{}) with the block type of the x16 type: BlockQ4_0 for q4_0x16, BlockQ8_0 for q8_0x16.
template <class F>
inline void with_x16_block(WeightType type, F&& f) {
  if (type == WeightType::q4_0x16)
    f(BlockQ4_0{});
  else
    f(BlockQ8_0{});
}
// Blocks of rows into their x16 layout (block(r, b) gives block b of row r), padding rows
// included (d = 0, values 0).
template <class Block, class Blocks>
inline void write_x16(index rows, index cols, std::byte* dst, Blocks&& block) noexcept {
  constexpr WeightType type =
      std::is_same_v<Block, BlockQ8_0> ? WeightType::q8_0x16 : WeightType::q4_0x16;
  const index blocks = cols / 32, stride = row_bytes(type, cols);
  constexpr index bytes = type_info(type).block_bytes;
  Block zero{};
  if constexpr (type == WeightType::q4_0x16) std::memset(zero.q, 0x88, sizeof zero.q);
  for (index r = 0; r < (rows + 15) / 16 * 16; ++r)
    for (index b = 0; b < blocks; ++b)
      put_x16(dst + r / 16 * stride + b * bytes, r % 16, r < rows ? block(r, b) : zero);
}
}  // namespace convert_kernels

// Writes src [rows, cols] as `type` into dst (packed rows) and returns the view of it (the x16
// types: with int8 activations, the only ones they have).
// Throws, writing nothing, unless dst holds converted_bytes(type, rows, cols), cols is a multiple
// of the type's block, and every value is finite and (for f16 and the f16 block scales) within
// f16's range: |x| <= 65504 for f16, <= 65504·127 for q8_0, <= 65504·8 for q4_0.
inline WeightView convert_weights(MatrixView<const float> src, WeightType type,
                                  std::span<std::byte> dst, const char* name = "weight") {
  constexpr const char* where = "convert_weights";
  check_view(where, "src", src);
  const WeightTypeInfo info = type_info(type);
  check(type != WeightType::q8_group, where, "type",
        "f32, bf16, f16, q8_0, q4_0, q4_0x16 or q8_0x16 (a packed type)", type_name(type));
  const WeightView out = WeightView(type, dst.data(), src.rows(), src.cols(), name)
                             .with_activations(is_x16(type) ? Activations::int8 : Activations::f32);
  check_weight_view(where, out);
  check_eq(where, "dst size in bytes", converted_bytes(type, src.rows(), src.cols()),
           index(dst.size()));
  const float limit = type == WeightType::f16                                   ? 65504.0f
                      : type == WeightType::q8_0 || type == WeightType::q8_0x16 ? 65504.0f * 127.0f
                      : type == WeightType::q4_0 || type == WeightType::q4_0x16 ? 65504.0f * 8.0f
                                                                                : INFINITY;
  for (index r = 0; r < src.rows(); ++r)
    for (index c = 0; c < src.cols(); ++c) {
      const float v = src.row(r)[c];
      if (!(std::fabs(v) <= limit)) [[unlikely]] {
        std::ostringstream what, expected;
        what << name << " value [" << r << ", " << c << "]";
        expected << "a finite value"
                 << (limit < INFINITY ? " within ±" + std::to_string(limit) + " for " : "")
                 << (limit < INFINITY ? info.name : "");
        detail::fail_check(where, what.str(), expected.str(), v);
      }
    }
  if (is_x16(type)) {
    convert_kernels::with_x16_block(type, [&]<class Block>(Block) {
      convert_kernels::write_x16<Block>(src.rows(), src.cols(), dst.data(), [&](index r, index b) {
        if constexpr (std::is_same_v<Block, BlockQ8_0>)
          return quantize_q8_0(src.row(r) + 32 * b);
        else
          return quantize_q4_0(src.row(r) + 32 * b);
      });
    });
    return out;
  }
  for (index r = 0; r < src.rows(); ++r) {
    const float* s = src.row(r);
    std::byte* d = dst.data() + r * row_bytes(type, src.cols());
    for (index c = 0; c < src.cols(); c += info.block_values) {
      std::byte* at = d + c / info.block_values * info.block_bytes;
      switch (type) {
        case WeightType::f32: std::memcpy(at, s + c, 4); break;
        case WeightType::bf16: {
          const bf16 v = to_bf16(s[c]);
          std::memcpy(at, &v, 2);
          break;
        }
        case WeightType::f16: {
          const f16 v = to_f16(s[c]);
          std::memcpy(at, &v, 2);
          break;
        }
        case WeightType::q8_0: {
          const BlockQ8_0 b = quantize_q8_0(s + c);
          std::memcpy(at, &b, sizeof b);
          break;
        }
        case WeightType::q4_0: {
          const BlockQ4_0 b = quantize_q4_0(s + c);
          std::memcpy(at, &b, sizeof b);
          break;
        }
        case WeightType::q8_group: break;  // refused above
        case WeightType::q4_0x16:
        case WeightType::q8_0x16:
          break;  // written above
      }
    }
  }
  return out;
}

namespace convert_kernels {
// The values [first, first + count) of row r of w as float; first and count whole blocks for the
// block types. Preconditions: w is well formed and the range lies inside its row.
inline void decode_range(const WeightView& w, index r, index first, index count,
                         float* out) noexcept {
  const std::byte* row = is_x16(w.type()) ? nullptr : w.row(r);  // else row groups
  switch (w.type()) {
    case WeightType::f32: std::memcpy(out, row + 4 * first, std::size_t(4 * count)); return;
    case WeightType::bf16:
      for (index c = 0; c < count; ++c) {
        bf16 v;
        std::memcpy(&v, row + 2 * (first + c), 2);
        out[c] = to_float(v);
      }
      return;
    case WeightType::f16:
      for (index c = 0; c < count; ++c) out[c] = f16_at(row + 2 * (first + c));
      return;
    case WeightType::q8_0:
      for (index b = first / 32; b < (first + count) / 32; ++b)
        dequantize(load_block<BlockQ8_0>(row + b * index(sizeof(BlockQ8_0))),
                   out + (b * 32 - first));
      return;
    case WeightType::q4_0:
      for (index b = first / 32; b < (first + count) / 32; ++b)
        dequantize(load_block<BlockQ4_0>(row + b * index(sizeof(BlockQ4_0))),
                   out + (b * 32 - first));
      return;
    case WeightType::q4_0x16:
    case WeightType::q8_0x16:
      with_x16_block(w.type(), [&]<class Block>(Block) {
        const index bytes = type_info(w.type()).block_bytes;  // a group's bytes per block
        for (index b = first / 32; b < (first + count) / 32; ++b)
          dequantize(get_x16<Block>(w.row_group(r / 16) + b * bytes, r % 16),
                     out + (b * 32 - first));
      });
      return;
    case WeightType::q8_group: {
      const std::byte* scales = w.scale_row(r);
      for (index c = first; c < first + count; ++c) {
        float d;
        std::memcpy(&d, scales + c / w.group() * index(sizeof d), sizeof d);
        out[c - first] = float(std::int8_t(row[c])) * d;
      }
      return;
    }
  }
}
}  // namespace convert_kernels

// Writes the q4_0 or q8_0 matrix src as q4_0x16 or q8_0x16 (x16_type) into dst
// (converted_bytes of that type) and returns the view of it, with int8 activations: the same
// blocks, bit for bit, laid out for the int8 kernel. For engines that load q4_0 or q8_0 (a GGUF
// file) and repack once. Throws, writing nothing, unless src is a well-formed q4_0 or q8_0 view and
// dst has that size.
inline WeightView repack_x16(const WeightView& src, std::span<std::byte> dst,
                             const char* name = nullptr) {
  constexpr const char* where = "repack_x16";
  check_weight_view(where, src);
  check(src.type() == WeightType::q4_0 || src.type() == WeightType::q8_0, where,
        detail::weight_what(src, "type"), "q4_0 or q8_0", type_name(src.type()));
  const WeightType type = x16_type(src.type());
  const WeightView out =
      WeightView(type, dst.data(), src.rows(), src.cols(), name ? name : src.name())
          .with_activations(Activations::int8);
  check_weight_view(where, out);
  check_eq(where, "dst size in bytes", converted_bytes(type, src.rows(), src.cols()),
           index(dst.size()));
  convert_kernels::with_x16_block(type, [&]<class Block>(Block) {
    convert_kernels::write_x16<Block>(src.rows(), src.cols(), dst.data(), [&](index r, index b) {
      return load_block<Block>(src.row(r) + index(sizeof(Block)) * b);
    });
  });
  return out;
}

// out = row r of w as float (an embedding lookup of a typed table). Exact: every stored value is
// a float. Throws unless w is well formed, 0 <= r < rows and out holds cols values.
inline void dequantize_row(const WeightView& w, index r, std::span<float> out) {
  constexpr const char* where = "dequantize_row";
  check_weight_view(where, w);
  check_index(where, "row", r, w.rows());
  check_eq(where, "out size (= cols)", w.cols(), index(out.size()));
  convert_kernels::decode_range(w, r, 0, w.cols(), out.data());
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
