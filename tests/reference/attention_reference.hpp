// Plain double-precision attention: softmax(cap(q·kᵀ·scale) + bias, masked)·v, written from
// the definition in nn/attention.hpp's header. Shares no code with include/tformer.
// Attention sinks: a key j < sinks outside the window (j <= p − window) is visible too, scored
// with the sink query and with the bias at the sink position: p, or with sinks_in_cache the
// query's place in a cache of sinks + window, min(p, sinks + window − 1).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

namespace ref {

struct AttentionCase {
  int q_heads, kv_heads, head_dim;
  int length;                        // keys [0, length)
  const std::vector<float>* keys;    // [kv_heads][length][head_dim]
  const std::vector<float>* values;  // same
  double scale;
  double softcap = 0;
  int window = 0;
  bool causal = true;
  const std::vector<std::uint8_t>* key_valid = nullptr;
  std::function<double(int, int, int)> bias = nullptr;
  int sinks = 0;
  bool sinks_in_cache = false;
};

// Output [head_dim] of query head h, vector q (sink_q for the sinks; null: q), at position p.
inline std::vector<double> attend(const AttentionCase& c, int h, const float* q, int p,
                                  const float* sink_q = nullptr) {
  const int g = h / (c.q_heads / c.kv_heads);
  std::vector<double> s;
  std::vector<int> keys;
  for (int j = 0; j < c.length; ++j) {
    if (c.key_valid && !(*c.key_valid)[j]) continue;
    const bool in_window = !(c.causal && j > p) && !(c.window > 0 && j <= p - c.window);
    const bool sink = !in_window && c.window > 0 && j < c.sinks && j <= p - c.window;
    if (!in_window && !sink) continue;
    const float* qv = sink && sink_q ? sink_q : q;
    const int at = sink && c.sinks_in_cache ? std::min(p, c.sinks + c.window - 1) : p;
    double dot = 0;
    const float* k = c.keys->data() + (std::size_t(g) * c.length + j) * c.head_dim;
    for (int i = 0; i < c.head_dim; ++i) dot += double(qv[i]) * k[i];
    double score = dot * c.scale;
    if (c.softcap > 0) score = c.softcap * std::tanh(score / c.softcap);
    score += c.bias ? c.bias(h, at, j) : 0.0;
    s.push_back(score);
    keys.push_back(j);
  }
  std::vector<double> out(c.head_dim, 0.0);
  if (s.empty()) return out;
  double m = s[0];
  for (double v : s) m = std::max(m, v);
  double z = 0;
  for (double& v : s) z += (v = std::exp(v - m));
  for (std::size_t n = 0; n < s.size(); ++n) {
    const float* v = c.values->data() + (std::size_t(g) * c.length + keys[n]) * c.head_dim;
    for (int i = 0; i < c.head_dim; ++i) out[i] += s[n] / z * v[i];
  }
  return out;
}

}  // namespace ref
