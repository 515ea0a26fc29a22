// linear(): against a double matrix-vector reference; parallel_project_all against
// parallel_project.
// Tolerance: a float dot product of n terms, however blocked, is within (n + 2)·u·Σ|x_i·w_i|
// of the exact value (u = 2^−24; the classical bound γ_n), plus u·|b| for the bias.
#include <catch2/catch.hpp>

#include <array>
#include <cfloat>
#include <cmath>

#include "reference/ffn_reference.hpp"
#include "support/matrix.hpp"
#include "tformer/nn/linear.hpp"

using Catch::Matchers::Contains;
using test::Matrix;

namespace {

void check_linear(const Matrix& x, const Matrix& w, const std::vector<float>* bias,
                  const Matrix& y) {
  const double u = FLT_EPSILON / 2;
  for (tformer::index t = 0; t < x.rows; ++t) {
    ref::Vec xr(x.data.begin() + t * x.cols, x.data.begin() + (t + 1) * x.cols);
    const ref::Vec expected = ref::matvec(w.data, int(w.rows), int(w.cols), xr, bias);
    for (tformer::index o = 0; o < w.rows; ++o) {
      double magnitude = 0;
      for (tformer::index i = 0; i < x.cols; ++i) magnitude += std::abs(xr[i] * w.at(o, i));
      const double tol = (x.cols + 2) * u * magnitude + (bias ? u * std::abs((*bias)[o]) : 0.0);
      INFO("token " << t << " output " << o);
      REQUIRE(std::abs(y.at(t, o) - expected[o]) <= tol);
    }
  }
}

}  // namespace

TEST_CASE("nn/linear: GEMM and GEMV match the reference on random shapes", "[nn][linear]") {
  const auto seed = GENERATE(range(1, 21));
  CAPTURE(seed);
  test::Random rng(seed);
  const int T = seed % 4 == 0 ? 1 : rng.integer(1, 40);  // one token takes the GEMV path
  const int in = rng.integer(1, 300), out = rng.integer(1, 200);
  CAPTURE(T, in, out);
  const Matrix x = Matrix::random(rng, T, in), w = Matrix::random(rng, out, in);
  std::vector<float> bias = rng.normal_floats(out);
  Matrix y(T, out, -1.0f);
  tformer::linear(x.cview(), w.cview(), y.view());
  check_linear(x, w, nullptr, y);
  tformer::linear(x.cview(), w.cview(), bias, y.view());
  check_linear(x, w, &bias, y);
}

TEST_CASE("nn/linear: a fused QKV weight equals three separate projections", "[nn][linear]") {
  test::Random rng(41);
  const int T = 9, H = 64, q = 64, kv = 16;
  const Matrix x = Matrix::random(rng, T, H), qkv = Matrix::random(rng, q + 2 * kv, H);
  Matrix fused(T, q + 2 * kv);
  tformer::linear(x.cview(), qkv.cview(), fused.view());
  // Each projection through a row view of the fused weight, written into a column view of y.
  const int firsts[] = {0, q, q + kv}, counts[] = {q, kv, kv};
  Matrix separate(T, q + 2 * kv);
  for (int p = 0; p < 3; ++p)
    tformer::linear(x.cview(), qkv.cview().row_slice(firsts[p], counts[p]),
                    separate.view().col_slice(firsts[p], counts[p]));
  check_linear(x, qkv, nullptr, separate);
  for (std::size_t i = 0; i < fused.data.size(); ++i)
    REQUIRE(std::abs(fused.data[i] - separate.data[i]) <= 2 * (H + 2) * FLT_EPSILON / 2 * 64.0);
}

TEST_CASE("nn/linear: projections of one input in one pass equal separate passes, bit for bit",
          "[nn][linear]") {
  // parallel_project_all (the decoder's Q, K and V) against parallel_project of each weight,
  // on one to three threads; 200 rows are seven chunks (64, 64, then 16s and 8), 77 rows five.
  for (const int T : {1, 3, 40}) {
    CAPTURE(T);
    test::Random rng(43 + T);
    const int H = 96;
    const Matrix x = Matrix::random(rng, T, H), wq = Matrix::random(rng, 200, H),
                 wk = Matrix::random(rng, 77, H), wv = Matrix::random(rng, 77, H);
    std::vector<float> bq = rng.normal_floats(200), bv = rng.normal_floats(77);
    const tformer::WeightView q(tformer::WeightType::f32, wq.data.data(), 200, H),
        k(tformer::WeightType::f32, wk.data.data(), 77, H),
        v(tformer::WeightType::f32, wv.data.data(), 77, H);
    Matrix sq(T, 200), sk(T, 77), sv(T, 77);
    tformer::parallel_project(tformer::SerialExecutor{}, x.cview(), q, sq.view(), bq);
    tformer::parallel_project(tformer::SerialExecutor{}, x.cview(), k, sk.view());
    tformer::parallel_project(tformer::SerialExecutor{}, x.cview(), v, sv.view(), bv);
    check_linear(x, wq, &bq, sq);
    check_linear(x, wk, nullptr, sk);
    check_linear(x, wv, &bv, sv);
    for (const tformer::index threads : {1, 2, 3}) {
      CAPTURE(threads);
      const tformer::ThreadTeam team(threads);
      Matrix yq(T, 200, -1.0f), yk(T, 77, -1.0f), yv(T, 77, -1.0f);
      tformer::parallel_project_all(
          team, x.cview(),
          std::array{tformer::Projection{q, yq.view(), bq}, tformer::Projection{k, yk.view()},
                     tformer::Projection{v, yv.view(), bv}});
      CHECK(yq.data == sq.data);
      CHECK(yk.data == sk.data);
      CHECK(yv.data == sv.data);
    }
  }
}

TEST_CASE("nn/linear: strided views and zero tokens", "[nn][linear]") {
  test::Random rng(42);
  const int T = 6, in = 40, out = 24;
  // x is the first `in` columns of a wider buffer; y the middle columns of another.
  const Matrix wide = Matrix::random(rng, T, in + 9), w = Matrix::random(rng, out, in);
  Matrix x(T, in), ybuf(T, out + 10, -3.0f), y(T, out);
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < in; ++i) x.at(t, i) = wide.at(t, i);
  tformer::linear(wide.cview().col_slice(0, in), w.cview(), ybuf.view().col_slice(5, out));
  for (int t = 0; t < T; ++t)
    for (int o = 0; o < out; ++o) y.at(t, o) = ybuf.at(t, 5 + o);
  check_linear(x, w, nullptr, y);
  for (int t = 0; t < T; ++t) {  // columns outside the view untouched
    for (int o = 0; o < 5; ++o) REQUIRE(ybuf.at(t, o) == -3.0f);
    for (int o = 5 + out; o < out + 10; ++o) REQUIRE(ybuf.at(t, o) == -3.0f);
  }
  Matrix empty_x(0, in), empty_y(0, out);
  CHECK_NOTHROW(tformer::linear(empty_x.cview(), w.cview(), empty_y.view()));
}

TEST_CASE("nn/linear: bad shapes raise tformer::Error", "[nn][linear][errors]") {
  Matrix x(2, 8), w(4, 8), y(2, 4);
  CHECK_THROWS_WITH(
      tformer::linear(x.cview(), Matrix(4, 7).cview(), y.view()),
      Contains("x.cols (= w.cols, the input width)") && Contains("expected 7, got 8"));
  CHECK_THROWS_WITH(tformer::linear(x.cview(), w.cview(), Matrix(2, 5).view()),
                    Contains("y shape") && Contains("expected [2, 4], got [2, 5]"));
  std::vector<float> bias(3);
  CHECK_THROWS_WITH(tformer::linear(x.cview(), w.cview(), bias, y.view()),
                    Contains("bias size") && Contains("expected 4, got 3"));
  Matrix square(4, 4);
  CHECK_THROWS_WITH(tformer::linear(square.cview(), Matrix(4, 4).cview(), square.view()),
                    Contains("y: expected memory disjoint from x"));
}
