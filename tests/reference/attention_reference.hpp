// Plain double-precision attention: softmax(cap(q·kᵀ·scale) + bias, masked)·v, written from
// the definition in nn/attention.hpp's header. Shares no code with include/tformer.
#pragma once

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
};

// Output [head_dim] of query head h, vector q, at position p.
inline std::vector<double> attend(const AttentionCase& c, int h, const float* q, int p) {
  const int g = h / (c.q_heads / c.kv_heads);
  std::vector<double> s;
  std::vector<int> keys;
  for (int j = 0; j < c.length; ++j) {
    if (c.causal && j > p) continue;
    if (c.window > 0 && j <= p - c.window) continue;
    if (c.key_valid && !(*c.key_valid)[j]) continue;
    double dot = 0;
    const float* k = c.keys->data() + (std::size_t(g) * c.length + j) * c.head_dim;
    for (int i = 0; i < c.head_dim; ++i) dot += double(q[i]) * k[i];
    double score = dot * c.scale;
    if (c.softcap > 0) score = c.softcap * std::tanh(score / c.softcap);
    score += c.bias ? c.bias(h, p, j) : 0.0;
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
