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

// Buffers of 4 MiB and more (caches, weights) start on a 2 MiB boundary, where Linux can back them
// with transparent huge pages; smaller ones keep the cache-line alignment.
TEST_CASE("core/memory: large AlignedBuffers start on a huge-page boundary", "[core]") {
  static_assert(tformer::alignment_for(tformer::huge_page_bytes * 2) == tformer::huge_page_bytes);
  static_assert(tformer::alignment_for(tformer::huge_page_bytes * 2 - 1) ==
                tformer::buffer_alignment);
  for (const std::size_t bytes : {std::size_t(4) << 20, (std::size_t(9) << 20) + 4}) {
    tformer::AlignedBuffer<float> big(bytes / sizeof(float));
    CHECK(reinterpret_cast<std::uintptr_t>(big.data()) % tformer::huge_page_bytes == 0);
    CHECK(big[big.size() - 1] == 0.0f);
    auto moved = std::move(big);  // freed with its allocation's alignment (ASan checks the pair)
    CHECK(moved.bytes() == bytes);
  }
  tformer::AlignedBuffer<std::byte> small((std::size_t(4) << 20) - 1);
  CHECK(reinterpret_cast<std::uintptr_t>(small.data()) % tformer::buffer_alignment == 0);
}
