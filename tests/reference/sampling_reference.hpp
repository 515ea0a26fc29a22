// The samplers of tformer/model/sampling.hpp in plain double: bias, penalties, full sort, each
// truncation as its definition reads, one draw. Independent of the library's kernels (no
// threshold gathering, no float sums); shares only the Sampler struct, which it reads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <vector>

#include "tformer/model/sampling.hpp"

namespace ref {

struct SampleResult {
  std::int32_t token = 0;
  // How far every decision was from going the other way, relative to its scale: the draw from
  // the edges of its bin, top_p's mass from its target, min_p's ratio and top_k's and greedy's
  // logits from the next token's. Float rounding in the library may flip a decision only when
  // this is tiny.
  double margin = std::numeric_limits<double>::infinity();
};

inline std::vector<double> adjusted_logits(std::span<const float> logits, const tformer::Sampler& s,
                                           std::span<const std::int32_t> history) {
  std::vector<double> l(logits.begin(), logits.end());
  for (const tformer::LogitBias& b : s.logit_bias) l[std::size_t(b.token)] += b.bias;
  if (s.penalty_window > 0 && std::size_t(s.penalty_window) < history.size())
    history = history.last(std::size_t(s.penalty_window));
  std::vector<int> count(l.size(), 0);
  for (std::int32_t t : history) ++count[std::size_t(t)];
  for (std::size_t t = 0; t < l.size(); ++t) {
    if (count[t] == 0) continue;
    const double r = s.repetition_penalty;
    l[t] = l[t] > 0 ? l[t] / r : l[t] * r;
    l[t] -= double(s.frequency_penalty) * count[t] + double(s.presence_penalty);
  }
  return l;
}

// sample(logits, s, …) with the draw's uniform number u in [0, 1).
inline SampleResult sample(std::span<const float> logits, const tformer::Sampler& s, double u,
                           std::span<const std::int32_t> history = {}) {
  const std::vector<double> l = adjusted_logits(logits, s, history);
  const std::size_t n = l.size();
  constexpr double inf = std::numeric_limits<double>::infinity();
  SampleResult out;
  const double scale = 1.0 + std::abs(*std::max_element(l.begin(), l.end()));
  std::vector<std::int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::int32_t a, std::int32_t b) { return l[std::size_t(a)] > l[std::size_t(b)]; });
  const auto at = [&](std::size_t j) { return l[std::size_t(order[j])]; };
  const double m = at(0);
  if (m == -inf) return {0, inf};
  if (s.kind == tformer::SamplerKind::Greedy) {
    out.token = order[0];
    if (n > 1) out.margin = (at(0) - at(1)) / scale;
    return out;
  }
  const double T = s.temperature;
  const bool truncated = s.top_k > 0 || s.top_p < 1.0f || s.min_p > 0.0f;
  if (!truncated) std::iota(order.begin(), order.end(), 0);  // drawn in id order
  std::vector<double> w(n);
  for (std::size_t j = 0; j < n; ++j) w[j] = std::exp((at(j) - m) / T);
  std::size_t kept = n;
  if (s.top_k > 0) {
    kept = std::size_t(s.top_k);
    if (kept < n) out.margin = std::min(out.margin, (at(kept - 1) - at(kept)) / scale);
  }
  if (s.top_p < 1.0f) {
    double total = 0;
    for (std::size_t j = 0; j < kept; ++j) total += w[j];
    const double target = double(s.top_p) * total;
    double mass = 0;
    std::size_t j = 0;
    while (j < kept && mass < target) mass += w[j++];
    if (j < kept) out.margin = std::min(out.margin, std::min(target - (mass - w[j - 1]), mass - target) / total);
    kept = std::max<std::size_t>(j, 1);
  }
  if (s.min_p > 0.0f) {
    const double bound = std::log(double(s.min_p));
    while (kept > 1 && (at(kept - 1) - m) / T < bound) {
      out.margin = std::min(out.margin, std::abs((at(kept - 1) - m) / T - bound));
      --kept;
    }
    if (kept < n) out.margin = std::min(out.margin, std::abs((at(kept) - m) / T - bound));
    out.margin = std::min(out.margin, std::abs((at(kept - 1) - m) / T - bound));
  }
  // The draw: over the kept tokens in id order.
  std::vector<std::pair<std::int32_t, double>> draw;
  for (std::size_t j = 0; j < kept; ++j) draw.push_back({order[j], w[j]});
  std::sort(draw.begin(), draw.end());
  double total = 0;
  for (const auto& [t, x] : draw) total += x;
  const double r = u * total;
  double acc = 0;
  for (const auto& [t, x] : draw) {
    if (x == 0) continue;
    if (r < acc + x) {
      out.token = t;
      out.margin = std::min(out.margin, std::min(r - acc, acc + x - r) / total);
      return out;
    }
    acc += x;
  }
  return {draw.back().first, 0.0};
}

// log softmax(logits)[token] in double.
inline double logprob(std::span<const float> logits, std::int32_t token) {
  double m = -std::numeric_limits<double>::infinity();
  for (float x : logits) m = std::max(m, double(x));
  double z = 0;
  for (float x : logits) z += std::exp(double(x) - m);
  return double(logits[std::size_t(token)]) - m - std::log(z);
}

}  // namespace ref
