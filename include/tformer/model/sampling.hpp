// Choosing the next token from a row of logits, and scoring chosen tokens (classification).
//
//   Greedy:       argmax (the lowest id among equal maxima).
//   Temperature:  sample from softmax(logits / T).
//   TopK:         keep the k largest logits, then as Temperature.
//   TopP:         keep the smallest set of most probable tokens whose probability reaches p
//                 (after the temperature), then sample among them renormalised.
// Sampling draws one uniform number per token from a Rng (SplitMix64 seeded by the caller), so
// a seed reproduces a run on every platform. Scratch lives in SamplerWorkspace: no allocation.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>

#include "tformer/core/error.hpp"
#include "tformer/core/memory.hpp"
#include "tformer/core/views.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

// SplitMix64: tiny, fast, and the same sequence everywhere.
class Rng {
 public:
  explicit constexpr Rng(std::uint64_t seed) noexcept : state_(seed) {}
  constexpr std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1), 53 bits.
  constexpr double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t state_;
};

enum class SamplerKind { Greedy, Temperature, TopK, TopP };

struct Sampler {
  SamplerKind kind = SamplerKind::Greedy;
  float temperature = 1.0f;  // > 0 (not Greedy)
  index top_k = 0;           // TopK: in [1, vocab]
  float top_p = 1.0f;        // TopP: in (0, 1]

  static constexpr Sampler greedy() noexcept { return {}; }
  static constexpr Sampler with_temperature(float t) noexcept {
    return {SamplerKind::Temperature, t, 0, 1.0f};
  }
  static constexpr Sampler with_top_k(index k, float t = 1.0f) noexcept {
    return {SamplerKind::TopK, t, k, 1.0f};
  }
  static constexpr Sampler with_top_p(float p, float t = 1.0f) noexcept {
    return {SamplerKind::TopP, t, 0, p};
  }
};

// Scratch for one vocabulary: probabilities and an index order.
class SamplerWorkspace {
 public:
  explicit SamplerWorkspace(index vocab)
      : vocab_(checked(vocab)), probs_(static_cast<std::size_t>(vocab)),
        order_(static_cast<std::size_t>(vocab)) {}
  index vocab() const noexcept { return vocab_; }

 private:
  friend std::int32_t sample(std::span<const float>, const Sampler&, Rng&, SamplerWorkspace&);
  static index checked(index vocab) {  // token ids are int32
    check(vocab >= 1 && vocab <= std::numeric_limits<std::int32_t>::max(), "SamplerWorkspace",
          "vocab", "a value in [1, 2^31 - 1]", vocab);
    return vocab;
  }
  index vocab_;
  AlignedBuffer<double> probs_;
  AlignedBuffer<std::int32_t> order_;
};

inline void check_sampler(const Sampler& s, index vocab) {
  constexpr const char* where = "sample";
  check(s.kind >= SamplerKind::Greedy && s.kind <= SamplerKind::TopP, where, "sampler kind",
        "Greedy, Temperature, TopK or TopP", static_cast<int>(s.kind));
  if (s.kind == SamplerKind::Greedy) return;
  check(s.temperature > 0.0f && std::isfinite(s.temperature), where, "temperature",
        "> 0 and finite", s.temperature);
  if (s.kind == SamplerKind::TopK && (s.top_k < 1 || s.top_k > vocab)) [[unlikely]]
    detail::fail_check(where, "top_k", "a count in [1, " + std::to_string(vocab) + "] (vocab)",
                       s.top_k);
  if (s.kind == SamplerKind::TopP)
    check(s.top_p > 0.0f && s.top_p <= 1.0f, where, "top_p", "a value in (0, 1]", s.top_p);
}

// Throws unless every logit is a number below +Inf (−Inf is a masked token). A NaN or +Inf
// logit is non-finite data from the model or its inputs: sample() reports it rather than turn it
// into a valid token; choose() propagates it (NaN probabilities), as softmax does.
inline void check_logits(const char* where, std::span<const float> logits) {
  for (std::size_t i = 0; i < logits.size(); ++i)
    if (!(logits[i] < std::numeric_limits<float>::infinity())) [[unlikely]]
      detail::fail_check(where, "logits[" + std::to_string(i) + "]",
                         "a number below +inf (non-finite logits: check the model and its inputs)",
                         logits[i]);
}

// The next token from `logits` (vocab entries, each a number below +Inf: see check_logits).
inline std::int32_t sample(std::span<const float> logits, const Sampler& s, Rng& rng,
                           SamplerWorkspace& ws) {
  const index n = index(logits.size());
  check_eq("sample", "logits size (= workspace vocab)", ws.vocab_, n);
  check(n > 0, "sample", "vocab", "> 0", n);
  check_sampler(s, n);
  check_logits("sample", logits);
  // Order: larger logit first, ties to the lower id (a strict weak order: no NaN).
  auto better = [&](std::int32_t a, std::int32_t b) {
    const float la = logits[std::size_t(a)], lb = logits[std::size_t(b)];
    return la > lb || (la == lb && a < b);
  };
  if (s.kind == SamplerKind::Greedy) {
    std::int32_t best = 0;
    for (std::int32_t i = 1; i < std::int32_t(n); ++i)
      if (better(i, best)) best = i;
    return best;
  }
  std::int32_t* order = ws.order_.data();
  double* p = ws.probs_.data();
  for (std::int32_t i = 0; i < std::int32_t(n); ++i) order[i] = i;
  index kept = n;
  if (s.kind == SamplerKind::TopK) {
    kept = s.top_k;
    std::partial_sort(order, order + kept, order + n, better);
  } else if (s.kind == SamplerKind::TopP) {
    std::sort(order, order + n, better);
  }
  // Softmax over the kept tokens at the temperature (in double, shifted by the largest).
  double m = -std::numeric_limits<double>::infinity();
  for (index j = 0; j < kept; ++j) m = std::max(m, double(logits[std::size_t(order[j])]));
  if (m == -std::numeric_limits<double>::infinity()) {  // every kept token masked: the lowest id
    std::int32_t best = order[0];
    for (index j = 1; j < kept; ++j) best = std::min(best, order[j]);
    return best;
  }
  double total = 0.0;
  for (index j = 0; j < kept; ++j) {
    p[j] = std::exp((double(logits[std::size_t(order[j])]) - m) / s.temperature);
    total += p[j];
  }
  if (s.kind == SamplerKind::TopP) {  // the shortest sorted prefix reaching top_p
    double mass = 0.0;
    index j = 0;
    while (j < kept && mass < s.top_p * total) mass += p[j++];
    kept = std::max<index>(j, 1);
    total = mass > 0.0 ? mass : p[0];
  }
  const double r = rng.uniform() * total;
  double acc = 0.0;
  for (index j = 0; j < kept; ++j) {
    acc += p[j];
    if (r < acc) return order[j];
  }
  for (index j = kept; j-- > 0;)  // rounding left r at the top: the last with weight
    if (p[j] > 0.0) return order[j];
  return order[0];
}

// Classification over chosen tokens (seed 003's [YES]/[NO]): out_logits[i] = logits[ids[i]],
// probs = softmax(out_logits) over the chosen ids only (computed in double). A NaN or +Inf among
// the chosen logits makes every probability NaN (as softmax does): the caller sees it.
inline void choose(std::span<const float> logits, std::span<const std::int32_t> ids,
                   std::span<float> out_logits, std::span<float> probs) {
  constexpr const char* where = "choose";
  check(!ids.empty(), where, "ids", "at least one token id", ids.size());
  check_eq(where, "out_logits size (= ids)", ids.size(), out_logits.size());
  check_eq(where, "probs size (= ids)", ids.size(), probs.size());
  double m = -std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < ids.size(); ++i) {
    check_index(where, "ids[i]", ids[i], index(logits.size()));
    out_logits[i] = logits[std::size_t(ids[i])];
    m = std::max(m, double(out_logits[i]));
  }
  double total = 0.0;
  for (std::size_t i = 0; i < ids.size(); ++i) total += std::exp(double(out_logits[i]) - m);
  for (std::size_t i = 0; i < ids.size(); ++i)
    probs[i] = static_cast<float>(std::exp(double(out_logits[i]) - m) / total);
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
