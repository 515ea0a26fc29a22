// A decoder's configuration: a plain struct of static members, checked by the DecoderConfig
// concept. Each size is a compile-time constant or `tformer::dynamic`, then read at run time
// from a Dims value (Eigen's fixed-or-Dynamic idea); choices are enums and small structs.
//
//   struct MyModel {
//     static constexpr index vocab = dynamic, hidden = 4096, …;   // every size below
//     static constexpr RopeLayout rope_layout = RopeLayout::RotateHalf;
//     static constexpr FfnKind ffn = FfnKind::Dense;  …           // every choice below
//   };
//
// configs:: holds presets: TrafficVLM (seed 003, all sizes static), Llama, Qwen3, Mistral,
// Mixtral (families: sizes dynamic, with the published sizes of one model as a Dims), Llama2c.
#pragma once

#include <algorithm>
#include <concepts>
#include <limits>
#include <string>

#include "tformer/core/error.hpp"
#include "tformer/core/memory.hpp"
#include "tformer/core/views.hpp"
#include "tformer/nn/activation.hpp"
#include "tformer/nn/attention.hpp"
#include "tformer/nn/moe.hpp"
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
  bool operator==(const Dims&) const = default;
};

enum class FfnKind { Dense, TopK, MoE };

// Which layers attend globally and which through a sliding window of `window` keys (a query at
// p sees keys (p − W, p], Mistral's convention). global_every = 0: every layer alike (window 0:
// all global); global_every = n: layers n−1, 2n−1, … are global, the others local (Gemma 2/3).
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
  constexpr index window_of(index layer) const noexcept {
    if (global_every > 0 && (layer + 1) % global_every == 0) return 0;
    return window;
  }
  constexpr index sinks_of(index layer) const noexcept { return window_of(layer) > 0 ? sinks : 0; }
  constexpr bool ring_of(index layer) const noexcept { return ring && window_of(layer) > 0; }
  // Whether every layer keeps a ring: sequences are then not bounded by the cache.
  constexpr bool streaming(index layers) const noexcept {
    return ring && window > 0 && (global_every == 0 || global_every > layers);
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
  { C::rope_scaling() } -> std::convertible_to<RopeScaling>;  // a function: LongRoPE holds vectors
  { C::rope_base } -> std::convertible_to<double>;
  { C::ffn } -> std::convertible_to<FfnKind>;
  { C::activation } -> std::convertible_to<Activation>;
  { C::attention } -> std::convertible_to<AttentionPattern>;
  { C::qk_norm } -> std::convertible_to<bool>;
  { C::cross_attention } -> std::convertible_to<bool>;
  { C::head } -> std::convertible_to<HeadKind>;
  { C::norm } -> std::convertible_to<NormScale>;
  { C::eps } -> std::convertible_to<float>;
  { C::pad_id } -> std::convertible_to<index>;  // −1: none; its embedding row is zero
  { C::positions } -> std::convertible_to<PositionKind>;
  { C::bias } -> std::convertible_to<BiasKind>;
};

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
  if constexpr (C::ffn == FfnKind::MoE)
    checked_size("Dims", "experts * intermediate * hidden", {d.experts, d.intermediate, d.hidden},
                 4);
  checked_size("Dims", "encoder_width * hidden", {d.encoder_width, d.hidden}, 4);
  return d;
}

namespace configs {

// The choices most decoders share; presets override what differs.
struct Base {
  static constexpr index encoder_width = 0;
  static constexpr RopeLayout rope_layout = RopeLayout::RotateHalf;
  static RopeScaling rope_scaling() { return rope_scaling::None{}; }
  static constexpr double rope_base = 10000.0;
  static constexpr FfnKind ffn = FfnKind::Dense;
  static constexpr index experts = 0, top_k = 0;  // MoE: experts and k; TopK: kept entries
  static constexpr RouterKind router = RouterKind::SoftmaxThenTopK;
  static constexpr bool renormalize = true;
  static constexpr Activation activation = {};
  static constexpr AttentionPattern attention = {};
  static constexpr bool qk_norm = false;
  static constexpr bool cross_attention = false;
  static constexpr HeadKind head = HeadKind::Own;
  static constexpr NormScale norm = NormScale::Weight;
  static constexpr float eps = 1e-5f;
  static constexpr index pad_id = -1;
  static constexpr PositionKind positions = PositionKind::Rope;
  static constexpr float position_scale = 1.0f;  // Sinusoidal: the normalised row's scale
  static constexpr BiasKind bias = BiasKind::None;
  static constexpr index t5_buckets = 32, t5_max_distance = 128;  // T5 (unidirectional)
  // > 0: a causal depthwise convolution of this kernel size over the attention block's input,
  // added to its output (seed 001's convolution + attention; nn/causal_conv.hpp).
  static constexpr index conv_kernel = 0;
  // Seed 001's rotary block before RoPE (rope/givens.hpp): this many learned Givens rotations,
  // then a learned orthogonal [D, D] matrix when rotation_matrix.
  static constexpr index givens_rotations = 0;
  static constexpr bool rotation_matrix = false;
};

// Seed 003's small configuration: Gemma-style decoder with cross-attention to 196 vision
// tokens of width 768 (projected 768 → 512 once per sequence), tied head, pad id 0.
struct TrafficVLM : Base {
  static constexpr index vocab = 500, hidden = 512, intermediate = 2048, layers = 4, heads = 8,
                         kv_heads = 2, head_dim = 64, max_positions = 128, encoder_width = 768;
  static constexpr index encoder_tokens = 196;
  static constexpr bool cross_attention = true;
  static constexpr HeadKind head = HeadKind::Tied;
  static constexpr float eps = 1e-6f;
  static constexpr index pad_id = 0;
};

// Sizes dynamic: a family, not one model.
struct Dynamic {
  static constexpr index vocab = dynamic, hidden = dynamic, intermediate = dynamic,
                         layers = dynamic, heads = dynamic, kv_heads = dynamic,
                         head_dim = dynamic, max_positions = dynamic;
};

// Llama 3 (rotate-half as Hugging Face stores it, base 500000). Llama 3.1 adds its frequency
// scaling: Llama31 below. Llama 2: Llama2 below (base 10000).
struct Llama : Base, Dynamic {
  using Base::encoder_width;
  static constexpr double rope_base = 500000.0;
  static constexpr Dims llama3_8b = {.vocab = 128256, .hidden = 4096, .intermediate = 14336,
                                     .layers = 32, .heads = 32, .kv_heads = 8, .head_dim = 128,
                                     .max_positions = 8192};
};
struct Llama31 : Llama {
  static RopeScaling rope_scaling() {
    return rope_scaling::Llama3{.factor = 8.0,
                                .low_freq_factor = 1.0,
                                .high_freq_factor = 4.0,
                                .original_max_positions = 8192};
  }
};

struct Llama2 : Llama {
  static constexpr double rope_base = 10000.0;
  static constexpr Dims llama2_7b = {.vocab = 32000, .hidden = 4096, .intermediate = 11008,
                                     .layers = 32, .heads = 32, .kv_heads = 32, .head_dim = 128,
                                     .max_positions = 4096};
};

// Qwen3: per-head RMSNorm of q and k before RoPE.
struct Qwen3 : Base, Dynamic {
  using Base::encoder_width;
  static constexpr double rope_base = 1000000.0;
  static constexpr bool qk_norm = true;
  static constexpr float eps = 1e-6f;
  static constexpr Dims qwen3_8b = {.vocab = 151936, .hidden = 4096, .intermediate = 12288,
                                    .layers = 36, .heads = 32, .kv_heads = 8, .head_dim = 128,
                                    .max_positions = 40960};
};

// Mistral 7B v0.1: sliding window of 4096 keys on every layer.
struct Mistral : Base, Dynamic {
  using Base::encoder_width;
  static constexpr AttentionPattern attention = {.window = 4096};
  static constexpr Dims mistral_7b = {.vocab = 32000, .hidden = 4096, .intermediate = 14336,
                                      .layers = 32, .heads = 32, .kv_heads = 8, .head_dim = 128,
                                      .max_positions = 32768};
};

// Mixtral 8x7B: 8 SwiGLU experts, top-2, softmax then top-k, renormalised.
struct Mixtral : Base, Dynamic {
  using Base::encoder_width;
  static constexpr double rope_base = 1000000.0;
  static constexpr FfnKind ffn = FfnKind::MoE;
  static constexpr index experts = 8, top_k = 2;
  static constexpr Dims mixtral_8x7b = {.vocab = 32000, .hidden = 4096, .intermediate = 14336,
                                        .layers = 32, .heads = 32, .kv_heads = 8,
                                        .head_dim = 128, .max_positions = 32768};
};

// Karpathy's llama2.c checkpoints (io/llama2c.hpp): interleaved RoPE, base 10000, eps 1e-5,
// sizes from the file's header, head tied or not as the header says.
struct Llama2c : Base, Dynamic {
  using Base::encoder_width;
  static constexpr RopeLayout rope_layout = RopeLayout::Interleaved;
  static constexpr HeadKind head = HeadKind::AsLoaded;
};

}  // namespace configs

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
