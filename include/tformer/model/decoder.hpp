// Decoder<Config>: token embedding, the layers of decoder_layer.hpp, final RMSNorm and the LM
// head over a KV-cache of several sequences, plus generation and classification.
//
//   tformer::OwnedWeights<configs::TrafficVLM> weights({}, /*seed=*/1);
//   tformer::Decoder<configs::TrafficVLM> dec(weights.view(), {}, {.sequences = 2});
//   // or with a checkpoint's parameters: Decoder<configs::Llama> dec(w, dims, params, options)
//   dec.set_encoder(0, vision);                       // cross-attention input, projected once
//   dec.forward(0, prompt, logits);                   // prefill: logits of the last token
//   dec.forward(0, next, logits);                     // decode: one token, nothing recomputed
//
// A step may hold the tokens of several sequences of different lengths (forward(batch, …)):
// their rows share every projection (one GEMM), and each attends over its own cache. Prefill
// and decode are the same call with different token counts. Sizes are fixed at construction;
// a step allocates nothing (Eigen's GEMM may for large prefill steps, see nn/linear.hpp).
//
// Every public call checks its inputs before changing any state: a rejected call leaves the
// caches as they were.
//
// Threads: a Decoder's calls share its workspace and caches, so it takes one call at a time.
// forward, generate, classify, reset, truncate and set_encoder, made while another thread's
// call on the same Decoder runs, are refused with an Error (nothing is changed); the const
// accessors (length, caches, bytes) are not synchronised with them. Within a call, the executor
// spreads the work over its threads. Decoders over the same weights may run concurrently.
//
// Local layers of a pattern with `ring` keep their keys in a ring cache (the sinks and the last
// window + max_tokens − 1 positions); when every layer is local (AttentionPattern::streaming),
// a sequence may grow past `capacity` at constant memory: RoPE rows past the table are computed
// per step, and with InCache sinks every distance stays within sinks + window.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tformer/cache/kv_cache.hpp"
#include "tformer/core/error.hpp"
#include "tformer/core/parallel.hpp"
#include "tformer/model/config.hpp"
#include "tformer/model/decoder_layer.hpp"
#include "tformer/model/sampling.hpp"
#include "tformer/model/trace.hpp"
#include "tformer/model/weights.hpp"
#include "tformer/nn/position_bias.hpp"
#include "tformer/nn/activation.hpp"
#include "tformer/nn/swiglu.hpp"
#include "tformer/rope/sinusoidal.hpp"
#include "tformer/rope/table.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

struct DecoderOptions {
  index sequences = 1;       // sequences held at once (cache slots)
  index capacity = 0;        // positions per sequence (streaming: RoPE table rows only);
                             // 0: min(max_positions, 4096) (Llama 3.1's 131072 positions
                             // would take 16 GiB of f32 cache per sequence at 8B)
  index max_tokens = 0;      // rows per forward step over all sequences; 0: min(capacity, 512)
  index encoder_tokens = 0;  // cross-attention inputs per sequence; 0: Config::encoder_tokens
  KVType kv_type =
      KVType::f32;  // what the KV caches store (f16, bf16: half the bytes; q8 a quarter)
};

// The tokens one sequence contributes to a step.
struct SequenceTokens {
  index seq = 0;
  std::span<const std::int32_t> tokens;
};

enum class LogitsFor { Last, All };  // one row per sequence, or one per token

namespace decoder_detail {

// The thread running a call on a Decoder, or none: a second thread's call is refused, a call
// nested in the same thread's call (generate → forward) is not. Moving a Decoder moves no call.
class CallOwner {
 public:
  CallOwner() = default;
  CallOwner(CallOwner&&) noexcept {}
  CallOwner& operator=(CallOwner&&) noexcept { return *this; }

  class Scope {
   public:
    Scope(CallOwner& o, const char* where) : owner_(o) {
      std::thread::id none{};
      if (o.id_.compare_exchange_strong(none, std::this_thread::get_id(),
                                        std::memory_order_acquire)) {
        outer_ = true;
      } else if (none != std::this_thread::get_id()) [[unlikely]] {
        detail::fail_check(where, "calls on this Decoder",
                           "one at a time (another thread's call is running)", "two at once");
      }
    }
    ~Scope() {
      if (outer_) owner_.id_.store(std::thread::id{}, std::memory_order_release);
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    CallOwner& owner_;
    bool outer_ = false;
  };

 private:
  std::atomic<std::thread::id> id_{};
};

}  // namespace decoder_detail

template <DecoderConfig C, Executor E = SerialExecutor>
class Decoder {
  // Numbers that were Config members before are ModelParams now: a Config that still sets
  // them would be silently ignored, so it does not compile.
  static_assert(!requires { C::rope_base; } && !requires { C::rope_scaling(); } &&
                    !requires { C::eps; } && !requires { C::attention; } &&
                    !requires { C::activation; } && !requires { C::qk_norm; } &&
                    !requires { C::router; } && !requires { C::renormalize; } &&
                    !requires { C::pad_id; } && !requires { C::position_scale; } &&
                    !requires { C::t5_buckets; } && !requires { C::t5_max_distance; },
                "rope_base, rope_scaling, eps, attention, activation, qk_norm, router, "
                "renormalize, pad_id, position_scale and t5_* are ModelParams members now: set "
                "them in the Config's `static ModelParams params()` or pass a ModelParams");

 public:
  using Config = C;

  // A model with the Config's own parameters (C::params(), or ModelParams' defaults).
  Decoder(const ModelWeights& weights, const Dims& dims = {}, const DecoderOptions& options = {},
          E executor = {})
      : Decoder(weights, dims, default_params<C>(), options, std::forward<E>(executor)) {}
  // A model with the given parameters (a checkpoint's, or a preset's). A template so that
  // Decoder(w, dims, {}) stays the first constructor's (`{}` deduces no P): pass the parameters
  // as a ModelParams value (ModelParams{.rope_base = …}, presets::llama31()).
  template <std::same_as<ModelParams> P>
  Decoder(const ModelWeights& weights, const Dims& dims, const P& params,
          const DecoderOptions& options = {}, E executor = {})
      : d_(resolve_dims<C>(dims)),
        p_(checked_params(params, d_)),
        options_(resolved(options, d_, p_)),
        weights_(checked_weights(weights, d_, p_)),
        exec_(std::forward<E>(executor)),
        rope_(rope_config(p_.rope_base, p_.rope_scaling), 0),
        ws_(d_, p_, options_.max_tokens, C::cross_attention ? options_.encoder_tokens : 0,
            options_.sequences, std::max(options_.capacity, p_.attention.window),
            exec_.concurrency()),
        last_(static_cast<std::size_t>(options_.sequences * d_.hidden)),
        logits_(static_cast<std::size_t>(options_.sequences * d_.vocab)),
        sampler_ws_(d_.vocab) {
    if constexpr (C::cross_attention)
      cross_.emplace(KVCacheConfig{.layers = d_.layers,
                                   .kv_heads = d_.kv_heads,
                                   .head_dim = d_.head_dim,
                                   .capacity = options_.encoder_tokens,
                                   .sequences = options_.sequences,
                                   .type = options_.kv_type});
    if constexpr (C::ffn == FfnKind::TopK) {
      down_t_.reserve(weights_.layers.size());
      for (const LayerWeights& l : weights_.layers) {
        if (l.ffn_down_t.rows() == 0) down_t_.emplace_back(l.ffn.down);  // built once, here
        down_t_views_.push_back(l.ffn_down_t.rows() > 0 ? l.ffn_down_t : down_t_.back().view());
      }
    }
    index full_layers = 0, ring_layers = 0;
    for (index l = 0; l < d_.layers; ++l)
      cache_layer_.push_back(p_.attention.ring_of(l) ? ring_layers++ : full_layers++);
    if (full_layers > 0)
      full_.emplace(KVCacheConfig{.layers = full_layers,
                                  .kv_heads = d_.kv_heads,
                                  .head_dim = d_.head_dim,
                                  .capacity = options_.capacity,
                                  .sequences = options_.sequences,
                                  .type = options_.kv_type});
    if (ring_layers > 0)
      ring_.emplace(KVCacheConfig{.layers = ring_layers,
                                  .kv_heads = d_.kv_heads,
                                  .head_dim = d_.head_dim,
                                  .sequences = options_.sequences,
                                  .window = p_.attention.window,
                                  .max_step = options_.max_tokens,
                                  .sinks = p_.attention.sinks,
                                  .type = options_.kv_type});
    if (p_.local_rope_base > 0 && C::positions == PositionKind::Rope)
      for (index l = 0; l < d_.layers; ++l)
        if (p_.attention.window_of(l) > 0) {  // Gemma 3: local layers' own base, unscaled
          local_rope_.emplace(rope_config(p_.local_rope_base, rope_scaling::None{}), 0);
          break;
        }
    if (const auto* ntk = std::get_if<rope_scaling::DynamicNtk>(&p_.rope_scaling)) {
      // The scaled base grows with the length: check it at the longest a sequence can get, so
      // that no step fails half way.
      const int longest = streaming() ? std::numeric_limits<std::int32_t>::max() : int(options_.capacity);
      compute_rope_frequencies(*ntk, rope_.rotary_dim(), p_.rope_base, rope_.max_positions(), longest);
    }
    if (ws_.sink_queries()) sink_positions_.resize(static_cast<std::size_t>(options_.max_tokens));
    segments_.reserve(static_cast<std::size_t>(options_.sequences));
    if constexpr (C::bias == BiasKind::ALiBi) alibi_ = alibi_slopes(d_.heads);
    if constexpr (C::bias == BiasKind::T5)
      t5_.emplace(weights_.relative_bias, p_.t5_max_distance, false);
    if constexpr (C::givens_rotations > 0 || C::rotation_matrix) {
      rotary_.reserve(weights_.layers.size());
      for (const LayerWeights& l : weights_.layers) rotary_.emplace_back(d_.head_dim, l.givens, l.rotation);
    }
    if constexpr (C::conv_kernel > 0) {
      conv_state_ = AlignedBuffer<float>(static_cast<std::size_t>(
          options_.sequences * d_.layers * (C::conv_kernel - 1) * d_.hidden));
      std::fill(conv_state_.data(), conv_state_.data() + conv_state_.size(), 0.0f);
    }
  }

  const Dims& dims() const noexcept { return d_; }
  const ModelParams& params() const noexcept { return p_; }
  const DecoderOptions& options() const noexcept { return options_; }
  // The cache of global layers (capacity positions), if any layer is global.
  const KVCache* full_cache() const noexcept { return full_ ? &*full_ : nullptr; }
  // The ring cache of local layers, if the pattern has `ring`.
  const KVCache* ring_cache() const noexcept { return ring_ ? &*ring_ : nullptr; }
  index length(index seq) const { return full_ ? full_->length(seq) : ring_->length(seq); }
  // Whether sequences may grow past `capacity` (every layer keeps a ring).
  bool streaming() const noexcept { return streaming(d_, p_); }
  static bool streaming(const Dims& d, const ModelParams& p) noexcept {
    return p.attention.streaming(d.layers) && C::positions != PositionKind::Sinusoidal;
  }
  // Bytes the decoder allocated: caches and workspaces (the weights are the caller's).
  std::size_t bytes() const noexcept {
    std::size_t n = (full_ ? full_->bytes() : 0) + (ring_ ? ring_->bytes() : 0) + ws_.bytes() +
                    last_.bytes() + logits_.bytes() + conv_state_.bytes();
    if (cross_) n += cross_->bytes();
    return n;
  }

  // Forgets sequence `seq`: its tokens (cache and convolution state) and its encoder input
  // (set_encoder again before the next forward). To keep the encoder input (a new question about
  // the same image), truncate(seq, 0) instead.
  void reset(index seq) {
    const decoder_detail::CallOwner::Scope one(call_, "Decoder::reset");
    check_index("Decoder::reset", "seq", seq, options_.sequences);
    forget_tokens(seq);
    if (cross_) cross_->reset(seq);
  }
  // Rolls sequence `seq` back to its first `length` positions (rejected speculative tokens);
  // length 0 forgets every token but keeps the encoder input. With a convolution
  // (conv_kernel > 1) only length 0 can roll back: its state keeps the last k − 1 inputs, not the
  // history. A ring rolls back at most max_tokens past its last write.
  void truncate(index seq, index length) {
    const decoder_detail::CallOwner::Scope one(call_, "Decoder::truncate");
    if constexpr (C::conv_kernel > 1)
      if (length != 0 && length != this->length(seq)) [[unlikely]]
        detail::fail_check("Decoder::truncate", "length",
                           "0 or the current length (a convolution's state cannot roll back)",
                           length);
    if (length == 0) {
      check_index("Decoder::truncate", "seq", seq, options_.sequences);
      return forget_tokens(seq);
    }
    if (ring_) ring_->truncate(seq, length);  // checks first: the full cache accepts whatever it does
    if (full_) full_->truncate(seq, length);
  }

  // Cross-attention input of sequence `seq`: encoder states [S, encoder_width] (S <= the
  // encoder_tokens option), projected to the hidden width once and then to every layer's K, V,
  // which stay cached for the sequence's steps. `valid` (S flags, 0 = padding) masks tokens.
  // Every state must be finite (checked: one NaN would make every logit NaN).
  void set_encoder(index seq, MatrixView<const float> states,
                   std::span<const std::uint8_t> valid = {})
    requires(C::cross_attention)
  {
    const decoder_detail::CallOwner::Scope one(call_, "Decoder::set_encoder");
    constexpr const char* where = "Decoder::set_encoder";
    check_index(where, "seq", seq, options_.sequences);
    check_view(where, "states", states);
    check_eq(where, "states.cols (= encoder_width)", d_.encoder_width, states.cols());
    check(states.rows() >= 1 && states.rows() <= options_.encoder_tokens, where, "states.rows",
          "in [1, encoder_tokens]", states.rows());
    if (!valid.empty()) check_eq(where, "valid size (= states.rows)", states.rows(), index(valid.size()));
    for (index r = 0; r < states.rows(); ++r)  // a NaN here would make every logit NaN
      for (index c = 0; c < states.cols(); ++c)
        if (!std::isfinite(states.row(r)[c])) [[unlikely]]
          detail::fail_check(where,
                             "states[" + std::to_string(r) + "][" + std::to_string(c) + "]",
                             "a finite number", states.row(r)[c]);
    const index S = states.rows();
    MatrixView<const float> projected = states;
    if (weights_.encoder_proj.rows() > 0) {
      linear_kernels::project(states, weights_.encoder_proj, weights_.encoder_proj_bias, ws_.encoder(S));
      projected = ws_.encoder(S);
    }
    cross_->reset(seq);
    const index kvd = d_.kv_heads * d_.head_dim;
    for (index l = 0; l < d_.layers; ++l) {
      const LayerWeights& w = weights_.layers[std::size_t(l)];
      parallel_project_all(exec_, projected,
                           std::array{Projection{w.cross_wk, ws_.encoder_k(S)},
                                      Projection{w.cross_wv, ws_.encoder_v(S)}});
      cross_->set(l, seq, {ws_.encoder_k(S).data(), S, d_.kv_heads, d_.head_dim, kvd},
                  {ws_.encoder_v(S).data(), S, d_.kv_heads, d_.head_dim, kvd}, valid);
    }
  }

  // One step over the tokens of several sequences (each at most once). logits: [batch, vocab]
  // for LogitsFor::Last (the last token of each entry, in batch order) or [Σ tokens, vocab]
  // for LogitsFor::All (every token, in batch order).
  void forward(std::span<const SequenceTokens> batch, MatrixView<float> logits,
               LogitsFor which = LogitsFor::Last) {
    const decoder_detail::CallOwner::Scope one(call_, "Decoder::forward");
    const index rows = check_step("Decoder::forward", batch, logits, which);
    run(batch, rows, logits, which);
  }
  void forward(index seq, std::span<const std::int32_t> tokens, MatrixView<float> logits,
               LogitsFor which = LogitsFor::Last) {
    const SequenceTokens one{seq, tokens};
    forward(std::span<const SequenceTokens>(&one, 1), logits, which);
  }
  // The same step, recording into `trace` what it asks for (model/trace.hpp): the same logits,
  // bit for bit, plus the residual stream per layer and the attention weights of chosen rows.
  void forward(std::span<const SequenceTokens> batch, MatrixView<float> logits, LogitsFor which,
               StepTrace& trace) {
    constexpr const char* where = "Decoder::forward";
    const decoder_detail::CallOwner::Scope one(call_, where);
    const index rows = check_step(where, batch, logits, which);
    for (index r : trace.attention_rows) check_index(where, "trace.attention_rows[i]", r, rows);
    run(batch, rows, logits, which, &trace);
  }
  void forward(index seq, std::span<const std::int32_t> tokens, MatrixView<float> logits,
               LogitsFor which, StepTrace& trace) {
    const SequenceTokens one{seq, tokens};
    forward(std::span<const SequenceTokens>(&one, 1), logits, which, trace);
  }

  // Feeds `prompt` to sequence `seq` (in steps of max_tokens), then samples up to
  // max_new_tokens tokens into `out`, feeding each back; stops after `stop_token` (if >= 0).
  // Returns the number of tokens written. The sampler's penalties see the prompt and the tokens
  // this call generated. With `logprobs` (empty, or >= max_new_tokens values), logprobs[i] is
  // the model's log-probability of out[i] (see Sampled). The last sampled token is not fed (its
  // logits are not needed): a caller continuing the sequence passes it as the next prompt. Bad
  // arguments are refused before anything runs; a NaN or +inf logit (non-finite data from the
  // model) is an Error raised after the steps before it, which stay in the cache (length(seq)).
  index generate(index seq, std::span<const std::int32_t> prompt, index max_new_tokens,
                 const Sampler& sampler, Rng& rng, std::span<std::int32_t> out,
                 std::int32_t stop_token = -1, std::span<float> logprobs = {}) {
    constexpr const char* where = "Decoder::generate";
    const decoder_detail::CallOwner::Scope one(call_, where);
    check(max_new_tokens >= 0, where, "max_new_tokens", ">= 0", max_new_tokens);
    check(index(out.size()) >= max_new_tokens, where, "out size", ">= max_new_tokens", out.size());
    if (!logprobs.empty() && index(logprobs.size()) < max_new_tokens) [[unlikely]]
      detail::fail_check(where, "logprobs size", "0 or >= max_new_tokens (" +
                         std::to_string(max_new_tokens) + ")", logprobs.size());
    check_sampler(sampler, d_.vocab);
    check_feed(where, seq, prompt, std::max<index>(max_new_tokens - 1, 0));
    const MatrixView<float> logits(logits_.data(), 1, d_.vocab);
    prefill(seq, prompt, logits);
    const std::span<const float> row(logits_.data(), std::size_t(d_.vocab));
    for (index i = 0; i < max_new_tokens; ++i) {
      const sampling_detail::History history{prompt, out.first(std::size_t(i))};
      const Sampled s =
          sampling_detail::run(row, sampler, rng, sampler_ws_, history, !logprobs.empty());
      const std::int32_t token = s.token;
      if (!logprobs.empty()) logprobs[std::size_t(i)] = s.logprob;
      out[std::size_t(i)] = token;
      if (token == stop_token) return i + 1;
      if (i + 1 < max_new_tokens) forward(seq, std::span<const std::int32_t>(&token, 1), logits);
    }
    return max_new_tokens;
  }

  // Classification at the last position (seed 003's [YES]/[NO]): feeds `tokens` to `seq`, then
  // out_logits[i] = logit of ids[i] and probs = softmax over those logits only.
  void classify(index seq, std::span<const std::int32_t> tokens, std::span<const std::int32_t> ids,
                std::span<float> out_logits, std::span<float> probs) {
    constexpr const char* where = "Decoder::classify";
    const decoder_detail::CallOwner::Scope one(call_, where);
    check(!ids.empty(), where, "ids", "at least one token id", ids.size());
    for (std::int32_t id : ids) check_index(where, "ids[i]", id, d_.vocab);
    check_eq(where, "out_logits size (= ids)", ids.size(), out_logits.size());
    check_eq(where, "probs size (= ids)", ids.size(), probs.size());
    check_feed(where, seq, tokens, 0);
    const MatrixView<float> logits(logits_.data(), 1, d_.vocab);
    prefill(seq, tokens, logits);
    choose({logits_.data(), std::size_t(d_.vocab)}, ids, out_logits, probs);
  }

 private:
  // The table of `base` and `scaling` for this decoder: capacity rows (it starts short, and
  // LongRoPE's factor, when not given, is the model's max_positions / L0, as Hugging Face's).
  RopeConfig rope_config(double base, RopeScaling scaling) const {
    if (auto* lr = std::get_if<rope_scaling::LongRope>(&scaling); lr && !lr->factor &&
                                                                  lr->original_max_positions > 0)
      lr->factor = double(d_.max_positions) / lr->original_max_positions;
    return {.rotary_dim = int(rotary_dim_of(p_, d_)),
            .max_positions = int(options_.capacity),
            .base = base,
            .scaling = std::move(scaling)};
  }

  static ModelParams checked_params(const ModelParams& p, const Dims& d) {
    check_params<C>("Decoder", p, d);
    return p;
  }
  static DecoderOptions resolved(DecoderOptions o, const Dims& d, const ModelParams& p) {
    constexpr const char* where = "Decoder";
    check(o.sequences >= 1, where, "options.sequences", ">= 1", o.sequences);
    check(valid_kv_type(o.kv_type), where, "options.kv_type", kv_types_expected,
          static_cast<int>(o.kv_type));
    if (o.capacity == 0) o.capacity = std::min<index>(d.max_positions, 4096);
    if (o.capacity < 1 || o.capacity > d.max_positions) [[unlikely]]
      detail::fail_check(where, "options.capacity",
                         "in [1, " + std::to_string(d.max_positions) + "] (max_positions)",
                         o.capacity);
    if (o.max_tokens == 0)  // min(capacity · sequences, 512), without overflow
      o.max_tokens = o.capacity >= 512 || o.sequences >= 512
                         ? 512
                         : std::min<index>(o.capacity * o.sequences, 512);
    check(o.max_tokens >= 1, where, "options.max_tokens", ">= 1", o.max_tokens);
    const AttentionPattern& a = p.attention;
    if (a.sinks > 0)  // the sinks' positions lie in the RoPE table
      check(o.capacity >= a.sinks + a.window, where, "options.capacity",
            ">= sinks + window (" + std::to_string(a.sinks + a.window) + ")", o.capacity);
    if constexpr (C::cross_attention) {
      if (o.encoder_tokens == 0) {
        if constexpr (requires { C::encoder_tokens; }) o.encoder_tokens = C::encoder_tokens;
      }
      check(o.encoder_tokens >= 1, where, "options.encoder_tokens",
            ">= 1 (the Config has cross-attention)", o.encoder_tokens);
      checked_size(where, "options.encoder_tokens * hidden", {o.encoder_tokens, d.hidden}, 4);
      checked_size(where, "options.encoder_tokens * kv_heads * head_dim",
                   {o.encoder_tokens, d.kv_heads, d.head_dim}, 4);
    }
    // Every workspace and cache size, before anything is allocated.
    checked_size(where, "options.max_tokens * hidden", {o.max_tokens, d.hidden}, 4);
    checked_size(where, "options.max_tokens * heads * head_dim",
                 {o.max_tokens, d.heads, d.head_dim}, 4);
    checked_size(where, "options.max_tokens * intermediate", {o.max_tokens, d.intermediate}, 4);
    checked_size(where, "options.max_tokens * shared_intermediate",
                 {o.max_tokens, d.shared_intermediate}, 4);
    checked_size(where, "options.sequences * vocab", {o.sequences, d.vocab}, 4);
    checked_size(where, "options.sequences * layers * capacity * kv_heads * head_dim",
                 {o.sequences, d.layers, o.capacity, d.kv_heads, d.head_dim}, 4);
    if constexpr (C::conv_kernel > 0)
      checked_size(where, "options.sequences * layers * conv_kernel * hidden",
                   {o.sequences, d.layers, C::conv_kernel, d.hidden}, 4);
    return o;
  }
  static const ModelWeights& checked_weights(const ModelWeights& w, const Dims& d,
                                             const ModelParams& p) {
    validate_weights<C>(d, w, p);
    return w;
  }

  // Checks a step; returns its rows (Σ tokens).
  index check_step(const char* where, std::span<const SequenceTokens> batch,
                   MatrixView<float> logits, LogitsFor which) const {
    check(!batch.empty() && index(batch.size()) <= options_.sequences, where, "batch size",
          "in [1, sequences]", batch.size());
    index rows = 0;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const SequenceTokens& b = batch[i];
      check_feed(where, b.seq, b.tokens, 0);
      for (std::size_t j = 0; j < i; ++j)
        check(batch[j].seq != b.seq, where, "batch[i].seq", "each sequence once per step", b.seq);
      rows += index(b.tokens.size());
    }
    if (rows > options_.max_tokens) [[unlikely]]
      detail::fail_check(where, "tokens in the step",
                         "<= max_tokens (" + std::to_string(options_.max_tokens) + ")", rows);
    check_shape(where, "logits", logits, which == LogitsFor::Last ? index(batch.size()) : rows,
                d_.vocab);
    return rows;
  }

  // Checks, before anything is fed, that `tokens` and then `more` positions fit sequence `seq`
  // and that every token id is valid: a multi-step feed never stops half way.
  void check_feed(const char* where, index seq, std::span<const std::int32_t> tokens,
                  index more) const {
    check_index(where, "seq", seq, options_.sequences);
    check(!tokens.empty(), where, "tokens", "at least one token", tokens.size());
    for (std::int32_t t : tokens) check_index(where, "token id", t, d_.vocab);
    const index need = length(seq) + index(tokens.size()) + more;
    const index limit =
        streaming() ? index(std::numeric_limits<std::int32_t>::max()) : options_.capacity;
    if (need > limit) [[unlikely]]
      detail::fail_check(where, "sequence length after the tokens (+ max_new_tokens − 1)",
                         streaming() ? "<= 2^31 − 1 (positions are 32-bit)"
                                       : "<= capacity (" + std::to_string(limit) + ")",
                         need);
    if constexpr (C::cross_attention)
      check(cross_->tokens(seq) > 0, where, "encoder input", "set_encoder(seq, …) first", seq);
  }

  // Feeds checked tokens (check_feed) to one sequence in steps of max_tokens; logits of the last.
  // The prompt is one forward pass for length-dependent RoPE scalings: every step rotates with
  // the frequencies of its full length, as Hugging Face's generate does.
  void prefill(index seq, std::span<const std::int32_t> tokens, MatrixView<float> logits) {
    const index end = length(seq) + index(tokens.size());
    for (std::size_t done = 0; done < tokens.size();) {
      const std::size_t n = std::min<std::size_t>(tokens.size() - done, std::size_t(options_.max_tokens));
      const SequenceTokens step{seq, tokens.subspan(done, n)};
      const std::span<const SequenceTokens> batch(&step, 1);
      run(batch, check_step("Decoder::forward", batch, logits, LogitsFor::Last), logits,
          LogitsFor::Last, nullptr, end);
      done += n;
    }
  }

  // pass_end > 0: the RoPE length of a one-sequence step (prefill); else each segment's end.
  void run(std::span<const SequenceTokens> batch, index rows, MatrixView<float> logits,
           LogitsFor which, StepTrace* trace = nullptr, index pass_end = 0) {
    segments_.clear();
    index row = 0;
    for (const SequenceTokens& b : batch) {
      const index start = length(b.seq), tokens = index(b.tokens.size());
      segments_.push_back({b.seq, row, tokens, start, pass_end > 0 ? pass_end : start + tokens});
      for (std::int32_t t : b.tokens)  // embedding rows, decoded from their storage type
        convert_kernels::decode_range(weights_.embedding, t, 0, d_.hidden, ws_.x(rows).row(row++));
    }
    if (p_.embed_scale != 1.0f)  // Gemma: × √hidden
      for (index r = 0; r < rows; ++r)
        for (float& v : std::span<float>(ws_.x(rows).row(r), std::size_t(d_.hidden))) v *= p_.embed_scale;
    if constexpr (C::positions == PositionKind::Sinusoidal)
      for (const StepSegment& s : segments_)
        add_position_embeddings(ws_.x(rows).row_slice(s.row, s.tokens), weights_.position_embedding,
                                Positions::offset(static_cast<std::int32_t>(s.start)),
                                p_.position_scale);
    prepare_positions(rows);
    if (trace != nullptr) start_trace(*trace, rows);
    decoder_kernels::norm_tokens<C::norm>(exec_, ws_.x(rows), weights_.layers[0].attn_norm, p_.eps,
                                          ws_.xn(rows));
    for (index l = 0; l < d_.layers; ++l) {
      const LayerWeights& w = weights_.layers[std::size_t(l)];
      const bool last = l + 1 == d_.layers;
      const MatrixView<const float> down_t =
          C::ffn == FfnKind::TopK ? down_t_views_[std::size_t(l)] : MatrixView<const float>{};
      KVCache& cache = p_.attention.ring_of(l) ? *ring_ : *full_;
      const LayerInputs in{d_,
                           p_,
                           segments_,
                           rows,
                           rope_of(l),
                           uses_local_rope(l) ? ws_.local_rope_rows(rows) : ws_.rope_rows(rows),
                           cache,
                           cache_layer_[std::size_t(l)],
                           sink_positions_now_,
                           cross_ ? &*cross_ : nullptr,
                           down_t,
                           last ? weights_.final_norm : weights_.layers[std::size_t(l + 1)].attn_norm,
                           alibi_,
                           t5_ ? &*t5_ : nullptr,
                           conv_state(0, l).data(),
                           d_.layers * conv_state(0, 0).rows() * d_.hidden,
                           rotary_.empty() ? nullptr : &rotary_[std::size_t(l)],
                           trace};
      decoder_layer<C>(w, l, in, ws_, exec_);
      if (trace != nullptr && trace->hidden_states) {
        record(trace->hidden[std::size_t(l + 1)], ws_.x(rows));
        if (last) record(trace->final_normed, ws_.xn(rows));
      }
    }
    for (const StepSegment& s : segments_) {
      if (full_) full_->advance(s.seq, s.tokens);
      if (ring_) ring_->advance(s.seq, s.tokens);
    }

    const MatrixView<float> xn = ws_.xn(rows);
    if (which == LogitsFor::All) {
      parallel_project(exec_, xn, weights_.head(), logits);
      softcap_logits(logits);
      return;
    }
    const MatrixView<float> last(last_.data(), index(segments_.size()), d_.hidden);
    for (std::size_t i = 0; i < segments_.size(); ++i) {
      const float* r = xn.row(segments_[i].row + segments_[i].tokens - 1);
      std::copy(r, r + d_.hidden, last.row(index(i)));
    }
    parallel_project(exec_, last, weights_.head(), logits);
    softcap_logits(logits);
  }

  // Sizes what `trace` asks for (and empties the rest) and records the embeddings.
  void start_trace(StepTrace& trace, index rows) {
    trace.hidden.assign(trace.hidden_states ? std::size_t(d_.layers + 1) : 0, TraceMatrix{});
    trace.final_normed = {};
    if (trace.hidden_states) record(trace.hidden[0], ws_.x(rows));
    const std::vector<TraceMatrix> per_row(trace.attention_rows.size());
    const std::size_t layers = trace.attention_rows.empty() ? 0 : std::size_t(d_.layers);
    trace.self_attention.assign(layers, per_row);
    trace.cross_attention.assign(C::cross_attention ? layers : 0, per_row);
  }
  static void record(TraceMatrix& into, MatrixView<const float> m) {
    into.resize(m.rows(), m.cols());
    for (index r = 0; r < m.rows(); ++r)
      std::copy(m.row(r), m.row(r) + m.cols(), into.values.begin() + r * m.cols());
  }

  // Gemma 2's final soft-cap: z → c·tanh(z/c).
  void softcap_logits(MatrixView<float> logits) const {
    const float c = p_.final_softcap;
    if (c <= 0.0f) return;
    for (index r = 0; r < logits.rows(); ++r) activation_kernels::soft_cap(logits.row(r), logits.cols(), c);
  }

  // Layer l's RoPE table: a sliding layer's own (local_rope_base), or the model's. (A layer
  // the pattern calls local without a window attends globally and rotates as global ones.)
  bool uses_local_rope(index l) const noexcept {
    return local_rope_ && p_.attention.window_of(l) > 0;
  }
  const RopeTable& rope_of(index l) const noexcept {
    return uses_local_rope(l) ? *local_rope_ : rope_;
  }

  // What the step's positions need besides the tables: RoPE rows they do not hold (positions
  // past them, another length's frequencies: rows_in_table), and the positions sinks are scored
  // from (InCache), once any query's window has left its sinks.
  void prepare_positions(index rows) {
    if constexpr (C::positions == PositionKind::Rope) {
      const auto compute = [&](RopeTable& table, MatrixView<float> out) {
        for (const StepSegment& s : segments_)
          if (!rows_in_table(table, s))
            table.compute_rows(Positions::offset(static_cast<std::int32_t>(s.start)), s.tokens,
                               static_cast<int>(s.rope_length), out.row_slice(s.row, s.tokens));
      };
      bool model_table = !local_rope_;
      for (index l = 0; l < d_.layers && !model_table; ++l) model_table = !uses_local_rope(l);
      if (model_table) compute(rope_, ws_.rope_rows(rows));
      if (local_rope_) compute(*local_rope_, ws_.local_rope_rows(rows));
    }
    sink_positions_now_ = {};
    if (ws_.sink_queries()) {
      const index cap = p_.attention.sinks + p_.attention.window - 1;
      bool needed = false;
      for (const StepSegment& s : segments_) {
        needed = needed || s.start + s.tokens - 1 > cap;
        for (index t = 0; t < s.tokens; ++t)
          sink_positions_[std::size_t(s.row + t)] = std::int32_t(std::min(s.start + t, cap));
      }
      if (needed) sink_positions_now_ = std::span<const std::int32_t>(sink_positions_.data(), std::size_t(rows));
    }
  }

  // Empties sequence `seq`'s caches and zeroes its convolution state (not its encoder input).
  void forget_tokens(index seq) {
    if (full_) full_->reset(seq);
    if (ring_) ring_->reset(seq);
    if constexpr (C::conv_kernel > 0)
      for (index l = 0; l < d_.layers; ++l) {
        const MatrixView<float> s = conv_state(seq, l);
        for (index r = 0; r < s.rows(); ++r) std::fill(s.row(r), s.row(r) + s.cols(), 0.0f);
      }
  }
  MatrixView<float> conv_state(index seq, index layer) noexcept {
    const index k1 = std::max<index>(C::conv_kernel - 1, 0);
    return {conv_state_.data() + (seq * d_.layers + layer) * k1 * d_.hidden, k1, d_.hidden};
  }

  Dims d_;
  ModelParams p_;
  DecoderOptions options_;
  ModelWeights weights_;  // views
  E exec_;
  RopeTable rope_;
  std::optional<RopeTable> local_rope_;  // local layers' own (ModelParams::local_rope_base)
  std::optional<KVCache> full_;  // global layers' keys and values
  std::optional<KVCache> ring_;  // local layers' with AttentionPattern::ring
  std::vector<index> cache_layer_;  // per layer: its index in its cache (ring_of: the ring)
  std::vector<std::int32_t> sink_positions_;     // sink_queries: per step row
  std::span<const std::int32_t> sink_positions_now_;  // this step's, or empty
  std::optional<CrossKVCache> cross_;
  DecoderWorkspace<C> ws_;
  AlignedBuffer<float> last_, logits_;
  SamplerWorkspace sampler_ws_;
  decoder_detail::CallOwner call_;  // one call at a time
  std::vector<TransposedWeights> down_t_;                 // TopK: transposes built here
  std::vector<MatrixView<const float>> down_t_views_;    // TopK: each layer's down transposed
  std::vector<StepSegment> segments_;
  std::vector<float> alibi_;      // ALiBi slopes
  std::optional<T5Bias> t5_;      // T5: the table with its buckets per distance
  AlignedBuffer<float> conv_state_;  // conv: [sequences][layers][k − 1][H]
  std::vector<RotaryBlock> rotary_;  // rotary block: one per layer
};

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
