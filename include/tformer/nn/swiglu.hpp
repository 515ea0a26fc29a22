// Gated feed-forward blocks: y = down(act(gate(x)) ⊙ up(x)), weights as PyTorch stores them:
// gate, up [I, H] and down [H, I] (H = hidden, I = intermediate).
//
//   swiglu()       dense: three GEMMs (GEMVs for one token) and one vectorised activation pass.
//   swiglu_topk()  seed 000's sparse gating: per token keep the k entries of act(gate)⊙up of
//                  largest magnitude, zero the rest, and skip the zeroed columns of `down`. The
//                  down projection then reads k rows of its transpose instead of all I, so its
//                  cost falls with k. It needs down transposed, [I, H] (TransposedWeights builds
//                  it once from the checkpoint's [H, I]).
//
// Scratch lives in an FfnWorkspace sized at construction: no call allocates (but see linear.hpp
// on Eigen's GEMM packing for many tokens).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string>

#include "tformer/core/error.hpp"
#include "tformer/core/memory.hpp"
#include "tformer/core/parallel.hpp"
#include "tformer/core/simd.hpp"
#include "tformer/core/convert.hpp"
#include "tformer/core/views.hpp"
#include "tformer/core/weight_view.hpp"
#include "tformer/nn/activation.hpp"
#include "tformer/nn/linear.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

struct SwiGluWeights {
  WeightView gate;  // [I, H], any storage type
  WeightView up;    // [I, H]
  WeightView down;  // [H, I]

  index hidden() const noexcept { return gate.cols(); }
  index intermediate() const noexcept { return gate.rows(); }
};

// Scratch for up to `max_tokens` tokens of a feed-forward block with `intermediate` width:
// the gate and up activations, and the top-k form's selections grouped by column.
class FfnWorkspace {
 public:
  FfnWorkspace(index max_tokens, index intermediate)
      : max_tokens_(checked(max_tokens, intermediate)),
        intermediate_(intermediate),
        gate_(size(max_tokens * intermediate)),
        up_(size(max_tokens * intermediate)),
        selected_(size(max_tokens * intermediate)),
        entries_(size(max_tokens * intermediate)),
        magnitude_(size(intermediate)),
        offsets_(size(intermediate + 1)),
        kept_(size(max_tokens)) {}
  index max_tokens() const noexcept { return max_tokens_; }
  index intermediate() const noexcept { return intermediate_; }
  std::size_t bytes() const noexcept {
    return gate_.bytes() + up_.bytes() + selected_.bytes() + entries_.bytes() + magnitude_.bytes() +
           offsets_.bytes() + kept_.bytes();
  }

  // [tokens, intermediate] views of the two scratch matrices.
  MatrixView<float> gate(index tokens) noexcept { return {gate_.data(), tokens, intermediate_}; }
  MatrixView<float> up(index tokens) noexcept { return {up_.data(), tokens, intermediate_}; }
  std::int32_t* selected() noexcept { return selected_.data(); }  // tokens · k
  std::int32_t* entries() noexcept { return entries_.data(); }    // tokens · k
  float* magnitude() noexcept { return magnitude_.data(); }       // intermediate
  std::int32_t* offsets() noexcept { return offsets_.data(); }    // intermediate + 1
  index* kept() noexcept { return kept_.data(); }                 // tokens

 private:
  static std::size_t size(index n) { return static_cast<std::size_t>(std::max<index>(n, 0)); }
  // Sizes are non-negative and tokens · intermediate fits the int32 column indices.
  static index checked(index max_tokens, index intermediate) {
    check(max_tokens >= 0, "FfnWorkspace", "max_tokens", ">= 0", max_tokens);
    check(intermediate >= 0, "FfnWorkspace", "intermediate", ">= 0", intermediate);
    const index n = checked_size("FfnWorkspace", "max_tokens * intermediate",
                                 {max_tokens, intermediate}, sizeof(float));
    check(n < (index(1) << 31), "FfnWorkspace", "max_tokens * intermediate", "< 2^31", n);
    return max_tokens;
  }
  index max_tokens_, intermediate_;
  AlignedBuffer<float> gate_, up_;
  AlignedBuffer<std::int32_t> selected_, entries_;
  AlignedBuffer<float> magnitude_;
  AlignedBuffer<std::int32_t> offsets_;
  AlignedBuffer<index> kept_;
};

// An owned transpose of a weight: [cols, rows] from [rows, cols]. For swiglu_topk's down
// projection, whose columns it reads as contiguous rows.
class TransposedWeights {
 public:
  // From a weight of any storage type (decoded to float: the transpose is f32).
  explicit TransposedWeights(const WeightView& w)
      : rows_(w.cols()), cols_(w.rows()), data_(elements(w)) {
    AlignedBuffer<float> row(static_cast<std::size_t>(w.cols()));
    for (index r = 0; r < w.rows(); ++r) {
      dequantize_row(w, r, row.span());
      for (index c = 0; c < w.cols(); ++c) data_[c * cols_ + r] = row[c];
    }
  }
  MatrixView<const float> view() const noexcept { return {data_.data(), rows_, cols_}; }

 private:
  static std::size_t elements(const WeightView& w) {
    check_weight_view("TransposedWeights", w);
    return static_cast<std::size_t>(
        checked_size("TransposedWeights", "rows * cols", {w.rows(), w.cols()}, sizeof(float)));
  }

  index rows_, cols_;
  AlignedBuffer<float> data_;
};

// How many intermediate entries swiglu_topk keeps per token: a count, or a fraction of the
// intermediate width (rounded to nearest, at least 1).
class TopK {
 public:
  static constexpr TopK count(index k) noexcept { return TopK(true, k, 0.0); }
  static constexpr TopK fraction(double f) noexcept { return TopK(false, 0, f); }
  // k for an intermediate width; throws unless 1 <= k <= intermediate.
  index resolve(index intermediate) const {
    index k = count_;
    if (!is_count_) {
      if (!(fraction_ > 0.0 && fraction_ <= 1.0)) [[unlikely]]
        detail::fail_check("swiglu_topk", "k fraction", "a value in (0, 1]", fraction_);
      k = std::max<index>(1, std::llround(fraction_ * static_cast<double>(intermediate)));
    }
    if (k < 1 || k > intermediate) [[unlikely]]
      detail::fail_check("swiglu_topk", "k",
                         "a count in [1, " + std::to_string(intermediate) + "] (intermediate)", k);
    return k;
  }

 private:
  constexpr TopK(bool is_count, index count, double fraction) noexcept
      : is_count_(is_count), count_(count), fraction_(fraction) {}
  bool is_count_;
  index count_;
  double fraction_;
};

namespace ffn_kernels {

// The magnitude that top-k ranks by: |x|, and +inf for NaN, so that a NaN is kept and propagates
// as it would through the dense form.
inline float rank_magnitude(float x) noexcept {
  return std::isnan(x) ? std::numeric_limits<float>::infinity() : std::abs(x);
}

// Writes to idx, in increasing order, the k indices of h[0, n) with the largest magnitude
// (rank_magnitude; ties to the lower index) and returns k (n if k >= n). O(n): nth_element over
// the magnitudes (scratch, n floats) finds the k-th largest, τ; one pass counts those above τ,
// another takes them and the first of those equal to τ.
inline index select_topk(const float* h, index n, index k, float* scratch,
                         std::int32_t* idx) noexcept {
  if (k >= n) {
    for (index j = 0; j < n; ++j) idx[j] = static_cast<std::int32_t>(j);
    return n;
  }
  for (index j = 0; j < n; ++j) scratch[j] = rank_magnitude(h[j]);
  std::nth_element(scratch, scratch + (k - 1), scratch + n, std::greater<float>());
  const float tau = scratch[k - 1];
  index above = 0;
  for (index j = 0; j < n; ++j) above += rank_magnitude(h[j]) > tau;
  index equal_left = k - above, count = 0;
  for (index j = 0; j < n && count < k; ++j) {
    const float m = rank_magnitude(h[j]);
    if (m > tau || (m == tau && equal_left-- > 0)) idx[count++] = static_cast<std::int32_t>(j);
  }
  return count;
}

// y[0, m) = Σ_{j in idx[0, k)} h[j] · rows[j][0, m): one token's down projection over its kept
// columns, reading k rows of the transposed weight, four at a time.
inline void gather_rows_axpy(const float* h, const std::int32_t* idx, index k,
                             MatrixView<const float> rows, float* y) noexcept {
  const index m = rows.cols();
  std::fill(y, y + m, 0.0f);
  index j = 0;
  for (; j + 4 <= k; j += 4) {
    const float* r0 = rows.row(idx[j]);
    const float* r1 = rows.row(idx[j + 1]);
    const float* r2 = rows.row(idx[j + 2]);
    const float* r3 = rows.row(idx[j + 3]);
    const float h0 = h[idx[j]], h1 = h[idx[j + 1]], h2 = h[idx[j + 2]], h3 = h[idx[j + 3]];
    index i = 0;
#if TFORMER_HAS_SIMD
    using B = simd::batch;
    constexpr index W = static_cast<index>(B::size);
    const B b0(h0), b1(h1), b2(h2), b3(h3);
    for (const index vector_end = m / W * W; i < vector_end; i += W) {
      B acc = B::load_unaligned(y + i);
      acc = xsimd_compat::fma(b0, B::load_unaligned(r0 + i), acc);
      acc = xsimd_compat::fma(b1, B::load_unaligned(r1 + i), acc);
      acc = xsimd_compat::fma(b2, B::load_unaligned(r2 + i), acc);
      acc = xsimd_compat::fma(b3, B::load_unaligned(r3 + i), acc);
      acc.store_unaligned(y + i);
    }
#endif
    for (; i < m; ++i) y[i] += h0 * r0[i] + h1 * r1[i] + h2 * r2[i] + h3 * r3[i];
  }
  for (; j < k; ++j) {
    const float* r = rows.row(idx[j]);
    const float hj = h[idx[j]];
    for (index i = 0; i < m; ++i) y[i] += hj * r[i];
  }
}

// y[t] += v · row for the (token t, value v) pairs of one column: the row is read once (from L1
// after the first token) for all tokens that kept this column.
inline void scatter_row_axpy(const float* row, index m, const std::int32_t* tokens,
                             const float* values, index count, MatrixView<float> y) noexcept {
  for (index p = 0; p < count; ++p) {
    float* yt = y.row(tokens[p]);
    const float v = values[p];
    index i = 0;
#if TFORMER_HAS_SIMD
    using B = simd::batch;
    constexpr index W = static_cast<index>(B::size);
    const B vb(v);
    for (const index vector_end = m / W * W; i < vector_end; i += W)
      xsimd_compat::fma(vb, B::load_unaligned(row + i), B::load_unaligned(yt + i)).store_unaligned(yt + i);
#endif
    for (; i < m; ++i) yt[i] += v * row[i];
  }
}

// The top-k down projection of many tokens at once: each token's kept columns (selected[t·k ..])
// are regrouped by column (a counting sort into entries/values), then each kept column's row of
// downᵀ is read once and applied to all tokens that kept it. Cost: the union of kept rows read
// once, plus T·k·H multiply-adds on y rows held in cache.
inline void sparse_down(MatrixView<const float> h, const std::int32_t* selected, const index* kept,
                        index k, MatrixView<const float> down_t, MatrixView<float> y,
                        FfnWorkspace& ws) noexcept {
  const index n = h.cols(), tokens = h.rows();
  std::int32_t* offsets = ws.offsets();
  std::int32_t* entries = ws.entries();
  float* values = ws.up(tokens).data();  // free once the activation has been applied
  std::fill(offsets, offsets + n + 1, 0);
  for (index t = 0; t < tokens; ++t)
    for (index j = 0; j < kept[t]; ++j) ++offsets[selected[t * k + j] + 1];
  for (index j = 0; j < n; ++j) offsets[j + 1] += offsets[j];
  for (index t = 0; t < tokens; ++t) {
    for (index j = 0; j < kept[t]; ++j) {
      const std::int32_t c = selected[t * k + j];
      const std::int32_t p = offsets[c]++;
      entries[p] = static_cast<std::int32_t>(t);
      values[p] = h.row(t)[c];
    }
  }
  for (index j = n; j > 0; --j) offsets[j] = offsets[j - 1];  // undo the advance
  offsets[0] = 0;
  for (index t = 0; t < tokens; ++t) std::fill(y.row(t), y.row(t) + y.cols(), 0.0f);
  for (index c = 0; c < n; ++c) {
    const index count = offsets[c + 1] - offsets[c];
    if (count > 0)
      scatter_row_axpy(down_t.row(c), down_t.cols(), entries + offsets[c], values + offsets[c],
                       count, y);
  }
}

// The down projection of the top-k form: per token, selects the k entries of h [T, I] of largest
// magnitude and projects them with down_t [I, H] into y [T, H]. One token reads its k rows of
// down_t directly; many tokens are regrouped by column (sparse_down). h's rows are not changed.
inline void topk_down(MatrixView<const float> h, index k, MatrixView<const float> down_t,
                      MatrixView<float> y, FfnWorkspace& ws) noexcept {
  if (h.rows() == 1) {
    const index n = select_topk(h.row(0), h.cols(), k, ws.magnitude(), ws.selected());
    gather_rows_axpy(h.row(0), ws.selected(), n, down_t, y.row(0));
    return;
  }
  for (index t = 0; t < h.rows(); ++t)
    ws.kept()[t] = select_topk(h.row(t), h.cols(), k, ws.magnitude(), ws.selected() + t * k);
  sparse_down(h, ws.selected(), ws.kept(), k, down_t, y, ws);
}

// Shared first half of both forms: ws.gate = act(x·gateᵀ) ⊙ (x·upᵀ), [T, I], with the rows of
// gate and up split over the executor; each chunk applies the activation to its own columns, a
// token at a time, so the bits do not depend on the number of workers.
template <Executor E>
MatrixView<float> gated_intermediate(const E& exec, MatrixView<const float> x,
                                     const SwiGluWeights& w, FfnWorkspace& ws, Activation act) {
  const index tokens = x.rows();
  MatrixView<float> g = ws.gate(tokens), u = ws.up(tokens);
  for_row_chunks(exec, w.intermediate(), [&](index first, index n) {
    linear_kernels::project(x, w.gate.row_slice(first, n), {}, g.col_slice(first, n));
    linear_kernels::project(x, w.up.row_slice(first, n), {}, u.col_slice(first, n));
    for (index t = 0; t < tokens; ++t)
      activation_kernels::gated(g.row(t) + first, u.row(t) + first, g.row(t) + first, n, act);
  });
  return g;
}

// y = down(act(gate(x)) ⊙ up(x)), every projection split by rows over exec. Preconditions:
// shapes agree, x.rows() <= ws.max_tokens(), y does not overlap the workspace (y may be x).
template <Executor E>
void swiglu_rows(const E& exec, MatrixView<const float> x, const SwiGluWeights& w,
                 MatrixView<float> y, FfnWorkspace& ws, Activation act) {
  parallel_project(exec, gated_intermediate(exec, x, w, ws, act), w.down, y);
}

// The top-k form keeping `kept` entries per token: gate and up split over exec, the selection
// and the sparse down projection (down_t [I, H]) on the calling thread. Preconditions as above,
// and kept in [1, I].
template <Executor E>
void swiglu_topk_rows(const E& exec, MatrixView<const float> x, const SwiGluWeights& w,
                      MatrixView<const float> down_t, index kept, MatrixView<float> y,
                      FfnWorkspace& ws, Activation act) {
  topk_down(gated_intermediate(exec, x, w, ws, act), kept, down_t, y, ws);
}

}  // namespace ffn_kernels

namespace ffn_detail {
// Checks x, the gate and up weights and the workspace (callers check y and down).
inline void check_ffn(const char* where, MatrixView<const float> x, const SwiGluWeights& w,
                      const FfnWorkspace& ws, const Activation& act) {
  check_activation(where, act);
  check_view(where, "x", x);
  check_view(where, "w.gate", w.gate);
  check_shape(where, "w.up", w.up, w.intermediate(), w.hidden());
  check_eq(where, "x.cols (= hidden)", w.hidden(), x.cols());
  if (x.rows() > ws.max_tokens()) [[unlikely]]
    detail::fail_check(where, "tokens",
                       "<= the workspace's max_tokens (" + std::to_string(ws.max_tokens()) + ")",
                       x.rows());
  check_eq(where, "workspace intermediate", w.intermediate(), ws.intermediate());
}
}  // namespace ffn_detail

// y [T, H] = down(act(gate(x)) ⊙ up(x)) for x [T, H]. y may be x: x is read before y is written.
// The rows of each projection are split over `exec` (results do not depend on its threads).
template <Executor E = SerialExecutor>
void swiglu(MatrixView<const float> x, const SwiGluWeights& w, MatrixView<float> y,
            FfnWorkspace& ws, Activation act = {}, const E& exec = {}) {
  constexpr const char* where = "swiglu";
  ffn_detail::check_ffn(where, x, w, ws, act);
  check_shape(where, "w.down", w.down, w.hidden(), w.intermediate());
  check_shape(where, "y", y, x.rows(), w.hidden());
  ffn_kernels::swiglu_rows(exec, x, w, y, ws, act);
}

// Top-k sparse form: per token, keeps the k entries of act(gate(x)) ⊙ up(x) of largest
// magnitude (ties to the lower index) and projects only those: y = Σ_kept h_j · down[:, j].
// `down_t` is down transposed, [I, H] (TransposedWeights); w.down is not read. With k = I it
// equals swiglu() up to rounding. The gate and up projections are split over `exec`; the
// selection and the sparse down projection run on the calling thread.
template <Executor E = SerialExecutor>
void swiglu_topk(MatrixView<const float> x, const SwiGluWeights& w, MatrixView<const float> down_t,
                 TopK k, MatrixView<float> y, FfnWorkspace& ws, Activation act = {},
                 const E& exec = {}) {
  constexpr const char* where = "swiglu_topk";
  ffn_detail::check_ffn(where, x, w, ws, act);
  check_shape(where, "down_t", down_t, w.intermediate(), w.hidden());
  check_shape(where, "y", y, x.rows(), w.hidden());
  ffn_kernels::swiglu_topk_rows(exec, x, w, down_t, k.resolve(w.intermediate()), y, ws, act);
}

// The masked intermediate of swiglu_topk, for inspection: h [T, I] = act(gate(x)) ⊙ up(x) with
// all but the k largest-magnitude entries of each row set to zero.
inline void swiglu_topk_intermediate(MatrixView<const float> x, const SwiGluWeights& w, TopK k,
                                     MatrixView<float> h, FfnWorkspace& ws, Activation act = {}) {
  constexpr const char* where = "swiglu_topk_intermediate";
  ffn_detail::check_ffn(where, x, w, ws, act);
  check_shape(where, "h", h, x.rows(), w.intermediate());
  const index kept = k.resolve(w.intermediate());
  const MatrixView<float> full = ffn_kernels::gated_intermediate(SerialExecutor{}, x, w, ws, act);
  for (index t = 0; t < x.rows(); ++t) {
    const index n =
        ffn_kernels::select_topk(full.row(t), full.cols(), kept, ws.magnitude(), ws.selected());
    std::fill(h.row(t), h.row(t) + h.cols(), 0.0f);
    for (index j = 0; j < n; ++j) h.row(t)[ws.selected()[j]] = full.row(t)[ws.selected()[j]];
  }
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
