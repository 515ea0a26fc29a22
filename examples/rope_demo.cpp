// tformer-demo: what a newcomer sees first. Prints the instruction set the kernels were compiled
// for, the worked RoPE example of shared/reference in both layouts, and one benchmark-style
// figure: RoPE on a prefill's Q and K against memcpy of the same bytes, timed in the same run.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "tformer/tformer.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

// Median seconds of `repeats` runs of f().
template <class F>
double median_seconds(int repeats, F&& f) {
  std::vector<double> t;
  for (int r = 0; r < repeats; ++r) {
    const auto start = clock_type::now();
    f();
    t.push_back(std::chrono::duration<double>(clock_type::now() - start).count());
  }
  std::nth_element(t.begin(), t.begin() + repeats / 2, t.end());
  return t[repeats / 2];
}

void worked_example() {
  std::printf("Worked example (head_dim 4, base 10000, position 1, q = [3.5, 2.1, -1.2, 0.8]):\n");
  tformer::RopeTable table(tformer::RopeConfig{.rotary_dim = 4, .max_positions = 2});
  struct Case {
    tformer::RopeLayout layout;
    float expected[4];
  };
  const Case cases[] = {
      {tformer::RopeLayout::RotateHalf, {2.90082f, 2.09190f, 2.29679f, 0.82096f}},
      {tformer::RopeLayout::Interleaved, {0.12397f, 4.07978f, -1.20794f, 0.78796f}}};
  for (const Case& c : cases) {
    float q[4] = {3.5f, 2.1f, -1.2f, 0.8f};
    tformer::apply_rope_inplace(c.layout, table, tformer::HeadsView<float>(q, 1, 1, 4),
                                tformer::Positions::offset(1));
    std::printf("  %-12s [%8.5f, %8.5f, %8.5f, %8.5f]   by hand: [%8.5f, %8.5f, %8.5f, %8.5f]\n",
                tformer::to_string(c.layout), q[0], q[1], q[2], q[3], c.expected[0], c.expected[1],
                c.expected[2], c.expected[3]);
  }
}

void throughput() {
  constexpr int T = 512, Hq = 32, Hkv = 8, D = 128;
  tformer::RopeTable table(tformer::RopeConfig{.rotary_dim = D, .max_positions = T});
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  tformer::AlignedBuffer<float> q(std::size_t{T} * Hq * D), k(std::size_t{T} * Hkv * D);
  for (float& x : q.span()) x = normal(rng);
  for (float& x : k.span()) x = normal(rng);
  tformer::AlignedBuffer<float> copy_src(q.size() + k.size()), copy_dst(q.size() + k.size());
  const double bytes = 2.0 * static_cast<double>(q.bytes() + k.bytes());  // read + write

  auto rope = [&] {
    tformer::apply_rope_inplace<tformer::RopeLayout::RotateHalf>(
        table, tformer::HeadsView<float>(q.data(), T, Hq, D),
        tformer::HeadsView<float>(k.data(), T, Hkv, D), tformer::Positions::offset(0));
  };
  auto copy = [&] { std::memcpy(copy_dst.data(), copy_src.data(), copy_src.bytes()); };
  rope();
  copy();
  const double t_rope = median_seconds(51, rope);
  const double t_copy = median_seconds(51, copy);
  std::printf(
      "\nRoPE (rotate-half) in place on Q [%d, %d, %d] and K [%d, %d, %d], %.1f MiB:\n"
      "  %.1f us, %.1f GB/s (read + write); memcpy of the same bytes %.1f GB/s; ratio %.2f\n",
      T, Hq, D, T, Hkv, D, (q.bytes() + k.bytes()) / 1048576.0, t_rope * 1e6, bytes / t_rope / 1e9,
      bytes / t_copy / 1e9, t_copy / t_rope);
  std::printf("  (one thread; `bench_rope` in the release build measures every shape)\n");
}

}  // namespace

int main() {
  std::printf("tformer %s: kernels compiled for '%s' (%zu floats per register)\n\n",
              TFORMER_VERSION_STRING, tformer::simd::arch_name, tformer::simd::lanes);
  worked_example();
  throughput();
  return 0;
}
