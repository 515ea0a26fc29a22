// Plain double-precision references for linear layers, RMSNorm, activations, SwiGLU (dense and
// top-k) and mixture of experts, written from their definitions. Shares no code with
// include/tformer. Matrices are row-major std::vector<float> with explicit sizes.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace ref {

using Vec = std::vector<double>;

// W [out, in] row-major; y = W x + b.
inline Vec matvec(const std::vector<float>& w, int out, int in, const Vec& x,
                  const std::vector<float>* bias = nullptr) {
  Vec y(out, 0.0);
  for (int o = 0; o < out; ++o) {
    double s = 0;
    for (int i = 0; i < in; ++i) s += double(w[std::size_t(o) * in + i]) * x[i];
    y[o] = s + (bias ? double((*bias)[o]) : 0.0);
  }
  return y;
}

inline Vec rmsnorm(const Vec& x, const std::vector<float>& w, double eps, bool one_plus) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double inv = 1.0 / std::sqrt(ss / x.size() + eps);
  Vec y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * (one_plus ? 1.0 + w[i] : w[i]);
  return y;
}

inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
inline double silu(double x) { return x * sigmoid(x); }
inline double gelu_tanh(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

enum class Act { SiLU, GeluTanh, SiluSigmoid };
inline double activate(Act a, double x, double beta = 1.0) {
  switch (a) {
    case Act::SiLU:
      return silu(x);
    case Act::GeluTanh:
      return gelu_tanh(x);
    case Act::SiluSigmoid:
      return silu(x) * sigmoid(beta * x);
  }
  return 0;
}

struct Ffn {
  const std::vector<float>* gate;  // [I, H]
  const std::vector<float>* up;    // [I, H]
  const std::vector<float>* down;  // [H, I]
  int hidden, intermediate;
};

// h = act(gate x) ⊙ up x.
inline Vec intermediate(const Ffn& f, const Vec& x, Act a, double beta = 1.0) {
  Vec g = matvec(*f.gate, f.intermediate, f.hidden, x);
  Vec u = matvec(*f.up, f.intermediate, f.hidden, x);
  for (int j = 0; j < f.intermediate; ++j) g[j] = activate(a, g[j], beta) * u[j];
  return g;
}

// Keeps the k entries of largest |h| (ties to the lower index), zeroes the rest.
inline Vec keep_topk(const Vec& h, int k) {
  std::vector<int> idx(h.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](int a, int b) { return std::abs(h[a]) > std::abs(h[b]); });
  Vec out(h.size(), 0.0);
  for (int j = 0; j < k; ++j) out[idx[j]] = h[idx[j]];
  return out;
}

inline Vec swiglu(const Ffn& f, const Vec& x, Act a, int topk = -1, double beta = 1.0) {
  Vec h = intermediate(f, x, a, beta);
  if (topk >= 0) h = keep_topk(h, topk);
  return matvec(*f.down, f.hidden, f.intermediate, h);
}

// Router: returns (expert, weight) pairs of one token.
inline std::vector<std::pair<int, double>> route(const Vec& logits, int k, bool softmax_first,
                                                 bool renormalize) {
  const int E = int(logits.size());
  std::vector<int> idx(E);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  const double top = logits[idx[0]];
  std::vector<std::pair<int, double>> out;
  if (softmax_first) {
    double z = 0;
    for (double l : logits) z += std::exp(l - top);
    double kept = 0;
    for (int j = 0; j < k; ++j) {
      out.push_back({idx[j], std::exp(logits[idx[j]] - top) / z});
      kept += out.back().second;
    }
    if (renormalize)
      for (auto& p : out) p.second /= kept;
  } else {
    double z = 0;
    for (int j = 0; j < k; ++j) z += std::exp(logits[idx[j]] - top);
    for (int j = 0; j < k; ++j) out.push_back({idx[j], std::exp(logits[idx[j]] - top) / z});
  }
  return out;
}

}  // namespace ref
