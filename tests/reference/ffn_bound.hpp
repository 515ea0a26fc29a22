// A first-order bound on the float rounding of a SwiGLU block y = down(act(gate x) ⊙ up x), per
// output, for tests that compare the library's float result with the double reference
// (ffn_reference.hpp). With G_j = Σ_i |x_i·Wg_ji| and U_j likewise (the magnitudes the gate and up
// dot products round against), the intermediate h_j carries an error of at most
// (H + 2)·u·(L·G_j·|up_j| + |a_j|·U_j) + 16·u·|h_j| + 8·u·|g_j·up_j| (the activation and the
// product: SiLU's and seed 000's errors are relative, GELU-tanh's 4 ulp of |g_j|), L = 1.5 bounding
// |act'| for the three activations; the down projection adds (I + 2)·u·Σ_j |Wd_oj·h_j|.
#pragma once

#include <cfloat>
#include <cmath>
#include <vector>

#include "reference/ffn_reference.hpp"

namespace ref {

inline constexpr double float_unit = FLT_EPSILON / 2;  // u: float's unit roundoff

// The bound on each entry of the intermediate h for token x.
inline Vec intermediate_error(const Ffn& f, const Vec& x, Act act, double beta = 1.0) {
  const int H = f.hidden, I = f.intermediate;
  const Vec h = intermediate(f, x, act, beta);
  Vec h_err(I);
  for (int j = 0; j < I; ++j) {
    double g = 0, gm = 0, up = 0, um = 0;
    for (int i = 0; i < H; ++i) {
      const double wg = (*f.gate)[std::size_t(j) * H + i], wu = (*f.up)[std::size_t(j) * H + i];
      g += wg * x[i];
      gm += std::abs(wg * x[i]);
      up += wu * x[i];
      um += std::abs(wu * x[i]);
    }
    const double a = activate(act, g, beta);
    h_err[j] = (H + 2) * float_unit * (1.5 * gm * std::abs(up) + std::abs(a) * um) +
               16 * float_unit * std::abs(h[j]) + 8 * float_unit * std::abs(g * up);
  }
  return h_err;
}

// The bound on each output of y for token x, with h restricted to `kept` (all if empty).
inline Vec swiglu_error_bound(const Ffn& f, const Vec& x, Act act, double beta = 1.0,
                              const std::vector<bool>& kept = {}) {
  const int H = f.hidden, I = f.intermediate;
  const Vec h = intermediate(f, x, act, beta);
  const Vec h_err = intermediate_error(f, x, act, beta);
  Vec bound(H);
  for (int o = 0; o < H; ++o) {
    double m = 0, e = 0;
    for (int j = 0; j < I; ++j) {
      if (!kept.empty() && !kept[j]) continue;
      const double wd = (*f.down)[std::size_t(o) * I + j];
      m += std::abs(wd * h[j]);
      e += std::abs(wd) * h_err[j];
    }
    bound[o] = (I + 2) * float_unit * m + e + 1e-30;
  }
  return bound;
}

}  // namespace ref
