// The samplers (tformer/model/sampling.hpp) at Llama 2's and Llama 3's vocabularies, against
// greedy (the floor: one read of the logits) and against what this library did before: a
// scalar greedy loop and a top-p sampler that sorted the whole vocabulary (the baselines below).
//
// Logits: "peaked" is a model's usual shape, a Gaussian body (σ = 2) with a head of 8 tokens
// 6–14 above it, so a few tokens hold most of the mass; "flat" is a Gaussian of σ = 1, where
// top-p 0.9 keeps thousands of tokens (the sampler's worst realistic case).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "tformer/model/sampling.hpp"

namespace {

using tformer::Sampler;

std::vector<float> logits(std::int64_t vocab, bool peaked) {
  std::mt19937_64 rng(42);
  std::normal_distribution<float> body(0.0f, peaked ? 2.0f : 1.0f);
  std::vector<float> l(static_cast<std::size_t>(vocab));
  for (float& x : l) x = body(rng);
  if (peaked)
    for (int i = 0; i < 8; ++i) l[rng() % l.size()] += 6.0f + float(i);
  return l;
}

// The sampler of this library before it gathered by threshold: sort the whole vocabulary, exp
// in double, the shortest prefix reaching p.
std::int32_t baseline_top_p(const std::vector<float>& l, float p, tformer::Rng& rng,
                            std::vector<std::int32_t>& order, std::vector<double>& w) {
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
    return l[std::size_t(a)] > l[std::size_t(b)] || (l[std::size_t(a)] == l[std::size_t(b)] && a < b);
  });
  const double m = l[std::size_t(order[0])];
  double total = 0;
  for (std::size_t j = 0; j < l.size(); ++j) total += (w[j] = std::exp(double(l[std::size_t(order[j])]) - m));
  double mass = 0;
  std::size_t j = 0;
  while (j < l.size() && mass < p * total) mass += w[j++];
  const double r = rng.uniform() * mass;
  double acc = 0;
  for (std::size_t i = 0; i < j; ++i)
    if (r < (acc += w[i])) return order[i];
  return order[0];
}

void run(benchmark::State& state, const Sampler& s, bool peaked, bool logprob = false) {
  const std::int64_t vocab = state.range(0);
  const std::vector<float> l = logits(vocab, peaked);
  tformer::SamplerWorkspace ws(vocab);
  tformer::Rng rng(1);
  const std::vector<std::int32_t> history = {1, 5, 9, 100, 2000, 5, 31999};
  for (auto _ : state) {
    if (logprob)
      benchmark::DoNotOptimize(tformer::sample_with_logprob(l, s, rng, ws, history));
    else
      benchmark::DoNotOptimize(tformer::sample(l, s, rng, ws, history));
  }
  state.SetItemsProcessed(state.iterations() * vocab);
  state.SetLabel(peaked ? "peaked" : "flat");
}

Sampler combined() {
  Sampler s = Sampler::with_top_k(40, 0.8f);
  s.top_p = 0.95f;
  s.min_p = 0.05f;
  s.repetition_penalty = 1.1f;
  return s;
}

void BM_greedy(benchmark::State& st) { run(st, Sampler::greedy(), true); }
void BM_temperature(benchmark::State& st) { run(st, Sampler::with_temperature(0.8f), true); }
void BM_top_k40(benchmark::State& st) { run(st, Sampler::with_top_k(40, 0.8f), true); }
void BM_top_p09(benchmark::State& st) { run(st, Sampler::with_top_p(0.9f, 0.8f), true); }
void BM_min_p005(benchmark::State& st) { run(st, Sampler::with_min_p(0.05f, 0.8f), true); }
void BM_combined_penalised(benchmark::State& st) { run(st, combined(), true); }
void BM_greedy_logprob(benchmark::State& st) { run(st, Sampler::greedy(), true, true); }
void BM_top_p09_flat(benchmark::State& st) { run(st, Sampler::with_top_p(0.9f, 1.0f), false); }
// The greedy sampler before it was vectorised: one comparison per token, ties to the lower id.
void BM_baseline_greedy(benchmark::State& state) {
  const std::vector<float> l = logits(state.range(0), true);
  for (auto _ : state) {
    std::int32_t best = 0;
    for (std::int32_t i = 1; i < std::int32_t(l.size()); ++i)
      if (l[std::size_t(i)] > l[std::size_t(best)]) best = i;
    benchmark::DoNotOptimize(best);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.SetLabel("peaked");
}
void BM_baseline_top_p09(benchmark::State& state) {
  const std::vector<float> l = logits(state.range(0), true);
  std::vector<std::int32_t> order(l.size());
  std::vector<double> w(l.size());
  tformer::Rng rng(1);
  for (auto _ : state) benchmark::DoNotOptimize(baseline_top_p(l, 0.9f, rng, order, w));
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.SetLabel("peaked");
}

}  // namespace

#define VOCABS ->Arg(32000)->Arg(128256)
BENCHMARK(BM_greedy) VOCABS;
BENCHMARK(BM_temperature) VOCABS;
BENCHMARK(BM_top_k40) VOCABS;
BENCHMARK(BM_top_p09) VOCABS;
BENCHMARK(BM_min_p005) VOCABS;
BENCHMARK(BM_combined_penalised) VOCABS;
BENCHMARK(BM_greedy_logprob) VOCABS;
BENCHMARK(BM_top_p09_flat) VOCABS;
BENCHMARK(BM_baseline_greedy) VOCABS;
BENCHMARK(BM_baseline_top_p09) VOCABS;

BENCHMARK_MAIN();
