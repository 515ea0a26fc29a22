// RMSNorm against the double reference. Tolerance (nn/rmsnorm.hpp): relative
// (max_terms_per_partial_sum(n) + 12)·u per output, u = 2^−24.
#include <catch2/catch.hpp>

#include <cfloat>
#include <cmath>
#include <algorithm>
#include <limits>

#include "reference/ffn_reference.hpp"
#include "support/matrix.hpp"
#include "tformer/nn/rmsnorm.hpp"

using Catch::Matchers::Contains;
using test::Matrix;
using tformer::NormScale;

namespace {

double bound(tformer::index n) {
  return (double(tformer::rmsnorm_kernels::max_terms_per_partial_sum(n)) + 12) * FLT_EPSILON / 2;
}

void check_rows(const Matrix& x, const std::vector<float>& w, float eps, bool one_plus,
                const Matrix& y) {
  for (tformer::index r = 0; r < x.rows; ++r) {
    ref::Vec xr(x.data.begin() + r * x.cols, x.data.begin() + (r + 1) * x.cols);
    const auto expected = ref::rmsnorm(xr, w, eps, one_plus);
    for (tformer::index i = 0; i < x.cols; ++i) {
      INFO("row " << r << " column " << i);
      REQUIRE(std::abs(y.at(r, i) - expected[i]) <= bound(x.cols) * std::abs(expected[i]) + 1e-30);
    }
  }
}

}  // namespace

TEST_CASE("nn/rmsnorm: rows match the reference, both scales", "[nn][rmsnorm][property]") {
  const auto seed = GENERATE(range(1, 21));
  CAPTURE(seed);
  test::Random rng(seed);
  const int T = rng.integer(1, 12), n = rng.integer(1, 5000);
  const float eps = seed % 2 ? 1e-6f : 1e-5f;
  CAPTURE(T, n);
  const Matrix x = Matrix::random(rng, T, n, float(rng.uniform(0.01, 100.0)));
  const auto w = rng.normal_floats(n);
  Matrix y(T, n);
  tformer::rmsnorm(x.cview(), w, eps, y.view());
  check_rows(x, w, eps, false, y);
  tformer::rmsnorm<NormScale::OnePlusWeight>(x.cview(), w, eps, y.view());
  check_rows(x, w, eps, true, y);
  Matrix inplace = x;  // y may be x
  tformer::rmsnorm(inplace.cview(), w, eps, inplace.view());
  check_rows(x, w, eps, false, inplace);
}

TEST_CASE("nn/rmsnorm: invariant to scaling x by c > 0", "[nn][rmsnorm][property]") {
  const auto seed = GENERATE(range(30, 40));
  CAPTURE(seed);
  test::Random rng(seed);
  const int n = rng.integer(1, 4096);
  const Matrix x = Matrix::random(rng, 3, n);
  Matrix cx = x;
  const float c = float(rng.uniform(1e-3, 1e3));
  for (auto& v : cx.data) v *= c;
  const auto w = rng.normal_floats(n);
  Matrix y(3, n), cy(3, n);
  tformer::rmsnorm(x.cview(), w, 0.0f, y.view());  // eps 0: exactly invariant in real numbers
  tformer::rmsnorm(cx.cview(), w, 0.0f, cy.view());
  // Each side within the bound of the exact (shared) result, plus one rounding of c·x.
  for (std::size_t i = 0; i < y.data.size(); ++i)
    REQUIRE(std::abs(y.data[i] - cy.data[i]) <=
            (2 * bound(n) + FLT_EPSILON) * std::abs(y.data[i]) + 1e-30);
}

TEST_CASE("nn/rmsnorm: the fused residual form equals add then norm", "[nn][rmsnorm]") {
  test::Random rng(51);
  const int T = 5, n = 1027;
  Matrix x = Matrix::random(rng, T, n);
  const Matrix residual = Matrix::random(rng, T, n);
  const auto w = rng.normal_floats(n);
  Matrix added = x;
  for (std::size_t i = 0; i < added.data.size(); ++i) added.data[i] += residual.data[i];
  Matrix separate(T, n), fused(T, n);
  tformer::rmsnorm(added.cview(), w, 1e-6f, separate.view());
  tformer::rmsnorm_residual(x.view(), residual.cview(), w, 1e-6f, fused.view());
  // The same float operations in the same order: identical results.
  CHECK(x.data == added.data);
  CHECK(fused.data == separate.data);
}

TEST_CASE("nn/rmsnorm: Gemma's (1 + w) in the residual and per-head forms, strided rows",
          "[nn][rmsnorm]") {
  test::Random rng(53);
  const int T = 4, n = 300;
  Matrix x = Matrix::random(rng, T, n);
  const Matrix r = Matrix::random(rng, T, n);
  const auto w = rng.normal_floats(n);
  Matrix added = x;
  for (std::size_t i = 0; i < added.data.size(); ++i) added.data[i] += r.data[i];
  Matrix y(T, n);
  tformer::rmsnorm_residual<NormScale::OnePlusWeight>(x.view(), r.cview(), w, 1e-6f, y.view());
  check_rows(added, w, 1e-6f, true, y);
  // Rows 300 apart inside a [T, 310] buffer: strided input and output views.
  Matrix wide(T, n + 10, 7.0f), out(T, n + 10, -1.0f);
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < n; ++i) wide.at(t, i) = added.at(t, i);
  tformer::rmsnorm<NormScale::OnePlusWeight>(wide.cview().col_slice(0, n), w, 1e-6f,
                                             out.view().col_slice(0, n));
  Matrix packed(T, n);
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < n; ++i) packed.at(t, i) = out.at(t, i);
  check_rows(added, w, 1e-6f, true, packed);
  for (int t = 0; t < T; ++t)
    for (int i = n; i < n + 10; ++i) REQUIRE(out.at(t, i) == -1.0f);
  // Per head, (1 + w).
  Matrix heads = Matrix::random(rng, 2, 3 * 64);
  const Matrix heads_before = heads;
  const auto hw = rng.normal_floats(64);
  tformer::rmsnorm_heads<NormScale::OnePlusWeight>(
      tformer::HeadsView<float>(heads.data.data(), 2, 3, 64), hw, 1e-6f);
  Matrix b = heads_before, a = heads;
  b.rows = a.rows = 6;
  b.cols = a.cols = 64;
  check_rows(b, hw, 1e-6f, true, a);
}

TEST_CASE("nn/rmsnorm: per-head q/k-norm", "[nn][rmsnorm]") {
  test::Random rng(52);
  const int T = 3, H = 5, D = 128;
  Matrix x = Matrix::random(rng, T, H * D);
  const Matrix before = x;
  const auto w = rng.normal_floats(D);
  tformer::rmsnorm_heads(tformer::HeadsView<float>(x.data.data(), T, H, D), w, 1e-6f);
  // Viewed as [T·H, D] rows, the result is a row-wise RMSNorm.
  Matrix b = before, a = x;
  b.rows = a.rows = T * H;
  b.cols = a.cols = D;
  check_rows(b, w, 1e-6f, false, a);
}

TEST_CASE("nn/rmsnorm: bad arguments raise tformer::Error", "[nn][rmsnorm][errors]") {
  Matrix x(2, 8), y(2, 8);
  std::vector<float> w(7);
  CHECK_THROWS_WITH(tformer::rmsnorm(x.cview(), w, 1e-6f, y.view()),
                    Contains("weight size (= x.cols)") && Contains("expected 8, got 7"));
  w.resize(8);
  CHECK_THROWS_WITH(tformer::rmsnorm(x.cview(), w, -1.0f, y.view()), Contains("eps"));
  CHECK_THROWS_WITH(tformer::rmsnorm(x.cview(), w, 1e-6f, Matrix(3, 8).view()),
                    Contains("y shape") && Contains("expected [2, 8], got [3, 8]"));
  Matrix buf(3, 8);  // y one row below x: overlapping, not the same view
  CHECK_THROWS_WITH(
      tformer::rmsnorm(buf.cview().row_slice(0, 2), w, 1e-6f, buf.view().row_slice(1, 2)),
      Contains("memory disjoint from x"));
}

TEST_CASE("nn/rmsnorm: rows whose squares overflow or underflow float are normalised",
          "[nn][rmsnorm]") {
  // mean(x²) of a row of 1e20 is 1e40, past float: the row must still normalise to ±w, in every
  // form and at lengths that take the SIMD body, the masked tail and the scalar build's loop.
  for (const int n : {1, 7, 64, 131, 1000}) {
    for (const float big : {1e20f, 3e38f, 1e-30f, 1e-44f}) {
      CAPTURE(n, big);
      test::Random rng(n);
      Matrix x(2, n);
      for (auto& v : x.data) v = big * float(rng.uniform(0.5, 1.0)) * (rng.uniform(0, 1) < 0.5 ? -1.0f : 1.0f);
      const auto w = rng.normal_floats(std::size_t(n));
      // eps 0 for the tiny rows: any eps would rightly dominate their mean square.
      const float eps = big < 1.0f ? 0.0f : 1e-6f;
      Matrix y(2, n);
      tformer::rmsnorm(x.cview(), w, eps, y.view());
      check_rows(x, w, eps, false, y);
      tformer::rmsnorm<NormScale::OnePlusWeight>(x.cview(), w, eps, y.view());
      check_rows(x, w, eps, true, y);
      Matrix heads = x;
      tformer::rmsnorm_heads(tformer::HeadsView<float>(heads.data.data(), 2, 1, n), w, eps);
      check_rows(x, w, eps, false, heads);
      Matrix xr = x, zero(2, n);  // residual form: x += 0, then normalised
      tformer::rmsnorm_residual(xr.view(), zero.cview(), w, eps, y.view());
      check_rows(x, w, eps, false, y);
    }
  }
}

TEST_CASE("nn/rmsnorm: NaN and inf follow float32 PyTorch", "[nn][rmsnorm]") {
  // A NaN makes its whole row NaN; an inf makes mean(x²) inf, so 1/rms = 0: the inf element
  // gives inf·0 = NaN and every finite element ±0 (other rows unchanged).
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (const int n : {5, 100}) {
    CAPTURE(n);
    Matrix x(3, n, 1.0f), y(3, n);
    x.at(0, n - 1) = nan;
    x.at(1, 2) = inf;
    const std::vector<float> w(std::size_t(n), 2.0f);
    tformer::rmsnorm(x.cview(), w, 1e-6f, y.view());
    for (int i = 0; i < n; ++i) {
      INFO("i = " << i);
      CHECK(std::isnan(y.at(0, i)));
      if (i == 2)
        CHECK(std::isnan(y.at(1, i)));
      else
        CHECK(y.at(1, i) == 0.0f);
      CHECK(y.at(2, i) == Approx(2.0f).epsilon(1e-6));
    }
  }
}

TEST_CASE("nn/rmsnorm: non-finite eps, wrapped sizes and overlaps raise tformer::Error",
          "[nn][rmsnorm][errors]") {
  using tformer::index;
  Matrix x(2, 8, 1.0f), y(2, 8), r(2, 8);
  const std::vector<float> w(8, 1.0f);
  for (const float eps : {std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::infinity(), -1e-6f}) {
    CHECK_THROWS_WITH(tformer::rmsnorm(x.cview(), w, eps, y.view()), Contains("rmsnorm: eps"));
    CHECK_THROWS_WITH(tformer::rmsnorm_residual(x.view(), r.cview(), w, eps, y.view()),
                      Contains("rmsnorm_residual: eps"));
    CHECK_THROWS_WITH(tformer::rmsnorm_heads(tformer::HeadsView<float>(x.data.data(), 2, 1, 8), w, eps),
                      Contains("rmsnorm_heads: eps"));
  }
  CHECK_THROWS_WITH(tformer::rmsnorm({x.data.data(), index(1) << 62, 8, index(1) << 62}, w, 0.0f,
                                     {y.data.data(), index(1) << 62, 8, index(1) << 62}),
                    Contains("rmsnorm: x shape"));
  CHECK_THROWS_WITH(tformer::rmsnorm_heads(
                        tformer::HeadsView<float>(x.data.data(), 1, index(1) << 61, 8), w, 0.0f),
                    Contains("rmsnorm_heads: x shape"));
  CHECK_THROWS_WITH(tformer::rmsnorm_residual(x.view(), x.cview(), w, 1e-6f, y.view()),
                    Contains("x") && Contains("memory disjoint from residual"));
  CHECK(std::all_of(y.data.begin(), y.data.end(), [](float v) { return v == 0.0f; }));
}
