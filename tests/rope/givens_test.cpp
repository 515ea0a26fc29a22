// The rotary block (rope/givens.hpp): against a double reference, its properties (identity
// equals plain RoPE, norms kept, <q', k'> depends only on the relative position), checks on the
// planes and on R, and re-orthogonalisation.
#include <catch2/catch.hpp>

#include <cfloat>
#include <cmath>
#include <limits>
#include <numbers>
#include <vector>

#include "support/random.hpp"
#include "tformer/rope/apply.hpp"
#include "tformer/rope/givens.hpp"

using tformer::GivensRotation;

namespace {

std::vector<GivensRotation> random_planes(test::Random& rng, int n, int D) {
  std::vector<GivensRotation> g(static_cast<std::size_t>(n));
  for (auto& r : g) {
    r.i = rng.integer(0, D - 1);
    do r.j = rng.integer(0, D - 1);
    while (r.j == r.i);
    r.theta = float(rng.uniform(-std::numbers::pi, std::numbers::pi));
  }
  return g;
}

std::vector<float> random_orthogonal(test::Random& rng, int D) {
  auto r = rng.normal_floats(std::size_t(D) * D);
  tformer::reorthogonalize({r.data(), D, D});
  return r;
}

double dot(const float* a, const float* b, int n) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += double(a[i]) * b[i];
  return s;
}

}  // namespace

TEST_CASE("rotary block: matches a double reference of R · G_N ⋯ G_1 · x", "[givens]") {
  test::Random rng(91);
  for (int trial = 0; trial < 20; ++trial) {
    const int D = 2 * rng.integer(1, 40), n = rng.integer(0, 32);
    const auto planes = random_planes(rng, n, D);
    const auto r = random_orthogonal(rng, D);
    tformer::RotaryBlock block(D, planes, {r.data(), D, D});
    auto x = rng.normal_floats(std::size_t(3) * D);
    std::vector<double> want(x.begin(), x.end());
    block.apply({x.data(), 3, 1, D});
    for (int row = 0; row < 3; ++row) {
      double* v = want.data() + row * D;
      for (const auto& g : planes) {
        const double c = std::cos(double(g.theta)), s = std::sin(double(g.theta));
        const double a = v[g.i], b = v[g.j];
        v[g.i] = c * a - s * b;
        v[g.j] = s * a + c * b;
      }
      std::vector<double> rv(std::size_t(D), 0.0);
      for (int i = 0; i < D; ++i)
        for (int j = 0; j < D; ++j) rv[std::size_t(i)] += double(r[std::size_t(i * D + j)]) * v[j];
      // n rotations (2 roundings each) then a D-term dot: (2n + D + 2)·u of the vector's norm.
      double norm = 0;
      for (int i = 0; i < D; ++i) norm += rv[std::size_t(i)] * rv[std::size_t(i)];
      for (int i = 0; i < D; ++i)
        REQUIRE(std::abs(x[std::size_t(row * D + i)] - rv[std::size_t(i)]) <=
                (2 * n + D + 2) * FLT_EPSILON / 2 * std::sqrt(norm));
    }
  }
}

TEST_CASE("rotary block: identity is plain RoPE, norms and relative positions are kept",
          "[givens]") {
  test::Random rng(92);
  const int D = 64, H = 3;
  tformer::RopeTable table(tformer::RopeConfig{.rotary_dim = D, .max_positions = 2000});
  auto rope = [&](std::vector<float> x, int pos) {
    tformer::apply_rope_inplace<tformer::RopeLayout::RotateHalf>(
        table, tformer::HeadsView<float>(x.data(), 1, H, D), tformer::Positions::offset(pos));
    return x;
  };
  const auto x = rng.normal_floats(std::size_t(H) * D);
  // All θ = 0 and R = I (the seed's initial state): exactly plain RoPE.
  auto zero = random_planes(rng, 8, D);
  for (auto& g : zero) g.theta = 0.0f;
  std::vector<float> eye(std::size_t(D) * D, 0.0f);
  for (int i = 0; i < D; ++i) eye[std::size_t(i * D + i)] = 1.0f;
  tformer::RotaryBlock identity(D, zero, {eye.data(), D, D});
  auto y = x;
  identity.apply({y.data(), 1, H, D});
  CHECK(rope(y, 123) == rope(x, 123));

  // Learned rotations: norms kept, and <q', k'> the same for (p, p') and (p + s, p' + s).
  const auto planes = random_planes(rng, 32, D);
  const auto r = random_orthogonal(rng, D);
  tformer::RotaryBlock block(D, planes, {r.data(), D, D});
  auto q = rng.normal_floats(std::size_t(H) * D), k = rng.normal_floats(std::size_t(H) * D);
  auto qb = q, kb = k;
  block.apply({qb.data(), 1, H, D});
  block.apply({kb.data(), 1, H, D});
  for (int h = 0; h < H; ++h) {
    const double n0 = dot(q.data() + h * D, q.data() + h * D, D),
                 n1 = dot(qb.data() + h * D, qb.data() + h * D, D);
    CHECK(std::abs(std::sqrt(n1) - std::sqrt(n0)) <= (2 * 32 + D + 2) * FLT_EPSILON * std::sqrt(n0));
    const auto q1 = rope(qb, 100), k1 = rope(kb, 40), q2 = rope(qb, 1100), k2 = rope(kb, 1040);
    const double a = dot(q1.data() + h * D, k1.data() + h * D, D),
                 b = dot(q2.data() + h * D, k2.data() + h * D, D);
    CHECK(std::abs(a - b) <= 1e-4 * std::sqrt(n1 * dot(kb.data() + h * D, kb.data() + h * D, D)));
  }
}

TEST_CASE("rotary block: planes and R are checked and reorthogonalize repairs drift", "[givens]") {
  test::Random rng(93);
  const int D = 16;
  auto r = random_orthogonal(rng, D);
  CHECK(tformer::orthogonality_error({r.data(), D, D}) < 1e-6);
  const std::vector<GivensRotation> out_of_range = {{0, 16, 0.1f}}, same = {{3, 3, 0.1f}},
                                    negative = {{-1, 2, 0.1f}};
  CHECK_THROWS_WITH(tformer::RotaryBlock(D, out_of_range), Catch::Contains("plane j"));
  CHECK_THROWS_WITH(tformer::RotaryBlock(D, same), Catch::Contains("two different dimensions"));
  CHECK_THROWS_AS(tformer::RotaryBlock(D, negative), tformer::Error);
  auto drifted = r;
  drifted[5] += 0.01f;  // no longer orthogonal
  CHECK_THROWS_WITH(tformer::RotaryBlock(D, {}, {drifted.data(), D, D}), Catch::Contains("RᵀR"));
  tformer::reorthogonalize({drifted.data(), D, D});
  CHECK(tformer::orthogonality_error({drifted.data(), D, D}) < 1e-6);
  CHECK_NOTHROW(tformer::RotaryBlock(D, {}, {drifted.data(), D, D}));
  // An orthogonal matrix is its own nearest orthogonal matrix.
  auto again = r;
  tformer::reorthogonalize({again.data(), D, D});
  for (std::size_t i = 0; i < r.size(); ++i) CHECK(again[i] == Approx(r[i]).margin(1e-6));
  std::vector<float> wide(std::size_t(D) * (D + 1));
  CHECK_THROWS_AS(tformer::RotaryBlock(D, {}, {wide.data(), D, D + 1}), tformer::Error);
}

TEST_CASE("rotary block: non-finite angles, tolerances and matrices raise tformer::Error",
          "[givens][errors]") {
  using Catch::Contains;
  using tformer::index;
  const int D = 8;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<GivensRotation> nan_theta = {{0, 1, 0.3f}, {2, 5, nan}},
                                    inf_theta = {{0, 1, std::numeric_limits<float>::infinity()}};
  CHECK_THROWS_WITH(tformer::RotaryBlock(D, nan_theta),
                    Contains("RotaryBlock: rotation 1 theta") && Contains("finite"));
  CHECK_THROWS_WITH(tformer::RotaryBlock(D, inf_theta), Contains("rotation 0 theta"));
  std::vector<float> eye(D * D, 0.0f);
  for (int i = 0; i < D; ++i) eye[std::size_t(i * D + i)] = 1.0f;
  for (const double tol : {double(nan), -1.0, std::numeric_limits<double>::infinity()})
    CHECK_THROWS_WITH(tformer::RotaryBlock(D, {}, {eye.data(), D, D}, tol), Contains("tolerance"));
  // The scratch is sized after head_dim is checked: a head_dim whose scratch would pass 2^40
  // bytes names head_dim, not the allocation.
  CHECK_THROWS_WITH(tformer::RotaryBlock(index(1) << 40, {}), Contains("RotaryBlock: head_dim"));
  CHECK_THROWS_WITH(tformer::RotaryBlock(-4, {}), Contains("RotaryBlock: head_dim"));

  // orthogonality_error and reorthogonalize check their matrix.
  std::vector<float> wide(std::size_t(D) * (D + 1), 0.0f);
  CHECK_THROWS_WITH(tformer::orthogonality_error({wide.data(), D, D + 1}),
                    Contains("orthogonality_error: r.cols (= r.rows)"));
  CHECK_THROWS_WITH(tformer::orthogonality_error({nullptr, D, D}), Contains("r data"));
  CHECK_THROWS_WITH(tformer::orthogonality_error({eye.data(), 0, 0}), Contains("r.rows"));
  auto poisoned = eye;
  poisoned[9] = nan;
  CHECK_THROWS_WITH(tformer::reorthogonalize({poisoned.data(), D, D}),
                    Contains("reorthogonalize: r") && Contains("finite") && Contains("(1, 1)"));
  CHECK(std::isnan(poisoned[9]));  // unchanged
  // Eigen's maxCoeff skips NaN: orthogonality_error reports it, so RotaryBlock refuses such an R.
  CHECK(std::isnan(tformer::orthogonality_error({poisoned.data(), D, D})));
  CHECK_THROWS_WITH(tformer::RotaryBlock(D, {}, {poisoned.data(), D, D}), Contains("RᵀR"));
  CHECK_THROWS_WITH(tformer::reorthogonalize({eye.data(), 0, 0}), Contains("r.rows"));

  // apply: a view whose heads · head_dim wraps.
  tformer::RotaryBlock block(D, {});
  std::vector<float> x(2 * D);
  CHECK_THROWS_WITH(block.apply({x.data(), 1, index(1) << 61, D}),
                    Contains("RotaryBlock::apply: x shape"));
}
