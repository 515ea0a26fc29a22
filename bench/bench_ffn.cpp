// The feed-forward family on a 512→2048 (TrafficVLM) and a 4096→11008 (Llama-7B) block, for one
// token (decode) and 64 tokens:
//   swiglu/<H>x<I>/T<T>           dense; FLOPS = 6·T·H·I; bytes = the weights read (3·H·I·4)
//   gemm3/<H>x<I>/T<T>            the three raw Eigen products of the same shapes: the ceiling
//   swiglu_topk/.../k<pct>        the whole top-k FFN at k = 100, 50, 25, 10 %
//   topk_down/.../k<pct>          its down projection alone (selection + k rows of downᵀ)
//   dense_down/<H>x<I>/T<T>       the dense down projection it replaces
//   moe/E8k2/<H>x<I>/T<T>         8 experts, top-2: tokens per second (items_per_second)
#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ceilings.hpp"
#include "tformer/nn/moe.hpp"
#include "tformer/nn/swiglu.hpp"

namespace {

// One FFN block's weights, shared by the benchmarks of its shape.
struct Block {
  int H, I;
  std::vector<float> gate, up, down;
  std::unique_ptr<tformer::TransposedWeights> down_t;

  Block(int h, int i)
      : H(h),
        I(i),
        gate(bench::random_floats(std::size_t(h) * i, 0.02f, 1)),
        up(bench::random_floats(std::size_t(h) * i, 0.02f, 2)),
        down(bench::random_floats(std::size_t(h) * i, 0.02f, 3)) {}
  tformer::SwiGluWeights weights() const {
    return {{gate.data(), I, H}, {up.data(), I, H}, {down.data(), H, I}};
  }
  const tformer::TransposedWeights& transposed() {
    if (!down_t) down_t = std::make_unique<tformer::TransposedWeights>(weights().down);
    return *down_t;
  }
};

Block& block(int h, int /*i: 2048 or 11008, implied by h*/) {
  static Block small(512, 2048), large(4096, 11008);
  return h == 512 ? small : large;
}

std::string shape(int h, int i, int t) {
  return std::to_string(h) + "x" + std::to_string(i) + "/T" + std::to_string(t);
}

void report_ffn(benchmark::State& state, int h, int i, int t, double fraction = 1.0) {
  bench::set_flops(state, 2.0 * t * h * i * (2.0 + fraction));
  state.SetBytesProcessed(static_cast<std::int64_t>((2.0 + fraction) * h * i * 4.0 *
                                                    static_cast<double>(state.iterations())));
}

void swiglu_dense(benchmark::State& state, int h, int i, int t) {
  Block& b = block(h, i);
  const auto x = bench::random_floats(std::size_t(t) * h, 1.0f, 4);
  std::vector<float> y(x.size());
  tformer::FfnWorkspace ws(t, i);
  for (auto _ : state) {
    tformer::swiglu({x.data(), t, h}, b.weights(), {y.data(), t, h}, ws);
    benchmark::ClobberMemory();
  }
  report_ffn(state, h, i, t);
}

// The three products alone, Eigen on the same buffers: what the FFN can at best reach.
void gemm3(benchmark::State& state, int h, int i, int t) {
  Block& b = block(h, i);
  const auto x = bench::random_floats(std::size_t(t) * h, 1.0f, 4);
  std::vector<float> g(std::size_t(t) * i), u(g.size()), y(x.size());
  const auto w = b.weights();
  for (auto _ : state) {
    tformer::linear_kernels::project({x.data(), t, h}, w.gate, {}, {g.data(), t, i});
    tformer::linear_kernels::project({x.data(), t, h}, w.up, {}, {u.data(), t, i});
    tformer::linear_kernels::project({g.data(), t, i}, w.down, {}, {y.data(), t, h});
    benchmark::ClobberMemory();
  }
  report_ffn(state, h, i, t);
}

void swiglu_topk(benchmark::State& state, int h, int i, int t, double fraction) {
  Block& b = block(h, i);
  const auto x = bench::random_floats(std::size_t(t) * h, 1.0f, 4);
  std::vector<float> y(x.size());
  tformer::FfnWorkspace ws(t, i);
  const auto& down_t = b.transposed();
  for (auto _ : state) {
    tformer::swiglu_topk({x.data(), t, h}, b.weights(), down_t.view(),
                         tformer::TopK::fraction(fraction), {y.data(), t, h}, ws);
    benchmark::ClobberMemory();
  }
  report_ffn(state, h, i, t, fraction);
}

// The down projection of the top-k form alone: selection and the kept rows of downᵀ.
void topk_down(benchmark::State& state, int h, int i, int t, double fraction) {
  Block& b = block(h, i);
  const auto hidden = bench::random_floats(std::size_t(t) * i, 1.0f, 5);
  std::vector<float> y(std::size_t(t) * h);
  tformer::FfnWorkspace ws(t, i);
  const auto& down_t = b.transposed();
  const tformer::index k = tformer::TopK::fraction(fraction).resolve(i);
  for (auto _ : state) {
    tformer::ffn_kernels::topk_down({hidden.data(), t, i}, k, down_t.view(), {y.data(), t, h}, ws);
    benchmark::ClobberMemory();
  }
  bench::set_flops(state, 2.0 * t * h * double(k));
}

void dense_down(benchmark::State& state, int h, int i, int t) {
  Block& b = block(h, i);
  const auto hidden = bench::random_floats(std::size_t(t) * i, 1.0f, 5);
  std::vector<float> y(std::size_t(t) * h);
  for (auto _ : state) {
    tformer::linear_kernels::project({hidden.data(), t, i}, b.weights().down, {}, {y.data(), t, h});
    benchmark::ClobberMemory();
  }
  bench::set_flops(state, 2.0 * t * h * i);
  state.SetBytesProcessed(
      static_cast<std::int64_t>(double(i) * h * 4.0 * static_cast<double>(state.iterations())));
}

void moe(benchmark::State& state, int h, int i, int t) {
  constexpr int E = 8;
  std::vector<std::unique_ptr<Block>> experts;
  std::vector<tformer::SwiGluWeights> views;
  for (int e = 0; e < E; ++e) {
    experts.push_back(std::make_unique<Block>(h, i));
    views.push_back(experts.back()->weights());
  }
  const auto router = bench::random_floats(std::size_t(E) * h, 0.02f, 9);
  const auto x = bench::random_floats(std::size_t(t) * h, 1.0f, 4);
  std::vector<float> y(x.size());
  const tformer::MoeConfig config{E, 2};
  tformer::MoeWorkspace ws(t, h, i, config);
  const tformer::MoeWeights weights{{router.data(), E, h}, views, std::nullopt, {}};
  for (auto _ : state) {
    tformer::moe({x.data(), t, h}, weights, config, {y.data(), t, h}, ws);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(t) * state.iterations());
  int used = 0;
  for (auto c : ws.expert_counts()) used += c > 0;
  state.counters["experts_used"] = used;
}

}  // namespace

int main(int argc, char** argv) {
  for (auto [h, i] : {std::pair{512, 2048}, std::pair{4096, 11008}}) {
    for (int t : {1, 64}) {
      const std::string s = shape(h, i, t);
      const auto unit = h == 512 ? benchmark::kMicrosecond : benchmark::kMillisecond;
      benchmark::RegisterBenchmark(("swiglu/" + s).c_str(), swiglu_dense, h, i, t)->Unit(unit);
      benchmark::RegisterBenchmark(("gemm3/" + s).c_str(), gemm3, h, i, t)->Unit(unit);
      benchmark::RegisterBenchmark(("dense_down/" + s).c_str(), dense_down, h, i, t)->Unit(unit);
      for (int pct : {100, 50, 25, 10}) {
        const std::string k = "/k" + std::to_string(pct);
        benchmark::RegisterBenchmark(("swiglu_topk/" + s + k).c_str(), swiglu_topk, h, i, t,
                                     pct / 100.0)
            ->Unit(unit);
        benchmark::RegisterBenchmark(("topk_down/" + s + k).c_str(), topk_down, h, i, t,
                                     pct / 100.0)
            ->Unit(unit);
      }
    }
  }
  for (int t : {1, 64})
    benchmark::RegisterBenchmark(("moe/E8k2/" + shape(512, 2048, t)).c_str(), moe, 512, 2048, t)
        ->Unit(benchmark::kMicrosecond);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
