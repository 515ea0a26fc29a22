// Decoder<Config> end to end with seeded random weights: decode and prefill tokens per second for
// seed 003's TrafficVLM and a stories110M-shaped llama2.c model (dim 768, 12 layers, 12 heads,
// hidden 2048, vocab 32000, tied head).
//   decode:  one token per iteration at a context of 64 (then rolled back with truncate, so
//            every iteration sees the same context; with a convolution, which cannot roll back,
//            contexts 64 … 512). bytes = the weights a token streams (every
//            layer matrix it multiplies, and the LM head); items = tokens.
//   prefill: T tokens from position 0 per iteration (reset first); items = tokens.
// Beside them, in the same run: copy/<KiB> and read/<KiB> of the decode's weight bytes (the
// decode ceiling is read bandwidth / weight bytes per token).
//   llama_decode/<shape>/<type>, llama_prefill/<shape>/<type>/T128: Llama shapes of 15M, 110M and
//            1.1B parameters (llama2.c's stories15M and stories110M, TinyLlama's GQA 32/4) with
//            every matrix converted to one storage type (ConvertedWeights), beside
//            read/<shape>/<type>, the read ceiling of the same weight bytes. Decode's counters:
//            weight_MiB (one token's weight bytes) and cache_workspace_MiB (Decoder::bytes()).
//            Run the 1.1B ones with --benchmark_filter=1.1B: its f32 weights take 4.4 GB and a
//            minute to build.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "ceilings.hpp"
#include "tformer/model/decoder.hpp"

namespace {

using tformer::index;

struct Stories110M : tformer::configs::Llama2c {};
struct Stories110MConv : Stories110M {  // seed 001's convolution + attention, kernel 4
  static constexpr index conv_kernel = 4;
};
constexpr tformer::Dims stories110m = {.vocab = 32000, .hidden = 768, .intermediate = 2048,
                                       .layers = 12, .heads = 12, .kv_heads = 12,
                                       .head_dim = 64, .max_positions = 1024};

// Bytes of a matrix in its storage type.
std::size_t bytes_of(const tformer::WeightView& m) {
  return std::size_t(tformer::converted_bytes(m.type(), m.rows(), m.cols()));
}

// The weight bytes one decode token multiplies (cross-attention K, V are projected once per
// input, not per token; norms are counted, they are small).
std::size_t weight_bytes_per_token(const tformer::ModelWeights& w) {
  std::size_t n = bytes_of(w.head()) + w.final_norm.size_bytes();
  for (const auto& l : w.layers) {
    for (auto m : {l.wq, l.wk, l.wv, l.wo, l.cross_wq, l.cross_wo, l.ffn.gate, l.ffn.up, l.ffn.down})
      n += bytes_of(m);
    n += l.attn_norm.size_bytes() + l.ffn_norm.size_bytes() + l.cross_norm.size_bytes();
  }
  return n;
}

template <class C>
struct Model {
  explicit Model(const tformer::Dims& dims)
      : weights(dims, 1),
        decoder(weights.view(), dims, {.capacity = std::min<index>(512, weights.dims().max_positions)}),
        logits(std::size_t(512 * weights.dims().vocab)) {
    if constexpr (C::cross_attention) {
      const auto vision = bench::random_floats(196 * std::size_t(C::encoder_width), 1.0f, 2);
      decoder.set_encoder(0, {vision.data(), 196, C::encoder_width});
    }
  }
  tformer::OwnedWeights<C> weights;
  tformer::Decoder<C> decoder;
  std::vector<float> logits;
};

std::vector<std::int32_t> tokens(int n, index vocab) {
  std::vector<std::int32_t> t(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) t[std::size_t(i)] = std::int32_t((i * 7919 + 13) % vocab);
  return t;
}

template <class C>
void decode(benchmark::State& state, const tformer::Dims& dims) {
  Model<C> m(dims);
  const index V = m.weights.dims().vocab;
  const auto prompt = tokens(64, V);
  m.decoder.forward(0, prompt, {m.logits.data(), 1, V});
  const std::int32_t next = 5;
  for (auto _ : state) {
    m.decoder.forward(0, std::span(&next, 1), {m.logits.data(), 1, V});
    if constexpr (C::conv_kernel > 1) {  // a convolution cannot roll back: grow, reset rarely
      if (m.decoder.length(0) == m.decoder.options().capacity) {
        state.PauseTiming();
        m.decoder.reset(0);
        m.decoder.forward(0, prompt, {m.logits.data(), 1, V});
        state.ResumeTiming();
      }
    } else {
      m.decoder.truncate(0, 64);
    }
    benchmark::ClobberMemory();
  }
  const std::size_t bytes = weight_bytes_per_token(m.weights.view());
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(bytes));
  state.counters["weight_MiB"] = double(bytes) / (1 << 20);
}

// A Llama-shaped model with every matrix in one storage type.
struct TypedLlama {
  using C = tformer::configs::Llama2c;
  TypedLlama(const tformer::Dims& dims, tformer::WeightType type, tformer::Activations a)
      : owned(dims, 1),
        converted(owned.view(), {type, type, type, type, type, a}),
        decoder(converted.view(), dims, {.capacity = 256}),
        logits(std::size_t(dims.vocab)) {}
  tformer::OwnedWeights<C> owned;
  tformer::ConvertedWeights converted;
  tformer::Decoder<C> decoder;
  std::vector<float> logits;
};

void llama_decode(benchmark::State& state, const tformer::Dims& dims, tformer::WeightType type,
                  tformer::Activations a) {
  TypedLlama m(dims, type, a);
  const auto prompt = tokens(64, dims.vocab);
  m.decoder.forward(0, prompt, {m.logits.data(), 1, dims.vocab});
  const std::int32_t next = 5;
  for (auto _ : state) {
    m.decoder.forward(0, std::span(&next, 1), {m.logits.data(), 1, dims.vocab});
    m.decoder.truncate(0, 64);
    benchmark::ClobberMemory();
  }
  const std::size_t bytes = weight_bytes_per_token(m.converted.view());
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(bytes));
  state.counters["weight_MiB"] = double(bytes) / (1 << 20);
  // What the decoder allocated besides the weights: its KV cache and workspaces.
  state.counters["cache_workspace_MiB"] = double(m.decoder.bytes()) / (1 << 20);
}

void llama_prefill(benchmark::State& state, const tformer::Dims& dims, tformer::WeightType type,
                   tformer::Activations a, int T) {
  TypedLlama m(dims, type, a);
  const auto prompt = tokens(T, dims.vocab);
  for (auto _ : state) {
    m.decoder.reset(0);
    m.decoder.forward(0, prompt, {m.logits.data(), 1, dims.vocab});
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(std::int64_t(state.iterations()) * T);
}

template <class C>
void prefill(benchmark::State& state, const tformer::Dims& dims, int T) {
  Model<C> m(dims);
  const index V = m.weights.dims().vocab;
  const auto prompt = tokens(T, V);
  for (auto _ : state) {
    m.decoder.reset(0);
    if constexpr (C::cross_attention) {  // reset forgot the encoder: set it again, untimed
      state.PauseTiming();
      const auto vision = bench::random_floats(196 * std::size_t(C::encoder_width), 1.0f, 2);
      m.decoder.set_encoder(0, {vision.data(), 196, C::encoder_width});
      state.ResumeTiming();
    }
    m.decoder.forward(0, prompt, {m.logits.data(), 1, V});
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(std::int64_t(state.iterations()) * T);
}

// Threads: the library's ThreadTeam. Decode of the 110M shape at a context of 64 (the weights
// dominate) and 4096 (the split-K attention then reads 4096 keys per layer, 300 MB a token),
// and the 1.1B GQA shape at 64; prefill of T = 128. Real time (the workers' CPU time is not
// the caller's).
template <class C>
struct Threaded {
  Threaded(const tformer::Dims& dims, tformer::index threads, tformer::index capacity)
      : team(threads),
        owned(dims, 1),
        decoder(owned.view(), owned.dims(), {.capacity = capacity, .max_tokens = 512}, team),
        logits(std::size_t(owned.dims().vocab)) {
    if constexpr (C::cross_attention) {  // 196 image tokens, as Model<C>
      const auto vision = bench::random_floats(196 * std::size_t(C::encoder_width), 1.0f, 2);
      decoder.set_encoder(0, {vision.data(), 196, C::encoder_width});
    }
  }
  tformer::ThreadTeam team;
  tformer::OwnedWeights<C> owned;
  tformer::Decoder<C, tformer::ThreadTeam&> decoder;
  std::vector<float> logits;
};

template <class C = tformer::configs::Llama2c>
void threads_decode(benchmark::State& state, tformer::Dims dims, tformer::index threads, int ctx) {
  if constexpr (!C::cross_attention)  // (a Config with fixed dims keeps its own)
    dims.max_positions = std::max<index>(dims.max_positions, ctx + 1);
  Threaded<C> m(dims, threads, ctx + 1);
  const index V = m.owned.dims().vocab;
  const auto prompt = tokens(ctx, V);
  for (int i = 0; i < ctx; i += 512)
    m.decoder.forward(
        0, std::span(prompt).subspan(std::size_t(i), std::size_t(std::min(512, ctx - i))),
        {m.logits.data(), 1, V});
  const std::int32_t next = 5;
  for (auto _ : state) {
    m.decoder.forward(0, std::span(&next, 1), {m.logits.data(), 1, V});
    m.decoder.truncate(0, ctx);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}

template <class C = tformer::configs::Llama2c>
void threads_prefill(benchmark::State& state, tformer::Dims dims, tformer::index threads, int T) {
  Threaded<C> m(dims, threads, T);
  const index V = m.owned.dims().vocab;
  const auto prompt = tokens(T, V);
  for (auto _ : state) {
    m.decoder.truncate(0, 0);  // forgets the tokens, keeps the encoder input
    m.decoder.forward(0, prompt, {m.logits.data(), 1, V});
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(std::int64_t(state.iterations()) * T);
}

}  // namespace

int main(int argc, char** argv) {
  {
    const tformer::Dims tiny_llama = {.vocab = 32000, .hidden = 2048, .intermediate = 5632,
                                      .layers = 22, .heads = 32, .kv_heads = 4, .head_dim = 64,
                                      .max_positions = 2048};
    const tformer::Dims small_moe = {.vocab = 32000, .hidden = 1024, .intermediate = 2816,
                                     .layers = 6, .heads = 16, .kv_heads = 4, .head_dim = 64,
                                     .max_positions = 2048, .experts = 8, .top_k = 2};
    for (const tformer::index threads : {1, 2}) {
      const std::string t = "/threads" + std::to_string(threads);
      benchmark::RegisterBenchmark(("threads_decode/110M/ctx64" + t).c_str(), threads_decode<>,
                                   stories110m, threads, 64)
          ->Unit(benchmark::kMillisecond)->UseRealTime();
      benchmark::RegisterBenchmark(("threads_decode/110M/ctx4096" + t).c_str(), threads_decode<>,
                                   stories110m, threads, 4096)
          ->Unit(benchmark::kMillisecond)->UseRealTime();
      benchmark::RegisterBenchmark(("threads_prefill/110M/T128" + t).c_str(), threads_prefill<>,
                                   stories110m, threads, 128)
          ->Unit(benchmark::kMillisecond)->UseRealTime();
      benchmark::RegisterBenchmark(("threads_decode/1.1B/ctx64" + t).c_str(), threads_decode<>,
                                   tiny_llama, threads, 64)
          ->Unit(benchmark::kMillisecond)->UseRealTime();
      // Mixtral's block (8 experts, top 2) at a small width: each token streams its 2 experts'
      // rows split over the threads (12 MB per expert and layer, 6 layers).
      benchmark::RegisterBenchmark(("threads_decode/MoE8x2/ctx64" + t).c_str(),
                                   threads_decode<tformer::configs::Mixtral>, small_moe, threads,
                                   64)
          ->Unit(benchmark::kMillisecond)->UseRealTime();
      benchmark::RegisterBenchmark(("threads_prefill/MoE8x2/T128" + t).c_str(),
                                   threads_prefill<tformer::configs::Mixtral>, small_moe, threads,
                                   128)
          ->Unit(benchmark::kMillisecond)->UseRealTime();
      // TrafficVLM (2 KV heads, cross-attention to 196 image tokens) at its own size.
      benchmark::RegisterBenchmark(("threads_decode/TrafficVLM/ctx64" + t).c_str(),
                                   threads_decode<tformer::configs::TrafficVLM>, tformer::Dims{},
                                   threads, 64)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
      benchmark::RegisterBenchmark(("threads_prefill/TrafficVLM/T128" + t).c_str(),
                                   threads_prefill<tformer::configs::TrafficVLM>, tformer::Dims{},
                                   threads, 128)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
      // The read ceiling of 110M's f32 weights (one decode token's bytes) on as many threads.
      tformer::OwnedWeights<tformer::configs::Llama2c> w(stories110m, 1);
      const std::size_t bytes = weight_bytes_per_token(w.view());
      benchmark::RegisterBenchmark(("threads_read/110M" + t).c_str(),
                                   [bytes, threads](benchmark::State& st) {
                                     const tformer::ThreadTeam team(threads);
                                     bench::read_bandwidth_threads(st, bytes, team);
                                   })
          ->Unit(benchmark::kMillisecond)->UseRealTime();
    }
  }
  using TrafficVLM = tformer::configs::TrafficVLM;
  benchmark::RegisterBenchmark("decoder_decode/TrafficVLM/ctx64", decode<TrafficVLM>,
                               tformer::Dims{})
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("decoder_prefill/TrafficVLM/T64", prefill<TrafficVLM>,
                               tformer::Dims{}, 64)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("decoder_decode/stories110M/ctx64", decode<Stories110M>, stories110m)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("decoder_decode/stories110M+conv4/ctx64", decode<Stories110MConv>,
                               stories110m)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("decoder_prefill/stories110M/T256", prefill<Stories110M>,
                               stories110m, 256)
      ->Unit(benchmark::kMillisecond);
  {
    // The ceilings for the same weight bytes.
    tformer::OwnedWeights<TrafficVLM> a({}, 1);
    tformer::OwnedWeights<Stories110M> b(stories110m, 1);
    for (std::size_t bytes : {weight_bytes_per_token(a.view()), weight_bytes_per_token(b.view())}) {
      bench::register_copy(bytes / 1024);
      bench::register_read(bytes / 1024);
    }
  }
  {
    using tformer::WeightType;
    const std::pair<const char*, tformer::Dims> shapes[] = {
        {"15M", {.vocab = 32000, .hidden = 288, .intermediate = 768, .layers = 6, .heads = 6,
                 .kv_heads = 6, .head_dim = 48, .max_positions = 256}},
        {"110M", stories110m},
        {"1.1B", {.vocab = 32000, .hidden = 2048, .intermediate = 5632, .layers = 22,
                  .heads = 32, .kv_heads = 4, .head_dim = 64, .max_positions = 2048}}};
    for (const auto& [name, dims] : shapes)
      for (WeightType type : {WeightType::f32, WeightType::bf16, WeightType::f16, WeightType::q8_0,
                              WeightType::q4_0, WeightType::q4_0x16, WeightType::q8_0x16}) {
        const std::string suffix = std::string(name) + "/" + tformer::type_name(type);
        // <type>+int8, bf16+bf16: the same weights multiplying int8 activations (q8_0, q4_0 and
        // the x16 types, which have no other) or bf16 activations (bf16).
        const bool int8 =
            type == WeightType::q8_0 || type == WeightType::q4_0 || tformer::is_x16(type);
        for (tformer::Activations a : {tformer::Activations::f32, tformer::Activations::int8,
                                       tformer::Activations::bf16}) {
          if ((a == tformer::Activations::f32 && tformer::is_x16(type)) ||
              (a == tformer::Activations::int8 && !int8) ||
              (a == tformer::Activations::bf16 && type != WeightType::bf16))
            continue;
          const std::string id =
              suffix + (a == tformer::Activations::f32 ? "" : std::string("+") + tformer::activations_name(a));
          benchmark::RegisterBenchmark(("llama_decode/" + id).c_str(), llama_decode, dims, type, a)
              ->Unit(benchmark::kMillisecond);
          benchmark::RegisterBenchmark(("llama_prefill/" + id + "/T128").c_str(), llama_prefill,
                                       dims, type, a, 128)
              ->Unit(benchmark::kMillisecond);
        }
        // The read ceiling of one token's weight bytes in this type (embedding rows excluded,
        // as in weight_bytes_per_token: the LM head, every layer matrix, the norms).
        const tformer::index H = dims.hidden, qd = dims.heads * dims.head_dim,
                             kvd = dims.kv_heads * dims.head_dim;
        auto b = [&](tformer::index rows, tformer::index cols) {
          return std::size_t(tformer::converted_bytes(type, rows, cols));
        };
        const std::size_t bytes = b(dims.vocab, H) +
                                  std::size_t(dims.layers) * (b(qd, H) + 2 * b(kvd, H) + b(H, qd) +
                                                              3 * b(dims.intermediate, H));
        benchmark::RegisterBenchmark(("read/" + suffix).c_str(), [bytes](benchmark::State& st) {
          bench::read_bandwidth(st, bytes);
        })->Unit(benchmark::kMillisecond);
      }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
