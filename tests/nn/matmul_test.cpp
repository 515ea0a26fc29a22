// nn/matmul.hpp: y = x · Wᵀ for every weight type against a double reference over W's stored
// values (decoded by tests/reference/weight_reference.hpp from the formats' definitions).
//
// Tolerance: the kernel decodes each weight to exactly its stored value, so the only error is the
// float summation. Each output is the sum of ⌈K/lanes⌉ products per lane (FMA, one rounding each),
// lanes reduced in a tree of log2(lanes) levels, the slices' partial sums added (slices of 768
// values or more: prefill panels 768 on AVX-512, 1536 below; 1024 in the scalar build and the
// bf16 kernels; counted as K/512), and up to 31 scalar tail terms: the classical bound γ_n with
// n = ⌈K/lanes⌉ + log2(lanes) + K/512 + 33 gives
// |error| <= n·u·Σ|x_k·w_k| (+ u·|b| for the bias), u = 2^−24. In the scalar build lanes = 1.
#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <vector>

#include "reference/weight_reference.hpp"
#include "support/matrix.hpp"
#include "tformer/core/convert.hpp"
#include "tformer/core/memory.hpp"
#include "tformer/core/simd.hpp"
#include "tformer/nn/matmul.hpp"

using Catch::Matchers::Contains;
using tformer::WeightType;
using tformer::WeightView;

namespace {

// A random divisor of n: a q8_group group size (llama2.c uses 32 or 64; any divisor is allowed).
int random_divisor(test::Random& rng, int n) {
  std::vector<int> divisors;
  for (int d = 1; d <= n; ++d)
    if (n % d == 0) divisors.push_back(d);
  return divisors[std::size_t(rng.integer(0, int(divisors.size()) - 1))];
}

// A weight of `type` converted from random floats (q8_group: random int8 values and scales, a
// group of 32 or 64 when it divides cols, else a random divisor), kept with its bytes.
struct Weight {
  std::vector<std::byte> bytes;
  std::vector<float> scales;
  WeightView view;
  Weight(test::Random& rng, WeightType type, int rows, int cols) {
    if (type == WeightType::q8_group) {
      const int group = cols % 64 == 0 && rng.integer(0, 2) > 0 ? 64
                        : cols % 32 == 0 && rng.integer(0, 1) > 0 ? 32
                                                                  : random_divisor(rng, cols);
      bytes.resize(std::size_t(rows) * std::size_t(cols));
      for (auto& b : bytes) b = std::byte(std::uint8_t(std::int8_t(rng.integer(-127, 127))));
      scales.resize(std::size_t(rows * (cols / group)));
      for (auto& d : scales) d = 0.1f / 127.0f * float(rng.integer(1, 1000)) / 500.0f;
      view = WeightView::q8_group(reinterpret_cast<const std::int8_t*>(bytes.data()), scales.data(),
                                  group, rows, cols, "w");
      return;
    }
    const test::Matrix src = test::Matrix::random(rng, rows, cols, 0.1f);
    bytes.resize(std::size_t(tformer::converted_bytes(type, rows, cols)));
    view = tformer::convert_weights(src.cview(), type, bytes, "w");
  }
};

// y against the double reference, with the bound above; W's rows decoded from w's memory.
void check_matmul(const test::Matrix& x, const WeightView& wv, int out,
                  const std::vector<float>* bias, tformer::MatrixView<const float> y) {
  const long K = long(x.cols);
  const double u = FLT_EPSILON / 2, lanes = double(tformer::simd::lanes);
  const double n = std::ceil(K / lanes) + std::log2(lanes) + double(K / 512) + 33;
  for (int o = 0; o < out; ++o) {
    const auto w = ref::decode_view_row(wv, o);
    for (tformer::index t = 0; t < x.rows; ++t) {
      double exact = bias ? double((*bias)[std::size_t(o)]) : 0.0, magnitude = 0;
      for (long k = 0; k < K; ++k) {
        exact += double(x.at(t, k)) * w[std::size_t(k)];
        magnitude += std::abs(double(x.at(t, k)) * w[std::size_t(k)]);
      }
      const double tol = n * u * magnitude + (bias ? u * std::abs((*bias)[std::size_t(o)]) : 0.0);
      INFO("token " << t << " output " << o << " of " << out << ", K " << K);
      REQUIRE(std::abs(double(y.row(t)[o]) - exact) <= tol);
    }
  }
}

constexpr WeightType all_types[] = {WeightType::f32, WeightType::bf16, WeightType::f16,
                                    WeightType::q8_0, WeightType::q4_0, WeightType::q8_group};

// One token x through a random [out, x.cols] weight of each type whose blocks divide x.cols, y
// checked against the double reference; then property(type, w, y) for the test's own claim.
template <class Property>
void one_token_each_type(test::Random& rng, const test::Matrix& x, int out, Property&& property) {
  const int in = int(x.cols);
  for (WeightType type : all_types) {
    if (in % tformer::type_info(type).block_values != 0) continue;
    CAPTURE(tformer::type_name(type), in, out);
    const Weight w(rng, type, out, in);
    CAPTURE(w.view.group());
    test::Matrix y(1, out, -7.0f);
    tformer::matmul(x.cview(), w.view, y.view());
    check_matmul(x, w.view, out, nullptr, y.cview());
    property(type, w, y);
  }
}

// Output o of y has the bits of output first + o of `of`.
void require_same_bits(const test::Matrix& y, const test::Matrix& of, int first = 0) {
  for (int o = 0; o < int(y.cols); ++o)
    REQUIRE(std::bit_cast<std::uint32_t>(y.at(0, o)) ==
            std::bit_cast<std::uint32_t>(of.at(0, first + o)));
}

}  // namespace

TEST_CASE("nn/matmul: every type matches the reference on random shapes", "[nn][matmul]") {
  const auto seed = GENERATE(range(1, 31));
  CAPTURE(seed);
  test::Random rng(seed);
  // Decode (1–4 rows) and prefill shapes; `in` beyond one slice of the prefill panels (768
  // values on AVX-512, 1536 on AVX2) in some draws, and rows past one block of x (168 rows of a
  // 768-value slice on AVX-512, 85 of 1536 on AVX2) in others.
  const bool many_rows = seed % 5 == 1 && seed % 3 != 0;
  const int T = seed % 3 == 0 ? rng.integer(1, 4) : many_rows ? rng.integer(170, 400) : rng.integer(5, 70);
  const int blocks = seed % 4 == 0 || many_rows ? rng.integer(33, 80) : rng.integer(1, 12);
  const int out = many_rows ? rng.integer(1, 30) : rng.integer(1, 90);
  const test::Matrix x = test::Matrix::random(rng, T, 32 * blocks);
  const std::vector<float> bias = rng.normal_floats(std::size_t(out));
  for (WeightType type : all_types) {
    CAPTURE(tformer::type_name(type), T, 32 * blocks, out);
    const Weight w(rng, type, out, 32 * blocks);
    CAPTURE(w.view.group());
    test::Matrix y(T, out, -7.0f);
    tformer::matmul(x.cview(), w.view, y.view());
    check_matmul(x, w.view, out, nullptr, y.cview());
    tformer::matmul(x.cview(), w.view, bias, y.view());
    check_matmul(x, w.view, out, &bias, y.cview());
  }
}

TEST_CASE("nn/matmul: element types take any width (a scalar tail)", "[nn][matmul]") {
  const auto seed = GENERATE(range(1, 16));
  CAPTURE(seed);
  test::Random rng(100 + seed);
  const int T = rng.integer(1, 12), in = rng.integer(1, 1100), out = rng.integer(1, 40);
  const test::Matrix x = test::Matrix::random(rng, T, in);
  for (WeightType type : {WeightType::f32, WeightType::bf16, WeightType::f16, WeightType::q8_group}) {
    CAPTURE(tformer::type_name(type), T, in, out);
    const Weight w(rng, type, out, in);
    CAPTURE(w.view.group());
    test::Matrix y(T, out);
    tformer::matmul(x.cview(), w.view, y.view());
    check_matmul(x, w.view, out, nullptr, y.cview());
  }
}

TEST_CASE("nn/matmul: one token, rows longer than gemv_max_in (8 rows share x)", "[nn][matmul]") {
  const auto seed = GENERATE(range(1, 7));
  CAPTURE(seed);
  test::Random rng(200 + seed);
  // Element types any width past the limit (one past it in seed 2; a scalar tail), block types
  // whole blocks; out not a multiple of 8 in most draws (the last tile repeats W's last row).
  // f32 weights take gemv_f32 at any width; the others take the 8-row tile (SIMD builds).
  const int limit = int(tformer::matmul_kernels::gemv_max_in);
  const int in = seed == 2       ? limit + 1
                 : seed % 2 == 0 ? limit + rng.integer(1, 2000)
                                 : (limit / 32 + rng.integer(1, 60)) * 32;
  const int out = rng.integer(1, 21);
  const test::Matrix x = test::Matrix::random(rng, 1, in);
  one_token_each_type(rng, x, out, [](WeightType, const Weight&, const test::Matrix&) {});
}

TEST_CASE("nn/matmul: one token, x at any offset from a 64-byte boundary gives the same bits",
          "[nn][matmul]") {
  // Loads of x at every misalignment: the same products in the same order, so every offset of x
  // from a 64-byte boundary gives the same bits. Element types at any width (a scalar tail), block
  // types whole blocks; `in` up to gemv_max_in (gemv; f32 through gemv_f32).
  const auto seed = GENERATE(range(1, 5));
  CAPTURE(seed);
  test::Random rng(300 + seed);
  const int limit = int(tformer::matmul_kernels::gemv_max_in);
  const int in = seed == 1 ? limit : seed == 2 ? 32 * rng.integer(1, 40) : rng.integer(1, 1500);
  const int out = rng.integer(1, 40);
  const test::Matrix x = test::Matrix::random(rng, 1, in);
  tformer::AlignedBuffer<float> buffer(std::size_t(in) + 16);
  one_token_each_type(rng, x, out, [&](WeightType, const Weight& w, const test::Matrix& ref) {
    for (int offset = 0; offset < 16; ++offset) {
      CAPTURE(offset);
      std::copy_n(x.data.data(), in, buffer.data() + offset);
      test::Matrix y(1, out, -7.0f);
      tformer::matmul({buffer.data() + offset, 1, in}, w.view, y.view());
      require_same_bits(y, ref);
    }
  });
}

TEST_CASE("nn/matmul: one token through padded rows and row slices", "[nn][matmul]") {
  // The one-token GEMV steps from row to row by the view's stride (and q8_group's scale rows by
  // theirs): rows 64 bytes apart past their end, with bytes there that would poison a sum (0xff:
  // a NaN in bf16 and f16), and slices that start past row 0 give the packed view's bits.
  const auto seed = GENERATE(range(1, 4));
  CAPTURE(seed);
  test::Random rng(400 + seed);
  const int in = seed == 1 ? 32 * rng.integer(1, 30) : rng.integer(1, 900);
  const int out = rng.integer(2, 40);
  const test::Matrix x = test::Matrix::random(rng, 1, in);
  one_token_each_type(
      rng, x, out, [&](WeightType type, const Weight& w, const test::Matrix& packed) {
        const int first = rng.integer(1, out - 1), count = rng.integer(1, out - first);
        CAPTURE(first, count);
        test::Matrix slice(1, count, -7.0f);
        tformer::matmul(x.cview(), w.view.row_slice(first, count), slice.view());
        require_same_bits(slice, packed, first);
        if (type == WeightType::q8_group) return;  // its views carry scales: the slice covers them
        const auto row = std::size_t(tformer::row_bytes(type, in)), stride = row + 64;
        std::vector<std::byte> padded(stride * std::size_t(out), std::byte{0xff});
        for (int o = 0; o < out; ++o)
          std::copy_n(w.view.row(o), row, padded.data() + stride * std::size_t(o));
        const WeightView wide(type, padded.data(), out, in, tformer::index(stride), "w");
        test::Matrix y(1, out, -7.0f);
        tformer::matmul(x.cview(), wide, y.view());
        require_same_bits(y, packed);
      });
}

TEST_CASE("nn/matmul: strided x and y, row slices of a fused weight", "[nn][matmul]") {
  test::Random rng(5);
  const int T = 7, in = 96, q = 40, kv = 24;
  const test::Matrix wide = test::Matrix::random(rng, T, in + 5);
  test::Matrix x(T, in);
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < in; ++i) x.at(t, i) = wide.at(t, i);
  for (WeightType type : {WeightType::bf16, WeightType::q4_0, WeightType::q8_group}) {
    CAPTURE(tformer::type_name(type));
    const Weight qkv(rng, type, q + 2 * kv, in);
    test::Matrix ybuf(T, q + 2 * kv + 3, -1.0f), y(T, q + 2 * kv);
    const int firsts[] = {0, q, q + kv}, counts[] = {q, kv, kv};
    for (int p = 0; p < 3; ++p)
      tformer::matmul(wide.cview().col_slice(0, in), qkv.view.row_slice(firsts[p], counts[p]),
                      ybuf.view().col_slice(2 + firsts[p], counts[p]));
    for (int t = 0; t < T; ++t) {
      REQUIRE(ybuf.at(t, 0) == -1.0f);  // nothing written outside y's columns
      REQUIRE(ybuf.at(t, q + 2 * kv + 2) == -1.0f);
      for (int o = 0; o < q + 2 * kv; ++o) y.at(t, o) = ybuf.at(t, 2 + o);
    }
    check_matmul(x, qkv.view, q + 2 * kv, nullptr, y.cview());
  }
}

TEST_CASE("nn/matmul: bad shapes are errors that write nothing", "[nn][matmul]") {
  test::Random rng(9);
  const Weight w(rng, WeightType::q8_0, 8, 64);
  const test::Matrix x = test::Matrix::random(rng, 3, 64), x_bad = test::Matrix::random(rng, 3, 32);
  test::Matrix y(3, 8, 2.0f), y_bad(3, 7, 2.0f);
  REQUIRE_THROWS_WITH(tformer::matmul(x_bad.cview(), w.view, y.view()),
                      Contains("matmul: x.cols (= w.cols, the input width): expected 64, got 32"));
  REQUIRE_THROWS_WITH(tformer::matmul(x.cview(), w.view, y_bad.view()),
                      Contains("matmul: y shape: expected [3, 8], got [3, 7]"));
  const std::vector<float> bias(7);
  REQUIRE_THROWS_WITH(tformer::matmul(x.cview(), w.view, bias, y.view()),
                      Contains("bias size (= w.rows): expected 8, got 7"));
  test::Matrix shared(8, 8, 2.0f);
  const WeightView over(WeightType::f32, shared.data.data(), 8, 8);
  const test::Matrix x8 = test::Matrix::random(rng, 3, 8);
  REQUIRE_THROWS_WITH(tformer::matmul(x8.cview(), over, shared.view().row_slice(5, 3)),
                      Contains("y: expected memory disjoint from w"));
  for (float v : shared.data) REQUIRE(v == 2.0f);
  for (float v : y.data) REQUIRE(v == 2.0f);
  // Empty shapes: no tokens, no outputs, or no inputs (y = bias).
  tformer::matmul(x.cview().row_slice(0, 0), w.view, y.view().row_slice(0, 0));
  const test::Matrix none(2, 0);
  test::Matrix y2(2, 3, 5.0f);
  const std::vector<float> b3 = {1, 2, 3};
  tformer::matmul(none.cview(), WeightView(WeightType::f32, nullptr, 3, 0), b3, y2.view());
  REQUIRE(y2.at(1, 2) == 3.0f);
}

// ---- int8 activations (nn/matmul_int8.hpp) ----
namespace {

// x's blocks of 32 quantized by the definition: d = max|x|/127 in float, q = nearbyint(x·(1/d));
// d = 0 and q = 0 when d is below the smallest normal float; d = NaN and q = 0 for a block holding
// a NaN or an infinity.
struct QuantizedRow {
  std::vector<int> q;
  std::vector<float> d;
};
QuantizedRow quantize_by_definition(const float* x, long n) {
  QuantizedRow r;
  for (long b = 0; b < n / 32; ++b) {
    float m = 0;
    bool finite = true;
    for (long j = 0; j < 32; ++j) {
      finite = finite && std::isfinite(x[32 * b + j]);
      if (finite) m = std::max(m, std::abs(x[32 * b + j]));
    }
    float d = m / 127.0f;
    if (d < FLT_MIN) d = 0;
    const float id = d > 0 ? 1.0f / d : 0.0f;
    r.d.push_back(finite ? d : NAN);
    for (long j = 0; j < 32; ++j)
      r.q.push_back(finite ? int(std::nearbyint(x[32 * b + j] * id)) : 0);
  }
  return r;
}

// y against Σ_b d_w·d_x·Σ q_w·q_x (exact integer sums, products in double), within the float
// bound of the kernel's accumulation: each block's lanes are exact integers, scaled by d_w·d_x
// (one rounding) and summed; n·u·Σ|d_w q_w · d_x q_x| with n as above covers it. And against the
// float product of x and W's values: quantizing x moves each output by at most
// Σ_b (d_x,b / 2 + 127·2u·d_x,b)·Σ_{k in b} |w_k| (|x/d − q| <= 1/2, and x·(1/d) differs from x/d
// by two roundings of a value up to 127) and the float bound.
void check_int8(const test::Matrix& x, const WeightView& wv, tformer::MatrixView<const float> y) {
  const long K = long(x.cols);
  const double u = FLT_EPSILON / 2, lanes = double(tformer::simd::lanes);
  const double n = std::ceil(K / lanes) + std::log2(lanes) + double(K / 1024) + 35;
  for (tformer::index t = 0; t < x.rows; ++t) {
    const QuantizedRow qx = quantize_by_definition(x.data.data() + t * x.cols, K);
    for (int o = 0; o < wv.rows(); ++o) {
      const auto w = ref::decode_view_row(wv, o);
      double exact = 0, magnitude = 0, real = 0, real_magnitude = 0, quantization = 0;
      for (long k = 0; k < K; ++k) {
        const double xq = double(qx.d[std::size_t(k / 32)]) * qx.q[std::size_t(k)];
        exact += w[std::size_t(k)] * xq;
        magnitude += std::abs(w[std::size_t(k)] * xq);
        real += w[std::size_t(k)] * double(x.at(t, k));
        real_magnitude += std::abs(w[std::size_t(k)] * double(x.at(t, k)));
        quantization += std::abs(w[std::size_t(k)]) * double(qx.d[std::size_t(k / 32)]) * (0.5 + 127 * 2 * u);
      }
      INFO("token " << t << " output " << o << " of " << wv.rows() << ", K " << K);
      REQUIRE(std::abs(double(y.row(t)[o]) - exact) <= n * u * magnitude);
      REQUIRE(std::abs(double(y.row(t)[o]) - real) <= quantization + n * u * (real_magnitude + magnitude));
    }
  }
}

}  // namespace

TEST_CASE("nn/matmul: int8 activations give the integer dot products of quantized x",
          "[nn][matmul][int8]") {
  const auto seed = GENERATE(range(1, 25));
  CAPTURE(seed);
  test::Random rng(300 + seed);
  // Decode and prefill shapes; some rows past the 64 KiB buffer's slice (16 rows: 3,232 or 3,264
  // values).
  const int T = seed % 3 == 0 ? rng.integer(1, 4) : rng.integer(5, 40);
  const int blocks = seed % 4 == 0 ? rng.integer(100, 180) : rng.integer(1, 24);
  const int out = rng.integer(1, 40);
  const test::Matrix x = test::Matrix::random(rng, T, 32 * blocks);
  for (WeightType type : {WeightType::q8_0, WeightType::q4_0, WeightType::q8_group,
                          WeightType::q4_0x16, WeightType::q8_0x16}) {
    Weight w(rng, type, out, 32 * blocks);
    if (type == WeightType::q8_group && (w.view.group() < 32 || (w.view.group() & (w.view.group() - 1))))
      continue;  // int8 activations need a power-of-two group >= 32
    CAPTURE(tformer::type_name(type), T, 32 * blocks, out, w.view.group());
    test::Matrix y(T, out, -7.0f);
    tformer::matmul(x.cview(), w.view.with_activations(tformer::Activations::int8), y.view());
    check_int8(x, w.view, y.cview());
    // A row alone (one token, one slice) meets the same integer sums as in the batch: its blocks
    // quantize the same.
    const int t = rng.integer(0, T - 1);
    test::Matrix row(1, 32 * blocks), one(1, out);
    for (int k = 0; k < 32 * blocks; ++k) row.at(0, k) = x.at(t, k);
    tformer::matmul(row.cview(), w.view.with_activations(tformer::Activations::int8), one.view());
    check_int8(row, w.view, one.cview());
  }
}

TEST_CASE("nn/matmul: int8 activations: one row longer than the buffer's slice",
          "[nn][matmul][int8]") {
  // 1,700 blocks (54,400 values): past one row's slice at every level (43,648 values with the
  // 512-bit kernel, 52,416 without), so the one-row kernel also runs on a slice that starts inside
  // the row, and the slices' sums meet; two rows (about 26,000 values a slice) too. 19 rows of W: a
  // group of 16 (q4_0x16, q8_0x16) and a padded one.
  test::Random rng(91);
  const test::Matrix x = test::Matrix::random(rng, 2, 32 * 1700);
  for (WeightType type :
       {WeightType::q8_0, WeightType::q4_0, WeightType::q4_0x16, WeightType::q8_0x16}) {
    const Weight w(rng, type, 19, 32 * 1700);
    CAPTURE(tformer::type_name(type));
    test::Matrix y(2, 19, -7.0f);
    tformer::matmul(x.cview(), w.view.with_activations(tformer::Activations::int8), y.view());
    check_int8(x, w.view, y.cview());
    test::Matrix x1(1, 32 * 1700), y1(1, 19, -7.0f);  // one token: the decode kernels
    std::copy_n(x.data.data(), 32 * 1700, x1.data.data());
    tformer::matmul(x1.cview(), w.view.with_activations(tformer::Activations::int8), y1.view());
    check_int8(x1, w.view, y1.cview());
  }
}

TEST_CASE("nn/matmul: int8 activations: zero and non-finite blocks, and the types that have them",
          "[nn][matmul][int8]") {
  test::Random rng(77);
  const Weight w(rng, WeightType::q4_0, 5, 96);
  test::Matrix x = test::Matrix::random(rng, 3, 96);
  for (int k = 32; k < 64; ++k) x.at(0, k) = 0.0f;  // an all-zero block: d = 0, contributes 0
  x.at(1, 70) = NAN;
  x.at(2, 3) = INFINITY;
  test::Matrix y(3, 5);
  tformer::matmul(x.cview(), w.view.with_activations(tformer::Activations::int8), y.view());
  for (int o = 0; o < 5; ++o) {
    REQUIRE(std::isfinite(y.at(0, o)));
    REQUIRE(std::isnan(y.at(1, o)));
    REQUIRE(std::isnan(y.at(2, o)));
  }
  test::Matrix x0(1, 96);
  for (int k = 0; k < 96; ++k) x0.at(0, k) = x.at(0, k);
  check_int8(x0, w.view, y.cview().row_slice(0, 1));
  // One row alone (45 blocks, on AVX512_VNNI: two steps of 16 blocks, a step of 4 pairs, a last
  // block): a NaN or an infinity in any block, in a group of 16, the pairs or the last block, makes
  // every output NaN.
  for (WeightType type :
       {WeightType::q8_0, WeightType::q4_0, WeightType::q4_0x16, WeightType::q8_0x16}) {
    const Weight long_w(rng, type, 3, 32 * 45);
    for (int at : {5, 32 * 20 + 8, 32 * 33 + 1, 32 * 38, 32 * 44 + 31}) {
      CAPTURE(tformer::type_name(type), at);
      test::Matrix row = test::Matrix::random(rng, 1, 32 * 45), out(1, 3);
      row.at(0, at) = at % 2 == 0 ? INFINITY : NAN;
      tformer::matmul(row.cview(), long_w.view.with_activations(tformer::Activations::int8),
                      out.view());
      for (int o = 0; o < 3; ++o) REQUIRE(std::isnan(out.at(0, o)));
    }
  }
  test::Matrix y1(1, 5);
  for (WeightType type : {WeightType::f32, WeightType::bf16, WeightType::f16}) {
    const Weight e(rng, type, 5, 96);
    REQUIRE_THROWS_WITH(tformer::matmul(x.cview().row_slice(0, 1), e.view.with_activations(tformer::Activations::int8), y1.view()),
                        Contains("activations: expected f32, int8 with q8_0, q4_0 or q8_group in power-of-two groups >= 32, or bf16 with bf16, got int8"));
  }
  std::vector<std::int8_t> q(5 * 96);
  std::vector<float> s(5 * 6, 0.01f);
  const WeightView g16 = WeightView::q8_group(q.data(), s.data(), 16, 5, 96, "w");
  REQUIRE_THROWS_WITH(tformer::matmul(x.cview().row_slice(0, 1), g16.with_activations(tformer::Activations::int8), y1.view()),
                      Contains("got int8 with a group of 16"));
}

TEST_CASE("nn/matmul: int8 activations: x quantizes by the definition, edge cases included",
          "[nn][matmul][int8]") {
  // quantize_input against quantize_by_definition, bit for bit, on crafted blocks: each special
  // value in each of a block's four groups of 8 (the vector path's registers), at every excess.
  namespace k = tformer::matmul_int8_kernels;
  std::vector<std::vector<float>> blocks;
  test::Random rng(5);
  const auto random_block = [&](float scale) {
    std::vector<float> b(32);
    for (auto& v : b) v = float(scale * rng.uniform(-1, 1));
    return b;
  };
  // max|x| = 127, so d = 1 and 1/d = 1 exactly: ±(n + 1/2) are ties, to even (−0.5 → −0 → 0).
  std::vector<float> ties(32);
  for (int j = 0; j < 32; ++j)
    ties[std::size_t(j)] = float(j % 2 == 0 ? 1 : -1) * (float(j) + 0.5f);
  ties[31] = -127.0f;
  blocks.push_back(ties);
  blocks.push_back(std::vector<float>(32, -0.0f));  // all −0: d = 0
  blocks.push_back(std::vector<float>(32, 0.0f));
  std::vector<float> subnormal(32, 1e-40f);  // all subnormal: d = 0
  subnormal[7] = -3e-39f;
  blocks.push_back(subnormal);
  for (const float m : {1e-37f, 127 * FLT_MIN, 126 * FLT_MIN, 1.0f, FLT_MAX}) {
    // d subnormal; d the smallest normal float, then just below it; ordinary; the largest float.
    for (int at : {0, 9, 18, 31}) {
      std::vector<float> b = random_block(m);
      b[std::size_t(at)] = at % 2 == 0 ? m : -m;
      b[std::size_t((at + 5) % 32)] = 1e-41f;  // a subnormal beside normal values: q = 0
      b[std::size_t((at + 11) % 32)] = -0.0f;
      blocks.push_back(b);
    }
  }
  for (const float bad : {NAN, INFINITY, -INFINITY})
    for (int at : {2, 13, 20, 29}) {
      std::vector<float> b = random_block(3.0f);
      b[std::size_t(at)] = bad;
      blocks.push_back(b);
    }
  std::vector<float> x;
  for (const auto& b : blocks) x.insert(x.end(), b.begin(), b.end());
  const long n = long(x.size());
  const QuantizedRow want = quantize_by_definition(x.data(), n);
  for (const std::int32_t excess : {0, 8, 128}) {
    std::vector<std::int8_t> q(std::size_t(n), 99);
    std::vector<k::BlockScale> s(std::size_t(n / 32));
    k::quantize_input(x.data(), n, excess, q.data(), s.data());
    for (long b = 0; b < n / 32; ++b) {
      CAPTURE(excess, b);
      const float d = want.d[std::size_t(b)];
      REQUIRE((std::isnan(d) ? std::isnan(s[std::size_t(b)].d)
                             : std::bit_cast<std::uint32_t>(s[std::size_t(b)].d) ==
                                   std::bit_cast<std::uint32_t>(d)));
      int sum = 0;
      for (long j = 32 * b; j < 32 * b + 32; ++j) {
        CAPTURE(j);
        REQUIRE(int(q[std::size_t(j)]) == want.q[std::size_t(j)]);
        REQUIRE(std::abs(want.q[std::size_t(j)]) <= 127);
        sum += want.q[std::size_t(j)];
      }
      REQUIRE(s[std::size_t(b)].correction == -excess * sum);
    }
  }
  // Spot checks of the definition itself.
  REQUIRE(want.q[0] == 0);   // 0.5 → 0
  REQUIRE(want.q[1] == -2);  // −1.5 → −2
  REQUIRE(want.q[2] == 2);   // 2.5 → 2
  REQUIRE(want.q[31] == -127);
  REQUIRE(want.d[0] == 1.0f);
  REQUIRE(want.d[3] == 0.0f);  // the subnormal block
  REQUIRE(want.d[4] == 0.0f);
  REQUIRE(want.d[8] == FLT_MIN);
  REQUIRE(want.q[8 * 32 + 0] == 127);
  REQUIRE(want.d[12] == 0.0f);
}

TEST_CASE("nn/matmul: x16 row slices are whole groups, and give those rows' outputs",
          "[nn][matmul][int8]") {
  for (WeightType type : {WeightType::q4_0x16, WeightType::q8_0x16}) {
    CAPTURE(tformer::type_name(type));
    test::Random rng(78);
    const Weight w(rng, type, 45, 96);  // groups of 16, 16, 13
    const test::Matrix x = test::Matrix::random(rng, 5, 96);
    test::Matrix all(5, 45), part(5, 29);
    tformer::matmul(x.cview(), w.view, all.view());
    tformer::matmul(x.cview(), w.view.row_slice(16, 29), part.view());
    for (int t = 0; t < 5; ++t)
      for (int o = 0; o < 29; ++o) REQUIRE(part.at(t, o) == all.at(t, 16 + o));
    test::Matrix y(5, 3);
    REQUIRE_THROWS_WITH(tformer::matmul(x.cview(), w.view.row_slice(8, 3), y.view()),
                        Contains(std::string("w (") + tformer::type_name(type) +
                                 ") row_slice start: expected a multiple of 16"));
  }
}

// bf16 activations (nn/matmul_bf16.hpp): y is the float sum of the products of x rounded to bf16
// with W's values, so check_matmul's bound holds against the double reference over the rounded x
// (per lane at most 2 roundings per 32 values with vdpbf16ps, 1 per lane of W values elsewhere;
// K/1024 slices; the same reduction tree; x holds no subnormals, which vdpbf16ps zeroes).
TEST_CASE("nn/matmul: bf16 activations are the float products of x rounded to bf16", "[nn][matmul][bf16]") {
  const auto seed = GENERATE(range(1, 25));
  CAPTURE(seed);
  test::Random rng(300 + seed);
  // Decode and prefill; any width (tails of a 32-value step); more rows than one 64 KiB buffer of
  // rounded x holds (32 rows of a 1024-value slice) in some draws.
  const int T = seed % 3 == 0 ? rng.integer(1, 3) : seed % 4 == 1 ? rng.integer(33, 120) : rng.integer(4, 32);
  const int in = seed % 2 == 0 ? rng.integer(1, 300) : rng.integer(900, 2600);
  const int out = rng.integer(1, 40);
  CAPTURE(T, in, out);
  const test::Matrix x = test::Matrix::random(rng, T, in);
  test::Matrix rounded = x;
  for (int t = 0; t < T; ++t)
    for (int k = 0; k < in; ++k) rounded.at(t, k) = tformer::to_float(tformer::to_bf16(x.at(t, k)));
  const Weight w(rng, WeightType::bf16, out, in);
  const std::vector<float> bias = rng.normal_floats(std::size_t(out));
  test::Matrix y(T, out, -7.0f);
  const WeightView wb = w.view.with_activations(tformer::Activations::bf16);
  tformer::matmul(x.cview(), wb, y.view());
  check_matmul(rounded, w.view, out, nullptr, y.cview());
  tformer::matmul(x.cview(), wb, bias, y.view());
  check_matmul(rounded, w.view, out, &bias, y.cview());
}

TEST_CASE("nn/matmul: bf16 activations, decode rows longer than one buffer slice", "[nn][matmul][bf16]") {
  // Decode takes whole rows up to 10,912 values; longer rows run in slices.
  test::Random rng(41);
  for (int T : {1, 3}) {
    const int in = 23000, out = 9;
    const test::Matrix x = test::Matrix::random(rng, T, in);
    test::Matrix rounded = x;
    for (int t = 0; t < T; ++t)
      for (int k = 0; k < in; ++k) rounded.at(t, k) = tformer::to_float(tformer::to_bf16(x.at(t, k)));
    const Weight w(rng, WeightType::bf16, out, in);
    test::Matrix y(T, out, -7.0f);
    tformer::matmul(x.cview(), w.view.with_activations(tformer::Activations::bf16), y.view());
    check_matmul(rounded, w.view, out, nullptr, y.cview());
  }
}

TEST_CASE("nn/matmul: bf16 activations round x to nearest, ties to even", "[nn][matmul][bf16]") {
  // x = 1 + 2^-10 rounds to 1 and 1 + 2^-8 (halfway to 1 + 2^-7) to the even 1; 1 + 3·2^-8 (halfway
  // between 1 + 2^-7 and 1 + 2^-6) to 1 + 2^-6. W holds ones (exact in bf16) at the tested column.
  for (int T : {1, 2, 5}) {
    CAPTURE(T);
    const int in = 70, out = 9;
    test::Matrix x(T, in, 0.0f), wf(out, in, 0.0f);
    const float values[] = {1.0f + 0x1p-10f, 1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f};
    const float expected[] = {1.0f, 1.0f, 1.0f + 0x1p-6f};
    for (int o = 0; o < out; ++o) wf.at(o, (o * 7) % in) = 1.0f;
    for (int t = 0; t < T; ++t)
      for (int o = 0; o < out; ++o) x.at(t, (o * 7) % in) = values[(t + o) % 3];
    std::vector<std::byte> bytes(std::size_t(tformer::converted_bytes(WeightType::bf16, out, in)));
    const WeightView w = tformer::convert_weights(wf.cview(), WeightType::bf16, bytes, "w");
    test::Matrix y(T, out), yf(T, out);
    tformer::matmul(x.cview(), w.with_activations(tformer::Activations::bf16), y.view());
    tformer::matmul(x.cview(), w, yf.view());
    for (int t = 0; t < T; ++t)
      for (int o = 0; o < out; ++o) {
        CAPTURE(t, o);
        REQUIRE(y.at(t, o) == expected[(t + o) % 3]);
        REQUIRE(yf.at(t, o) == values[(t + o) % 3]);
      }
  }
}

TEST_CASE("nn/matmul: bf16 activations only with bf16 weights", "[nn][matmul][bf16]") {
  test::Random rng(5);
  const test::Matrix x = test::Matrix::random(rng, 2, 64);
  test::Matrix y(2, 3, -7.0f);
  for (WeightType type : {WeightType::f32, WeightType::f16, WeightType::q8_0, WeightType::q4_0}) {
    const Weight w(rng, type, 3, 64);
    REQUIRE_THROWS_WITH(tformer::matmul(x.cview(), w.view.with_activations(tformer::Activations::bf16), y.view()),
                        Contains("activations: expected f32, int8 with q8_0, q4_0 or q8_group in power-of-two groups >= 32, or bf16 with bf16, got bf16"));
    REQUIRE(y.at(1, 2) == -7.0f);
  }
}
