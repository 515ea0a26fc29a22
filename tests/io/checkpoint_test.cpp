// Loading whole models from checkpoint files (io/gguf_model.hpp, io/hf_model.hpp,
// io/hf_config.hpp): small random models written by this file's own writers in each format and
// type, loaded with one call, run through the decoder and compared with the double reference
// decoder (tests/reference/decoder_reference.hpp) on the weights as written in Hugging Face's
// layout. A GGUF llama file holds the q/k rows permuted to Meta's interleaved order as
// llama.cpp's converter writes them (permuted here by the converter's formula, independently of
// the library), so its logits agreeing with the rotate-half reference pins the layout
// convention. Bad files raise tformer::Error naming the file and the key or tensor.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "reference/decoder_reference.hpp"
#include "support/gguf_writer.hpp"
#include "support/random.hpp"
#include "support/temp_dir.hpp"
#include "tformer/io/gguf_model.hpp"
#include "tformer/model/weights.hpp"

using tformer::Dims;
using tformer::ModelParams;
using tformer::WeightType;
using tformer::WeightView;
namespace configs = tformer::configs;
namespace presets = tformer::presets;
using Index = tformer::index;

namespace {

struct TiedQwen : configs::Qwen3 {
  static constexpr tformer::HeadKind head = tformer::HeadKind::Tied;
};

constexpr Dims small = {.vocab = 64, .hidden = 64, .intermediate = 96, .layers = 2, .heads = 4,
                        .kv_heads = 2, .head_dim = 16, .max_positions = 48};

// A random model in Hugging Face's layout, norms perturbed around 1 (so that each is exercised).
template <class C>
tformer::OwnedWeights<C> random_model(const Dims& d, std::uint64_t seed, const ModelParams& p) {
  tformer::OwnedWeights<C> w(d, seed, p);
  test::Random rng(seed + 1);
  const auto perturb = [&](std::span<const float> s) {
    for (std::size_t i = 0; i < s.size(); ++i)
      tformer::OwnedWeights<C>::mut(s)[i] = 1.0f + float(rng.uniform(-0.5, 0.5));
  };
  perturb(w.view().final_norm);
  for (const auto& l : w.view().layers)
    for (auto s : {l.attn_norm, l.ffn_norm, l.q_norm, l.k_norm}) perturb(s);
  return w;
}

std::vector<std::uint8_t> bytes_of(const WeightView& m) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(m.data());
  return {p, p + m.rows() * m.row_stride()};
}
std::vector<std::uint8_t> bytes_of(std::span<const float> v) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(v.data());
  return {p, p + v.size() * sizeof(float)};
}

// convert_hf_to_gguf.py's LlamaModel.permute: rows of each head reordered from rotate-half
// (pairs i, i + D/2) to Meta's interleaved order (pairs 2i, 2i + 1): new row h·D + 2i + j is
// old row h·D + j·D/2 + i.
std::vector<std::uint8_t> permuted_rows(const WeightView& m, Index heads) {
  const Index D = m.rows() / heads, stride = m.row_stride();
  const std::vector<std::uint8_t> in = bytes_of(m);
  std::vector<std::uint8_t> out(in.size());
  for (Index h = 0; h < heads; ++h)
    for (Index i = 0; i < D / 2; ++i)
      for (Index j = 0; j < 2; ++j)
        std::memcpy(out.data() + (h * D + 2 * i + j) * stride,
                    in.data() + (h * D + j * D / 2 + i) * stride, std::size_t(stride));
  return out;
}

std::uint32_t ggml_type(WeightType t) {
  switch (t) {
    case WeightType::f32: return 0;
    case WeightType::f16: return 1;
    case WeightType::q4_0: return 2;
    case WeightType::q8_0: return 8;
    case WeightType::bf16: return 30;
    default: FAIL("no ggml type"); return 0;
  }
}

struct GgufModel {
  std::string arch = "llama";
  float rope_base = 500000.0f;
  float eps = 1e-5f;
  std::vector<float> rope_freqs = {};  // non-empty: written as rope_freqs.weight
  bool extra_tensor = false;
  bool drop_ffn_down = false;
  std::uint32_t rope_dims = 0;  // 0: head_dim
  std::uint32_t experts = 0;
};

// A GGUF file of `w` (Hugging Face layout) as llama.cpp's converter writes it.
std::vector<std::byte> gguf_file(const tformer::ModelWeights& w, const Dims& d,
                                 const GgufModel& g) {
  using test::gguf::Tensor;
  std::vector<Tensor> t;
  const bool permute = g.arch == "llama";
  const auto matrix = [&](const std::string& name, const WeightView& m, Index heads = 0) {
    t.push_back({name, ggml_type(m.type()),
                 {std::uint64_t(m.cols()), std::uint64_t(m.rows())},
                 permute && heads > 0 ? permuted_rows(m, heads) : bytes_of(m)});
  };
  const auto vector = [&](const std::string& name, std::span<const float> v) {
    t.push_back({name, 0, {std::uint64_t(v.size())}, bytes_of(v)});
  };
  matrix("token_embd.weight", w.embedding);
  vector("output_norm.weight", w.final_norm);
  if (w.lm_head.rows() > 0) matrix("output.weight", w.lm_head);
  if (!g.rope_freqs.empty()) vector("rope_freqs.weight", g.rope_freqs);
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    const auto& lw = w.layers[l];
    const std::string b = "blk." + std::to_string(l) + ".";
    vector(b + "attn_norm.weight", lw.attn_norm);
    matrix(b + "attn_q.weight", lw.wq, d.heads);
    matrix(b + "attn_k.weight", lw.wk, d.kv_heads);
    matrix(b + "attn_v.weight", lw.wv);
    matrix(b + "attn_output.weight", lw.wo);
    if (!lw.q_norm.empty()) {
      vector(b + "attn_q_norm.weight", lw.q_norm);
      vector(b + "attn_k_norm.weight", lw.k_norm);
    }
    vector(b + "ffn_norm.weight", lw.ffn_norm);
    matrix(b + "ffn_gate.weight", lw.ffn.gate);
    matrix(b + "ffn_up.weight", lw.ffn.up);
    if (!g.drop_ffn_down) matrix(b + "ffn_down.weight", lw.ffn.down);
  }
  if (g.extra_tensor) vector("blk.0.attn_norm_2.weight", w.final_norm);
  const std::string a = g.arch;
  const std::uint64_t kvs = 11 + (g.experts > 0 ? 1 : 0);
  const auto bytes = test::gguf::build(t, kvs, [&](test::gguf::Writer& k) {
    k.kv_str("general.architecture", a);
    k.kv_u32(a + ".embedding_length", std::uint32_t(d.hidden));
    k.kv_u32(a + ".feed_forward_length", std::uint32_t(d.intermediate));
    k.kv_u32(a + ".block_count", std::uint32_t(d.layers));
    k.kv_u32(a + ".context_length", std::uint32_t(d.max_positions));
    k.kv_u32(a + ".attention.head_count", std::uint32_t(d.heads));
    k.kv_u32(a + ".attention.head_count_kv", std::uint32_t(d.kv_heads));
    k.kv_u32(a + ".rope.dimension_count", g.rope_dims ? g.rope_dims : std::uint32_t(d.head_dim));
    k.kv_u32(a + ".vocab_size", std::uint32_t(d.vocab));
    k.str(a + ".attention.layer_norm_rms_epsilon");
    k.u32(6);
    k.f32(g.eps);
    k.str(a + ".rope.freq_base");
    k.u32(6);
    k.f32(g.rope_base);
    if (g.experts > 0) k.kv_u32(a + ".expert_count", g.experts);
  });
  std::vector<std::byte> out(bytes.size());
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

double max_abs(const std::vector<ref::Vec>& rows) {
  double m = 0;
  for (const auto& r : rows)
    for (double x : r) m = std::max(m, std::abs(x));
  return m;
}

// Every position's logits of `dec` over `tokens` against the reference rows.
template <class Dec>
void require_matches(Dec& dec, const std::vector<std::int32_t>& tokens,
                     const std::vector<ref::Vec>& want) {
  const Index V = dec.dims().vocab, T = Index(tokens.size());
  std::vector<float> got(std::size_t(T * V));
  dec.forward(0, tokens, {got.data(), T, V}, tformer::LogitsFor::All);
  const double tol = 1e-5 * (1.0 + max_abs(want));  // the decoder test's tolerance
  double worst = 0;
  for (Index r = 0; r < T; ++r)
    for (Index j = 0; j < V; ++j)
      worst = std::max(worst, std::abs(got[std::size_t(r * V + j)] - want[std::size_t(r)][std::size_t(j)]));
  INFO("worst logit error " << worst << ", tolerance " << tol);
  REQUIRE(worst <= tol);
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const tformer::Error& e) {
    return e.what();
  }
  return "";
}

// Llama 3.1's frequency divisors as llama.cpp's converter stores them (rope_freqs.weight),
// written from the published formula here.
std::vector<float> llama31_divisors(Index head_dim, double base) {
  const double factor = 8, low = 1, high = 4, original = 8192;
  std::vector<float> out;
  for (Index i = 0; i < head_dim / 2; ++i) {
    const double freq = std::pow(base, -2.0 * double(i) / double(head_dim));
    const double wavelen = 2 * M_PI / freq;
    double divisor = 1;
    if (wavelen > original / low) divisor = factor;
    else if (wavelen >= original / high) {
      const double smooth = (original / wavelen - low) / (high - low);
      divisor = 1 / ((1 - smooth) / factor + smooth);
    }
    out.push_back(float(divisor));
  }
  return out;
}

}  // namespace

TEST_CASE("checkpoint: a llama GGUF file loads in one call and matches the reference in every type",
          "[checkpoint][gguf]") {
  const ModelParams params = presets::llama3();
  auto owned = random_model<configs::Llama>(small, 3, params);
  test::Random rng(4);
  std::vector<std::int32_t> tokens(12);
  for (auto& x : tokens) x = rng.integer(0, int(small.vocab) - 1);
  const test::TempDir dir;
  for (WeightType type : {WeightType::f32, WeightType::f16, WeightType::bf16, WeightType::q8_0,
                          WeightType::q4_0}) {
    INFO("type " << tformer::type_name(type));
    const tformer::ConvertedWeights stored(
        owned.view(), {.attention = type, .ffn = type, .embedding = type, .head = type});
    const std::string path =
        dir.write(std::string("llama_") + tformer::type_name(type) + ".gguf",
                  gguf_file(stored.view(), small, {}));
    const tformer::LoadedModel m = tformer::load_gguf(path);
    CHECK(m.info().family == "llama");
    CHECK(m.info().rope_layout == tformer::RopeLayout::Interleaved);
    CHECK(m.dims() == small);
    CHECK(m.params().rope_base == 500000.0);
    CHECK(m.params().eps == 1e-5f);
    CHECK(m.weights().layers[1].ffn.down.type() == type);
    CHECK(m.copied_bytes() == (5 * 64) * sizeof(float));  // norms: 2 layers × 2 + final
    auto dec = m.decoder<configs::LlamaInterleaved>({.capacity = 16});
    require_matches(dec, tokens, ref::decoder_logits<configs::Llama>(stored.view(), small, tokens, {}, {}, params));
    // The Hugging Face layout's Config is refused: the rows are interleaved.
    CHECK_THAT(error_of([&] { (void)m.decoder<configs::Llama>(); }),
               Catch::Contains("Config::rope_layout") && Catch::Contains("Interleaved"));
  }
}

TEST_CASE("checkpoint: GGUF rope_freqs (Llama 3.1's scaling) and a tied qwen3 file",
          "[checkpoint][gguf]") {
  test::Random rng(5);
  std::vector<std::int32_t> tokens(40);
  for (auto& x : tokens) x = rng.integer(0, int(small.vocab) - 1);
  const test::TempDir dir;
  SECTION("llama with rope_freqs.weight") {
    Dims d = small;
    const ModelParams params = presets::llama31();
    auto owned = random_model<configs::Llama>(d, 6, params);
    // q, k × 12: attention sharp enough for the scaled low frequencies to matter
    for (const auto& l : owned.view().layers)
      for (const WeightView& m : {l.wq, l.wk})
        for (Index i = 0; i < m.rows() * m.cols(); ++i) decltype(owned)::mut(m)[i] *= 12;
    const std::string path =
        dir.write("llama31.gguf", gguf_file(owned.view(), d, {.rope_freqs = llama31_divisors(d.head_dim, 500000.0)}));
    const tformer::LoadedModel m = tformer::load_gguf(path);
    CHECK(std::holds_alternative<tformer::rope_scaling::LongRope>(m.params().rope_scaling));
    auto dec = m.decoder<configs::LlamaInterleaved>({.capacity = 48});
    const auto want = ref::decoder_logits<configs::Llama>(owned.view(), d, tokens, {}, {}, params);
    require_matches(dec, tokens, want);
    // Without the divisors the logits move past the tolerance: the tensor is used.
    const auto plain = ref::decoder_logits<configs::Llama>(owned.view(), d, tokens, {}, {}, presets::llama3());
    double apart = 0;
    for (std::size_t j = 0; j < want.back().size(); ++j) apart = std::max(apart, std::abs(want.back()[j] - plain.back()[j]));
    CHECK(apart > 10 * 1e-5 * (1 + max_abs(want)));
  }
  SECTION("qwen3: rotate-half rows, qk-norm, tied head") {
    const ModelParams params = presets::qwen3();
    auto owned = random_model<TiedQwen>(small, 7, params);
    const std::string path = dir.write("qwen3.gguf", gguf_file(owned.view(), small, {.arch = "qwen3", .rope_base = 1e6f, .eps = 1e-6f}));
    const tformer::LoadedModel m = tformer::load_gguf(path);
    CHECK(m.info().tied);
    CHECK(m.params().qk_norm);
    CHECK(m.info().rope_layout == tformer::RopeLayout::RotateHalf);
    auto dec = m.decoder<configs::Qwen3>({.capacity = 48});
    require_matches(dec, tokens, ref::decoder_logits<TiedQwen>(owned.view(), small, tokens, {}, {}, params));
  }
}

TEST_CASE("checkpoint: bad GGUF models raise an Error naming the file and the key or tensor",
          "[checkpoint][gguf][errors]") {
  auto owned = random_model<configs::Llama>(small, 8, presets::llama3());
  const test::TempDir dir;
  const auto load_error = [&](const std::string& name, const GgufModel& g) {
    const std::string path = dir.write(name, gguf_file(owned.view(), small, g));
    const std::string e = error_of([&] { (void)tformer::load_gguf(path); });
    CHECK_THAT(e, Catch::Contains(path));
    return e;
  };
  CHECK_THAT(load_error("arch.gguf", {.arch = "gpt2"}), Catch::Contains("general.architecture"));
  CHECK_THAT(load_error("extra.gguf", {.extra_tensor = true}), Catch::Contains("blk.0.attn_norm_2.weight"));
  CHECK_THAT(load_error("missing.gguf", {.drop_ffn_down = true}), Catch::Contains("blk.0.ffn_down.weight"));
  CHECK_THAT(load_error("partial.gguf", {.rope_dims = 8}), Catch::Contains("rope.dimension_count"));
  CHECK_THAT(load_error("moe.gguf", {.experts = 4}), Catch::Contains("expert_count"));
  // A qwen3 file without its q/k norms.
  CHECK_THAT(load_error("qwen_no_norm.gguf", {.arch = "qwen3"}), Catch::Contains("attn_q_norm"));
  // Dims from the file that the decoder refuses: the model loads, the decoder names the problem.
  const std::string path = dir.write("ok.gguf", gguf_file(owned.view(), small, {}));
  const tformer::LoadedModel m = tformer::load_gguf(path);
  CHECK_THAT(error_of([&] { (void)m.decoder<configs::LlamaInterleaved>({.capacity = 49}); }),
             Catch::Contains("options.capacity"));
}
