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
#include <deque>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/error_of.hpp"
#include "reference/decoder_reference.hpp"
#include "support/gguf_writer.hpp"
#include "support/random.hpp"
#include "support/temp_dir.hpp"
#include "tformer/io/checkpoint.hpp"
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
    for (auto s : {l.attn_norm, l.ffn_norm, l.q_norm, l.k_norm, l.post_attn_norm, l.post_ffn_norm})
      perturb(s);
  for (const auto& l : w.view().layers)  // a shared expert's gate of order 1: sigmoid spans (0, 1)
    for (Index i = 0; i < l.shared_expert_gate.cols(); ++i)
      tformer::OwnedWeights<C>::mut(l.shared_expert_gate)[i] *= 30.0f;
  return w;
}

// Rounds every norm vector of w to bf16 (nearest, ties to even), so that a BF16 file holds them
// exactly.
template <class C>
void round_norms_to_bf16(tformer::OwnedWeights<C>& w) {
  const auto round = [](std::span<const float> s) {
    for (std::size_t i = 0; i < s.size(); ++i) {
      float& x = tformer::OwnedWeights<C>::mut(s)[i];
      std::uint32_t u;
      std::memcpy(&u, &x, 4);
      u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000u;
      std::memcpy(&x, &u, 4);
    }
  };
  round(w.view().final_norm);
  for (const auto& l : w.view().layers)
    for (auto s : {l.attn_norm, l.ffn_norm, l.q_norm, l.k_norm}) round(s);
}

// w with random q, k, v (and o) biases, kept in `store`.
tformer::ModelWeights with_biases(tformer::ModelWeights w, const Dims& d, bool o,
                                  std::deque<std::vector<float>>& store, std::uint64_t seed) {
  test::Random rng(seed);
  const auto bias = [&](Index n) -> std::span<const float> {
    store.push_back(rng.normal_floats(std::size_t(n), 0.5f));
    return store.back();
  };
  for (auto& l : w.layers) {
    l.bq = bias(d.heads * d.head_dim);
    l.bk = bias(d.kv_heads * d.head_dim);
    l.bv = bias(d.kv_heads * d.head_dim);
    if (o) l.bo = bias(d.hidden);
  }
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
  std::uint32_t experts = 0;       // > 0: expert_count (and expert_used_count = the Dims' top_k)
  std::uint32_t expert_width = 0;  // > 0: expert_feed_forward_length
  bool experts_swapped = false;    // merged expert tensors with ne [cols, E, rows] (wrong)
  bool shared_width_key = true;    // write expert_shared_feed_forward_length (with a shared expert)
  bool gate_2d = false;            // ffn_gate_inp_shexp as ne [H, 1], as newer converters write it
  float linear = 0;             // > 0: a linear RoPE scaling factor …
  bool old_key = false;         // … as rope.scale_linear (no type key) instead of rope.scaling.*
  std::uint32_t value_length = 0;  // > 0: written
  bool key_length = false;         // write attention.key_length = head_dim
  float yarn = 0;                  // > 0: rope.scaling.type yarn with this factor, …
  std::uint32_t yarn_original = 0;  // … rope.scaling.original_context_length, …
  float attn_factor = 0;            // … and rope.scaling.attn_factor when > 0
  bool norm_shift = false;  // Gemma: every *norm.weight written with 1 added (llama.cpp's converter)
  std::vector<std::pair<std::string, std::uint32_t>> u32_keys = {};  // more keys ({a}. prefixed)
  std::vector<std::pair<std::string, float>> f32_keys = {};
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
    if (g.norm_shift && name.ends_with("norm.weight")) {
      std::vector<float> shifted(v.begin(), v.end());
      for (float& x : shifted) x += 1.0f;
      t.push_back({name, 0, {std::uint64_t(v.size())}, bytes_of(std::span<const float>(shifted))});
      return;
    }
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
    if (!lw.bq.empty()) {
      vector(b + "attn_q.bias", lw.bq);
      vector(b + "attn_k.bias", lw.bk);
      vector(b + "attn_v.bias", lw.bv);
    }
    if (!lw.q_norm.empty()) {
      vector(b + "attn_q_norm.weight", lw.q_norm);
      vector(b + "attn_k_norm.weight", lw.k_norm);
    }
    vector(b + "ffn_norm.weight", lw.ffn_norm);
    if (!lw.post_attn_norm.empty()) {  // Gemma 2 and 3
      vector(b + "post_attention_norm.weight", lw.post_attn_norm);
      vector(b + "post_ffw_norm.weight", lw.post_ffn_norm);
    }
    if (lw.experts.empty()) {
      matrix(b + "ffn_gate.weight", lw.ffn.gate);
      matrix(b + "ffn_up.weight", lw.ffn.up);
      if (!g.drop_ffn_down) matrix(b + "ffn_down.weight", lw.ffn.down);
      continue;
    }
    // Experts merged as llama.cpp's converter writes them: ne = [cols, rows, experts].
    t.push_back({b + "ffn_gate_inp.weight", 0, {std::uint64_t(lw.router.cols()), std::uint64_t(lw.router.rows())},
                 bytes_of(WeightView(lw.router))});
    const auto merged = [&](const std::string& name, auto member) {
      const WeightView& first = lw.experts[0].*member;
      std::vector<std::uint8_t> all;
      for (const auto& e : lw.experts) {
        const std::vector<std::uint8_t> one = bytes_of(e.*member);
        all.insert(all.end(), one.begin(), one.end());
      }
      const std::uint64_t rows = std::uint64_t(first.rows()), E = std::uint64_t(lw.experts.size());
      t.push_back({name, ggml_type(first.type()),
                   g.experts_swapped ? std::vector<std::uint64_t>{std::uint64_t(first.cols()), E, rows}
                                     : std::vector<std::uint64_t>{std::uint64_t(first.cols()), rows, E},
                   all});
    };
    merged(b + "ffn_gate_exps.weight", &tformer::SwiGluWeights::gate);
    merged(b + "ffn_up_exps.weight", &tformer::SwiGluWeights::up);
    merged(b + "ffn_down_exps.weight", &tformer::SwiGluWeights::down);
    if (lw.shared_expert.gate.rows() > 0) {
      matrix(b + "ffn_gate_shexp.weight", lw.shared_expert.gate);
      matrix(b + "ffn_up_shexp.weight", lw.shared_expert.up);
      matrix(b + "ffn_down_shexp.weight", lw.shared_expert.down);
      const std::span<const float> gate(lw.shared_expert_gate.row(0), std::size_t(lw.shared_expert_gate.cols()));
      if (g.gate_2d)
        t.push_back({b + "ffn_gate_inp_shexp.weight", 0, {std::uint64_t(gate.size()), 1}, bytes_of(gate)});
      else
        vector(b + "ffn_gate_inp_shexp.weight", gate);
    }
  }
  if (g.extra_tensor) vector("blk.0.attn_norm_2.weight", w.final_norm);
  const std::string a = g.arch;
  const std::uint64_t kvs = 11 + (g.experts > 0) + (g.experts > 0 && d.top_k > 0) +
                            (g.expert_width > 0) + (d.shared_intermediate > 0 && g.shared_width_key) +
                            (g.linear > 0 ? (g.old_key ? 1 : 2) : 0) +
                            (g.value_length > 0) + g.key_length +
                            (g.yarn > 0 ? 3 + (g.attn_factor > 0) : 0) + g.u32_keys.size() +
                            g.f32_keys.size();
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
    if (g.experts > 0 && d.top_k > 0) k.kv_u32(a + ".expert_used_count", std::uint32_t(d.top_k));
    if (g.expert_width > 0) k.kv_u32(a + ".expert_feed_forward_length", g.expert_width);
    if (d.shared_intermediate > 0 && g.shared_width_key)
      k.kv_u32(a + ".expert_shared_feed_forward_length", std::uint32_t(d.shared_intermediate));
    if (g.linear > 0) {
      k.str(a + (g.old_key ? ".rope.scale_linear" : ".rope.scaling.factor"));
      k.u32(6);
      k.f32(g.linear);
      if (!g.old_key) k.kv_str(a + ".rope.scaling.type", "linear");
    }
    if (g.value_length > 0) k.kv_u32(a + ".attention.value_length", g.value_length);
    if (g.key_length) k.kv_u32(a + ".attention.key_length", std::uint32_t(d.head_dim));
    const auto f32 = [&](const std::string& key, float v) {
      k.str(key);
      k.u32(6);
      k.f32(v);
    };
    if (g.yarn > 0) {
      k.kv_str(a + ".rope.scaling.type", "yarn");
      f32(a + ".rope.scaling.factor", g.yarn);
      k.kv_u32(a + ".rope.scaling.original_context_length", g.yarn_original);
      if (g.attn_factor > 0) f32(a + ".rope.scaling.attn_factor", g.attn_factor);
    }
    for (const auto& [key, v] : g.u32_keys) k.kv_u32(a + key, v);
    for (const auto& [key, v] : g.f32_keys) f32(a + key, v);
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

using test::error_of;

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

// ---- Hugging Face directories, written here: config.json by hand, safetensors by the format's
// definition (u64 header length, JSON header, the tensors' bytes in order) ------------------------

struct StTensor {
  std::string name, dtype;
  std::vector<Index> shape;
  std::vector<std::uint8_t> data;
};

const char* st_dtype(WeightType t) {
  switch (t) {
    case WeightType::f32: return "F32";
    case WeightType::f16: return "F16";
    case WeightType::bf16: return "BF16";
    default: FAIL("no safetensors dtype"); return "";
  }
}

std::vector<std::byte> safetensors_file(const std::vector<StTensor>& tensors) {
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
  std::size_t offset = 0;
  for (const StTensor& t : tensors) {
    header += ",\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
    for (std::size_t i = 0; i < t.shape.size(); ++i) header += (i ? "," : "") + std::to_string(t.shape[i]);
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + t.data.size()) + "]}";
    offset += t.data.size();
  }
  header += "}";
  while ((8 + header.size()) % 8) header += ' ';  // the data 8-byte aligned, as writers pad
  std::vector<std::byte> out(8 + header.size());
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[std::size_t(i)] = std::byte(n >> (8 * i));
  std::memcpy(out.data() + 8, header.data(), header.size());
  for (const StTensor& t : tensors)
    for (std::uint8_t b : t.data) out.push_back(std::byte(b));
  return out;
}

struct HfModel {
  std::string type = "llama";  // model_type
  bool tied = false;
  bool write_lm_head = true;   // with tied: a checkpoint that still ships lm_head.weight
  std::string extra = "";      // more config.json members, e.g. "\"sliding_window\": 3,"
  std::string extra_tensor = "";
  int shards = 1;
  bool bf16_norms = false;     // norm vectors as BF16 (their values must be bf16 already)
  std::string prefix = "model.";       // the language model's names
  std::string head = "lm_head.weight";
  // A multimodal Gemma 3: config.json holds the model's as text_config under model_type
  // gemma3, and the files a vision tower's tensors (under `vision`) beside the language model.
  bool multimodal = false;
  std::string vision = "";
};

// A model directory of `w` (Hugging Face's layout and names) in `dir`/`name`; returns its path.
std::string hf_dir(const test::TempDir& dir, const std::string& name, const tformer::ModelWeights& w,
                   const Dims& d, const ModelParams& p, const HfModel& h) {
  std::vector<StTensor> t;
  const auto matrix = [&](const std::string& n, const WeightView& m) {
    t.push_back({n, st_dtype(m.type()), {m.rows(), m.cols()}, bytes_of(m)});
  };
  const auto vector = [&](const std::string& n, std::span<const float> v) {
    if (!h.bf16_norms) {
      t.push_back({n, "F32", {Index(v.size())}, bytes_of(v)});
      return;
    }
    std::vector<std::uint8_t> b;  // the upper half of each f32, little-endian
    for (float x : v) {
      std::uint32_t u;
      std::memcpy(&u, &x, 4);
      REQUIRE((u & 0xffff) == 0);
      b.push_back(std::uint8_t(u >> 16));
      b.push_back(std::uint8_t(u >> 24));
    }
    t.push_back({n, "BF16", {Index(v.size())}, b});
  };
  matrix(h.prefix + "embed_tokens.weight", w.embedding);
  vector(h.prefix + "norm.weight", w.final_norm);
  // Tied: a checkpoint may still ship lm_head.weight; this one holds 7s, which would show.
  const std::vector<float> decoy(std::size_t(w.embedding.rows() * w.embedding.cols()), 7.0f);
  if (h.write_lm_head)
    matrix(h.head, h.tied ? WeightView(decoy.data(), w.embedding.rows(), w.embedding.cols())
                          : w.lm_head);
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    const auto& lw = w.layers[l];
    const std::string b = h.prefix + "layers." + std::to_string(l) + ".";
    vector(b + "input_layernorm.weight", lw.attn_norm);
    matrix(b + "self_attn.q_proj.weight", lw.wq);
    matrix(b + "self_attn.k_proj.weight", lw.wk);
    matrix(b + "self_attn.v_proj.weight", lw.wv);
    matrix(b + "self_attn.o_proj.weight", lw.wo);
    if (!lw.bq.empty()) {
      vector(b + "self_attn.q_proj.bias", lw.bq);
      vector(b + "self_attn.k_proj.bias", lw.bk);
      vector(b + "self_attn.v_proj.bias", lw.bv);
    }
    if (!lw.bo.empty()) vector(b + "self_attn.o_proj.bias", lw.bo);
    if (!lw.q_norm.empty()) {
      vector(b + "self_attn.q_norm.weight", lw.q_norm);
      vector(b + "self_attn.k_norm.weight", lw.k_norm);
    }
    if (lw.post_attn_norm.empty()) {
      vector(b + "post_attention_layernorm.weight", lw.ffn_norm);
    } else {  // Gemma 2's names
      vector(b + "post_attention_layernorm.weight", lw.post_attn_norm);
      vector(b + "pre_feedforward_layernorm.weight", lw.ffn_norm);
      vector(b + "post_feedforward_layernorm.weight", lw.post_ffn_norm);
    }
    if (lw.experts.empty()) {
      matrix(b + "mlp.gate_proj.weight", lw.ffn.gate);
      matrix(b + "mlp.up_proj.weight", lw.ffn.up);
      matrix(b + "mlp.down_proj.weight", lw.ffn.down);
    } else {  // Qwen's mlp.{gate, experts.E.*_proj}, or Mixtral's block_sparse_moe.{gate, w1/w3/w2}
      const bool qwen = h.type == "qwen3_moe" || h.type == "qwen2_moe";
      const std::string block = b + (qwen ? "mlp." : "block_sparse_moe.");
      matrix(block + "gate.weight", WeightView(lw.router));
      for (std::size_t e = 0; e < lw.experts.size(); ++e) {
        const std::string x = block + "experts." + std::to_string(e) + ".";
        matrix(x + (qwen ? "gate_proj.weight" : "w1.weight"), lw.experts[e].gate);
        matrix(x + (qwen ? "up_proj.weight" : "w3.weight"), lw.experts[e].up);
        matrix(x + (qwen ? "down_proj.weight" : "w2.weight"), lw.experts[e].down);
      }
      if (lw.shared_expert.gate.rows() > 0) {
        matrix(block + "shared_expert.gate_proj.weight", lw.shared_expert.gate);
        matrix(block + "shared_expert.up_proj.weight", lw.shared_expert.up);
        matrix(block + "shared_expert.down_proj.weight", lw.shared_expert.down);
        matrix(block + "shared_expert_gate.weight", WeightView(lw.shared_expert_gate));
      }
    }
  }
  if (!h.extra_tensor.empty()) vector(h.extra_tensor, w.final_norm);
  if (h.multimodal) {  // a vision tower's tensors, which the loader leaves alone
    matrix(h.vision + "vision_tower.vision_model.embeddings.patch_embedding.weight", w.embedding);
    vector(h.vision + "multi_modal_projector.mm_soft_emb_norm.weight", w.final_norm);
  }
  const std::filesystem::path root = dir.path / name;
  std::filesystem::create_directory(root);
  const auto write = [&](const std::string& file, const std::vector<std::byte>& bytes) {
    std::ofstream(root / file, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  };
  if (h.shards == 1) {
    write("model.safetensors", safetensors_file(t));
  } else {  // shards of consecutive tensors and their index
    std::string index = "{\"metadata\":{},\"weight_map\":{";
    const std::size_t per = (t.size() + std::size_t(h.shards) - 1) / std::size_t(h.shards);
    for (int s = 0; s < h.shards; ++s) {
      const std::string file = "model-0000" + std::to_string(s + 1) + "-of-0000" + std::to_string(h.shards) + ".safetensors";
      std::vector<StTensor> part(t.begin() + std::ptrdiff_t(std::min(t.size(), s * per)),
                                 t.begin() + std::ptrdiff_t(std::min(t.size(), (s + 1) * per)));
      for (const StTensor& x : part) index += (index.back() == '{' ? "" : ",") + ("\"" + x.name + "\":\"" + file + "\"");
      write(file, safetensors_file(part));
    }
    index += "}}";
    write("model.safetensors.index.json", std::vector<std::byte>(reinterpret_cast<const std::byte*>(index.data()),
                                                                 reinterpret_cast<const std::byte*>(index.data()) + index.size()));
  }
  std::ostringstream c;
  c << "{\n  \"architectures\": [\"X\"],\n  \"model_type\": \"" << h.type << "\",\n"
    << "  \"vocab_size\": " << d.vocab << ", \"hidden_size\": " << d.hidden
    << ", \"intermediate_size\": " << d.intermediate << ",\n  \"num_hidden_layers\": " << d.layers
    << ", \"num_attention_heads\": " << d.heads << ", \"num_key_value_heads\": " << d.kv_heads
    << ", \"head_dim\": " << d.head_dim << ",\n  \"max_position_embeddings\": " << d.max_positions
    << ", \"rms_norm_eps\": " << std::setprecision(9) << p.eps << ", \"rope_theta\": " << p.rope_base
    << ",\n  \"tie_word_embeddings\": " << (h.tied ? "true" : "false") << ", \"hidden_act\": \"silu\","
    << " \"attention_bias\": false,\n  " << h.extra;  // h.extra's members last: they override
  if (h.extra.find("rope_scaling") == std::string::npos) c << "\"rope_scaling\": null, ";
  if (d.experts > 0 && h.type != "mixtral")  // the experts' width apart from the dense one
    c << "\"num_experts\": " << d.experts << ", \"num_experts_per_tok\": " << d.top_k
      << ", \"moe_intermediate_size\": " << d.intermediate << ", \"intermediate_size\": 999, "
      << "\"shared_expert_intermediate_size\": " << d.shared_intermediate << ", ";
  else if (d.experts > 0)
    c << "\"num_local_experts\": " << d.experts << ", \"num_experts_per_tok\": " << d.top_k << ",";
  c << "\"torch_dtype\": \"bfloat16\"\n}\n";
  std::string text = c.str();
  if (h.multimodal)
    text = nlohmann::json{{"model_type", "gemma3"},
                          {"text_config", nlohmann::json::parse(text)},
                          {"vision_config", {{"model_type", "siglip_vision_model"}}}}
               .dump(2);
  write("config.json", std::vector<std::byte>(reinterpret_cast<const std::byte*>(text.data()),
                                              reinterpret_cast<const std::byte*>(text.data()) + text.size()));
  return root.string();
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
  SECTION("linear scaling, from rope.scaling.* and from the older rope.scale_linear") {
    ModelParams params = presets::llama3();
    params.rope_scaling = tformer::rope_scaling::Linear{.factor = 4.0};
    auto owned = random_model<configs::Llama>(small, 16, params);
    for (const bool old_key : {false, true}) {
      const std::string path = dir.write(old_key ? "old_linear.gguf" : "linear.gguf",
                                         gguf_file(owned.view(), small, {.linear = 4.0f, .old_key = old_key, .key_length = true}));
      const tformer::LoadedModel m = tformer::load_gguf(path);
      REQUIRE(std::holds_alternative<tformer::rope_scaling::Linear>(m.params().rope_scaling));
      CHECK(std::get<tformer::rope_scaling::Linear>(m.params().rope_scaling).factor == 4.0);
      auto dec = m.decoder<configs::LlamaInterleaved>({.capacity = 48});
      require_matches(dec, tokens, ref::decoder_logits<configs::Llama>(owned.view(), small, tokens, {}, {}, params));
    }
  }
  SECTION("qwen2: rotate-half rows, q/k/v biases") {
    const ModelParams params = presets::llama3();
    auto owned = random_model<configs::Llama>(small, 20, params);
    std::deque<std::vector<float>> store;
    const auto w = with_biases(owned.view(), small, false, store, 21);
    const std::string path = dir.write("qwen2.gguf", gguf_file(w, small, {.arch = "qwen2"}));
    const tformer::LoadedModel m = tformer::load_gguf(path);
    CHECK(m.info().qkv_bias);
    auto dec = m.decoder<configs::Llama>({.capacity = 48});
    require_matches(dec, tokens, ref::decoder_logits<configs::Llama>(w, small, tokens, {}, {}, params));
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

TEST_CASE("checkpoint: GGUF YaRN, partial rotary and the Gemma architectures match the reference",
          "[checkpoint][gguf]") {
  test::Random rng(9);
  std::vector<std::int32_t> tokens(30);
  for (auto& x : tokens) x = rng.integer(0, int(small.vocab) - 1);
  const test::TempDir dir;
  SECTION("qwen2: YaRN (factor 4, L0 8, attn_factor 1.5) on the first 8 of 16 values") {
    ModelParams params = presets::llama3();
    params.rope_base = 100.0;  // large angles: the ramp and the factor matter at these lengths
    params.rotary_dim = 8;
    params.rope_scaling = tformer::rope_scaling::Yarn{
        .factor = 4.0, .original_max_positions = 8, .attention_factor = 1.5 * (1 + 0.1 * std::log(4.0))};
    auto owned = random_model<configs::Llama>(small, 30, params);
    std::deque<std::vector<float>> store;
    const auto w = with_biases(owned.view(), small, false, store, 31);
    const std::string path = dir.write("yarn.gguf", gguf_file(w, small,
        {.arch = "qwen2", .rope_base = 100.0f, .rope_dims = 8, .yarn = 4.0f, .yarn_original = 8,
         .attn_factor = 1.5f}));
    const tformer::LoadedModel m = tformer::load_gguf(path);
    CHECK(m.params().rotary_dim == 8);
    const auto& y = std::get<tformer::rope_scaling::Yarn>(m.params().rope_scaling);
    CHECK((y.factor == 4.0 && y.original_max_positions == 8 && y.beta_fast == 32 && y.beta_slow == 1));
    auto dec = m.decoder<configs::Llama>({.capacity = 32});
    const auto want = ref::decoder_logits<configs::Llama>(w, small, tokens, {}, {}, params);
    require_matches(dec, tokens, want);
    // Without the attention factor the logits move: the test sees it.
    ModelParams plain = params;
    std::get<tformer::rope_scaling::Yarn>(plain.rope_scaling).attention_factor = std::nullopt;
    const auto other = ref::decoder_logits<configs::Llama>(w, small, tokens, {}, {}, plain);
    CHECK(ref::max_difference(want, other) > 10 * 1e-5 * (1.0 + max_abs(want)));
  }
  SECTION("gemma: norms stored with the 1 added load as x̂ · w (configs::Llama)") {
    const ModelParams params = presets::gemma(small.hidden);
    auto owned = random_model<configs::Gemma>(small, 32, params);
    tformer::ModelWeights tied = owned.view();
    tied.lm_head = {};
    const std::string path = dir.write("gemma.gguf", gguf_file(tied, small,
        {.arch = "gemma", .rope_base = 10000.0f, .eps = 1e-6f, .norm_shift = true}));
    const tformer::LoadedModel m = tformer::load_gguf(path);
    CHECK((m.info().tied && m.info().norm == tformer::NormScale::Weight && !m.info().post_norms));
    CHECK((m.params().embed_scale == std::sqrt(float(small.hidden)) &&
           m.params().activation.kind == tformer::ActivationKind::GeluTanh));
    auto dec = m.decoder<configs::Llama>({.capacity = 32});
    require_matches(dec, tokens, ref::decoder_logits<configs::Gemma>(tied, small, tokens, {}, {}, params));
  }
  SECTION("gemma2: sandwich norms, soft-caps and window from the keys") {
    ModelParams params = presets::gemma2(small.hidden);
    params.attention_scale = 0;  // llama.cpp: 1/√head_dim below 27B
    params.attention = {.window = 3, .global_every = 2};
    params.attention_softcap = 0.05f;
    params.final_softcap = 0.3f;
    auto owned = random_model<configs::Gemma2>(small, 33, params);
    tformer::ModelWeights tied = owned.view();
    tied.lm_head = {};
    const std::string path = dir.write("gemma2.gguf", gguf_file(tied, small,
        {.arch = "gemma2", .rope_base = 10000.0f, .eps = 1e-6f, .norm_shift = true,
         .u32_keys = {{".attention.sliding_window", 3}},
         .f32_keys = {{".attn_logit_softcapping", 0.05f}, {".final_logit_softcapping", 0.3f}}}));
    const tformer::LoadedModel m = tformer::load_gguf(path);
    CHECK((m.info().post_norms && m.params().attention.window == 3 &&
           m.params().attention.global_every == 2 && m.params().attention_softcap == 0.05f));
    auto dec = m.decoder<configs::Gemma2Gguf>({.capacity = 32});
    require_matches(dec, tokens, ref::decoder_logits<configs::Gemma2>(tied, small, tokens, {}, {}, params));
    // 46 layers is llama.cpp's Gemma 2 27B: queries × 1/√(n_embd / n_head), not 1/√head_dim.
    Dims deep = small;
    deep.layers = 46;
    deep.head_dim = 8;
    auto big = random_model<configs::Gemma2>(deep, 35, params);
    tformer::ModelWeights big_tied = big.view();
    big_tied.lm_head = {};
    const auto b = tformer::load_gguf(dir.write("gemma2_27b.gguf", gguf_file(big_tied, deep,
        {.arch = "gemma2", .rope_base = 10000.0f, .eps = 1e-6f, .key_length = true, .norm_shift = true})));
    CHECK((b.dims().head_dim == 8 && b.params().attention_scale == 0.25f));
  }
  SECTION("gemma3: qk-norm, local layers' base 10000 unscaled, global ones scaled") {
    ModelParams params = presets::gemma3(small.hidden);
    params.attention_scale = 0;
    params.attention = {.window = 3, .global_every = 2};
    params.rope_base = 1000.0;
    params.rope_scaling = tformer::rope_scaling::Linear{.factor = 8.0};
    auto owned = random_model<configs::Gemma2>(small, 34, params);
    tformer::ModelWeights tied = owned.view();
    tied.lm_head = {};
    const std::string path = dir.write("gemma3.gguf", gguf_file(tied, small,
        {.arch = "gemma3", .rope_base = 1000.0f, .eps = 1e-6f, .linear = 8.0f, .norm_shift = true,
         .u32_keys = {{".attention.sliding_window", 3}, {".attention.sliding_window_pattern", 2}}}));
    const tformer::LoadedModel m = tformer::load_gguf(path);
    CHECK((m.params().qk_norm && m.params().local_rope_base == 10000.0 &&
           m.params().attention_softcap == 0 && m.params().final_softcap == 0));
    auto dec = m.decoder<configs::Gemma2Gguf>({.capacity = 32});
    require_matches(dec, tokens, ref::decoder_logits<configs::Gemma2>(tied, small, tokens, {}, {}, params));
    // Without attention.sliding_window every layer is global, rotated with the model's RoPE.
    const auto global = tformer::load_gguf(dir.write("gemma3_global.gguf", gguf_file(tied, small,
        {.arch = "gemma3", .rope_base = 1000.0f, .eps = 1e-6f, .linear = 8.0f, .norm_shift = true})));
    CHECK((global.params().attention.window == 0 && global.params().local_rope_base == 0));
  }
}

TEST_CASE("checkpoint: MoE GGUF files (Mixtral as llama, qwen3moe) load and match the reference",
          "[checkpoint][gguf]") {
  Dims d = small;
  d.experts = 4;
  d.top_k = 2;
  test::Random rng(30);
  std::vector<std::int32_t> tokens(12);
  for (auto& x : tokens) x = rng.integer(0, int(d.vocab) - 1);
  const test::TempDir dir;
  SECTION("llama with experts (Mixtral): interleaved rows, q8_0 and q4_0 experts") {
    const ModelParams p = presets::mixtral();
    auto owned = random_model<configs::Mixtral>(d, 31, p);
    for (WeightType type : {WeightType::q8_0, WeightType::q4_0}) {
      INFO("type " << tformer::type_name(type));
      const tformer::ConvertedWeights stored(owned.view(), {.attention = WeightType::f16, .ffn = type});
      const std::string path = dir.write(std::string("mixtral_") + tformer::type_name(type) + ".gguf",
                                         gguf_file(stored.view(), d, {.rope_base = 1e6f, .experts = 4}));
      const auto m = tformer::load_checkpoint(path);
      CHECK((m.info().ffn == tformer::FfnKind::MoE && m.dims().experts == 4 && m.dims().top_k == 2));
      CHECK((m.params().router == tformer::RouterKind::SoftmaxThenTopK && m.params().renormalize));
      CHECK(m.weights().layers[1].experts[3].down.type() == type);
      auto dec = m.decoder<configs::MixtralInterleaved>({.capacity = 16});
      require_matches(dec, tokens, ref::decoder_logits<configs::Mixtral>(stored.view(), d, tokens, {}, {}, p));
      // The experts (row slices of one stacked tensor) repacked as q8_0x16 or q4_0x16: the int8
      // logits of the file's own q8_0 or q4_0 views, within the decoder test's RepackedWeights
      // bound (a rounding of x's int8 quantization may flip between the two; a wrong row or block
      // moves them by O(1)).
      tformer::ModelWeights int8 = m.weights();
      tformer::set_activations(int8, tformer::Activations::int8);
      const tformer::RepackedWeights x16(int8);
      CHECK(x16.view().layers[1].experts[3].down.type() == tformer::x16_type(type));
      std::vector<float> ra(std::size_t(d.intermediate)), rb(ra.size());
      for (Index r = 0; r < d.hidden; ++r) {  // the same values, row by row
        tformer::dequantize_row(int8.layers[1].experts[3].down, r, ra);
        tformer::dequantize_row(x16.view().layers[1].experts[3].down, r, rb);
        REQUIRE(ra == rb);
      }
      tformer::Decoder<configs::MixtralInterleaved> a(int8, m.dims(), m.params(), {.capacity = 16});
      tformer::Decoder<configs::MixtralInterleaved> b(x16.view(), m.dims(), m.params(),
                                                      {.capacity = 16});
      const Index V = d.vocab, T = Index(tokens.size());
      std::vector<float> la(std::size_t(T * V)), lb(la.size());
      a.forward(0, tokens, {la.data(), T, V}, tformer::LogitsFor::All);
      b.forward(0, tokens, {lb.data(), T, V}, tformer::LogitsFor::All);
      double worst = 0, scale = 0;
      for (std::size_t i = 0; i < la.size(); ++i) {
        worst = std::max(worst, double(std::abs(la[i] - lb[i])));
        scale = std::max(scale, double(std::abs(la[i])));
      }
      INFO("worst " << worst << " of scale " << scale);
      REQUIRE(worst <= 2e-2 * (1 + scale));
    }
    // The experts' axis must be the last: the same bytes with ne [H, E, I] are refused.
    const std::string swapped = dir.write("mixtral_swapped.gguf",
        gguf_file(owned.view(), d, {.rope_base = 1e6f, .experts = 4, .experts_swapped = true}));
    CHECK_THAT(error_of([&] { (void)tformer::load_gguf(swapped); }),
               Catch::Contains("ffn_gate_exps") && Catch::Contains("[64, 96, 4]"));
  }
  SECTION("qwen2moe: biases, a gated shared expert, the top-k weights not renormalised") {
    ModelParams p = presets::llama3();
    p.rope_base = 1e6;
    p.renormalize = false;  // llama.cpp's qwen2moe: norm_w false
    Dims q = d;
    q.intermediate = 32;
    q.shared_intermediate = 64;
    auto owned = random_model<configs::Mixtral>(q, 33, p);
    const tformer::ConvertedWeights stored(owned.view(), {.attention = WeightType::f16, .ffn = WeightType::q8_0});
    std::deque<std::vector<float>> store;
    const auto w = with_biases(stored.view(), q, false, store, 34);
    Dims written = q;
    written.intermediate = 96;  // feed_forward_length; the experts' own width is a key
    const std::string path = dir.write("qwen2moe.gguf", gguf_file(w, written,
        {.arch = "qwen2moe", .rope_base = 1e6f, .experts = 4, .expert_width = 32}));
    const auto m = tformer::load_checkpoint(path);
    CHECK((m.dims().intermediate == 32 && m.dims().shared_intermediate == 64 && !m.params().renormalize));
    CHECK(m.weights().layers[0].shared_expert.up.type() == WeightType::q8_0);
    auto dec = m.decoder<configs::Mixtral>({.capacity = 16});
    require_matches(dec, tokens, ref::decoder_logits<configs::Mixtral>(w, q, tokens, {}, {}, p));
    // llama.cpp's fallbacks: without the keys, the shared expert is feed_forward_length wide and
    // the experts feed_forward_length / k; the gate row as ne [H, 1] reads the same.
    Dims fallback = q;
    fallback.intermediate = 64;  // = the shared width, and 64 / 2 = the experts' 32
    const std::string bare = dir.write("qwen2moe_bare.gguf", gguf_file(w, fallback,
        {.arch = "qwen2moe", .rope_base = 1e6f, .experts = 4, .shared_width_key = false, .gate_2d = true}));
    const auto mb = tformer::load_checkpoint(bare);
    CHECK((mb.dims().intermediate == 32 && mb.dims().shared_intermediate == 64));
    auto db = mb.decoder<configs::Mixtral>({.capacity = 16});
    require_matches(db, tokens, ref::decoder_logits<configs::Mixtral>(w, q, tokens, {}, {}, p));
  }
  SECTION("qwen3moe: qk-norm, expert_feed_forward_length apart from feed_forward_length") {
    ModelParams p = presets::qwen3();  // renormalised, as llama.cpp runs qwen3moe
    Dims q = d;
    q.intermediate = 32;  // the experts' width; the file's feed_forward_length says 96
    auto owned = random_model<configs::Mixtral>(q, 32, p);
    const tformer::ConvertedWeights stored(owned.view(), {.ffn = WeightType::q8_0});
    GgufModel g{.arch = "qwen3moe", .rope_base = 1e6f, .eps = 1e-6f, .experts = 4, .expert_width = 32};
    Dims written = q;
    written.intermediate = 96;
    const std::string path = dir.write("qwen3moe.gguf", gguf_file(stored.view(), written, g));
    const auto m = tformer::load_checkpoint(path);
    CHECK((m.dims().intermediate == 32 && m.params().qk_norm));
    auto dec = m.decoder<configs::Mixtral>({.capacity = 16});
    require_matches(dec, tokens, ref::decoder_logits<configs::Mixtral>(stored.view(), q, tokens, {}, {}, p));
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
  CHECK_THAT(load_error("partial.gguf", {.rope_dims = 18}), Catch::Contains("rope.dimension_count"));
  CHECK_THAT(load_error("odd_rotary.gguf", {.rope_dims = 7}), Catch::Contains("rope.dimension_count"));
  // gemma and gemma2 tie their head: an output.weight is not theirs.
  CHECK_THAT(load_error("gemma_output.gguf", {.arch = "gemma"}), Catch::Contains("output.weight"));
  CHECK_THAT(load_error("moe.gguf", {.experts = 4}), Catch::Contains("expert_used_count"));
  CHECK_THAT(load_error("qwen3moe.gguf", {.arch = "qwen3moe"}), Catch::Contains("expert_count"));
  CHECK_THAT(load_error("qwen2moe.gguf", {.arch = "qwen2", .experts = 4}), Catch::Contains("expert_count"));
  CHECK_THAT(load_error("value.gguf", {.value_length = 8}), Catch::Contains("value_length"));
  CHECK_THAT(load_error("freqs_and_linear.gguf", {.rope_freqs = std::vector<float>(8, 2.0f), .linear = 2.0f}),
             Catch::Contains("rope_freqs.weight"));
  // A qwen3 file without its q/k norms.
  CHECK_THAT(load_error("qwen_no_norm.gguf", {.arch = "qwen3"}), Catch::Contains("attn_q_norm"));
  // Dims from the file that the decoder refuses: the model loads, the decoder names the problem.
  const std::string path = dir.write("ok.gguf", gguf_file(owned.view(), small, {}));
  const tformer::LoadedModel m = tformer::load_gguf(path);
  CHECK_THAT(error_of([&] { (void)m.decoder<configs::LlamaInterleaved>({.capacity = 49}); }),
             Catch::Contains("options.capacity"));
}

TEST_CASE("checkpoint: Hugging Face directories of each family load in one call and match the reference",
          "[checkpoint][safetensors]") {
  test::Random rng(9);
  std::vector<std::int32_t> tokens(12);
  for (auto& x : tokens) x = rng.integer(0, int(small.vocab) - 1);
  const test::TempDir dir;
  const auto check = [&](const tformer::LoadedModel& m, const tformer::ModelWeights& stored,
                         const ModelParams& p, auto config) {
    using C = decltype(config);
    CHECK(m.info().rope_layout == tformer::RopeLayout::RotateHalf);
    auto dec = m.decoder<C>({.capacity = 16});
    require_matches(dec, tokens, ref::decoder_logits<C>(stored, m.dims(), tokens, {}, {}, p));
  };
  SECTION("llama in f32, f16 and bf16, own head") {
    const ModelParams p = presets::llama3();
    auto owned = random_model<configs::Llama>(small, 10, p);
    for (WeightType type : {WeightType::f32, WeightType::f16, WeightType::bf16}) {
      INFO("type " << tformer::type_name(type));
      const tformer::ConvertedWeights stored(owned.view(), {.attention = type, .ffn = type, .embedding = type, .head = type});
      const auto m = tformer::load_checkpoint(hf_dir(dir, std::string("llama_") + tformer::type_name(type), stored.view(), small, p, {}));
      CHECK(m.info().family == "llama");
      CHECK(m.dims() == small);
      CHECK(m.params().rope_base == 500000.0);
      CHECK(m.weights().layers[0].wq.type() == type);
      CHECK(!m.info().tied);
      check(m, stored.view(), p, configs::Llama{});
    }
  }
  SECTION("llama 3.2 style: tied, lm_head.weight still in the file (ignored, as Hugging Face does)") {
    const ModelParams p = presets::llama3();
    auto owned = random_model<TiedQwen>(small, 11, ModelParams{.rope_base = 500000.0});  // tied, no qk-norm
    const auto m = tformer::load_hf(hf_dir(dir, "llama32", owned.view(), small, p, {.tied = true}));
    CHECK(m.info().tied);
    CHECK(m.weights().lm_head.rows() == 0);
    check(m, owned.view(), p, configs::Llama{});
  }
  SECTION("qwen3 (qk-norm, eps 1e-6), bf16 with bf16 norms, head_dim 32 != hidden / heads, three shards") {
    const ModelParams p = presets::qwen3();
    Dims d = small;
    d.head_dim = 32;  // as Qwen3-0.6B: 16 heads × 128 > hidden 1024
    auto owned = random_model<configs::Qwen3>(d, 12, p);
    round_norms_to_bf16(owned);
    const tformer::ConvertedWeights stored(owned.view(), {.attention = WeightType::bf16, .ffn = WeightType::bf16,
                                                          .embedding = WeightType::bf16, .head = WeightType::bf16});
    const auto m = tformer::load_hf(hf_dir(dir, "qwen3", stored.view(), d, p,
                                           {.type = "qwen3", .shards = 3, .bf16_norms = true}));
    CHECK(m.dims().head_dim == 32);
    CHECK(m.params().qk_norm);
    CHECK(m.params().eps == 1e-6f);
    CHECK(m.params().rope_base == 1e6);
    check(m, stored.view(), p, configs::Llama{});  // the same compiled decoder as Llama's
  }
  SECTION("qwen2: q, k, v biases; llama with attention_bias: o too") {
    const ModelParams p = presets::llama3();
    auto owned = random_model<configs::Llama>(small, 17, p);
    std::deque<std::vector<float>> store;
    const auto qwen2 = with_biases(owned.view(), small, false, store, 18);
    const auto m = tformer::load_hf(hf_dir(dir, "qwen2", qwen2, small, p, {.type = "qwen2"}));
    CHECK((m.info().qkv_bias && !m.info().o_bias && m.weights().layers[0].bk.size() == 32));
    check(m, qwen2, p, configs::Llama{});
    const auto llama = with_biases(owned.view(), small, true, store, 19);
    const auto ml = tformer::load_hf(hf_dir(dir, "llama_bias", llama, small, p, {.extra = "\"attention_bias\": true,"}));
    CHECK((ml.info().qkv_bias && ml.info().o_bias));
    check(ml, llama, p, configs::Llama{});
  }
  SECTION("mistral: the sliding window from config.json") {
    ModelParams p = presets::mistral_7b_v01();
    p.attention.window = 3;
    p.rope_base = 10000.0;
    auto owned = random_model<configs::Llama>(small, 13, p);
    const auto m = tformer::load_hf(hf_dir(dir, "mistral", owned.view(), small, p, {.type = "mistral", .extra = "\"sliding_window\": 3,"}));
    CHECK(m.params().attention.window == 3);
    check(m, owned.view(), p, configs::Llama{});
  }
  SECTION("qwen2 with use_sliding_window: the layers from max_window_layers on slide") {
    ModelParams p = presets::llama3();
    p.attention = {.window = 3, .local_layers = {false, true}};  // layer 0 global, layer 1 local
    auto owned = random_model<configs::Llama>(small, 16, p);
    std::deque<std::vector<float>> store;
    const auto qwen2 = with_biases(owned.view(), small, false, store, 20);
    const auto m = tformer::load_hf(hf_dir(dir, "qwen2_swa", qwen2, small, p, {.type = "qwen2",
        .extra = "\"use_sliding_window\": true, \"sliding_window\": 3, \"max_window_layers\": 1,"}));
    CHECK(m.params().attention.window == 3);
    CHECK(m.params().attention.local_layers == std::vector<bool>{false, true});
    check(m, qwen2, p, configs::Llama{});
  }
  SECTION("qwen2_moe: q/k/v biases, 4 experts, a gated shared expert of its own width, bf16") {
    Dims d = small;
    d.intermediate = 32;
    d.experts = 4;
    d.top_k = 2;
    d.shared_intermediate = 64;
    ModelParams p = presets::llama3();
    p.rope_base = 10000.0;
    p.renormalize = false;  // norm_topk_prob: false
    auto owned = random_model<configs::Mixtral>(d, 24, p);
    const tformer::ConvertedWeights stored(owned.view(), {.attention = WeightType::bf16,
                                                          .ffn = WeightType::bf16});
    std::deque<std::vector<float>> store;
    const auto w = with_biases(stored.view(), d, false, store, 25);
    const auto m = tformer::load_hf(hf_dir(dir, "qwen2_moe", w, d, p, {.type = "qwen2_moe"}));
    CHECK((m.dims().shared_intermediate == 64 && m.info().qkv_bias && !m.params().qk_norm));
    CHECK(m.weights().layers[1].shared_expert.down.type() == WeightType::bf16);
    check(m, w, p, configs::Mixtral{});
  }
  SECTION("gemma: (1 + w) norms, GeGLU, the embedding × √hidden, tied by default") {
    const ModelParams p = presets::gemma(small.hidden);
    auto owned = random_model<configs::Gemma>(small, 22, p);
    tformer::ModelWeights tied = owned.view();
    tied.lm_head = {};  // the embedding is the head
    const auto m = tformer::load_hf(hf_dir(dir, "gemma", tied, small, p,
        {.type = "gemma", .tied = true, .extra = "\"hidden_activation\": \"gelu_pytorch_tanh\","}));
    CHECK((m.info().norm == tformer::NormScale::OnePlusWeight && m.info().tied && !m.info().post_norms));
    CHECK(m.params().activation.kind == tformer::ActivationKind::GeluTanh);
    CHECK(m.params().embed_scale == std::sqrt(float(small.hidden)));
    check(m, tied, p, configs::Gemma{});
    CHECK_THAT(error_of([&] { (void)m.decoder<configs::Llama>(); }), Catch::Contains("Config::norm"));
  }
  SECTION("gemma2: sandwich norms, query_pre_attn_scalar, soft-caps, alternating windows") {
    ModelParams p = presets::gemma2(small.hidden, 16.0);
    p.attention.window = 3;
    p.attention_softcap = 0.05f;  // small enough to matter on a random model's scores
    p.final_softcap = 0.3f;
    auto owned = random_model<configs::Gemma2>(small, 23, p);
    tformer::ModelWeights tied = owned.view();
    tied.lm_head = {};
    const auto m = tformer::load_hf(hf_dir(dir, "gemma2", tied, small, p,
        {.type = "gemma2", .tied = true,
         .extra = "\"query_pre_attn_scalar\": 16, \"sliding_window\": 3, "
                  "\"attn_logit_softcapping\": 0.05, \"final_logit_softcapping\": 0.3,"}));
    CHECK(m.info().post_norms);
    CHECK((m.params().attention.window == 3 && m.params().attention.global_every == 2));
    CHECK(m.params().attention_scale == 0.25f);
    check(m, tied, p, configs::Gemma2{});
    CHECK_THAT(error_of([&] { (void)m.decoder<configs::Gemma>(); }), Catch::Contains("Config::post_norms"));
    // null soft-caps are off; a layer_types list decides the windows.
    const auto off = tformer::parse_hf_config(R"({"model_type": "gemma2", "vocab_size": 10,
        "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
        "max_position_embeddings": 64, "attn_logit_softcapping": null, "final_logit_softcapping": null,
        "layer_types": ["full_attention", "sliding_attention"]})", "g.json");
    CHECK((off.params.attention_softcap == 0 && off.params.final_softcap == 0));
    CHECK((off.params.attention.local_layers == std::vector<bool>{false, true} &&
           off.params.attention.global_every == 0 && off.params.attention.window == 4096));
    CHECK((off.dims.head_dim == 256 && off.dims.kv_heads == 4 && off.tied));
  }
  SECTION("gemma3_text: qk-norm, local layers' own RoPE base, scaled global layers") {
    ModelParams p = presets::gemma3(small.hidden, 16.0);
    p.attention = {.window = 3, .global_every = 2};
    p.rope_base = 1000.0;
    p.local_rope_base = 20.0;
    p.rope_scaling = tformer::rope_scaling::Linear{.factor = 8.0};
    auto owned = random_model<configs::Gemma2>(small, 26, p);
    tformer::ModelWeights tied = owned.view();
    tied.lm_head = {};
    const auto m = tformer::load_hf(hf_dir(dir, "gemma3", tied, small, p,
        {.type = "gemma3_text", .tied = true,
         .extra = "\"query_pre_attn_scalar\": 16, \"sliding_window\": 3, "
                  "\"sliding_window_pattern\": 2, \"rope_local_base_freq\": 20, "
                  "\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 8.0},"}));
    CHECK((m.info().post_norms && m.params().qk_norm && m.params().local_rope_base == 20.0));
    CHECK((m.params().attention_softcap == 0 && m.params().final_softcap == 0));
    CHECK((m.params().attention.window == 3 && m.params().attention.global_every == 2));
    CHECK_THAT(m.summary(), Catch::Contains("local layers' rope base 20"));
    check(m, tied, p, configs::Gemma2{});
    // transformers 5: rope_parameters per layer type; defaults without them.
    const std::string sizes = R"("model_type": "gemma3_text", "vocab_size": 10, "hidden_size": 8,
        "intermediate_size": 16, "num_hidden_layers": 12, "num_attention_heads": 2,
        "max_position_embeddings": 64, )";
    const auto five = tformer::parse_hf_config("{" + sizes + R"("rope_parameters": {
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}})", "g3.json");
    CHECK((five.params.rope_base == 1e6 && five.params.local_rope_base == 1e4));
    CHECK(std::get<tformer::rope_scaling::Linear>(five.params.rope_scaling).factor == 8.0);
    CHECK((five.params.attention.window == 4096 && five.params.attention.global_every == 6));
    CHECK((five.dims.head_dim == 256 && five.dims.kv_heads == 4 && five.tied));
    CHECK_THAT(error_of([&] {
                 (void)tformer::parse_hf_config("{" + sizes + R"("sliding_window": null})", "g3.json");
               }),
               Catch::Contains("sliding_window") && Catch::Contains("null"));
    // The per-type form with only full_attention: its theta and scaling are the global ones.
    const auto full = tformer::parse_hf_config("{" + sizes + R"("rope_parameters": {
        "full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 5000.0}}})", "g3.json");
    CHECK((full.params.rope_base == 5000.0 && full.params.local_rope_base == 1e4));
    CHECK(std::get<tformer::rope_scaling::Linear>(full.params.rope_scaling).factor == 4.0);
    CHECK_THAT(error_of([&] {
                 (void)tformer::parse_hf_config("{" + sizes + R"("rope_parameters": {
        "full_attention": {"rope_type": "default"},
        "sliding_attention": {"rope_type": "linear", "factor": 2.0}}})", "g3.json");
               }),
               Catch::Contains("g3.json") && Catch::Contains("rope_type") &&
                   Catch::Contains("local layers are not scaled"));
  }
  SECTION("gemma3 (multimodal): the language model of text_config, the vision tower left alone") {
    ModelParams p = presets::gemma3(small.hidden, 16.0);
    p.attention = {.window = 3, .global_every = 2};
    p.rope_base = 1000.0;
    p.local_rope_base = 20.0;
    auto owned = random_model<configs::Gemma2>(small, 27, p);
    tformer::ModelWeights tied = owned.view();
    tied.lm_head = {};
    const std::string extra = "\"query_pre_attn_scalar\": 16, \"sliding_window\": 3, "
                              "\"sliding_window_pattern\": 2, \"rope_local_base_freq\": 20,";
    for (const bool newer : {false, true}) {  // transformers 4.50's names, then 4.52's
      INFO((newer ? "model.language_model." : "language_model.model."));
      const auto m = tformer::load_hf(hf_dir(dir, newer ? "gemma3_mm_new" : "gemma3_mm", tied,
          small, p,
          {.type = "gemma3_text", .tied = true, .extra = extra,
           .prefix = newer ? "model.language_model." : "language_model.model.",
           .head = newer ? "lm_head.weight" : "language_model.lm_head.weight",
           .multimodal = true, .vision = newer ? "model." : ""}));
      CHECK(m.info().family == "gemma3");
      CHECK((m.info().post_norms && m.params().qk_norm && m.params().local_rope_base == 20.0));
      check(m, tied, p, configs::Gemma2{});
    }
    // Gemma 3 4B's text_config names a few keys; Gemma3TextConfig's defaults give the rest.
    const auto four_b = tformer::parse_hf_config(R"({"model_type": "gemma3", "text_config": {
        "hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
        "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "sliding_window": 1024}, "vision_config": {}})", "4b.json");
    CHECK((four_b.dims.vocab == 262208 && four_b.dims.heads == 8 && four_b.dims.kv_heads == 4 &&
           four_b.dims.head_dim == 256 && four_b.dims.max_positions == 131072));
    CHECK((four_b.params.attention.window == 1024 && four_b.params.attention.global_every == 6));
    CHECK((four_b.params.rope_base == 1e6 && four_b.params.local_rope_base == 1e4 &&
           four_b.params.attention_scale == 0.0625f && four_b.tied && four_b.params.qk_norm));
    CHECK(std::get<tformer::rope_scaling::Linear>(four_b.params.rope_scaling).factor == 8.0);
    // Another model inside is refused; an unknown tensor beside the vision tower too.
    CHECK_THAT(error_of([&] {
                 (void)tformer::parse_hf_config(
                     R"({"model_type": "gemma3", "text_config": {"model_type": "llama"}})", "mm.json");
               }),
               Catch::Contains("mm.json") && Catch::Contains("text_config.model_type") &&
                   Catch::Contains("llama"));
    CHECK_THAT(error_of([&] {
                 (void)tformer::load_hf(hf_dir(dir, "gemma3_mm_extra", tied, small, p,
                     {.type = "gemma3_text", .tied = true, .extra = extra,
                      .extra_tensor = "language_model.model.layers.0.mystery.weight",
                      .prefix = "language_model.model.",
                      .head = "language_model.lm_head.weight", .multimodal = true}));
               }),
               Catch::Contains("mystery") && Catch::Contains("language_model.model.layers.N"));
  }
  SECTION("sliding_window null: no window (Mistral v0.2+, Qwen, Gemma 2); bidirectional Gemma refused") {
    const std::string sizes = R"("vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
        "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 64, )";
    const auto window = [&](const std::string& type, const std::string& keys) {
      return tformer::parse_hf_config("{\"model_type\": \"" + type + "\", " + sizes + keys + "}", "w.json")
          .params.attention;
    };
    CHECK(window("mistral", R"("sliding_window": null)").window == 0);
    CHECK(window("mistral", R"("sliding_window": 8)").window == 8);
    const auto qwen = window("qwen2", R"("use_sliding_window": true, "sliding_window": null)");
    CHECK((qwen.window == 0 && qwen.local_layers.empty()));
    const auto gemma2 = window("gemma2", R"("sliding_window": null)");
    CHECK((gemma2.window == 0 && gemma2.global_every == 0));
    CHECK_THAT(error_of([&] { (void)window("gemma", R"("use_bidirectional_attention": true)"); }),
               Catch::Contains("use_bidirectional_attention"));
  }
  SECTION("mixtral: 4 experts, top-2, router copied to f32") {
    Dims d = small;
    d.experts = 4;
    d.top_k = 2;
    const ModelParams p = presets::mixtral();
    auto owned = random_model<configs::Mixtral>(d, 14, p);
    const auto m = tformer::load_hf(hf_dir(dir, "mixtral", owned.view(), d, p, {.type = "mixtral"}));
    CHECK(m.info().ffn == tformer::FfnKind::MoE);
    CHECK(m.dims().experts == 4);
    check(m, owned.view(), p, configs::Mixtral{});
    CHECK_THAT(error_of([&] { (void)m.decoder<configs::Llama>(); }), Catch::Contains("Config::ffn"));
  }
  SECTION("qwen3_moe: qk-norm, 4 experts of moe_intermediate_size, top-2 not renormalised, bf16") {
    Dims d = small;
    d.experts = 4;
    d.top_k = 2;
    ModelParams p = presets::qwen3();
    p.renormalize = false;  // norm_topk_prob: transformers' default false
    auto owned = random_model<configs::Mixtral>(d, 21, p);
    const tformer::ConvertedWeights stored(owned.view(), {.attention = WeightType::bf16,
                                                          .ffn = WeightType::bf16});
    const auto m = tformer::load_hf(hf_dir(dir, "qwen3_moe", stored.view(), d, p, {.type = "qwen3_moe"}));
    CHECK((m.info().ffn == tformer::FfnKind::MoE && m.dims().experts == 4 && m.dims().top_k == 2 &&
           m.dims().intermediate == d.intermediate));
    CHECK((m.params().qk_norm && !m.params().renormalize && m.params().eps == 1e-6f));
    check(m, stored.view(), p, configs::Mixtral{});
    // norm_topk_prob true: the k weights renormalised.
    p.renormalize = true;
    const auto r = tformer::load_hf(hf_dir(dir, "qwen3_moe_norm", stored.view(), d, p,
                                           {.type = "qwen3_moe", .extra = "\"norm_topk_prob\": true,"}));
    CHECK(r.params().renormalize);
    check(r, stored.view(), p, configs::Mixtral{});
  }
}

TEST_CASE("checkpoint: bad Hugging Face directories raise an Error naming the file and the key or tensor",
          "[checkpoint][safetensors][errors]") {
  const ModelParams p = presets::llama3();
  auto owned = random_model<configs::Llama>(small, 15, p);
  const test::TempDir dir;
  const auto error = [&](const std::string& name, const HfModel& h) {
    const std::string path = hf_dir(dir, name, owned.view(), small, p, h);
    return error_of([&] { (void)tformer::load_hf(path); });
  };
  CHECK_THAT(error("qwen2", {.type = "qwen2"}), Catch::Contains("self_attn.q_proj.bias"));  // none written
  CHECK_THAT(error("gpt2", {.type = "gpt2"}), Catch::Contains("model_type") && Catch::Contains("gpt2"));
  CHECK_THAT(error("bias", {.extra = "\"mlp_bias\": true,"}), Catch::Contains("mlp_bias"));
  CHECK_THAT(error("act", {.extra = "\"hidden_act\": \"gelu\","}), Catch::Contains("hidden_act"));
  CHECK_THAT(error("gemma_act", {.type = "gemma", .extra = "\"hidden_activation\": \"gelu\","}),
             Catch::Contains("hidden_activation") && Catch::Contains("gelu"));
  CHECK_THAT(error("sparse_step", {.type = "qwen3_moe", .extra = "\"decoder_sparse_step\": 2,"}),
             Catch::Contains("decoder_sparse_step") && Catch::Contains("2"));
  CHECK_THAT(error("mlp_only", {.type = "qwen3_moe", .extra = "\"mlp_only_layers\": [0],"}),
             Catch::Contains("mlp_only_layers") && Catch::Contains("[0]"));
  CHECK_THAT(error("heads", {.extra = "\"num_attention_heads\": 0,"}), Catch::Contains("num_attention_heads"));
  CHECK_THAT(error("extra", {.extra_tensor = "model.layers.0.mlp.extra.weight"}),
             Catch::Contains("model.layers.0.mlp.extra.weight"));
  CHECK_THAT(error("no_head", {.write_lm_head = false}), Catch::Contains("lm_head.weight"));
  CHECK_THAT(error("scaling", {.extra = "\"rope_scaling\": {\"rope_type\": \"magic\"},"}),
             Catch::Contains("rope_type") && Catch::Contains("magic"));
  CHECK_THAT(error_of([&] { (void)tformer::load_hf(dir.path.string() + "/nothing"); }),
             Catch::Contains("config.json"));
  CHECK_THAT(error_of([] { (void)tformer::parse_hf_config("{\"model_type\": \"llama\",", "cfg.json"); }),
             Catch::Contains("cfg.json") && Catch::Contains("JSON"));
}

TEST_CASE("checkpoint: config.json's rope_scaling kinds map to the RoPE scalings", "[checkpoint][config]") {
  const std::string base = R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
    "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, )";
  const auto scaling = [&](const std::string& s) {
    return tformer::parse_hf_config(base + "\"rope_scaling\": " + s + "}", "config.json").params.rope_scaling;
  };
  namespace rs = tformer::rope_scaling;
  CHECK(std::holds_alternative<rs::None>(scaling("null")));
  CHECK(std::get<rs::Linear>(scaling(R"({"type": "linear", "factor": 2.0})")).factor == 2.0);
  const auto dyn = std::get<rs::DynamicNtk>(scaling(R"({"rope_type": "dynamic", "factor": 4.0})"));
  CHECK((dyn.factor == 4.0 && dyn.original_max_positions == 4096));
  const auto yarn = std::get<rs::Yarn>(scaling(
      R"({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024, "beta_fast": 16})"));
  CHECK((yarn.factor == 4.0 && yarn.original_max_positions == 1024 && yarn.beta_fast == 16 && yarn.beta_slow == 1));
  const auto l3 = std::get<rs::Llama3>(scaling(R"({"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})"));
  CHECK((l3.factor == 32 && l3.original_max_positions == 8192));
  const auto lr = std::get<rs::LongRope>(scaling(R"({"rope_type": "longrope", "short_factor": [1, 1],
      "long_factor": [2, 3], "original_max_position_embeddings": 1024})"));
  CHECK((lr.long_factor == std::vector<double>{2, 3} && lr.original_max_positions == 1024 && *lr.factor == 4.0));
  // Phi-3 keeps the original length at the top level, beside rope_scaling.
  const auto phi = tformer::parse_hf_config(
      base + R"("original_max_position_embeddings": 2048, "rope_scaling": {"type": "longrope",
      "short_factor": [1, 1], "long_factor": [2, 3]}})", "config.json");
  const auto& pl = std::get<rs::LongRope>(phi.params.rope_scaling);
  CHECK((pl.original_max_positions == 2048 && *pl.factor == 2.0));
  // transformers 5: rope_parameters holds rope_theta and the scaling.
  const auto v5 = tformer::parse_hf_config(base + R"("rope_parameters": {"rope_type": "llama3",
      "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 8192}})", "config.json");
  CHECK(v5.params.rope_base == 500000.0);
  CHECK(std::get<rs::Llama3>(v5.params.rope_scaling).factor == 8.0);
  CHECK_THAT(error_of([&] {
               (void)tformer::parse_hf_config(base + R"("rope_theta": 1e4, "rope_parameters": {"rope_theta": 5e5}})", "c.json");
             }),
             Catch::Contains("rope_theta"));
  // Each family's defaults for keys a config may lack.
  const std::string bare = R"("vocab_size": 10, "hidden_size": 64, "intermediate_size": 16,
    "num_hidden_layers": 1, "num_attention_heads": 64, "max_position_embeddings": 4096})";
  const auto qwen = tformer::parse_hf_config(R"({"model_type": "qwen3", )" + bare, "q.json");
  CHECK((qwen.dims.kv_heads == 32 && qwen.dims.head_dim == 128 && qwen.params.eps == 1e-6f &&
         qwen.params.rope_base == 10000.0));
  const auto qwen2_moe = tformer::parse_hf_config(R"({"model_type": "qwen2_moe", )" + bare, "q2.json");
  CHECK((qwen2_moe.dims.kv_heads == 16 && qwen2_moe.dims.experts == 60 && qwen2_moe.dims.top_k == 4 &&
         qwen2_moe.dims.intermediate == 1408 && qwen2_moe.dims.shared_intermediate == 5632 &&
         qwen2_moe.qkv_bias && !qwen2_moe.params.renormalize));
  CHECK(!tformer::parse_hf_config(R"({"model_type": "qwen2_moe", "qkv_bias": false, )" + bare, "q2.json").qkv_bias);
  const auto mistral = tformer::parse_hf_config(R"({"model_type": "mistral", )" + bare, "m.json");
  CHECK((mistral.dims.kv_heads == 8 && mistral.dims.head_dim == 1 && mistral.params.attention.window == 4096));
  const auto mixtral = tformer::parse_hf_config(R"({"model_type": "mixtral", "num_local_experts": 8,
    "num_experts_per_tok": 2, )" + bare, "x.json");
  CHECK((mixtral.dims.kv_heads == 8 && mixtral.params.rope_base == 1e6 && mixtral.params.eps == 1e-5f &&
         mixtral.params.attention.window == 0));
  CHECK(tformer::parse_hf_config(base + R"("partial_rotary_factor": 0.5})", "p.json").params.rotary_dim == 2);
  // Qwen's sliding layers: only with use_sliding_window; layer_types, else max_window_layers.
  const std::string layers4 = R"("vocab_size": 10, "hidden_size": 64, "intermediate_size": 16,
    "num_hidden_layers": 4, "num_attention_heads": 64, "max_position_embeddings": 4096, )";
  const auto qwen_cfg = [&](const std::string& keys) {
    return tformer::parse_hf_config(R"({"model_type": "qwen2", )" + layers4 + keys + "}", "q.json")
        .params.attention;
  };
  const auto swa = qwen_cfg(R"("use_sliding_window": true, "max_window_layers": 2)");
  CHECK((swa.window == 4096 && swa.local_layers == std::vector<bool>{false, false, true, true}));
  CHECK(qwen_cfg(R"("use_sliding_window": true, "sliding_window": 8)").local_layers ==
        std::vector<bool>(4, false));  // max_window_layers 28 >= 4 layers: all global
  const auto listed = qwen_cfg(R"("use_sliding_window": true, "sliding_window": 8, "max_window_layers": 0,
      "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"])");
  CHECK((listed.window == 8 && listed.local_layers == std::vector<bool>{true, false, true, false}));
  const auto off = qwen_cfg(R"("use_sliding_window": false, "sliding_window": 8,
      "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"])");
  CHECK((off.window == 0 && off.local_layers.empty()));
  CHECK_THAT(error_of([&] { (void)qwen_cfg(R"("use_sliding_window": true, "layer_types": ["full_attention"])"); }),
             Catch::Contains("layer_types") && Catch::Contains("4"));
  CHECK_THAT(error_of([&] {
               (void)qwen_cfg(R"("use_sliding_window": true, "layer_types": ["full_attention",
                   "full_attention", "chunked_attention", "full_attention"])");
             }),
             Catch::Contains("layer_types") && Catch::Contains("chunked_attention"));
  CHECK_THAT(error_of([&] { (void)qwen_cfg(R"("use_sliding_window": true, "max_window_layers": -1)"); }),
             Catch::Contains("max_window_layers"));
  const auto d = tformer::parse_hf_config(base + "\"rope_theta\": 1e6}", "config.json");
  CHECK((d.dims.kv_heads == 2 && d.dims.head_dim == 4 && d.params.rope_base == 1e6 && d.params.eps == 1e-6f));
}
