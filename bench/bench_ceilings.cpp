// The machine's ceilings: copy bandwidth by working-set size, single-thread fp32 FMA peak of the
// compiled instruction set, and Eigen's single-thread GEMM at the shapes the kernels use.
#include <benchmark/benchmark.h>

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
      for (int c = 0; c < chains; ++c) acc[c] = tformer::xsimd_compat::fma(acc[c], a, b);
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

}  // namespace

BENCHMARK(fma_peak);

int main(int argc, char** argv) {
  for (std::size_t kib : {32u, 1024u, 16384u, 262144u}) {
    bench::register_copy(kib);
    bench::register_read(kib);
  }
  bench::register_gemm(1, 4096, 4096);    // decode GEMV
  bench::register_gemm(64, 2048, 512);    // TrafficVLM FFN gate/up, 64 tokens
  bench::register_gemm(64, 512, 2048);    // TrafficVLM FFN down
  bench::register_gemm(64, 11008, 4096);  // Llama-7B FFN gate/up, 64 tokens
  bench::register_gemm(64, 4096, 11008);  // Llama-7B FFN down
  bench::register_gemm(512, 512, 512);
  bench::register_gemm(2048, 2048, 2048);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
