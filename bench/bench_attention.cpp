// Attention decode (one query token, 32 query / 8 KV heads, head_dim 128) over contexts of 512,
// 4096, 16384 and 32768 positions, and causal prefill (T = L = 512, 2048).
//   decode: bytes = the K and V rows read (2 · 8 · L · 128 · 4); beside each, copy/<KiB> of the
//           same bytes in the same run.
//   prefill: FLOPS = 4 · Hq · D · (causal pairs), pairs = T·(T+1)/2.
#include <benchmark/benchmark.h>

#include <set>
#include <string>
#include <vector>

#include "ceilings.hpp"
#include "tformer/nn/attention.hpp"

namespace {

constexpr int kQHeads = 32, kKvHeads = 8, kDim = 128;

tformer::KVCache filled_cache(int length) {
  tformer::KVCache cache({.layers = 1, .kv_heads = kKvHeads, .head_dim = kDim, .capacity = length});
  const auto k = bench::random_floats(std::size_t(length) * kKvHeads * kDim, 1.0f, 1);
  const auto v = bench::random_floats(k.size(), 1.0f, 2);
  cache.write(0, 0, {k.data(), length, kKvHeads, kDim}, {v.data(), length, kKvHeads, kDim});
  cache.advance(0, length);
  return cache;
}

void decode(benchmark::State& state, int length) {
  const auto cache = filled_cache(length);
  const auto q = bench::random_floats(std::size_t(kQHeads) * kDim, 0.1f, 3);
  std::vector<float> o(q.size());
  tformer::AttentionWorkspace ws(kQHeads / kKvHeads, kDim);
  const auto kv = cache.view(0, 0, length);
  for (auto _ : state) {
    tformer::attention({q.data(), 1, kQHeads, kDim}, kv, tformer::Positions::offset(length - 1),
                       {o.data(), 1, kQHeads, kDim}, ws);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 2 * kKvHeads *
                          std::int64_t(length) * kDim * 4);
  bench::set_flops(state, 4.0 * kQHeads * kDim * length);
}

void prefill(benchmark::State& state, int tokens) {
  const auto cache = filled_cache(tokens);
  const auto q = bench::random_floats(std::size_t(tokens) * kQHeads * kDim, 0.1f, 3);
  std::vector<float> o(q.size());
  tformer::AttentionWorkspace ws(kQHeads / kKvHeads, kDim);
  const auto kv = cache.view(0, 0, tokens);
  for (auto _ : state) {
    tformer::attention({q.data(), tokens, kQHeads, kDim}, kv, tformer::Positions::offset(0),
                       {o.data(), tokens, kQHeads, kDim}, ws);
    benchmark::ClobberMemory();
  }
  bench::set_flops(state, 4.0 * kQHeads * kDim * (double(tokens) * (tokens + 1) / 2));
}

}  // namespace

int main(int argc, char** argv) {
  std::set<std::size_t> copies;
  for (int length : {512, 4096, 16384, 32768}) {
    benchmark::RegisterBenchmark(("attention_decode/32x8x128/L" + std::to_string(length)).c_str(),
                                 decode, length)
        ->Unit(benchmark::kMicrosecond);
    copies.insert(std::size_t(2) * kKvHeads * length * kDim * 4 / 1024);
  }
  for (int tokens : {512, 2048})
    benchmark::RegisterBenchmark(("attention_prefill/32x8x128/T" + std::to_string(tokens)).c_str(),
                                 prefill, tokens)
        ->Unit(benchmark::kMillisecond);
  for (std::size_t kib : copies) bench::register_copy(kib);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
