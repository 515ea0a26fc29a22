// Mixture of experts against a double reference built from the dense reference SwiGLU.
// Tolerance per output (moe_bound): y = Σ_e w_e·y_e over the chosen experts (+ g·s, the shared
// expert s with its sigmoid gate g). Each y_e is within the dense bound b_e of
// reference/ffn_bound.hpp; each routing weight within 1e-6 of the reference (checked); the
// weighted sum rounds k + 1 times. So |Δy| <= Σ_e (w_e·b_e + (1e-6 + (k + 1)·u·w_e)·|y_e|), and the
// shared term (y starts from g·s, then the k routed terms are added: k + 1 roundings) adds
// g·b_s + (|Δg| + (k + 1)·u·g)·|s| with |Δg| <= g·(1 − g)·(H + 2)·u·Σ_i |x_i·gate_i| (the gate's
// dot product, loose: the library sums it in double) + 8·u·g (its float sigmoid).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>

#include "reference/ffn_bound.hpp"
#include "reference/ffn_reference.hpp"
#include "support/matrix.hpp"
#include "tformer/core/parallel.hpp"
#include "tformer/nn/moe.hpp"

using Catch::Matchers::Contains;
using test::Matrix;
using tformer::MoeConfig;
using tformer::RouterKind;

namespace {

struct Experts {
  int H, I, E;
  Matrix router;
  std::vector<Matrix> gate, up, down;
  std::vector<tformer::SwiGluWeights> views;

  Experts(test::Random& rng, int h, int i, int e) : H(h), I(i), E(e) {
    router = Matrix::random(rng, E, H);
    for (int k = 0; k < E; ++k) {
      gate.push_back(Matrix::random(rng, I, H, 0.1f));
      up.push_back(Matrix::random(rng, I, H, 0.1f));
      down.push_back(Matrix::random(rng, H, I, 0.1f));
    }
    for (int k = 0; k < E; ++k) views.push_back({gate[k].cview(), up[k].cview(), down[k].cview()});
  }
  tformer::MoeWeights weights() const { return {router.cview(), views, std::nullopt, {}}; }
  ref::Ffn ref(int e) const { return {&gate[e].data, &up[e].data, &down[e].data, H, I}; }
};

// The tolerance of each output of the routed experts for token x (the header's bound).
ref::Vec moe_bound(const Experts& ex, const ref::Vec& x, const MoeConfig& c) {
  constexpr double u = ref::float_unit;
  const ref::Vec logits = ref::matvec(ex.router.data, ex.E, ex.H, x);
  ref::Vec tol(ex.H, 1e-30);
  for (auto [e, w] :
       ref::route(logits, int(c.top_k), c.router == RouterKind::SoftmaxThenTopK, c.renormalize)) {
    const auto out = ref::swiglu(ex.ref(e), x, ref::Act::SiLU);
    const auto b = ref::swiglu_error_bound(ex.ref(e), x, ref::Act::SiLU);
    for (int o = 0; o < ex.H; ++o)
      tol[o] += w * b[o] + (1e-6 + double(c.top_k + 1) * u * w) * std::abs(out[o]);
  }
  return tol;
}

// A shared expert f with the sigmoid gate row `gate` for token x, beside k routed experts: adds
// g·s(x) to `expected` and its bound (the header's) to `tol`.
void add_shared(const ref::Ffn& f, const std::vector<float>& gate, const ref::Vec& x, int k,
                ref::Vec& expected, ref::Vec& tol) {
  constexpr double u = ref::float_unit;
  const auto s = ref::swiglu(f, x, ref::Act::SiLU);
  const auto b = ref::swiglu_error_bound(f, x, ref::Act::SiLU);
  double dot = 0, magnitude = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    dot += x[i] * gate[i];
    magnitude += std::abs(x[i] * gate[i]);
  }
  const double g = ref::sigmoid(dot);
  const double dg = g * (1 - g) * double(x.size() + 2) * u * magnitude + 8 * u * g;
  for (std::size_t o = 0; o < s.size(); ++o) {
    expected[o] += g * s[o];
    tol[o] += g * b[o] + (dg + double(k + 1) * u * g) * std::abs(s[o]);
  }
}

ref::Vec reference_moe(const Experts& ex, const ref::Vec& x, const MoeConfig& c) {
  const ref::Vec logits = ref::matvec(ex.router.data, ex.E, ex.H, x);
  ref::Vec y(ex.H, 0.0);
  for (auto [e, w] :
       ref::route(logits, int(c.top_k), c.router == RouterKind::SoftmaxThenTopK, c.renormalize)) {
    const auto out = ref::swiglu(ex.ref(e), x, ref::Act::SiLU);
    for (int o = 0; o < ex.H; ++o) y[o] += w * out[o];
  }
  return y;
}

}  // namespace

TEST_CASE("nn/moe: matches the reference for each router", "[nn][moe][property]") {
  const auto seed = GENERATE(range(1, 13));
  CAPTURE(seed);
  test::Random rng(seed);
  const int H = rng.integer(1, 64), I = rng.integer(1, 64), E = rng.integer(1, 9);
  const int k = rng.integer(1, E), T = rng.integer(1, 20);
  const MoeConfig config{E, k, seed % 2 ? RouterKind::SoftmaxThenTopK : RouterKind::TopKThenSoftmax,
                         seed % 3 != 0};
  CAPTURE(H, I, E, k, T, int(config.router), config.renormalize);
  const Experts ex(rng, H, I, E);
  const Matrix x = Matrix::random(rng, T, H);
  Matrix y(T, H);
  tformer::MoeWorkspace ws(T, H, I, config);
  tformer::moe(x.cview(), ex.weights(), config, y.view(), ws);
  int routed = 0;
  for (auto c : ws.expert_counts()) routed += c;
  CHECK(routed == T * k);
  for (int t = 0; t < T; ++t) {
    ref::Vec xr(x.data.begin() + t * H, x.data.begin() + (t + 1) * H);
    const auto logits = ref::matvec(ex.router.data, E, H, xr);
    const auto routes =
        ref::route(logits, k, config.router == RouterKind::SoftmaxThenTopK, config.renormalize);
    for (int j = 0; j < k; ++j) {
      REQUIRE(ws.chosen(t)[j] == routes[j].first);
      REQUIRE(std::abs(ws.weights(t)[j] - routes[j].second) <= 1e-6);
    }
    const auto expected = reference_moe(ex, xr, config);
    const auto tol = moe_bound(ex, xr, config);
    for (int o = 0; o < H; ++o) REQUIRE(std::abs(y.at(t, o) - expected[o]) <= tol[o]);
  }
}

TEST_CASE("nn/moe: the same bits on 1, 2 and 3 threads, and the reference", "[nn][moe][threads]") {
  test::Random rng(90);
  const int H = 48, I = 100, E = 6, k = 2, T = GENERATE(1, 7);
  const MoeConfig config{E, k};
  const Experts ex(rng, H, I, E);
  Matrix shared_gate = Matrix::random(rng, I, H, 0.1f), shared_up = Matrix::random(rng, I, H, 0.1f),
         shared_down = Matrix::random(rng, H, I, 0.1f), gate_row = Matrix::random(rng, 1, H);
  tformer::MoeWeights w = ex.weights();
  w.shared = tformer::SwiGluWeights{shared_gate.cview(), shared_up.cview(), shared_down.cview()};
  w.shared_gate = gate_row.cview();
  const Matrix x = Matrix::random(rng, T, H);
  std::vector<Matrix> outs;
  for (const tformer::index threads : {1, 2, 3}) {
    const tformer::ThreadTeam team(threads);
    tformer::MoeWorkspace ws(T, H, I, config, I);
    outs.emplace_back(T, H);
    tformer::moe(x.cview(), w, config, outs.back().view(), ws, team);
  }
  CHECK(outs[1].data == outs[0].data);
  CHECK(outs[2].data == outs[0].data);
  for (int t = 0; t < T; ++t) {  // the routed experts against the reference; the shared one added
    ref::Vec xr(x.data.begin() + t * H, x.data.begin() + (t + 1) * H);
    auto expected = reference_moe(ex, xr, config);
    auto tol = moe_bound(ex, xr, config);
    add_shared({&shared_gate.data, &shared_up.data, &shared_down.data, H, I}, gate_row.data, xr, k,
               expected, tol);
    for (int o = 0; o < H; ++o) REQUIRE(std::abs(outs[0].at(t, o) - expected[o]) <= tol[o]);
  }
}

TEST_CASE("nn/moe: renormalised routing weights sum to 1", "[nn][moe]") {
  test::Random rng(70);
  const Experts ex(rng, 16, 8, 8);
  const Matrix x = Matrix::random(rng, 30, 16);
  for (RouterKind kind : {RouterKind::SoftmaxThenTopK, RouterKind::TopKThenSoftmax}) {
    const MoeConfig config{8, 2, kind, true};
    tformer::MoeWorkspace ws(30, 16, 8, config);
    Matrix y(30, 16);
    tformer::moe(x.cview(), ex.weights(), config, y.view(), ws);
    for (int t = 0; t < 30; ++t) {
      const auto w = ws.weights(t);
      REQUIRE(std::abs(w[0] + w[1] - 1.0) <= 1e-6);
      REQUIRE(w[0] >= w[1]);
    }
  }
}

TEST_CASE("nn/moe: one expert with k = 1 equals its dense SwiGLU", "[nn][moe]") {
  test::Random rng(71);
  const Experts ex(rng, 32, 48, 1);
  const Matrix x = Matrix::random(rng, 7, 32);
  const MoeConfig config{1, 1};
  tformer::MoeWorkspace ws(7, 32, 48, config);
  tformer::FfnWorkspace ffn(7, 48);
  Matrix moe_y(7, 32), dense_y(7, 32);
  tformer::moe(x.cview(), ex.weights(), config, moe_y.view(), ws);
  tformer::swiglu(x.cview(), ex.views[0], dense_y.view(), ffn);
  CHECK(ws.weights(0)[0] == 1.0f);  // softmax over one expert: exactly 1
  for (std::size_t i = 0; i < moe_y.data.size(); ++i)
    REQUIRE(std::abs(moe_y.data[i] - dense_y.data[i]) <= 1e-6 * (1 + std::abs(dense_y.data[i])));
}

TEST_CASE("nn/moe: permuting experts with their router rows changes nothing", "[nn][moe]") {
  test::Random rng(72);
  const int H = 24, I = 16, E = 6, T = 12;
  const Experts ex(rng, H, I, E);
  const Matrix x = Matrix::random(rng, T, H);
  const std::vector<int> perm = {3, 0, 5, 1, 4, 2};
  Matrix router(E, H);
  std::vector<tformer::SwiGluWeights> views(E);
  for (int e = 0; e < E; ++e) {
    for (int i = 0; i < H; ++i) router.at(e, i) = ex.router.at(perm[e], i);
    views[e] = ex.views[perm[e]];
  }
  const MoeConfig config{E, 2};
  tformer::MoeWorkspace ws(T, H, I, config);
  Matrix a(T, H), b(T, H);
  tformer::moe(x.cview(), ex.weights(), config, a.view(), ws);
  tformer::moe(x.cview(), {router.cview(), views, std::nullopt, {}}, config, b.view(), ws);
  // The same experts are summed, possibly in another order: equal within rounding.
  for (std::size_t i = 0; i < a.data.size(); ++i)
    REQUIRE(std::abs(a.data[i] - b.data[i]) <= 1e-6 * (1 + std::abs(a.data[i])));
}

TEST_CASE("nn/moe: a shared expert is added to every token, optionally gated", "[nn][moe]") {
  test::Random rng(73);
  const int H = 16, I = 8, E = 4, T = 5, shared_I = 12;
  const Experts ex(rng, H, I, E);
  const Matrix sg = Matrix::random(rng, shared_I, H, 0.1f),
               su = Matrix::random(rng, shared_I, H, 0.1f),
               sd = Matrix::random(rng, H, shared_I, 0.1f), gate = Matrix::random(rng, 1, H);
  const Matrix x = Matrix::random(rng, T, H);
  const MoeConfig config{E, 2};
  tformer::MoeWorkspace ws(T, H, I, config, shared_I);
  auto w = ex.weights();
  w.shared = tformer::SwiGluWeights{sg.cview(), su.cview(), sd.cview()};
  w.shared_gate = gate.cview();
  Matrix y(T, H);
  tformer::moe(x.cview(), w, config, y.view(), ws);
  const ref::Ffn shared{&sg.data, &su.data, &sd.data, H, shared_I};
  for (int t = 0; t < T; ++t) {
    ref::Vec xr(x.data.begin() + t * H, x.data.begin() + (t + 1) * H);
    auto expected = reference_moe(ex, xr, config);
    auto tol = moe_bound(ex, xr, config);
    add_shared(shared, gate.data, xr, int(config.top_k), expected, tol);
    for (int o = 0; o < H; ++o) REQUIRE(std::abs(y.at(t, o) - expected[o]) <= tol[o]);
  }
}

TEST_CASE("nn/moe: bad k and shapes raise tformer::Error", "[nn][moe][errors]") {
  test::Random rng(74);
  const Experts ex(rng, 8, 4, 4);
  Matrix x(2, 8), y(2, 8);
  for (int k : {0, 5}) {
    const MoeConfig config{4, k};
    CHECK_THROWS_WITH(tformer::MoeWorkspace(2, 8, 4, config),
                      Contains("config.top_k") && Contains("[1, 4]"));
    tformer::MoeWorkspace ws(2, 8, 4, MoeConfig{4, 2});
    CHECK_THROWS_WITH(tformer::moe(x.cview(), ex.weights(), config, y.view(), ws),
                      Contains("config.top_k") && Contains("[1, 4]"));
  }
  CHECK_THROWS_WITH(tformer::MoeWorkspace(tformer::index(1) << 40, 1 << 20, 4, MoeConfig{4, 2}),
                    Contains("max_tokens * experts") && Contains("2^40 bytes"));
  const MoeConfig config{4, 2};
  tformer::MoeWorkspace ws(2, 8, 4, config);
  CHECK_THROWS_WITH(
      tformer::moe(Matrix(3, 8).cview(), ex.weights(), config, Matrix(3, 8).view(), ws),
      Contains("max_tokens (2)"));
  // Shapes are checked before anything is written.
  Matrix filled(2, 8, 5.0f);
  auto bad = ex.weights();
  const Matrix gate37(1, 3);
  bad.shared_gate = gate37.cview();
  CHECK_THROWS_WITH(tformer::moe(x.cview(), bad, config, filled.view(), ws),
                    Contains("shared_gate") && Contains("no shared expert"));
  std::vector<tformer::SwiGluWeights> broken = ex.views;
  const Matrix wrong_down(8, 3);
  broken[2].down = wrong_down.cview();
  CHECK_THROWS_WITH(tformer::moe(x.cview(), {ex.router.cview(), broken, std::nullopt, {}}, config,
                                 filled.view(), ws),
                    Contains("expert down shape") && Contains("expected [8, 4], got [8, 3]"));
  CHECK(std::all_of(filled.data.begin(), filled.data.end(), [](float v) { return v == 5.0f; }));
  Matrix same(2, 8);
  CHECK_THROWS_WITH(tformer::moe(same.cview(), ex.weights(), config, same.view(), ws),
                    Contains("memory disjoint from x"));
  const MoeConfig five{5, 2};
  CHECK_THROWS_WITH(tformer::moe(x.cview(), ex.weights(), five, y.view(), ws),
                    Contains("router shape") && Contains("expected [5, 8], got [4, 8]"));
}

TEST_CASE("nn/moe: a NaN or +Inf router logit ranks first and makes the token's weights NaN",
          "[nn][moe][nonfinite]") {
  const float nan = std::numeric_limits<float>::quiet_NaN(),
              inf = std::numeric_limits<float>::infinity();
  for (const RouterKind kind : {RouterKind::SoftmaxThenTopK, RouterKind::TopKThenSoftmax}) {
    std::int32_t chosen[2], order[5];
    float weights[2];
    const float with_nan[5] = {0.5f, nan, 1.0f, -2.0f, nan};
    tformer::moe_kernels::route(with_nan, 5, 2, kind, true, chosen, weights, order);
    CHECK(chosen[0] == 1);  // NaN ranks above every number (torch.topk), ties to the lower index
    CHECK(chosen[1] == 4);
    CHECK((std::isnan(weights[0]) && std::isnan(weights[1])));
    const float with_inf[5] = {0.5f, 3.0f, inf, -2.0f, 1.0f};
    tformer::moe_kernels::route(with_inf, 5, 2, kind, true, chosen, weights, order);
    CHECK(chosen[0] == 2);
    CHECK(chosen[1] == 1);
    CHECK((std::isnan(weights[0]) && std::isnan(weights[1])));  // softmax of +Inf is NaN
    const float finite[5] = {0.5f, 3.0f, 2.0f, -2.0f, 1.0f};
    tformer::moe_kernels::route(finite, 5, 2, kind, true, chosen, weights, order);
    CHECK(chosen[0] == 1);
    CHECK(chosen[1] == 2);
    CHECK(std::abs(weights[0] + weights[1] - 1.0f) <= 1e-6f);
  }
}
