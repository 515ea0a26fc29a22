// Sinusoidal absolute position table and its normalised addition (rope/sinusoidal.hpp).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "tformer/rope/sinusoidal.hpp"

TEST_CASE("sinusoidal: the Transformer formula, normalised rows added", "[sinusoidal]") {
  const int P = 50, H = 10;
  std::vector<float> t(P * H);
  tformer::sinusoidal_init({t.data(), P, H});
  for (int p : {0, 1, 7, 49})
    for (int i = 0; i < H / 2; ++i) {
      const double angle = p / std::pow(10000.0, 2.0 * i / H);
      // float rounding of a value in [−1, 1]
      CHECK(t[std::size_t(p * H + 2 * i)] == Approx(std::sin(angle)).margin(1e-7));
      CHECK(t[std::size_t(p * H + 2 * i + 1)] == Approx(std::cos(angle)).margin(1e-7));
    }
  // Added to rows at positions 3, 4: each row gains scale · unit vector.
  std::vector<float> x(2 * H, 0.0f);
  tformer::add_position_embeddings({x.data(), 2, H}, {t.data(), P, H},
                                   tformer::Positions::offset(3), 2.5f);
  for (int r = 0; r < 2; ++r) {
    double ss = 0, norm = 0;
    for (int c = 0; c < H; ++c) {
      ss += double(x[std::size_t(r * H + c)]) * x[std::size_t(r * H + c)];
      norm += double(t[std::size_t((3 + r) * H + c)]) * t[std::size_t((3 + r) * H + c)];
    }
    CHECK(std::sqrt(ss) == Approx(2.5).epsilon(1e-6));
    CHECK(x[std::size_t(r * H)] == Approx(2.5 * t[std::size_t((3 + r) * H)] / std::sqrt(norm)).margin(1e-6));
  }
  CHECK_THROWS_AS(tformer::add_position_embeddings({x.data(), 2, H}, {t.data(), P, H},
                                                   tformer::Positions::offset(49)),
                  tformer::Error);
  CHECK_THROWS_AS(tformer::add_position_embeddings({x.data(), 2, H}, {t.data(), P / 2, 2 * H},
                                                   tformer::Positions::offset(0)),
                  tformer::Error);
}

TEST_CASE("sinusoidal: non-finite parameters, wrapped sizes and overlaps raise tformer::Error",
          "[sinusoidal][errors]") {
  using Catch::Contains;
  using tformer::index;
  const int P = 8, H = 4;
  std::vector<float> t(P * H, 0.0f), x(2 * H, 0.0f);
  for (const double base : {std::numeric_limits<double>::infinity(),
                            std::numeric_limits<double>::quiet_NaN(), 1.0})
    CHECK_THROWS_WITH(tformer::sinusoidal_init({t.data(), P, H}, base),
                      Contains("sinusoidal_init: base"));
  CHECK_THROWS_WITH(tformer::sinusoidal_init({t.data(), index(1) << 62, H, index(1) << 62}),
                    Contains("sinusoidal_init: table shape"));
  tformer::sinusoidal_init({t.data(), P, H});
  for (const float scale : {std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity()})
    CHECK_THROWS_WITH(tformer::add_position_embeddings({x.data(), 2, H}, {t.data(), P, H},
                                                       tformer::Positions::offset(0), scale),
                      Contains("add_position_embeddings: scale"));
  CHECK_THROWS_WITH(tformer::add_position_embeddings({t.data(), 2, H}, {t.data(), P, H},
                                                     tformer::Positions::offset(0)),
                    Contains("x") && Contains("memory disjoint from table"));
  CHECK_THROWS_WITH(tformer::add_position_embeddings({x.data(), index(1) << 62, H, index(1) << 62},
                                                     {t.data(), P, H},
                                                     tformer::Positions::offset(0)),
                    Contains("add_position_embeddings: x shape"));
  CHECK(std::all_of(x.begin(), x.end(), [](float v) { return v == 0.0f; }));
}
