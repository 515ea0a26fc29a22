// Mixture of experts: a router picks k of E SwiGLU experts per token; the output is
// Σ w_e · expert_e(x), plus an optional always-on shared expert (Qwen2-MoE, DeepSeek).
//
// Routing (per token, in float, from the router logits x · routerᵀ):
//   SoftmaxThenTopK  p = softmax(all E logits); keep the k largest p (ties to the lower index);
//                    renormalise them to sum 1 if `renormalize` (Mixtral: yes; Qwen3-MoE:
//                    norm_topk_prob).
//   TopKThenSoftmax  keep the k largest logits, w = softmax over those k (gpt-oss's routing step;
//                    its router bias and clamped expert activation are not expressed here).
// Tokens are grouped by expert, so each chosen expert's weights are streamed once per call
// for all its tokens (one GEMM per expert), and the per-expert token counts are reported.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "tformer/core/error.hpp"
#include "tformer/core/memory.hpp"
#include "tformer/core/parallel.hpp"
#include "tformer/core/views.hpp"
#include "tformer/nn/swiglu.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

enum class RouterKind { SoftmaxThenTopK, TopKThenSoftmax };

struct MoeConfig {
  index experts = 0;  // E
  index top_k = 0;    // k in [1, E]
  RouterKind router = RouterKind::SoftmaxThenTopK;
  bool renormalize = true;  // SoftmaxThenTopK only
  Activation activation = {};
};

struct MoeWeights {
  MatrixView<const float> router;          // [E, H]
  std::span<const SwiGluWeights> experts;  // E experts of width I
  std::optional<SwiGluWeights> shared;     // always-on expert, any width
  MatrixView<const float> shared_gate;     // [1, H] or empty: scales shared by sigmoid(x·g)
};

class MoeWorkspace;
template <Executor Exec = SerialExecutor>
void moe(MatrixView<const float> x, const MoeWeights& w, const MoeConfig& config,
         MatrixView<float> y, MoeWorkspace& ws, const Exec& exec = {});

// Scratch for up to `max_tokens` tokens: router logits, routing, grouped tokens, expert
// intermediates. Allocates at construction only.
class MoeWorkspace {
 public:
  MoeWorkspace(index max_tokens, index hidden, index intermediate, const MoeConfig& config,
               index shared_intermediate = 0)
      : max_tokens_(checked(max_tokens, hidden, config)),
        hidden_(hidden),
        experts_(config.experts),
        top_k_(config.top_k),
        logits_(size(max_tokens * config.experts)),
        chosen_(size(max_tokens * config.top_k)),
        weights_(size(max_tokens * config.top_k)),
        counts_(size(config.experts)),
        offsets_(size(config.experts + 1)),
        order_(size(config.experts)),
        by_expert_(size(max_tokens * config.top_k)),
        gathered_(size(max_tokens * hidden)),
        expert_out_(size(max_tokens * hidden)),
        ffn_(max_tokens, intermediate),
        shared_ffn_(shared_intermediate > 0 ? max_tokens : 0, shared_intermediate) {}

  index max_tokens() const noexcept { return max_tokens_; }
  std::size_t bytes() const noexcept {
    return logits_.bytes() + chosen_.bytes() + weights_.bytes() + counts_.bytes() +
           offsets_.bytes() + order_.bytes() + by_expert_.bytes() + gathered_.bytes() +
           expert_out_.bytes() + ffn_.bytes() + shared_ffn_.bytes();
  }

  // The routing of the last call: for token t, experts chosen(t)[0, k) with weights weights(t).
  std::span<const std::int32_t> chosen(index t) const noexcept {
    return {chosen_.data() + t * top_k_, static_cast<std::size_t>(top_k_)};
  }
  std::span<const float> weights(index t) const noexcept {
    return {weights_.data() + t * top_k_, static_cast<std::size_t>(top_k_)};
  }
  // Tokens routed to each expert in the last call (engines log load balance from it).
  std::span<const std::int32_t> expert_counts() const noexcept {
    return {counts_.data(), static_cast<std::size_t>(experts_)};
  }

 private:
  static std::size_t size(index n) { return static_cast<std::size_t>(std::max<index>(n, 0)); }
  // Sizes non-negative, k in [1, E], and every buffer's size checked (FfnWorkspace checks the
  // intermediates).
  static index checked(index max_tokens, index hidden, const MoeConfig& c) {
    constexpr const char* where = "MoeWorkspace";
    check(max_tokens >= 0, where, "max_tokens", ">= 0", max_tokens);
    check(hidden >= 0, where, "hidden", ">= 0", hidden);
    check(c.experts >= 1 && c.experts < (index(1) << 31), where, "config.experts",
          "a value in [1, 2^31)", c.experts);
    if (c.top_k < 1 || c.top_k > c.experts) [[unlikely]]
      detail::fail_check(where, "config.top_k",
                         "a value in [1, " + std::to_string(c.experts) + "] (experts)", c.top_k);
    checked_size(where, "max_tokens * experts", {max_tokens, c.experts}, sizeof(float));
    const index entries =
        checked_size(where, "max_tokens * top_k", {max_tokens, c.top_k}, sizeof(float));
    check(entries < (index(1) << 31), where, "max_tokens * top_k", "< 2^31", entries);
    checked_size(where, "max_tokens * hidden", {max_tokens, hidden}, sizeof(float));
    return max_tokens;
  }
  template <Executor Exec>
  friend void moe(MatrixView<const float> x, const MoeWeights& w, const MoeConfig& config,
                  MatrixView<float> y, MoeWorkspace& ws, const Exec& exec);

  index max_tokens_, hidden_, experts_, top_k_;
  AlignedBuffer<float> logits_;
  AlignedBuffer<std::int32_t> chosen_;
  AlignedBuffer<float> weights_;
  AlignedBuffer<std::int32_t> counts_, offsets_, order_;
  AlignedBuffer<std::int32_t> by_expert_;  // (token · k + slot) entries grouped by expert
  AlignedBuffer<float> gathered_, expert_out_;
  FfnWorkspace ffn_, shared_ffn_;
};

namespace moe_kernels {

// Routes one token: from its E logits, writes k expert indices and their weights.
// `order` is scratch for E indices.
inline void route(const float* logits, index experts, index k, RouterKind kind, bool renormalize,
                  std::int32_t* chosen, float* weights, std::int32_t* order) noexcept {
  // The k largest logits, ties to the lower index; NaN ranks above every number (as
  // torch.topk), so the order is total. Softmax is monotonic, so the same k win before and after
  // it. A NaN or +Inf logit makes every weight of the token NaN (as PyTorch's softmax), so its
  // output row is NaN: the non-finite value propagates, it is never read as a valid routing.
  for (index e = 0; e < experts; ++e) order[e] = static_cast<std::int32_t>(e);
  std::partial_sort(order, order + k, order + experts, [logits](std::int32_t a, std::int32_t b) {
    const bool nan_a = std::isnan(logits[a]), nan_b = std::isnan(logits[b]);
    if (nan_a || nan_b) return nan_a && (!nan_b || a < b);
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  const float top = logits[order[0]];
  if (kind == RouterKind::SoftmaxThenTopK) {
    double total = 0.0;  // softmax over all E, stabilised by the largest logit
    for (index e = 0; e < experts; ++e) total += std::exp(static_cast<double>(logits[e] - top));
    double kept = 0.0;
    for (index j = 0; j < k; ++j) {
      chosen[j] = order[j];
      weights[j] =
          static_cast<float>(std::exp(static_cast<double>(logits[order[j]] - top)) / total);
      kept += weights[j];
    }
    if (renormalize)
      for (index j = 0; j < k; ++j) weights[j] = static_cast<float>(weights[j] / kept);
  } else {
    double total = 0.0;  // softmax over the k kept logits
    for (index j = 0; j < k; ++j) total += std::exp(static_cast<double>(logits[order[j]] - top));
    for (index j = 0; j < k; ++j) {
      chosen[j] = order[j];
      weights[j] =
          static_cast<float>(std::exp(static_cast<double>(logits[order[j]] - top)) / total);
    }
  }
}

}  // namespace moe_kernels

// Throws unless kind is one of RouterKind; `what` names the parameter in the error.
inline void check_router(std::string_view where, std::string_view what, RouterKind kind) {
  check(kind == RouterKind::SoftmaxThenTopK || kind == RouterKind::TopKThenSoftmax, where, what,
        "SoftmaxThenTopK or TopKThenSoftmax", static_cast<int>(kind));
}

// y [T, H] = Σ_e w_e · expert_e(x) (+ shared expert) for x [T, H]. y must not overlap x. Each
// expert's projections are split by rows over `exec`; routing, gathering and the weighted sums
// run on the calling thread in a fixed order, so results do not depend on exec's threads.
template <Executor Exec>
void moe(MatrixView<const float> x, const MoeWeights& w, const MoeConfig& config,
         MatrixView<float> y, MoeWorkspace& ws, const Exec& exec) {
  constexpr const char* where = "moe";
  const index tokens = x.rows(), hidden = x.cols(), E = config.experts, k = config.top_k;
  check_activation(where, config.activation);
  check_router(where, "config.router", config.router);
  check(E >= 1, where, "config.experts", ">= 1", E);
  if (k < 1 || k > E) [[unlikely]]
    detail::fail_check(where, "config.top_k", "a value in [1, " + std::to_string(E) + "] (experts)",
                       k);
  check_view(where, "x", x);
  check_shape(where, "y", y, tokens, hidden);
  check_shape(where, "router", w.router, E, hidden);
  check_eq(where, "experts count (= config.experts)", E, index(w.experts.size()));
  check_eq(where, "workspace experts", E, ws.experts_);
  check_eq(where, "workspace top_k", k, ws.top_k_);
  check_eq(where, "workspace hidden", hidden, ws.hidden_);
  if (tokens > ws.max_tokens_) [[unlikely]]
    detail::fail_check(where, "tokens",
                       "<= the workspace's max_tokens (" + std::to_string(ws.max_tokens_) + ")",
                       tokens);
  check_disjoint(where, "y", y, "x", x);
  // Every weight is checked before y is written: a rejected call writes nothing.
  struct Names {
    const char *intermediate, *gate, *up, *down;
  };
  auto check_expert = [&](const Names& n, const SwiGluWeights& e, index intermediate) {
    check_eq(where, n.intermediate, intermediate, e.intermediate());
    check_shape(where, n.gate, e.gate, intermediate, hidden);
    check_shape(where, n.up, e.up, intermediate, hidden);
    check_shape(where, n.down, e.down, hidden, intermediate);
  };
  const Names expert{"expert intermediate (= workspace)", "expert gate", "expert up",
                     "expert down"};
  const Names shared{"shared expert intermediate (= workspace)", "shared expert gate",
                     "shared expert up", "shared expert down"};
  for (const SwiGluWeights& e : w.experts) check_expert(expert, e, ws.ffn_.intermediate());
  if (w.shared) check_expert(shared, *w.shared, ws.shared_ffn_.intermediate());
  if (w.shared_gate.rows() > 0) {
    check(w.shared.has_value(), where, "shared_gate", "a shared expert to gate",
          "no shared expert");
    check_shape(where, "shared_gate", w.shared_gate, 1, hidden);
  }

  // 1. Router logits and routing.
  MatrixView<float> logits(ws.logits_.data(), tokens, E);
  linear(x, w.router, logits);
  for (index t = 0; t < tokens; ++t)
    moe_kernels::route(logits.row(t), E, k, config.router, config.renormalize,
                       ws.chosen_.data() + t * k, ws.weights_.data() + t * k, ws.order_.data());

  // 2. Group (token, slot) entries by expert: a counting sort.
  std::fill(ws.counts_.data(), ws.counts_.data() + E, 0);
  for (index i = 0; i < tokens * k; ++i) ++ws.counts_[ws.chosen_[i]];
  ws.offsets_[0] = 0;
  for (index e = 0; e < E; ++e) ws.offsets_[e + 1] = ws.offsets_[e] + ws.counts_[e];
  {
    std::int32_t* next = ws.offsets_.data();  // advanced per expert, restored below
    for (index i = 0; i < tokens * k; ++i)
      ws.by_expert_[next[ws.chosen_[i]]++] = static_cast<std::int32_t>(i);
    for (index e = E; e > 0; --e) ws.offsets_[e] = ws.offsets_[e - 1];
    ws.offsets_[0] = 0;
  }

  // 3. Shared expert (or zeros), then each chosen expert once over all its tokens.
  if (w.shared) {
    ffn_kernels::swiglu_rows(exec, x, *w.shared, y, ws.shared_ffn_, config.activation);
    if (w.shared_gate.rows() > 0) {
      for (index t = 0; t < tokens; ++t) {
        double dot = 0.0;
        for (index i = 0; i < hidden; ++i) dot += double(x.row(t)[i]) * w.shared_gate.row(0)[i];
        const float g = activation_math::sigmoid(static_cast<float>(dot));
        for (index i = 0; i < hidden; ++i) y.row(t)[i] *= g;
      }
    }
  } else {
    for (index t = 0; t < tokens; ++t) std::fill(y.row(t), y.row(t) + hidden, 0.0f);
  }
  for (index e = 0; e < E; ++e) {
    const index n = ws.counts_[e];
    if (n == 0) continue;
    const std::int32_t* entries = ws.by_expert_.data() + ws.offsets_[e];
    MatrixView<float> in(ws.gathered_.data(), n, hidden), out(ws.expert_out_.data(), n, hidden);
    for (index j = 0; j < n; ++j)
      std::copy(x.row(entries[j] / k), x.row(entries[j] / k) + hidden, in.row(j));
    ffn_kernels::swiglu_rows(exec, in, w.experts[e], out, ws.ffn_, config.activation);
    for (index j = 0; j < n; ++j) {
      const float weight = ws.weights_[entries[j]];
      float* yt = y.row(entries[j] / k);
      const float* o = out.row(j);
      for (index i = 0; i < hidden; ++i) yt[i] += weight * o[i];
    }
  }
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
