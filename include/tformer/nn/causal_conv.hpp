// Causal depthwise 1-D convolution over the sequence (seed 001's DynamicConvAttention, pinned
// down in issue 6): channel c of output row t is
//   y[t][c] (+)= b[c] + Σ_{i<k} w[c][i] · x̃[t − (k − 1) + i][c],
// where x̃ is the input preceded by a streaming state of the k − 1 rows before it (zeros at the
// start of a sequence). This is PyTorch's Conv1d(C, C, k, groups=C, padding=k − 1) with the
// last k − 1 outputs dropped; its weight [C, 1, k] is w [C, k] here. After the call the state
// holds the last k − 1 rows of x̃, so feeding a sequence in any chunks equals one pass.
#pragma once

#include <algorithm>
#include <span>

#include "tformer/core/error.hpp"
#include "tformer/core/views.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

namespace conv_kernels {

// Preconditions: shapes as in causal_conv1d; y overlaps neither x nor state.
inline void causal_conv1d(MatrixView<const float> x, MatrixView<const float> w,
                          std::span<const float> bias, MatrixView<float> state,
                          MatrixView<float> y, bool accumulate) noexcept {
  const index T = x.rows(), C = x.cols(), k = w.cols(), past = k - 1;
  // Row r of x̃ for r in [−past, T): the state for r < 0, x otherwise.
  auto row = [&](index r) -> const float* { return r < 0 ? state.row(past + r) : x.row(r); };
  for (index t = 0; t < T; ++t) {
    float* out = y.row(t);
    for (index c = 0; c < C; ++c) {
      float acc = bias.empty() ? 0.0f : bias[static_cast<std::size_t>(c)];
      const float* wc = w.row(c);
      for (index i = 0; i < k; ++i) acc += wc[i] * row(t - past + i)[c];
      out[c] = accumulate ? out[c] + acc : acc;
    }
  }
  // The new state: the last `past` rows of x̃ (older state rows first when T < past).
  if (past == 0) return;
  if (T >= past) {
    for (index r = 0; r < past; ++r) std::copy(x.row(T - past + r), x.row(T - past + r) + C, state.row(r));
  } else {
    for (index r = 0; r < past - T; ++r) std::copy(state.row(r + T), state.row(r + T) + C, state.row(r));
    for (index r = 0; r < T; ++r) std::copy(x.row(r), x.row(r) + C, state.row(past - T + r));
  }
}

}  // namespace conv_kernels

// y [T, C] = (or += when `accumulate`) the causal depthwise convolution of x [T, C] with
// w [C, k] and bias [C] (or empty), continuing from `state` [k − 1, C], which it updates.
// y and state are written while x and w are read: each must be disjoint from x, w and the
// other (checked). NaN and inf in the data propagate to the outputs whose sums hold them.
inline void causal_conv1d(MatrixView<const float> x, MatrixView<const float> w,
                          std::span<const float> bias, MatrixView<float> state,
                          MatrixView<float> y, bool accumulate = false) {
  constexpr const char* where = "causal_conv1d";
  check_view(where, "x", x);
  check_view(where, "w", w);
  check(w.cols() >= 1, where, "kernel size (w.cols)", ">= 1", w.cols());
  check_eq(where, "w.rows (= channels)", x.cols(), w.rows());
  if (!bias.empty()) check_eq(where, "bias size (= channels)", x.cols(), index(bias.size()));
  check_shape(where, "state", state, w.cols() - 1, x.cols());
  check_shape(where, "y", y, x.rows(), x.cols());
  check_disjoint(where, "y", y, "x", x);
  check_disjoint(where, "y", y, "w", w);
  check_disjoint(where, "y", y, "state", state);
  check_disjoint(where, "state", state, "x", x);
  check_disjoint(where, "state", state, "w", w);
  conv_kernels::causal_conv1d(x, w, bias, state, y, accumulate);
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
