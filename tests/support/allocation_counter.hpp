// Counts calls to the global operator new in this program (allocation_counter.cpp replaces it),
// so tests can state that a hot path allocates nothing.
#pragma once

#include <cstddef>

namespace test {

// Allocations made by the calling thread so far.
std::size_t allocations() noexcept;

// Allocations made by f().
template <class F>
std::size_t allocations_during(F&& f) {
  const std::size_t before = allocations();
  f();
  return allocations() - before;
}

}  // namespace test
