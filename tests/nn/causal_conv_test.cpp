// causal_conv1d against a plain double reference, and streaming: any chunking of a sequence
// through the state equals one pass.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "support/random.hpp"
#include "tformer/nn/causal_conv.hpp"

using tformer::index;

TEST_CASE("causal_conv1d: reference, chunked streaming, errors", "[conv]") {
  test::Random rng(71);
  for (int trial = 0; trial < 30; ++trial) {
    const int T = rng.integer(1, 40), C = rng.integer(1, 37), k = rng.integer(1, 6);
    const auto x = rng.normal_floats(std::size_t(T) * C);
    const auto w = rng.normal_floats(std::size_t(C) * k);
    const auto b = rng.normal_floats(std::size_t(C));
    // Reference: y[t][c] = b[c] + Σ_i w[c][i] x[t − (k − 1) + i][c], zero before the start.
    std::vector<double> want(x.size()), mag(x.size());  // and Σ |terms|
    for (int t = 0; t < T; ++t)
      for (int c = 0; c < C; ++c) {
        double acc = b[std::size_t(c)], m = std::abs(b[std::size_t(c)]);
        for (int i = 0; i < k; ++i)
          if (t - (k - 1) + i >= 0) {
            const double term =
                double(w[std::size_t(c * k + i)]) * x[std::size_t((t - (k - 1) + i) * C + c)];
            acc += term;
            m += std::abs(term);
          }
        want[std::size_t(t * C + c)] = acc;
        mag[std::size_t(t * C + c)] = m;
      }
    // In chunks of random sizes through one state.
    std::vector<float> state(std::size_t(k - 1) * C, 0.0f), y(x.size());
    for (int t0 = 0; t0 < T;) {
      const int n = std::min(T - t0, rng.integer(1, 5));
      tformer::causal_conv1d({x.data() + t0 * C, n, C}, {w.data(), C, k}, b,
                             {state.data(), k - 1, C}, {y.data() + t0 * C, n, C});
      t0 += n;
    }
    INFO("T " << T << " C " << C << " k " << k);
    for (std::size_t i = 0; i < y.size(); ++i) {
      // k rounded products summed with the bias: within (k + 2)·u of the sum of their |terms|.
      REQUIRE(std::abs(y[i] - want[i]) <= (k + 2) * FLT_EPSILON / 2 * mag[i]);
    }
  }
  std::vector<float> x(6, 1.0f), w(6, 1.0f), state(4, 0.0f), y(6);
  CHECK_THROWS_AS(tformer::causal_conv1d({x.data(), 3, 2}, {w.data(), 3, 2}, {},
                                         {state.data(), 1, 2}, {y.data(), 3, 2}),
                  tformer::Error);  // w rows ≠ channels
  CHECK_THROWS_AS(tformer::causal_conv1d({x.data(), 3, 2}, {w.data(), 2, 3}, {},
                                         {state.data(), 1, 2}, {y.data(), 3, 2}),
                  tformer::Error);  // state rows ≠ k − 1
  CHECK_THROWS_AS(tformer::causal_conv1d({x.data(), 3, 2}, {w.data(), 2, 3}, {},
                                         {state.data(), 2, 2}, {x.data(), 3, 2}),
                  tformer::Error);  // y aliases x
}

TEST_CASE("causal_conv1d: overlaps and wrapped sizes raise tformer::Error", "[conv][errors]") {
  using Catch::Contains;
  std::vector<float> buf(64, 0.0f), w(6, 1.0f), state(4, 0.0f), y(6, 0.0f);
  const std::vector<float> x(6, 1.0f);
  // The state is written after x is read: it must not overlap x, w or y.
  CHECK_THROWS_WITH(tformer::causal_conv1d({buf.data(), 3, 2}, {w.data(), 2, 3}, {},
                                           {buf.data() + 2, 2, 2}, {y.data(), 3, 2}),
                    Contains("state") && Contains("memory disjoint from x"));
  CHECK_THROWS_WITH(tformer::causal_conv1d({x.data(), 3, 2}, {buf.data(), 2, 3}, {},
                                           {buf.data() + 4, 2, 2}, {y.data(), 3, 2}),
                    Contains("state") && Contains("memory disjoint from w"));
  CHECK_THROWS_WITH(tformer::causal_conv1d({x.data(), 3, 2}, {buf.data(), 2, 3}, {},
                                           {state.data(), 2, 2}, {buf.data() + 2, 3, 2}),
                    Contains("y") && Contains("memory disjoint from w"));
  CHECK_THROWS_WITH(tformer::causal_conv1d({x.data(), index(1) << 62, 2, index(1) << 62},
                                           {w.data(), 2, 3}, {}, {state.data(), 2, 2},
                                           {y.data(), 3, 2}),
                    Contains("causal_conv1d: x shape"));
  const std::vector<float> bias(3, 0.0f);
  CHECK_THROWS_WITH(tformer::causal_conv1d({x.data(), 3, 2}, {w.data(), 2, 3}, bias,
                                           {state.data(), 2, 2}, {y.data(), 3, 2}),
                    Contains("bias size (= channels)") && Contains("expected 2, got 3"));
  CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == 0.0f; }));
  CHECK(std::all_of(state.begin(), state.end(), [](float v) { return v == 0.0f; }));
}
