// core/convert.hpp: float matrices to every storage type and rows back, within the bounds the
// header states; bad input is an error that writes nothing.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include "reference/weight_reference.hpp"
#include "support/matrix.hpp"
#include "tformer/core/convert.hpp"

using Catch::Matchers::Contains;
using tformer::WeightType;

namespace {

constexpr WeightType all_types[] = {WeightType::f32,    WeightType::bf16, WeightType::f16,
                                    WeightType::q8_0,   WeightType::q4_0, WeightType::q4_0x16,
                                    WeightType::q8_0x16};

// The header's bound for value x in a block whose largest magnitude is m.
double bound(WeightType t, double x, double m) {
  switch (t) {
    case WeightType::f32: return 0;
    case WeightType::bf16: return std::abs(x) * 0x1p-8;
    case WeightType::f16: return std::abs(x) * 0x1p-11 + 0x1p-25;
    case WeightType::q8_0:
    case WeightType::q8_0x16:
      return m / 127 * (1 + 0x1p-11) / 2;
    case WeightType::q4_0:
    case WeightType::q4_0x16:
      return m / 8 * (1 + 0x1p-11) + std::abs(x) * 0x1p-11;
    case WeightType::q8_group: break;  // not a conversion target
  }
  return 0;
}

}  // namespace

TEST_CASE("core/convert: every type round-trips within its bound", "[core][convert]") {
  const auto seed = GENERATE(range(1, 11));
  CAPTURE(seed);
  test::Random rng(seed);
  const int rows = rng.integer(1, 9), cols = 32 * rng.integer(1, 6);
  const test::Matrix src = test::Matrix::random(rng, rows, cols, 0.05f);
  for (WeightType type : all_types) {
    CAPTURE(tformer::type_name(type));
    std::vector<std::byte> bytes(std::size_t(tformer::converted_bytes(type, rows, cols)));
    const tformer::WeightView w = tformer::convert_weights(src.cview(), type, bytes, "w");
    REQUIRE(w.type() == type);
    REQUIRE(w.rows() == rows);
    REQUIRE(w.cols() == cols);
    std::vector<float> row(static_cast<std::size_t>(cols));
    for (int r = 0; r < rows; ++r) {
      tformer::dequantize_row(w, r, row);
      // The stored bytes decoded by the format's definition give the same values.
      const auto expected = ref::decode_view_row(w, r);
      for (int c = 0; c < cols; c += 32) {
        double m = 0;
        for (int j = 0; j < 32; ++j) m = std::max(m, double(std::abs(src.at(r, c + j))));
        for (int j = c; j < c + 32; ++j) {
          INFO("row " << r << " col " << j);
          REQUIRE(double(row[std::size_t(j)]) == expected[std::size_t(j)]);
          REQUIRE(std::abs(double(row[std::size_t(j)]) - src.at(r, j)) <= bound(type, src.at(r, j), m));
        }
      }
    }
  }
}

TEST_CASE("core/convert: bad input is an error and writes nothing", "[core][convert]") {
  test::Matrix src(2, 64, 0.5f);
  std::vector<std::byte> bytes(std::size_t(tformer::converted_bytes(WeightType::q8_0, 2, 64)),
                               std::byte{0x5a});
  const auto untouched = bytes;
  src.at(1, 40) = NAN;
  REQUIRE_THROWS_WITH(tformer::convert_weights(src.cview(), WeightType::q8_0, bytes, "blk.1.ffn_up"),
                      Contains("blk.1.ffn_up value [1, 40]") && Contains("finite"));
  REQUIRE(bytes == untouched);
  src.at(1, 40) = 70000.0f;
  std::vector<std::byte> halves(std::size_t(tformer::converted_bytes(WeightType::f16, 2, 64)));
  REQUIRE_THROWS_WITH(tformer::convert_weights(src.cview(), WeightType::f16, halves, "w"),
                      Contains("within ±65504"));
  src.at(1, 40) = 1.0f;
  REQUIRE_THROWS_WITH(tformer::convert_weights(src.cview(), WeightType::q8_0,
                                               std::span(bytes).first(67), "w"),
                      Contains("dst size in bytes: expected 136, got 67"));
  const test::Matrix odd(2, 40, 1.0f);
  std::vector<std::byte> any(200);
  REQUIRE_THROWS_WITH(tformer::convert_weights(odd.cview(), WeightType::q4_0, any, "w"),
                      Contains("cols: expected a multiple of 32"));
  std::vector<float> out(64);
  const tformer::WeightView w(WeightType::q8_0, bytes.data(), 2, 64);
  REQUIRE_THROWS_WITH(tformer::dequantize_row(w, 2, out), Contains("row: expected a value in [0, 2)"));
  REQUIRE_THROWS_WITH(tformer::dequantize_row(w, 0, std::span(out).first(63)),
                      Contains("out size (= cols): expected 64, got 63"));
}

TEST_CASE(
    "core/convert: the x16 types hold q4_0's and q8_0's blocks, and repack_x16 writes the same "
    "bytes",
    "[core][convert]") {
  const auto seed = GENERATE(range(1, 6));
  const WeightType base = GENERATE(WeightType::q4_0, WeightType::q8_0);
  const WeightType type = tformer::x16_type(base);
  CAPTURE(seed, tformer::type_name(type));
  test::Random rng(100 + seed);
  const int rows = rng.integer(1, 40), cols = 32 * rng.integer(1, 5);
  CAPTURE(rows, cols);
  const long values = type == WeightType::q4_0x16 ? 256 : 512;  // bytes before a block's scales
  const test::Matrix src = test::Matrix::random(rng, rows, cols, 0.05f);
  std::vector<std::byte> plain(std::size_t(tformer::converted_bytes(base, rows, cols)));
  std::vector<std::byte> x16(std::size_t(tformer::converted_bytes(type, rows, cols)));
  REQUIRE(x16.size() == std::size_t((rows + 15) / 16 * cols / 32 * (values + 32)));
  const tformer::WeightView a = tformer::convert_weights(src.cview(), base, plain, "w");
  const tformer::WeightView b = tformer::convert_weights(src.cview(), type, x16, "w");
  std::vector<std::byte> repacked(x16.size(), std::byte{0x5a});
  const tformer::WeightView c = tformer::repack_x16(a, repacked);
  REQUIRE(repacked == x16);
  REQUIRE(c.type() == type);
  REQUIRE(c.activations() == tformer::Activations::int8);
  REQUIRE(std::string(c.name()) == "w");
  std::vector<float> ra(static_cast<std::size_t>(cols)), rb(static_cast<std::size_t>(cols));
  for (int r = 0; r < rows; ++r) {  // the same values, and the reference reads them from b's bytes
    tformer::dequantize_row(a, r, ra);
    tformer::dequantize_row(b, r, rb);
    REQUIRE(ra == rb);
    const auto expected = ref::decode_x16_row(ref::Format(int(type)),
                                              reinterpret_cast<const unsigned char*>(x16.data()),
                                              long(b.row_stride()), cols, r);
    for (int j = 0; j < cols; ++j) REQUIRE(double(rb[std::size_t(j)]) == expected[std::size_t(j)]);
  }
  // Padding rows: d = 0, and values 0 (q4_0x16: nibbles 8, bytes 0x88; q8_0x16: q + 128 = 0x80).
  const std::byte zero{std::uint8_t(type == WeightType::q4_0x16 ? 0x88 : 0x80)};
  for (int r = rows; r < (rows + 15) / 16 * 16; ++r)
    for (int blk = 0; blk < cols / 32; ++blk) {
      const std::byte* at = x16.data() + (r / 16) * b.row_stride() + (values + 32) * blk;
      for (int c = 0; c < values / 64; ++c)
        for (int i = 0; i < 4; ++i) REQUIRE(at[64 * c + 4 * (r % 16) + i] == zero);
      REQUIRE(at[values + 2 * (r % 16)] == std::byte{0});
      REQUIRE(at[values + 1 + 2 * (r % 16)] == std::byte{0});
    }
  // Bad input writes nothing: another type, a short buffer.
  const auto untouched = repacked;
  REQUIRE_THROWS_WITH(tformer::repack_x16(b, repacked),
                      Contains(std::string("w (") + tformer::type_name(type) +
                               ") type: expected q4_0 or q8_0, got " + tformer::type_name(type)));
  REQUIRE_THROWS_WITH(tformer::repack_x16(a, std::span(repacked).first(repacked.size() - 1)),
                      Contains("dst size in bytes: expected " + std::to_string(x16.size())));
  REQUIRE(repacked == untouched);
}
