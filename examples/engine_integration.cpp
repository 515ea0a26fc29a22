// How an engine drives tformer::Decoder with its own memory and its own threads:
//
//  1. Weights live in the engine's arena (here one vector; in an engine, a mapped file or a
//     GPU-style pool). tformer sees them through ModelWeights views: no copy. The engine
//     stores Q, K and V fused as one [Hq·D + 2·Hkv·D, H] matrix per layer, and gate|up fused;
//     row slices of those are the views tformer needs.
//  2. The engine's thread pool becomes an executor: a struct with concurrency() and
//     parallel_for(begin, end, f). Decoder splits projection and FFN rows, prompt attention
//     (KV heads × blocks of queries) and decode attention (KV heads × runs of keys) over it.
//  3. Two requests of different lengths share each step (forward with a batch).
// The program checks that the pool and the serial executor give the same logits.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "tformer/model/decoder.hpp"

namespace {

using tformer::index;

// A minimal fixed-size pool: the caller and the workers take items from a shared counter, each
// the next one as it becomes free (items differ in size: fixed shares would leave one thread
// waiting for another). No allocation per call: the job is a function pointer and a context.
class ThreadPool {
 public:
  explicit ThreadPool(int threads) : n_(std::max(threads, 1)) {
    for (int w = 1; w < n_; ++w) workers_.emplace_back([this] { work(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }
  index concurrency() const noexcept { return n_; }

  template <class F>
  void parallel_for(index begin, index end, F&& f) const {
    if (end - begin <= 1 || n_ == 1) {
      for (index i = begin; i < end; ++i) f(i);
      return;
    }
    std::unique_lock lock(mutex_);
    job_ = {[](const void* fn, index i) { (*static_cast<const std::remove_reference_t<F>*>(fn))(i); },
            &f, begin, end};
    next_.store(begin, std::memory_order_relaxed);
    pending_ = n_ - 1;
    ++generation_;
    lock.unlock();
    wake_.notify_all();
    run_items();
    lock.lock();
    done_.wait(lock, [this] { return pending_ == 0; });
  }

 private:
  struct Job {
    void (*call)(const void*, index) = nullptr;
    const void* fn = nullptr;
    index begin = 0, end = 0;
  };
  void run_items() const {
    for (index i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < job_.end;)
      job_.call(job_.fn, i);
  }
  void work() {
    std::uint64_t seen = 0;
    for (;;) {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      lock.unlock();
      run_items();
      lock.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  int n_;
  std::vector<std::thread> workers_;
  mutable std::mutex mutex_;
  mutable std::condition_variable wake_, done_;
  mutable Job job_;
  mutable std::atomic<index> next_{0};
  mutable int pending_ = 0;
  mutable std::uint64_t generation_ = 0;
  bool stop_ = false;
};
static_assert(tformer::Executor<ThreadPool>);

// The engine's model: a Llama-shaped config whose sizes are fixed at compile time.
struct EngineModel : tformer::configs::Base {
  static constexpr tformer::HeadKind head = tformer::HeadKind::Tied;  // logits from the embedding
  static constexpr index vocab = 512, hidden = 256, intermediate = 688, layers = 4, heads = 8,
                         kv_heads = 2, head_dim = 32, max_positions = 256;
};

// The engine's arena and the views tformer reads.
struct EngineWeights {
  std::vector<float> arena;
  tformer::ModelWeights views;

  explicit EngineWeights(unsigned seed) {
    using M = EngineModel;
    constexpr index qkv = (M::heads + 2 * M::kv_heads) * M::head_dim, qd = M::heads * M::head_dim;
    const index per_layer = 2 * M::hidden + qkv * M::hidden + M::hidden * qd +
                            2 * M::intermediate * M::hidden + M::hidden * M::intermediate;
    arena.resize(std::size_t(M::vocab * M::hidden + M::hidden + M::layers * per_layer));
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    for (float& x : arena) x = normal(rng);
    float* p = arena.data();
    auto take = [&](index n) {
      float* q = p;
      p += n;
      return q;
    };
    auto ones = [&](index n) {
      float* q = take(n);
      std::fill(q, q + n, 1.0f);
      return std::span<const float>(q, std::size_t(n));
    };
    views.embedding = {take(M::vocab * M::hidden), M::vocab, M::hidden};
    views.final_norm = ones(M::hidden);
    views.layers.resize(M::layers);
    for (auto& l : views.layers) {
      l.attn_norm = ones(M::hidden);
      l.ffn_norm = ones(M::hidden);
      const tformer::MatrixView<const float> fused(take(qkv * M::hidden), qkv, M::hidden);
      l.wq = fused.row_slice(0, qd);
      l.wk = fused.row_slice(qd, M::kv_heads * M::head_dim);
      l.wv = fused.row_slice(qd + M::kv_heads * M::head_dim, M::kv_heads * M::head_dim);
      l.wo = {take(M::hidden * qd), M::hidden, qd};
      const tformer::MatrixView<const float> gate_up(take(2 * M::intermediate * M::hidden),
                                                     2 * M::intermediate, M::hidden);
      l.ffn.gate = gate_up.row_slice(0, M::intermediate);
      l.ffn.up = gate_up.row_slice(M::intermediate, M::intermediate);
      l.ffn.down = {take(M::hidden * M::intermediate), M::hidden, M::intermediate};
    }
  }
};

}  // namespace

int main() {
  using M = EngineModel;
  const EngineWeights weights(7);
  const std::vector<std::int32_t> a = {1, 17, 42, 99, 300, 5, 8}, b = {1, 250, 3};
  const tformer::SequenceTokens prefill[] = {{0, a}, {1, b}};

  std::vector<std::vector<float>> results;
  ThreadPool pool(int(std::max(2u, std::thread::hardware_concurrency())));
  auto run = [&](auto& dec) {
    std::vector<float> logits(2 * M::vocab), all;
    dec.forward(prefill, {logits.data(), 2, M::vocab});
    for (int step = 0; step < 8; ++step) {  // both requests decode together
      const std::int32_t next[2] = {std::int32_t((step * 37 + 11) % M::vocab),
                                    std::int32_t((step * 53 + 7) % M::vocab)};
      const tformer::SequenceTokens batch[] = {{0, {&next[0], 1}}, {1, {&next[1], 1}}};
      dec.forward(batch, {logits.data(), 2, M::vocab});
      all.insert(all.end(), logits.begin(), logits.end());
    }
    results.push_back(all);
  };
  tformer::Decoder<M, ThreadPool&> with_pool(weights.views, {}, {.sequences = 2, .capacity = 64},
                                               pool);
  run(with_pool);
  tformer::Decoder<M> serial(weights.views, {}, {.sequences = 2, .capacity = 64});
  run(serial);

  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < results[0].size(); ++i) {
    worst = std::max(worst, double(std::abs(results[0][i] - results[1][i])));
    scale = std::max(scale, double(std::abs(results[1][i])));
  }
  // Split rows compute the same dot products; Eigen may block a smaller GEMM's inner dimension
  // differently, so allow rounding: 1e-5 of the logit scale.
  const bool agree = worst <= 1e-5 * (1.0 + scale);
  std::printf("engine integration: weights in the engine's arena (%.1f MiB, fused QKV and gate|up "
              "viewed by row slices), %ld-thread pool\n",
              double(weights.arena.size() * 4) / (1 << 20), long(pool.concurrency()));
  std::printf("two requests (7 and 3 prompt tokens) decoded together for 8 steps; lengths %ld and "
              "%ld\n",
              long(serial.length(0)), long(serial.length(1)));
  std::printf("pool and serial %s: max |Δlogit| = %.3g\n", agree ? "agree" : "DIFFER", worst);
  return agree ? 0 : 1;
}
