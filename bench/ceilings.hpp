// Machine ceilings that every benchmark family compares against, measured the same way in the
// same run: copy and read-only bandwidth, FMA peak, Eigen GEMM. bench_ceilings registers all of them; a kernel
// family's program may register the copy of its own working-set size beside its kernels.
//
// Byte convention (all programs): bytes_per_second counts bytes read plus bytes written, so
// copying N bytes moves 2N, and an in-place kernel over N bytes also moves 2N.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tformer/core/eigen.hpp"
#include "tformer/core/memory.hpp"
#include "tformer/core/simd.hpp"
#include "tformer/core/xsimd_compat.hpp"

namespace bench {

// n normal(0, stddev) floats from a fixed seed: every program measures the same data.
inline std::vector<float> random_floats(std::size_t n, float stddev = 1.0f, unsigned seed = 42) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// memcpy of `bytes` bytes between two 64-byte aligned buffers.
inline void copy_bandwidth(benchmark::State& state, std::size_t bytes) {
  tformer::AlignedBuffer<char> src(bytes), dst(bytes);
  std::memset(src.data(), 1, bytes);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), bytes);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 2 *
                          static_cast<std::int64_t>(bytes));
}

// Registers "copy/<KiB>" for a buffer of `kib` KiB.
inline void register_copy(std::size_t kib) {
  benchmark::RegisterBenchmark(("copy/" + std::to_string(kib)).c_str(), [kib](benchmark::State& s) {
    copy_bandwidth(s, kib * 1024);
  })->Unit(benchmark::kMicrosecond);
}

// The sum of x[0, n): a read of every value, 8 registers in flight.
inline float read_sum(const float* x, std::size_t n) {
  std::size_t i = 0;
  float total = 0.0f;
#if TFORMER_HAS_SIMD
  using B = tformer::simd::batch;
  constexpr std::size_t W = B::size, R = 8;
  B acc[R];
  for (auto& a : acc) a = B(0.0f);
  for (; i + R * W <= n; i += R * W)
    for (std::size_t r = 0; r < R; ++r) acc[r] += B::load_unaligned(x + i + r * W);
  for (std::size_t r = 1; r < R; ++r) acc[0] += acc[r];
  total = tformer::xsimd_compat::reduce_add(acc[0]);
#endif
  for (; i < n; ++i) total += x[i];
  return total;
}

// Sum of `bytes` bytes of floats, 8 independent SIMD accumulators: the read-only stream, the
// ceiling of kernels that read much and write little (decode attention, decode GEMV).
inline void read_bandwidth(benchmark::State& state, std::size_t bytes) {
  const std::size_t n = bytes / sizeof(float);
  tformer::AlignedBuffer<float> src(n);
  std::fill(src.data(), src.data() + n, 1.0f);
  for (auto _ : state) benchmark::DoNotOptimize(read_sum(src.data(), n));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(n * sizeof(float)));
}

// read_bandwidth on every thread of an executor at once, each reading its share of `bytes`.
template <class E>
inline void read_bandwidth_threads(benchmark::State& state, std::size_t bytes, const E& exec) {
  const std::size_t n = bytes / sizeof(float);
  const tformer::index parts = exec.concurrency();
  tformer::AlignedBuffer<float> src(n);
  std::fill(src.data(), src.data() + n, 1.0f);
  std::vector<float> totals(static_cast<std::size_t>(parts) * 16);
  for (auto _ : state) {
    exec.parallel_for(0, parts, [&](tformer::index p) {
      const std::size_t lo = n * std::size_t(p) / std::size_t(parts) / 64 * 64;
      const std::size_t hi = p + 1 == parts ? n : n * std::size_t(p + 1) / std::size_t(parts) / 64 * 64;
      totals[std::size_t(p) * 16] = read_sum(src.data() + lo, hi - lo);  // a cache line each
    });
    benchmark::DoNotOptimize(totals.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(n * sizeof(float)));
}

// Registers "read/<KiB>" for a buffer of `kib` KiB.
inline void register_read(std::size_t kib) {
  benchmark::RegisterBenchmark(("read/" + std::to_string(kib)).c_str(), [kib](benchmark::State& s) {
    read_bandwidth(s, kib * 1024);
  })->Unit(benchmark::kMicrosecond);
}

// FLOPs as a rate counter named FLOPS (shown as FLOPS/s in G units).
inline void set_flops(benchmark::State& state, double flops_per_iteration) {
  state.counters["FLOPS"] =
      benchmark::Counter(flops_per_iteration * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

// C[M, N] = A[M, K] · W[N, K]ᵀ with Eigen, row-major, as a linear layer computes it.
inline void gemm(benchmark::State& state, Eigen::Index m, Eigen::Index n, Eigen::Index k) {
  using Matrix = tformer::eigen::RowMajorMatrix;
  Matrix a = Matrix::Random(m, k), w = Matrix::Random(n, k), c(m, n);
  for (auto _ : state) {
    c.noalias() = a * w.transpose();
    benchmark::DoNotOptimize(c.data());
  }
  set_flops(state, 2.0 * m * n * k);
}

// Registers "gemm/<M>x<N>x<K>".
inline void register_gemm(Eigen::Index m, Eigen::Index n, Eigen::Index k) {
  const std::string name =
      "gemm/" + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k);
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) {
    gemm(s, m, n, k);
  })->Unit(benchmark::kMillisecond);
}

// 12 independent FMA chains (enough to cover the FMA latency, 4-5 cycles, on two FMA ports) of
// `steps` FMAs each, their results kept; returns the FLOPs done.
inline double fma_chains(int steps) {
  constexpr int chains = 12;
#if TFORMER_HAS_SIMD
  using B = tformer::simd::batch;
  std::array<B, chains> acc;
  for (int c = 0; c < chains; ++c) acc[c] = B(1.0f + 0.01f * c);
  B a(0.999999f), b(1e-7f);
  benchmark::DoNotOptimize(a);  // not a constant: no call is folded or hoisted
  for (int i = 0; i < steps; ++i)  // unrolled, so the chains stay in registers at -O2 too
    TFORMER_UNROLL for (int c = 0; c < chains; ++c) acc[c] =
        tformer::xsimd_compat::fma(acc[c], a, b);
  constexpr double lanes = B::size;
#else
  std::array<float, chains> acc;
  for (int c = 0; c < chains; ++c) acc[c] = 1.0f + 0.01f * c;
  float a = 0.999999f;
  benchmark::DoNotOptimize(a);
  for (int i = 0; i < steps; ++i)
    TFORMER_UNROLL for (int c = 0; c < chains; ++c) acc[c] = acc[c] * a + 1e-7f;
  constexpr double lanes = 1;
#endif
  for (auto& x : acc) benchmark::DoNotOptimize(x);
  return 2.0 * lanes * chains * steps;
}

// The FMA peak of one thread.
inline void fma_peak(benchmark::State& state) {
  double flops = 0;
  for (auto _ : state) flops = fma_chains(1000);
  bench::set_flops(state, flops);
  state.SetLabel(tformer::simd::arch_name);
}

// fma_chains on every thread of an executor at once (long enough, 0.1–0.2 ms, that the fork and
// join do not count): the peak of that many threads, to set beside the FLOP rate of a kernel on
// them (UseRealTime).
template <class E>
inline void fma_peak_threads(benchmark::State& state, const E& exec) {
  const tformer::index parts = exec.concurrency();
  std::vector<double> flops(static_cast<std::size_t>(parts));
  for (auto _ : state)
    exec.parallel_for(0, parts,
                      [&](tformer::index p) { flops[std::size_t(p)] = fma_chains(100'000); });
  double total = 0;
  for (double f : flops) total += f;
  bench::set_flops(state, total);
  state.SetLabel(tformer::simd::arch_name);
}

// Registers "fma_peak".
inline void register_fma_peak() { benchmark::RegisterBenchmark("fma_peak", fma_peak); }

}  // namespace bench
