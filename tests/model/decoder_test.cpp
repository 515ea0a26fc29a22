// Decoder<Config> against the plain double decoder of tests/reference/decoder_reference.hpp,
// for every preset on seeded random weights (norm weights randomised too), plus cached decode
// against full recomputation, batches of sequences of different lengths, generation,
// classification and the errors a caller can cause.
//
// Tolerance: a logit passes through L layers of float dot products of length n <= max(H, I),
// each within n·u of exact relative to the sum of its |terms| (u = 2^-24); random rounding grows
// like sqrt(n)·u. Tests allow 1e-5 · (1 + max |logit|): about 20·sqrt(2048)·u·L for L = 4, and
// 8x the worst error measured over these tests (1.3e-6). A window off by one key fails it by
// four orders of magnitude (0.13), so it is tight enough to see a wrong mask, position or norm.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <optional>
#include <cstdint>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <memory>
#include <numeric>
#include <vector>

#include "reference/decoder_reference.hpp"
#include "support/engine_pool.hpp"
#include "support/random.hpp"
#include "tformer/model/decoder.hpp"

using namespace tformer;

namespace {

// Small sizes for the families whose published sizes are dynamic in the preset.
constexpr Dims small = {.vocab = 61, .hidden = 48, .intermediate = 80, .layers = 2, .heads = 4,
                        .kv_heads = 2, .head_dim = 12, .max_positions = 40};

// ModelParams with one change from the Config's defaults.
template <class C, class Change>
ModelParams changed(Change change) {
  ModelParams p = tformer::default_params<C>();
  change(p);
  return p;
}

struct SmallWindow : configs::Mistral {
  static ModelParams params() {
    return changed<configs::Mistral>([](ModelParams& p) { p.attention = {.window = 3}; });
  }
};
struct Hybrid : configs::Llama {  // local window 3, every second layer global
  static ModelParams params() {
    return changed<configs::Llama>(
        [](ModelParams& p) { p.attention = {.window = 3, .global_every = 2}; });
  }
};
struct Gemma : configs::Llama {  // (1 + w) norms, MQA-like group of 4
  static constexpr NormScale norm = NormScale::OnePlusWeight;
  static ModelParams params() {
    return changed<configs::Llama>([](ModelParams& p) { p.eps = 1e-6f; });
  }
};
struct Sparse : configs::Llama {  // top-k SwiGLU keeping 20 of 80
  static constexpr FfnKind ffn = FfnKind::TopK;
  static constexpr tformer::index top_k = 20;
};
struct SmallVLM : configs::Base, configs::Dynamic {  // TrafficVLM's shape, scaled down
  static constexpr tformer::index encoder_width = dynamic;
  static constexpr bool cross_attention = true;
  static constexpr HeadKind head = HeadKind::Tied;
  static ModelParams params() { return {.pad_id = 0}; }
};

// Seed 001's variants: positions through a bias or an absolute table instead of RoPE.
struct Alibi : configs::Llama {
  static constexpr PositionKind positions = PositionKind::None;
  static constexpr BiasKind bias = BiasKind::ALiBi;
};
struct T5Relative : configs::Llama {
  static constexpr PositionKind positions = PositionKind::None;
  static constexpr BiasKind bias = BiasKind::T5;
  static ModelParams params() {  // log buckets from 4 on
    return changed<configs::Llama>([](ModelParams& p) {
      p.t5_buckets = 8;
      p.t5_max_distance = 6;
    });
  }
};
struct Sinusoidal : configs::Llama {
  static constexpr PositionKind positions = PositionKind::Sinusoidal;
  static ModelParams params() {
    return changed<configs::Llama>([](ModelParams& p) { p.position_scale = 2.0f; });
  }
};
struct ConvAttention : configs::Llama {  // causal depthwise convolution, kernel 4
  static constexpr tformer::index conv_kernel = 4;
};
struct Rotary : configs::Qwen3 {  // qk-norm, then 8 Givens rotations and R, then RoPE
  static constexpr tformer::index givens_rotations = 8;
  static constexpr bool rotation_matrix = true;
};
// Seed 001's hybrid local + global attention: a window plus attention sinks (StreamingLLM), in
// a ring cache that keeps the sinks and the last window.
struct Streaming : configs::Llama {  // every layer local: sequences outgrow the capacity
  static ModelParams params() {
    return changed<configs::Llama>(
        [](ModelParams& p) { p.attention = {.window = 5, .sinks = 2, .ring = true}; });
  }
};
struct StreamingOriginal : configs::Llama {  // sinks scored from the query's own position
  static ModelParams params() {
    return changed<configs::Llama>([](ModelParams& p) {
      p.attention = {
          .window = 5, .sinks = 2, .sink_positions = SinkPositions::Original, .ring = true};
    });
  }
};
struct StreamingAlibi : configs::Llama {  // positions only through the bias (MPT-style)
  static constexpr PositionKind positions = PositionKind::None;
  static constexpr BiasKind bias = BiasKind::ALiBi;
  static ModelParams params() {
    return changed<configs::Llama>(
        [](ModelParams& p) { p.attention = {.window = 4, .sinks = 3, .ring = true}; });
  }
};
struct Gemma3Like : configs::Gemma2 {  // Gemma 3's structure; its numbers are ModelParams
  static ModelParams params() { return presets::gemma3(48); }
};
struct StreamingLocalBase : configs::Gemma2 {  // Gemma 3's local layers, every layer local
  static ModelParams params() {
    ModelParams p = presets::gemma3(48, 16.0);
    p.rope_base = 1000.0;
    p.local_rope_base = 20.0;  // large angles at these short lengths
    p.attention = {.window = 5, .sinks = 2, .ring = true};
    return p;
  }
};
struct StreamingNtk : configs::Llama {  // the scaled base grows with every pass past L0 = 8
  static ModelParams params() {
    return changed<configs::Llama>([](ModelParams& p) {
      p.rope_base = 100.0;
      p.rope_scaling = tformer::rope_scaling::DynamicNtk{.factor = 3.0, .original_max_positions = 8};
      p.attention = {
          .window = 5, .sinks = 2, .sink_positions = SinkPositions::Original, .ring = true};
    });
  }
};
struct SinksFull : configs::Llama {  // window 3 and 2 sinks over a full cache (no ring)
  static ModelParams params() {
    return changed<configs::Llama>([](ModelParams& p) { p.attention = {.window = 3, .sinks = 2}; });
  }
};
struct HybridSinks : configs::Qwen3 {  // local layers in a ring, every second layer global
  static ModelParams params() {
    return changed<configs::Qwen3>([](ModelParams& p) {
      p.attention = {.window = 4, .global_every = 2, .sinks = 1, .ring = true};
    });
  }
};
constexpr Dims six_heads = {.vocab = 61, .hidden = 48, .intermediate = 80, .layers = 2,
                            .heads = 6, .kv_heads = 3, .head_dim = 8, .max_positions = 40};

// Random norm weights around their identity, so that every norm is exercised.
template <class C>
void randomise_norms(OwnedWeights<C>& w, std::uint64_t seed) {
  test::Random rng(seed);
  const float base = C::norm == NormScale::Weight ? 1.0f : 0.0f;
  auto perturb = [&](std::span<const float> s) {
    float* p = OwnedWeights<C>::mut(s);
    for (std::size_t i = 0; i < s.size(); ++i) p[i] = base + float(rng.uniform(-0.5, 0.5));
  };
  const ModelWeights& v = w.view();
  perturb(v.final_norm);
  for (const LayerWeights& l : v.layers)  // conv kernel and bias of order 1
    for (tformer::index i = 0; i < l.conv.rows() * l.conv.cols(); ++i) {
      OwnedWeights<C>::mut(l.conv)[i] = float(rng.uniform(-1.0, 1.0));
      if (i < tformer::index(l.conv_bias.size()))
        OwnedWeights<C>::mut(l.conv_bias)[i] = float(rng.uniform(-0.2, 0.2));
    }
  if (v.relative_bias.rows() > 0)  // T5 bias of order 1, so that it matters
    for (tformer::index b = 0; b < v.relative_bias.rows(); ++b)
      for (tformer::index h = 0; h < v.relative_bias.cols(); ++h)
        OwnedWeights<C>::mut(v.relative_bias)[b * v.relative_bias.cols() + h] =
            float(rng.uniform(-2.0, 2.0));
  for (const LayerWeights& l : v.layers)
    for (auto s : {l.attn_norm, l.ffn_norm, l.q_norm, l.k_norm, l.cross_norm, l.post_attn_norm,
                   l.post_ffn_norm})
      perturb(s);
  // A shared expert's gate of order 1 (x · g of order 1): sigmoid then spans (0, 1), so that a
  // gate that ignores x, or the wrong sign, is seen.
  for (const LayerWeights& l : v.layers)
    for (tformer::index i = 0; i < l.shared_expert_gate.cols(); ++i)
      OwnedWeights<C>::mut(l.shared_expert_gate)[i] *= 30.0f;
}

std::vector<std::int32_t> random_tokens(test::Random& rng, int n, tformer::index vocab) {
  std::vector<std::int32_t> t(static_cast<std::size_t>(n));
  for (auto& x : t) x = rng.integer(0, int(vocab) - 1);
  return t;
}

double max_abs(const std::vector<ref::Vec>& rows) {
  double m = 0;
  for (const auto& r : rows)
    for (double x : r) m = std::max(m, std::abs(x));
  return m;
}

// Every row of `got` ([rows, vocab]) against reference rows `want[first + i]`.
void require_logits(const std::vector<float>& got, const std::vector<ref::Vec>& want, tformer::index first,
                    tformer::index rows, tformer::index vocab) {
  const double tol = 1e-5 * (1.0 + max_abs(want));
  double worst = 0;
  for (tformer::index r = 0; r < rows; ++r)
    for (tformer::index j = 0; j < vocab; ++j)
      worst = std::max(worst, std::abs(got[static_cast<std::size_t>(r * vocab + j)] -
                                       want[static_cast<std::size_t>(first + r)][static_cast<std::size_t>(j)]));
  INFO("worst logit error " << worst << ", tolerance " << tol);
  REQUIRE(worst <= tol);
}

// All-token logits of one prefill against the reference, then cached decode step by step.
// With `types`, the matrices are converted to those storage types first (ConvertedWeights), and
// the reference reads the same stored values (decoded by the formats' definitions): the decoder's
// tolerance is unchanged, since every stored value is exactly a float.
// With `params`: the model's runtime parameters (default: the Config's).
template <class C>
void check_preset(const Dims& dims, std::uint64_t seed, int prompt, int steps,
                  std::vector<float> encoder = {}, std::vector<std::uint8_t> valid = {},
                  const tformer::WeightTypes* types = nullptr,
                  const ModelParams& params = tformer::default_params<C>()) {
  OwnedWeights<C> owned(dims, seed, params);
  randomise_norms(owned, seed + 1);
  std::optional<tformer::ConvertedWeights> converted;
  if (types) converted.emplace(owned.view(), *types);
  const tformer::ModelWeights& view = types ? converted->view() : owned.view();
  const Dims d = owned.dims();
  test::Random rng(seed + 2);
  const auto tokens = random_tokens(rng, prompt + steps, d.vocab);
  const auto want = ref::decoder_logits<C>(view, d, tokens, encoder, valid, params);

  const tformer::index S = C::cross_attention ? tformer::index(encoder.size()) / d.encoder_width : 0;
  Decoder<C> dec(view, dims, params,
                 {.sequences = 1, .capacity = prompt + steps, .max_tokens = prompt + steps,
                  .encoder_tokens = S});
  if constexpr (C::cross_attention) dec.set_encoder(0, {encoder.data(), S, d.encoder_width}, valid);
  // One pass over all tokens: every position's logits.
  std::vector<float> all(tokens.size() * static_cast<std::size_t>(d.vocab));
  dec.forward(0, tokens, {all.data(), tformer::index(tokens.size()), d.vocab}, LogitsFor::All);
  require_logits(all, want, 0, tformer::index(tokens.size()), d.vocab);

  // Prefill, then one token at a time: each step's logits equal the full recomputation.
  dec.reset(0);
  if constexpr (C::cross_attention) dec.set_encoder(0, {encoder.data(), S, d.encoder_width}, valid);
  std::vector<float> last(static_cast<std::size_t>(d.vocab));
  dec.forward(0, std::span(tokens).first(static_cast<std::size_t>(prompt)), {last.data(), 1, d.vocab});
  require_logits(last, want, prompt - 1, 1, d.vocab);
  for (int s = 0; s < steps; ++s) {
    INFO("decode step " << s);
    dec.forward(0, std::span(tokens).subspan(static_cast<std::size_t>(prompt + s), 1), {last.data(), 1, d.vocab});
    require_logits(last, want, prompt + s, 1, d.vocab);
  }
  CHECK(dec.length(0) == prompt + steps);
}

}  // namespace

TEST_CASE("decoder: TrafficVLM at its own size matches the reference, prefill and decode",
          "[decoder][preset]") {
  using C = configs::TrafficVLM;
  test::Random rng(5);
  const int S = 24;  // vision tokens (196 in the benchmark; fewer keep the double reference quick)
  auto vision = rng.normal_floats(static_cast<std::size_t>(S) * C::encoder_width);
  std::vector<std::uint8_t> valid(S, 1);
  valid[3] = valid[17] = 0;  // padded patches
  check_preset<C>({}, 11, 6, 3, vision, valid);
}

// gemma.cpp's lesson: numbers that do not change the code are runtime parameters, so one
// compiled Llama-family decoder runs every member of the family.
TEST_CASE("decoder: one compiled Llama decoder runs each family member's parameters",
          "[decoder][params]") {
  Dims d = small;
  d.max_positions = 9000;  // Llama 3.1/3.2 scaling: low frequencies change
  const auto with = [](ModelParams p, auto change) {
    change(p);
    return p;
  };
  // Llama 3.1 and 3.2 differ in the scaling factor (8, 32), which moves only frequencies with
  // wavelengths past 2048 positions: 150 positions reach them (the last section shows it).
  SECTION("Llama 2") { check_preset<configs::Llama>(d, 41, 6, 3, {}, {}, nullptr, presets::llama2()); }
  SECTION("the default capacity is min(max_positions, 4096), not a checkpoint's maximum") {
    OwnedWeights<configs::Llama> w(d, 40);
    CHECK(Decoder<configs::Llama>(w.view(), d).options().capacity == 4096);
    CHECK(Decoder<configs::Llama>(w.view(), small).options().capacity == small.max_positions);
  }
  SECTION("Llama 3.1") {
    check_preset<configs::Llama>(d, 42, 150, 3, {}, {}, nullptr, presets::llama31());
  }
  SECTION("Llama 3.2") {
    check_preset<configs::Llama>(d, 43, 150, 3, {}, {}, nullptr, presets::llama32());
  }
  SECTION("Qwen3 (qk-norm and eps from the parameters)") {
    check_preset<configs::Llama>(d, 44, 6, 3, {}, {}, nullptr, presets::qwen3());
  }
  SECTION("Mistral, window 3 from the parameters") {
    check_preset<configs::Llama>(d, 45, 9, 4, {}, {}, nullptr,
                                 with(presets::mistral_7b_v01(),
                                      [](ModelParams& p) { p.attention.window = 3; }));
  }
  SECTION("partial rotary: the first 6 of 12 values, rotate-half and interleaved") {
    ModelParams p = presets::llama3();
    p.rotary_dim = 6;
    check_preset<configs::Llama>(d, 53, 9, 3, {}, {}, nullptr, p);
    check_preset<configs::LlamaInterleaved>(d, 54, 9, 3, {}, {}, nullptr, p);
  }
  SECTION("partial rotary in a streaming ring (RoPE rows past the table)") {
    ModelParams p = presets::llama3();
    p.rotary_dim = 4;
    p.attention = {.window = 4, .ring = true};
    OwnedWeights<configs::Llama> w(small, 55, p);
    test::Random rng(56);
    const auto tokens = random_tokens(rng, 30, small.vocab);
    Decoder<configs::Llama> dec(w.view(), small, p, {.capacity = 8, .max_tokens = 4});
    const auto want = ref::decoder_logits<configs::Llama>(w.view(), small, tokens, {}, {}, p);
    std::vector<float> last(static_cast<std::size_t>(small.vocab));
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      dec.forward(0, std::span(tokens).subspan(t, 1), {last.data(), 1, small.vocab});
      require_logits(last, want, tformer::index(t), 1, small.vocab);
    }
  }
  SECTION("Mixtral with 4 experts, top-3 (counts from the Dims)") {
    Dims m = small;
    m.experts = 4;
    m.top_k = 3;
    check_preset<configs::Mixtral>(m, 46, 6, 3);
  }
  SECTION("Llama 3.1 and 3.2: each decoder matches its own reference, not the other's") {
    OwnedWeights<configs::Llama> w(d, 47);
    // Sharper attention (q, k × 12), so that positions move the logits well past the tolerance.
    for (const LayerWeights& l : w.view().layers)
      for (const WeightView& m : {l.wq, l.wk})
        for (tformer::index i = 0; i < m.rows() * m.cols(); ++i) OwnedWeights<configs::Llama>::mut(m)[i] *= 12;
    test::Random rng(47);
    const auto tokens = random_tokens(rng, 150, d.vocab);
    const auto decoded = [&](const ModelParams& p) {
      Decoder<configs::Llama> dec(w.view(), d, p, {.capacity = 160});
      std::vector<float> out(static_cast<std::size_t>(d.vocab));
      dec.forward(0, tokens, {out.data(), 1, d.vocab});
      return out;
    };
    const auto got31 = decoded(presets::llama31()), got32 = decoded(presets::llama32());
    const auto want31 = ref::decoder_logits<configs::Llama>(w.view(), d, tokens, {}, {}, presets::llama31());
    const auto want32 = ref::decoder_logits<configs::Llama>(w.view(), d, tokens, {}, {}, presets::llama32());
    require_logits(got31, want31, 149, 1, d.vocab);
    require_logits(got32, want32, 149, 1, d.vocab);
    double apart = 0;  // between the two references
    for (std::size_t j = 0; j < got31.size(); ++j) apart = std::max(apart, std::abs(want31[149][j] - want32[149][j]));
    const double tol = 1e-5 * (1.0 + max_abs(want31));  // require_logits's
    INFO("the references differ by " << apart << ", tolerance " << tol);
    CHECK(apart > 10 * tol);
  }
}

// Gemma's numbers: the embedding scaled by √hidden, a query scale, soft-capped attention scores
// and logits. Each must reach the logits (the reference moves by more than 10 tolerances without
// it), and the decoder must match the reference with all of them.
TEST_CASE("decoder: Gemma's embedding scale, attention scale and soft-caps", "[decoder][params]") {
  ModelParams gemma = tformer::default_params<Gemma>();
  gemma.embed_scale = std::sqrt(float(small.hidden));
  gemma.attention_scale = 0.5f;       // instead of 1/√12
  gemma.attention_softcap = 0.02f;    // small: the random model's scores are small
  gemma.final_softcap = 0.3f;         // the logits are ~0.2
  check_preset<Gemma>(small, 49, 7, 4, {}, {}, nullptr, gemma);
  OwnedWeights<Gemma> w(small, 50, gemma);
  randomise_norms(w, 51);
  test::Random rng(52);
  const auto tokens = random_tokens(rng, 9, small.vocab);
  const auto want = ref::decoder_logits<Gemma>(w.view(), small, tokens, {}, {}, gemma);
  const double tol = 1e-5 * (1.0 + max_abs(want));
  const auto apart = [&](auto change) {
    ModelParams p = gemma;
    change(p);
    const auto other = ref::decoder_logits<Gemma>(w.view(), small, tokens, {}, {}, p);
    double m = 0;
    for (std::size_t t = 0; t < want.size(); ++t)
      for (std::size_t j = 0; j < want[t].size(); ++j) m = std::max(m, std::abs(want[t][j] - other[t][j]));
    return m;
  };
  CHECK(apart([](ModelParams& p) { p.embed_scale = 1; }) > 10 * tol);
  CHECK(apart([](ModelParams& p) { p.attention_scale = 0; }) > 10 * tol);
  CHECK(apart([](ModelParams& p) { p.attention_softcap = 0; }) > 10 * tol);
  CHECK(apart([](ModelParams& p) { p.final_softcap = 0; }) > 10 * tol);
}

// Gemma 2's structure: sandwich norms (post_attn_norm, post_ffn_norm) with (1 + w) scale, GeGLU,
// local and global layers alternating, soft-caps. The post norms must reach the logits (Gemma's
// structure without them is more than 10 tolerances away).
TEST_CASE("decoder: Gemma 2's sandwich norms and GeGLU match the reference", "[decoder][params]") {
  ModelParams p = presets::gemma2(small.hidden, 16.0);
  p.attention.window = 3;
  p.attention_softcap = 0.05f;  // small: the random model's scores are small
  p.final_softcap = 0.3f;
  check_preset<configs::Gemma2>(small, 53, 7, 4, {}, {}, nullptr, p);
  OwnedWeights<configs::Gemma2> w(small, 54, p);
  randomise_norms(w, 55);
  test::Random rng(56);
  const auto tokens = random_tokens(rng, 9, small.vocab);
  const auto want = ref::decoder_logits<configs::Gemma2>(w.view(), small, tokens, {}, {}, p);
  const auto plain = ref::decoder_logits<configs::Gemma>(w.view(), small, tokens, {}, {}, p);
  CHECK(ref::max_difference(want, plain) > 10 * 1e-5 * (1.0 + max_abs(want)));
  // Their weights are checked like every norm's.
  ModelWeights missing = w.view();
  missing.layers[1].post_ffn_norm = {};
  CHECK_THROWS_WITH((Decoder<configs::Gemma2>(missing, small, p)), Catch::Contains("post_ffn_norm"));
}

// Qwen2's q, k, v projection biases and Llama's attention_bias (o too): weights the decoder adds
// when present, in any storage type of the matrices.
TEST_CASE("decoder: attention projection biases", "[decoder][bias]") {
  const ModelParams p = presets::llama3();
  OwnedWeights<configs::Llama> owned(small, 57, p);
  randomise_norms(owned, 58);
  test::Random rng(59);
  const tformer::index qd = small.heads * small.head_dim, kvd = small.kv_heads * small.head_dim;
  std::vector<std::vector<float>> biases;
  const auto bias = [&](tformer::index n) -> std::span<const float> {
    biases.push_back(rng.normal_floats(static_cast<std::size_t>(n), 0.5f));
    return biases.back();
  };
  biases.reserve(4 * std::size_t(small.layers));
  for (const bool with_o : {false, true}) {
    INFO((with_o ? "q, k, v and o biases" : "q, k, v biases (Qwen2)"));
    for (const WeightType type : {WeightType::f32, WeightType::bf16}) {
      const tformer::ConvertedWeights stored(owned.view(), {.attention = type, .ffn = type});
      ModelWeights w = stored.view();
      for (LayerWeights& l : w.layers) {
        l.bq = bias(qd);
        l.bk = bias(kvd);
        l.bv = bias(kvd);
        if (with_o) l.bo = bias(small.hidden);
      }
      const auto tokens = random_tokens(rng, 10, small.vocab);
      const auto want = ref::decoder_logits<configs::Llama>(w, small, tokens, {}, {}, p);
      Decoder<configs::Llama> dec(w, small, p, {.capacity = 16});
      std::vector<float> all(tokens.size() * static_cast<std::size_t>(small.vocab));
      dec.forward(0, tokens, {all.data(), tformer::index(tokens.size()), small.vocab}, LogitsFor::All);
      require_logits(all, want, 0, tformer::index(tokens.size()), small.vocab);
      // Without the biases the logits move: they are used.
      const auto plain = ref::decoder_logits<configs::Llama>(stored.view(), small, tokens, {}, {}, p);
      CHECK(std::abs(plain.back()[0] - want.back()[0]) + std::abs(plain.back()[1] - want.back()[1]) > 1e-4);
      biases.clear();
    }
  }
  ModelWeights bad = owned.view();
  const std::vector<float> short_bias(3, 0.0f);
  bad.layers[1].bk = short_bias;
  REQUIRE_THROWS_WITH((Decoder<configs::Llama>(bad, small, p, {.capacity = 8})),
                      Catch::Contains("layers[1].bk size"));
}

TEST_CASE("decoder: parameters are checked at construction", "[decoder][params][errors]") {
  OwnedWeights<configs::Llama> w(small, 48);
  const auto bad = [&](ModelParams p, const char* name) {
    INFO(name);
    REQUIRE_THROWS_WITH((Decoder<configs::Llama>(w.view(), small, p, {.capacity = 16})),
                        Catch::Contains(name));
  };
  ModelParams p = presets::llama3();
  p.rope_base = 0;
  bad(p, "params.rope_base");
  p = presets::llama3();
  p.eps = std::numeric_limits<float>::quiet_NaN();
  bad(p, "params.eps");
  p = presets::llama3();
  p.attention = {.window = -1};
  bad(p, "params.attention.window");
  p = presets::llama3();
  p.attention = {.sinks = 2};
  bad(p, "params.attention.sinks");
  p = presets::llama3();
  p.pad_id = small.vocab;
  bad(p, "params.pad_id");
  p = presets::llama3();
  p.qk_norm = true;  // the weights have no q_norm
  bad(p, "q_norm");
  p = presets::llama3();
  p.local_rope_base = 0.5;
  bad(p, "params.local_rope_base");
  p = presets::llama3();  // sink queries would rotate with the table's frequencies
  p.rope_scaling = tformer::rope_scaling::DynamicNtk{.factor = 2.0, .original_max_positions = 8};
  p.attention = {.window = 3, .sinks = 2};
  bad(p, "params.attention.sinks");
  p.attention.sink_positions = SinkPositions::Original;  // no sink queries: allowed
  CHECK_NOTHROW(Decoder<configs::Llama>(w.view(), small, p, {.capacity = 16}));
  p = presets::llama3();  // the scaled base is finite at L0 = 8 but overflows at capacity 16
  p.rope_base = 1e300;
  p.rope_scaling = tformer::rope_scaling::DynamicNtk{.factor = 1e8, .original_max_positions = 8};
  CHECK_NOTHROW(tformer::RopeTable(tformer::RopeConfig{.rotary_dim = 12, .max_positions = 16,
                                                       .base = 1e300, .scaling = p.rope_scaling}, 0));
  bad(p, "scaled base");
}

namespace {
// Logits of every pass's tokens against the reference fed in the same passes, and shown to
// differ from one fed in a single pass (so the test sees the per-pass frequencies).
void check_passes(const ModelParams& p, std::uint64_t seed, const std::vector<tformer::index>& passes) {
  OwnedWeights<configs::Llama> w(small, seed, p);
  randomise_norms(w, seed + 1);
  test::Random rng(seed + 2);
  tformer::index T = 0;
  for (tformer::index n : passes) T += n;
  const auto tokens = random_tokens(rng, int(T), small.vocab);
  const auto want =
      ref::decoder_logits<configs::Llama>(w.view(), small, tokens, {}, {}, p, nullptr, passes);
  const auto one_pass = ref::decoder_logits<configs::Llama>(w.view(), small, tokens, {}, {}, p);
  CHECK(ref::max_difference(want, one_pass) > 10 * 1e-5 * (1.0 + max_abs(want)));

  Decoder<configs::Llama> dec(w.view(), small, p, {.capacity = T, .max_tokens = 8});
  tformer::index done = 0;
  for (tformer::index n : passes) {
    INFO("pass of " << n << " tokens from " << done);
    std::vector<float> got(static_cast<std::size_t>(n * small.vocab));
    dec.forward(0, std::span(tokens).subspan(std::size_t(done), std::size_t(n)),
                {got.data(), n, small.vocab}, LogitsFor::All);
    require_logits(got, want, done, n, small.vocab);
    done += n;
  }
  // classify feeds a prompt longer than max_tokens (4) in steps: one pass, the prompt's
  // length (the first step ends at 4, within L0; the prompt past it).
  Decoder<configs::Llama> chunked(w.view(), small, p, {.capacity = T, .max_tokens = 4});
  const tformer::index prompt = std::min<tformer::index>(T, 9);
  const auto whole = ref::decoder_logits<configs::Llama>(
      w.view(), small, std::vector<std::int32_t>(tokens.begin(), tokens.begin() + prompt), {}, {}, p);
  std::vector<std::int32_t> ids(static_cast<std::size_t>(small.vocab));
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = std::int32_t(i);
  std::vector<float> got(ids.size()), probs(ids.size());
  chunked.classify(0, std::span(tokens).first(std::size_t(prompt)), ids, got, probs);
  require_logits(got, whole, prompt - 1, 1, small.vocab);
}
}  // namespace

// Hugging Face recomputes length-dependent frequencies per forward pass from max(position_ids)
// + 1 and rotates that pass's q and k with them; cached keys keep theirs.
TEST_CASE("decoder: dynamic NTK and LongRoPE rotate each pass with its length's frequencies",
          "[decoder][params][rope]") {
  namespace rs = tformer::rope_scaling;
  // Passes within L0 = 6, crossing it, and past it one token at a time.
  const std::vector<tformer::index> passes = {4, 5, 1, 1, 3, 1};
  SECTION("dynamic NTK, factor 4") {
    ModelParams p = presets::llama3();
    p.rope_base = 100.0;  // large angles at these short lengths
    p.rope_scaling = rs::DynamicNtk{.factor = 4.0, .original_max_positions = 6};
    check_passes(p, 81, passes);
  }
  SECTION("LongRoPE: short factors up to L0, long ones past it, s = max_positions / L0") {
    ModelParams p = presets::llama3();
    p.rope_base = 100.0;
    std::vector<double> short_f, long_f;
    for (int i = 0; i < 6; ++i) short_f.push_back(1.0 + 0.1 * i), long_f.push_back(1.5 + 2.0 * i);
    p.rope_scaling = rs::LongRope{.short_factor = short_f, .long_factor = long_f,
                                  .original_max_positions = 6};
    check_passes(p, 82, passes);
  }
  SECTION("partial rotary with dynamic NTK") {
    ModelParams p = presets::llama3();
    p.rope_base = 100.0;
    p.rotary_dim = 8;
    p.rope_scaling = rs::DynamicNtk{.factor = 2.0, .original_max_positions = 5};
    check_passes(p, 83, {3, 4, 1, 2, 1});
  }
}

// Gemma 3: local layers rotate with their own base and no scaling, global ones with the
// model's (rope_theta 1e6, linear factor 8), qk-norm, sandwich norms, 5 local : 1 global.
TEST_CASE("decoder: local layers' own RoPE base (Gemma 3) matches the reference",
          "[decoder][params][rope]") {
  const Dims d = {.vocab = 61, .hidden = 48, .intermediate = 80, .layers = 6, .heads = 4,
                  .kv_heads = 2, .head_dim = 12, .max_positions = 40};
  ModelParams p = presets::gemma3(d.hidden, 16.0);
  p.attention.window = 3;
  p.rope_base = 1000.0;  // large angles at these short lengths
  p.local_rope_base = 20.0;
  check_preset<Gemma3Like>(d, 91, 9, 4, {}, {}, nullptr, p);
  // Without the local base the reference moves: the test sees which table a layer uses.
  OwnedWeights<Gemma3Like> w(d, 91, p);
  randomise_norms(w, 92);
  test::Random rng(93);
  const auto tokens = random_tokens(rng, 13, d.vocab);
  const auto want = ref::decoder_logits<Gemma3Like>(w.view(), d, tokens, {}, {}, p);
  ModelParams same = p;
  same.local_rope_base = 0;
  const auto plain = ref::decoder_logits<Gemma3Like>(w.view(), d, tokens, {}, {}, same);
  CHECK(ref::max_difference(want, plain) > 10 * 1e-5 * (1.0 + max_abs(want)));
  SECTION("no window: every layer global, rotated with the model's table") {
    ModelParams global = p;
    global.attention = {};
    check_preset<Gemma3Like>(d, 95, 6, 3, {}, {}, nullptr, global);
  }
  SECTION("every layer local, in a ring: the local table alone") {
    ModelParams ring = p;
    ring.attention = {.window = 3, .ring = true};
    check_preset<Gemma3Like>(d, 94, 9, 4, {}, {}, nullptr, ring);
  }
}

TEST_CASE("decoder: family presets match the reference on small random models",
          "[decoder][preset]") {
  SECTION("Llama") { check_preset<configs::Llama>(small, 21, 7, 4); }
  SECTION("Llama 3.1 scaling") {
    Dims d = small;
    d.max_positions = 9000;  // the scaling changes low frequencies; positions stay small here
    check_preset<configs::Llama>(d, 22, 5, 3, {}, {}, nullptr, tformer::presets::llama31());
  }
  SECTION("Qwen3 (qk-norm)") { check_preset<configs::Qwen3>(small, 23, 6, 3); }
  SECTION("Mistral (window 4096)") { check_preset<configs::Mistral>(small, 24, 6, 3); }
  SECTION("Mistral-like window 3") { check_preset<SmallWindow>(small, 25, 9, 4); }
  SECTION("hybrid local + global") { check_preset<Hybrid>(small, 26, 9, 4); }
  SECTION("window 3 with 2 attention sinks, full cache") { check_preset<SinksFull>(small, 39, 9, 5); }
  SECTION("Mixtral (MoE 8, top-2)") {
    Dims d = small;
    d.experts = 8;
    d.top_k = 2;
    check_preset<configs::Mixtral>(d, 27, 6, 3);
  }
  SECTION("Qwen2-MoE-like: 4 experts of 32, top-2 unnormalised, a gated shared expert of 56") {
    Dims d = small;
    d.intermediate = 32;
    d.experts = 4;
    d.top_k = 2;
    d.shared_intermediate = 56;
    ModelParams p = presets::mixtral();
    p.renormalize = false;
    check_preset<configs::Mixtral>(d, 30, 6, 3, {}, {}, nullptr, p);
    // The same weights as check_preset's: the shared expert, and its gate's dependence on x,
    // move the reference by more than 10 tolerances, so the decoder's match above sees both.
    OwnedWeights<configs::Mixtral> w(d, 30, p);
    randomise_norms(w, 31);
    test::Random rng(32);
    const auto tokens = random_tokens(rng, 9, d.vocab);
    const auto want = ref::decoder_logits<configs::Mixtral>(w.view(), d, tokens, {}, {}, p);
    const auto apart = [&](const ModelWeights& other) {
      const auto got = ref::decoder_logits<configs::Mixtral>(other, d, tokens, {}, {}, p);
      double m = 0;
      for (std::size_t t = 0; t < want.size(); ++t)
        for (std::size_t j = 0; j < want[t].size(); ++j) m = std::max(m, std::abs(want[t][j] - got[t][j]));
      return m;
    };
    ModelWeights none = w.view(), constant = w.view();
    const std::vector<float> zeros(std::size_t(d.hidden), 0.0f);
    for (LayerWeights& l : none.layers) {
      l.shared_expert = {};
      l.shared_expert_gate = {};
    }
    for (LayerWeights& l : constant.layers)  // sigmoid(0) = 1/2 whatever x
      l.shared_expert_gate = MatrixView<const float>(zeros.data(), 1, d.hidden);
    const double tol = 1e-5 * (1.0 + max_abs(want));
    CHECK(apart(none) > 10 * tol);
    CHECK(apart(constant) > 10 * tol);
    // Weights the Dims do not announce are refused, not ignored.
    Dims plain = d;
    plain.shared_intermediate = 0;
    CHECK_THROWS_WITH((Decoder<configs::Mixtral>(w.view(), plain, p)), Catch::Contains("shared_expert"));
  }
  SECTION("Llama2c (interleaved)") { check_preset<configs::Llama2c>(small, 28, 6, 3); }
  SECTION("Gemma-style (1 + w) norms") { check_preset<Gemma>(small, 29, 5, 3); }
  SECTION("top-k SwiGLU") {
    Dims d = small;
    d.top_k = 20;
    check_preset<Sparse>(d, 30, 5, 3);
  }
  SECTION("ALiBi, 6 heads (not a power of two)") { check_preset<Alibi>(six_heads, 33, 9, 4); }
  SECTION("T5 bucketed bias") { check_preset<T5Relative>(six_heads, 34, 10, 5); }
  SECTION("sinusoidal absolute positions") { check_preset<Sinusoidal>(small, 35, 7, 4); }
  SECTION("rotary block: Givens rotations and R before RoPE") {
    check_preset<Rotary>(small, 38, 7, 4);
  }
  SECTION("convolution + attention, kernel 4 (decode streams the conv state)") {
    check_preset<ConvAttention>(small, 36, 2, 6);  // a prompt shorter than the kernel, too
    check_preset<ConvAttention>(small, 37, 9, 3);
  }
  SECTION("cross-attention with an encoder projection 20 → 48") {
    Dims d = small;
    d.encoder_width = 20;
    test::Random rng(31);
    const auto enc = rng.normal_floats(7 * 20);
    check_preset<SmallVLM>(d, 32, 5, 3, enc, {1, 1, 0, 1, 1, 1, 0});
  }
}

TEST_CASE("decoder: typed weights (bf16, f16, q8_0, q4_0, mixed) match the reference",
          "[decoder][typed]") {
  using tformer::WeightType;
  constexpr Dims blocks = {.vocab = 61, .hidden = 64, .intermediate = 96, .layers = 2, .heads = 4,
                           .kv_heads = 2, .head_dim = 16, .max_positions = 40};
  SECTION("Llama, every matrix q8_0") {
    const tformer::WeightTypes t{WeightType::q8_0, WeightType::q8_0, WeightType::q8_0,
                                 WeightType::q8_0, WeightType::q8_0};
    check_preset<configs::Llama>(blocks, 41, 7, 4, {}, {}, &t);
  }
  SECTION("Llama, mixed: q8_0 attention, q4_0 FFN, bf16 embedding, f16 head") {
    const tformer::WeightTypes t{.attention = WeightType::q8_0, .ffn = WeightType::q4_0,
                                 .embedding = WeightType::bf16, .head = WeightType::f16};
    check_preset<configs::Llama>(blocks, 42, 7, 4, {}, {}, &t);
  }
  SECTION("Llama2c, tied head, q4_0 embedding") {
    const tformer::WeightTypes t{.attention = WeightType::bf16, .ffn = WeightType::f16,
                                 .embedding = WeightType::q4_0};
    check_preset<configs::Llama2c>(blocks, 43, 6, 3, {}, {}, &t);
  }
  SECTION("Mixtral, q4_0 experts") {
    Dims d = blocks;
    d.experts = 8;
    d.top_k = 2;
    const tformer::WeightTypes t{.attention = WeightType::f16, .ffn = WeightType::q4_0};
    check_preset<configs::Mixtral>(d, 44, 6, 3, {}, {}, &t);
  }
  SECTION("Qwen3, bf16") {
    const tformer::WeightTypes t{WeightType::bf16, WeightType::bf16, WeightType::bf16,
                                 WeightType::bf16, WeightType::bf16};
    check_preset<configs::Qwen3>(blocks, 45, 6, 3, {}, {}, &t);
  }
  SECTION("top-k SwiGLU, q8_0 FFN (down transposed from its stored values)") {
    Dims d = blocks;
    d.top_k = 20;
    const tformer::WeightTypes t{.ffn = WeightType::q8_0};
    check_preset<Sparse>(d, 46, 5, 3, {}, {}, &t);
  }
  SECTION("cross-attention and encoder projection 20 → 64 in bf16") {
    Dims d = blocks;
    d.encoder_width = 20;
    test::Random rng(47);
    const auto enc = rng.normal_floats(7 * 20);
    const tformer::WeightTypes t{.attention = WeightType::q4_0, .cross = WeightType::bf16};
    check_preset<SmallVLM>(d, 48, 5, 3, enc, {1, 1, 0, 1, 1, 1, 0}, &t);
  }
  SECTION("a matrix that is not f32 cannot be converted again") {
    OwnedWeights<configs::Llama> owned(blocks, 49);
    const tformer::WeightTypes t{.ffn = WeightType::q8_0};
    const tformer::ConvertedWeights once(owned.view(), t);
    REQUIRE_THROWS_WITH(tformer::ConvertedWeights(once.view(), t),
                        Catch::Matchers::Contains("layers[0].ffn.gate type: expected f32, got q8_0"));
  }
}

TEST_CASE("decoder: int8 and bf16 activations stay close to the float reference, prefill and decode",
          "[decoder][typed][int8][bf16]") {
  // Each projection with int8 activations is the exact integer product of x quantized per block
  // of 32 (tests/nn/matmul_test.cpp checks that, and its distance from the float product, per
  // matmul). Through the network the logits move by the quantization of x, about 1/254 of each
  // block's largest |x| per projection: measured 5e-4–4e-3 of (1 + the logits' scale) here. The
  // tolerance, 2e-2 of it, catches what a wrong scale, block or nibble order does (errors of O(1)).
  using tformer::WeightType;
  constexpr Dims blocks = {.vocab = 61, .hidden = 64, .intermediate = 96, .layers = 2, .heads = 4,
                           .kv_heads = 2, .head_dim = 16, .max_positions = 40};
  auto run = [&]<class C>(const Dims& dims, std::uint64_t seed, const tformer::WeightTypes& t) {
    OwnedWeights<C> owned(dims, seed);
    randomise_norms(owned, seed + 1);
    const tformer::ConvertedWeights converted(owned.view(), t);
    tformer::WeightTypes f = t;  // the same values with float activations (x16 types unpacked)
    f.activations = tformer::Activations::f32;
    for (WeightType* k : {&f.attention, &f.ffn, &f.embedding, &f.head, &f.cross})
      if (*k == WeightType::q4_0x16) *k = WeightType::q4_0;
      else if (*k == WeightType::q8_0x16) *k = WeightType::q8_0;
    const tformer::ConvertedWeights exact(owned.view(), f);
    const Dims d = owned.dims();
    test::Random rng(seed + 2);
    const auto tokens = random_tokens(rng, 10, d.vocab);
    const auto want = ref::decoder_logits<C>(exact.view(), d, tokens);
    const double tol = 2e-2 * (1.0 + max_abs(want));
    Decoder<C> dec(converted.view(), dims, {.capacity = 10});
    std::vector<float> all(tokens.size() * std::size_t(d.vocab)), last(std::size_t(d.vocab));
    dec.forward(0, tokens, {all.data(), 10, d.vocab}, LogitsFor::All);
    double worst = 0;
    for (std::size_t i = 0; i < all.size(); ++i)
      worst = std::max(worst, std::abs(all[i] - want[i / std::size_t(d.vocab)][i % std::size_t(d.vocab)]));
    dec.reset(0);
    for (std::size_t p = 0; p < tokens.size(); ++p) {  // one token at a time
      dec.forward(0, std::span(tokens).subspan(p, 1), {last.data(), 1, d.vocab});
      for (std::size_t j = 0; j < last.size(); ++j) worst = std::max(worst, std::abs(last[j] - want[p][j]));
    }
    INFO("worst logit error " << worst << ", tolerance " << tol << ", scale " << max_abs(want));
    REQUIRE(worst <= tol);
    // The int8 / bf16 path ran: the same weights with float activations give other logits.
    Decoder<C> float_dec(exact.view(), dims, {.capacity = 10});
    std::vector<float> float_all(all.size());
    float_dec.forward(0, tokens, {float_all.data(), 10, d.vocab}, LogitsFor::All);
    dec.reset(0);
    dec.forward(0, tokens, {all.data(), 10, d.vocab}, LogitsFor::All);
    double path = 0;
    for (std::size_t i = 0; i < all.size(); ++i) path = std::max(path, double(std::abs(all[i] - float_all[i])));
    INFO("largest change from float activations " << path);
    REQUIRE(path > 1e-5 * (1.0 + max_abs(want)));
  };
  SECTION("Llama, q8_0 attention, q4_0 FFN, q8_0 embedding and tied head") {
    run.operator()<configs::Llama2c>(blocks, 61, {.attention = WeightType::q8_0, .ffn = WeightType::q4_0,
                                                  .embedding = WeightType::q8_0,
                                                  .activations = tformer::Activations::int8});
  }
  SECTION("Mixtral, q4_0 experts, bf16 attention (stays float)") {
    Dims d = blocks;
    d.experts = 8;
    d.top_k = 2;
    run.operator()<configs::Mixtral>(d, 62, {.attention = WeightType::bf16, .ffn = WeightType::q4_0,
                                             .activations = tformer::Activations::int8});
  }
  SECTION("Llama, q8_0x16 attention, q4_0x16 FFN, q8_0x16 tied head (vocab 61: a padded group)") {
    run.operator()<configs::Llama2c>(blocks, 65,
                                     {.attention = WeightType::q8_0x16,
                                      .ffn = WeightType::q4_0x16,
                                      .embedding = WeightType::q8_0x16,
                                      .activations = tformer::Activations::int8});
  }
  SECTION("Mixtral, q4_0x16 experts, f32 activations elsewhere") {
    Dims d = blocks;
    d.experts = 8;
    d.top_k = 2;
    run.operator()<configs::Mixtral>(d, 66,
                                     {.attention = WeightType::q8_0, .ffn = WeightType::q4_0x16});
  }
  SECTION("Qwen3-shaped, bf16 everywhere with bf16 activations (x rounded to bf16, 2^-8 relative)") {
    run.operator()<configs::Qwen3>(blocks, 64, {.attention = WeightType::bf16, .ffn = WeightType::bf16,
                                                .embedding = WeightType::bf16, .head = WeightType::bf16,
                                                .activations = tformer::Activations::bf16});
  }
  SECTION("set_activations on a model's views: the q8/q4 ones take int8, the others stay f32") {
    OwnedWeights<configs::Llama> owned(blocks, 63);
    const tformer::ConvertedWeights c(owned.view(), {.attention = WeightType::q8_0, .ffn = WeightType::bf16});
    tformer::ModelWeights w = c.view();
    tformer::set_activations(w, tformer::Activations::int8);
    CHECK(w.layers[1].wq.activations() == tformer::Activations::int8);
    CHECK(w.layers[1].ffn.up.activations() == tformer::Activations::f32);
    CHECK(w.embedding.activations() == tformer::Activations::f32);
    tformer::set_activations(w, tformer::Activations::bf16);  // bf16: the bf16 ones; the rest f32
    CHECK(w.layers[1].wq.activations() == tformer::Activations::f32);
    CHECK(w.layers[1].ffn.up.activations() == tformer::Activations::bf16);
    const tformer::ConvertedWeights x16(owned.view(), {.ffn = WeightType::q4_0x16});
    w = x16.view();  // q4_0x16 has int8 activations alone: it keeps them
    CHECK(w.layers[0].ffn.down.activations() == tformer::Activations::int8);
    tformer::set_activations(w, tformer::Activations::f32);
    CHECK(w.layers[0].ffn.down.activations() == tformer::Activations::int8);
    CHECK(w.layers[0].wq.activations() == tformer::Activations::f32);
  }
}

TEST_CASE("decoder: RepackedWeights turns q4_0 and q8_0 matrices into x16 ones of the same values",
          "[decoder][typed][int8]") {
  // Every repacked matrix holds its q4_0 or q8_0 values exactly; the bf16 head, which has no x16
  // layout, is kept as given. The logits then differ only through the
  // float summation order of each matmul, but a last-bit change of one layer's output may flip
  // one rounding of the next layer's int8 quantization of x (a block's term moves by about
  // 1/254), so they are held to the int8 decoder test's bound, 2e-2 of (1 + the logits' scale):
  // a wrong block, row or nibble moves them by O(1).
  using tformer::WeightType;
  constexpr Dims d = {.vocab = 61,
                      .hidden = 64,
                      .intermediate = 96,
                      .layers = 2,
                      .heads = 4,
                      .kv_heads = 2,
                      .head_dim = 16,
                      .max_positions = 40};
  OwnedWeights<configs::Llama> owned(d, 67);
  const tformer::ConvertedWeights q4(owned.view(), {.attention = WeightType::q8_0,
                                                    .ffn = WeightType::q4_0,
                                                    .embedding = WeightType::q4_0,
                                                    .head = WeightType::bf16,
                                                    .activations = tformer::Activations::int8});
  const tformer::RepackedWeights x16(q4.view());
  CHECK(x16.view().layers[1].ffn.down.type() == WeightType::q4_0x16);
  CHECK(x16.view().layers[1].wq.type() == WeightType::q8_0x16);
  CHECK(x16.view().lm_head.type() == WeightType::bf16);  // no x16 layout: kept
  CHECK(x16.view().lm_head.data() == q4.view().lm_head.data());
  CHECK(x16.view().embedding.data() == q4.view().embedding.data());  // looked up only: kept
  CHECK(std::string(x16.view().layers[0].ffn.up.name()) == "layers[0].ffn.up");
  const auto same_values = [](const tformer::WeightView& a, const tformer::WeightView& b) {
    std::vector<float> ra(std::size_t(a.cols())), rb(ra.size());
    for (tformer::index r = 0; r < a.rows(); ++r) {
      tformer::dequantize_row(a, r, ra);
      tformer::dequantize_row(b, r, rb);
      if (ra != rb) return false;
    }
    return a.rows() == b.rows();
  };
  for (std::size_t l = 0; l < 2; ++l) {
    for (auto m : {&tformer::SwiGluWeights::gate, &tformer::SwiGluWeights::up,
                   &tformer::SwiGluWeights::down})
      CHECK(same_values(q4.view().layers[l].ffn.*m, x16.view().layers[l].ffn.*m));
    for (auto m : {&tformer::LayerWeights::wq, &tformer::LayerWeights::wk,
                   &tformer::LayerWeights::wv, &tformer::LayerWeights::wo})
      CHECK(same_values(q4.view().layers[l].*m, x16.view().layers[l].*m));
  }
  CHECK(same_values(q4.view().lm_head, x16.view().lm_head));
  test::Random rng(68);
  const auto tokens = random_tokens(rng, 8, d.vocab);
  std::vector<float> want(tokens.size() * std::size_t(d.vocab)), got(want.size());
  Decoder<configs::Llama> a(q4.view(), d, {.capacity = 8}), b(x16.view(), d, {.capacity = 8});
  a.forward(0, tokens, {want.data(), 8, d.vocab}, LogitsFor::All);
  b.forward(0, tokens, {got.data(), 8, d.vocab}, LogitsFor::All);
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    worst = std::max(worst, double(std::abs(want[i] - got[i])));
    scale = std::max(scale, double(std::abs(want[i])));
  }
  INFO("worst " << worst << " of scale " << scale);
  REQUIRE(worst <= 2e-2 * (1 + scale));
}

TEST_CASE(
    "decoder: f16, bf16 and q8 KV caches stay close to the float reference, prefill and "
    "decode",
    "[decoder][kv16][kvq8]") {
  // Each cached key and value is rounded once (2^-11 relative for f16, 2^-8 for bf16, half of
  // max|row| / 127 for q8); per attention call the output stays within the bound
  // nn/attention_test checks. Through the network the logits moved by at most 6e-5 (f16), 7e-4
  // (bf16) and 1.4e-3 (q8) of (1 + the logits' scale) here. The tolerance, about 10× that (1e-3
  // for f16, 1e-2 for bf16, 2e-2 for q8), catches what a wrong element type, offset, head, scale
  // or ring slot does (errors of O(1)).
  const auto type = GENERATE(tformer::KVType::f16, tformer::KVType::bf16, tformer::KVType::q8);
  CAPTURE(tformer::kv_type_name(type));
  const auto run = [&]<class C>(const Dims& dims, std::uint64_t seed, int prompt, int steps,
                                const DecoderOptions& base, std::vector<float> encoder = {}) {
    OwnedWeights<C> owned(dims, seed);
    randomise_norms(owned, seed + 1);
    const Dims d = owned.dims();
    test::Random rng(seed + 2);
    const auto tokens = random_tokens(rng, prompt + steps, d.vocab);
    const std::vector<std::uint8_t> valid(encoder.size() / std::size_t(std::max<tformer::index>(1, d.encoder_width)), 1);
    const auto want = ref::decoder_logits<C>(owned.view(), d, tokens, encoder, valid);
    const double tol = (type == tformer::KVType::f16    ? 1e-3
                        : type == tformer::KVType::bf16 ? 1e-2
                                                        : 2e-2) *
                       (1.0 + max_abs(want));
    const tformer::index S = C::cross_attention ? tformer::index(valid.size()) : 0;
    DecoderOptions options = base;
    options.encoder_tokens = S;
    options.kv_type = type;
    Decoder<C> dec(owned.view(), dims, options);
    if (dec.full_cache()) CHECK(dec.full_cache()->config().type == type);
    if (dec.ring_cache()) CHECK(dec.ring_cache()->config().type == type);
    const auto set_encoder = [&](auto& decoder) {
      if constexpr (C::cross_attention) decoder.set_encoder(0, {encoder.data(), S, d.encoder_width}, valid);
    };
    // Prompt logits from one prefill, then one token at a time.
    const auto logits_of = [&](auto& decoder) {
      set_encoder(decoder);
      std::vector<float> all(tokens.size() * std::size_t(d.vocab));
      decoder.forward(0, std::span(tokens).first(std::size_t(prompt)), {all.data(), prompt, d.vocab},
                      LogitsFor::All);
      for (int p = prompt; p < prompt + steps; ++p)
        decoder.forward(0, std::span(tokens).subspan(std::size_t(p), 1),
                        {all.data() + std::ptrdiff_t(p) * d.vocab, 1, d.vocab});
      return all;
    };
    const std::vector<float> all = logits_of(dec);
    double worst = 0;
    for (std::size_t i = 0; i < all.size(); ++i)
      worst = std::max(worst, std::abs(all[i] - want[i / std::size_t(d.vocab)][i % std::size_t(d.vocab)]));
    INFO("worst logit error " << worst << ", tolerance " << tol << ", scale " << max_abs(want));
    REQUIRE(worst <= tol);
    // The 16-bit path ran: an f32 cache gives other logits.
    options.kv_type = tformer::KVType::f32;
    Decoder<C> exact(owned.view(), dims, options);
    const std::vector<float> other = logits_of(exact);
    double path = 0;
    for (std::size_t i = 0; i < all.size(); ++i) path = std::max(path, double(std::abs(all[i] - other[i])));
    INFO("largest change from the f32 cache " << path);
    REQUIRE(path > 1e-7 * (1.0 + max_abs(want)));
  };
  SECTION("Llama, a full cache, decode past 512 keys (split-K parts), head_dim 32") {
    Dims d = small;
    d.hidden = 64;
    d.heads = 2;
    d.kv_heads = 1;
    d.head_dim = 32;
    d.max_positions = 600;
    run.operator()<configs::Llama>(d, 91, 520, 4, {.capacity = 524, .max_tokens = 520});
  }
  SECTION("local layers with sinks in a ring beside global layers") {
    run.operator()<HybridSinks>(small, 92, 9, 20, {.capacity = 30, .max_tokens = 9});
  }
  SECTION("cross-attention over encoder states (TrafficVLM's shape, scaled down)") {
    Dims d = small;
    d.encoder_width = 20;
    test::Random rng(93);
    run.operator()<SmallVLM>(d, 94, 7, 5, {.capacity = 12}, rng.normal_floats(33 * 20));
  }
}

// A step's trace (model/trace.hpp) against the reference's: hidden[l] row r is the reference's
// residual stream of that row's token before layer l, final_normed its final RMSNorm, and
// self_attention[l][i] / cross_attention[l][i] the reference's softmax weights of row
// attention_rows[i] (over the keys its sequence holds after the step).
// Tolerances, 10–20× the worst measured here: hidden states carry the logits' rounding, at
// most 1.1e-8 at a scale of 0.1, tolerance 2e-7 · (1 + scale); the final norm divides by an
// RMS near 0.05, 4.8e-7 measured at a scale near 4, tolerance 2e-6 · (1 + scale). A weight is a
// softmax probability: a score error δ moves it by at most p·δ; worst measured 1.7e-7,
// tolerance 2e-6 absolute. A key off by one, a wrong head, layer or mask moves them by O(0.1).
template <class C>
void check_trace(const Decoder<C>& dec, const StepTrace& trace, const ModelWeights& w,
                 const ref::DecoderTrace& want, std::span<const tformer::index> positions) {
  const Dims& d = dec.dims();
  const bool one_plus = C::norm == NormScale::OnePlusWeight;
  const auto rows = tformer::index(positions.size());
  if (trace.hidden_states) {
    REQUIRE(trace.hidden.size() == std::size_t(d.layers + 1));
    double scale = 0, worst = 0;
    for (tformer::index l = 0; l <= d.layers; ++l) {
      const TraceMatrix& got = trace.hidden[std::size_t(l)];
      REQUIRE(got.rows == rows);
      REQUIRE(got.cols == d.hidden);
      for (tformer::index r = 0; r < rows; ++r) {
        const ref::Vec& x = want.hidden[std::size_t(l)][std::size_t(positions[std::size_t(r)])];
        for (tformer::index c = 0; c < d.hidden; ++c) {
          scale = std::max(scale, std::abs(x[std::size_t(c)]));
          worst = std::max(worst, std::abs(got.row(r)[c] - x[std::size_t(c)]));
        }
      }
    }
    INFO("worst hidden-state error " << worst << ", scale " << scale);
    REQUIRE(worst <= 2e-7 * (1 + scale));
    worst = scale = 0;
    REQUIRE(trace.final_normed.rows == rows);
    for (tformer::index r = 0; r < rows; ++r) {
      const ref::Vec normed = ref::rmsnorm(
          want.hidden[std::size_t(d.layers)][std::size_t(positions[std::size_t(r)])], w.final_norm,
          dec.params().eps, one_plus);
      for (tformer::index c = 0; c < d.hidden; ++c) {
        scale = std::max(scale, std::abs(normed[std::size_t(c)]));
        worst = std::max(worst, std::abs(trace.final_normed.row(r)[c] - normed[std::size_t(c)]));
      }
    }
    INFO("worst final-norm error " << worst << ", scale " << scale);
    REQUIRE(worst <= 2e-6 * (1 + scale));
  } else {
    CHECK(trace.hidden.empty());
  }
  const auto weights = [&](const std::vector<std::vector<TraceMatrix>>& got,
                           const std::vector<std::vector<std::vector<ref::Vec>>>& ref_weights,
                           const auto& keys_of) {
    REQUIRE(got.size() == std::size_t(d.layers));
    double worst = 0, total = 0;
    for (tformer::index l = 0; l < d.layers; ++l) {
      REQUIRE(got[std::size_t(l)].size() == trace.attention_rows.size());
      for (std::size_t i = 0; i < trace.attention_rows.size(); ++i) {
        const tformer::index t = positions[std::size_t(trace.attention_rows[i])];
        const TraceMatrix& m = got[std::size_t(l)][i];
        REQUIRE(m.rows == d.heads);
        REQUIRE(m.cols == keys_of(t));
        for (tformer::index h = 0; h < d.heads; ++h) {
          const ref::Vec& p = ref_weights[std::size_t(l)][std::size_t(t)][std::size_t(h)];
          for (tformer::index j = 0; j < m.cols; ++j) {
            worst = std::max(worst, std::abs(m.row(h)[j] - p[std::size_t(j)]));
            total += m.row(h)[j];
          }
        }
      }
    }
    INFO("worst attention-weight error " << worst);
    REQUIRE(worst <= 2e-6);
    // Each head's weights sum to 1 (every traced query sees at least one key).
    CHECK(total == Approx(double(d.layers) * double(d.heads) * double(trace.attention_rows.size())));
  };
  weights(trace.self_attention, want.self, [&](tformer::index) { return dec.length(0); });
  if constexpr (C::cross_attention)
    weights(trace.cross_attention, want.cross,
            [&](tformer::index) { return tformer::index(want.cross[0][0][0].size()); });
  else
    CHECK(trace.cross_attention.empty());
}

TEST_CASE("decoder: a traced step records each layer's hidden states and attention weights",
          "[decoder][trace]") {
  const auto run = [&]<class C>(const Dims& dims, std::uint64_t seed, int prompt, int steps,
                                const DecoderOptions& options, std::vector<float> encoder = {}) {
    OwnedWeights<C> owned(dims, seed);
    randomise_norms(owned, seed + 1);
    const Dims d = owned.dims();
    test::Random rng(seed + 2);
    const auto tokens = random_tokens(rng, prompt + steps, d.vocab);
    const tformer::index S = C::cross_attention ? tformer::index(encoder.size()) / d.encoder_width : 0;
    std::vector<std::uint8_t> valid(std::size_t(S), 1);
    if (S > 2) valid[1] = 0;  // a padded encoder token has weight 0
    ref::DecoderTrace want;
    const auto want_logits = ref::decoder_logits<C>(owned.view(), d, tokens, encoder, valid,
                                                    tformer::default_params<C>(), &want);
    DecoderOptions o = options;
    o.encoder_tokens = S;
    Decoder<C> dec(owned.view(), dims, o), plain(owned.view(), dims, o);
    if constexpr (C::cross_attention)
      for (auto* decoder : {&dec, &plain}) decoder->set_encoder(0, {encoder.data(), S, d.encoder_width}, valid);
    std::vector<float> logits(std::size_t(prompt) * std::size_t(d.vocab)), untraced(logits.size());
    // The prompt in one step, tracing its first, a middle and its last row.
    StepTrace trace{.hidden_states = true, .attention_rows = {0, tformer::index(prompt / 2), tformer::index(prompt - 1)}};
    dec.forward(0, std::span(tokens).first(std::size_t(prompt)), {logits.data(), prompt, d.vocab},
                LogitsFor::All, trace);
    plain.forward(0, std::span(tokens).first(std::size_t(prompt)), {untraced.data(), prompt, d.vocab},
                  LogitsFor::All);
    CHECK(logits == untraced);  // tracing changes no bit of the logits
    require_logits(logits, want_logits, 0, prompt, d.vocab);
    std::vector<tformer::index> positions(static_cast<std::size_t>(prompt));
    std::iota(positions.begin(), positions.end(), tformer::index(0));
    check_trace(dec, trace, owned.view(), want, positions);
    // Decode steps, weights only (the hidden states are emptied); past a ring's window too.
    trace.hidden_states = false;
    trace.attention_rows = {0};
    for (int s = 0; s < steps; ++s) {
      INFO("decode step " << s);
      const auto token = std::span(tokens).subspan(std::size_t(prompt + s), 1);
      dec.forward(0, token, {logits.data(), 1, d.vocab}, LogitsFor::Last, trace);
      plain.forward(0, token, {untraced.data(), 1, d.vocab});
      CHECK(std::equal(logits.begin(), logits.begin() + d.vocab, untraced.begin()));
      const tformer::index at[] = {prompt + s};
      check_trace(dec, trace, owned.view(), want, at);
    }
  };
  SECTION("local layers with sinks in a ring beside global layers (qk-norm)") {
    run.operator()<HybridSinks>(small, 111, 9, 8, {.capacity = 30, .max_tokens = 9});
  }
  SECTION("ALiBi over a ring with sinks") {
    run.operator()<StreamingAlibi>(six_heads, 112, 6, 6, {.capacity = 12, .max_tokens = 6});
  }
  SECTION("cross-attention over encoder states with padding") {
    Dims d = small;
    d.encoder_width = 20;
    test::Random rng(113);
    run.operator()<SmallVLM>(d, 114, 7, 3, {.capacity = 12}, rng.normal_floats(9 * 20));
  }
}

TEST_CASE("decoder: a traced batch records the rows of each sequence", "[decoder][trace][batch]") {
  using C = configs::Qwen3;
  OwnedWeights<C> weights(small, 121);
  randomise_norms(weights, 122);
  test::Random rng(123);
  const auto a = random_tokens(rng, 8, small.vocab), b = random_tokens(rng, 4, small.vocab);
  ref::DecoderTrace want_a, want_b;
  (void)ref::decoder_logits<C>(weights.view(), small, a, {}, {}, tformer::default_params<C>(), &want_a);
  (void)ref::decoder_logits<C>(weights.view(), small, b, {}, {}, tformer::default_params<C>(), &want_b);
  Decoder<C> dec(weights.view(), small, {.sequences = 2, .capacity = 10, .max_tokens = 7});
  const tformer::index V = small.vocab;
  std::vector<float> logits(2 * std::size_t(V));
  dec.forward(0, std::span(a).first(5), {logits.data(), 1, V});
  // Rows 0–2: sequence 0 at positions 5–7; rows 3–6: sequence 1 at 0–3.
  const SequenceTokens batch[] = {{0, std::span(a).subspan(5, 3)}, {1, std::span(b)}};
  StepTrace trace{.hidden_states = true, .attention_rows = {2, 3, 6}};
  dec.forward(batch, {logits.data(), 2, V}, LogitsFor::Last, trace);
  const auto check_row = [&](std::size_t i, const ref::DecoderTrace& want, tformer::index t) {
    const tformer::index r = trace.attention_rows[i];
    for (tformer::index l = 0; l < small.layers; ++l) {
      const TraceMatrix& m = trace.self_attention[std::size_t(l)][i];
      REQUIRE(m.cols == tformer::index(want.self[0].size()));  // the sequence's length
      for (tformer::index h = 0; h < small.heads; ++h)
        for (tformer::index j = 0; j < m.cols; ++j)
          REQUIRE(std::abs(m.row(h)[j] - want.self[std::size_t(l)][std::size_t(t)][std::size_t(h)][std::size_t(j)]) <= 2e-6);
      for (tformer::index c = 0; c < small.hidden; ++c)
        REQUIRE(std::abs(trace.hidden[std::size_t(l + 1)].row(r)[c] -
                         want.hidden[std::size_t(l + 1)][std::size_t(t)][std::size_t(c)]) <=
                2e-7 * (1 + max_abs(want.hidden[std::size_t(l + 1)])));
    }
  };
  check_row(0, want_a, 7);
  check_row(1, want_b, 0);
  check_row(2, want_b, 3);
}

TEST_CASE("decoder: a batch of two sequences of different lengths equals their separate runs",
          "[decoder][batch]") {
  using C = configs::Qwen3;
  OwnedWeights<C> weights(small, 41);
  randomise_norms(weights, 42);
  test::Random rng(43);
  const auto a = random_tokens(rng, 7, small.vocab), b = random_tokens(rng, 3, small.vocab);
  const auto a2 = random_tokens(rng, 1, small.vocab), b2 = random_tokens(rng, 1, small.vocab);
  const tformer::index V = small.vocab;

  Decoder<C> batch(weights.view(), small, {.sequences = 2, .capacity = 16});
  std::vector<float> lb(2 * static_cast<std::size_t>(V));
  const SequenceTokens step1[] = {{0, a}, {1, b}};
  batch.forward(step1, {lb.data(), 2, V});
  const SequenceTokens step2[] = {{1, b2}, {0, a2}};  // order differs from the sequence order
  std::vector<float> lb2(2 * static_cast<std::size_t>(V));
  batch.forward(step2, {lb2.data(), 2, V});

  Decoder<C> single(weights.view(), small, {.sequences = 1, .capacity = 16});
  std::vector<float> la(static_cast<std::size_t>(V)), la2(static_cast<std::size_t>(V)), lbs(static_cast<std::size_t>(V)),
      lbs2(static_cast<std::size_t>(V));
  single.forward(0, a, {la.data(), 1, V});
  single.forward(0, a2, {la2.data(), 1, V});
  single.reset(0);
  single.forward(0, b, {lbs.data(), 1, V});
  single.forward(0, b2, {lbs2.data(), 1, V});
  // The same arithmetic row by row (projections are GEMMs over different row counts, which
  // Eigen may block differently): within a few u of the logit scale.
  for (tformer::index j = 0; j < V; ++j) {
    CHECK(lb[static_cast<std::size_t>(j)] == Approx(la[static_cast<std::size_t>(j)]).margin(1e-5));
    CHECK(lb[static_cast<std::size_t>(V + j)] == Approx(lbs[static_cast<std::size_t>(j)]).margin(1e-5));
    CHECK(lb2[static_cast<std::size_t>(j)] == Approx(lbs2[static_cast<std::size_t>(j)]).margin(1e-5));
    CHECK(lb2[static_cast<std::size_t>(V + j)] == Approx(la2[static_cast<std::size_t>(j)]).margin(1e-5));
  }
  CHECK(batch.length(0) == 8);
  CHECK(batch.length(1) == 4);
}

TEST_CASE(
    "decoder: a batch of sequences with their own encoders and masks equals their separate "
    "runs",
    "[decoder][batch][cross]") {
  // One step's cross-attention covers every sequence at once, each over its own encoder's keys
  // and padding mask (of different lengths): a step of two prefills, then a step where one
  // sequence decodes while the other prefills (prefill tasks and decode parts in one call), on
  // one and two threads.
  Dims d = small;
  d.encoder_width = 20;
  OwnedWeights<SmallVLM> weights(d, 131);
  randomise_norms(weights, 132);
  test::Random rng(133);
  const tformer::index V = d.vocab, S0 = 9, S1 = 5;
  const auto enc0 = rng.normal_floats(std::size_t(S0 * 20)),
             enc1 = rng.normal_floats(std::size_t(S1 * 20));
  const std::vector<std::uint8_t> valid0 = {1, 0, 1, 1, 1, 1, 0, 1, 1}, valid1 = {1, 1, 1, 0, 1};
  const auto a = random_tokens(rng, 6, V), b = random_tokens(rng, 3, V);
  const auto a2 = random_tokens(rng, 3, V), b2 = random_tokens(rng, 1, V);
  // Separate runs: each sequence alone in a decoder of one sequence.
  const auto alone = [&](const std::vector<float>& enc, tformer::index S,
                         const std::vector<std::uint8_t>& valid, const std::vector<std::int32_t>& p,
                         const std::vector<std::int32_t>& next) {
    Decoder<SmallVLM> dec(weights.view(), d,
                          {.sequences = 1, .capacity = 12, .encoder_tokens = S0});
    dec.set_encoder(0, {enc.data(), S, 20}, valid);
    std::vector<float> out(2 * std::size_t(V));
    dec.forward(0, p, {out.data(), 1, V});
    dec.forward(0, next, {out.data() + V, 1, V});
    return out;
  };
  const auto want0 = alone(enc0, S0, valid0, a, a2), want1 = alone(enc1, S1, valid1, b, b2);
  for (const tformer::index threads : {1, 2}) {
    CAPTURE(threads);
    tformer::ThreadTeam team(threads);
    Decoder<SmallVLM, tformer::ThreadTeam&> batch(
        weights.view(), d, {.sequences = 2, .capacity = 12, .encoder_tokens = S0}, team);
    batch.set_encoder(0, {enc0.data(), S0, 20}, valid0);
    batch.set_encoder(1, {enc1.data(), S1, 20}, valid1);
    std::vector<float> step1(2 * std::size_t(V)), step2(2 * std::size_t(V));
    const SequenceTokens prefill[] = {{0, a}, {1, b}};
    batch.forward(prefill, {step1.data(), 2, V});
    const SequenceTokens mixed[] = {{1, b2}, {0, a2}};  // not in sequence order
    // Rows 0 (sequence 1's token) and 3 (sequence 0's last) traced: each row's cross-attention
    // weights span its own encoder, 0 exactly on its own padded tokens, and sum to 1.
    StepTrace trace{.attention_rows = {0, 3}};
    batch.forward(mixed, {step2.data(), 2, V}, LogitsFor::Last, trace);
    for (tformer::index l = 0; l < d.layers; ++l)
      for (const auto& [i, valid] : {std::pair{0, &valid1}, std::pair{1, &valid0}}) {
        const TraceMatrix& w = trace.cross_attention[std::size_t(l)][std::size_t(i)];
        REQUIRE(w.cols == tformer::index(valid->size()));
        for (tformer::index h = 0; h < d.heads; ++h) {
          double sum = 0;
          for (tformer::index j = 0; j < w.cols; ++j) {
            if ((*valid)[std::size_t(j)] == 0) CHECK(w.row(h)[j] == 0.0f);
            sum += w.row(h)[j];
          }
          CHECK(sum == Approx(1.0).margin(1e-5));
        }
      }
    // The same arithmetic row by row, but the projections run over other row counts (Eigen may
    // block them differently): the batch test's margin above, 1e-5 absolute (with Approx's
    // default relative epsilon, 1.2e-5).
    for (tformer::index j = 0; j < V; ++j) {
      CHECK(step1[std::size_t(j)] == Approx(want0[std::size_t(j)]).margin(1e-5));
      CHECK(step1[std::size_t(V + j)] == Approx(want1[std::size_t(j)]).margin(1e-5));
      CHECK(step2[std::size_t(j)] == Approx(want1[std::size_t(V + j)]).margin(1e-5));
      CHECK(step2[std::size_t(V + j)] == Approx(want0[std::size_t(V + j)]).margin(1e-5));
    }
  }
}

TEST_CASE("decoder: truncate rolls back, and re-feeding gives the same logits", "[decoder]") {
  using C = configs::Llama;
  OwnedWeights<C> weights(small, 51);
  test::Random rng(52);
  const auto t = random_tokens(rng, 6, small.vocab);
  Decoder<C> dec(weights.view(), small, {.capacity = 10});
  const tformer::index V = small.vocab;
  std::vector<float> first(static_cast<std::size_t>(V)), again(static_cast<std::size_t>(V));
  dec.forward(0, std::span(t).first(4), {first.data(), 1, V});
  dec.forward(0, std::span(t).subspan(4), {first.data(), 1, V});  // speculative: rejected
  dec.truncate(0, 4);
  CHECK(dec.length(0) == 4);
  dec.forward(0, std::span(t).subspan(4), {again.data(), 1, V});
  CHECK(first == again);
}

TEST_CASE("decoder: generation is reproducible and greedy follows the reference argmax",
          "[decoder][generate]") {
  using C = configs::Llama;
  OwnedWeights<C> weights(small, 61);
  randomise_norms(weights, 62);
  const std::vector<std::int32_t> prompt = {3, 14, 15, 9};
  Decoder<C> dec(weights.view(), small, {.capacity = 20});
  std::vector<std::int32_t> out(8);
  Rng rng(1);
  REQUIRE(dec.generate(0, prompt, 8, Sampler::greedy(), rng, out) == 8);
  // The reference's argmax after the prompt and each generated token.
  std::vector<std::int32_t> seq = prompt;
  for (int i = 0; i < 8; ++i) {
    const auto logits = ref::decoder_logits<C>(weights.view(), dec.dims(), seq);
    const auto& last = logits.back();
    const auto best = std::int32_t(std::max_element(last.begin(), last.end()) - last.begin());
    CHECK(out[static_cast<std::size_t>(i)] == best);
    seq.push_back(out[static_cast<std::size_t>(i)]);
  }
  // Sampling: the same seed gives the same tokens; top-k 1 is greedy.
  for (const Sampler s : {Sampler::with_temperature(0.8f), Sampler::with_top_k(5, 1.2f),
                          Sampler::with_top_p(0.9f, 1.0f)}) {
    std::vector<std::int32_t> x(8), y(8);
    Rng r1(7), r2(7);
    dec.reset(0);
    dec.generate(0, prompt, 8, s, r1, x);
    dec.reset(0);
    dec.generate(0, prompt, 8, s, r2, y);
    CHECK(x == y);
  }
  std::vector<std::int32_t> k1(8);
  dec.reset(0);
  Rng r3(9);
  dec.generate(0, prompt, 8, Sampler::with_top_k(1), r3, k1);
  CHECK(k1 == out);
  // A stop token ends generation after it.
  dec.reset(0);
  Rng r4(1);
  CHECK(dec.generate(0, prompt, 8, Sampler::greedy(), r4, k1, out[2]) == 3);
  // Log-probabilities are the reference's log-softmax; penalties see the prompt and the tokens
  // generated so far (a presence penalty of 1e4 never repeats a token).
  Sampler no_repeats = Sampler::greedy();
  no_repeats.presence_penalty = 1e4f;
  std::vector<std::int32_t> fresh(8);
  std::vector<float> logprobs(8);
  dec.reset(0);
  REQUIRE(dec.generate(0, prompt, 8, no_repeats, r4, fresh, -1, logprobs) == 8);
  std::vector<std::int32_t> all = prompt;
  for (std::size_t i = 0; i < 8; ++i) {
    CAPTURE(i);
    CHECK(std::find(all.begin(), all.end(), fresh[i]) == all.end());
    const auto last = ref::decoder_logits<C>(weights.view(), dec.dims(), all).back();
    double m = -INFINITY, z = 0;
    for (double x : last) m = std::max(m, x);
    for (double x : last) z += std::exp(x - m);
    CHECK(logprobs[i] == Approx(last[std::size_t(fresh[i])] - m - std::log(z)).margin(1e-4));
    all.push_back(fresh[i]);
  }
}

TEST_CASE("decoder: YES/NO classification equals the softmax of the reference logits",
          "[decoder][classify]") {
  using C = configs::TrafficVLM;
  OwnedWeights<C> weights({}, 71);
  test::Random rng(72);
  const auto vision = rng.normal_floats(8 * static_cast<std::size_t>(C::encoder_width));
  const std::vector<std::int32_t> tokens = {2, 45, 67, 12, 3};
  const std::vector<std::int32_t> ids = {4, 5};  // [YES], [NO]
  Decoder<C> dec(weights.view());
  dec.set_encoder(0, {vision.data(), 8, C::encoder_width});
  std::vector<float> logit(2), prob(2);
  dec.classify(0, tokens, ids, logit, prob);
  const auto want = ref::decoder_logits<C>(weights.view(), dec.dims(), tokens, vision).back();
  const double tol = 1e-5 * (1.0 + std::max(std::abs(want[4]), std::abs(want[5])));
  CHECK(std::abs(logit[0] - want[4]) <= tol);
  CHECK(std::abs(logit[1] - want[5]) <= tol);
  const double p_yes = 1.0 / (1.0 + std::exp(want[5] - want[4]));
  CHECK(prob[0] == Approx(p_yes).margin(1e-4));
  CHECK(prob[0] + prob[1] == Approx(1.0).margin(1e-6));
  // The pad row of the embedding is zero.
  const auto emb = weights.view().embedding.f32();
  CHECK(std::all_of(emb.row(0), emb.row(0) + emb.cols(), [](float x) { return x == 0.0f; }));
}

TEST_CASE("decoder: bad inputs raise tformer::Error and change nothing", "[decoder][errors]") {
  using C = configs::Llama;
  OwnedWeights<C> weights(small, 81);
  Decoder<C> dec(weights.view(), small, {.sequences = 2, .capacity = 8, .max_tokens = 6});
  const tformer::index V = small.vocab;
  std::vector<float> logits(2 * static_cast<std::size_t>(V));
  const MatrixView<float> one(logits.data(), 1, V);
  const std::vector<std::int32_t> ok = {1, 2, 3}, bad = {1, std::int32_t(V)}, neg = {-1};
  CHECK_THROWS_WITH(dec.forward(0, bad, one), Catch::Contains("token id"));
  CHECK_THROWS_AS(dec.forward(0, neg, one), Error);
  CHECK_THROWS_AS(dec.forward(2, ok, one), Error);                       // no such sequence
  CHECK_THROWS_AS(dec.forward(0, {}, one), Error);                       // no tokens
  CHECK_THROWS_AS(dec.forward(0, ok, {logits.data(), 1, V - 1}), Error);  // logits shape
  const std::vector<std::int32_t> seven(7, 1);
  CHECK_THROWS_WITH(dec.forward(0, seven, one), Catch::Contains("max_tokens"));
  const SequenceTokens twice[] = {{0, ok}, {0, ok}};
  CHECK_THROWS_AS(dec.forward(twice, {logits.data(), 2, V}), Error);
  CHECK(dec.length(0) == 0);
  dec.forward(0, ok, one);
  dec.forward(0, ok, one);
  CHECK_THROWS_WITH(dec.forward(0, ok, one), Catch::Contains("capacity"));
  CHECK(dec.length(0) == 6);
  std::vector<std::int32_t> out(4);
  Rng rng(1);
  CHECK_THROWS_WITH(dec.generate(1, ok, 8, Sampler::greedy(), rng, out),
                    Catch::Contains("out size"));
  CHECK_THROWS_WITH(dec.generate(0, ok, 2, Sampler::greedy(), rng, out), Catch::Contains("capacity"));

  // Feeds longer than max_tokens are checked whole before the first step: nothing moves.
  dec.reset(0);
  std::vector<std::int32_t> long_bad(8, 1);
  long_bad[7] = std::int32_t(V);  // in the second step of 6 tokens
  CHECK_THROWS_WITH(dec.generate(0, long_bad, 1, Sampler::greedy(), rng, out),
                    Catch::Contains("token id"));
  float lg[2], pr[2];
  const std::int32_t yes_no[2] = {4, 5};
  CHECK_THROWS_AS(dec.classify(0, long_bad, yes_no, lg, pr), Error);
  CHECK_THROWS_WITH(dec.classify(0, ok, {}, std::span<float>{}, std::span<float>{}),
                    Catch::Contains("ids"));
  const std::vector<std::int32_t> nine(9, 1);
  CHECK_THROWS_WITH(dec.classify(0, nine, yes_no, lg, pr), Catch::Contains("capacity"));
  CHECK(dec.length(0) == 0);
  dec.classify(0, std::span(nine).first(7), yes_no, lg, pr);  // two steps of 6 and 1
  CHECK(dec.length(0) == 7);

  // Dims against the Config, and weights against the Dims.
  CHECK_THROWS_WITH(resolve_dims<configs::TrafficVLM>({.hidden = 256}),
                    Catch::Contains("hidden"));
  Dims wrong = small;
  wrong.heads = 3;
  CHECK_THROWS_WITH(resolve_dims<configs::Llama>(wrong), Catch::Contains("multiple of kv_heads"));
  Dims wider = small;
  wider.hidden = 64;
  CHECK_THROWS_WITH((Decoder<C>(weights.view(), wider)), Catch::Contains("embedding"));
  ModelWeights missing = weights.view();
  missing.layers.pop_back();
  CHECK_THROWS_WITH((Decoder<C>(missing, small)), Catch::Contains("layers count"));
  CHECK_THROWS_WITH((Decoder<C>(weights.view(), small, {.capacity = 41})),
                    Catch::Contains("capacity"));

  // A convolution's state cannot roll back part of a sequence.
  {
    OwnedWeights<ConvAttention> cw(small, 83);
    Decoder<ConvAttention> cd(cw.view(), small, {.capacity = 8});
    cd.forward(0, ok, one);
    CHECK_THROWS_WITH(cd.truncate(0, 1), Catch::Contains("cannot roll back"));
    CHECK(cd.length(0) == 3);
    cd.truncate(0, 3);  // the current length: nothing to do
    cd.truncate(0, 0);  // every token forgotten
    CHECK(cd.length(0) == 0);
  }

  // Cross-attention needs its encoder input first.
  OwnedWeights<configs::TrafficVLM> vlm({}, 82);
  Decoder<configs::TrafficVLM> vd(vlm.view(), {}, {.capacity = 16});
  std::vector<float> vl(500);
  CHECK_THROWS_WITH(vd.forward(0, ok, {vl.data(), 1, 500}), Catch::Contains("set_encoder"));
  std::vector<float> narrow(3 * 512);
  CHECK_THROWS_WITH(vd.set_encoder(0, {narrow.data(), 3, 512}), Catch::Contains("encoder_width"));
  // truncate(seq, 0) forgets the tokens and keeps the encoder input; reset forgets both.
  test::Random image_rng(83);
  const auto image = image_rng.normal_floats(std::size_t(5 * vd.dims().encoder_width));
  vd.set_encoder(0, {image.data(), 5, vd.dims().encoder_width});
  const tformer::index vv = vd.dims().vocab;
  std::vector<float> first(static_cast<std::size_t>(vv)), again(first.size());
  vd.forward(0, ok, {first.data(), 1, vv});
  vd.truncate(0, 0);
  CHECK(vd.length(0) == 0);
  vd.forward(0, ok, {again.data(), 1, vv});
  CHECK(again == first);
  vd.reset(0);
  CHECK_THROWS_WITH(vd.forward(0, ok, {first.data(), 1, vv}), Catch::Contains("set_encoder"));
}

// Streams `tokens` through `dec` in steps of 1 to max_tokens tokens (all logits) and checks
// every position against `want`.
// Steps of random sizes, or of `passes` when given.
template <class C>
void stream_and_check(Decoder<C>& dec, const std::vector<std::int32_t>& tokens,
                      const std::vector<ref::Vec>& want, test::Random& rng,
                      const std::vector<tformer::index>& passes = {}) {
  const tformer::index V = dec.dims().vocab;
  std::vector<float> got(static_cast<std::size_t>(dec.options().max_tokens * V));
  std::size_t step = 0;
  for (std::size_t done = 0; done < tokens.size(); ++step) {
    const std::size_t n =
        !passes.empty() ? std::size_t(passes[step])
                        : std::min<std::size_t>(tokens.size() - done,
                                                std::size_t(rng.integer(1, int(dec.options().max_tokens))));
    INFO("positions " << done << " to " << done + n - 1);
    dec.forward(0, std::span(tokens).subspan(done, n), {got.data(), tformer::index(n), V},
                LogitsFor::All);
    require_logits(got, want, tformer::index(done), tformer::index(n), V);
    done += n;
  }
  CHECK(dec.length(0) == tformer::index(tokens.size()));
}

// A decoder on seeded weights (norms randomised) streamed through `tokens` and checked.
template <class C>
void check_streaming(const Dims& dims, std::uint64_t seed, const DecoderOptions& options,
                     const std::vector<std::int32_t>& tokens, test::Random& rng) {
  OwnedWeights<C> weights(dims, seed);
  randomise_norms(weights, seed + 1);
  Decoder<C> dec(weights.view(), dims, options);
  stream_and_check(dec, tokens, ref::decoder_logits<C>(weights.view(), dims, tokens), rng);
}

TEST_CASE("decoder: attention sinks in a ring run far past the capacity and match the reference",
          "[decoder][sinks]") {
  // Capacity 12 (the RoPE table's rows); 60 positions; the ring holds 2 + 5 + 3 − 1 = 9 slots.
  const DecoderOptions options{.sequences = 1, .capacity = 12, .max_tokens = 3};
  test::Random rng(71);
  const auto tokens = random_tokens(rng, 60, small.vocab);
  SECTION("in-cache positions (StreamingLLM)") {
    OwnedWeights<Streaming> weights(small, 72);
    randomise_norms(weights, 73);
    Decoder<Streaming> dec(weights.view(), small, options);
    REQUIRE(dec.full_cache() == nullptr);
    REQUIRE(dec.ring_cache()->slots() == 2 + 5 + 3 - 1);
    const std::size_t bytes = dec.bytes();
    stream_and_check(dec, tokens, ref::decoder_logits<Streaming>(weights.view(), small, tokens), rng);
    CHECK(dec.bytes() == bytes);  // constant memory, 5× past the capacity
    // While the sequence fits (every window reaches the sinks), it is plain causal attention.
    const auto global = ref::decoder_logits<configs::Llama>(weights.view(), small,
                                                            std::vector(tokens.begin(), tokens.begin() + 7));
    dec.reset(0);
    std::vector<float> got(7 * std::size_t(small.vocab));
    dec.forward(0, std::span(tokens).first(3), {got.data(), 3, small.vocab}, LogitsFor::All);
    dec.forward(0, std::span(tokens).subspan(3, 3), {got.data() + 3 * small.vocab, 3, small.vocab},
                LogitsFor::All);
    dec.forward(0, std::span(tokens).subspan(6, 1), {got.data() + 6 * small.vocab, 1, small.vocab},
                LogitsFor::All);
    require_logits(got, global, 0, 7, small.vocab);
  }
  SECTION("original positions") {
    check_streaming<StreamingOriginal>(small, 74, options, tokens, rng);
  }
  SECTION("ALiBi with in-cache distances") {
    check_streaming<StreamingAlibi>(six_heads, 76, options, tokens, rng);
  }
  SECTION("local layers' own RoPE base (Gemma 3's), rows past their table") {
    check_streaming<StreamingLocalBase>(small, 77, options, tokens, rng);
  }
  SECTION("dynamic NTK with original sink positions: each pass's own frequencies") {
    OwnedWeights<StreamingNtk> weights(small, 78);
    randomise_norms(weights, 79);
    Decoder<StreamingNtk> dec(weights.view(), small, options);
    std::vector<tformer::index> passes;
    for (tformer::index done = 0; done < tformer::index(tokens.size());) {
      passes.push_back(std::min<tformer::index>(rng.integer(1, 3), tformer::index(tokens.size()) - done));
      done += passes.back();
    }
    stream_and_check(dec, tokens,
                     ref::decoder_logits<StreamingNtk>(weights.view(), small, tokens, {}, {},
                                                       StreamingNtk::params(), nullptr, passes),
                     rng, passes);
  }
}

TEST_CASE("decoder: a batched streaming step mixes a sequence far past the table with a new one",
          "[decoder][sinks][batch]") {
  // Sequence 0 needs RoPE rows past the table and sink queries; sequence 1 needs neither.
  OwnedWeights<Streaming> weights(small, 101);
  randomise_norms(weights, 102);
  test::Random rng(103);
  const auto a = random_tokens(rng, 40, small.vocab), b = random_tokens(rng, 6, small.vocab);
  const auto want_a = ref::decoder_logits<Streaming>(weights.view(), small, a);
  const auto want_b = ref::decoder_logits<Streaming>(weights.view(), small, b);
  Decoder<Streaming> dec(weights.view(), small, {.sequences = 2, .capacity = 12, .max_tokens = 6});
  const tformer::index V = small.vocab;
  std::vector<float> got(6 * static_cast<std::size_t>(V));
  for (std::size_t done = 0; done < 34; done += 2)
    dec.forward(0, std::span(a).subspan(done, 2), {got.data(), 1, V});
  for (int step = 0; step < 2; ++step) {
    const std::size_t at = std::size_t(34 + 3 * step), bt = std::size_t(3 * step);
    const SequenceTokens batch[] = {{0, std::span(a).subspan(at, 3)}, {1, std::span(b).subspan(bt, 3)}};
    dec.forward(batch, {got.data(), 6, V}, LogitsFor::All);
    const auto half = got.begin() + 3 * V;
    require_logits(std::vector<float>(got.begin(), half), want_a, tformer::index(at), 3, V);
    require_logits(std::vector<float>(half, got.end()), want_b, tformer::index(bt), 3, V);
  }
  CHECK(dec.length(0) == 40);
  CHECK(dec.length(1) == 6);
}

TEST_CASE("decoder: local layers with sinks in a ring beside global layers match the reference",
          "[decoder][sinks]") {
  OwnedWeights<HybridSinks> weights(small, 81);
  randomise_norms(weights, 82);
  test::Random rng(83);
  const auto tokens = random_tokens(rng, 30, small.vocab);
  Decoder<HybridSinks> dec(weights.view(), small, {.capacity = 30, .max_tokens = 4});
  REQUIRE(dec.full_cache()->config().layers == 1);  // layer 1
  REQUIRE(dec.ring_cache()->config().layers == 1);  // layer 0: 1 + 4 + 3 slots
  CHECK(dec.ring_cache()->slots() == 8);
  stream_and_check(dec, tokens, ref::decoder_logits<HybridSinks>(weights.view(), small, tokens), rng);
  // The global layer bounds the sequence; the ring bounds how far it rolls back.
  std::vector<float> logits(static_cast<std::size_t>(small.vocab));
  const std::int32_t one = 1;
  CHECK_THROWS_WITH(dec.forward(0, std::span(&one, 1), {logits.data(), 1, small.vocab}),
                    Catch::Contains("<= capacity (30)"));
  CHECK_THROWS_WITH(dec.truncate(0, 20), Catch::Contains("ring mode"));
  CHECK(dec.length(0) == 30);
  dec.truncate(0, 27);
  CHECK(dec.length(0) == 27);
}

TEST_CASE("decoder: a list of local layers (Qwen's layer_types) decides which layers slide",
          "[decoder][sinks]") {
  using C = configs::Qwen3;
  // Layer 0 global, layer 1 local: what global_every cannot say (it makes the last layers global).
  ModelParams p = tformer::default_params<C>();
  p.attention = {.window = 3, .local_layers = {false, true}};
  check_preset<C>(small, 131, 9, 5, {}, {}, nullptr, p);
  // The same in a ring with a sink: the ring holds layer 1, the full cache layer 0.
  p.attention = {.window = 4, .sinks = 1, .ring = true, .local_layers = {false, true}};
  OwnedWeights<C> weights(small, 132, p);
  randomise_norms(weights, 133);
  test::Random rng(134);
  const auto tokens = random_tokens(rng, 30, small.vocab);
  Decoder<C> dec(weights.view(), small, p, {.capacity = 30, .max_tokens = 4});
  REQUIRE(dec.full_cache()->config().layers == 1);
  REQUIRE(dec.ring_cache()->config().layers == 1);
  CHECK(!dec.streaming());
  stream_and_check(dec, tokens, ref::decoder_logits<C>(weights.view(), small, tokens, {}, {}, p), rng);
  // Every layer listed local, in a ring: the sequence may outgrow the capacity.
  p.attention.local_layers = {true, true};
  Decoder<C> streaming(weights.view(), small, p, {.capacity = 12, .max_tokens = 4});
  CHECK(streaming.streaming());
  CHECK(streaming.full_cache() == nullptr);
  stream_and_check(streaming, tokens, ref::decoder_logits<C>(weights.view(), small, tokens, {}, {}, p), rng);
}

TEST_CASE("decoder: a streaming decoder depends only on its sinks and window, and stays finite",
          "[decoder][sinks]") {
  // One layer: position p's logits read tokens [0, 2) and (p − 5, p] only. Changing a token
  // that has left the window changes nothing, bit for bit (the ring no longer holds it).
  Dims one = small;
  one.layers = 1;
  OwnedWeights<Streaming> weights(one, 91);
  test::Random rng(92);
  auto a = random_tokens(rng, 40, one.vocab);
  auto b = a;
  b[10] = (b[10] + 1) % std::int32_t(one.vocab);
  b[20] = (b[20] + 7) % std::int32_t(one.vocab);
  const DecoderOptions options{.capacity = 8, .max_tokens = 2};
  Decoder<Streaming> da(weights.view(), one, options), db(weights.view(), one, options);
  const tformer::index V = one.vocab;
  std::vector<float> la(static_cast<std::size_t>(V)), lb(la.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    da.forward(0, std::span(a).subspan(i, 1), {la.data(), 1, V});
    db.forward(0, std::span(b).subspan(i, 1), {lb.data(), 1, V});
    INFO("position " << i);
    if (i >= 25) REQUIRE(la == lb);  // positions 10 and 20 out of every window
    if (i == 20) REQUIRE(la != lb);  // and the change is visible while inside one
  }
  // Generation runs on at constant memory: 3000 tokens through an 8-position capacity.
  const std::size_t bytes = da.bytes();
  std::vector<std::int32_t> out(3000);
  Rng r(5);
  CHECK(da.generate(0, std::span(a).first(1), 3000, Sampler::with_temperature(1.0f), r, out) == 3000);
  CHECK(da.length(0) == 40 + 1 + 2999);
  CHECK(da.bytes() == bytes);
  const std::int32_t next = out.back();
  da.forward(0, std::span(&next, 1), {la.data(), 1, V});
  for (float x : la) REQUIRE(std::isfinite(x));
}

TEST_CASE("decoder: attention sink options are checked", "[decoder][sinks][errors]") {
  OwnedWeights<Streaming> weights(small, 95);
  CHECK_THROWS_WITH(Decoder<Streaming>(weights.view(), small, {.capacity = 6}),
                    Catch::Contains("sinks + window (7)"));
  CHECK_NOTHROW(Decoder<Streaming>(weights.view(), small, {.capacity = 7}));
}

namespace {

// One executor type for every schedule the test compares: a thread team of some size, or every
// item on the calling thread last first while claiming 3 workers (an order and a row split no
// team produces). One type, so one compiled decoder: the comparison is of schedules, not of
// two instantiations the compiler may have contracted into FMAs differently (GCC's default
// -ffp-contract=fast decides per inlined copy).
struct Schedule {
  const ThreadTeam* team = nullptr;       // or
  const test::EnginePool* pool = nullptr;  // an engine's pool; neither: reversed on this thread
  tformer::index concurrency() const noexcept {
    return team ? team->concurrency() : pool ? pool->concurrency() : 3;
  }
  template <class F>
  void parallel_for(tformer::index begin, tformer::index end, F&& f) const {
    if (team) return team->parallel_for(begin, end, std::forward<F>(f));
    if (pool) return pool->parallel_for(begin, end, std::forward<F>(f));
    for (tformer::index i = end; i-- > begin;) f(i);
  }
};

// A long context on two sequences through `exec`: a prefill in steps of 256 rows, decode steps
// one token at a time past several runs of split_keys keys, and batched decode steps of both
// sequences; every logit returned, in order.
template <class C, class E>
std::vector<float> long_run(const tformer::ModelWeights& w, const Dims& d, const ModelParams& p,
                            const std::vector<std::int32_t>& tokens, const std::vector<float>& enc,
                            tformer::index S, E&& exec) {
  Decoder<C, E> dec(w, d, p,
                    {.sequences = 2, .capacity = tformer::index(tokens.size()), .max_tokens = 256,
                     .encoder_tokens = S},
                    std::forward<E>(exec));
  const tformer::index V = d.vocab;
  if constexpr (C::cross_attention)
    for (tformer::index s = 0; s < 2; ++s) dec.set_encoder(s, {enc.data(), S, d.encoder_width});
  const std::size_t prompt = tokens.size() - 4;
  std::vector<float> out, logits(2 * static_cast<std::size_t>(V));
  const auto keep = [&](tformer::index rows) {
    out.insert(out.end(), logits.begin(), logits.begin() + rows * V);
  };
  for (const auto& [seq, n] : {std::pair{tformer::index(0), prompt}, std::pair{tformer::index(1), prompt - 100}})
    for (std::size_t i = 0; i < n; i += 256) {  // steps of 256 rows, the last row's logits
      dec.forward(seq, std::span(tokens).subspan(i, std::min<std::size_t>(256, n - i)),
                  {logits.data(), 1, V});
      keep(1);
    }
  for (std::size_t i = prompt; i < prompt + 2; ++i) {
    dec.forward(0, std::span(tokens).subspan(i, 1), {logits.data(), 1, V});
    keep(1);
  }
  for (std::size_t i = 0; i < 2; ++i) {
    const SequenceTokens both[] = {{0, std::span(tokens).subspan(prompt + 2 + i, 1)},
                                   {1, std::span(tokens).subspan(prompt - 100 + i, 1)}};
    dec.forward(both, {logits.data(), 2, V});
    keep(2);
  }
  return out;
}

template <class C>
void same_bits_on_every_executor(const Dims& d, std::uint64_t seed, int length,
                                 tformer::index S = 0,
                                 const ModelParams& p = tformer::default_params<C>()) {
  OwnedWeights<C> owned(d, seed, p);
  randomise_norms(owned, seed + 1);
  test::Random rng(seed + 2);
  const auto tokens = random_tokens(rng, length, d.vocab);
  const auto enc = rng.normal_floats(static_cast<std::size_t>(S * d.encoder_width));
  const ThreadTeam one(1);
  const auto first = long_run<C>(owned.view(), owned.dims(), p, tokens, enc, S, Schedule{&one});
  for (const tformer::index threads : {2, 3}) {
    INFO(threads << " threads");
    const ThreadTeam team(threads);
    const auto got = long_run<C>(owned.view(), owned.dims(), p, tokens, enc, S, Schedule{&team});
    REQUIRE(got.size() == first.size());
    CHECK(std::memcmp(got.data(), first.data(), got.size() * sizeof(float)) == 0);
  }
  for (const int threads : {2, 3}) {
    INFO("an engine's pool of " << threads << " threads");
    const test::EnginePool pool(threads);
    const auto got =
        long_run<C>(owned.view(), owned.dims(), p, tokens, enc, S, Schedule{nullptr, &pool});
    CHECK(std::memcmp(got.data(), first.data(), got.size() * sizeof(float)) == 0);
  }
  const auto reversed = long_run<C>(owned.view(), owned.dims(), p, tokens, enc, S, Schedule{});
  CHECK(std::memcmp(reversed.data(), first.data(), first.size() * sizeof(float)) == 0);
  // The serial executor is another compiled decoder: equal up to rounding.
  const auto serial = long_run<C>(owned.view(), owned.dims(), p, tokens, enc, S, SerialExecutor{});
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < serial.size(); ++i) {
    worst = std::max(worst, double(std::abs(serial[i] - first[i])));
    scale = std::max(scale, double(std::abs(serial[i])));
  }
  CHECK(worst <= 1e-5 * (1 + scale));
}

}  // namespace

TEST_CASE("decoder: split-K decode attention matches the reference past 1,000 keys",
          "[decoder][threads]") {
  Dims d = small;
  d.max_positions = 1200;
  // Every decode step attends over 3 runs of split_keys (512) keys, merged.
  SECTION("global attention") { check_preset<configs::Llama>(d, 71, 1030, 4); }
  SECTION("2 sinks and a window of 700: the sinks and the window's runs, merged") {
    ModelParams p = tformer::default_params<SinksFull>();
    p.attention.window = 700;  // keys [331, 1031) and on: parts of 512 keys split the window
    check_preset<SinksFull>(d, 72, 1030, 3, {}, {}, nullptr, p);
  }
  SECTION("cross-attention over 600 encoder tokens (two runs)") {
    d.encoder_width = 20;
    test::Random rng(73);
    const auto enc = rng.normal_floats(600 * 20);
    check_preset<SmallVLM>(d, 74, 30, 3, enc, std::vector<std::uint8_t>(600, 1));
  }
}

TEST_CASE("decoder: a ring window wider than the capacity splits its keys like a full cache",
          "[decoder][threads]") {
  // Every layer a ring of window 1100 (streaming), capacity 64: a decode token sees 1100 keys,
  // up to four runs of split_keys (past position 1536), more than the capacity alone would size.
  using C = configs::Llama;
  Dims d = small;
  d.max_positions = 1600;
  ModelParams ring = tformer::default_params<C>(), full = ring;
  ring.attention = {.window = 1100, .ring = true};
  full.attention = {.window = 1100};
  OwnedWeights<C> w(d, 95, ring);
  test::Random rng(96);
  const auto tokens = random_tokens(rng, 1560, d.vocab);
  ThreadTeam team(2);
  Decoder<C, ThreadTeam&> a(w.view(), d, ring, {.capacity = 64, .max_tokens = 64}, team);
  Decoder<C> b(w.view(), d, full, {.capacity = 1560, .max_tokens = 64});
  std::vector<float> la(std::size_t(d.vocab)), lb(la.size());
  for (std::size_t i = 0; i < 1100; i += 64) {
    const auto step = std::span(tokens).subspan(i, std::min<std::size_t>(64, 1100 - i));
    a.forward(0, step, {la.data(), 1, d.vocab});
    b.forward(0, step, {lb.data(), 1, d.vocab});
  }
  for (std::size_t i = 1100; i < 1560; ++i) {
    a.forward(0, std::span(tokens).subspan(i, 1), {la.data(), 1, d.vocab});
    b.forward(0, std::span(tokens).subspan(i, 1), {lb.data(), 1, d.vocab});
    INFO("position " << i);
    for (std::size_t j = 0; j < la.size(); ++j) REQUIRE(std::abs(la[j] - lb[j]) <= 1e-5 * (1 + std::abs(lb[j])));
  }
}

TEST_CASE("decoder: the same bits on 1-3 threads, an engine's pool and any order, decode and prefill",
          "[decoder][threads]") {
  Dims d = small;
  d.max_positions = 1400;
  same_bits_on_every_executor<configs::Llama>(d, 81, 1300);
  same_bits_on_every_executor<Hybrid>(d, 82, 1300);
  same_bits_on_every_executor<SinksFull>(d, 83, 700);
  Dims v = small;
  v.encoder_width = 20;
  v.max_positions = 400;
  same_bits_on_every_executor<SmallVLM>(v, 84, 300, 600);
  Dims m = small;  // every expert's rows split over the threads
  m.max_positions = 400;
  m.experts = 8;
  m.top_k = 2;
  m.shared_intermediate = 48;  // and the shared expert's
  same_bits_on_every_executor<configs::Mixtral>(m, 85, 300);
  Dims s = small;
  s.max_positions = 400;
  same_bits_on_every_executor<Sparse>(s, 86, 300);
  Dims mqa = small;  // one KV head: prefill attention is split by blocks of queries only
  mqa.max_positions = 400;
  mqa.kv_heads = 1;
  same_bits_on_every_executor<configs::Llama>(mqa, 87, 300);
  // Runs of tokens: q/k-norms, and RoPE by rows computed for each step (dynamic NTK past 64
  // positions) rather than the table's.
  ModelParams qwen = presets::qwen3();
  qwen.rope_scaling =
      tformer::rope_scaling::DynamicNtk{.factor = 4.0, .original_max_positions = 64};
  same_bits_on_every_executor<configs::Llama>(s, 88, 300, 0, qwen);
  // Gemma 2's post-norms and (1 + w) norms, local layers of 40 keys in rings.
  ModelParams gemma = presets::gemma2(small.hidden, 16.0);
  gemma.attention.window = 40;
  same_bits_on_every_executor<configs::Gemma2>(s, 89, 300, 0, gemma);
}

namespace {
// An executor that, once armed, holds its next call until released: a call on the Decoder is
// then certainly running while another thread calls it.
struct Gate {
  mutable std::mutex m;
  mutable std::condition_variable cv;
  mutable bool armed = false, inside = false, released = false;
  tformer::index concurrency() const noexcept { return 1; }
  template <class F>
  void parallel_for(tformer::index begin, tformer::index end, F&& f) const {
    {
      std::unique_lock<std::mutex> lock(m);
      if (armed) {
        armed = false;
        inside = true;
        cv.notify_all();
        cv.wait(lock, [&] { return released; });
      }
    }
    for (tformer::index i = begin; i < end; ++i) f(i);
  }
};
}  // namespace

TEST_CASE("decoder: a call while another thread's call runs is refused, nested calls are not",
          "[decoder][threads]") {
  using C = configs::Llama;
  OwnedWeights<C> weights(small, 91);
  Gate gate;
  Decoder<C, Gate&> dec(weights.view(), small, {.capacity = 20}, gate);
  const std::vector<std::int32_t> prompt = {1, 2, 3};
  std::vector<float> a(std::size_t(small.vocab)), b(a.size());
  gate.armed = true;
  std::thread first([&] { dec.forward(0, prompt, {a.data(), 1, small.vocab}); });
  {
    std::unique_lock<std::mutex> lock(gate.m);
    gate.cv.wait(lock, [&] { return gate.inside; });
  }
  CHECK_THROWS_WITH(dec.forward(0, prompt, {b.data(), 1, small.vocab}),
                    Catch::Contains("Decoder::forward: calls on this Decoder") &&
                        Catch::Contains("one at a time"));
  CHECK_THROWS_WITH(dec.reset(0), Catch::Contains("one at a time"));
  {
    const std::lock_guard<std::mutex> lock(gate.m);
    gate.released = true;
  }
  gate.cv.notify_all();
  first.join();
  CHECK(dec.length(0) == 3);  // the first call completed; the refused ones changed nothing
  // generate calls forward inside itself (a nested call of the same thread): allowed.
  Rng rng(1);
  std::vector<std::int32_t> out(2);
  CHECK(dec.generate(0, prompt, 2, Sampler::greedy(), rng, out) == 2);
  CHECK_NOTHROW(dec.truncate(0, 0));
}
