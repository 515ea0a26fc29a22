#include <catch2/catch.hpp>

#include "tformer/core/error.hpp"

using Catch::Matchers::Equals;

TEST_CASE("core/error: messages name the place, the parameter, the expected and the given",
          "[core]") {
  CHECK_THROWS_AS(tformer::check(false, "f", "x", "> 0", -1), tformer::Error);
  CHECK_THROWS_WITH(tformer::check(false, "f", "x", "> 0", -1),
                    Equals("f: x: expected > 0, got -1"));
  CHECK_THROWS_WITH(tformer::check_eq("g", "heads", 8, 6), Equals("g: heads: expected 8, got 6"));
  CHECK_THROWS_WITH(tformer::check_index("h", "layer", 4, 4),
                    Equals("h: layer: expected a value in [0, 4), got 4"));
  CHECK_THROWS_WITH(tformer::check_index("h", "layer", -1, 4),
                    Equals("h: layer: expected a value in [0, 4), got -1"));
  CHECK_NOTHROW(tformer::check(true, "f", "x", "> 0", 1));
  CHECK_NOTHROW(tformer::check_eq("g", "heads", 8, 8));
  CHECK_NOTHROW(tformer::check_index("h", "layer", 3, 4));
}

TEST_CASE("core/error: Error is a std::runtime_error", "[core]") {
  try {
    tformer::check_eq("g", "heads", 1, 2);
    FAIL("no exception");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()) == "g: heads: expected 1, got 2");
  }
}
