// RopeTable: its cos/sin rows against cos and sin evaluated in double, and its updates.
// A table entry is one double value rounded to float, so it must be within u = FLT_EPSILON/2
// (relative) of the exact value; the tests allow FLT_EPSILON·|a| absolute, a = attention factor.
#include <catch2/catch.hpp>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "reference/rope_reference.hpp"
#include "tformer/rope/table.hpp"

using tformer::RopeConfig;
using tformer::RopeTable;
namespace rs = tformer::rope_scaling;
using Catch::Matchers::Contains;

namespace {

void require_rows_match(const RopeTable& table, const std::vector<double>& inv, double factor,
                        std::initializer_list<int> positions) {
  for (int p : positions) {
    for (int i = 0; i < table.half(); ++i) {
      INFO("position " << p << " frequency " << i);
      const double angle = p * inv[i];
      REQUIRE(std::abs(table.cos(p)[i] - factor * std::cos(angle)) <= FLT_EPSILON * factor);
      REQUIRE(std::abs(table.sin(p)[i] - factor * std::sin(angle)) <= FLT_EPSILON * factor);
    }
  }
}

}  // namespace

TEST_CASE("rope/table: rows hold cos and sin of position times inv_freq", "[rope][table]") {
  RopeTable table(RopeConfig{.rotary_dim = 128, .max_positions = 70000, .base = 500000.0});
  CHECK(table.rotary_dim() == 128);
  CHECK(table.half() == 64);
  CHECK(table.max_positions() == 70000);
  CHECK(table.bytes() == 70000u * 128u * sizeof(float));
  CHECK(table.attention_factor() == 1.0);
  require_rows_match(table, ref::default_inv_freq(128, 500000.0), 1.0, {0, 1, 2, 4000, 69999});
}

TEST_CASE("rope/table: the attention factor scales cos and sin (YaRN)", "[rope][table]") {
  RopeTable table(RopeConfig{.rotary_dim = 64,
                             .max_positions = 9000,
                             .base = 10000.0,
                             .scaling = rs::Yarn{.factor = 4.0, .original_max_positions = 2048}});
  const double a = 1.0 + 0.1 * std::log(4.0);
  CHECK(table.attention_factor() == Approx(a).epsilon(1e-15));
  const auto inv = ref::yarn_inv_freq(64, 10000.0, 4.0, 2048);
  require_rows_match(table, inv, a, {0, 5, 2047, 8999});
}

TEST_CASE("rope/table: set_base recomputes every row", "[rope][table]") {
  RopeTable table(RopeConfig{.rotary_dim = 32, .max_positions = 512});
  table.set_base(1e6);
  CHECK(table.base() == 1e6);
  require_rows_match(table, ref::default_inv_freq(32, 1e6), 1.0, {1, 100, 511});
}

TEST_CASE("rope/table: dynamic NTK follows the sequence length", "[rope][table]") {
  const rs::DynamicNtk ntk{.factor = 2.0, .original_max_positions = 256};
  RopeTable table(RopeConfig{.rotary_dim = 16, .max_positions = 1024, .scaling = ntk});
  CHECK(table.sequence_length() == 256);
  require_rows_match(table, ref::default_inv_freq(16, 10000.0), 1.0, {3, 300});
  table.set_sequence_length(700);
  require_rows_match(table, ref::dynamic_ntk_inv_freq(16, 10000.0, 2.0, 256, 700), 1.0,
                     {3, 300, 699});
  table.set_sequence_length(10);  // back within the original length: plain frequencies
  require_rows_match(table, ref::default_inv_freq(16, 10000.0), 1.0, {3, 300});
}

TEST_CASE("rope/table: LongRoPE switches factors with the sequence length", "[rope][table]") {
  std::vector<double> short_f(8, 1.0), long_f(8, 4.0);
  const rs::LongRope lr{
      .short_factor = short_f, .long_factor = long_f, .original_max_positions = 64};
  RopeTable table(RopeConfig{.rotary_dim = 16, .max_positions = 256, .scaling = lr});
  const double a = std::sqrt(1 + std::log(4.0) / std::log(64.0));
  CHECK(table.sequence_length() == 256);  // a new table assumes its full length: long factors
  require_rows_match(table, ref::longrope_inv_freq(16, 10000.0, long_f), a, {1, 200});
  table.set_sequence_length(64);  // a prompt within L0: short factors, as Hugging Face
  require_rows_match(table, ref::longrope_inv_freq(16, 10000.0, short_f), a, {1, 63});
  table.set_sequence_length(65);
  require_rows_match(table, ref::longrope_inv_freq(16, 10000.0, long_f), a, {1, 64});
}

namespace {
// Rows from compute_rows(positions, n, length, out) against cos and sin of the reference's
// frequencies, with the same bound as require_rows_match.
void require_length_rows(RopeTable& table, int first, int n, int length,
                         const std::vector<double>& inv, double factor) {
  std::vector<float> rows(static_cast<std::size_t>(n * table.rotary_dim()));
  table.compute_rows(tformer::Positions::offset(first), n, length,
                     {rows.data(), n, table.rotary_dim()});
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < table.half(); ++i) {
      INFO("position " << first + t << " frequency " << i << " length " << length);
      const double angle = (first + t) * inv[std::size_t(i)];
      const float* row = rows.data() + t * table.rotary_dim();
      REQUIRE(std::abs(row[i] - factor * std::cos(angle)) <= FLT_EPSILON * factor);
      REQUIRE(std::abs(row[table.half() + i] - factor * std::sin(angle)) <= FLT_EPSILON * factor);
    }
}
}  // namespace

TEST_CASE("rope/table: rows at a sequence length leave the table as it is", "[rope][table]") {
  SECTION("dynamic NTK: a new base per length past L0") {
    const rs::DynamicNtk ntk{.factor = 3.0, .original_max_positions = 100};
    RopeTable table(RopeConfig{.rotary_dim = 16, .max_positions = 128, .scaling = ntk}, 0);
    CHECK(table.length_dependent());
    CHECK(table.serves(0));
    CHECK(table.serves(100));  // L = max(length, L0): the same frequencies up to L0
    CHECK_FALSE(table.serves(101));
    for (int length : {50, 101, 257, 5000}) {  // past the table too (a ring cache)
      require_length_rows(table, length - 3, 3, length,
                          ref::dynamic_ntk_inv_freq(16, 10000.0, 3.0, 100, length), 1.0);
      require_rows_match(table, ref::default_inv_freq(16, 10000.0), 1.0, {1, 99, 127});
    }
  }
  SECTION("LongRoPE: short factors in the table, long ones past L0") {
    std::vector<double> short_f(4), long_f(4);
    for (int i = 0; i < 4; ++i) short_f[std::size_t(i)] = 1.0 + 0.25 * i, long_f[std::size_t(i)] = 2.0 + i;
    const rs::LongRope lr{.short_factor = short_f, .long_factor = long_f,
                          .original_max_positions = 32, .factor = 8.0};
    RopeTable table(RopeConfig{.rotary_dim = 8, .max_positions = 64, .scaling = lr}, 0);
    const double a = std::sqrt(1 + std::log(8.0) / std::log(32.0));
    CHECK(table.sequence_length() == 0);
    CHECK(table.serves(32));
    CHECK_FALSE(table.serves(33));
    require_rows_match(table, ref::longrope_inv_freq(8, 10000.0, short_f), a, {1, 40, 63});
    require_length_rows(table, 30, 10, 40, ref::longrope_inv_freq(8, 10000.0, long_f), a);
    require_length_rows(table, 0, 5, 5, ref::longrope_inv_freq(8, 10000.0, short_f), a);
    table.set_sequence_length(33);  // the table in the long regime: the short one computed
    require_length_rows(table, 2, 4, 6, ref::longrope_inv_freq(8, 10000.0, short_f), a);
    require_rows_match(table, ref::longrope_inv_freq(8, 10000.0, long_f), a, {1, 63});
    const RopeTable copy = table.copy();
    CHECK(copy.serves(40));
    CHECK_FALSE(copy.serves(3));
  }
  SECTION("other scalings: every length is the table's") {
    RopeTable table(RopeConfig{.rotary_dim = 8, .max_positions = 16, .scaling = rs::Linear{2.0}});
    CHECK_FALSE(table.length_dependent());
    CHECK(table.serves(1000));
    require_length_rows(table, 20, 2, 22, ref::linear_inv_freq(8, 10000.0, 2.0), 1.0);
  }
  SECTION("bad arguments") {
    RopeTable table(RopeConfig{.rotary_dim = 8, .max_positions = 16});
    std::vector<float> rows(16);
    CHECK_THROWS_WITH(table.compute_rows(tformer::Positions::offset(0), 2, -1, {rows.data(), 2, 8}),
                      Contains("length") && Contains("got -1"));
    CHECK_THROWS_WITH(table.compute_rows(tformer::Positions::offset(0), 2, 2, {rows.data(), 2, 6}),
                      Contains("out"));
    CHECK_THROWS_WITH(RopeTable(RopeConfig{.rotary_dim = 8, .max_positions = 16}, -2),
                      Contains("sequence_length") && Contains("got -2"));
  }
}

TEST_CASE("rope/table: a rejected update changes nothing", "[rope][table][errors]") {
  RopeTable table(RopeConfig{.rotary_dim = 8, .max_positions = 16, .base = 500.0});
  const float c = table.cos(3)[1];
  CHECK_THROWS_WITH(table.set_base(0.5), Contains("base") && Contains("got 0.5"));
  CHECK(table.base() == 500.0);
  CHECK(table.cos(3)[1] == c);
  CHECK_THROWS_WITH(table.set_sequence_length(-1), Contains("length"));
}

TEST_CASE("rope/table: copy() is deep and moves keep the rows", "[rope][table]") {
  RopeTable a(RopeConfig{.rotary_dim = 8, .max_positions = 16});
  RopeTable b = a.copy();
  b.set_base(100.0);
  CHECK(a.base() == 10000.0);
  CHECK(a.cos(3)[1] != b.cos(3)[1]);
  const float c = a.cos(5)[2];
  RopeTable moved = std::move(a);
  CHECK(moved.cos(5)[2] == c);
}

TEST_CASE("rope/table: invalid configurations raise tformer::Error", "[rope][table][errors]") {
  CHECK_THROWS_WITH(RopeTable(RopeConfig{.rotary_dim = 7, .max_positions = 4}),
                    Contains("RopeTable: rotary_dim") && Contains("even") && Contains("got 7"));
  CHECK_THROWS_WITH(RopeTable(RopeConfig{.rotary_dim = 8, .max_positions = 0}),
                    Contains("max_positions") && Contains("got 0"));
  CHECK_THROWS_WITH(tformer::partial_rotary_dim(64, 1.5), Contains("partial_rotary_factor"));
}

TEST_CASE("rope/table: compute_rows gives the table's rows, and rows past it (YaRN factor kept)",
          "[rope][table]") {
  RopeTable table(RopeConfig{.rotary_dim = 64,
                             .max_positions = 100,
                             .base = 10000.0,
                             .scaling = rs::Yarn{.factor = 4.0, .original_max_positions = 32}});
  const std::vector<std::int32_t> ids = {0, 7, 99, 100, 4096, 1000000, 2147483646};
  std::vector<float> rows(ids.size() * 64);
  table.compute_rows(tformer::Positions::ids(ids), tformer::index(ids.size()),
                     {rows.data(), tformer::index(ids.size()), 64});
  for (std::size_t t = 0; t < 3; ++t)  // inside the table: the same rows, bit for bit
    for (int i = 0; i < 64; ++i) REQUIRE(rows[t * 64 + i] == table.cos(ids[t])[i]);
  // Past it: within u of the double value of the table's own frequencies (at angles near 1e9
  // an ulp of a frequency moves the angle by more than u, so the reference's frequencies, equal
  // to within a few ulps, are compared on their own).
  const double a = table.attention_factor();
  const auto ref_inv = ref::yarn_inv_freq(64, 10000.0, 4.0, 32);
  const auto inv = table.inv_freq();
  for (int i = 0; i < 32; ++i)
    REQUIRE(std::abs(inv[std::size_t(i)] - ref_inv[std::size_t(i)]) <= 1e-14 * ref_inv[std::size_t(i)]);
  for (std::size_t t = 3; t < ids.size(); ++t)
    for (int i = 0; i < 32; ++i) {
      INFO("position " << ids[t] << " frequency " << i);
      const double angle = double(ids[t]) * inv[std::size_t(i)];
      REQUIRE(std::abs(rows[t * 64 + i] - a * std::cos(angle)) <= FLT_EPSILON * a);
      REQUIRE(std::abs(rows[t * 64 + 32 + i] - a * std::sin(angle)) <= FLT_EPSILON * a);
    }
  std::vector<float> small(64);
  CHECK_THROWS_WITH(table.compute_rows(tformer::Positions::offset(5), 2, {small.data(), 1, 64}),
                    Contains("out"));
  CHECK_THROWS_WITH(table.compute_rows(tformer::Positions::offset(-1), 1, {small.data(), 1, 64}),
                    Contains("positions"));
}

TEST_CASE("rope/table: sizes past 2^40 bytes and bad partial-rotary inputs raise tformer::Error",
          "[rope][table][errors]") {
  constexpr int int32_max = std::numeric_limits<std::int32_t>::max();
  // max_positions · rotary_dim · 4 bytes: 2^43 and 2^42 bytes, reported before any allocation.
  CHECK_THROWS_WITH(RopeTable(RopeConfig{.rotary_dim = 1024, .max_positions = int32_max}),
                    Contains("RopeTable: max_positions * rotary_dim") &&
                        Contains("2147483647 * 1024"));
  CHECK_THROWS_WITH(RopeTable(RopeConfig{.rotary_dim = int32_max - 1, .max_positions = 512}),
                    Contains("RopeTable: max_positions * rotary_dim"));
  // Parameters are checked before the table is allocated: a bad base with a huge table names
  // the base, not the allocation.
  CHECK_THROWS_WITH(
      RopeTable(RopeConfig{.rotary_dim = 128, .max_positions = int32_max / 2, .base = -1.0}),
      Contains("base"));
  CHECK_THROWS_WITH(RopeTable(RopeConfig{.rotary_dim = 8, .max_positions = -3}),
                    Contains("max_positions") && Contains("got -3"));
  CHECK_THROWS_WITH(tformer::partial_rotary_dim(-128, 0.5),
                    Contains("partial_rotary_dim: head_dim") && Contains("got -128"));
  CHECK_THROWS_WITH(tformer::partial_rotary_dim(0, 0.5), Contains("head_dim"));
  CHECK_THROWS_WITH(tformer::partial_rotary_dim(64, std::numeric_limits<double>::quiet_NaN()),
                    Contains("partial_rotary_factor"));
  CHECK(tformer::partial_rotary_dim(80, 0.4) == 32);

  RopeTable table(RopeConfig{.rotary_dim = 8, .max_positions = 16});
  CHECK_THROWS_WITH(table.set_base(std::numeric_limits<double>::infinity()), Contains("base"));
  CHECK_THROWS_WITH(table.set_base(std::numeric_limits<double>::quiet_NaN()), Contains("base"));
  CHECK(table.base() == 10000.0);
  // compute_rows: an output whose rows · row_stride wraps.
  std::vector<float> out(8);
  CHECK_THROWS_WITH(
      table.compute_rows(tformer::Positions::offset(0), 1,
                         {out.data(), tformer::index(1) << 62, 8, tformer::index(1) << 62}),
      Contains("compute_rows: out shape"));
}
