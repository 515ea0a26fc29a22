// llama.cpp's GGUF files (io/gguf.hpp) loaded as a LoadedModel: the architecture's metadata
// keys read into Dims and ModelParams, the tensors as typed views in place (f32, f16, bf16,
// q8_0, q4_0, chosen per tensor as the file stores them), norm vectors copied to f32.
//
//   LoadedModel m = load_gguf("llama-3.2-1b-q8_0.gguf");
//   auto dec = m.decoder<configs::LlamaInterleaved>({.capacity = 4096});
//
// Architectures (general.architecture): llama (Llama 1/2/3, Mistral, and Mixtral with
// {a}.expert_count > 0, as llama.cpp converts them), qwen2 (q/k/v biases:
// blk.N.attn_{q,k,v}.bias), qwen3, qwen2moe (biases too), qwen3moe, and gemma, gemma2, gemma3
// (rotate-half; norm weights stored with Gemma's 1 added, so they load as x̂ · w:
// configs::Llama for gemma, configs::Gemma2Gguf for gemma2 and gemma3 with their sandwich norms
// blk.N.post_attention_norm and post_ffw_norm; the embedding × √n_embd; GELU-tanh; queries ×
// 1/√head_dim, or 1/√(n_embd / n_head) for the 27B models (46 layers for gemma2, 62 for gemma3)
// as llama.cpp; gemma2: .attn_logit_softcapping (50), .final_logit_softcapping (30),
// .attention.sliding_window (4096) on layers 0, 2, … (every 2nd global; a newer llama.cpp's
// integer .attention.sliding_window_pattern when present); gemma3: qk-norm, no attention
// soft-cap, .final_logit_softcapping when given, .attention.sliding_window (absent or 0: every
// layer global, rotated as such) with one global layer in 6 (or the pattern key), sliding layers
// rotated with base 10000 (.rope.freq_base_swa when present) unscaled and global ones with
// .rope.freq_base and the scaling;
// gemma and gemma2 always tie the head to the embedding, gemma3 unless output.weight exists). Experts (llama with
// experts, qwen2moe, qwen3moe): {a}.expert_count, .expert_used_count (k), the qwen models'
// .expert_feed_forward_length (else feed_forward_length / k) as their width;
// blk.N.ffn_gate_inp [E, H] (the router, decoded to f32) and the merged
// blk.N.ffn_{gate,up}_exps [E, I, H] and ffn_down_exps [E, H, I], each expert a slice in place;
// softmax over the experts, top-k, renormalised for llama and qwen3moe, not for qwen2moe
// (llama.cpp's build_moe_ffn and its norm_w); .expert_weights_scale other than 0 or 1 is
// refused. qwen2moe's shared expert: blk.N.ffn_{gate,up,down}_shexp of
// .expert_shared_feed_forward_length (else feed_forward_length), gated by sigmoid(x · g) with
// g = blk.N.ffn_gate_inp_shexp [H].
// llama.cpp's converter permutes llama's q/k rows to Meta's interleaved order and runs them with
// its NORMAL RoPE (pairs (x[2i], x[2i+1])): a llama GGUF loads with RopeLayout::Interleaved,
// as stored, never permuted back. qwen2, qwen3, qwen2moe and qwen3moe keep Hugging Face's
// rotate-half rows (llama.cpp's NEOX RoPE). Keys read ({a} = the architecture):
// {a}.embedding_length, .feed_forward_length, .block_count, .context_length,
// .attention.head_count, .attention.head_count_kv (= heads), .attention.key_length
// (= hidden / heads; .value_length must equal it), .attention.layer_norm_rms_epsilon,
// .rope.freq_base (10000), .rope.dimension_count (head_dim; fewer: partial rotary, the first
// n_rot values rotate), .rope.scaling.type (none, linear or yarn; linear when absent, as
// llama.cpp reads it) with .rope.scaling.factor (or the older .rope.scale_linear); yarn also
// .rope.scaling.original_context_length (else context_length), .rope.scaling.attn_factor (cos
// and sin × it · (1 + 0.1 ln s)) and .rope.scaling.yarn_beta_fast/slow (32, 1) when present;
// .vocab_size (else the embedding's rows). The
// tensor rope_freqs.weight (head_dim / 2 divisors of the frequencies, how llama.cpp stores
// Llama 3.1's scaling) becomes a LongRope scaling with equal short and long factors and
// attention factor 1, which computes exactly f_i / factor_i. Every tensor of the file must be
// used: an unknown one is an error, never ignored.
#pragma once

#include <cmath>
#include <limits>
#include <memory>
#include <string>

#include "tformer/io/gguf.hpp"
#include "tformer/io/loaded_model.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

namespace gguf_model_detail {

inline index size_key(const GgufFile& g, const std::string& key) {
  const std::uint64_t v = g.get_uint(key);
  if (v < 1 || v > std::uint64_t(std::numeric_limits<std::int32_t>::max())) [[unlikely]]
    detail::fail_check(g.where(), "metadata key '" + key + "'", "an integer in [1, 2^31 - 1]", v);
  return index(v);
}
inline index size_key_or(const GgufFile& g, const std::string& key, index fallback) {
  return g.find(key) ? size_key(g, key) : fallback;
}
inline double number_key(const GgufFile& g, const std::string& key) {
  const GgufValue* v = g.find(key);
  if (v != nullptr) {
    if (const auto* f = std::get_if<float>(&v->value)) return *f;
    if (const auto* d = std::get_if<double>(&v->value)) return *d;
  }
  return g.get<float>(key);  // throws: missing or of another type, naming the key
}
// A number that must convert to float: finite, |x| <= FLT_MAX.
inline float float_key(const GgufFile& g, const std::string& key, const std::string& where) {
  const double x = number_key(g, key);
  if (!(std::abs(x) <= std::numeric_limits<float>::max())) [[unlikely]]
    detail::fail_check(where, "metadata key '" + key + "'", "a finite float", x);
  return static_cast<float>(x);
}
inline double number_key_or(const GgufFile& g, const std::string& key, double fallback) {
  return g.find(key) ? number_key(g, key) : fallback;
}
inline float float_key_or(const GgufFile& g, const std::string& key, float fallback,
                          const std::string& where) {
  return g.find(key) ? float_key(g, key, where) : fallback;
}

}  // namespace gguf_model_detail

// Reads `path` (see the header comment); FileMode as for GgufFile::open.
inline LoadedModel load_gguf(const std::string& path, FileMode mode = FileMode::Map) {
  using namespace gguf_model_detail;
  auto file = std::make_shared<GgufFile>(GgufFile::open(path, mode));
  const GgufFile& g = *file;
  const std::string where = "load_gguf: " + path;
  LoadedModel m;
  CheckpointInfo& info = m.mutable_info();
  info.family = g.get<std::string>("general.architecture");
  const std::string& a = info.family;
  const bool gemma = a == "gemma" || a == "gemma2" || a == "gemma3";
  if (a != "llama" && a != "qwen2" && a != "qwen3" && a != "qwen2moe" && a != "qwen3moe" &&
      !gemma) [[unlikely]]
    detail::fail_check(where, "metadata key 'general.architecture'",
                       "llama, qwen2, qwen3, qwen2moe, qwen3moe, gemma, gemma2 or gemma3", a);
  info.rope_layout = a == "llama" ? RopeLayout::Interleaved : RopeLayout::RotateHalf;
  info.qkv_bias = a == "qwen2" || a == "qwen2moe";

  Dims& d = info.dims;
  d.hidden = size_key(g, a + ".embedding_length");
  d.intermediate = size_key(g, a + ".feed_forward_length");
  d.layers = size_key(g, a + ".block_count");
  d.max_positions = size_key(g, a + ".context_length");
  d.heads = size_key(g, a + ".attention.head_count");
  d.kv_heads = size_key_or(g, a + ".attention.head_count_kv", d.heads);
  d.head_dim = size_key_or(g, a + ".attention.key_length", d.hidden / d.heads);
  const index value_length = size_key_or(g, a + ".attention.value_length", d.head_dim);
  if (value_length != d.head_dim) [[unlikely]]
    detail::fail_check(where, "metadata key '" + a + ".attention.value_length'",
                       "the key length " + std::to_string(d.head_dim), value_length);
  // Partial rotary: the first n_rot values of each head rotate (llama.cpp's ggml_rope copies
  // the rest), in the file's pair order.
  const index rotary = size_key_or(g, a + ".rope.dimension_count", d.head_dim);
  if (rotary < 2 || rotary > d.head_dim || rotary % 2 != 0) [[unlikely]]
    detail::fail_check(where, "metadata key '" + a + ".rope.dimension_count'",
                       "even, in [2, the head size " + std::to_string(d.head_dim) + "]", rotary);
  if (rotary < d.head_dim) info.params.rotary_dim = rotary;
  // Mixture of experts: llama with experts (Mixtral as llama.cpp converts it) and qwen3moe.
  // llama.cpp's build_moe_ffn for both: softmax over the experts, top-k, renormalised.
  const bool moe = a == "qwen2moe" || a == "qwen3moe" ||
                   (g.find(a + ".expert_count") && g.get_uint(a + ".expert_count") > 0);
  if (moe) {
    if (a != "llama" && a != "qwen2moe" && a != "qwen3moe") [[unlikely]]
      detail::fail_check(where, "metadata key '" + a + ".expert_count'",
                         "0 (experts are read for llama, qwen2moe and qwen3moe only)",
                         g.get_uint(a + ".expert_count"));
    info.ffn = FfnKind::MoE;
    d.experts = size_key(g, a + ".expert_count");
    d.top_k = size_key(g, a + ".expert_used_count");
    const index dense = d.intermediate;  // feed_forward_length
    if (a != "llama")  // llama.cpp: else feed_forward_length / expert_used_count
      d.intermediate = size_key_or(g, a + ".expert_feed_forward_length", dense / d.top_k);
    if (a == "qwen2moe")  // the shared expert's width; llama.cpp: else feed_forward_length
      d.shared_intermediate = size_key_or(g, a + ".expert_shared_feed_forward_length", dense);
    const double scale = number_key_or(g, a + ".expert_weights_scale", 0.0);
    if (scale != 0.0 && scale != 1.0) [[unlikely]]
      detail::fail_check(where, "metadata key '" + a + ".expert_weights_scale'",
                         "0 or 1 (scaled expert weights are not supported yet)", scale);
  }
  const GgufTensor& embedding = g.tensor("token_embd.weight");
  if (embedding.dims.size() != 2) [[unlikely]]
    detail::fail_check(where, "tensor 'token_embd.weight'", "2 dimensions", embedding.dims.size());
  d.vocab = size_key_or(g, a + ".vocab_size", index(std::min<std::uint64_t>(
                                                  embedding.dims[1], std::uint64_t(1) << 40)));

  ModelParams& p = info.params;
  p.eps = float_key(g, a + ".attention.layer_norm_rms_epsilon", where);
  p.rope_base = number_key_or(g, a + ".rope.freq_base", 10000.0);
  p.qk_norm = a == "qwen3" || a == "qwen3moe" || a == "gemma3";
  if (gemma) {
    // llama.cpp's gemma graphs: the embedding × √n_embd, GELU-tanh gate. Its converter stores
    // every norm weight (q/k-norms too) with Gemma's 1 added, so the norms are x̂ · w here:
    // info.norm stays NormScale::Weight.
    p.embed_scale = std::sqrt(static_cast<float>(d.hidden));
    p.activation = {.kind = ActivationKind::GeluTanh};
    info.post_norms = a != "gemma";
    // Queries × 1/√(n_embd / n_head) for the 27B models (llama.cpp tells them by their layer
    // count: gemma2 46, gemma3 62), else 1/√head_dim; query_pre_attn_scalar is not stored.
    if ((a == "gemma2" && d.layers == 46) || (a == "gemma3" && d.layers == 62))
      p.attention_scale = static_cast<float>(1.0 / std::sqrt(double(d.hidden / d.heads)));
    if (a == "gemma2") {  // soft-caps 50 and 30 unless given; local layers 0, 2, …
      p.attention_softcap = float_key_or(g, a + ".attn_logit_softcapping", 50.0f, where);
      p.final_softcap = float_key_or(g, a + ".final_logit_softcapping", 30.0f, where);
      p.attention.window = size_key_or(g, a + ".attention.sliding_window", 4096);
      p.attention.global_every = size_key_or(g, a + ".attention.sliding_window_pattern", 2);
    }
    if (a == "gemma3") {  // no attention soft-cap; one global layer in 6; local base 10000
      p.final_softcap = float_key_or(g, a + ".final_logit_softcapping", 0.0f, where);
      if (g.find(a + ".attention.sliding_window")) {  // absent (or 0): every layer global
        const std::uint64_t w = g.get_uint(a + ".attention.sliding_window");
        if (w > std::uint64_t(std::numeric_limits<std::int32_t>::max())) [[unlikely]]
          detail::fail_check(where, "metadata key '" + a + ".attention.sliding_window'",
                             "an integer in [0, 2^31 - 1]", w);
        p.attention.window = index(w);
      }
      if (p.attention.window > 0) {
        p.attention.global_every = size_key_or(g, a + ".attention.sliding_window_pattern", 6);
        p.local_rope_base = number_key_or(g, a + ".rope.freq_base_swa", 10000.0);
      }
    }
  }
  if (moe) {  // llama.cpp's build_moe_ffn: norm_w for llama and qwen3moe, not for qwen2moe
    p.router = RouterKind::SoftmaxThenTopK;
    p.renormalize = a != "qwen2moe";
  }
  // llama.cpp's load_hparams: the factor from rope.scaling.factor, else the older
  // rope.scale_linear; the type "linear" when absent; a factor of 0 or 1 scales nothing.
  double factor = number_key_or(g, a + ".rope.scaling.factor", 0.0);
  if (factor == 0.0) factor = number_key_or(g, a + ".rope.scale_linear", 0.0);
  const std::string type =
      g.find(a + ".rope.scaling.type") ? g.get<std::string>(a + ".rope.scaling.type") : "linear";
  if (type != "none" && type != "linear" && type != "yarn") [[unlikely]]
    detail::fail_check(where, "metadata key '" + a + ".rope.scaling.type'",
                       "none, linear or yarn", type);
  if (type == "linear" && factor != 0.0 && factor != 1.0)
    p.rope_scaling = rope_scaling::Linear{.factor = factor};
  if (type == "yarn" && factor != 0.0 && factor != 1.0) {
    // llama.cpp: L0 = rope.scaling.original_context_length (else context_length); correction
    // dims floored and ceiled from beta_fast 32 and beta_slow 1 (the yarn_beta_* keys, which
    // llama.cpp reads for other architectures only, are read here when present, as the Hugging
    // Face config they came from says); cos and sin × attn_factor · (1 + 0.1 ln s).
    rope_scaling::Yarn y{
        .factor = factor,
        .original_max_positions = int(size_key_or(g, a + ".rope.scaling.original_context_length",
                                                  d.max_positions)),
        .beta_fast = number_key_or(g, a + ".rope.scaling.yarn_beta_fast", 32.0),
        .beta_slow = number_key_or(g, a + ".rope.scaling.yarn_beta_slow", 1.0)};
    if (g.find(a + ".rope.scaling.attn_factor"))
      y.attention_factor = number_key(g, a + ".rope.scaling.attn_factor") *
                           (1.0 + 0.1 * std::log(factor));
    p.rope_scaling = y;
  }
  detail::TensorReader<GgufFile> read(g, m, where);
  if (g.find_tensor("rope_freqs.weight")) {  // Llama 3.1's scaling, as frequency divisors
    if (!std::holds_alternative<rope_scaling::None>(p.rope_scaling)) [[unlikely]]
      detail::fail_check(where, "tensor 'rope_freqs.weight'",
                         "no linear scaling beside it (the two are not composed yet)",
                         "a linear factor " + std::to_string(factor));
    const std::span<const float> f = read.vector("rope_freqs.weight", d.head_dim / 2);
    const std::vector<double> factors(f.begin(), f.end());
    p.rope_scaling = rope_scaling::LongRope{.short_factor = factors,
                                            .long_factor = factors,
                                            .original_max_positions = int(d.max_positions),
                                            .attention_factor = 1.0};
  }

  ModelWeights& w = m.mutable_weights();
  const index H = d.hidden, qd = d.heads * d.head_dim, kvd = d.kv_heads * d.head_dim;
  w.embedding = read.weight("token_embd.weight", d.vocab, H);
  w.final_norm = read.vector("output_norm.weight", H);
  // gemma and gemma2 always use the embedding (llama.cpp's TENSOR_DUPLICATED): an output.weight
  // there is left unread, so the unknown-tensor check reports it.
  info.tied = g.find_tensor("output.weight") == nullptr || a == "gemma" || a == "gemma2";
  if (!info.tied) w.lm_head = read.weight("output.weight", d.vocab, H);
  w.layers.resize(static_cast<std::size_t>(d.layers));
  for (index l = 0; l < d.layers; ++l) {
    LayerWeights& lw = w.layers[static_cast<std::size_t>(l)];
    const std::string b = "blk." + std::to_string(l) + ".";
    lw.attn_norm = read.vector(b + "attn_norm.weight", H);
    lw.wq = read.weight(b + "attn_q.weight", qd, H);
    lw.wk = read.weight(b + "attn_k.weight", kvd, H);
    lw.wv = read.weight(b + "attn_v.weight", kvd, H);
    lw.wo = read.weight(b + "attn_output.weight", H, qd);
    if (info.qkv_bias) {  // llama.cpp's qwen2 and qwen2moe: q, k, v biases
      lw.bq = read.vector(b + "attn_q.bias", qd);
      lw.bk = read.vector(b + "attn_k.bias", kvd);
      lw.bv = read.vector(b + "attn_v.bias", kvd);
    }
    if (p.qk_norm) {
      lw.q_norm = read.vector(b + "attn_q_norm.weight", d.head_dim);
      lw.k_norm = read.vector(b + "attn_k_norm.weight", d.head_dim);
    }
    lw.ffn_norm = read.vector(b + "ffn_norm.weight", H);
    if (info.post_norms) {  // gemma2, gemma3: the sandwich norms
      lw.post_attn_norm = read.vector(b + "post_attention_norm.weight", H);
      lw.post_ffn_norm = read.vector(b + "post_ffw_norm.weight", H);
    }
    if (!moe) {
      lw.ffn = {read.weight(b + "ffn_gate.weight", d.intermediate, H),
                read.weight(b + "ffn_up.weight", d.intermediate, H),
                read.weight(b + "ffn_down.weight", H, d.intermediate)};
      continue;
    }
    // The router [E, H] decoded to f32; each expert a slice of the [E, I, H] (gate, up) and
    // [E, H, I] (down) tensors, read as [E · I, H] and [E · H, I] views in place.
    const index E = d.experts, I = d.intermediate;
    const WeightView router = read.weight(b + "ffn_gate_inp.weight", E, H);
    const std::span<float> r = m.own_vector(E * H);
    for (index e = 0; e < E; ++e) convert_kernels::decode_range(router, e, 0, H, r.data() + e * H);
    lw.router = MatrixView<const float>(r.data(), E, H);
    // ne [cols, rows, E]: checked as three dims before the flattened view is sliced.
    const auto merged = [&](const std::string& name, index rows, index cols) {
      const GgufTensor& t = g.tensor(name);
      if (t.dims.size() != 3 || t.dims[0] != std::uint64_t(cols) ||
          t.dims[1] != std::uint64_t(rows) || t.dims[2] != std::uint64_t(E)) [[unlikely]]
        detail::fail_check(where, "tensor '" + name + "' dims",
                           "[" + std::to_string(cols) + ", " + std::to_string(rows) + ", " +
                               std::to_string(E) + "] (ne: per expert, then the experts)",
                           gguf_detail::dims_string(t.dims));
      return read.weight(name, E * rows, cols);
    };
    const WeightView gate = merged(b + "ffn_gate_exps.weight", I, H);
    const WeightView up = merged(b + "ffn_up_exps.weight", I, H);
    const WeightView down = merged(b + "ffn_down_exps.weight", H, I);
    for (index e = 0; e < E; ++e)
      lw.experts.push_back(
          {gate.row_slice(e * I, I), up.row_slice(e * I, I), down.row_slice(e * H, H)});
    if (const index S = d.shared_intermediate; S > 0) {  // qwen2moe's gated shared expert
      lw.shared_expert = {read.weight(b + "ffn_gate_shexp.weight", S, H),
                          read.weight(b + "ffn_up_shexp.weight", S, H),
                          read.weight(b + "ffn_down_shexp.weight", H, S)};
      const std::span<const float> gate_row = read.vector(b + "ffn_gate_inp_shexp.weight", H);
      lw.shared_expert_gate = MatrixView<const float>(gate_row.data(), 1, H);
    }
  }
  std::size_t bytes = 0;
  for (const GgufTensor& t : g.tensors()) {
    read.check_read(t.name, "token_embd, output_norm, output (not gemma, gemma2), rope_freqs, "
                            "blk.N.attn_*/ffn_* (experts: ffn_gate_inp, "
                            "ffn_{gate,up,down}_exps, *_shexp; gemma2/3: post_attention_norm, "
                            "post_ffw_norm)");
    bytes += t.bytes.size();
  }
  m.hold(std::move(file), path, bytes);
  return m;
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
