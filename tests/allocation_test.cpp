// Entry points that run per token in a decoder allocate nothing, their checks included.
#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

#include "support/allocation_counter.hpp"
#include "support/matrix.hpp"
#include "tformer/model/decoder.hpp"
#include "tformer/nn/attention.hpp"
#include "tformer/nn/linear.hpp"
#include "tformer/nn/matmul.hpp"
#include "tformer/nn/moe.hpp"
#include "tformer/nn/rmsnorm.hpp"
#include "tformer/nn/swiglu.hpp"
#include "tformer/rope/apply.hpp"

using namespace tformer;

TEST_CASE("allocation counter: counts new, the C allocation functions and other threads",
          "[allocation]") {
  void* (*volatile allocate)(std::size_t) = &::operator new;
  CHECK(test::allocations_during([&] { ::operator delete(allocate(8)); }) == 1);
  {  // another thread's allocation counts
    std::atomic<int> stage{0};
    std::thread worker([&] {
      while (stage.load() != 1) std::this_thread::yield();
      ::operator delete(allocate(8));
      stage.store(2);
    });
    const std::size_t before = test::allocations();
    stage.store(1);
    while (stage.load() != 2) std::this_thread::yield();
    CHECK(test::allocations() - before == 1);
    worker.join();
  }
  if (!test::counts_malloc()) {
    WARN("sanitizer build: malloc belongs to AddressSanitizer and is not counted here");
    return;
  }
  void* (*volatile c_malloc)(std::size_t) = &std::malloc;
  void* (*volatile c_calloc)(std::size_t, std::size_t) = &std::calloc;
  void* (*volatile c_aligned)(std::size_t, std::size_t) = &std::aligned_alloc;
  int (*volatile c_posix)(void**, std::size_t, std::size_t) = &posix_memalign;
  CHECK(test::allocations_during([&] { std::free(c_malloc(8)); }) == 1);
  CHECK(test::allocations_during([&] { std::free(c_calloc(2, 8)); }) == 1);
  CHECK(test::allocations_during([&] { std::free(c_aligned(64, 128)); }) == 1);
  CHECK(test::allocations_during([&] {
          void* p = nullptr;
          REQUIRE(c_posix(&p, 64, 128) == 0);
          std::free(p);
        }) == 1);
  // Eigen's heap path (a product too large for its stack buffers) goes through malloc.
  CHECK(test::allocations_during([&] {
          Eigen::MatrixXf a = Eigen::MatrixXf::Ones(300, 300);
          Eigen::MatrixXf b = a * a;
          REQUIRE(b(0, 0) == 300.0f);
        }) >= 3);
}

TEST_CASE("rope/apply: no entry point allocates", "[rope][allocation]") {
  RopeTable table(RopeConfig{.rotary_dim = 64, .max_positions = 4096});
  std::vector<float> q(4 * 8 * 64, 0.5f), k(4 * 2 * 64, 0.25f), out(q.size());
  const std::vector<std::int32_t> ids = {5, 9, 100, 4095}, offsets = {10, 20};
  HeadsView<float> qv(q.data(), 4, 8, 64), kv(k.data(), 4, 2, 64);

  // The counter counts (through a volatile pointer: a new-expression may be optimised away).
  void* (*volatile allocate)(std::size_t) = &::operator new;
  REQUIRE(test::allocations_during([&] { ::operator delete(allocate(8)); }) == 1);
  CHECK(test::allocations_during([&] {
          apply_rope_inplace<RopeLayout::RotateHalf>(table, qv, kv, Positions::offset(4000));
          apply_rope_inplace<RopeLayout::Interleaved>(table, qv, kv, Positions::ids(ids));
          apply_rope_inplace(RopeLayout::Interleaved, table, qv,
                             Positions::per_sequence(offsets, 2), RopeDirection::Inverse);
          apply_rope<RopeLayout::RotateHalf>(table, qv, HeadsView<float>(out.data(), 4, 8, 64),
                                             Positions::offset(0));
        }) == 0);
}

TEST_CASE("nn: decode (one token) allocates nothing", "[nn][allocation]") {
  test::Random rng(3);
  const int H = 256, I = 512, E = 4;
  const auto x = test::Matrix::random(rng, 1, H);
  test::Matrix y(1, H), q(1, 64);
  const auto wq = test::Matrix::random(rng, 64, H), gate = test::Matrix::random(rng, I, H),
             up = test::Matrix::random(rng, I, H), down = test::Matrix::random(rng, H, I),
             router = test::Matrix::random(rng, E, H);
  const std::vector<float> norm_w(H, 1.0f);
  const SwiGluWeights ffn{gate.cview(), up.cview(), down.cview()};
  const TransposedWeights down_t(down.cview());
  FfnWorkspace ws(1, I);
  const std::vector<SwiGluWeights> experts(E, ffn);
  const MoeConfig config{E, 2};
  MoeWorkspace moe_ws(1, H, I, config);
  const MoeConfig gpt_oss{E, 2, RouterKind::TopKThenSoftmax};
  MoeWorkspace shared_ws(1, H, I, gpt_oss, I);
  const auto shared_gate = test::Matrix::random(rng, 1, H);
  const MoeWeights with_shared{router.cview(), experts, ffn, shared_gate.cview()};
  test::Matrix residual = x, heads = test::Matrix::random(rng, 1, 4 * 64);
  const std::vector<float> bias(64, 0.5f), head_w(64, 1.0f);
  std::vector<float> gate_v(I, 0.5f), up_v(I, 2.0f);

  CHECK(test::allocations_during([&] {
          linear(x.cview(), wq.cview(), q.view());
          linear(x.cview(), wq.cview(), bias, q.view());
          rmsnorm_heads(HeadsView<float>(heads.data.data(), 1, 4, 64), head_w, 1e-6f);
          gated_activation(gate_v, up_v, gate_v, {ActivationKind::GeluTanh});
          swiglu_topk(x.cview(), ffn, down_t.view(), TopK::count(7), y.view(), ws);
          moe(x.cview(), with_shared, gpt_oss, y.view(), shared_ws);
          rmsnorm(x.cview(), norm_w, 1e-6f, y.view());
          rmsnorm_residual(residual.view(), x.cview(), norm_w, 1e-6f, y.view());
          swiglu(x.cview(), ffn, y.view(), ws);
          swiglu_topk(x.cview(), ffn, down_t.view(), TopK::fraction(0.25), y.view(), ws);
          moe(x.cview(), {router.cview(), experts, std::nullopt, {}}, config, y.view(), moe_ws);
        }) == 0);
}

TEST_CASE("attention: a decode step (cache write, attention, advance) allocates nothing",
          "[nn][attention][allocation]") {
  test::Random rng(4);
  const int Hkv = 2, g = 4, D = 64, L = 300;
  KVCache cache({.layers = 1, .kv_heads = Hkv, .head_dim = D, .capacity = L});
  KVCache ring({.layers = 1, .kv_heads = Hkv, .head_dim = D, .window = 32});
  AttentionWorkspace ws(g, D);
  const auto k = rng.normal_floats(std::size_t(Hkv) * D),
             q = rng.normal_floats(std::size_t(Hkv) * g * D);
  std::vector<float> o(q.size());
  AttentionOptions windowed;
  windowed.window = 32;
  CHECK(test::allocations_during([&] {
          for (int t = 0; t < 100; ++t) {
            for (KVCache* c : {&cache, &ring}) {
              c->write(0, 0, HeadsView<const float>(k.data(), 1, Hkv, D),
                       HeadsView<const float>(k.data(), 1, Hkv, D));
              attention(HeadsView<const float>(q.data(), 1, Hkv * g, D), c->view(0, 0, t + 1),
                        Positions::offset(t), HeadsView<float>(o.data(), 1, Hkv * g, D), ws,
                        c == &ring ? windowed : AttentionOptions{});
              c->advance(0, 1);
            }
          }
        }) == 0);
}

TEST_CASE("model/decoder: a decode step, a batched decode step and sampling allocate nothing",
          "[decoder][allocation]") {
  struct Small : configs::Qwen3 {};
  const Dims d = {.vocab = 97, .hidden = 64, .intermediate = 96, .layers = 2, .heads = 4,
                  .kv_heads = 2, .head_dim = 16, .max_positions = 64};
  OwnedWeights<Small> weights(d, 5);
  Decoder<Small> dec(weights.view(), d, {.sequences = 2, .capacity = 32});
  std::vector<float> logits(2 * 97);
  const std::vector<std::int32_t> prompt = {1, 2, 3, 4, 5};
  dec.forward(0, prompt, {logits.data(), 1, 97});
  dec.forward(1, prompt, {logits.data(), 1, 97});
  const std::int32_t next[2] = {7, 9};
  const SequenceTokens batch[] = {{0, {&next[0], 1}}, {1, {&next[1], 1}}};
  SamplerWorkspace sws(97);
  Rng rng(3);
  CHECK(test::allocations_during([&] {
          dec.forward(0, std::span(&next[0], 1), {logits.data(), 1, 97});
          dec.forward(batch, {logits.data(), 2, 97});
          (void)sample({logits.data(), 97}, Sampler::with_top_p(0.9f, 0.8f), rng, sws);
        }) == 0);
  // Every sampler step: bias, penalties over a history, each truncation, the log-probability.
  Sampler every = Sampler::with_top_p(0.9f, 0.8f);
  every.top_k = 20;
  every.min_p = 0.05f;
  every.repetition_penalty = 1.2f;
  every.frequency_penalty = 0.1f;
  const LogitBias bias[] = {{3, -INFINITY}, {4, 2.0f}};
  every.logit_bias = bias;
  CHECK(test::allocations_during([&] {
          (void)sample_with_logprob({logits.data(), 97}, every, rng, sws, prompt);
          (void)sample({logits.data(), 97}, Sampler::with_temperature(1.0f), rng, sws, prompt);
          (void)sample({logits.data(), 97}, Sampler::with_min_p(0.1f), rng, sws);
        }) == 0);
  // generate's decode loop: count one whole generation after its first call warmed nothing up.
  std::vector<std::int32_t> out(8);
  std::vector<float> logprobs(8);
  dec.reset(0);
  CHECK(test::allocations_during([&] {
          dec.generate(0, prompt, 8, Sampler::with_top_k(5), rng, out);
        }) == 0);
  dec.reset(0);
  CHECK(test::allocations_during([&] {
          dec.generate(0, prompt, 8, every, rng, out, -1, logprobs);
        }) == 0);
  // On a thread team, with split-K attention over more than one run of keys: nothing either.
  ThreadTeam team(2);
  const Dims long_d = {.vocab = 97, .hidden = 64, .intermediate = 96, .layers = 2, .heads = 4,
                       .kv_heads = 2, .head_dim = 16, .max_positions = 1200};
  OwnedWeights<Small> long_weights(long_d, 7);
  Decoder<Small, ThreadTeam&> threaded(long_weights.view(), long_d,
                                       {.capacity = 1200, .max_tokens = 1100}, team);
  const std::vector<std::int32_t> long_prompt(1100, 3);
  threaded.forward(0, long_prompt, {logits.data(), 1, 97});
  CHECK(test::allocations_during([&] {
          for (int i = 0; i < 4; ++i) threaded.forward(0, std::span(&next[0], 1), {logits.data(), 1, 97});
        }) == 0);
}

TEST_CASE("model/decoder: a decode step on typed weights with int8 activations allocates nothing",
          "[decoder][allocation]") {
  struct Small : configs::Llama {};
  const Dims d = {.vocab = 97, .hidden = 64, .intermediate = 96, .layers = 2, .heads = 4,
                  .kv_heads = 2, .head_dim = 16, .max_positions = 64};
  OwnedWeights<Small> weights(d, 6);
  const ConvertedWeights typed(weights.view(), {.attention = WeightType::q8_0, .ffn = WeightType::q4_0,
                                                .embedding = WeightType::q8_0,
                                                .head = WeightType::bf16,
                                                .activations = Activations::int8});
  Decoder<Small> dec(typed.view(), d, {.capacity = 32});
  std::vector<float> logits(97);
  const std::vector<std::int32_t> prompt = {1, 2, 3, 4, 5};
  dec.forward(0, prompt, {logits.data(), 1, 97});
  const std::int32_t next = 7;
  CHECK(test::allocations_during([&] {
          dec.forward(0, std::span(&next, 1), {logits.data(), 1, 97});
        }) == 0);
}

TEST_CASE("nn/matmul: a prefill GEMM allocates nothing, every weight type and activation",
          "[nn][allocation]") {
  // Beyond Eigen's 128 KiB stack limit for its packed blocks: 96 tokens × 1100 inputs.
  const tformer::index T = 96, in = 1100, out = 70;
  const std::vector<float> x(std::size_t(T * in), 0.5f), w(std::size_t(out * in), 0.25f);
  std::vector<float> y(std::size_t(T * out));
  for (WeightType type : {WeightType::f32, WeightType::bf16, WeightType::f16}) {
    std::vector<std::byte> bytes(std::size_t(tformer::converted_bytes(type, out, in)));
    const tformer::WeightView view = tformer::convert_weights({w.data(), out, in}, type, bytes, "w");
    for (Activations a : {Activations::f32, Activations::bf16}) {
      if (!tformer::takes_activations(view, a)) continue;
      CAPTURE(tformer::type_name(type), tformer::activations_name(a));
      CHECK(test::allocations_during([&] {
              tformer::matmul({x.data(), T, in}, view.with_activations(a), {y.data(), T, out});
            }) == 0);
    }
  }
}

TEST_CASE("model/decoder: a MoE decode step allocates nothing", "[decoder][allocation]") {
  const Dims d = {.vocab = 50, .hidden = 32, .intermediate = 48, .layers = 1, .heads = 4,
                  .kv_heads = 1, .head_dim = 8, .max_positions = 16, .experts = 8, .top_k = 2};
  OwnedWeights<configs::Mixtral> weights(d, 6);
  Decoder<configs::Mixtral> dec(weights.view(), d);
  std::vector<float> logits(50);
  const std::int32_t t[3] = {1, 2, 3};
  dec.forward(0, std::span(t, 2), {logits.data(), 1, 50});
  CHECK(test::allocations_during([&] { dec.forward(0, std::span(t + 2, 1), {logits.data(), 1, 50}); }) == 0);
}

namespace {
struct Streaming : configs::Llama {
  static ModelParams params() {
    return {.rope_base = 500000.0, .attention = {.window = 6, .sinks = 2, .ring = true}};
  }
};
}  // namespace

TEST_CASE("model/decoder: streaming past the capacity with attention sinks allocates nothing",
          "[decoder][allocation][sinks]") {
  const Dims d = {.vocab = 97, .hidden = 64, .intermediate = 96, .layers = 2, .heads = 4,
                  .kv_heads = 2, .head_dim = 16, .max_positions = 64};
  OwnedWeights<Streaming> weights(d, 6);
  Decoder<Streaming> dec(weights.view(), d, {.capacity = 16, .max_tokens = 4});
  std::vector<float> logits(97);
  const std::vector<std::int32_t> prompt = {1, 2, 3, 4};
  for (int i = 0; i < 10; ++i) dec.forward(0, prompt, {logits.data(), 1, 97});  // past 16
  const std::int32_t next = 7;
  Rng rng(4);
  std::vector<std::int32_t> out(40);
  CHECK(test::allocations_during([&] {
          dec.forward(0, std::span(&next, 1), {logits.data(), 1, 97});  // RoPE rows, sink queries
          dec.forward(0, prompt, {logits.data(), 1, 97});
          dec.generate(0, prompt, 40, Sampler::with_top_k(5), rng, out);
        }) == 0);
  CHECK(dec.length(0) > 80);
}

TEST_CASE("model/decoder: steps past L0 with dynamic NTK or LongRoPE, and Gemma 3's two tables, "
          "allocate nothing",
          "[decoder][allocation][rope]") {
  struct Small : configs::Gemma2 {};
  const Dims d = {.vocab = 97, .hidden = 64, .intermediate = 96, .layers = 2, .heads = 4,
                  .kv_heads = 2, .head_dim = 16, .max_positions = 64};
  ModelParams ntk = presets::gemma3(d.hidden);
  ntk.attention = {.window = 4, .global_every = 2};
  ntk.rope_scaling = rope_scaling::DynamicNtk{.factor = 4.0, .original_max_positions = 8};
  ModelParams longrope = ntk;
  longrope.rope_scaling = rope_scaling::LongRope{.short_factor = std::vector<double>(8, 1.0),
                                                 .long_factor = std::vector<double>(8, 3.0),
                                                 .original_max_positions = 8};
  for (const ModelParams& p : {ntk, longrope}) {
    OwnedWeights<Small> weights(d, 7, p);
    Decoder<Small> dec(weights.view(), d, p, {.capacity = 48, .max_tokens = 4});
    std::vector<float> logits(97);
    const std::vector<std::int32_t> prompt = {1, 2, 3, 4, 5, 6};
    Rng rng(4);
    std::vector<std::int32_t> out(30);
    CHECK(test::allocations_during([&] {
            dec.generate(0, prompt, 30, Sampler::with_top_k(5), rng, out);  // 6 + 29 > L0
          }) == 0);
    CHECK(dec.length(0) == 35);
  }
}
