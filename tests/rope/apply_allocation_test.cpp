// The RoPE entry points run per token in a decoder: checks included, they allocate nothing.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "support/allocation_counter.hpp"
#include "tformer/rope/apply.hpp"

using namespace tformer;

TEST_CASE("rope/apply: no entry point allocates", "[rope][allocation]") {
  RopeTable table(RopeConfig{.rotary_dim = 64, .max_positions = 4096});
  std::vector<float> q(4 * 8 * 64, 0.5f), k(4 * 2 * 64, 0.25f), out(q.size());
  const std::vector<std::int32_t> ids = {5, 9, 100, 4095}, offsets = {10, 20};
  HeadsView<float> qv(q.data(), 4, 8, 64), kv(k.data(), 4, 2, 64);

  // The counter counts (through a volatile pointer: a new-expression may be optimised away).
  void* (*volatile allocate)(std::size_t) = &::operator new;
  REQUIRE(test::allocations_during([&] { ::operator delete(allocate(8)); }) == 1);
  CHECK(test::allocations_during([&] {
          apply_rope_inplace<RopeLayout::RotateHalf>(table, qv, kv, Positions::offset(4000));
          apply_rope_inplace<RopeLayout::Interleaved>(table, qv, kv, Positions::ids(ids));
          apply_rope_inplace(RopeLayout::Interleaved, table, qv,
                             Positions::per_sequence(offsets, 2), RopeDirection::Inverse);
          apply_rope<RopeLayout::RotateHalf>(table, qv, HeadsView<float>(out.data(), 4, 8, 64),
                                             Positions::offset(0));
        }) == 0);
}
