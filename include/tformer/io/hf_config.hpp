// Hugging Face's config.json read into a CheckpointInfo: the Dims, the runtime ModelParams and
// the structure (RoPE layout of the stored q/k rows, FFN kind, head tying) a Decoder needs.
//
//   CheckpointInfo info = read_hf_config("Llama-3.2-1B/config.json");
//   // info.family "llama", info.dims, info.params (rope_theta, rms_norm_eps, llama3 scaling …)
//
// Families (model_type): llama, mistral, qwen2 (Q/K/V biases), qwen3 (qk-norm), mixtral (MoE),
// qwen3_moe (qk-norm, MoE: num_experts (128), num_experts_per_tok (8), moe_intermediate_size
// (768) as the experts' width, norm_topk_prob (false) as renormalize; every layer MoE),
// qwen2_moe (as qwen3_moe without qk-norm, with Qwen2's q/k/v biases (qkv_bias, true),
// defaults 60 experts, top-4, width 1408, and a gated shared expert of
// shared_expert_intermediate_size (5632)).
// gemma (configs::Gemma: (1 + w) norms; hidden_activation gelu_pytorch_tanh (GeGLU), the
// embedding × √hidden, tied by default, head_dim 256), gemma2 (configs::Gemma2: also
// sandwich norms, query_pre_attn_scalar (256), attn_logit_softcapping (50) and
// final_logit_softcapping (30), null: off; sliding_window (4096) on layers 0, 2, … unless
// layer_types lists them) and gemma3_text (Gemma 3's language model, configs::Gemma2: as gemma2
// with qk-norm, soft-caps off by default, rope_theta 1e6 with rope_scaling on global layers,
// rope_local_base_freq (10000) unscaled on local ones, one global layer in
// sliding_window_pattern (6: layers 5, 11, …) unless layer_types lists them; transformers 5's
// rope_parameters per layer type, {"full_attention": …, "sliding_attention": …}, too; sizes
// default to Gemma3TextConfig's). A multimodal Gemma 3 (model_type gemma3, family "gemma3") is
// read as its text_config; load_hf then reads its language model and skips the vision tower.
// Keys read, with the family's transformers defaults where a key may be absent: vocab_size,
// hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads
// (llama: heads; mistral, mixtral: 8; qwen2, qwen3: 32; qwen3_moe: 4; qwen2_moe, gemma: 16;
// gemma2, gemma3_text: 4),
// head_dim (hidden / heads; qwen3: 128; gemma, gemma2, gemma3_text: 256),
// max_position_embeddings, rms_norm_eps (1e-6; mixtral 1e-5), rope_theta (10000; mixtral,
// gemma3_text 1e6),
// rope_scaling (default, linear, dynamic, yarn, llama3, longrope) or transformers 5's
// rope_parameters (its rope_theta and the same kinds), tie_word_embeddings (false), hidden_act
// (silu), attention_bias (llama: biases on q, k, v, o), sliding_window (mistral: 4096 on every
// layer; mixtral: none; null: none), Qwen's use_sliding_window (false) with sliding_window (4096) on the
// layers layer_types names, or else on those from max_window_layers (28) on,
// partial_rotary_factor (f: the first int(head_dim · f) values rotate), num_local_experts and
// num_experts_per_tok (mixtral). What tformer's decoder cannot express yet is refused, never
// ignored: mlp_bias, other activations, Gemma's use_bidirectional_attention. Each
// refusal and each malformed value is a tformer::Error naming the file, the key, the expected
// and the found value.
//
// Uses nlohmann/json (Debian's nlohmann-json3-dev): a well-kept, header-only parser; its
// exceptions never escape (each becomes a tformer::Error).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tformer/core/error.hpp"
#include "tformer/io/file_bytes.hpp"
#include "tformer/io/loaded_model.hpp"
#include "tformer/model/config.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

namespace hf_detail {

using json = nlohmann::json;

class Keys {
 public:
  Keys(const json& j, std::string where) : j_(j), where_(std::move(where)) {}

  const json* find(const char* key) const {
    const auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  bool is_null(const char* key) const {  // present, and null (transformers: "off")
    const auto it = j_.find(key);
    return it != j_.end() && it->is_null();
  }
  [[noreturn]] void fail(const std::string& key, const std::string& expected,
                         const std::string& found) const {
    detail::fail_check(where_, key, expected, found);
  }
  // A positive integer below 2^31 (every size of a model).
  index size(const char* key) const {
    const json* v = find(key);
    if (!v) fail(key, "a positive integer", "no such key");
    return size_of(key, *v);
  }
  index size_or(const char* key, index fallback) const {
    const json* v = find(key);
    return v ? size_of(key, *v) : fallback;
  }
  double number_or(const char* key, double fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_number()) fail(key, "a number", v->dump());
    return v->get<double>();
  }
  double number(const char* key) const {
    const json* v = find(key);
    if (!v) fail(key, "a number", "no such key");
    return number_or(key, 0);
  }
  bool flag_or(const char* key, bool fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_boolean()) fail(key, "true or false", v->dump());
    return v->get<bool>();
  }
  std::string text_or(const char* key, const std::string& fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_string()) fail(key, "a string", v->dump());
    return v->get<std::string>();
  }
  // A number that converts to float (|x| <= FLT_MAX).
  float single(const char* key, double fallback) const {
    const double x = number_or(key, fallback);
    if (!(std::abs(x) <= std::numeric_limits<float>::max())) fail(key, "a finite float", std::to_string(x));
    return static_cast<float>(x);
  }
  const json& object(const char* key) const {
    const json* v = find(key);
    if (!v || !v->is_object()) fail(key, "an object", v ? v->dump() : "no such key");
    return *v;
  }
  std::vector<double> numbers(const char* key) const {
    const json* v = find(key);
    if (!v || !v->is_array()) fail(key, "an array of numbers", v ? v->dump() : "no such key");
    std::vector<double> out;
    for (const json& x : *v) {
      if (!x.is_number()) fail(key, "an array of numbers", x.dump());
      out.push_back(x.get<double>());
    }
    return out;
  }

 private:
  index size_of(const char* key, const json& v) const {
    if (!v.is_number_integer() || v.get<std::int64_t>() < 1 ||
        v.get<std::int64_t>() > std::numeric_limits<std::int32_t>::max())
      fail(key, "an integer in [1, 2^31 - 1]", v.dump());
    return v.get<std::int64_t>();
  }
  const json& j_;
  std::string where_;
};

inline int to_int(index v) { return static_cast<int>(v); }  // sizes are below 2^31 (Keys::size)

// rope_scaling → RopeScaling (Hugging Face's rope_type, or the older "type").
inline RopeScaling rope_scaling_of(const json& s, const Keys& top, const std::string& where,
                                   index max_positions) {
  if (!s.is_object()) top.fail("rope_scaling", "an object or null", s.dump());
  const Keys k(s, where + ": rope_scaling");
  std::string type = k.text_or("rope_type", k.text_or("type", "default"));
  if (type == "default") return rope_scaling::None{};
  if (type == "linear") return rope_scaling::Linear{.factor = k.number("factor")};
  if (type == "dynamic")  // the base grows past max_position_embeddings
    return rope_scaling::DynamicNtk{.factor = k.number("factor"),
                                    .original_max_positions = to_int(max_positions)};
  if (type == "yarn") {
    rope_scaling::Yarn y{.factor = k.number("factor"),
                         .original_max_positions = to_int(
                             k.size_or("original_max_position_embeddings", max_positions)),
                         .beta_fast = k.number_or("beta_fast", 32.0),
                         .beta_slow = k.number_or("beta_slow", 1.0)};
    if (k.find("attention_factor")) y.attention_factor = k.number("attention_factor");
    if (k.find("mscale")) y.mscale = k.number("mscale");
    if (k.find("mscale_all_dim")) y.mscale_all_dim = k.number("mscale_all_dim");
    y.truncate = k.flag_or("truncate", true);
    return y;
  }
  if (type == "llama3")
    return rope_scaling::Llama3{
        .factor = k.number("factor"),
        .low_freq_factor = k.number("low_freq_factor"),
        .high_freq_factor = k.number("high_freq_factor"),
        .original_max_positions = to_int(k.size("original_max_position_embeddings"))};
  if (type == "longrope") {
    // Hugging Face's _compute_longrope_parameters: the original length from the config's top
    // level (Phi-3), else from rope_scaling; without either, max_position_embeddings and the
    // factor of rope_scaling.
    rope_scaling::LongRope l{.short_factor = k.numbers("short_factor"),
                             .long_factor = k.numbers("long_factor")};
    if (top.find("original_max_position_embeddings") ||
        k.find("original_max_position_embeddings")) {
      l.original_max_positions = to_int(top.find("original_max_position_embeddings")
                                            ? top.size("original_max_position_embeddings")
                                            : k.size("original_max_position_embeddings"));
      l.factor = double(max_positions) / l.original_max_positions;
    } else {
      l.original_max_positions = to_int(max_positions);
      l.factor = k.number_or("factor", 1.0);
    }
    if (k.find("attention_factor")) l.attention_factor = k.number("attention_factor");
    return l;
  }
  k.fail("rope_type", "default, linear, dynamic, yarn, llama3 or longrope", type);
}

// transformers' layer_types: "full_attention" or "sliding_attention" per layer, as local-layer
// flags; empty when the key is absent.
inline std::vector<bool> layer_types_of(const Keys& k, index layers) {
  std::vector<bool> local;
  if (const json* types = k.find("layer_types")) {
    if (!types->is_array() || types->size() != static_cast<std::size_t>(layers))
      k.fail("layer_types", "a list of num_hidden_layers (" + std::to_string(layers) + ") strings",
             types->dump());
    for (const json& t : *types) {
      if (t != "full_attention" && t != "sliding_attention")
        k.fail("layer_types", "\"full_attention\" or \"sliding_attention\" per layer", t.dump());
      local.push_back(t == "sliding_attention");
    }
  }
  return local;
}

// Qwen2's and Qwen3's sliding layers (use_sliding_window set): layer_types when given, else
// the layers from max_window_layers (default 28) on, as transformers' Qwen2Config builds its
// layer_types.
inline std::vector<bool> qwen_local_layers(const Keys& k, index layers) {
  std::vector<bool> local = layer_types_of(k, layers);
  if (!local.empty()) return local;
  const double from = k.number_or("max_window_layers", 28);
  if (!(from >= 0 && from == std::floor(from) && from <= std::numeric_limits<std::int32_t>::max()))
    k.fail("max_window_layers", "an integer >= 0", std::to_string(from));
  for (index l = 0; l < layers; ++l) local.push_back(double(l) >= from);
  return local;
}

}  // namespace hf_detail

namespace hf_detail {
// One model's config object (the file's, or a multimodal file's text_config) → CheckpointInfo.
inline CheckpointInfo parse_hf_object(const json& j, const std::string& where) {
  const Keys k(j, where);
  CheckpointInfo info;
  info.family = k.text_or("model_type", "");
  const std::string& f = info.family;
  if (f != "llama" && f != "mistral" && f != "qwen2" && f != "qwen3" && f != "mixtral" &&
      f != "qwen3_moe" && f != "qwen2_moe" && f != "gemma" && f != "gemma2" &&
      f != "gemma3_text")
    k.fail("model_type",
           "llama, mistral, qwen2, qwen3, mixtral, qwen2_moe, qwen3_moe, gemma, gemma2 or "
           "gemma3_text",
           f.empty() ? "no such key" : f);
  const bool gemma = f == "gemma" || f == "gemma2" || f == "gemma3_text";
  const bool gemma3 = f == "gemma3_text";

  // Each family's defaults for keys a saved config may lack (transformers' LlamaConfig,
  // MistralConfig, Qwen2Config, Qwen3Config, MixtralConfig, Qwen2MoeConfig, Qwen3MoeConfig,
  // GemmaConfig, Gemma2Config).
  struct Defaults {
    index kv_heads;  // 0: = heads
    index head_dim;  // 0: = hidden / heads
    double rope_theta, eps;
    index window;    // mistral's sliding_window
  };
  const Defaults def = f == "llama"     ? Defaults{0, 0, 10000.0, 1e-6, 0}
                       : f == "mistral" ? Defaults{8, 0, 10000.0, 1e-6, 4096}
                       : f == "qwen3"   ? Defaults{32, 128, 10000.0, 1e-6, 0}
                       : f == "qwen2"   ? Defaults{32, 0, 10000.0, 1e-6, 0}
                       : f == "qwen3_moe" ? Defaults{4, 0, 10000.0, 1e-6, 0}
                       : f == "qwen2_moe" ? Defaults{16, 0, 10000.0, 1e-6, 0}
                       : f == "gemma"   ? Defaults{16, 256, 10000.0, 1e-6, 0}
                       : f == "gemma2"  ? Defaults{4, 256, 10000.0, 1e-6, 4096}
                       : gemma3         ? Defaults{4, 256, 1e6, 1e-6, 4096}
                                        : Defaults{8, 0, 1e6, 1e-5, 0};  // mixtral

  Dims& d = info.dims;
  if (gemma3) {  // Gemma3TextConfig's defaults (Gemma 3 4B's text_config names only some keys)
    d.vocab = k.size_or("vocab_size", 262208);
    d.hidden = k.size_or("hidden_size", 2304);
    d.intermediate = k.size_or("intermediate_size", 9216);
    d.layers = k.size_or("num_hidden_layers", 26);
    d.heads = k.size_or("num_attention_heads", 8);
  } else {
    d.vocab = k.size("vocab_size");
    d.hidden = k.size("hidden_size");
    d.intermediate = k.size("intermediate_size");
    d.layers = k.size("num_hidden_layers");
    d.heads = k.size("num_attention_heads");
  }
  d.kv_heads = k.size_or("num_key_value_heads", def.kv_heads > 0 ? def.kv_heads : d.heads);
  d.head_dim = k.size_or("head_dim", def.head_dim > 0 ? def.head_dim : d.hidden / d.heads);
  d.max_positions = gemma3 ? k.size_or("max_position_embeddings", 131072)
                           : k.size("max_position_embeddings");

  ModelParams& p = info.params;
  p.eps = k.single("rms_norm_eps", def.eps);
  p.rope_base = k.number_or("rope_theta", def.rope_theta);
  const hf_detail::json* rp = k.find("rope_parameters");
  if (gemma3) {  // local layers' base: rope_local_base_freq, or transformers 5's per-type form
    p.local_rope_base = k.number_or("rope_local_base_freq", 10000.0);
    if (rp && rp->is_object() &&
        (rp->contains("sliding_attention") || rp->contains("full_attention"))) {
      const hf_detail::Keys types(*rp, where + ": rope_parameters");
      if (types.find("sliding_attention")) {
        const json& sliding = types.object("sliding_attention");
        const hf_detail::Keys local(sliding, where + ": rope_parameters.sliding_attention");
        if (!std::holds_alternative<rope_scaling::None>(
                hf_detail::rope_scaling_of(sliding, k, where, d.max_positions)))
          local.fail("rope_type", "default (local layers are not scaled)",
                     local.text_or("rope_type", "?"));
        p.local_rope_base = local.number_or("rope_theta", p.local_rope_base);
      }
      rp = types.find("full_attention") ? &types.object("full_attention") : nullptr;
    }
  }
  if (rp) {  // transformers 5's form
    if (!rp->is_object()) k.fail("rope_parameters", "an object", rp->dump());
    const hf_detail::Keys r(*rp, where + ": rope_parameters");
    const double theta = r.number_or("rope_theta", p.rope_base);
    if (k.find("rope_theta") && theta != p.rope_base)
      k.fail("rope_theta", "the value of rope_parameters.rope_theta (" + std::to_string(theta) + ")",
             std::to_string(p.rope_base));
    if (k.find("rope_scaling"))
      k.fail("rope_scaling", "absent beside rope_parameters (one form, not both)", "present");
    p.rope_base = theta;
    p.rope_scaling = hf_detail::rope_scaling_of(*rp, k, where, d.max_positions);
  } else if (const hf_detail::json* s = k.find("rope_scaling")) {
    p.rope_scaling = hf_detail::rope_scaling_of(*s, k, where, d.max_positions);
  }
  info.tied = k.flag_or("tie_word_embeddings", gemma);  // Gemma's default: tied
  // Gemma: hidden_activation (transformers 4's GemmaMLP reads it; absent: gelu_pytorch_tanh, the
  // function the models were trained with). hidden_act is not read: the first Gemma configs say
  // "gelu" there for the same models.
  if (gemma) {
    const std::string act = k.text_or("hidden_activation", "gelu_pytorch_tanh");
    if (act != "gelu_pytorch_tanh") k.fail("hidden_activation", "gelu_pytorch_tanh (GeGLU)", act);
    p.activation = {.kind = ActivationKind::GeluTanh};
    if (k.flag_or("use_bidirectional_attention", false))  // an encoder (EmbeddingGemma)
      k.fail("use_bidirectional_attention", "false (a causal decoder)", "true");
  } else {
    const std::string act = k.text_or("hidden_act", "silu");
    if (act != "silu") k.fail("hidden_act", "silu (SwiGLU)", act);
  }
  // Biases of the attention projections: Qwen2's q, k, v always; Llama's attention_bias all four.
  const bool qwen2 = f == "qwen2" || f == "qwen2_moe";  // Qwen2MoeConfig: qkv_bias, default true
  info.qkv_bias = (f == "qwen2" || (f == "qwen2_moe" && k.flag_or("qkv_bias", true))) ||
                  k.flag_or("attention_bias", false);
  info.o_bias = !qwen2 && k.flag_or("attention_bias", false);
  if (k.flag_or("mlp_bias", false)) k.fail("mlp_bias", "false", "true");
  if (k.find("partial_rotary_factor")) {  // Hugging Face: int(head_dim · factor) values rotate
    const double f = k.number("partial_rotary_factor");
    const double n = std::floor(double(d.head_dim) * f);
    if (!(f > 0 && f <= 1) || static_cast<index>(n) % 2 != 0 || n < 2)
      k.fail("partial_rotary_factor", "in (0, 1], giving an even rotary size >= 2",
             std::to_string(f) + " (head_dim " + std::to_string(d.head_dim) + ")");
    if (n < double(d.head_dim)) p.rotary_dim = static_cast<index>(n);
  }

  // sliding_window null: no window (Mistral v0.2 and later), absent: the family's default.
  const auto window_or = [&](index fallback) {
    return k.is_null("sliding_window") ? index(0) : k.size_or("sliding_window", fallback);
  };
  if (f == "mistral" || f == "mixtral") p.attention.window = window_or(def.window);
  if ((f == "qwen3_moe" || f == "qwen2_moe") && k.flag_or("use_sliding_window", false))
    k.fail("use_sliding_window", "false (sliding layers of Qwen's MoE models are not read yet)",
           "true");
  if ((f == "qwen2" || f == "qwen3") && k.flag_or("use_sliding_window", false)) {
    p.attention.window = window_or(4096);
    if (p.attention.window > 0) p.attention.local_layers = hf_detail::qwen_local_layers(k, d.layers);
  }
  if (f == "qwen3" || f == "qwen3_moe") p.qk_norm = true;
  if (gemma) {
    info.norm = NormScale::OnePlusWeight;   // x̂ · (1 + w)
    p.embed_scale = std::sqrt(static_cast<float>(d.hidden));  // the embedding × √hidden
  }
  if (f == "gemma2" || gemma3) {
    info.post_norms = true;
    const double scalar = k.number_or("query_pre_attn_scalar", 256.0);
    if (!(scalar > 0 && std::isfinite(scalar)))
      k.fail("query_pre_attn_scalar", "a finite number > 0", std::to_string(scalar));
    p.attention_scale = static_cast<float>(1.0 / std::sqrt(scalar));
    // null turns a soft-cap off; absent, transformers' defaults (50, 30).
    const auto softcap = [&](const char* key, double fallback) {
      return k.is_null(key) ? 0.0f : k.single(key, fallback);
    };
    p.attention_softcap = softcap("attn_logit_softcapping", gemma3 ? 0.0 : 50.0);
    p.final_softcap = softcap("final_logit_softcapping", gemma3 ? 0.0 : 30.0);
    // Gemma 3's sliding layers rotate with their own base even without a window, which the
    // decoder does not express (a layer without a window is global there): refused.
    if (gemma3 && k.is_null("sliding_window"))
      k.fail("sliding_window", "a number of keys (Gemma 3's sliding layers keep their own RoPE)",
             "null");
    p.attention.window = window_or(def.window);
    if (p.attention.window > 0) {
      p.attention.local_layers = hf_detail::layer_types_of(k, d.layers);
      // Without layer_types: Gemma 2's layers 1, 3, … global; Gemma 3's every
      // sliding_window_pattern-th (6: layers 5, 11, …).
      if (p.attention.local_layers.empty())
        p.attention.global_every = gemma3 ? k.size_or("sliding_window_pattern", 6) : 2;
    }
    if (gemma3) p.qk_norm = true;
  }
  if (f == "mixtral") {
    info.ffn = FfnKind::MoE;
    d.experts = k.size("num_local_experts");
    d.top_k = k.size("num_experts_per_tok");
    p.router = RouterKind::SoftmaxThenTopK;  // softmax over all experts, top-k, renormalised
    p.renormalize = true;
  }
  if (f == "qwen3_moe" || f == "qwen2_moe") {  // every layer an MoE block
    const bool q3 = f == "qwen3_moe";
    info.ffn = FfnKind::MoE;
    d.experts = k.size_or("num_experts", q3 ? 128 : 60);
    d.top_k = k.size_or("num_experts_per_tok", q3 ? 8 : 4);
    d.intermediate = k.size_or("moe_intermediate_size", q3 ? 768 : 1408);
    // Qwen2-MoE: a shared expert of its own width on every token, gated by sigmoid(x · g).
    if (!q3) d.shared_intermediate = k.size_or("shared_expert_intermediate_size", 5632);
    p.router = RouterKind::SoftmaxThenTopK;  // softmax over all experts, then top-k
    p.renormalize = k.flag_or("norm_topk_prob", false);
    if (k.size_or("decoder_sparse_step", 1) != 1)
      k.fail("decoder_sparse_step", "1 (dense layers between MoE layers are not supported yet)",
             std::to_string(k.size("decoder_sparse_step")));
    if (const hf_detail::json* dense = k.find("mlp_only_layers"); dense && !dense->empty())
      k.fail("mlp_only_layers", "[] (dense layers among MoE layers are not supported yet)",
             dense->dump());
  }
  return info;
}
}  // namespace hf_detail

// config.json's text (`name` for messages: its path) → CheckpointInfo. See the header comment.
// A multimodal Gemma 3 (model_type gemma3) is read as its language model: its text_config
// (model_type gemma3_text), family "gemma3".
inline CheckpointInfo parse_hf_config(std::string_view text, const std::string& name) {
  using hf_detail::json;
  const std::string where = "parse_hf_config: " + name;
  const json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) detail::fail_check(where, "text", "JSON", "text that does not parse");
  if (!j.is_object()) detail::fail_check(where, "text", "a JSON object", j.type_name());
  const hf_detail::Keys k(j, where);
  if (k.text_or("model_type", "") != "gemma3") return hf_detail::parse_hf_object(j, where);
  json t = k.object("text_config");
  const std::string inner = hf_detail::Keys(t, where + ": text_config").text_or("model_type", "gemma3_text");
  if (inner != "gemma3_text")
    k.fail("text_config.model_type", "gemma3_text (Gemma 3's language model)", inner);
  t["model_type"] = "gemma3_text";
  CheckpointInfo info = hf_detail::parse_hf_object(t, where + ": text_config");
  info.family = "gemma3";
  return info;
}

// Reads config.json at `path` (a regular file; io/file_bytes.hpp's checks).
inline CheckpointInfo read_hf_config(const std::string& path) {
  const FileBytes file(path, FileMode::Read, "read_hf_config");
  const auto bytes = file.bytes();
  return parse_hf_config(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                         path);
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
