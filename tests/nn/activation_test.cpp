// Vectorised activations against the same formulas in double, over [−100, 100] plus extremes.
// The tolerances are the contract stated in nn/activation.hpp (1 ulp = 2u at worst, u = 2^−24):
// silu relative 4 ulp, gelu_tanh 4 ulp of |x|, silu·sigmoid relative 8 ulp, soft cap relative
// 4 ulp; plus an absolute
// 1.5e-36 (`tiny`) for results that far below 1 (xsimd's exp flushes to 0 below e^−87.3).
#include <catch2/catch.hpp>

#include <cfloat>
#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "reference/ffn_reference.hpp"
#include "support/random.hpp"
#include "tformer/nn/activation.hpp"

using tformer::Activation;
using tformer::ActivationKind;

namespace {

constexpr double u = FLT_EPSILON / 2;
constexpr double tiny = 1.5e-36;

std::vector<float> inputs() {
  std::vector<float> x;
  for (int i = -200000; i <= 200000; ++i) x.push_back(float(i) * 5e-4f);  // [−100, 100]
  test::Random rng(61);
  for (int i = 0; i < 100000; ++i) x.push_back(float(rng.uniform(-20, 20)));
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 88.0f, -88.0f, 1e4f, -1e4f, 3e38f, -3e38f})
    x.push_back(v);
  return x;
}

// Runs out = act(x) · 1 through the kernel, so the SIMD body and the scalar tail both run.
std::vector<float> run(const std::vector<float>& x, Activation act) {
  std::vector<float> ones(x.size(), 1.0f), out(x.size());
  tformer::gated_activation(x, ones, out, act);
  return out;
}

}  // namespace

TEST_CASE("nn/activation: SiLU within 4 ulp", "[nn][activation]") {
  const auto x = inputs();
  const auto y = run(x, {ActivationKind::SiLU});
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double e = ref::silu(x[i]);
    const double err = std::abs(y[i] - e);
    INFO("x = " << x[i]);
    REQUIRE(std::isfinite(y[i]));
    REQUIRE(err <= 8 * u * std::abs(e) + tiny);
    if (e != 0) worst = std::max(worst, err / std::abs(e) / u);
  }
  WARN("silu: max relative error " << worst << " u (2^-24)");
}

TEST_CASE("nn/activation: GELU-tanh within 4 ulp of |x|", "[nn][activation]") {
  const auto x = inputs();
  const auto y = run(x, {ActivationKind::GeluTanh});
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (std::abs(x[i]) > 1e19f) continue;  // x³ overflows float: the formula itself is inf·0
    const double e = ref::gelu_tanh(x[i]);
    INFO("x = " << x[i]);
    REQUIRE(std::abs(y[i] - e) <= 8 * u * std::abs(double(x[i])) + tiny);
  }
}

TEST_CASE("nn/activation: seed 000's silu(x)·sigmoid(βx) within 8 ulp relative",
          "[nn][activation]") {
  const auto x = inputs();
  for (float beta : {1.0f, 0.5f, 2.0f}) {
    const auto y = run(x, {ActivationKind::SiluSigmoid, beta});
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double e = ref::silu(x[i]) * ref::sigmoid(double(beta) * x[i]);
      INFO("x = " << x[i] << " beta = " << beta);
      REQUIRE(std::abs(y[i] - e) <= 16 * u * std::abs(e) + tiny);
    }
  }
}

TEST_CASE("nn/activation: soft cap c·tanh(x/c) within 4 ulp relative", "[nn][activation]") {
  const auto x = inputs();
  for (const float cap : {30.0f, 50.0f, 1.0f, 0.125f}) {
    std::vector<float> y = x;
    tformer::soft_cap(y, cap);
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double e = double(cap) * std::tanh(double(x[i]) / cap);
      INFO("cap = " << cap << ", x = " << x[i]);
      REQUIRE(std::abs(y[i] - e) <= 8 * u * std::abs(e) + tiny);
      REQUIRE(std::abs(y[i]) <= cap);
    }
  }
  // Odd lengths, so the scalar tail runs after the vector body; NaN stays where it was.
  std::vector<float> z = {1.0f, std::numeric_limits<float>::quiet_NaN(), -2.0f, 100.0f, 5.0f};
  tformer::soft_cap(z, 2.0f);
  CHECK(std::isnan(z[1]));
  CHECK(z[3] == Approx(2.0f * std::tanh(50.0)).epsilon(1e-6));
  CHECK(z[4] == Approx(2.0f * std::tanh(2.5)).epsilon(1e-6));
}

TEST_CASE("nn/activation: gated form multiplies by up, in place", "[nn][activation]") {
  test::Random rng(62);
  auto gate = rng.normal_floats(1001);
  const auto up = rng.normal_floats(1001);
  const auto original = gate;
  tformer::gated_activation(gate, up, gate);  // out aliases gate
  for (std::size_t i = 0; i < gate.size(); ++i)
    REQUIRE(std::abs(gate[i] - ref::silu(original[i]) * up[i]) <=
            10 * u * std::abs(ref::silu(original[i]) * up[i]) + tiny);
}

TEST_CASE("nn/activation: NaN in the data propagates, SIMD body and scalar tail alike",
          "[nn][activation]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const Activation act : {Activation{ActivationKind::SiLU}, Activation{ActivationKind::GeluTanh},
                               Activation{ActivationKind::SiluSigmoid, 0.7f}}) {
    CAPTURE(int(act.kind));
    std::vector<float> gate(37, 0.5f), up(37, 2.0f), out(37);
    gate[3] = nan;   // in a vector register at every width
    up[36] = nan;    // in the scalar tail at every width > 1
    tformer::gated_activation(gate, up, out, act);
    for (std::size_t i = 0; i < out.size(); ++i) {
      INFO("i = " << i);
      CHECK(std::isnan(out[i]) == (i == 3 || i == 36));
    }
  }
}

TEST_CASE("nn/activation: bad parameters and overlaps raise tformer::Error",
          "[nn][activation][errors]") {
  using Catch::Contains;
  std::vector<float> gate(16, 1.0f), up(16, 1.0f), out(16, 0.0f);
  for (const float beta : {std::numeric_limits<float>::quiet_NaN(),
                           std::numeric_limits<float>::infinity()})
    CHECK_THROWS_WITH(
        tformer::gated_activation(gate, up, out, {ActivationKind::SiluSigmoid, beta}),
        Contains("gated_activation: beta") && Contains("finite"));
  // β is SiluSigmoid's alone: the other kinds ignore it.
  CHECK_NOTHROW(tformer::gated_activation(
      gate, up, out, {ActivationKind::SiLU, std::numeric_limits<float>::quiet_NaN()}));
  CHECK_THROWS_WITH(
      tformer::gated_activation(gate, up, out, {static_cast<ActivationKind>(3), 1.0f}),
      Contains("gated_activation: kind") && Contains("got 3"));
  // out may be gate or up exactly, never shifted against them.
  std::vector<float> buf(32, 1.0f);
  const std::span<float> all(buf);
  CHECK_THROWS_WITH(tformer::gated_activation(all.subspan(0, 16), up, all.subspan(1, 16)),
                    Contains("out") && Contains("gate"));
  CHECK_THROWS_WITH(tformer::gated_activation(gate, all.subspan(4, 16), all.subspan(0, 16)),
                    Contains("out") && Contains("up"));
  CHECK_NOTHROW(tformer::gated_activation(all.subspan(0, 16), all.subspan(16, 16),
                                          all.subspan(16, 16)));
  for (const float cap : {0.0f, -1.0f, std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::infinity()})
    CHECK_THROWS_WITH(tformer::soft_cap(gate, cap), Contains("soft_cap: cap") && Contains("> 0"));
}
