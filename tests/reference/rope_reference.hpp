// Plain double-precision RoPE, written from the formulas in docs/CONVENTIONS.md for clarity.
// Shares no code with include/tformer: the tests compare the two.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numbers>
#include <vector>

namespace ref {

// f_i = base^(-2i/d), i = 0 … d/2 − 1.
inline std::vector<double> default_inv_freq(int d, double base) {
  std::vector<double> f;
  for (int i = 0; 2 * i < d; ++i) f.push_back(1.0 / std::pow(base, (2.0 * i) / d));
  return f;
}

inline std::vector<double> linear_inv_freq(int d, double base, double s) {
  std::vector<double> f = default_inv_freq(d, base);
  for (auto& x : f) x = x / s;
  return f;
}

inline std::vector<double> dynamic_ntk_inv_freq(int d, double base, double s, double l0,
                                                double seq_len) {
  const double len = seq_len > l0 ? seq_len : l0;
  const double new_base = base * std::pow(s * len / l0 - (s - 1.0), d / (d - 2.0));
  return default_inv_freq(d, new_base);
}

// YaRN's inverse frequencies, ramp written per the formula: inv_i = (f_i/s)·ramp_i + f_i·(1 −
// ramp_i).
inline std::vector<double> yarn_inv_freq(int d, double base, double s, double l0,
                                         double beta_fast = 32, double beta_slow = 1,
                                         bool truncate = true) {
  auto corr = [&](double r) {
    return d * std::log(l0 / (2 * std::numbers::pi * r)) / (2 * std::log(base));
  };
  double low = corr(beta_fast), high = corr(beta_slow);
  if (truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  if (low < 0) low = 0;
  if (high > d - 1) high = d - 1;
  if (low == high) high = high + 0.001;
  std::vector<double> f = default_inv_freq(d, base);
  for (std::size_t i = 0; i < f.size(); ++i) {
    double ramp = (static_cast<double>(i) - low) / (high - low);
    ramp = ramp < 0 ? 0 : (ramp > 1 ? 1 : ramp);
    f[i] = f[i] / s * ramp + f[i] * (1 - ramp);
  }
  return f;
}

inline double yarn_default_attention_factor(double s) { return 0.1 * std::log(s) + 1.0; }

inline std::vector<double> longrope_inv_freq(int d, double base, const std::vector<double>& e) {
  std::vector<double> f;
  for (int i = 0; 2 * i < d; ++i) f.push_back(1.0 / (e[i] * std::pow(base, (2.0 * i) / d)));
  return f;
}

inline std::vector<double> llama3_inv_freq(int d, double base, double s, double lo, double hi,
                                           double l0) {
  std::vector<double> f = default_inv_freq(d, base);
  for (auto& x : f) {
    const double lambda = 2 * std::numbers::pi / x;
    if (lambda < l0 / hi) {
      // unchanged
    } else if (lambda > l0 / lo) {
      x = x / s;
    } else {
      const double t = (l0 / lambda - lo) / (hi - lo);
      x = (1 - t) * x / s + t * x;
    }
  }
  return f;
}

enum class Layout { Interleaved, RotateHalf };

// Index of the two members of pair i for rotary dimension d.
inline std::size_t pair_first(Layout l, std::size_t i) {
  return l == Layout::Interleaved ? 2 * i : i;
}
inline std::size_t pair_second(Layout l, std::size_t i, std::size_t d) {
  return l == Layout::Interleaved ? 2 * i + 1 : i + d / 2;
}

// RoPE of one head vector x (any length >= d) at position `pos`; `sign` = −1 for the inverse.
inline std::vector<double> rope(const std::vector<double>& x, std::size_t d, Layout layout,
                                double pos, const std::vector<double>& inv_freq,
                                double attention_factor = 1.0, double sign = 1.0) {
  std::vector<double> y = x;
  for (std::size_t i = 0; i < d / 2; ++i) {
    const double angle = sign * pos * inv_freq[i];
    const double c = attention_factor * std::cos(angle);
    const double s = attention_factor * std::sin(angle);
    const std::size_t a = pair_first(layout, i), b = pair_second(layout, i, d);
    y[a] = x[a] * c - x[b] * s;
    y[b] = x[a] * s + x[b] * c;
  }
  return y;
}

}  // namespace ref
