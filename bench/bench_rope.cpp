// RoPE in place on Q [T, 32, D] and K [T, 8, D], both layouts, D = 64 and 128, for decode
// (T = 1 at position 4000) and prefill (T = 512, 4096 from position 0). Beside each shape:
// the scalar kernels on the same data, and memcpy of the same bytes (copy/<KiB>), so that
// SIMD / scalar and achieved / copy bandwidth are ratios measured in one run.
//
// Names: rope/<layout>/d<D>/T<T>[/scalar]. Bytes: read + write of Q and K (the table's few
// rows are not counted). FLOPS: 6 per rotated pair (4 multiplies, 2 adds).
#include <benchmark/benchmark.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include "ceilings.hpp"
#include "rope_scalar_unit.hpp"
#include "tformer/rope/apply.hpp"
#include "tformer/rope/givens.hpp"

namespace {

constexpr int kQHeads = 32, kKvHeads = 8;

struct Shape {
  tformer::RopeLayout layout;
  int head_dim;
  int tokens;
  int offset;
};

std::size_t qk_bytes(const Shape& s) {
  return static_cast<std::size_t>(s.tokens) * (kQHeads + kKvHeads) * s.head_dim * sizeof(float);
}

void report(benchmark::State& state, const Shape& s) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 2 *
                          static_cast<std::int64_t>(qk_bytes(s)));
  bench::set_flops(state, 6.0 * s.tokens * (kQHeads + kKvHeads) * (s.head_dim / 2));
}

void rope_simd(benchmark::State& state, Shape s) {
  const int max_positions = s.offset + s.tokens;
  tformer::RopeTable table(
      tformer::RopeConfig{.rotary_dim = s.head_dim, .max_positions = max_positions});
  auto q = bench::random_floats(static_cast<std::size_t>(s.tokens) * kQHeads * s.head_dim);
  auto k = bench::random_floats(static_cast<std::size_t>(s.tokens) * kKvHeads * s.head_dim);
  tformer::HeadsView<float> qv(q.data(), s.tokens, kQHeads, s.head_dim);
  tformer::HeadsView<float> kv(k.data(), s.tokens, kKvHeads, s.head_dim);
  const auto at = tformer::Positions::offset(s.offset);
  // A rotation keeps norms, so repeating it over millions of iterations keeps the data bounded.
  for (auto _ : state) {
    if (s.layout == tformer::RopeLayout::Interleaved)
      tformer::apply_rope_inplace<tformer::RopeLayout::Interleaved>(table, qv, kv, at);
    else
      tformer::apply_rope_inplace<tformer::RopeLayout::RotateHalf>(table, qv, kv, at);
    benchmark::ClobberMemory();
  }
  report(state, s);
  state.SetLabel(tformer::simd::arch_name);
}

void rope_scalar(benchmark::State& state, Shape s) {
  auto rope = make_scalar_rope(s.layout == tformer::RopeLayout::Interleaved, s.tokens, kQHeads,
                               kKvHeads, s.head_dim, s.offset + s.tokens);
  auto q = bench::random_floats(static_cast<std::size_t>(s.tokens) * kQHeads * s.head_dim);
  auto k = bench::random_floats(static_cast<std::size_t>(s.tokens) * kKvHeads * s.head_dim);
  for (auto _ : state) {
    rope(q.data(), k.data(), s.offset);
    benchmark::ClobberMemory();
  }
  report(state, s);
  state.SetLabel("scalar");
}

// Seed 001's rotary block (n Givens rotations, then R [D, D]) before rotate-half RoPE, on the
// same Q and K: its cost beside plain RoPE (rope/rotate-half/d128/T<T>).
void rotary_block(benchmark::State& state, int rotations, int tokens, bool with_r) {
  const int D = 128;
  const Shape s{tformer::RopeLayout::RotateHalf, D, tokens, tokens == 1 ? 4000 : 0};
  tformer::RopeTable table(tformer::RopeConfig{.rotary_dim = D, .max_positions = s.offset + tokens});
  std::vector<tformer::GivensRotation> planes;
  for (int r = 0; r < rotations; ++r) planes.push_back({(r * 37) % D, (r * 37 + 1 + r % 5) % D, 0.3f});
  auto rm = bench::random_floats(std::size_t(D) * D);
  tformer::reorthogonalize({rm.data(), D, D});
  tformer::RotaryBlock block(D, planes, with_r ? tformer::MatrixView<const float>(rm.data(), D, D)
                                              : tformer::MatrixView<const float>());
  auto q = bench::random_floats(static_cast<std::size_t>(tokens) * kQHeads * D);
  auto k = bench::random_floats(static_cast<std::size_t>(tokens) * kKvHeads * D);
  tformer::HeadsView<float> qv(q.data(), tokens, kQHeads, D), kv(k.data(), tokens, kKvHeads, D);
  for (auto _ : state) {
    block.apply(qv);
    block.apply(kv);
    tformer::apply_rope_inplace<tformer::RopeLayout::RotateHalf>(table, qv, kv,
                                                                 tformer::Positions::offset(s.offset));
    benchmark::ClobberMemory();
  }
  report(state, s);
}

}  // namespace

int main(int argc, char** argv) {
  for (bool with_r : {true, false})
    for (int rotations : {8, 32})
      for (int t : {1, 512})
        benchmark::RegisterBenchmark(("rotary_block/rotate-half/d128/T" + std::to_string(t) + "/g" +
                                      std::to_string(rotations) + (with_r ? "+R" : ""))
                                         .c_str(),
                                     rotary_block, rotations, t, with_r)
            ->Unit(benchmark::kMicrosecond);
  std::set<std::size_t> copy_sizes;
  for (auto layout : {tformer::RopeLayout::Interleaved, tformer::RopeLayout::RotateHalf}) {
    for (int d : {64, 128}) {
      for (int t : {1, 512, 4096}) {
        const Shape s{layout, d, t, t == 1 ? 4000 : 0};
        const std::string name = std::string("rope/") + tformer::to_string(layout) + "/d" +
                                 std::to_string(d) + "/T" + std::to_string(t);
        benchmark::RegisterBenchmark(name.c_str(), rope_simd, s)->Unit(benchmark::kMicrosecond);
        benchmark::RegisterBenchmark((name + "/scalar").c_str(), rope_scalar, s)
            ->Unit(benchmark::kMicrosecond);
        copy_sizes.insert(qk_bytes(s) / 1024);
      }
    }
  }
  for (std::size_t kib : copy_sizes) bench::register_copy(kib);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
