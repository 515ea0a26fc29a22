#include <catch2/catch.hpp>

#include <cstdint>

#include "tformer/core/memory.hpp"

TEST_CASE("core/memory: AlignedBuffer is aligned, zeroed, movable and copied only on request",
          "[core]") {
  tformer::AlignedBuffer<float> a(1000);
  REQUIRE(a.size() == 1000);
  CHECK(a.bytes() == 4000);
  CHECK(reinterpret_cast<std::uintptr_t>(a.data()) % tformer::buffer_alignment == 0);
  for (float v : a.span()) REQUIRE(v == 0.0f);
  a[7] = 3.0f;
  auto b = a.copy();
  b[7] = 4.0f;
  CHECK(a[7] == 3.0f);
  auto c = std::move(a);
  CHECK(c[7] == 3.0f);
  CHECK(a.size() == 0);  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  CHECK(a.data() == nullptr);
  tformer::AlignedBuffer<float> empty;
  CHECK(empty.size() == 0);
  static_assert(!std::is_copy_constructible_v<tformer::AlignedBuffer<float>>);
}
