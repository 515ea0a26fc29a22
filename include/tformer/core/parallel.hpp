// Executors: how Decoder spreads independent work (KV heads, output rows) over threads.
// Kernels themselves are single-threaded. An executor is any type with
//   index concurrency() const;                              // workers it may use at once
//   void parallel_for(index begin, index end, F&& f) const; // f(i) for each i, any order
// that returns after every f(i) has returned. f never throws (inputs are checked before).
// SerialExecutor is the default; OpenMPExecutor exists when compiled with OpenMP; an engine
// adapts its own thread pool with a struct of these two functions (examples/engine_integration).
#pragma once

#include <concepts>

#include "tformer/core/views.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace tformer {
inline namespace TFORMER_ARCH_NS {

template <class E>
concept Executor = requires(const E& e, void (*f)(index)) {
  { e.concurrency() } -> std::convertible_to<index>;
  e.parallel_for(index{}, index{}, f);
};

struct SerialExecutor {
  constexpr index concurrency() const noexcept { return 1; }
  template <class F>
  void parallel_for(index begin, index end, F&& f) const {
    for (index i = begin; i < end; ++i) f(i);
  }
};

#if defined(_OPENMP)
struct OpenMPExecutor {
  index concurrency() const noexcept { return omp_get_max_threads(); }
  template <class F>
  void parallel_for(index begin, index end, F&& f) const {
#pragma omp parallel for schedule(static)
    for (index i = begin; i < end; ++i) f(i);
  }
};
#endif

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
