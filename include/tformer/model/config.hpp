// A decoder's configuration in two parts:
//
// - a Config type: what changes the code. Structural choices (RoPE layout, FFN kind,
//   cross-attention, position and bias kinds, norm placement, head tying, which optional blocks
//   exist) as static members, checked by the DecoderConfig concept, and optionally static sizes:
//   each size is a compile-time constant or `tformer::dynamic`, then read at run time from a
//   Dims value (Eigen's fixed-or-Dynamic idea);
// - ModelParams: every number that does not change the code (RoPE base and scaling, eps,
//   attention window and sinks, activation, router, qk-norm, pad id, …), a runtime struct a
//   checkpoint reader fills. A Config may name its family's usual values (`static ModelParams
//   params()`), which a Decoder built without explicit parameters uses.
//
//   struct MyModel : configs::Base, configs::Dynamic {
//     static constexpr RopeLayout rope_layout = RopeLayout::RotateHalf;   // what changes code
//     static ModelParams params() { return presets::llama3(); }           // default numbers
//   };
//   Decoder<MyModel> dec(weights, dims, presets::llama31(), {.capacity = 4096});
//
// configs:: holds the structural presets: TrafficVLM (seed 003, all sizes static), Llama (one
// type for Llama 2/3/3.1/3.2, Qwen3, Mistral: they differ in numbers only), Qwen3 (its
// defaults), Mistral, Mixtral (MoE), Gemma, Gemma2 (sandwich norms), Llama2c. presets:: holds
// the named parameter sets.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <limits>
#include <string>
#include <variant>
#include <vector>

#include "tformer/core/error.hpp"
#include "tformer/core/memory.hpp"
#include "tformer/core/views.hpp"
#include "tformer/nn/activation.hpp"
#include "tformer/nn/attention.hpp"
#include "tformer/nn/moe.hpp"
#include "tformer/nn/position_bias.hpp"
#include "tformer/nn/rmsnorm.hpp"
#include "tformer/rope/apply.hpp"
#include "tformer/rope/scaling.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

// A size read at run time.
inline constexpr index dynamic = -1;

// The sizes of a model. A Config's static sizes must agree with it; dynamic ones come from it.
struct Dims {
  index vocab = 0, hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0,
        head_dim = 0, max_positions = 0;
  index encoder_width = 0;  // width of the encoder states cross-attention reads; 0: none
  index experts = 0;        // MoE only
  index top_k = 0;          // MoE: experts per token; TopK FFN: kept intermediate entries
  index shared_intermediate = 0;  // MoE: the always-on shared expert's width; 0: none
  bool operator==(const Dims&) const = default;
};

enum class FfnKind { Dense, TopK, MoE };

// Which layers attend globally and which through a sliding window of `window` keys (a query at
// p sees keys (p − W, p], Hugging Face's sliding-window mask). global_every = 0: every layer
// alike (window 0: all global); global_every = n: layers n−1, 2n−1, … are global, the others
// local (Gemma 2/3). A list, when given, decides instead: local_layers[l] says whether layer l
// is local (Hugging Face's layer_types; Qwen2's max_window_layers: the layers from it on).
// Local layers may keep `sinks` global tokens, the first positions, visible to every query
// (StreamingLLM's attention sinks), scored from sink_positions (nn/attention.hpp). With `ring`,
// local layers keep only those sinks and the last window of keys (plus max_tokens − 1) in a
// ring cache; when every layer is local, a sequence then grows past the decoder's capacity at
// constant memory.
struct AttentionPattern {
  index window = 0;
  index global_every = 0;
  index sinks = 0;
  SinkPositions sink_positions = SinkPositions::InCache;
  bool ring = false;
  std::vector<bool> local_layers = {};  // empty, or one flag per layer (global_every then 0)

  bool local(index layer) const noexcept {  // a list shorter than the layers: the rest global
    if (!local_layers.empty())
      return layer < index(local_layers.size()) && local_layers[static_cast<std::size_t>(layer)];
    return global_every == 0 || (layer + 1) % global_every != 0;
  }
  index window_of(index layer) const noexcept { return local(layer) ? window : 0; }
  index sinks_of(index layer) const noexcept { return window_of(layer) > 0 ? sinks : 0; }
  bool ring_of(index layer) const noexcept { return ring && window_of(layer) > 0; }
  // Whether every layer keeps a ring: sequences are then not bounded by the cache.
  bool streaming(index layers) const noexcept {
    if (!ring || window <= 0) return false;
    for (index l = 0; l < layers; ++l)
      if (!local(l)) return false;
    return true;
  }
};

// How positions enter: RoPE on q and k; a sinusoidal-initialised absolute table added to the
// token embeddings (rope/sinusoidal.hpp); or neither (position only through a bias).
enum class PositionKind { Rope, Sinusoidal, None };

// Additive attention bias from relative positions (nn/position_bias.hpp).
enum class BiasKind { None, ALiBi, T5 };

// Where the LM head comes from: the embedding (tied), its own matrix, or whichever the weights
// carry (checkpoint readers: llama2.c stores the choice in its header).
enum class HeadKind { Tied, Own, AsLoaded };

// The numbers of a model that do not change its code, filled at run time (a checkpoint's
// config.json or GGUF metadata, or a preset). Checked by check_params when a Decoder is built.
struct ModelParams {
  double rope_base = 10000.0;                        // θ_i = pos · base^(−2i/d)
  index rotary_dim = 0;  // d: RoPE on the first d values of each head (partial); 0: head_dim
  RopeScaling rope_scaling = rope_scaling::None{};   // linear, dynamic NTK, YaRN, Llama 3, LongRoPE
  // Sliding-window layers' own RoPE base, without scaling (Gemma 3's rope_local_base_freq:
  // 10000); 0: they rotate as global layers do.
  double local_rope_base = 0.0;
  float eps = 1e-5f;                                 // every RMSNorm's ε
  AttentionPattern attention = {};                   // window, global layers, sinks, ring
  Activation activation = {};                        // of the gated FFN (SwiGLU: SiLU)
  bool qk_norm = false;                              // per-head RMSNorm of q and k (Qwen3)
  RouterKind router = RouterKind::SoftmaxThenTopK;   // MoE
  bool renormalize = true;                           // MoE: the k weights sum to 1
  index pad_id = -1;                                 // −1: none; its embedding row is zero
  float position_scale = 1.0f;                       // Sinusoidal: the normalised row's scale
  index t5_buckets = 32, t5_max_distance = 128;      // T5 bias (unidirectional)
  // Gemma's numbers (Hugging Face's GemmaModel / Gemma2Model):
  float embed_scale = 1.0f;        // embedding rows × this (Gemma: √hidden)
  float attention_scale = 0.0f;    // scores × this; 0: 1/√head_dim (Gemma 2: query_pre_attn_scalar^−½)
  float attention_softcap = 0.0f;  // self-attention scores s → c·tanh(s/c); 0: off (Gemma 2: 50)
  float final_softcap = 0.0f;      // logits z → c·tanh(z/c); 0: off (Gemma 2: 30)
};

// What a Config must state: its sizes (static or dynamic) and its structural choices.
template <class C>
concept DecoderConfig = requires {
  { C::vocab } -> std::convertible_to<index>;
  { C::hidden } -> std::convertible_to<index>;
  { C::intermediate } -> std::convertible_to<index>;
  { C::layers } -> std::convertible_to<index>;
  { C::heads } -> std::convertible_to<index>;
  { C::kv_heads } -> std::convertible_to<index>;
  { C::head_dim } -> std::convertible_to<index>;
  { C::max_positions } -> std::convertible_to<index>;
  { C::encoder_width } -> std::convertible_to<index>;
  { C::rope_layout } -> std::convertible_to<RopeLayout>;
  { C::ffn } -> std::convertible_to<FfnKind>;
  { C::cross_attention } -> std::convertible_to<bool>;
  { C::head } -> std::convertible_to<HeadKind>;
  { C::norm } -> std::convertible_to<NormScale>;
  { C::positions } -> std::convertible_to<PositionKind>;
  { C::bias } -> std::convertible_to<BiasKind>;
};

// The values RoPE rotates in each head: params.rotary_dim, or all of head_dim.
inline index rotary_dim_of(const ModelParams& p, const Dims& d) noexcept {
  return p.rotary_dim > 0 ? p.rotary_dim : d.head_dim;
}

// The parameters a Config names as its family's (C::params()), or ModelParams' defaults.
template <DecoderConfig C>
ModelParams default_params() {
  if constexpr (requires { { C::params() } -> std::convertible_to<ModelParams>; })
    return C::params();
  else
    return {};
}

// Throws tformer::Error naming the first parameter that cannot hold for a model of these sizes
// (`where` names the caller). The RoPE scaling is checked where its table is built.
template <DecoderConfig C>
void check_params(const char* where, const ModelParams& p, const Dims& d) {
  const auto finite_positive = [&](const char* what, double v) {
    if (!(std::isfinite(v) && v > 0)) [[unlikely]]
      detail::fail_check(where, what, "a finite number > 0", v);
  };
  finite_positive("params.rope_base", p.rope_base);
  if (p.rotary_dim != 0 && (p.rotary_dim < 2 || p.rotary_dim > d.head_dim || p.rotary_dim % 2 != 0))
      [[unlikely]]
    detail::fail_check(where, "params.rotary_dim",
                       "0 (all) or even in [2, head_dim = " + std::to_string(d.head_dim) + "]",
                       p.rotary_dim);
  if (p.local_rope_base != 0.0 && !(std::isfinite(p.local_rope_base) && p.local_rope_base > 1.0))
      [[unlikely]]
    detail::fail_check(where, "params.local_rope_base", "0 (none) or a finite number > 1",
                       p.local_rope_base);
  finite_positive("params.eps", p.eps);
  check_activation(std::string(where) + ": params.activation", p.activation);
  const AttentionPattern& a = p.attention;
  check(a.window >= 0, where, "params.attention.window", ">= 0", a.window);
  check(a.global_every >= 0, where, "params.attention.global_every", ">= 0", a.global_every);
  if (!a.local_layers.empty()) {
    check_eq(where, "params.attention.local_layers size (= layers, or 0)", d.layers,
             index(a.local_layers.size()));
    check(a.global_every == 0, where, "params.attention.global_every",
          "0 with a local_layers list (the list decides)", a.global_every);
    const bool any_local =
        std::find(a.local_layers.begin(), a.local_layers.end(), true) != a.local_layers.end();
    check(!any_local || a.window > 0, where, "params.attention.window",
          "> 0 when local_layers names a local layer", a.window);
  }
  check(a.sinks >= 0, where, "params.attention.sinks", ">= 0", a.sinks);
  check(a.sinks == 0 || a.window > 0, where, "params.attention.sinks",
        "0 without a window (sinks belong to local layers)", a.sinks);
  check(a.sink_positions == SinkPositions::InCache || a.sink_positions == SinkPositions::Original,
        where, "params.attention.sink_positions", "InCache or Original", int(a.sink_positions));
  // Sink queries are rotated from the table alone; a pass's own frequencies do not reach them.
  if (a.sinks > 0 && a.sink_positions == SinkPositions::InCache &&
      (std::holds_alternative<rope_scaling::DynamicNtk>(p.rope_scaling) ||
       std::holds_alternative<rope_scaling::LongRope>(p.rope_scaling))) [[unlikely]]
    detail::fail_check(where, "params.attention.sinks",
                       "0 with dynamic NTK or LongRoPE scaling (or sink_positions Original)",
                       a.sinks);
  check(!a.ring || a.window > 0, where, "params.attention.ring", "false without a window", a.ring);
  check_router(where, "params.router", p.router);
  check(p.pad_id >= -1 && p.pad_id < d.vocab, where, "params.pad_id",
        "-1 or a token id < vocab (" + std::to_string(d.vocab) + ")", p.pad_id);
  if (!std::isfinite(p.position_scale)) [[unlikely]]
    detail::fail_check(where, "params.position_scale", "a finite number", p.position_scale);
  finite_positive("params.embed_scale", p.embed_scale);
  const auto finite_or_off = [&](const char* what, float v) {
    if (!(std::isfinite(v) && v >= 0)) [[unlikely]]
      detail::fail_check(where, what, "a finite number >= 0 (0: the default)", v);
  };
  finite_or_off("params.attention_scale", p.attention_scale);
  finite_or_off("params.attention_softcap", p.attention_softcap);
  finite_or_off("params.final_softcap", p.final_softcap);
  if constexpr (C::bias == BiasKind::T5) {  // before any table: T5Bias checks the rest
    check(p.t5_buckets >= 2 && p.t5_buckets <= t5_limit, where, "params.t5_buckets",
          "in [2, 2^20]", p.t5_buckets);
    check(p.t5_max_distance >= 1 && p.t5_max_distance <= t5_limit, where,
          "params.t5_max_distance", "in [1, 2^20]", p.t5_max_distance);
  }
}

namespace config_detail {
inline index resolve(const char* name, index fixed, index given) {
  if (fixed == dynamic) {
    check(given > 0, "Dims", name, "> 0 (dynamic in the Config)", given);
    return given;
  }
  if (given != 0 && given != fixed) [[unlikely]]
    detail::fail_check("Dims", name, std::to_string(fixed) + " (static in the Config) or 0", given);
  return fixed;
}
}  // namespace config_detail

// The Config's sizes with its dynamic ones taken from `given` (static ones may be left 0 there),
// checked for consistency: heads a multiple of kv_heads, head_dim even, MoE k in [1, experts].
template <DecoderConfig C>
Dims resolve_dims(const Dims& given = {}) {
  using config_detail::resolve;
  Dims d;
  d.vocab = resolve("vocab", C::vocab, given.vocab);
  d.hidden = resolve("hidden", C::hidden, given.hidden);
  d.intermediate = resolve("intermediate", C::intermediate, given.intermediate);
  d.layers = resolve("layers", C::layers, given.layers);
  d.heads = resolve("heads", C::heads, given.heads);
  d.kv_heads = resolve("kv_heads", C::kv_heads, given.kv_heads);
  d.head_dim = resolve("head_dim", C::head_dim, given.head_dim);
  d.max_positions = resolve("max_positions", C::max_positions, given.max_positions);
  if constexpr (C::cross_attention) d.encoder_width = resolve("encoder_width", C::encoder_width, given.encoder_width);
  d.experts = given.experts;
  d.top_k = given.top_k;
  d.shared_intermediate = given.shared_intermediate;
  check(d.shared_intermediate == 0 || (C::ffn == FfnKind::MoE && d.shared_intermediate > 0),
        "Dims", "shared_intermediate", "0, or > 0 with an MoE Config", d.shared_intermediate);
  if constexpr (C::ffn == FfnKind::MoE) {
    d.experts = resolve("experts", C::experts, given.experts);
    d.top_k = resolve("top_k", C::top_k, given.top_k);
    if (d.top_k > d.experts) [[unlikely]]
      detail::fail_check("Dims", "top_k", "<= experts (" + std::to_string(d.experts) + ")", d.top_k);
  }
  if constexpr (C::ffn == FfnKind::TopK) {
    d.top_k = resolve("top_k", C::top_k, given.top_k);
    if (d.top_k > d.intermediate) [[unlikely]]
      detail::fail_check("Dims", "top_k", "<= intermediate (" + std::to_string(d.intermediate) + ")",
                         d.top_k);
  }
  if (d.heads % d.kv_heads != 0) [[unlikely]]
    detail::fail_check("Dims", "heads", "a multiple of kv_heads (" + std::to_string(d.kv_heads) + ")",
                       d.heads);
  check(d.head_dim % 2 == 0, "Dims", "head_dim", "even", d.head_dim);
  // RoPE tables and attention index positions with int.
  check(d.max_positions <= std::numeric_limits<int>::max(), "Dims", "max_positions", "<= 2^31 - 1",
        d.max_positions);
  // Each matrix fits a buffer (core/memory.hpp); OwnedWeights checks their sum.
  checked_size("Dims", "vocab * hidden", {d.vocab, d.hidden}, 4);
  checked_size("Dims", "heads * head_dim * hidden", {d.heads, d.head_dim, d.hidden}, 4);
  checked_size("Dims", "intermediate * hidden", {d.intermediate, d.hidden}, 4);
  if constexpr (C::positions == PositionKind::Sinusoidal)
    checked_size("Dims", "max_positions * hidden", {d.max_positions, d.hidden}, 4);
  if constexpr (C::ffn == FfnKind::MoE) {
    checked_size("Dims", "experts * intermediate * hidden", {d.experts, d.intermediate, d.hidden},
                 4);
    checked_size("Dims", "shared_intermediate * hidden", {d.shared_intermediate, d.hidden}, 4);
  }
  checked_size("Dims", "encoder_width * hidden", {d.encoder_width, d.hidden}, 4);
  return d;
}

namespace presets {

// Named parameter sets of public models (their config.json values).
inline ModelParams llama2() { return {}; }                       // base 10000, eps 1e-5
inline ModelParams llama3() { return {.rope_base = 500000.0}; }  // Llama 3 / 3.0
inline ModelParams llama31() {  // Llama 3.1: the Llama 3 frequency scaling, factor 8
  return {.rope_base = 500000.0,
          .rope_scaling = rope_scaling::Llama3{.factor = 8.0,
                                               .low_freq_factor = 1.0,
                                               .high_freq_factor = 4.0,
                                               .original_max_positions = 8192}};
}
inline ModelParams llama32() {  // Llama 3.2 (1B, 3B): factor 32
  ModelParams p = llama31();
  std::get<rope_scaling::Llama3>(p.rope_scaling).factor = 32.0;
  return p;
}
inline ModelParams qwen3() { return {.rope_base = 1000000.0, .eps = 1e-6f, .qk_norm = true}; }
inline ModelParams mistral_7b_v01() {  // sliding window of 4096 keys on every layer
  return {.attention = {.window = 4096}};
}
inline ModelParams mixtral() { return {.rope_base = 1000000.0}; }  // softmax, top-k, renormalised
inline ModelParams traffic_vlm() { return {.eps = 1e-6f, .pad_id = 0}; }
inline ModelParams llama2c() { return {}; }  // run.c: base 10000, eps 1e-5
// Gemma 1 (Hugging Face's GemmaConfig): GELU-tanh gate, eps 1e-6, the embedding × √hidden.
inline ModelParams gemma(index hidden) {
  return {.eps = 1e-6f,
          .activation = {.kind = ActivationKind::GeluTanh},
          .embed_scale = std::sqrt(static_cast<float>(hidden))};
}
// Gemma 2 (Gemma2Config): local layers of 4096 keys alternating with global ones (layer 1, 3,
// … global), scores × query_pre_attn_scalar^−½ (256 by default), soft-caps 50 and 30.
inline ModelParams gemma2(index hidden, double query_pre_attn_scalar = 256.0) {
  ModelParams p = gemma(hidden);
  p.attention = {.window = 4096, .global_every = 2};
  p.attention_scale = static_cast<float>(1.0 / std::sqrt(query_pre_attn_scalar));
  p.attention_softcap = 50.0f;
  p.final_softcap = 30.0f;
  return p;
}

// Gemma 3 (Gemma3TextConfig): Gemma 2's structure without soft-caps, with qk-norm; five local
// layers of 4096 keys to one global (layers 5, 11, … global); global layers rotate with base
// 1e6 (and the checkpoint's scaling: linear 8 for 4B and larger), local ones with 10000.
inline ModelParams gemma3(index hidden, double query_pre_attn_scalar = 256.0) {
  ModelParams p = gemma2(hidden, query_pre_attn_scalar);
  p.rope_base = 1000000.0;
  p.local_rope_base = 10000.0;
  p.qk_norm = true;
  p.attention = {.window = 4096, .global_every = 6};
  p.attention_softcap = 0.0f;
  p.final_softcap = 0.0f;
  return p;
}

}  // namespace presets

namespace configs {

// The choices most decoders share; presets override what differs.
struct Base {
  static constexpr index encoder_width = 0;
  static constexpr RopeLayout rope_layout = RopeLayout::RotateHalf;
  static constexpr FfnKind ffn = FfnKind::Dense;
  static constexpr index experts = 0, top_k = 0;  // MoE: experts and k; TopK: kept entries
  static constexpr bool cross_attention = false;
  static constexpr HeadKind head = HeadKind::Own;
  static constexpr NormScale norm = NormScale::Weight;
  static constexpr PositionKind positions = PositionKind::Rope;
  static constexpr BiasKind bias = BiasKind::None;
  // > 0: a causal depthwise convolution of this kernel size over the attention block's input,
  // added to its output (seed 001's convolution + attention; nn/causal_conv.hpp).
  static constexpr index conv_kernel = 0;
  // Seed 001's rotary block before RoPE (rope/givens.hpp): this many learned Givens rotations,
  // then a learned orthogonal [D, D] matrix when rotation_matrix.
  static constexpr index givens_rotations = 0;
  static constexpr bool rotation_matrix = false;
  // Gemma 2's sandwich norms: the attention block's and the FFN's outputs are RMS-normalised
  // (post_attn_norm, post_ffn_norm) before they join the residual stream.
  static constexpr bool post_norms = false;
};

// Seed 003's small configuration: Gemma-style decoder with cross-attention to 196 vision
// tokens of width 768 (projected 768 → 512 once per sequence), tied head, pad id 0.
struct TrafficVLM : Base {
  static constexpr index vocab = 500, hidden = 512, intermediate = 2048, layers = 4, heads = 8,
                         kv_heads = 2, head_dim = 64, max_positions = 128, encoder_width = 768;
  static constexpr index encoder_tokens = 196;
  static constexpr bool cross_attention = true;
  static constexpr HeadKind head = HeadKind::Tied;
  static ModelParams params() { return presets::traffic_vlm(); }
};

// Sizes dynamic: a family, not one model.
struct Dynamic {
  static constexpr index vocab = dynamic, hidden = dynamic, intermediate = dynamic,
                         layers = dynamic, heads = dynamic, kv_heads = dynamic,
                         head_dim = dynamic, max_positions = dynamic;
};

// The Llama family as Hugging Face stores it (rotate-half, SwiGLU, RMSNorm; the head tied or not
// as the weights have it): Llama 2, 3, 3.1 and 3.2, Qwen3 and Mistral differ only in ModelParams
// (presets::). Defaults: Llama 3.
struct Llama : Base, Dynamic {
  using Base::encoder_width;
  static constexpr HeadKind head = HeadKind::AsLoaded;
  static ModelParams params() { return presets::llama3(); }
  static constexpr Dims llama3_8b = {.vocab = 128256, .hidden = 4096, .intermediate = 14336,
                                     .layers = 32, .heads = 32, .kv_heads = 8, .head_dim = 128,
                                     .max_positions = 8192};
  static constexpr Dims llama2_7b = {.vocab = 32000, .hidden = 4096, .intermediate = 11008,
                                     .layers = 32, .heads = 32, .kv_heads = 32, .head_dim = 128,
                                     .max_positions = 4096};
};

// Qwen3: the Llama structure with Qwen3's defaults (per-head RMSNorm of q and k before RoPE).
struct Qwen3 : Llama {
  static ModelParams params() { return presets::qwen3(); }
  static constexpr Dims qwen3_8b = {.vocab = 151936, .hidden = 4096, .intermediate = 12288,
                                    .layers = 36, .heads = 32, .kv_heads = 8, .head_dim = 128,
                                    .max_positions = 40960};
};

// Mistral 7B v0.1's defaults: sliding window of 4096 keys on every layer.
struct Mistral : Llama {
  static ModelParams params() { return presets::mistral_7b_v01(); }
  static constexpr Dims mistral_7b = {.vocab = 32000, .hidden = 4096, .intermediate = 14336,
                                      .layers = 32, .heads = 32, .kv_heads = 8, .head_dim = 128,
                                      .max_positions = 32768};
};

// Mixtral: SwiGLU experts (count and k from the Dims), softmax then top-k, renormalised.
struct Mixtral : Base, Dynamic {
  using Base::encoder_width;
  static constexpr HeadKind head = HeadKind::AsLoaded;
  static constexpr FfnKind ffn = FfnKind::MoE;
  static constexpr index experts = dynamic, top_k = dynamic;
  static ModelParams params() { return presets::mixtral(); }
  static constexpr Dims mixtral_8x7b = {.vocab = 32000, .hidden = 4096, .intermediate = 14336,
                                        .layers = 32, .heads = 32, .kv_heads = 8,
                                        .head_dim = 128, .max_positions = 32768,
                                        .experts = 8, .top_k = 2};
};

// Karpathy's llama2.c checkpoints (io/llama2c.hpp): interleaved RoPE, base 10000, eps 1e-5,
// sizes from the file's header, head tied or not as the header says.
struct Llama2c : Base, Dynamic {
  using Base::encoder_width;
  static constexpr RopeLayout rope_layout = RopeLayout::Interleaved;
  static constexpr HeadKind head = HeadKind::AsLoaded;
  static ModelParams params() { return presets::llama2c(); }
};
// The Llama structure with Meta's interleaved q/k rows: llama2.c files, and llama.cpp's GGUF
// llama models (io/gguf_model.hpp).
using LlamaInterleaved = Llama2c;
// Gemma (Hugging Face's GemmaModel): Llama's structure with x̂ · (1 + w) norms; its numbers
// (presets::gemma(hidden): GeGLU, the embedding × √hidden) are ModelParams. Tied head as loaded.
struct Gemma : Base, Dynamic {
  using Base::encoder_width;
  static constexpr NormScale norm = NormScale::OnePlusWeight;
  static constexpr HeadKind head = HeadKind::AsLoaded;
};
// Gemma 2 and 3: Gemma with sandwich norms (post_attn_norm, post_ffn_norm); their numbers
// (presets::gemma2(hidden), presets::gemma3(hidden)): which layers slide, soft-caps, qk-norm,
// local layers' RoPE base.
struct Gemma2 : Gemma {
  static constexpr bool post_norms = true;
};

// Gemma 2 and 3 as llama.cpp's GGUF files store them: the norm weights hold Gemma's 1 added
// (x̂ · w), with sandwich norms. (GGUF gemma, without them, loads as configs::Llama.)
struct Gemma2Gguf : Base, Dynamic {
  using Base::encoder_width;
  static constexpr HeadKind head = HeadKind::AsLoaded;
  static constexpr bool post_norms = true;
};

// Mixtral with Meta's interleaved q/k rows: llama.cpp's GGUF llama models with experts.
struct MixtralInterleaved : Mixtral {
  static constexpr RopeLayout rope_layout = RopeLayout::Interleaved;
};

}  // namespace configs

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
