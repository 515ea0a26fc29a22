// The project's matmul (nn/matmul.hpp) for every weight type: decode GEMV against the read
// bandwidth of the same number of bytes (in cache for small matrices, DRAM for large ones), and
// prefill GEMM against the FMA peak and Eigen's GEMM, all in one run.
//
//   gemv/<type>/<out>x<in>      one token; bytes_per_second = weight bytes read per second
//   read/<type>/<out>x<in>      the read-only ceiling over a buffer of exactly those bytes
//   gemm/<type>/<T>x<out>x<in>  T tokens; FLOPS = 2·T·out·in per second
//   gemm/<T>x<out>x<in>         Eigen's GEMM on the same f32 shape
//   step/<type>/1.1B            one token through the 155 matrices of a 1.1B decode step, in
//                               order (read/step/<type>/1.1B: the read ceiling of their sizes);
//                               run them with --benchmark_filter=step: 0.5–2 GB of weights a type
//   step_vs_read/<type>/1.1B    the two in turn in each iteration: of_read = read / step time
//                               (reported as step_vs_read/<type>/1.1B/manual_time)
// <type>+int8, bf16+bf16: the same weight with int8 activations (nn/matmul_int8.hpp) or bf16
// activations (nn/matmul_bf16.hpp).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ceilings.hpp"
#include "tformer/core/convert.hpp"
#include "tformer/nn/matmul.hpp"

namespace {

using tformer::WeightType;

constexpr WeightType all_types[] = {WeightType::f32,     WeightType::bf16, WeightType::f16,
                                    WeightType::q8_0,    WeightType::q4_0, WeightType::q8_group,
                                    WeightType::q4_0x16, WeightType::q8_0x16};

// Whether a type multiplies f32 activations (the x16 types are layouts of the int8 kernel alone).
bool has_f32(WeightType t) { return !tformer::is_x16(t); }

// q8_group's group as llama2.c's export picks it: 64, halved until it divides the width.
tformer::index group_for(tformer::index in) { return in % 64 == 0 ? 64 : 32; }

// Bytes of a weight, scales included.
std::size_t weight_bytes(WeightType type, tformer::index out, tformer::index in) {
  return type == WeightType::q8_group ? std::size_t(out * in + out * (in / group_for(in)) * 4)
                                      : std::size_t(tformer::converted_bytes(type, out, in));
}

// A converted weight (q8_group: random int8 values, then the scales), 64-byte aligned.
struct Weight {
  tformer::AlignedBuffer<std::byte> bytes;
  tformer::WeightView view;
  Weight(WeightType type, tformer::index out, tformer::index in) : bytes(weight_bytes(type, out, in)) {
    const std::vector<float> src = bench::random_floats(std::size_t(out * in), 0.05f);
    if (type == WeightType::q8_group) {
      for (std::size_t i = 0; i < std::size_t(out * in); ++i)
        bytes.data()[i] = std::byte(std::uint8_t(std::int8_t(src[i] * 2000.0f)));
      auto* scales = reinterpret_cast<float*>(bytes.data() + out * in);
      for (tformer::index i = 0; i < out * (in / group_for(in)); ++i) scales[i] = 0.0004f;
      view = tformer::WeightView::q8_group(reinterpret_cast<const std::int8_t*>(bytes.data()),
                                           scales, group_for(in), out, in, "w");
      return;
    }
    view = tformer::convert_weights({src.data(), out, in}, type, bytes.span(), "w");
  }
};

// The reduced activations a type has: int8 for the 8- and 4-bit types, bf16 for bf16.
bool has_int8(WeightType t) {
  return t == WeightType::q8_0 || t == WeightType::q4_0 || t == WeightType::q8_group ||
         tformer::is_x16(t);
}
std::optional<tformer::Activations> reduced_activations(WeightType t) {
  if (has_int8(t)) return tformer::Activations::int8;
  if (t == WeightType::bf16) return tformer::Activations::bf16;
  return std::nullopt;
}

// Random activations on a 64-byte boundary, as the decoder's buffers are (with x 16 bytes off,
// bf16 and f16 768×288 took 1.3–1.5× as long on AVX-512: each 64-byte load of x spanned two
// cache lines).
tformer::AlignedBuffer<float> aligned_floats(std::size_t n) {
  const std::vector<float> values = bench::random_floats(n);
  tformer::AlignedBuffer<float> x(n);
  std::copy(values.begin(), values.end(), x.data());
  return x;
}

std::string shape(tformer::index a, tformer::index b) {
  return std::to_string(a) + "x" + std::to_string(b);
}

void run_matmul(benchmark::State& state, WeightType type, tformer::index t, tformer::index out,
                tformer::index in, tformer::Activations a = tformer::Activations::f32) {
  Weight w(type, out, in);
  if (has_f32(type)) w.view = w.view.with_activations(a);  // x16: int8 as converted
  const tformer::AlignedBuffer<float> x = aligned_floats(std::size_t(t * in));
  std::vector<float> y(std::size_t(t * out));
  for (auto _ : state) {
    tformer::matmul({x.data(), t, in}, w.view, {y.data(), t, out});
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(w.bytes.size()));
  bench::set_flops(state, 2.0 * double(t) * double(out) * double(in));
  state.SetLabel(tformer::simd::arch_name);
}

// The [out, in] shapes one token of the 1.1B Llama shape streams, in order: TinyLlama's 22 layers
// of q, k, v, o, gate, up and down, then the LM head.
std::vector<std::pair<tformer::index, tformer::index>> decode_step_shapes() {
  using Shape = std::pair<tformer::index, tformer::index>;
  const Shape q{2048, 2048}, kv{256, 2048}, up{5632, 2048}, down{2048, 5632}, head{32000, 2048};
  std::vector<Shape> order;
  for (int layer = 0; layer < 22; ++layer) order.insert(order.end(), {q, kv, kv, q, up, up, down});
  order.push_back(head);
  return order;
}

// Those matrices, each in its own buffer: the decode's weight stream without the rest of the
// decoder. One random matrix per shape, converted per copy.
struct DecodeStep {
  std::vector<tformer::AlignedBuffer<std::byte>> bytes;
  std::vector<tformer::WeightView> views;
  std::size_t total = 0;
  explicit DecodeStep(WeightType type) {
    const auto order = decode_step_shapes();
    std::map<std::pair<tformer::index, tformer::index>, std::vector<float>> sources;
    for (const auto& m : order)
      if (!sources.contains(m))
        sources[m] = bench::random_floats(std::size_t(m.first * m.second), 0.05f);
    bytes.reserve(order.size());
    for (const auto& [out, in] : order) {
      bytes.emplace_back(tformer::converted_bytes(type, out, in));
      views.push_back(tformer::convert_weights({sources[{out, in}].data(), out, in}, type,
                                               bytes.back().span(), "w"));
      total += bytes.back().size();
    }
  }
  // One per type, built on first use and kept: a benchmark's repetitions share it.
  static const DecodeStep& of(WeightType type) {
    static std::map<WeightType, DecodeStep> built;
    return built.try_emplace(type, type).first->second;
  }
};

// One token through every matrix of the step.
void multiply_step(const DecodeStep& step, const tformer::AlignedBuffer<float>& x,
                   std::vector<float>& y) {
  for (const tformer::WeightView& w : step.views)
    tformer::matmul({x.data(), 1, w.cols()}, w, {y.data(), 1, w.rows()});
  benchmark::DoNotOptimize(y.data());
  benchmark::ClobberMemory();
}

void run_step(benchmark::State& state, WeightType type) {
  const DecodeStep& step = DecodeStep::of(type);
  const tformer::AlignedBuffer<float> x = aligned_floats(5632);
  std::vector<float> y(32000);
  for (auto _ : state) multiply_step(step, x, y);
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(step.total));
  state.counters["weight_MiB"] = double(step.total) / double(1 << 20);
}

// Buffers of 1.0f (as read_bandwidth's) of the step's matrix sizes, in the same order.
struct StepReads {
  std::vector<tformer::AlignedBuffer<float>> buffers;
  std::size_t total = 0;
  explicit StepReads(WeightType type) {
    for (const auto& [out, in] : decode_step_shapes()) {
      const std::size_t floats = tformer::converted_bytes(type, out, in) / sizeof(float);
      buffers.emplace_back(floats);
      std::fill(buffers.back().data(), buffers.back().data() + floats, 1.0f);
      total += floats * sizeof(float);
    }
  }
  void read() const {
    for (const auto& b : buffers) benchmark::DoNotOptimize(bench::read_sum(b.data(), b.size()));
  }
};

// read_bandwidth over the step's sizes.
void read_step(benchmark::State& state, WeightType type) {
  const StepReads reads(type);
  for (auto _ : state) reads.read();
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(reads.total));
}

// The step and its reads in turn within each iteration, so the host's drift (the read time of
// the same bytes moved 15–51 ms within minutes here) falls on both alike. Time (reported as
// …/manual_time): the step's; read_ms: the reads'; of_read: read time / step time over all
// iterations. The CPU column counts both.
void step_vs_read(benchmark::State& state, WeightType type) {
  using clock = std::chrono::steady_clock;
  const DecodeStep& step = DecodeStep::of(type);
  const StepReads reads(type);
  const tformer::AlignedBuffer<float> x = aligned_floats(5632);
  std::vector<float> y(32000);
  double step_s = 0, read_s = 0;
  for (auto _ : state) {
    const auto t0 = clock::now();
    multiply_step(step, x, y);
    const auto t1 = clock::now();
    reads.read();
    const auto t2 = clock::now();
    const double s = std::chrono::duration<double>(t1 - t0).count();
    state.SetIterationTime(s);
    step_s += s;
    read_s += std::chrono::duration<double>(t2 - t1).count();
  }
  state.counters["read_ms"] = 1e3 * read_s / double(state.iterations());
  state.counters["of_read"] = read_s / step_s;
}

}  // namespace

int main(int argc, char** argv) {
  bench::register_fma_peak();
  // Decode shapes [out, in]: the 15M / 110M / 1.1B Llama FFNs, a 7B attention and FFN.
  const std::pair<tformer::index, tformer::index> gemv_shapes[] = {
      {768, 288}, {288, 768}, {2048, 768}, {5632, 2048}, {4096, 4096}, {11008, 4096}, {4096, 11008}};
  for (auto [out_, in_] : gemv_shapes)
    for (WeightType type : all_types) {
      const tformer::index out = out_, in = in_;  // (clang 14 cannot capture structured bindings)
      const std::string suffix = std::string(tformer::type_name(type)) + "/" + shape(out, in);
      if (has_f32(type))
        benchmark::RegisterBenchmark(("gemv/" + suffix).c_str(), [=](benchmark::State& s) {
          run_matmul(s, type, 1, out, in);
        })->Unit(benchmark::kMicrosecond);
      if (const auto a = reduced_activations(type))
        benchmark::RegisterBenchmark(
            ("gemv/" + std::string(tformer::type_name(type)) + "+" + tformer::activations_name(*a) +
             "/" + shape(out, in)).c_str(),
            [=](benchmark::State& s) { run_matmul(s, type, 1, out, in, *a); })
            ->Unit(benchmark::kMicrosecond);
      const std::size_t bytes = weight_bytes(type, out, in);
      benchmark::RegisterBenchmark(("read/" + suffix).c_str(), [=](benchmark::State& s) {
        bench::read_bandwidth(s, bytes);
      })->Unit(benchmark::kMicrosecond);
    }
  // Prefill shapes [T, out, in], and a few rows (batched decode: project_few's tiles).
  const std::array<tformer::index, 3> gemm_shapes[] = {{4, 2048, 768},    {4, 5632, 2048},
                                                       {64, 2048, 2048},  {64, 5632, 2048},
                                                       {512, 2048, 2048}, {128, 2048, 5632}};
  for (auto [t_, out_, in_] : gemm_shapes) {
    const tformer::index t = t_, out = out_, in = in_;
    for (WeightType type : all_types)
      if (has_f32(type))
        benchmark::RegisterBenchmark(("gemm/" + std::string(tformer::type_name(type)) + "/" +
                                      std::to_string(t) + "x" + shape(out, in))
                                         .c_str(),
                                     [=](benchmark::State& s) { run_matmul(s, type, t, out, in); })
            ->Unit(benchmark::kMillisecond);
    for (WeightType type : all_types)
      if (const auto a = reduced_activations(type))
        benchmark::RegisterBenchmark(
            ("gemm/" + std::string(tformer::type_name(type)) + "+" + tformer::activations_name(*a) +
             "/" + std::to_string(t) + "x" + shape(out, in)).c_str(),
            [=](benchmark::State& s) { run_matmul(s, type, t, out, in, *a); })
            ->Unit(benchmark::kMillisecond);
    bench::register_gemm(t, out, in);
  }
  // One 1.1B decode step's matrices in order, from DRAM (bf16 with f32 activations, the x16
  // types with int8 as converted); each type's weights are built once, on first use.
  for (WeightType type : {WeightType::bf16, WeightType::q8_0x16, WeightType::q4_0x16}) {
    const std::string name = tformer::type_name(type);
    benchmark::RegisterBenchmark(
        ("step/" + name + (tformer::is_x16(type) ? "+int8" : "") + "/1.1B").c_str(), run_step, type)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("read/step/" + name + "/1.1B").c_str(), read_step, type)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(
        ("step_vs_read/" + name + (tformer::is_x16(type) ? "+int8" : "") + "/1.1B").c_str(),
        step_vs_read, type)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
