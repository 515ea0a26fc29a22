// RMSNorm over [T, 4096] (T = 1, 64, 512): plain, fused residual, and per-head q/k-norm over
// [T, 32, 128] and [T, 64, 64], each beside memcpy of its bytes in the same run.
//
// Bytes (read + write): rmsnorm reads x and writes y (2·T·H·4); rmsnorm_residual reads x and the
// residual and writes x and y (4·T·H·4); rmsnorm_heads reads and writes x in place (2·T·H·4).
// The weight (16 KiB) is not counted.
#include <benchmark/benchmark.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include "ceilings.hpp"
#include "tformer/nn/rmsnorm.hpp"

namespace {

constexpr int kHidden = 4096;

void set_bytes(benchmark::State& state, double bytes) {
  state.SetBytesProcessed(
      static_cast<std::int64_t>(bytes * static_cast<double>(state.iterations())));
}

void norm(benchmark::State& state, int tokens) {
  const auto x = bench::random_floats(std::size_t(tokens) * kHidden),
             w = bench::random_floats(kHidden);
  std::vector<float> y(x.size());
  for (auto _ : state) {
    tformer::rmsnorm({x.data(), tokens, kHidden}, w, 1e-6f, {y.data(), tokens, kHidden});
    benchmark::ClobberMemory();
  }
  set_bytes(state, 2.0 * tokens * kHidden * 4);
}

void norm_residual(benchmark::State& state, int tokens) {
  auto x = bench::random_floats(std::size_t(tokens) * kHidden);
  const auto r = bench::random_floats(x.size()), w = bench::random_floats(kHidden);
  std::vector<float> y(x.size());
  const float scale = 1.0f / 1024;  // keep x bounded while the residual is added repeatedly
  std::vector<float> small(r.size());
  for (std::size_t i = 0; i < r.size(); ++i) small[i] = r[i] * scale;
  for (auto _ : state) {
    tformer::rmsnorm_residual({x.data(), tokens, kHidden}, {small.data(), tokens, kHidden}, w,
                              1e-6f, {y.data(), tokens, kHidden});
    benchmark::ClobberMemory();
  }
  set_bytes(state, 4.0 * tokens * kHidden * 4);
}

void norm_heads(benchmark::State& state, int tokens, int head_dim) {
  auto x = bench::random_floats(std::size_t(tokens) * kHidden);
  const auto w = std::vector<float>(std::size_t(head_dim), 1.0f);
  const int heads = kHidden / head_dim;
  for (auto _ : state) {
    tformer::rmsnorm_heads(tformer::HeadsView<float>(x.data(), tokens, heads, head_dim), w, 1e-6f);
    benchmark::ClobberMemory();
  }
  set_bytes(state, 2.0 * tokens * kHidden * 4);
}

}  // namespace

int main(int argc, char** argv) {
  std::set<std::size_t> copies;
  for (int t : {1, 64, 512}) {
    const std::string shape = "/H4096/T" + std::to_string(t);
    benchmark::RegisterBenchmark(("rmsnorm" + shape).c_str(), norm, t)
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("rmsnorm_residual" + shape).c_str(), norm_residual, t)
        ->Unit(benchmark::kMicrosecond);
    for (int d : {128, 64})  // q/k-norm rows: Qwen3 (128), smaller models (64)
      benchmark::RegisterBenchmark(
          ("rmsnorm_heads/" + std::to_string(kHidden / d) + "x" + std::to_string(d) + "/T" +
           std::to_string(t))
              .c_str(),
          norm_heads, t, d)
          ->Unit(benchmark::kMicrosecond);
    copies.insert(std::size_t(t) * kHidden * 4 / 1024);      // rmsnorm: x → y
    copies.insert(std::size_t(t) * kHidden * 4 * 2 / 1024);  // residual form: 2 in, 2 out
  }
  for (std::size_t kib : copies) bench::register_copy(kib);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
