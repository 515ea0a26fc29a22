// Executors: how Decoder spreads independent work (output rows, blocks of queries, runs of keys,
// runs of tokens) over threads. Kernels themselves are single-threaded. An executor is any type
// with
//   index concurrency() const;                              // workers it may use at once
//   void parallel_for(index begin, index end, F&& f) const; // f(i) for each i, any order
// that returns after every f(i) has returned. f never throws (inputs are checked before). Items
// may differ in size (for_row_chunks ends in shorter chunks; causal attention's tasks grow with
// their queries' positions), so an executor should hand them to threads as they become free, as
// ThreadTeam does from a counter, rather than in fixed shares.
// SerialExecutor is the default; ThreadTeam is the library's own persistent team; OpenMPExecutor
// exists when compiled with OpenMP; an engine adapts its own thread pool with a struct of these
// two functions (examples/engine_integration). What an f(i) computes never depends on which
// thread runs it, on how many there are or on the order of the items, so a compiled decoder
// gives the same bits on any number of threads. Two executor types are two compiled decoders,
// which a compiler may contract into FMAs differently (GCC's default -ffp-contract=fast decides
// per inlined copy): equal to rounding, or bit for bit with -ffp-contract=off.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "tformer/core/error.hpp"

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

// A persistent team: the calling thread and threads − 1 workers started at construction. A
// parallel_for hands the items out one at a time (an atomic counter) to the caller and the
// workers, and returns when all are done. Between calls the workers spin for up to
// `spin` (a decoder step makes hundreds of calls, microseconds apart), then sleep on a condition
// variable. Calls from several threads at once are serialised; a call from inside an f(i) (nested)
// runs serially on that thread.
class ThreadTeam {
 public:
  // Throws unless threads >= 1 (1: everything on the calling thread, no worker started).
  explicit ThreadTeam(index threads,
                      std::chrono::microseconds spin = std::chrono::microseconds(200))
      : shared_(std::make_unique<Shared>()) {
    check(threads >= 1 && threads <= 1024, "ThreadTeam", "threads", "a count in [1, 1024]",
          threads);
    shared_->spin = spin;
    workers_.reserve(static_cast<std::size_t>(threads - 1));
    try {
      for (index w = 1; w < threads; ++w) workers_.emplace_back([s = shared_.get()] { s->work(); });
    } catch (...) {  // a thread that could not start: stop the ones that did, then report
      stop_workers();
      throw;
    }
  }
  ThreadTeam(const ThreadTeam&) = delete;
  ThreadTeam& operator=(const ThreadTeam&) = delete;
  ~ThreadTeam() { stop_workers(); }

  index concurrency() const noexcept { return index(workers_.size()) + 1; }

  template <class F>
  void parallel_for(index begin, index end, F&& f) const {
    if (end - begin <= 1 || workers_.empty() || inside_) {
      for (index i = begin; i < end; ++i) f(i);
      return;
    }
    Shared& s = *shared_;
    std::lock_guard<std::mutex> one_call(s.call);
    auto* fp = &f;
    s.fn = [](const void* ctx, index i) {
      (*static_cast<decltype(fp)>(const_cast<void*>(ctx)))(i);  // f's own constness restored
    };
    s.ctx = fp;
    s.next.store(begin, std::memory_order_relaxed);
    s.end = end;
    s.busy.store(index(workers_.size()), std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.generation.fetch_add(1, std::memory_order_release);
    }
    s.wake.notify_all();
    inside_ = true;
    s.run_items();
    inside_ = false;
    // Wait for the workers to leave the call (they may still be finishing an item).
    const auto start = std::chrono::steady_clock::now();
    for (unsigned n = 0; s.busy.load(std::memory_order_acquire) != 0; ++n) {
      if (n % 64 == 0 && std::chrono::steady_clock::now() - start > s.spin) {
        std::unique_lock<std::mutex> lock(s.mutex);
        s.done.wait(lock, [&] { return s.busy.load(std::memory_order_acquire) == 0; });
        break;
      }
      pause();
    }
  }

 private:
  void stop_workers() noexcept {
    {
      std::lock_guard<std::mutex> lock(shared_->mutex);
      shared_->stop.store(true, std::memory_order_release);
      shared_->generation.fetch_add(1, std::memory_order_release);
    }
    shared_->wake.notify_all();
    for (std::thread& t : workers_) t.join();
  }

  static void pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    std::this_thread::yield();
#endif
  }

  struct Shared {
    std::mutex call;   // one parallel_for at a time
    std::mutex mutex;  // guards sleeping and waking
    std::condition_variable wake, done;
    std::atomic<std::uint64_t> generation{0};
    std::atomic<index> next{0};
    std::atomic<index> busy{0};  // workers still in the current call
    index end = 0;
    void (*fn)(const void*, index) = nullptr;  // calls the caller's f (ctx) on item i
    const void* ctx = nullptr;
    std::atomic<bool> stop{false};
    std::chrono::microseconds spin{200};

    void run_items() {
      for (index i; (i = next.fetch_add(1, std::memory_order_relaxed)) < end;) fn(ctx, i);
    }
    void work() {
      std::uint64_t seen = 0;
      for (;;) {
        const auto start = std::chrono::steady_clock::now();
        for (unsigned n = 0; generation.load(std::memory_order_acquire) == seen; ++n) {
          if (n % 64 == 0 && std::chrono::steady_clock::now() - start > spin) {
            std::unique_lock<std::mutex> lock(mutex);
            wake.wait(lock, [&] { return generation.load(std::memory_order_acquire) != seen; });
            break;
          }
          pause();
        }
        seen = generation.load(std::memory_order_acquire);
        if (stop.load(std::memory_order_acquire)) return;
        inside_ = true;
        run_items();
        inside_ = false;
        if (busy.fetch_sub(1, std::memory_order_acq_rel) == 1) {
          std::lock_guard<std::mutex> lock(mutex);
          done.notify_all();
        }
      }
    }
  };

  static inline thread_local bool inside_ = false;  // this thread is running an f(i)
  std::unique_ptr<Shared> shared_;
  std::vector<std::thread> workers_;
};

// Rows per chunk of for_row_chunks: at least rows / 48 (so at most 47 whole chunks before the
// tail, for up to 48 workers), a multiple of 16 (a chunk starts on a vector boundary at every
// ISA), at least 64.
constexpr index row_chunk(index rows) noexcept {
  return std::max<index>(64, ((rows + 47) / 48 + 15) / 16 * 16);
}
// Also what lets a chunk of an x16 weight (q4_0x16, q8_0x16) be a row_slice: it starts on a group
// of 16 rows.
static_assert(row_chunk(1) % 16 == 0 && row_chunk(100'003) % 16 == 0);

// Rows per chunk at the end of for_row_chunks: a quarter of row_chunk(rows) rounded up to a
// multiple of 16 (so at most 8 of them). Short last items let the workers finish closer together
// (session 52: two threads 1.00–1.02× faster in decode and prefill, one thread unchanged;
// docs/PERFORMANCE.md).
constexpr index tail_chunk(index rows) noexcept { return (row_chunk(rows) / 4 + 15) / 16 * 16; }
static_assert(tail_chunk(1) % 16 == 0 && tail_chunk(100'003) % 16 == 0);

// The chunks of for_row_chunks over `rows` rows: chunks of row_chunk(rows) rows, then the last
// chunk's worth of rows and what remains (fewer than 2 · row_chunk(rows) rows) in chunks of
// tail_chunk(rows) (the last may be shorter). A matrix of row_chunk(rows) rows or fewer is one
// chunk. Chunk c < items() covers the rows [first(c), first(c) + count(c)).
class RowChunks {
 public:
  constexpr RowChunks() noexcept : RowChunks(0) {}
  constexpr explicit RowChunks(index rows) noexcept
      : rows_(rows),
        chunk_(row_chunk(rows)),
        head_(rows > chunk_ ? (rows - chunk_) / chunk_ * chunk_ : 0),  // rows in whole chunks
        tail_(rows > chunk_ ? tail_chunk(rows) : chunk_),
        whole_(head_ / chunk_),
        items_(whole_ + (rows - head_ + tail_ - 1) / tail_) {}
  constexpr index items() const noexcept { return items_; }
  constexpr index first(index c) const noexcept {
    return c < whole_ ? c * chunk_ : head_ + (c - whole_) * tail_;
  }
  constexpr index count(index c) const noexcept {
    return std::min(c < whole_ ? chunk_ : tail_, rows_ - first(c));
  }

 private:
  index rows_, chunk_, head_, tail_, whole_, items_;
};

// Runs f(m, first, count) for every chunk of RowChunks(rows[m]) of N matrices, on exec's workers
// in one pass (one fork-join, one wait at the end), matrix 0's chunks first; on the calling thread
// when there is one chunk or one worker. The chunks depend on the row counts alone, not on the
// workers, so a kernel whose result depends on its slice (Eigen's GEMM blocking does) still gives
// the same bits on any number of threads, and N matrices in one pass those of N passes. For work
// split by output rows.
template <Executor E, std::size_t N, class F>
void for_row_chunks_of(const E& exec, const std::array<index, N>& rows, F&& f) {
  std::array<RowChunks, N> chunks;
  index items = 0;
  for (std::size_t m = 0; m < N; ++m) {
    chunks[m] = RowChunks(rows[m]);
    items += chunks[m].items();
  }
  const auto run = [&](index item) {
    std::size_t m = 0;
    while (item >= chunks[m].items()) item -= chunks[m++].items();
    f(m, chunks[m].first(item), chunks[m].count(item));
  };
  if (items <= 1 || exec.concurrency() <= 1) {
    for (index i = 0; i < items; ++i) run(i);
  } else {
    exec.parallel_for(0, items, run);
  }
}

// for_row_chunks_of for one matrix: f(first, count) for the chunks of RowChunks(rows), which
// cover [0, rows).
template <Executor E, class F>
void for_row_chunks(const E& exec, index rows, F&& f) {
  for_row_chunks_of(exec, std::array{rows},
                    [&](std::size_t, index first, index n) { f(first, n); });
}

// Tokens per run of for_token_runs: a run of norms, RoPE or cache writes over 16 tokens is a few
// microseconds of work, about what a fork-join costs.
inline constexpr index token_run = 16;

// Runs f(first, count) for the runs [first, first + count) of token_run tokens (the last may be
// shorter) that cover [0, tokens), on exec's workers. Fewer than two runs' worth of tokens, or
// an executor of concurrency 1, make one call f(0, tokens) on the calling thread. For per-token
// work (norms, RoPE, cache writes), whose bits never depend on the split.
template <Executor E, class F>
void for_token_runs(const E& exec, index tokens, F&& f) {
  if (tokens < 2 * token_run || exec.concurrency() <= 1) {
    if (tokens > 0) f(index(0), tokens);
    return;
  }
  exec.parallel_for(0, (tokens + token_run - 1) / token_run, [&](index r) {
    const index first = r * token_run;
    f(first, std::min(token_run, tokens - first));
  });
}

#if defined(_OPENMP)
struct OpenMPExecutor {
  index concurrency() const noexcept { return omp_get_max_threads(); }
  template <class F>
  void parallel_for(index begin, index end, F&& f) const {
#pragma omp parallel for schedule(dynamic, 1)
    for (index i = begin; i < end; ++i) f(i);
  }
};
#endif

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
