#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "tformer/core/positions.hpp"

using Catch::Matchers::Contains;
using tformer::Positions;

TEST_CASE("core/positions: offset, ids and per-sequence forms", "[core]") {
  auto offset = Positions::offset(5);
  CHECK(offset(0) == 5);
  CHECK(offset(3) == 8);
  const std::vector<std::int32_t> ids = {4, 0, 9};
  CHECK(Positions::ids(ids)(2) == 9);
  const std::vector<std::int32_t> offsets = {10, 0};
  auto batch = Positions::per_sequence(offsets, 3);
  CHECK(batch(0) == 10);
  CHECK(batch(2) == 12);
  CHECK(batch(3) == 0);
  CHECK(batch(5) == 2);
}

TEST_CASE("core/positions: validate checks counts and range", "[core][errors]") {
  CHECK_NOTHROW(Positions::offset(6).validate("f", 4, 10));
  CHECK_NOTHROW(Positions::offset(100).validate("f", 0, 10));  // nothing to read
  CHECK_THROWS_WITH(
      Positions::offset(7).validate("f", 4, 10),
      Contains("f: positions (offset + tokens)") && Contains("[0, 10)") && Contains("got [7, 11)"));
  const std::vector<std::int32_t> ids = {1, -2};
  CHECK_THROWS_WITH(Positions::ids(ids).validate("f", 2, 10), Contains("got -2 (token 1)"));
  CHECK_THROWS_WITH(Positions::ids(ids).validate("f", 3, 10),
                    Contains("position ids count") && Contains("expected 3, got 2"));
  const std::vector<std::int32_t> offsets = {0, 8};
  CHECK_THROWS_WITH(Positions::per_sequence(offsets, 3).validate("f", 6, 10),
                    Contains("got 10 (token 5)"));
  CHECK_THROWS_WITH(Positions::per_sequence(offsets, 3).validate("f", 5, 10),
                    Contains("sequences * tokens per sequence") && Contains("expected 6, got 5"));
  CHECK_THROWS_WITH(Positions::per_sequence(offsets, 0).validate("f", 0, 10),
                    Contains("tokens per sequence"));
}

TEST_CASE("core/positions: positions near 2^31 are checked in 64 bits, never wrapped",
          "[core][errors]") {
  constexpr std::int32_t max = INT32_MAX;
  constexpr std::int64_t beyond = std::int64_t{1} << 40;  // a limit past what int32 holds
  CHECK_NOTHROW(Positions::offset(max - 3).validate("f", 3, beyond));
  CHECK(Positions::offset(max - 3)(2) == max - 1);
  // offset + t would wrap a 32-bit sum (UBSan: signed overflow); reported, in 64 bits.
  CHECK_THROWS_WITH(Positions::offset(max - 1).validate("f", 4, beyond),
                    Contains("[0, 2147483648)") && Contains("got [2147483646, 2147483650)"));
  const std::vector<std::int32_t> offsets = {0, max - 2};
  CHECK_NOTHROW(Positions::per_sequence(offsets, 2).validate("f", 4, beyond));
  CHECK(Positions::per_sequence(offsets, 2)(3) == max - 1);
  CHECK_NOTHROW(Positions::per_sequence(offsets, 3).validate("f", 6, beyond));  // up to 2^31 − 1
  const std::vector<std::int32_t> top = {max - 1};
  CHECK_THROWS_WITH(Positions::per_sequence(top, 5).validate("f", 5, beyond),
                    Contains("got 2147483648 (token 2)"));
}
