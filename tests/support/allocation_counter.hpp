// Counts heap allocations in this program (allocation_counter.cpp replaces the global operator
// new and, outside sanitizer builds, malloc, calloc, realloc, aligned_alloc, posix_memalign,
// memalign and valloc), on every thread, so tests can state that a hot path allocates nothing.
// Eigen allocates through malloc, and a worker thread's allocations count as much as the
// caller's.
#pragma once

#include <cstddef>

namespace test {

// Allocations made by any thread so far.
std::size_t allocations() noexcept;

// Whether the C allocation functions are counted too (not under AddressSanitizer, whose own
// malloc the program must keep).
bool counts_malloc() noexcept;

// Allocations made, by any thread, while f() ran.
template <class F>
std::size_t allocations_during(F&& f) {
  const std::size_t before = allocations();
  f();
  return allocations() - before;
}

}  // namespace test
