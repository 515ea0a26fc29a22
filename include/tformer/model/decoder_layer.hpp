// One pre-norm decoder layer over the rows of a step (the tokens of one or more sequences,
// concatenated), and the scratch it uses:
//
//   x += attn(norm(x))            Q, K, V projections, qk-norm, learned rotations (rotary
//                                 block), RoPE, KV-cache append, GQA (local layers: window,
//                                 attention sinks, ring cache)
//                                 (with the Config's ALiBi or T5 bias on self-attention, and
//                                 its causal depthwise convolution of norm(x) added)
//   x += cross(norm(x), encoder)  when the Config has cross-attention (K, V cached per sequence)
//   x += ffn(norm(x))             dense SwiGLU, top-k SwiGLU or MoE (+ its shared expert)
//   (post_norms, Gemma 2: x += post_norm(attn(norm(x))) and x += post_norm(ffn(norm(x))))
//
// Each residual add is fused with the next block's RMSNorm (rmsnorm_residual), so on entry
// `xn` already holds attn_norm(x) and on exit it holds `next_norm`(x): the next layer's
// attn_norm, or the final norm after the last layer.
//
// Work is split over the executor by output rows (projections, every FFN and MoE expert), by
// (sequence, KV head, block of 64 queries) tasks (prefill attention), by KV heads × runs of
// keys (decode attention, split-K), and by runs of 16 tokens (norms over the step's rows; RoPE
// and cache writes over each segment's tokens; for_token_runs: fewer than 32 rows or tokens run
// on the calling thread). MoE routing, the top-k FFN's selection and learned rotations run on
// the calling thread. Every split that can change a result depends on the sizes alone, never on
// the number of threads (per-token work gives the same bits however it is split). A traced step
// (LayerInputs::trace) also computes the chosen rows' weights on the slow path, on the calling
// thread. Preconditions (checked by Decoder): shapes agree with the Dims, every segment fits its
// cache, cross-attention inputs are set.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

#include "tformer/cache/kv_cache.hpp"
#include "tformer/core/parallel.hpp"
#include "tformer/model/config.hpp"
#include "tformer/model/trace.hpp"
#include "tformer/model/weights.hpp"
#include "tformer/nn/activation.hpp"
#include "tformer/nn/attention.hpp"
#include "tformer/nn/causal_conv.hpp"
#include "tformer/nn/linear.hpp"
#include "tformer/nn/moe.hpp"
#include "tformer/nn/position_bias.hpp"
#include "tformer/nn/rmsnorm.hpp"
#include "tformer/nn/swiglu.hpp"
#include "tformer/rope/apply.hpp"
#include "tformer/rope/givens.hpp"
#include "tformer/rope/table.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

// The rows [row, row + tokens) of a step belong to sequence `seq` at positions start, start + 1, …
struct StepSegment {
  index seq = 0;
  index row = 0;
  index tokens = 0;
  index start = 0;
  // The sequence length whose RoPE frequencies rotate these tokens (dynamic NTK, LongRoPE): the
  // end of the forward pass they belong to (Hugging Face: max(position_ids) + 1), i.e. start +
  // tokens, or a whole prompt's end when generate feeds it in steps of max_tokens.
  index rope_length = 0;
};

// Whether a segment's cos/sin rows come from `table`, or are computed for the step
// (LayerInputs::rope_rows): positions past the table (a ring), or a length-dependent scaling
// whose frequencies at the segment's rope_length are not the table's.
inline bool rows_in_table(const RopeTable& table, const StepSegment& s) noexcept {
  return s.start + s.tokens <= table.max_positions() &&
         (!table.length_dependent() || table.serves(static_cast<int>(s.rope_length)));
}

// Scratch of a decoder for up to `max_tokens` rows per step, sized at construction.
template <DecoderConfig C>
class DecoderWorkspace {
 public:
  // Split-K decode attention cuts a decode token's keys at multiples of this many: the parts
  // depend on the context alone, never on the number of threads, so results do not either.
  static constexpr index split_keys = 512;

  // sequences and max_keys (the most keys one decode token sees in one layer: the capacity, or
  // a ring's window when it is larger; the encoder's tokens count too) size the split-K parts.
  // workers: the executor's concurrency, one prefill attention scratch each.
  DecoderWorkspace(const Dims& d, const ModelParams& p, index max_tokens, index encoder_tokens,
                   index sequences, index max_keys, index workers = 1)
      : d_(d),
        sink_queries_(sink_queries(p)),
        max_tokens_(max_tokens),
        encoder_tokens_(encoder_tokens),
        rotary_(rotary_dim_of(p, d)),
        x_(size(max_tokens * d.hidden)),
        xn_(size(max_tokens * d.hidden)),
        delta_(size(max_tokens * d.hidden)),
        q_(size(max_tokens * d.heads * d.head_dim)),
        k_(size(max_tokens * d.kv_heads * d.head_dim)),
        v_(size(max_tokens * d.kv_heads * d.head_dim)),
        att_(size(max_tokens * d.heads * d.head_dim)),
        encoder_(size(encoder_tokens * d.hidden)),
        encoder_k_(size(encoder_tokens * d.kv_heads * d.head_dim)),
        encoder_v_(size(encoder_tokens * d.kv_heads * d.head_dim)),
        sink_q_(size(sink_queries_ ? max_tokens * d.heads * d.head_dim : 0)),
        rope_rows_(size(computed_rope_rows(p, d) ? max_tokens * rotary_ : 0)),
        local_rope_rows_(size(computed_local_rope_rows(p, d) ? max_tokens * rotary_ : 0)),
        ffn_(C::ffn == FfnKind::MoE ? 0 : max_tokens, d.intermediate),
        parts_(std::max<index>(sequences, 1) * d.kv_heads *
               ((std::max(max_keys, encoder_tokens) + split_keys - 1) / split_keys + 2)),
        part_m_(size(parts_ * (d.heads / d.kv_heads))),
        part_l_(size(parts_ * (d.heads / d.kv_heads))),
        part_acc_(size(parts_ * d.heads / d.kv_heads * d.head_dim)),
        part_scores_(size(parts_ * d.heads / d.kv_heads * AttentionWorkspace::tile)),
        part_q_(size(parts_ * (d.heads / d.kv_heads))),
        plan_(size(parts_)),
        views_(size(std::max<index>(sequences, 1))),
        options_(size(std::max<index>(sequences, 1))) {
    // One prefill scratch per worker, but no more than a step has tasks (1 for decode only).
    const index tasks = d.kv_heads * ((max_tokens + AttentionWorkspace::query_tile - 1) /
                                      AttentionWorkspace::query_tile + std::max<index>(sequences, 1));
    const index scratch = max_tokens > 1 ? std::clamp<index>(std::min(workers, tasks), 1, 256) : 1;
    attention_.reserve(static_cast<std::size_t>(scratch));
    for (index w = 0; w < scratch; ++w) attention_.emplace_back(d.heads / d.kv_heads, d.head_dim);
    if constexpr (C::ffn == FfnKind::MoE)
      moe_.emplace(max_tokens, d.hidden, d.intermediate, moe_config(d, p), d.shared_intermediate);
  }

  static MoeConfig moe_config(const Dims& d, const ModelParams& p) {
    return {.experts = d.experts,
            .top_k = d.top_k,
            .router = p.router,
            .renormalize = p.renormalize,
            .activation = p.activation};
  }

  // Whether steps may compute the cos/sin rows of rope_rows (positions past the table of a
  // streaming ring; a length-dependent scaling) and of local_rope_rows (local layers' own RoPE,
  // ModelParams::local_rope_base, when streaming).
  static bool computed_rope_rows(const ModelParams& p, const Dims& d) noexcept {
    return C::positions == PositionKind::Rope &&
           (p.attention.streaming(d.layers) ||
            std::holds_alternative<rope_scaling::DynamicNtk>(p.rope_scaling) ||
            std::holds_alternative<rope_scaling::LongRope>(p.rope_scaling));
  }
  static bool computed_local_rope_rows(const ModelParams& p, const Dims& d) noexcept {
    return C::positions == PositionKind::Rope && p.local_rope_base > 0 &&
           p.attention.streaming(d.layers);
  }

  // Whether local layers score their sinks with queries rotated at other positions (InCache).
  static constexpr bool sink_queries(const ModelParams& p) noexcept {
    return C::positions == PositionKind::Rope && p.attention.sinks > 0 &&
           p.attention.sink_positions == SinkPositions::InCache;
  }
  bool sink_queries() const noexcept { return sink_queries_; }

  index max_tokens() const noexcept { return max_tokens_; }
  index encoder_tokens() const noexcept { return encoder_tokens_; }
  std::size_t bytes() const noexcept {
    std::size_t n = x_.bytes() + xn_.bytes() + delta_.bytes() + q_.bytes() + k_.bytes() +
                    v_.bytes() + att_.bytes() + encoder_.bytes() + encoder_k_.bytes() +
                    encoder_v_.bytes() + sink_q_.bytes() + rope_rows_.bytes() +
                    local_rope_rows_.bytes() + ffn_.bytes() +
                    part_m_.bytes() + part_l_.bytes() + part_acc_.bytes() + part_scores_.bytes() +
                    part_q_.bytes() + plan_.bytes();
    n += options_.size() * sizeof(AttentionOptions);
    for (const auto& a : attention_) n += a.bytes();
    if (moe_) n += moe_->bytes();
    return n;
  }

  // Row views for a step of T rows.
  MatrixView<float> x(index T) noexcept { return {x_.data(), T, d_.hidden}; }
  MatrixView<float> xn(index T) noexcept { return {xn_.data(), T, d_.hidden}; }
  MatrixView<float> delta(index T) noexcept { return {delta_.data(), T, d_.hidden}; }
  MatrixView<float> q(index T) noexcept { return {q_.data(), T, d_.heads * d_.head_dim}; }
  MatrixView<float> k(index T) noexcept { return {k_.data(), T, d_.kv_heads * d_.head_dim}; }
  MatrixView<float> v(index T) noexcept { return {v_.data(), T, d_.kv_heads * d_.head_dim}; }
  MatrixView<float> att(index T) noexcept { return {att_.data(), T, d_.heads * d_.head_dim}; }
  MatrixView<float> encoder(index S) noexcept { return {encoder_.data(), S, d_.hidden}; }
  MatrixView<float> encoder_k(index S) noexcept {
    return {encoder_k_.data(), S, d_.kv_heads * d_.head_dim};
  }
  MatrixView<float> encoder_v(index S) noexcept {
    return {encoder_v_.data(), S, d_.kv_heads * d_.head_dim};
  }
  // sink_queries: the step's queries rotated at their sink positions.
  MatrixView<float> sink_q(index T) noexcept { return {sink_q_.data(), T, d_.heads * d_.head_dim}; }
  // Streaming RoPE: cos/sin rows of the step's positions past the table.
  MatrixView<float> rope_rows(index T) noexcept { return {rope_rows_.data(), T, rotary_}; }
  MatrixView<float> local_rope_rows(index T) noexcept {
    return {local_rope_rows_.data(), T, rotary_};
  }
  // Prefill attention scratch of worker w < attention_workers().
  AttentionWorkspace& attention(index w) noexcept { return attention_[std::size_t(w)]; }
  index attention_workers() const noexcept { return index(attention_.size()); }

  // Split-K decode: one part of a decode token's attention (a kv head, and a run of keys or
  // the sinks), planned per step; its running state and query rows.
  struct Part {
    index segment;  // in the step's segments
    index g;        // kv head
    index lo, hi;   // keys [lo, hi)
    bool sinks;     // the sinks the window has left, scored with the sink queries
    index first;    // the segment's kv head's first part: parts [first, first + count)
    index count;
  };
  index max_parts() const noexcept { return parts_; }
  Part* plan() noexcept { return plan_.data(); }
  // The KV view and the attention options of each segment of a step (built on the calling
  // thread), up to `sequences`.
  KVView* segment_views() noexcept { return views_.data(); }
  AttentionOptions* segment_options() noexcept { return options_.data(); }
  index max_segments() const noexcept { return index(views_.size()); }
  attention_kernels::DecodeState part_state(index i) noexcept {
    const index group = d_.heads / d_.kv_heads;
    return {part_m_.data() + i * group, part_l_.data() + i * group,
            part_acc_.data() + i * group * d_.head_dim,
            part_scores_.data() + i * group * AttentionWorkspace::tile, d_.head_dim};
  }
  const float** part_q(index i) noexcept { return part_q_.data() + i * (d_.heads / d_.kv_heads); }
  FfnWorkspace& ffn() noexcept { return ffn_; }
  MoeWorkspace& moe() noexcept { return *moe_; }

 private:
  static std::size_t size(index n) { return static_cast<std::size_t>(std::max<index>(n, 0)); }
  Dims d_;
  bool sink_queries_;
  index max_tokens_, encoder_tokens_;
  index rotary_;  // RoPE's values per head
  AlignedBuffer<float> x_, xn_, delta_, q_, k_, v_, att_, encoder_, encoder_k_, encoder_v_,
      sink_q_, rope_rows_, local_rope_rows_;
  std::vector<AttentionWorkspace> attention_;
  FfnWorkspace ffn_;
  std::optional<MoeWorkspace> moe_;
  index parts_;
  AlignedBuffer<float> part_m_, part_l_, part_acc_, part_scores_;
  AlignedBuffer<const float*> part_q_;
  AlignedBuffer<Part> plan_;
  AlignedBuffer<KVView> views_;
  std::vector<AttentionOptions> options_;
};

// What a layer reads besides its weights and the workspace.
struct LayerInputs {
  const Dims& dims;
  const ModelParams& params;
  std::span<const StepSegment> segments;
  index rows;  // Σ segment tokens
  const RopeTable& rope;  // this layer's: the model's, or local layers' own (Gemma 3)
  // cos/sin rows of the step's rows, for segments whose rows are not in the table
  // (rows_in_table); unused otherwise.
  MatrixView<const float> rope_rows;
  KVCache& cache;     // this layer's: the full cache, or the ring of local layers
  index cache_layer;  // the layer's index in it
  // Sink queries needed this step: per row, the position its sinks are scored from; else empty.
  std::span<const std::int32_t> sink_positions;
  const CrossKVCache* cross;               // cross-attention: the encoder's K, V per layer
  MatrixView<const float> ffn_down_t;      // TopK: this layer's down transposed
  std::span<const float> next_norm;        // attn_norm of the next layer, or the final norm
  std::span<const float> alibi;            // ALiBi: slopes per query head
  const T5Bias* t5;                        // T5: the shared table
  // conv_kernel > 0: this layer's convolution state [k − 1, H] of sequence s starts at
  // conv_state + s · conv_seq_stride.
  float* conv_state = nullptr;
  index conv_seq_stride = 0;
  RotaryBlock* rotary = nullptr;  // givens_rotations or rotation_matrix: this layer's block
  // Rows whose attention weights this step records (Decoder::forward with a StepTrace), or
  // none; self_attention[layer] and cross_attention[layer] are sized for them.
  StepTrace* trace = nullptr;
};

namespace decoder_kernels {

// att = attention of q over view_of(segment) with options_of(segment) (cross-attention: each
// sequence's own padding mask) for every segment, in one call. Segments of many tokens
// (prefill) are split into (segment, KV head, block of 64 queries) tasks; a decode token's
// attention over KV heads and runs of split_keys keys (split-K, flash-decoding), whose states
// merge in key order. The split depends on the sizes alone, so results are the same bit for bit
// whatever the executor's threads. The views (which check) and the options are built on the
// calling thread, once per segment; the workers run unchecked kernels only.
// bias(h, q, k) takes the model's query head h. sink_q (rows like q, or none): the queries the
// sinks are scored with.
template <Executor E, class ViewOf, class OptionsOf, class Bias = NoBias>
void attend_segments(const E& exec, const Dims& d, std::span<const StepSegment> segments,
                     MatrixView<const float> q, MatrixView<float> att, const ViewOf& view_of,
                     const OptionsOf& options_of, auto& ws, const Bias& bias = {},
                     MatrixView<const float> sink_q = {}) {
  const index group = d.heads / d.kv_heads, D = d.head_dim, qd = d.heads * D;
  if (index(segments.size()) > ws.max_segments()) [[unlikely]]
    detail::fail_check("decoder attention", "segments",
                       "at most " + std::to_string(ws.max_segments()) + " (the sequences)",
                       index(segments.size()));
  KVView* const views = ws.segment_views();
  AttentionOptions* const options = ws.segment_options();
  for (std::size_t i = 0; i < segments.size(); ++i) {
    views[i] = view_of(segments[i]);
    options[i] = options_of(segments[i]);
    options[i].scale = attention_kernels::score_scale(options[i], D);  // resolved once
  }
  const bool prefill = std::any_of(segments.begin(), segments.end(),
                                  [](const StepSegment& s) { return s.tokens > 1; });
  if (prefill) {
    // Tasks: (segment, kv head, block of query_tile queries), head by head, the last blocks first.
    // Each worker takes tasks from a shared counter into its own scratch; a task's result does
    // not depend on which worker runs it or on what ran before.
    const auto tasks_of = [&](const StepSegment& s) {
      return s.tokens > 1 ? attention_kernels::attention_tasks(s.tokens, d.kv_heads) : index(0);
    };
    index tasks = 0;
    for (const StepSegment& s : segments) tasks += tasks_of(s);
    const auto run_task = [&](index task, AttentionWorkspace& scratch) {
      for (index si = 0; si < index(segments.size()); ++si) {
        const StepSegment& s = segments[std::size_t(si)];
        if (const index here = tasks_of(s); task >= here) {
          task -= here;
          continue;
        }
        const HeadsView<const float> qs(q.row(s.row), s.tokens, d.heads, D, qd);
        const HeadsView<float> os(att.row(s.row), s.tokens, d.heads, D, qd);
        AttentionOptions opt = options[si];
        if (sink_q.rows() > 0)
          opt.sink_q = HeadsView<const float>(sink_q.row(s.row), s.tokens, d.heads, D, qd);
        attention_kernels::attention_task(task, qs, views[si],
                                          Positions::offset(static_cast<std::int32_t>(s.start)), os,
                                          MatrixView<float>{}, opt, opt.scale, bias, scratch);
        return;
      }
    };
    const index workers =
        std::max<index>(1, std::min({index(exec.concurrency()), ws.attention_workers(), tasks}));
    std::atomic<index> next{0};
    exec.parallel_for(0, workers, [&](index w) {
      for (index task; (task = next.fetch_add(1, std::memory_order_relaxed)) < tasks;)
        run_task(task, ws.attention(w));
    });
  }

  // The decode tokens' parts: per segment and kv head, the sinks (if the window has left them),
  // then the window's keys cut at multiples of split_keys. The workspace holds them all
  // (DecoderWorkspace sizes them from the most keys a token sees); checked before any is written.
  using Part = typename std::remove_reference_t<decltype(ws)>::Part;
  constexpr index split = std::remove_reference_t<decltype(ws)>::split_keys;
  Part* plan = ws.plan();
  index parts = 0;
  for (index si = 0; si < index(segments.size()); ++si) {
    const StepSegment& s = segments[std::size_t(si)];
    if (s.tokens != 1) continue;
    const AttentionOptions& opt = options[si];
    const index p = s.start, length = views[si].length;
    const index hi = opt.causal ? std::min(p + 1, length) : length;
    const index lo = opt.window > 0 ? std::max<index>(0, p - opt.window + 1) : 0;
    const index sinks_end = opt.window > 0 ? std::min(opt.sinks, lo) : 0;
    const index per_head = (sinks_end > 0) + std::max<index>(1, (std::max(lo, hi) - 1) / split - lo / split + 1);
    if (parts + d.kv_heads * per_head > ws.max_parts()) [[unlikely]]
      detail::fail_check("decoder attention", "split-K parts",
                         "at most " + std::to_string(ws.max_parts()) + " (the workspace's)",
                         parts + d.kv_heads * per_head);
    for (index g = 0; g < d.kv_heads; ++g) {
      const index first = parts;
      if (sinks_end > 0) plan[parts++] = {si, g, 0, sinks_end, true, first, 0};
      index k0 = lo;
      do {  // at least one part, empty when no key is visible
        const index k1 = std::min(std::max(lo, hi), (k0 / split + 1) * split);
        plan[parts++] = {si, g, k0, k1, false, first, 0};
        k0 = k1;
      } while (k0 < hi);
      for (index i = first; i < parts; ++i) plan[i].count = parts - first;
    }
  }
  if (parts == 0) return;
  exec.parallel_for(0, parts, [&](index i) {
    const Part& part = plan[i];
    const StepSegment& s = segments[std::size_t(part.segment)];
    const KVView kv = views[part.segment].head(part.g);
    const MatrixView<const float> rows = part.sinks && sink_q.rows() > 0 ? sink_q : q;
    const float** qs = ws.part_q(i);
    for (index h = 0; h < group; ++h) qs[h] = rows.row(s.row) + (part.g * group + h) * D;
    const attention_kernels::DecodeState st = ws.part_state(i);
    st.reset(group);
    const AttentionOptions& opt = options[part.segment];
    const index position = part.sinks ? attention_kernels::sink_position(opt, s.start) : s.start;
    attention_kernels::accumulate(qs, group, part.g * group, kv, 0, part.lo, part.hi, position, opt,
                                  opt.scale, bias, st);
  });
  // Merge each (segment, kv head)'s parts in key order, into its first part, and normalise.
  exec.parallel_for(0, parts, [&](index i) {
    const Part& part = plan[i];
    if (part.first != i) return;  // one merge per (segment, kv head), at its first part
    const StepSegment& s = segments[std::size_t(part.segment)];
    const attention_kernels::DecodeState into = ws.part_state(i);
    const auto part_of = [&](index c) { return ws.part_state(i + c); };
    for (index h = 0; h < group; ++h) {
      if (part.count > 1) attention_kernels::merge_states(part.count, part_of, h, into);
      attention_kernels::finish_head(into, h, att.row(s.row) + (part.g * group + h) * D);
    }
  });
}

// The traced rows' attention weights (rows[i] of the step into out[i], [heads, keys of its
// segment's view]): the slow path (attention_weights), on the calling thread, with the masks,
// scale, sinks and bias of the fast one. Rows outside `segments` are left as they are.
template <class ViewOf, class OptionsOf, class Bias = NoBias>
void record_weights(const Dims& d, std::span<const StepSegment> segments,
                    std::span<const index> rows, MatrixView<const float> q, const ViewOf& view_of,
                    const OptionsOf& options_of, std::vector<TraceMatrix>& out,
                    const Bias& bias = {}, MatrixView<const float> sink_q = {}) {
  const index D = d.head_dim, qd = d.heads * D;
  for (std::size_t i = 0; i < rows.size(); ++i)
    for (const StepSegment& s : segments) {
      const index r = rows[i];
      if (r < s.row || r >= s.row + s.tokens) continue;
      const KVView kv = view_of(s);
      TraceMatrix& w = out[i];
      w.resize(d.heads, kv.length);
      AttentionOptions opt = options_of(s);
      if (sink_q.rows() > 0) opt.sink_q = HeadsView<const float>(sink_q.row(r), 1, d.heads, D, qd);
      attention_weights(HeadsView<const float>(q.row(r), 1, d.heads, D, qd), kv,
                        Positions::offset(static_cast<std::int32_t>(s.start + (r - s.row))),
                        HeadsView<float>(w.values.data(), 1, d.heads, kv.length), opt, bias);
    }
}

// The decoder's norms, their tokens split over exec's workers (for_token_runs): the row
// kernels of the checked entry points, without the checks (Decoder's workspace has the shapes,
// ModelParams the eps).
// x += residual, then y = RMSNorm(x) (rmsnorm_residual).
template <NormScale S, Executor E>
void add_norm_tokens(const E& exec, MatrixView<float> x, MatrixView<const float> residual,
                     std::span<const float> weight, float eps, MatrixView<float> y) {
  for_token_runs(exec, x.rows(), [&](index t, index n) {
    rmsnorm_kernels::add_norm_rows<S>(x, residual, weight.data(), eps, y, t, n);
  });
}
// y = RMSNorm(x); y may be x (rmsnorm).
template <NormScale S, Executor E>
void norm_tokens(const E& exec, MatrixView<const float> x, std::span<const float> weight, float eps,
                 MatrixView<float> y) {
  for_token_runs(exec, x.rows(), [&](index t, index n) {
    rmsnorm_kernels::norm_rows<S>(x, weight.data(), eps, y, t, n);
  });
}
// Each head of each token normalised in place (rmsnorm_heads: q/k-norm).
template <NormScale S, Executor E>
void norm_heads_tokens(const E& exec, HeadsView<float> x, std::span<const float> weight,
                       float eps) {
  for_token_runs(exec, x.tokens(), [&](index t, index n) {
    rmsnorm_kernels::norm_head_rows<S>(x, weight.data(), eps, t, n);
  });
}

// Segment s's queries and keys rotated in place, its tokens split over exec's workers: by the
// table's rows at s.start, s.start + 1, … when rows_in_table(table, s), else by the step's
// `rows` s.row, s.row + 1, … (computed for this step: LayerInputs::rope_rows).
// apply_rope_inplace / apply_rope_rows_inplace without their checks (rows_in_table bounds the
// positions; Decoder checked the shapes).
template <RopeLayout Layout, Executor E>
void rotate_segment(const E& exec, const RopeTable& table, MatrixView<const float> rows,
                    const StepSegment& s, HeadsView<float> q, HeadsView<float> k) {
  const bool in_table = rows_in_table(table, s);
  for_token_runs(exec, s.tokens, [&](index t, index n) {
    const HeadsView<float> qt = q.tokens_slice(t, n), kt = k.tokens_slice(t, n);
    if (in_table)
      rope_kernels::rotate_heads<Layout, false, 2>(
          [&](index i) { return table.cos(s.start + t + i); }, table.rotary_dim(), {qt, kt},
          {qt, kt}, 1.0f);
    else
      rope_kernels::rotate_heads<Layout, false, 2>([&](index i) { return rows.row(s.row + t + i); },
                                                   rows.cols(), {qt, kt}, {qt, kt}, 1.0f);
  });
}

}  // namespace decoder_kernels

// One layer, in place on ws.x (residual stream) with ws.xn = attn_norm(x) on entry.
template <DecoderConfig C, Executor E>
void decoder_layer(const LayerWeights& w, index layer, const LayerInputs& in,
                   DecoderWorkspace<C>& ws, const E& exec) {
  const Dims& d = in.dims;
  const ModelParams& p = in.params;
  const index T = in.rows, D = d.head_dim;
  const MatrixView<float> x = ws.x(T), xn = ws.xn(T), delta = ws.delta(T);
  const MatrixView<float> q = ws.q(T), k = ws.k(T), v = ws.v(T), att = ws.att(T);

  // Self-attention: Q, K and V in one pass (biases: Qwen2's; empty: none).
  parallel_project_all(
      exec, xn,
      std::array{Projection{w.wq, q, w.bq}, Projection{w.wk, k, w.bk}, Projection{w.wv, v, w.bv}});
  if (p.qk_norm) {
    decoder_kernels::norm_heads_tokens<C::norm>(exec, {q.data(), T, d.heads, D}, w.q_norm, p.eps);
    decoder_kernels::norm_heads_tokens<C::norm>(exec, {k.data(), T, d.kv_heads, D}, w.k_norm,
                                                p.eps);
  }
  if constexpr (C::givens_rotations > 0 || C::rotation_matrix) {  // learned rotations first
    in.rotary->apply({q.data(), T, d.heads, D});
    in.rotary->apply({k.data(), T, d.kv_heads, D});
  }
  // Sinks scored from other positions (InCache) need the queries rotated there too.
  MatrixView<const float> sink_q;
  if (ws.sink_queries() && p.attention.sinks_of(layer) > 0 && !in.sink_positions.empty()) {
    const MatrixView<float> sq = ws.sink_q(T);
    for (index r = 0; r < T; ++r) std::copy(q.row(r), q.row(r) + q.cols(), sq.row(r));
    for (const StepSegment& s : in.segments)
      apply_rope_inplace<C::rope_layout>(
          in.rope, HeadsView<float>(sq.row(s.row), s.tokens, d.heads, D),
          Positions::ids(in.sink_positions.subspan(std::size_t(s.row), std::size_t(s.tokens))));
    sink_q = sq;
  }
  for (const StepSegment& s : in.segments) {
    HeadsView<float> qs(q.row(s.row), s.tokens, d.heads, D), ks(k.row(s.row), s.tokens, d.kv_heads, D);
    if constexpr (C::positions == PositionKind::Rope)
      decoder_kernels::rotate_segment<C::rope_layout>(exec, in.rope, in.rope_rows, s, qs, ks);
    in.cache.write(in.cache_layer, s.seq, ks,
                   HeadsView<const float>(v.row(s.row), s.tokens, d.kv_heads, D), exec);
  }
  AttentionOptions self;
  self.window = p.attention.window_of(layer);
  self.sinks = p.attention.sinks_of(layer);
  self.sink_positions = p.attention.sink_positions;
  self.scale = p.attention_scale;
  self.softcap = p.attention_softcap;
  const auto self_view = [&](const StepSegment& s) {
    return in.cache.view(in.cache_layer, s.seq, s.start + s.tokens);
  };
  const auto self_options = [&](const StepSegment&) -> const AttentionOptions& { return self; };
  const auto self_attention = [&](const auto& bias) {
    decoder_kernels::attend_segments(exec, d, in.segments, q, att, self_view, self_options, ws,
                                     bias, sink_q);
    if (in.trace != nullptr && !in.trace->attention_rows.empty())
      decoder_kernels::record_weights(d, in.segments, in.trace->attention_rows, q, self_view,
                                      self_options, in.trace->self_attention[std::size_t(layer)],
                                      bias, sink_q);
  };
  if constexpr (C::bias == BiasKind::ALiBi)
    self_attention(AlibiBias{in.alibi});
  else if constexpr (C::bias == BiasKind::T5)
    self_attention(*in.t5);
  else
    self_attention(NoBias{});
  parallel_project(exec, att, w.wo, delta, w.bo);
  if constexpr (C::post_norms)
    decoder_kernels::norm_tokens<C::norm>(exec, delta, w.post_attn_norm, p.eps, delta);
  if constexpr (C::conv_kernel > 0)  // + the causal convolution of the block's input
    for (const StepSegment& s : in.segments)
      conv_kernels::causal_conv1d(xn.row_slice(s.row, s.tokens), w.conv, w.conv_bias,
                                  MatrixView<float>(in.conv_state + s.seq * in.conv_seq_stride,
                                                    C::conv_kernel - 1, d.hidden),
                                  delta.row_slice(s.row, s.tokens), true);

  // Cross-attention to the encoder (non-causal, its padding mask).
  if constexpr (C::cross_attention) {
    decoder_kernels::add_norm_tokens<C::norm>(exec, x, delta, w.cross_norm, p.eps, xn);
    parallel_project(exec, xn, w.cross_wq, q);
    // Every sequence at once, each over its own encoder's K, V and padding mask.
    const auto cross_view = [&](const StepSegment& s) { return in.cross->view(layer, s.seq); };
    const auto cross_options = [&](const StepSegment& s) {
      AttentionOptions cross;
      cross.causal = false;
      cross.key_valid = in.cross->key_valid(s.seq);
      return cross;
    };
    decoder_kernels::attend_segments(exec, d, in.segments, q, att, cross_view, cross_options, ws);
    if (in.trace != nullptr && !in.trace->attention_rows.empty())
      decoder_kernels::record_weights(d, in.segments, in.trace->attention_rows, q, cross_view,
                                      cross_options, in.trace->cross_attention[std::size_t(layer)]);
    parallel_project(exec, att, w.cross_wo, delta);
  }

  // Feed-forward.
  decoder_kernels::add_norm_tokens<C::norm>(exec, x, delta, w.ffn_norm, p.eps, xn);
  if constexpr (C::ffn == FfnKind::Dense) {
    ffn_kernels::swiglu_rows(exec, xn, w.ffn, delta, ws.ffn(), p.activation);
  } else if constexpr (C::ffn == FfnKind::TopK) {
    ffn_kernels::swiglu_topk_rows(exec, xn, w.ffn, in.ffn_down_t,
                                  TopK::count(d.top_k).resolve(d.intermediate), delta, ws.ffn(),
                                  p.activation);
  } else {
    const MoeWeights mw{.router = w.router,
                        .experts = w.experts,
                        .shared = d.shared_intermediate > 0
                                      ? std::optional<SwiGluWeights>(w.shared_expert)
                                      : std::nullopt,
                        .shared_gate = w.shared_expert_gate};
    moe(xn, mw, DecoderWorkspace<C>::moe_config(d, p), delta, ws.moe(), exec);
  }
  if constexpr (C::post_norms)
    decoder_kernels::norm_tokens<C::norm>(exec, delta, w.post_ffn_norm, p.eps, delta);
  decoder_kernels::add_norm_tokens<C::norm>(exec, x, delta, in.next_norm, p.eps, xn);
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
