// Executors: ThreadTeam runs each item exactly once, on several threads, for many calls in a
// row; nested and concurrent calls are safe; 1 thread starts no worker. for_row_chunks covers the
// rows once in chunks that do not depend on the executor, and for_row_chunks_of gives several
// matrices those same chunks in one pass; an engine's pool (tests/support) and
// OpenMPExecutor (with -fopenmp: tformer_openmp_tests) run the same items. (The decoder's results
// on every executor are compared bit for bit in tests/model/decoder_test.cpp.)
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "support/engine_pool.hpp"
#include "tformer/core/parallel.hpp"

using tformer::ThreadTeam;
using Index = tformer::index;

TEST_CASE("core/parallel: a thread team runs every item once, on its threads",
          "[core][parallel]") {
  for (const Index threads : {1, 2, 3, 4}) {
    CAPTURE(threads);
    ThreadTeam team(threads);
    CHECK(team.concurrency() == threads);
    for (const Index n : {0, 1, 2, 3, 7, 64, 1000}) {
      CAPTURE(n);
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n + 5));
      team.parallel_for(5, 5 + n, [&](Index i) { hits[std::size_t(i)].fetch_add(1); });
      for (Index i = 0; i < n + 5; ++i) CHECK(hits[std::size_t(i)].load() == (i >= 5 ? 1 : 0));
    }
    // Items that take a while are shared: with more than one thread, more than one runs them.
    std::mutex m;
    std::set<std::thread::id> ids;
    team.parallel_for(0, 64, [&](Index) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      const std::lock_guard<std::mutex> lock(m);
      ids.insert(std::this_thread::get_id());
    });
    CHECK(ids.size() >= (threads > 1 ? 2u : 1u));
    CHECK(ids.size() <= std::size_t(threads));
    // The caller runs items too: an item on another thread waits (up to a second) for one on it.
    const std::thread::id caller = std::this_thread::get_id();
    std::atomic<bool> caller_ran{false};
    team.parallel_for(0, 64, [&](Index) {
      if (std::this_thread::get_id() == caller) {
        caller_ran.store(true);
        return;
      }
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      while (!caller_ran.load() && std::chrono::steady_clock::now() < until)
        std::this_thread::yield();
    });
    CHECK(caller_ran.load());
  }
}

TEST_CASE("core/parallel: many short calls in a row, with and without sleeping workers",
          "[core][parallel]") {
  for (const auto spin : {std::chrono::microseconds(0), std::chrono::microseconds(200)}) {
    ThreadTeam team(3, spin);
    long total = 0;
    std::vector<long> slot(8);
    for (int call = 0; call < 3000; ++call) {
      team.parallel_for(0, 8, [&](Index i) { slot[std::size_t(i)] += i + call; });
      if (call % 1000 == 999) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    for (Index i = 0; i < 8; ++i) total += slot[std::size_t(i)];
    CHECK(total == 3000L * (0 + 7) * 8 / 2 + 8L * (2999L * 3000 / 2));
  }
}

TEST_CASE("core/parallel: nested calls run serially, concurrent callers take turns",
          "[core][parallel]") {
  ThreadTeam team(2);
  std::atomic<int> inner{0}, elsewhere{0};  // inner items, and those off their outer item's thread
  team.parallel_for(0, 4, [&](Index) {
    const std::thread::id outer = std::this_thread::get_id();
    team.parallel_for(0, 10, [&](Index) {
      inner.fetch_add(1);
      if (std::this_thread::get_id() != outer) elsewhere.fetch_add(1);
    });
  });
  CHECK(inner.load() == 40);
  CHECK(elsewhere.load() == 0);
  std::atomic<long> sum{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 3; ++c)
    callers.emplace_back([&] {
      for (int k = 0; k < 200; ++k) team.parallel_for(0, 16, [&](Index i) { sum.fetch_add(i); });
    });
  for (auto& t : callers) t.join();
  CHECK(sum.load() == 3L * 200 * (15 * 16 / 2));
  CHECK_THROWS_WITH(ThreadTeam(0), Catch::Contains("ThreadTeam: threads"));
}

namespace {
// The chunks for_row_chunks gives f on `exec`, in first-row order; checks they cover [0, rows).
template <class E>
std::vector<std::pair<Index, Index>> row_chunks(const E& exec, Index rows) {
  std::mutex m;
  std::vector<std::pair<Index, Index>> got;
  tformer::for_row_chunks(exec, rows, [&](Index first, Index n) {
    const std::lock_guard<std::mutex> lock(m);
    got.emplace_back(first, n);
  });
  std::sort(got.begin(), got.end());
  Index covered = 0;
  for (const auto& [first, n] : got) {
    CHECK(first == covered);
    CHECK(n >= 1);
    CHECK(first % 16 == 0);
    covered = first + n;
  }
  CHECK(covered == rows);
  return got;
}
}  // namespace

TEST_CASE("core/parallel: row chunks cover the rows once and do not depend on the executor",
          "[core][parallel]") {
  const ThreadTeam one(1), two(2), three(3);
  const test::EnginePool pool(2);
  for (const Index rows : {0, 1, 15, 63, 64, 65, 100, 127, 128, 129, 512, 768, 3000, 3839, 5120,
                           5361, 32000, 128256}) {
    CAPTURE(rows);
    const auto serial = row_chunks(tformer::SerialExecutor{}, rows);
    CHECK(row_chunks(one, rows) == serial);
    CHECK(row_chunks(two, rows) == serial);
    CHECK(row_chunks(three, rows) == serial);
    CHECK(row_chunks(pool, rows) == serial);
    // Whole chunks of row_chunk(rows) (at least rows / 48, and 64) for up to 48 workers, then
    // between one and two chunks' worth of rows in quarters (tail_chunk); a matrix of one chunk's
    // rows or fewer is one chunk.
    const Index chunk = tformer::row_chunk(rows), tail = tformer::tail_chunk(rows);
    CHECK(tail % 16 == 0);
    CHECK(tail >= chunk / 4);
    CHECK(tail < chunk / 4 + 16);
    CHECK(serial.size() <= 47u + 8u);
    if (rows <= chunk) CHECK(serial.size() == (rows > 0 ? 1u : 0u));
    if (rows > chunk) {
      std::size_t i = 0;
      while (i < serial.size() && serial[i].second == chunk) ++i;
      REQUIRE(i < serial.size());
      CHECK(rows - serial[i].first >= chunk);
      CHECK(rows - serial[i].first < 2 * chunk);
      for (; i < serial.size(); ++i)
        CHECK(serial[i].second == std::min(tail, rows - serial[i].first));
    }
    if (rows >= 128) CHECK(serial.size() >= 2u);
  }
  using Chunks = std::vector<std::pair<Index, Index>>;
  CHECK(row_chunks(two, 128) == Chunks{{0, 64}, {64, 16}, {80, 16}, {96, 16}, {112, 16}});
  CHECK(row_chunks(two, 65) == Chunks{{0, 16}, {16, 16}, {32, 16}, {48, 16}, {64, 1}});
  Chunks c512;
  for (Index c = 0; c < 7; ++c) c512.emplace_back(64 * c, 64);
  for (Index c = 0; c < 4; ++c) c512.emplace_back(448 + 16 * c, 16);
  CHECK(row_chunks(two, 512) == c512);
}

TEST_CASE("core/parallel: row chunks of several matrices in one pass are each matrix's own",
          "[core][parallel]") {
  const ThreadTeam one(1), two(2), three(3);
  const test::EnginePool pool(2);
  using Chunks = std::vector<std::pair<Index, Index>>;
  const auto check_of = [&](const auto& exec, const std::array<Index, 4>& rows) {
    std::mutex m;
    std::array<Chunks, 4> got;
    std::vector<std::size_t> order;  // matrices in the order the serial pass visits them
    tformer::for_row_chunks_of(exec, rows, [&](std::size_t matrix, Index first, Index n) {
      const std::lock_guard<std::mutex> lock(m);
      got[matrix].emplace_back(first, n);
      order.push_back(matrix);
    });
    for (std::size_t i = 0; i < 4; ++i) {
      CAPTURE(i, rows[i]);
      std::sort(got[i].begin(), got[i].end());
      CHECK(got[i] == row_chunks(tformer::SerialExecutor{}, rows[i]));
    }
    return order;
  };
  for (const auto& rows : {std::array<Index, 4>{512, 128, 128, 0},
                           {0, 65, 1, 3000},
                           {64, 64, 64, 64},
                           {0, 0, 0, 0},
                           {32000, 15, 768, 129}}) {
    const auto order = check_of(tformer::SerialExecutor{}, rows);
    CHECK(std::is_sorted(order.begin(), order.end()));  // matrix 0's chunks first
    check_of(one, rows);
    check_of(two, rows);
    check_of(three, rows);
    check_of(pool, rows);
  }
}

TEST_CASE("core/parallel: an engine's pool and OpenMP run every item once", "[core][parallel]") {
  const auto check_once = [](const auto& exec) {
    for (const Index n : {0, 1, 5, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
      for (int call = 0; call < 50; ++call)
        exec.parallel_for(0, n, [&](Index i) { hits[std::size_t(i)].fetch_add(1); });
      for (Index i = 0; i < n; ++i) CHECK(hits[std::size_t(i)].load() == 50);
    }
  };
  for (const int threads : {1, 2, 3}) check_once(test::EnginePool(threads));
#if defined(_OPENMP)
  check_once(tformer::OpenMPExecutor{});
  CHECK(tformer::OpenMPExecutor{}.concurrency() >= 1);
#endif
}
