// Dense and top-k SwiGLU against the double reference.
//
// Tolerance: the first-order bound on float rounding of reference/ffn_bound.hpp, per output and
// per entry of the intermediate.
#include <catch2/catch.hpp>

#include <cmath>

#include "reference/ffn_bound.hpp"
#include "reference/ffn_reference.hpp"
#include "support/matrix.hpp"
#include "tformer/nn/swiglu.hpp"

using Catch::Matchers::Contains;
using test::Matrix;
using tformer::Activation;
using tformer::ActivationKind;
using tformer::TopK;

namespace {

struct Block {
  int H, I;
  Matrix gate, up, down;
  tformer::SwiGluWeights weights() const { return {gate.cview(), up.cview(), down.cview()}; }
  ref::Ffn ref() const { return {&gate.data, &up.data, &down.data, H, I}; }
};

Block random_block(test::Random& rng, int H, int I) {
  return {H, I, Matrix::random(rng, I, H, 0.1f), Matrix::random(rng, I, H, 0.1f),
          Matrix::random(rng, H, I, 0.1f)};
}

ref::Act to_ref(ActivationKind k) {
  return k == ActivationKind::SiLU       ? ref::Act::SiLU
         : k == ActivationKind::GeluTanh ? ref::Act::GeluTanh
                                         : ref::Act::SiluSigmoid;
}

// The bounds of reference/ffn_bound.hpp for this block's float weights.
ref::Vec intermediate_error(const Block& b, const ref::Vec& x, Activation act) {
  return ref::intermediate_error(b.ref(), x, to_ref(act.kind), act.beta);
}
ref::Vec error_bound(const Block& b, const ref::Vec& x, Activation act,
                     const std::vector<bool>& kept) {
  return ref::swiglu_error_bound(b.ref(), x, to_ref(act.kind), act.beta, kept);
}

}  // namespace

TEST_CASE("nn/swiglu: dense matches the reference for every activation", "[nn][swiglu][property]") {
  const auto seed = GENERATE(range(1, 13));
  CAPTURE(seed);
  test::Random rng(seed);
  const int H = rng.integer(1, 96), I = rng.integer(1, 256),
            T = seed % 3 == 0 ? 1 : rng.integer(2, 9);
  const Activation act{ActivationKind(seed % 3), float(rng.uniform(0.5, 2.0))};
  CAPTURE(H, I, T, int(act.kind));
  const Block b = random_block(rng, H, I);
  const Matrix x = Matrix::random(rng, T, H);
  Matrix y(T, H);
  tformer::FfnWorkspace ws(T, I);
  tformer::swiglu(x.cview(), b.weights(), y.view(), ws, act);
  for (int t = 0; t < T; ++t) {
    ref::Vec xr(x.data.begin() + t * H, x.data.begin() + (t + 1) * H);
    const auto expected = ref::swiglu(b.ref(), xr, to_ref(act.kind), -1, act.beta);
    const auto tol = error_bound(b, xr, act, {});
    for (int o = 0; o < H; ++o) {
      INFO("token " << t << " output " << o);
      REQUIRE(std::abs(y.at(t, o) - expected[o]) <= tol[o]);
    }
  }
}

TEST_CASE("nn/swiglu: the same bits on 1, 2 and 3 threads, dense and top-k",
          "[nn][swiglu][threads]") {
  test::Random rng(91);
  const int H = 40, I = 130, T = GENERATE(1, 5);
  const Block b = random_block(rng, H, I);
  const tformer::TransposedWeights down_t(b.down.cview());
  const Matrix x = Matrix::random(rng, T, H);
  const Activation act{ActivationKind::GeluTanh};
  std::vector<Matrix> dense, sparse;
  for (const tformer::index threads : {1, 2, 3}) {
    const tformer::ThreadTeam team(threads);
    tformer::FfnWorkspace ws(T, I);
    dense.emplace_back(T, H);
    sparse.emplace_back(T, H);
    tformer::swiglu(x.cview(), b.weights(), dense.back().view(), ws, act, team);
    tformer::swiglu_topk(x.cview(), b.weights(), down_t.view(), TopK::count(33),
                         sparse.back().view(), ws, act, team);
  }
  for (int i : {1, 2}) {
    CHECK(dense[i].data == dense[0].data);
    CHECK(sparse[i].data == sparse[0].data);
  }
  for (int t = 0; t < T; ++t) {
    ref::Vec xr(x.data.begin() + t * H, x.data.begin() + (t + 1) * H);
    const auto expected = ref::swiglu(b.ref(), xr, ref::Act::GeluTanh);
    const auto tol = error_bound(b, xr, act, {});
    for (int o = 0; o < H; ++o) REQUIRE(std::abs(dense[0].at(t, o) - expected[o]) <= tol[o]);
  }
}

TEST_CASE("nn/swiglu: top-k keeps exactly k entries, the largest, and projects only them",
          "[nn][swiglu][topk][property]") {
  const auto seed = GENERATE(range(20, 32));
  CAPTURE(seed);
  test::Random rng(seed);
  const int H = rng.integer(1, 80), I = rng.integer(4, 300), T = rng.integer(1, 6);
  const double fraction = std::vector<double>{1.0, 0.5, 0.25, 0.1}[seed % 4];
  const int k = std::max(1, int(std::llround(fraction * I)));
  CAPTURE(H, I, T, k);
  const Block b = random_block(rng, H, I);
  const tformer::TransposedWeights down_t(b.down.cview());
  const Matrix x = Matrix::random(rng, T, H);
  tformer::FfnWorkspace ws(T, I);
  Matrix h(T, I), y(T, H);
  tformer::swiglu_topk_intermediate(x.cview(), b.weights(), TopK::fraction(fraction), h.view(), ws);
  tformer::swiglu_topk(x.cview(), b.weights(), down_t.view(), TopK::fraction(fraction), y.view(),
                       ws);
  for (int t = 0; t < T; ++t) {
    ref::Vec xr(x.data.begin() + t * H, x.data.begin() + (t + 1) * H);
    const ref::Vec full = ref::intermediate(b.ref(), xr, ref::Act::SiLU);
    const ref::Vec h_err = intermediate_error(b, xr, {});
    const double worst = *std::max_element(h_err.begin(), h_err.end());
    std::vector<bool> kept(I);
    int nonzero = 0;
    double smallest_kept = INFINITY, largest_dropped = 0;
    for (int j = 0; j < I; ++j) {
      kept[j] = h.at(t, j) != 0.0f;
      nonzero += kept[j];
      if (kept[j]) {
        smallest_kept = std::min(smallest_kept, std::abs(full[j]));
        REQUIRE(std::abs(h.at(t, j) - full[j]) <= h_err[j]);
      } else {
        largest_dropped = std::max(largest_dropped, std::abs(full[j]));
      }
    }
    REQUIRE(nonzero == k);  // exactly k (random data: no kept value is exactly zero)
    // The kept entries are the largest in the exact values too, up to float rounding of h (a
    // kept and a dropped entry each off by at most the largest bound).
    REQUIRE(smallest_kept >= largest_dropped - 2 * worst);
    // y is the reference down projection of exactly those entries.
    ref::Vec masked(I, 0.0);
    for (int j = 0; j < I; ++j) masked[j] = kept[j] ? full[j] : 0.0;
    const auto expected = ref::matvec(b.down.data, H, I, masked);
    const auto tol = error_bound(b, xr, {}, kept);
    for (int o = 0; o < H; ++o) REQUIRE(std::abs(y.at(t, o) - expected[o]) <= tol[o]);
  }
}

TEST_CASE("nn/swiglu: top-k at 100% equals dense", "[nn][swiglu][topk]") {
  test::Random rng(40);
  const int H = 64, I = 256, T = 4;
  const Block b = random_block(rng, H, I);
  const tformer::TransposedWeights down_t(b.down.cview());
  const Matrix x = Matrix::random(rng, T, H);
  tformer::FfnWorkspace ws(T, I);
  Matrix dense(T, H), sparse(T, H);
  tformer::swiglu(x.cview(), b.weights(), dense.view(), ws);
  tformer::swiglu_topk(x.cview(), b.weights(), down_t.view(), TopK::count(I), sparse.view(), ws);
  for (int t = 0; t < T; ++t) {
    ref::Vec xr(x.data.begin() + t * H, x.data.begin() + (t + 1) * H);
    const auto tol = error_bound(b, xr, {}, {});
    for (int o = 0; o < H; ++o) REQUIRE(std::abs(dense.at(t, o) - sparse.at(t, o)) <= 2 * tol[o]);
  }
}

TEST_CASE("nn/swiglu: ties are broken toward the lower index", "[nn][swiglu][topk]") {
  const float h[] = {1.0f, -2.0f, 2.0f, 0.5f, -2.0f, 1.0f};
  std::int32_t idx[6];
  float scratch[6];
  CHECK(tformer::ffn_kernels::select_topk(h, 6, 2, scratch, idx) == 2);
  CHECK(idx[0] == 1);
  CHECK(idx[1] == 2);
  CHECK(tformer::ffn_kernels::select_topk(h, 6, 4, scratch, idx) == 4);
  CHECK(std::vector<std::int32_t>(idx, idx + 4) == std::vector<std::int32_t>{0, 1, 2, 4});
  CHECK(tformer::ffn_kernels::select_topk(h, 6, 6, scratch, idx) == 6);
}

TEST_CASE("nn/swiglu: top-k keeps exactly k entries with NaNs, and keeps the NaNs",
          "[nn][swiglu][topk]") {
  test::Random rng(44);
  for (int trial = 0; trial < 2000; ++trial) {
    const int n = rng.integer(2, 40), k = rng.integer(1, n - 1);
    auto h = rng.normal_floats(n);
    const int nans = rng.integer(1, 3);
    for (int j = 0; j < nans; ++j) h[rng.integer(0, n - 1)] = NAN;
    std::vector<std::int32_t> idx(n);
    std::vector<float> scratch(n);
    const auto count =
        tformer::ffn_kernels::select_topk(h.data(), n, k, scratch.data(), idx.data());
    CAPTURE(trial, n, k);
    REQUIRE(count == k);
    REQUIRE(std::is_sorted(idx.begin(), idx.begin() + k));
    int kept_nans = 0, total_nans = 0;
    for (int j = 0; j < n; ++j) total_nans += std::isnan(h[j]);
    for (int j = 0; j < k; ++j) kept_nans += std::isnan(h[idx[j]]);
    REQUIRE(kept_nans == std::min(total_nans, k));  // NaN ranks as +inf: it propagates
  }
}

TEST_CASE("nn/swiglu: bad shapes and k raise tformer::Error", "[nn][swiglu][errors]") {
  test::Random rng(43);
  const Block b = random_block(rng, 8, 16);
  const tformer::TransposedWeights down_t(b.down.cview());
  Matrix x(2, 8), y(2, 8);
  tformer::FfnWorkspace ws(2, 16);
  CHECK_THROWS_WITH(
      tformer::swiglu_topk(x.cview(), b.weights(), down_t.view(), TopK::count(0), y.view(), ws),
      Contains("k") && Contains("[1, 16]") && Contains("got 0"));
  CHECK_THROWS_WITH(
      tformer::swiglu_topk(x.cview(), b.weights(), down_t.view(), TopK::count(17), y.view(), ws),
      Contains("got 17"));
  CHECK_THROWS_WITH(tformer::swiglu_topk(x.cview(), b.weights(), down_t.view(), TopK::fraction(0.0),
                                         y.view(), ws),
                    Contains("k fraction"));
  CHECK_THROWS_WITH(tformer::swiglu(Matrix(3, 8).cview(), b.weights(), Matrix(3, 8).view(), ws),
                    Contains("tokens") && Contains("max_tokens (2)") && Contains("got 3"));
  CHECK_THROWS_WITH(tformer::swiglu(Matrix(2, 7).cview(), b.weights(), y.view(), ws),
                    Contains("x.cols (= hidden)") && Contains("expected 8, got 7"));
  tformer::FfnWorkspace narrow(2, 15);
  CHECK_THROWS_WITH(tformer::swiglu(x.cview(), b.weights(), y.view(), narrow),
                    Contains("workspace intermediate") && Contains("expected 16, got 15"));
}
