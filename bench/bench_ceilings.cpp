// The machine's ceilings: copy bandwidth by working-set size, single-thread fp32 FMA peak of the
// compiled instruction set, and Eigen's single-thread GEMM at the shapes the kernels use.
#include <benchmark/benchmark.h>

#include "ceilings.hpp"
#include "tformer/core/simd.hpp"

int main(int argc, char** argv) {
  bench::register_fma_peak();
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
