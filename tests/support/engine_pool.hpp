// An engine's own thread pool as tests adapt it to tformer's executor interface (the pattern of
// examples/engine_integration.cpp): one job at a time (callers from several threads take turns;
// a call from inside an item would deadlock, and tformer never makes one), handed out by a
// mutex-guarded counter, workers sleeping on a condition variable. Nothing shared with ThreadTeam, so the threaded
// decoder tests (and ThreadSanitizer) run through a second, independent executor.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "tformer/core/views.hpp"

namespace test {

class EnginePool {
 public:
  explicit EnginePool(int threads) : threads_(threads < 1 ? 1 : threads) {
    try {
      for (int w = 1; w < threads_; ++w) workers_.emplace_back([this] { work(); });
    } catch (...) {  // a thread that could not start: stop the started ones, then report
      stop();
      throw;
    }
  }
  EnginePool(const EnginePool&) = delete;
  EnginePool& operator=(const EnginePool&) = delete;
  ~EnginePool() { stop(); }

  tformer::index concurrency() const noexcept { return threads_; }

  template <class F>
  void parallel_for(tformer::index begin, tformer::index end, F&& f) const {
    const std::lock_guard<std::mutex> one_job(job_);
    std::unique_lock<std::mutex> lock(mutex_);
    call_ = [](const void* fn, tformer::index i) {
      (*static_cast<std::remove_reference_t<F>*>(const_cast<void*>(fn)))(i);
    };
    fn_ = &f;
    next_ = begin;
    end_ = end;
    active_ = threads_;  // the caller and every worker take part
    ++generation_;
    wake_.notify_all();
    run(lock);
    done_.wait(lock, [this] { return active_ == 0; });
  }

 private:
  void stop() {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
  }
  // Takes items until none is left; called and returns with the lock held.
  void run(std::unique_lock<std::mutex>& lock) const {
    while (next_ < end_) {
      const tformer::index i = next_++;
      lock.unlock();
      call_(fn_, i);
      lock.lock();
    }
    if (--active_ == 0) done_.notify_all();
  }
  void work() const {
    std::unique_lock<std::mutex> lock(mutex_);
    for (std::uint64_t seen = 0;;) {
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      run(lock);
    }
  }

  int threads_;
  std::vector<std::thread> workers_;
  mutable std::mutex job_;  // one parallel_for at a time
  mutable std::mutex mutex_;
  mutable std::condition_variable wake_, done_;
  mutable void (*call_)(const void*, tformer::index) = nullptr;
  mutable const void* fn_ = nullptr;
  mutable tformer::index next_ = 0, end_ = 0, active_ = 0;
  mutable std::uint64_t generation_ = 0;
  bool stop_ = false;
};

}  // namespace test
