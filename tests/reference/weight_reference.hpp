// Storage formats decoded from their published definitions, in double: IEEE binary16, bfloat16,
// and GGML's q8_0 / q4_0 blocks (ggml-common.h: block_q8_0 {ggml_half d; int8_t qs[32]},
// block_q4_0 {ggml_half d; uint8_t qs[16]}, element j < 16 in the low nibble of qs[j], element
// j + 16 in its high nibble, value (nibble − 8)·d), and llama2.c's version-2 groups (int8 values,
// a float32 scale per `group` values kept apart; runq.c's value is the float product q·s), and
// tformer's q4_0x16 and q8_0x16 (q4_0 and q8_0 blocks of 16 rows interleaved;
// include/tformer/core/weight_view.hpp).
// Shares no code with include/tformer.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace ref {

// binary16: sign, 5-bit exponent (bias 15), 10-bit fraction.
inline double half_value(std::uint16_t h) {
  const int sign = h >> 15, exponent = (h >> 10) & 31, fraction = h & 1023;
  double magnitude;
  if (exponent == 0) magnitude = std::ldexp(double(fraction), -24);
  else if (exponent == 31) magnitude = fraction ? NAN : INFINITY;
  else magnitude = std::ldexp(1024.0 + fraction, exponent - 25);
  return sign ? -magnitude : magnitude;
}

// bfloat16: the upper half of a binary32.
inline double bfloat_value(std::uint16_t b) {
  const std::uint32_t bits = std::uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// In the order of tformer::WeightType's enumerators: Format(int(type)) names the same format.
enum class Format { f32, bf16, f16, q8_0, q4_0, q8_group, q4_0x16, q8_0x16 };

// Bytes of one packed row.
inline long packed_row_bytes(Format format, long cols) {
  switch (format) {
    case Format::f32: return cols * 4;
    case Format::bf16:
    case Format::f16: return cols * 2;
    case Format::q8_0: return cols / 32 * 34;
    case Format::q4_0: return cols / 32 * 18;
    case Format::q8_group: return cols;  // the int8 values; scales apart
    case Format::q4_0x16:
      return cols / 32 * 288;  // one group of 16 rows
    case Format::q8_0x16:
      return cols / 32 * 544;
  }
  return 0;
}

// The `cols` values of the row at `row`, stored in `format`, as doubles (q8_group: with the
// row's scales, one float32 per `group` values; not the x16 formats: decode_x16_row).
inline std::vector<double> decode_row_at(Format format, const unsigned char* row, long cols,
                                         const unsigned char* scales = nullptr, long group = 0) {
  std::vector<double> out(cols);
  auto u16 = [](const unsigned char* p) { return std::uint16_t(p[0] | (p[1] << 8)); };
  switch (format) {
    case Format::f32: {
      for (long c = 0; c < cols; ++c) {
        float f;
        std::memcpy(&f, row + 4 * c, 4);
        out[c] = f;
      }
      break;
    }
    case Format::bf16:
    case Format::f16: {
      for (long c = 0; c < cols; ++c)
        out[c] = format == Format::bf16 ? bfloat_value(u16(row + 2 * c)) : half_value(u16(row + 2 * c));
      break;
    }
    case Format::q8_0: {
      for (long b = 0; b < cols / 32; ++b) {
        const unsigned char* block = row + 34 * b;
        const double d = half_value(u16(block));
        for (int j = 0; j < 32; ++j) out[32 * b + j] = double(std::int8_t(block[2 + j])) * d;
      }
      break;
    }
    case Format::q4_0: {
      for (long b = 0; b < cols / 32; ++b) {
        const unsigned char* block = row + 18 * b;
        const double d = half_value(u16(block));
        for (int j = 0; j < 16; ++j) {
          out[32 * b + j] = double((block[2 + j] & 15) - 8) * d;
          out[32 * b + j + 16] = double((block[2 + j] >> 4) - 8) * d;
        }
      }
      break;
    }
    case Format::q8_group: {
      for (long c = 0; c < cols; ++c) {
        float s;
        std::memcpy(&s, scales + 4 * (c / group), 4);
        out[c] = double(float(std::int8_t(row[c])) * s);  // rounded to float once, as runq.c
      }
      break;
    }
    case Format::q4_0x16:
    case Format::q8_0x16:
      break;  // rows interleaved: decode_x16_row
  }
  return out;
}

// Row r of a q4_0x16 or q8_0x16 matrix whose groups of 16 rows start `group_stride` bytes apart
// at `data`, l = r mod 16:
//   q4_0x16: per block of 32 columns, 288 bytes of the group; byte 64c + 4l + i (c < 4) holds
//     element 4c + i in its low nibble and 16 + 4c + i in its high nibble, value (nibble − 8)·d,
//     with d the binary16 at byte 256 + 2l;
//   q8_0x16: per block, 544 bytes; byte 64c + 4l + i (c < 8) is element 4c + i as q + 128, value
//     q·d, with d the binary16 at byte 512 + 2l.
inline std::vector<double> decode_x16_row(Format format, const unsigned char* data,
                                          long group_stride, long cols, long r) {
  std::vector<double> out(cols);
  const long l = r % 16, values = format == Format::q4_0x16 ? 256 : 512;
  for (long b = 0; b < cols / 32; ++b) {
    const unsigned char* block = data + (r / 16) * group_stride + (values + 32) * b;
    const double d =
        half_value(std::uint16_t(block[values + 2 * l] | (block[values + 1 + 2 * l] << 8)));
    for (int c = 0; c < values / 64; ++c)
      for (int i = 0; i < 4; ++i) {
        const unsigned char v = block[64 * c + 4 * l + i];
        if (format == Format::q4_0x16) {
          out[32 * b + 4 * c + i] = double((v & 15) - 8) * d;
          out[32 * b + 16 + 4 * c + i] = double((v >> 4) - 8) * d;
        } else {
          out[32 * b + 4 * c + i] = double(int(v) - 128) * d;
        }
      }
  }
  return out;
}

// Row r of a [rows, cols] matrix stored packed in `format`.
inline std::vector<double> decode_row(Format format, const unsigned char* data, long cols, long r) {
  return decode_row_at(format, data + r * packed_row_bytes(format, cols), cols);
}

// Row r of a typed weight view (tformer::WeightView, read through its accessors alone) as doubles.
template <class View>
std::vector<double> decode_view_row(const View& w, long r) {
  const auto bytes = [](const auto* p) { return reinterpret_cast<const unsigned char*>(p); };
  const Format format = Format(int(w.type()));
  if (format == Format::q4_0x16 || format == Format::q8_0x16)
    return decode_x16_row(format, bytes(w.data()), long(w.row_stride()), long(w.cols()), r);
  return decode_row_at(format, bytes(w.row(r)), long(w.cols()), bytes(w.scale_row(r)),
                       long(w.group()));
}

}  // namespace ref
