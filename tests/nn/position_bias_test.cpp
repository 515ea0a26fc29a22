// ALiBi slopes and T5 buckets against values written out by hand from their definitions
// (nn/position_bias.hpp's header), and the bias functors' dependence on key − query only.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "tformer/nn/position_bias.hpp"

using tformer::index;

TEST_CASE("alibi: the paper's geometric slopes for any head count", "[bias][alibi]") {
  // 8 heads: 2^-1 … 2^-8.
  const auto s8 = tformer::alibi_slopes(8);
  REQUIRE(s8.size() == 8);
  for (int i = 0; i < 8; ++i) CHECK(s8[std::size_t(i)] == float(std::exp2(-(i + 1))));
  // 12 heads: those 8, then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5 (odd steps of the 16-head sequence).
  const auto s12 = tformer::alibi_slopes(12);
  REQUIRE(s12.size() == 12);
  for (int i = 0; i < 8; ++i) CHECK(s12[std::size_t(i)] == s8[std::size_t(i)]);
  for (int j = 0; j < 4; ++j) CHECK(s12[std::size_t(8 + j)] == Approx(std::exp2(-0.5 - j)).epsilon(1e-7));
  // 1 head: 2^-8; 3 heads: 2^-4, 2^-8, then 2^-2.
  CHECK(tformer::alibi_slopes(1) == std::vector<float>{float(std::exp2(-8))});
  CHECK(tformer::alibi_slopes(3) ==
        std::vector<float>{float(std::exp2(-4)), float(std::exp2(-8)), float(std::exp2(-2))});
  CHECK_THROWS_AS(tformer::alibi_slopes(0), tformer::Error);
  const tformer::AlibiBias b{s8};
  CHECK(b(2, 100, 97) == Approx(-3 * std::exp2(-3)));
  CHECK(b(2, 1000, 997) == b(2, 100, 97));  // only k − q matters
}

TEST_CASE("t5: relative position buckets as Hugging Face computes them", "[bias][t5]") {
  // Unidirectional, 32 buckets, max_distance 128: distances 0…15 exact, then
  // 16 + floor(ln(n/16) / ln(8) · 16), at most 31; future keys in bucket 0.
  const struct {
    index r, bucket;
  } uni[] = {{0, 0}, {-1, 1}, {-15, 15}, {-16, 16}, {-20, 17}, {-31, 21}, {-32, 21}, {-64, 26},
             {-127, 31}, {-128, 31}, {-10000, 31}, {5, 0}};
  for (const auto& c : uni) {
    INFO("r = " << c.r);
    CHECK(tformer::t5_bucket(c.r, 32, 128, false) == c.bucket);
  }
  // Bidirectional: 16 buckets per sign (keys after the query from 16 on), 8 of them exact.
  const struct {
    index r, bucket;
  } bi[] = {{0, 0}, {-5, 5}, {5, 21}, {8, 24}, {-8, 8}, {-16, 10}, {200, 31}};
  for (const auto& c : bi) {
    INFO("r = " << c.r);
    CHECK(tformer::t5_bucket(c.r, 32, 128, true) == c.bucket);
  }
  std::vector<float> table(32 * 2);
  for (std::size_t i = 0; i < table.size(); ++i) table[i] = float(i);
  const tformer::T5Bias b({table.data(), 32, 2}, 128, false);
  CHECK(b(1, 50, 18) == table[21 * 2 + 1]);  // r = −32: bucket 21
  CHECK(b(1, 5050, 5018) == b(1, 50, 18));
  CHECK(b(0, 5000, 18) == table[31 * 2]);    // far past max_distance: the last bucket
  CHECK(b(0, 18, 5000) == table[0]);         // unidirectional: every future key in bucket 0
  const tformer::T5Bias both({table.data(), 32, 2}, 128, true);
  for (index r = -300; r <= 300; r += 7) {
    INFO("r = " << r);
    CHECK(both(1, 1000, 1000 + r) == table[std::size_t(tformer::t5_bucket(r, 32, 128, true) * 2 + 1)]);
  }
  CHECK_THROWS_AS(tformer::T5Bias({table.data(), 32, 2}, 16, false),
                  tformer::Error);  // max_distance within the exact buckets
  CHECK_THROWS_AS(tformer::T5Bias({table.data(), 3, 2}, 128, true), tformer::Error);
}

TEST_CASE("bias: bad sizes raise tformer::Error naming them", "[bias][errors]") {
  using Catch::Contains;
  CHECK_THROWS_WITH(tformer::alibi_slopes(-3), Contains("alibi_slopes: heads") && Contains("got -3"));
  CHECK_THROWS_WITH(tformer::alibi_slopes(std::numeric_limits<index>::max()),
                    Contains("alibi_slopes: heads"));
  const auto s4 = tformer::alibi_slopes(4);
  CHECK(tformer::AlibiBias{s4}.heads() == 4);

  std::vector<float> table(32 * 2);
  CHECK_THROWS_WITH(tformer::T5Bias({table.data(), 32, 2}, std::numeric_limits<index>::max(), false),
                    Contains("T5Bias: max_distance"));
  CHECK_THROWS_WITH(tformer::T5Bias({table.data(), 32, 2}, index(1) << 40, false),
                    Contains("T5Bias: max_distance"));
  CHECK_THROWS_WITH(tformer::T5Bias({table.data(), 32, 0}, 128, false),
                    Contains("T5Bias: table cols (heads)"));
  CHECK_THROWS_WITH(tformer::T5Bias({nullptr, 32, 2}, 128, false), Contains("table data"));
  CHECK_THROWS_WITH(tformer::t5_bucket(5, 1, 128, false), Contains("t5_bucket: buckets"));
  CHECK_THROWS_WITH(tformer::t5_bucket(5, 3, 128, true), Contains("t5_bucket: buckets"));
  CHECK_THROWS_WITH(tformer::t5_bucket(5, 32, 16, false), Contains("t5_bucket: max_distance"));
}
