// The machine's ceilings: copy bandwidth by working-set size, single-thread fp32 FMA peak of the
// compiled instruction set, and Eigen's single-thread GEMM at the shapes the kernels use.
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <array>

#include "ceilings.hpp"
#include "tformer/core/simd.hpp"

namespace {

// 12 independent FMA chains: enough to cover the FMA latency (4-5 cycles) on two FMA ports.
void fma_peak(benchmark::State& state) {
  constexpr int chains = 12;
  constexpr int steps = 1000;
#if TFORMER_HAS_SIMD
  using B = tformer::simd::batch;
  std::array<B, chains> acc;
  for (int c = 0; c < chains; ++c) acc[c] = B(1.0f + 0.01f * c);
  const B a(0.999999f), b(1e-7f);
  for (auto _ : state) {
    for (int i = 0; i < steps; ++i)
      for (int c = 0; c < chains; ++c) acc[c] = xsimd::fma(acc[c], a, b);
    for (auto& x : acc) benchmark::DoNotOptimize(x);
  }
  constexpr double lanes = B::size;
#else
  std::array<float, chains> acc;
  for (int c = 0; c < chains; ++c) acc[c] = 1.0f + 0.01f * c;
  for (auto _ : state) {
    for (int i = 0; i < steps; ++i)
      for (int c = 0; c < chains; ++c) acc[c] = acc[c] * 0.999999f + 1e-7f;
    for (auto& x : acc) benchmark::DoNotOptimize(x);
  }
  constexpr double lanes = 1;
#endif
  bench::set_flops(state, 2.0 * lanes * chains * steps);
  state.SetLabel(tformer::simd::arch_name);
}

// C[M, N] = A[M, K] · W[N, K]ᵀ, row-major, as a linear layer computes it.
void gemm(benchmark::State& state, Eigen::Index m, Eigen::Index n, Eigen::Index k) {
  using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  RowMajor a = RowMajor::Random(m, k), w = RowMajor::Random(n, k), c(m, n);
  for (auto _ : state) {
    c.noalias() = a * w.transpose();
    benchmark::DoNotOptimize(c.data());
  }
  bench::set_flops(state, 2.0 * m * n * k);
}

}  // namespace

BENCHMARK(fma_peak);

int main(int argc, char** argv) {
  for (std::size_t kib : {32u, 1024u, 16384u, 262144u}) bench::register_copy(kib);
  struct Shape {
    Eigen::Index m, n, k;
  };
  const Shape shapes[] = {
      {1, 4096, 4096},    // decode GEMV
      {64, 2048, 512},    // TrafficVLM FFN gate/up, 64 tokens
      {64, 512, 2048},    // TrafficVLM FFN down
      {64, 11008, 4096},  // Llama-7B FFN gate/up, 64 tokens
      {512, 512, 512},   {2048, 2048, 2048},
  };
  for (const Shape& s : shapes) {
    const std::string name =
        "gemm/" + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k);
    benchmark::RegisterBenchmark(name.c_str(), [s](benchmark::State& st) {
      gemm(st, s.m, s.n, s.k);
    })->Unit(benchmark::kMillisecond);
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
