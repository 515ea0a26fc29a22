// Attention decode (one query token, 32 query / 8 KV heads, head_dim 128) over contexts of 512,
// 4096, 16384 and 32768 positions, and causal prefill (T = L = 512, 2048).
//   decode: bytes = the K and V rows read (2 · 8 · L · 128 · 4, or · 2 for the f16 and bf16
//           caches of attention_decode_f16 / _bf16); beside each, copy/<KiB> of the
//           same bytes in the same run, and read/<KiB>, a read-only stream of them (decode reads,
//           it writes almost nothing). decode_layers: L 4096 over 4 layers in turn, as a
//           decoder step reads them (no layer still in L3 when it comes round again).
//   prefill: FLOPS = 4 · Hq · D · (causal pairs), pairs = T·(T+1)/2; prefill_threads: the same
//            through attention() on a ThreadTeam of 1 or 2 (tasks of a KV head × 64 queries),
//            beside fma_peak_threads/threads:<n>, the FMA peak of as many threads at once.
//   cross:   over 196 encoder tokens, FLOPS = 4 · Hq · D · S · T.
//   split:   decode on a ThreadTeam of 1 or 2 through the public split-K primitives (parts of a
//            KV head × 512 keys, KVView::part, by attention_lse, merged by merge_attention), beside
//            read_threads/<KiB>/threads:<n>, the read ceiling of the same bytes on as many threads;
//   vs_read: decode and a read of its own K and V rows timed in turns in every iteration, on 1
//            or 2 threads (attention(), its executor overload on 2); of_read = the median
//            per-iteration read / decode time, robust to the drift of a shared host's bandwidth
//            that separate runs see.
//   hybrid:  seed 001's local + global decode at position L − 1 of a ring cache that keeps 4
//            sinks and a window of 4096 (StreamingLLM), beside global decode at the same L;
//            bytes = the K and V rows of the 4 + 4096 keys it reads.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ceilings.hpp"
#include "tformer/core/parallel.hpp"
#include "tformer/nn/attention.hpp"
#include "tformer/nn/position_bias.hpp"

namespace {

constexpr int kQHeads = 32, kKvHeads = 8, kDim = 128;

// A cache of `length` random positions in each of `layers` layers, written in chunks so that no
// full-size temporary inflates the process's peak memory. window > 0: a ring (one layer) keeping
// `sinks` sinks and the window.
tformer::KVCache filled_cache(int length, int window = 0, int sinks = 0,
                              tformer::KVType type = tformer::KVType::f32, int layers = 1) {
  constexpr int chunk = 512;
  tformer::KVCache cache(window > 0 ? tformer::KVCacheConfig{.layers = 1,
                                                             .kv_heads = kKvHeads,
                                                             .head_dim = kDim,
                                                             .window = window,
                                                             .max_step = chunk,
                                                             .sinks = sinks,
                                                             .type = type}
                                    : tformer::KVCacheConfig{.layers = layers,
                                                             .kv_heads = kKvHeads,
                                                             .head_dim = kDim,
                                                             .capacity = length,
                                                             .type = type});
  for (int t0 = 0; t0 < length; t0 += chunk) {
    const int n = std::min(chunk, length - t0);
    for (int l = 0; l < layers; ++l) {
      const unsigned seed = unsigned(t0 + 1 + 2 * l * length);  // layer 0: as before layers
      const auto k = bench::random_floats(std::size_t(n) * kKvHeads * kDim, 1.0f, seed);
      const auto v = bench::random_floats(k.size(), 1.0f, seed + 1);
      cache.write(l, 0, {k.data(), n, kKvHeads, kDim}, {v.data(), n, kKvHeads, kDim});
    }
    cache.advance(0, n);
  }
  return cache;
}

template <class Bias = tformer::NoBias>
void decode(benchmark::State& state, int length, const Bias& bias = {},
            tformer::KVType type = tformer::KVType::f32) {
  const auto cache = filled_cache(length, 0, 0, type);
  const auto q = bench::random_floats(std::size_t(kQHeads) * kDim, 0.1f, 3);
  std::vector<float> o(q.size());
  tformer::AttentionWorkspace ws(kQHeads / kKvHeads, kDim);
  const auto kv = cache.view(0, 0, length);
  for (auto _ : state) {
    tformer::attention({q.data(), 1, kQHeads, kDim}, kv, tformer::Positions::offset(length - 1),
                       {o.data(), 1, kQHeads, kDim}, ws, {}, bias);
    benchmark::ClobberMemory();
  }
  // The cache holds exactly the keys and values read (and q8's row scales).
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * std::int64_t(cache.bytes()));
  bench::set_flops(state, 4.0 * kQHeads * kDim * length);
  // Memory: the cache, the attention workspace, and the process's peak resident set (run one
  // context alone, e.g. --benchmark_filter=L32768, for a peak that belongs to it).
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  state.counters["cache_MiB"] = double(cache.bytes()) / (1 << 20);
  state.counters["workspace_KiB"] =
      double((kQHeads / kKvHeads) * (kDim + tformer::AttentionWorkspace::tile) * 4) / 1024;
  state.counters["peak_rss_MiB"] = double(usage.ru_maxrss) / 1024;
}

// Decode as a decoder step reads the cache: each iteration attends over every one of `layers`
// layers' K and V in turn, so no layer's rows are still in L3 when it is read again (one layer
// of 32 MiB repeated, attention_decode at L 4096, stays partly in a 32 MiB L3).
void decode_layers(benchmark::State& state, int length, int layers) {
  const auto cache = filled_cache(length, 0, 0, tformer::KVType::f32, layers);
  const auto q = bench::random_floats(std::size_t(kQHeads) * kDim, 0.1f, 3);
  std::vector<float> o(q.size());
  tformer::AttentionWorkspace ws(kQHeads / kKvHeads, kDim);
  std::vector<tformer::KVView> views;
  for (int l = 0; l < layers; ++l) views.push_back(cache.view(l, 0, length));
  for (auto _ : state) {
    for (const tformer::KVView& kv : views)
      tformer::attention({q.data(), 1, kQHeads, kDim}, kv, tformer::Positions::offset(length - 1),
                         {o.data(), 1, kQHeads, kDim}, ws);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          std::int64_t(cache.bytes()));
  bench::set_flops(state, 4.0 * kQHeads * kDim * length * layers);
  state.counters["cache_MiB"] = double(cache.bytes()) / (1 << 20);
}

// Decode split as an engine would split it over threads: parts of (KV head g, 512 keys), each
// attention_lse over its keys (a part() view, whose prefetch reads on into the next part) into
// its own (o, lse), each thread its share of the parts in order with its own workspace; then each
// head's parts merged in key order (merge_attention).
void split_decode(benchmark::State& state, int length, int threads) {
  constexpr int split = 512, group = kQHeads / kKvHeads;
  const auto cache = filled_cache(length);
  const auto q = bench::random_floats(std::size_t(kQHeads) * kDim, 0.1f, 3);
  const auto kv = cache.view(0, 0, length);
  const int chunks = (length + split - 1) / split, parts = kKvHeads * chunks;
  std::vector<float> o(std::size_t(parts) * group * kDim), lse(std::size_t(parts) * group);
  tformer::ThreadTeam team(threads);
  std::vector<tformer::AttentionWorkspace> ws;
  for (int t = 0; t < threads; ++t) ws.emplace_back(group, kDim);
  const auto o_of = [&](int p) {
    return tformer::HeadsView<float>{o.data() + std::size_t(p) * group * kDim, 1, group, kDim};
  };
  const auto lse_of = [&](int p) {
    return tformer::MatrixView<float>{lse.data() + std::size_t(p) * group, 1, group};
  };
  for (auto _ : state) {
    team.parallel_for(0, threads, [&](tformer::index t) {
      for (int p = int(t) * parts / threads; p < int(t + 1) * parts / threads; ++p) {
        const int g = p / chunks, first = p % chunks * split;
        const tformer::KVView part = kv.head(g).part(first, std::min(split, length - first));
        tformer::attention_lse({q.data() + std::size_t(g) * group * kDim, 1, group, kDim}, part,
                               tformer::Positions::offset(part.length - 1), o_of(p), lse_of(p),
                               ws[std::size_t(t)]);
      }
    });
    team.parallel_for(0, kKvHeads, [&](tformer::index g) {
      const int first = int(g) * chunks;
      for (int c = 1; c < chunks; ++c)
        tformer::merge_attention(o_of(first), lse_of(first), o_of(first + c), lse_of(first + c),
                                 o_of(first), lse_of(first));
    });
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          std::int64_t(cache.bytes()));
  bench::set_flops(state, 4.0 * kQHeads * kDim * length);
  // Untimed: the merged result against attention() over the whole view (float rounding apart).
  std::vector<float> whole(q.size());
  tformer::attention({q.data(), 1, kQHeads, kDim}, kv, tformer::Positions::offset(length - 1),
                     {whole.data(), 1, kQHeads, kDim}, ws[0]);
  double diff = 0;
  for (int g = 0; g < kKvHeads; ++g)
    for (int i = 0; i < group * kDim; ++i)
      diff =
          std::max(diff, double(std::abs(o_of(g * chunks).data()[i] -
                                         whole[std::size_t(g) * group * kDim + std::size_t(i)])));
  state.counters["max_diff_vs_whole"] = diff;
}

// A decode step and a read of the same bytes in every iteration, in turns (which runs first
// alternates), so that both see the same memory bandwidth: on a shared host it drifts by up to
// 2× within minutes, more than the differences being measured. of_read = median over the
// iterations of read time / decode time (q1, q3: its quartiles); the reported time is the
// decode's. Decode: attention() on the calling thread (threads 1), else attention() on a
// ThreadTeam (its KV-head tasks taken from a shared counter), over `layers` layers in turn.
// Read: read_sum over each layer's K and V rows themselves, each thread its share of a layer
// (kv heads [t·8/n, (t+1)·8/n)), a fork-join per layer (inline on one thread).
void decode_vs_read(benchmark::State& state, int length, int layers, int threads) {
  const auto cache = filled_cache(length, 0, 0, tformer::KVType::f32, layers);
  const auto q = bench::random_floats(std::size_t(kQHeads) * kDim, 0.1f, 3);
  std::vector<float> o(q.size());
  const tformer::ThreadTeam team(threads);
  std::vector<tformer::AttentionWorkspace> ws;
  for (int t = 0; t < threads; ++t) ws.emplace_back(kQHeads / kKvHeads, kDim);
  const tformer::HeadsView<const float> qv(q.data(), 1, kQHeads, kDim);
  const tformer::HeadsView<float> ov(o.data(), 1, kQHeads, kDim);
  std::vector<tformer::KVView> views;
  for (int l = 0; l < layers; ++l) views.push_back(cache.view(l, 0, length));
  const std::size_t head_floats = std::size_t(length) * kDim;  // capacity = length: rows adjoin
  std::vector<float> totals(std::size_t(threads) * 16);         // a cache line each
  const auto decode_step = [&] {
    for (const tformer::KVView& kv : views)
      if (threads == 1)
        tformer::attention(qv, kv, tformer::Positions::offset(length - 1), ov, ws[0]);
      else
        tformer::attention(team, qv, kv, tformer::Positions::offset(length - 1), ov,
                           std::span(ws));
    benchmark::ClobberMemory();
  };
  const auto read_step = [&] {
    for (const tformer::KVView& kv : views)
      team.parallel_for(0, threads, [&](tformer::index t) {
        const std::size_t g0 = std::size_t(t) * kKvHeads / std::size_t(threads),
                          g1 = std::size_t(t + 1) * kKvHeads / std::size_t(threads);
        const auto* keys = static_cast<const float*>(kv.keys) + g0 * head_floats;
        const auto* values = static_cast<const float*>(kv.values) + g0 * head_floats;
        totals[std::size_t(t) * 16] = bench::read_sum(keys, (g1 - g0) * head_floats) +
                                      bench::read_sum(values, (g1 - g0) * head_floats);
      });
    benchmark::DoNotOptimize(totals.data());
  };
  const auto seconds = [](auto&& step) {
    const auto start = std::chrono::steady_clock::now();
    step();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  std::vector<double> ratios;
  for (auto _ : state) {
    double read = 0, decode = 0;
    if (ratios.size() % 2 == 0) {
      read = seconds(read_step);
      decode = seconds(decode_step);
    } else {
      decode = seconds(decode_step);
      read = seconds(read_step);
    }
    state.SetIterationTime(decode);
    ratios.push_back(read / decode);
  }
  if (ratios.empty()) return;
  std::sort(ratios.begin(), ratios.end());
  const auto at = [&](double f) { return ratios[std::size_t(f * double(ratios.size() - 1))]; };
  state.counters["of_read"] = at(0.5);
  state.counters["of_read_q1"] = at(0.25);
  state.counters["of_read_q3"] = at(0.75);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          std::int64_t(cache.bytes()));
  bench::set_flops(state, 4.0 * kQHeads * kDim * length * layers);
}

// Decode at position length − 1 with a window of `window` keys and `sinks` attention sinks
// (in-cache positions, their own query rows), over a ring that has been written `length`
// positions: memory and time stay those of sinks + window, whatever the length.
void hybrid_decode(benchmark::State& state, int length, int window, int sinks) {
  const auto ring = filled_cache(length, window, sinks);
  const auto q = bench::random_floats(std::size_t(kQHeads) * kDim, 0.1f, 3);
  const auto sq = bench::random_floats(q.size(), 0.1f, 4);
  std::vector<float> o(q.size());
  tformer::AttentionWorkspace ws(kQHeads / kKvHeads, kDim);
  tformer::AttentionOptions opt;
  opt.window = window;
  opt.sinks = sinks;
  opt.sink_positions = tformer::SinkPositions::InCache;
  if (sinks > 0) opt.sink_q = {sq.data(), 1, kQHeads, kDim};
  const auto kv = ring.view(0, 0, length);
  for (auto _ : state) {
    tformer::attention({q.data(), 1, kQHeads, kDim}, kv, tformer::Positions::offset(length - 1),
                       {o.data(), 1, kQHeads, kDim}, ws, opt);
    benchmark::ClobberMemory();
  }
  const std::int64_t keys = std::min(length, window + sinks);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 2 * kKvHeads * keys *
                          kDim * 4);
  bench::set_flops(state, 4.0 * kQHeads * kDim * double(keys));
  state.counters["cache_MiB"] = double(ring.bytes()) / (1 << 20);
}

// Cross-attention over 196 encoder tokens (seed 003's vision tokens), TrafficVLM's 8 query /
// 2 KV heads of 64, for one decode token and a 32-token prompt.
void cross(benchmark::State& state, int tokens) {
  constexpr int S = 196, Hq = 8, Hkv = 2, D = 64;
  tformer::CrossKVCache cache({.layers = 1, .kv_heads = Hkv, .head_dim = D, .capacity = S});
  const auto k = bench::random_floats(std::size_t(S) * Hkv * D, 1.0f, 5);
  cache.set(0, 0, {k.data(), S, Hkv, D}, {k.data(), S, Hkv, D});
  const auto q = bench::random_floats(std::size_t(tokens) * Hq * D, 0.1f, 6);
  std::vector<float> o(q.size());
  tformer::AttentionWorkspace ws(Hq / Hkv, D);
  tformer::AttentionOptions opt;
  opt.causal = false;
  opt.key_valid = cache.key_valid(0);
  for (auto _ : state) {
    tformer::attention({q.data(), tokens, Hq, D}, cache.view(0, 0), tformer::Positions::offset(0),
                       {o.data(), tokens, Hq, D}, ws, opt);
    benchmark::ClobberMemory();
  }
  bench::set_flops(state, 4.0 * Hq * D * S * tokens);
}

// threads 0: attention() on the calling thread; else attention() on a ThreadTeam of `threads`,
// one workspace each.
void prefill(benchmark::State& state, int tokens, tformer::KVType type, int threads) {
  const auto cache = filled_cache(tokens, 0, 0, type);
  const auto q = bench::random_floats(std::size_t(tokens) * kQHeads * kDim, 0.1f, 3);
  std::vector<float> o(q.size());
  const tformer::ThreadTeam team(std::max(threads, 1));
  std::vector<tformer::AttentionWorkspace> ws;
  for (int w = 0; w < std::max(threads, 1); ++w) ws.emplace_back(kQHeads / kKvHeads, kDim);
  const auto kv = cache.view(0, 0, tokens);
  const tformer::HeadsView<const float> qv(q.data(), tokens, kQHeads, kDim);
  const tformer::HeadsView<float> ov(o.data(), tokens, kQHeads, kDim);
  for (auto _ : state) {
    if (threads == 0)
      tformer::attention(qv, kv, tformer::Positions::offset(0), ov, ws[0]);
    else
      tformer::attention(team, qv, kv, tformer::Positions::offset(0), ov, std::span(ws));
    benchmark::ClobberMemory();
  }
  bench::set_flops(state, 4.0 * kQHeads * kDim * (double(tokens) * (tokens + 1) / 2));
}

}  // namespace

int main(int argc, char** argv) {
  std::set<std::size_t> copies;
  for (int length : {512, 4096, 16384, 32768}) {
    benchmark::RegisterBenchmark(("attention_decode/32x8x128/L" + std::to_string(length)).c_str(),
                                 decode<tformer::NoBias>, length, tformer::NoBias{},
                                 tformer::KVType::f32)
        ->Unit(benchmark::kMicrosecond);
    copies.insert(std::size_t(2) * kKvHeads * length * kDim * 4 / 1024);
  }
  // L 4096 over 4 layers read in turn (128 MiB a step, beside read/131072): from DRAM.
  benchmark::RegisterBenchmark("attention_decode_layers/32x8x128/L4096/layers:4", decode_layers,
                               4096, 4)
      ->Unit(benchmark::kMicrosecond);
  copies.insert(std::size_t(4) * 2 * kKvHeads * 4096 * kDim * 4 / 1024);
  // The same over 16-bit caches (half the bytes) and q8 (a quarter, plus a float per row).
  for (const auto type : {tformer::KVType::f16, tformer::KVType::bf16, tformer::KVType::q8})
    for (int length : {512, 4096, 16384, 32768}) {
      benchmark::RegisterBenchmark(("attention_decode_" + std::string(tformer::kv_type_name(type)) +
                                    "/32x8x128/L" + std::to_string(length))
                                       .c_str(),
                                   decode<tformer::NoBias>, length, tformer::NoBias{}, type)
          ->Unit(benchmark::kMicrosecond);
      const std::size_t row = std::size_t(kDim * tformer::kv_type_bytes(type)) +
                              (type == tformer::KVType::q8 ? sizeof(float) : 0);
      copies.insert(std::size_t(2) * kKvHeads * length * row / 1024);
    }
  // Split-K decode on 1 and 2 threads, beside the read ceiling of the same bytes on as many.
  for (int threads : {1, 2})
    for (int length : {4096, 16384, 32768}) {
      const std::string tail =
          "/L" + std::to_string(length) + "/threads:" + std::to_string(threads);
      benchmark::RegisterBenchmark(("attention_decode_split/32x8x128" + tail).c_str(), split_decode,
                                   length, threads)
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
      const std::size_t bytes = std::size_t(2) * kKvHeads * length * kDim * 4;
      benchmark::RegisterBenchmark(
          ("read_threads/" + std::to_string(bytes / 1024) + "/threads:" + std::to_string(threads))
              .c_str(),
          [bytes, threads](benchmark::State& st) {
            const tformer::ThreadTeam team(threads);
            bench::read_bandwidth_threads(st, bytes, team);
          })
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
    }
  // Decode and the read of its own bytes timed in turns in each iteration (of_read: the median
  // of their per-iteration ratio): L 4096 over 4 layers as a decoder step reads it, 16k and 32k.
  for (int threads : {1, 2})
    for (const auto& [length, layers] :
         {std::pair{4096, 4}, std::pair{16384, 1}, std::pair{32768, 1}})
      benchmark::RegisterBenchmark(("attention_decode_vs_read/32x8x128/L" + std::to_string(length) +
                                    "/layers:" + std::to_string(layers) +
                                    "/threads:" + std::to_string(threads))
                                       .c_str(),
                                   decode_vs_read, length, layers, threads)
          ->UseManualTime()
          ->MinTime(2.0)
          ->Unit(benchmark::kMicrosecond);
  // Seed 001's hybrid local + global decode at 32k (and a window alone), beside global at 32k.
  benchmark::RegisterBenchmark("attention_decode_hybrid/32x8x128/L32768/S4W4096", hybrid_decode,
                               32768, 4096, 4)
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("attention_decode_hybrid/32x8x128/L32768/S0W4096", hybrid_decode,
                               32768, 4096, 0)
      ->Unit(benchmark::kMicrosecond);
  copies.insert(std::size_t(2) * kKvHeads * (4096 + 4) * kDim * 4 / 1024);
  // Seed 001's relative position biases through the bias hook, beside the plain decode.
  static const auto slopes = tformer::alibi_slopes(kQHeads);
  static const auto t5_table = bench::random_floats(32 * kQHeads, 1.0f, 9);
  benchmark::RegisterBenchmark("attention_decode_alibi/32x8x128/L4096",
                               decode<tformer::AlibiBias>, 4096, tformer::AlibiBias{slopes},
                               tformer::KVType::f32)
      ->Unit(benchmark::kMicrosecond);
  static const tformer::T5Bias t5({t5_table.data(), 32, kQHeads}, 128, false);
  benchmark::RegisterBenchmark("attention_decode_t5/32x8x128/L4096", decode<tformer::T5Bias>, 4096,
                               t5, tformer::KVType::f32)
      ->Unit(benchmark::kMicrosecond);
  for (int tokens : {128, 512, 2048})  // 128: a short prompt, where the causal diagonal weighs most
    benchmark::RegisterBenchmark(("attention_prefill/32x8x128/T" + std::to_string(tokens)).c_str(),
                                 prefill, tokens, tformer::KVType::f32, 0)
        ->Unit(benchmark::kMillisecond);
  // Prefill on 1 and 2 threads (the executor overload of attention()), beside the FMA peak of as
  // many threads.
  for (int threads : {1, 2}) {
    const std::string tail = "/threads:" + std::to_string(threads);
    for (int tokens : {128, 512, 2048})
      benchmark::RegisterBenchmark(
          ("attention_prefill_threads/32x8x128/T" + std::to_string(tokens) + tail).c_str(), prefill,
          tokens, tformer::KVType::f32, threads)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("fma_peak_threads" + tail).c_str(), [threads](
                                                                          benchmark::State& st) {
      const tformer::ThreadTeam team(threads);
      bench::fma_peak_threads(st, team);
    })->UseRealTime();
  }
  for (const auto type : {tformer::KVType::f16, tformer::KVType::bf16, tformer::KVType::q8})
    benchmark::RegisterBenchmark(
        ("attention_prefill_" + std::string(tformer::kv_type_name(type)) + "/32x8x128/T512")
            .c_str(),
        prefill, 512, type, 0)
        ->Unit(benchmark::kMillisecond);
  for (int tokens : {1, 32})
    benchmark::RegisterBenchmark(("attention_cross/8x2x64/S196/T" + std::to_string(tokens)).c_str(),
                                 cross, tokens)
        ->Unit(benchmark::kMicrosecond);
  for (std::size_t kib : copies) {
    bench::register_copy(kib);
    bench::register_read(kib);
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
