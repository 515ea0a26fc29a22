// Learned sinusoidal absolute position embeddings (seed 001): a [max_positions, hidden] table
// initialised with the Transformer formula, loadable as learned weights, L2-normalised per
// position when used (times an optional scale) and added to the token embeddings:
//   table[p][2i] = sin(p · 10000^(−2i/hidden)),  table[p][2i + 1] = cos(p · 10000^(−2i/hidden)).
// Angles in double. With an odd hidden the last column is a sin.
#pragma once

#include <cmath>

#include "tformer/core/error.hpp"
#include "tformer/core/positions.hpp"
#include "tformer/core/views.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

// Fills table [max_positions, hidden] with the sinusoidal formula. Throws unless base is finite
// and > 1.
inline void sinusoidal_init(MatrixView<float> table, double base = 10000.0) {
  check_view("sinusoidal_init", "table", table);
  check(std::isfinite(base) && base > 1.0, "sinusoidal_init", "base", "a finite value > 1", base);
  const index n = table.cols();
  for (index p = 0; p < table.rows(); ++p)
    for (index c = 0; c < n; ++c) {
      const double angle = double(p) * std::pow(base, -double(c - c % 2) / double(n));
      table.row(p)[c] = static_cast<float>(c % 2 == 0 ? std::sin(angle) : std::cos(angle));
    }
}

// x[t] += scale · table[positions(t)] / ‖table[positions(t)]‖ for each row t of x [T, hidden]
// (a zero row adds nothing). Throws unless scale is finite and x does not overlap the table.
inline void add_position_embeddings(MatrixView<float> x, MatrixView<const float> table,
                                    const Positions& positions, float scale = 1.0f) {
  constexpr const char* where = "add_position_embeddings";
  check_view(where, "x", x);
  check_view(where, "table", table);
  check_eq(where, "table cols (= x.cols)", x.cols(), table.cols());
  check_disjoint(where, "x", x, "table", table);
  check(std::isfinite(scale), where, "scale", "a finite value", scale);
  positions.validate(where, x.rows(), table.rows());
  for (index t = 0; t < x.rows(); ++t) {
    const float* e = table.row(positions(t));
    double ss = 0.0;
    for (index c = 0; c < x.cols(); ++c) ss += double(e[c]) * double(e[c]);
    if (ss == 0.0) continue;
    const float f = static_cast<float>(double(scale) / std::sqrt(ss));
    float* r = x.row(t);
    for (index c = 0; c < x.cols(); ++c) r[c] += f * e[c];
  }
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
