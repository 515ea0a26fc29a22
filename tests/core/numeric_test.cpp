// core/numeric.hpp: bf16 / f16 conversions and q8_0 / q4_0 blocks, against the formats'
// definitions (tests/reference/weight_reference.hpp) and, where the level has F16C, the hardware.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#if defined(__F16C__)
#include <immintrin.h>  // the hardware's conversion, compared below
#endif

#include "reference/weight_reference.hpp"
#include "support/random.hpp"
#include "tformer/core/numeric.hpp"
#include "tformer/core/simd.hpp"

namespace {

using tformer::bf16;
using tformer::f16;

// A float from raw bits spread over the whole range (sign, exponent and fraction uniform).
float any_float(test::Random& rng) {
  return std::bit_cast<float>(std::uint32_t(rng.engine()()));
}

// Whether `got` is the correctly rounded (nearest, ties to even) encoding of x among the finite
// values `value(bits)`, checking both neighbours in magnitude.
template <class Decode>
bool nearest_even(double x, std::uint16_t got, Decode value) {
  const std::uint16_t sign = got & 0x8000, mag = got & 0x7fff;
  const double g = value(got), err = std::abs(g - x);
  for (int step : {-1, 1}) {
    const int n = int(mag) + step;
    if (n < 0) continue;
    const double other = value(std::uint16_t(sign | n));
    if (std::isnan(other) || std::isinf(other)) continue;
    const double e = std::abs(other - x);
    if (e < err) return false;
    if (e == err && (mag & 1)) return false;  // a tie must go to the even encoding
  }
  return true;
}

}  // namespace

TEST_CASE("core/numeric: every f16 decodes exactly and round-trips", "[core][numeric]") {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float f = tformer::to_float(f16{std::uint16_t(h)});
    const double expected = ref::half_value(std::uint16_t(h));
    INFO("f16 bits " << h);
#if defined(__F16C__)
    REQUIRE(std::bit_cast<std::uint32_t>(f) == std::bit_cast<std::uint32_t>(_cvtsh_ss(h)));
#endif
    if (std::isnan(expected)) {
      // The sign and payload kept, the quiet bit set: F16C's result, on every build.
      const std::uint32_t sign = (h & 0x8000u) << 16, payload = (h & 0x3ffu) << 13;
      REQUIRE(std::bit_cast<std::uint32_t>(f) == (sign | 0x7fc00000u | payload));
      REQUIRE(std::isnan(tformer::to_float(tformer::to_f16(f))));
      continue;
    }
    REQUIRE(double(f) == expected);
    REQUIRE(tformer::to_f16(f).bits == h);
  }
}

TEST_CASE("core/numeric: float to f16 rounds to nearest even, overflows to inf", "[core][numeric]") {
  test::Random rng(7);
  for (int i = 0; i < 200000; ++i) {
    // Half the draws near f16's range, half anywhere.
    const float x = i % 2 ? any_float(rng) : float(rng.uniform(-70000.0, 70000.0) *
                                                     std::ldexp(1.0, rng.integer(-30, 0)));
    if (std::isnan(x)) continue;
    const f16 h = tformer::to_f16(x);
    INFO("x = " << x << " (bits " << std::bit_cast<std::uint32_t>(x) << ") -> " << h.bits);
    if (std::abs(x) >= 65520.0f) {
      REQUIRE((h.bits & 0x7fff) == 0x7c00);
    } else {
      REQUIRE((h.bits & 0x7c00) != 0x7c00);
      REQUIRE(nearest_even(x, h.bits, ref::half_value));
    }
    REQUIRE((h.bits >> 15) == (std::bit_cast<std::uint32_t>(x) >> 31));
#if defined(__F16C__)
    REQUIRE(h.bits == _cvtss_sh(x, 0));
#endif
  }
  // The edges: the largest finite, the first rounding to inf, the smallest subnormal's half.
  REQUIRE(tformer::to_f16(65504.0f).bits == 0x7bff);
  REQUIRE(tformer::to_f16(65519.99f).bits == 0x7bff);
  REQUIRE(tformer::to_f16(65520.0f).bits == 0x7c00);
  REQUIRE(tformer::to_f16(0x1p-24f).bits == 0x0001);
  REQUIRE(tformer::to_f16(0x1p-25f).bits == 0x0000);           // a tie, to even (zero)
  REQUIRE(tformer::to_f16(0x1.8p-24f).bits == 0x0002);         // a tie, to even (2)
  REQUIRE(std::isnan(tformer::to_float(tformer::to_f16(std::numeric_limits<float>::quiet_NaN()))));
  REQUIRE(tformer::to_f16(-INFINITY).bits == 0xfc00);
}

TEST_CASE("core/numeric: bf16 decodes exactly and rounds to nearest even", "[core][numeric]") {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const double expected = ref::bfloat_value(std::uint16_t(b));
    const float f = tformer::to_float(bf16{std::uint16_t(b)});
    if (std::isnan(expected)) {
      REQUIRE(std::isnan(f));
      continue;
    }
    REQUIRE(double(f) == expected);
    REQUIRE(tformer::to_bf16(f).bits == b);
  }
  test::Random rng(8);
  for (int i = 0; i < 200000; ++i) {
    const float x = any_float(rng);
    const bf16 b = tformer::to_bf16(x);
    INFO("x bits " << std::bit_cast<std::uint32_t>(x) << " -> " << b.bits);
    if (std::isnan(x)) {
      REQUIRE(std::isnan(tformer::to_float(b)));
    } else if (std::isinf(tformer::to_float(b))) {
      REQUIRE(std::abs(x) >= 0x1.ffp127f);  // only values past the largest bf16's half-step
    } else {
      REQUIRE(nearest_even(x, b.bits, ref::bfloat_value));
    }
  }
  REQUIRE(tformer::to_bf16(1.00390625f).bits == 0x3f80);  // 1 + 2^−8: a tie, to even
  REQUIRE(tformer::to_bf16(1.01171875f).bits == 0x3f82);  // 1 + 3·2^−8: a tie, to even
}

TEST_CASE("core/numeric: block layouts are GGUF's", "[core][numeric]") {
  // Element j < 16 in the low nibble of byte j, element j + 16 in its high nibble.
  tformer::BlockQ4_0 b{};
  b.d = tformer::to_f16(0.5f);
  for (int j = 0; j < 16; ++j) b.q[j] = std::uint8_t(j | ((15 - j) << 4));
  unsigned char bytes[18];
  std::memcpy(bytes, &b, 18);
  REQUIRE(bytes[0] == 0x00);
  REQUIRE(bytes[1] == 0x38);  // 0.5 as f16, little-endian
  float out[32];
  tformer::dequantize(b, out);
  const auto expected = ref::decode_row(ref::Format::q4_0, bytes, 32, 0);
  for (int j = 0; j < 32; ++j) REQUIRE(double(out[j]) == expected[j]);
  REQUIRE(out[1] == (1 - 8) * 0.5f);
  REQUIRE(out[17] == (14 - 8) * 0.5f);
}

TEST_CASE("core/numeric: q8_0 and q4_0 blocks within their round-trip bounds", "[core][numeric]") {
  const auto seed = GENERATE(range(1, 41));
  CAPTURE(seed);
  test::Random rng(seed);
  const float scale = float(std::ldexp(1.0, rng.integer(-6, 12)));
  std::vector<float> x = rng.normal_floats(32, scale);
  if (seed % 5 == 0) x[std::size_t(seed % 32)] *= 40.0f;  // one outlier
  if (seed % 7 == 0) std::fill(x.begin(), x.end(), 0.0f);
  double m = 0;
  float signed_extreme = 0;
  for (float v : x)
    if (std::abs(v) > m) m = std::abs(v), signed_extreme = v;
  CAPTURE(scale, m);

  const tformer::BlockQ8_0 q8 = tformer::quantize_q8_0(x.data());
  float back[32];
  tformer::dequantize(q8, back);
  const double d8 = std::abs(double(tformer::to_float(q8.d)));
  REQUIRE(std::abs(d8 - m / 127) <= m / 127 * 0x1p-11);
  for (int j = 0; j < 32; ++j) {
    INFO("q8_0 element " << j);
    REQUIRE(std::abs(double(back[j]) - x[j]) <= d8 / 2);
  }

  const tformer::BlockQ4_0 q4 = tformer::quantize_q4_0(x.data());
  tformer::dequantize(q4, back);
  const double d4 = std::abs(double(tformer::to_float(q4.d)));
  for (int j = 0; j < 32; ++j) {
    INFO("q4_0 element " << j);
    // The signed extreme maps to −8·d; values of the other sign near it clamp at 7·d.
    const bool clamped = x[j] * signed_extreme < 0 && std::abs(x[j]) > 7.5 * d4;
    REQUIRE(std::abs(double(back[j]) - x[j]) <= (clamped ? d4 : d4 / 2) + std::abs(x[j]) * 0x1p-11);
  }
}

TEST_CASE("core/numeric: representable blocks round-trip exactly", "[core][numeric]") {
  test::Random rng(3);
  const float d = tformer::to_float(tformer::to_f16(0.0123f));
  float x8[32], x4[32], back[32];
  for (int j = 0; j < 32; ++j) {
    x8[j] = float(rng.integer(-127, 127)) * d;
    x4[j] = float(rng.integer(-7, 7)) * d;  // −8·d is the extreme below
  }
  x8[5] = 127 * d;
  x4[9] = -8 * d;
  tformer::dequantize(tformer::quantize_q8_0(x8), back);
  for (int j = 0; j < 32; ++j) REQUIRE(back[j] == x8[j]);
  tformer::dequantize(tformer::quantize_q4_0(x4), back);
  for (int j = 0; j < 32; ++j) REQUIRE(back[j] == x4[j]);
}
