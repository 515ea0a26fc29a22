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
#include <span>
#include <string>

#include "tformer/core/error.hpp"
#include "tformer/core/memory.hpp"
#include "tformer/core/simd.hpp"
#include "tformer/core/views.hpp"
#include "tformer/nn/activation.hpp"
#include "tformer/nn/linear.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

struct SwiGluWeights {
  MatrixView<const float> gate;  // [I, H]
  MatrixView<const float> up;    // [I, H]
  MatrixView<const float> down;  // [H, I]

  index hidden() const noexcept { return gate.cols(); }
  index intermediate() const noexcept { return gate.rows(); }
};

// Scratch for up to `max_tokens` tokens of a feed-forward block with `intermediate` width.
class FfnWorkspace {
 public:
  FfnWorkspace(index max_tokens, index intermediate)
      : max_tokens_(max_tokens),
        intermediate_(intermediate),
        gate_(static_cast<std::size_t>(max_tokens * intermediate)),
        up_(static_cast<std::size_t>(max_tokens * intermediate)),
        order_(static_cast<std::size_t>(intermediate)) {
    check(max_tokens >= 0 && intermediate >= 0, "FfnWorkspace", "sizes", "non-negative",
          max_tokens < 0 ? max_tokens : intermediate);
  }
  index max_tokens() const noexcept { return max_tokens_; }
  index intermediate() const noexcept { return intermediate_; }
  std::size_t bytes() const noexcept { return gate_.bytes() + up_.bytes() + order_.bytes(); }

  // [tokens, intermediate] views of the two scratch matrices.
  MatrixView<float> gate(index tokens) noexcept { return {gate_.data(), tokens, intermediate_}; }
  MatrixView<float> up(index tokens) noexcept { return {up_.data(), tokens, intermediate_}; }
  std::int32_t* order() noexcept { return order_.data(); }

 private:
  index max_tokens_, intermediate_;
  AlignedBuffer<float> gate_, up_;
  AlignedBuffer<std::int32_t> order_;
};

// An owned transpose of a weight: [cols, rows] from [rows, cols]. For swiglu_topk's down
// projection, whose columns it reads as contiguous rows.
class TransposedWeights {
 public:
  explicit TransposedWeights(MatrixView<const float> w)
      : rows_(w.cols()), cols_(w.rows()), data_(static_cast<std::size_t>(w.rows() * w.cols())) {
    check_view("TransposedWeights", "w", w);
    for (index r = 0; r < w.rows(); ++r)
      for (index c = 0; c < w.cols(); ++c) data_[c * cols_ + r] = w.row(r)[c];
  }
  MatrixView<const float> view() const noexcept { return {data_.data(), rows_, cols_}; }

 private:
  index rows_, cols_;
  AlignedBuffer<float> data_;
};

// How many intermediate entries swiglu_topk keeps per token: a count, or a fraction of the
// intermediate width (rounded to nearest, at least 1).
class TopK {
 public:
  static constexpr TopK count(index k) noexcept { return TopK(k, 0.0); }
  static constexpr TopK fraction(double f) noexcept { return TopK(-1, f); }
  // k for an intermediate width; throws unless 1 <= k <= intermediate.
  index resolve(index intermediate) const {
    if (count_ >= 0) {
      if (count_ < 1 || count_ > intermediate) [[unlikely]]
        detail::fail_check("swiglu_topk", "k",
                           "a count in [1, " + std::to_string(intermediate) + "] (intermediate)",
                           count_);
      return count_;
    }
    check(fraction_ > 0.0 && fraction_ <= 1.0, "swiglu_topk", "k fraction", "a value in (0, 1]",
          fraction_);
    return std::max<index>(1, std::llround(fraction_ * static_cast<double>(intermediate)));
  }

 private:
  constexpr TopK(index count, double fraction) noexcept : count_(count), fraction_(fraction) {}
  index count_;
  double fraction_;
};

namespace ffn_kernels {

// idx[0, k) = the k indices of h[0, n) with the largest |h|, ties to the lower index, in
// increasing order. Uses idx[0, n) as scratch. O(n) expected (nth_element), plus O(k log k).
inline void select_topk(const float* h, index n, index k, std::int32_t* idx) noexcept {
  for (index j = 0; j < n; ++j) idx[j] = static_cast<std::int32_t>(j);
  auto larger = [h](std::int32_t a, std::int32_t b) {
    const float ma = std::abs(h[a]), mb = std::abs(h[b]);
    return ma > mb || (ma == mb && a < b);
  };
  if (k < n) std::nth_element(idx, idx + k, idx + n, larger);
  std::sort(idx, idx + k);
}

// y[0, m) = Σ_{j in idx[0, k)} h[j] · rows[j][0, m): the down projection over kept columns,
// reading k rows of the transposed weight, four at a time.
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
      acc = xsimd::fma(b0, B::load_unaligned(r0 + i), acc);
      acc = xsimd::fma(b1, B::load_unaligned(r1 + i), acc);
      acc = xsimd::fma(b2, B::load_unaligned(r2 + i), acc);
      acc = xsimd::fma(b3, B::load_unaligned(r3 + i), acc);
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

// Shared first half of both forms: ws.gate = act(x·gateᵀ) ⊙ (x·upᵀ), [T, I].
inline MatrixView<float> gated_intermediate(MatrixView<const float> x, const SwiGluWeights& w,
                                            FfnWorkspace& ws, Activation act) noexcept {
  const index t = x.rows(), n = w.intermediate();
  MatrixView<float> g = ws.gate(t), u = ws.up(t);
  linear_kernels::project(x, w.gate, {}, g);
  linear_kernels::project(x, w.up, {}, u);
  activation_kernels::gated(g.data(), u.data(), g.data(), t * n, act);
  return g;
}

}  // namespace ffn_kernels

namespace ffn_detail {
// Checks x, the gate and up weights and the workspace (callers check y and down).
inline void check_ffn(const char* where, MatrixView<const float> x, const SwiGluWeights& w,
                      const FfnWorkspace& ws) {
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

// y [T, H] = down(act(gate(x)) ⊙ up(x)) for x [T, H]. y must not overlap x.
inline void swiglu(MatrixView<const float> x, const SwiGluWeights& w, MatrixView<float> y,
                   FfnWorkspace& ws, Activation act = {}) {
  constexpr const char* where = "swiglu";
  ffn_detail::check_ffn(where, x, w, ws);
  check_shape(where, "w.down", w.down, w.hidden(), w.intermediate());
  check_shape(where, "y", y, x.rows(), w.hidden());
  const MatrixView<float> h = ffn_kernels::gated_intermediate(x, w, ws, act);
  linear_kernels::project(h, w.down, {}, y);
}

// Top-k sparse form: per token, keeps the k entries of act(gate(x)) ⊙ up(x) of largest
// magnitude (ties to the lower index) and projects only those: y = Σ_kept h_j · down[:, j].
// `down_t` is down transposed, [I, H] (TransposedWeights); w.down is not read. With k = I it
// equals swiglu() up to rounding.
inline void swiglu_topk(MatrixView<const float> x, const SwiGluWeights& w,
                        MatrixView<const float> down_t, TopK k, MatrixView<float> y,
                        FfnWorkspace& ws, Activation act = {}) {
  constexpr const char* where = "swiglu_topk";
  ffn_detail::check_ffn(where, x, w, ws);
  check_shape(where, "down_t", down_t, w.intermediate(), w.hidden());
  check_shape(where, "y", y, x.rows(), w.hidden());
  const index kept = k.resolve(w.intermediate());
  const MatrixView<float> h = ffn_kernels::gated_intermediate(x, w, ws, act);
  for (index t = 0; t < x.rows(); ++t) {
    ffn_kernels::select_topk(h.row(t), h.cols(), kept, ws.order());
    ffn_kernels::gather_rows_axpy(h.row(t), ws.order(), kept, down_t, y.row(t));
  }
}

// The masked intermediate of swiglu_topk, for inspection: h [T, I] = act(gate(x)) ⊙ up(x) with
// all but the k largest-magnitude entries of each row set to zero.
inline void swiglu_topk_intermediate(MatrixView<const float> x, const SwiGluWeights& w, TopK k,
                                     MatrixView<float> h, FfnWorkspace& ws, Activation act = {}) {
  constexpr const char* where = "swiglu_topk_intermediate";
  ffn_detail::check_ffn(where, x, w, ws);
  check_shape(where, "h", h, x.rows(), w.intermediate());
  const index kept = k.resolve(w.intermediate());
  const MatrixView<float> full = ffn_kernels::gated_intermediate(x, w, ws, act);
  for (index t = 0; t < x.rows(); ++t) {
    ffn_kernels::select_topk(full.row(t), full.cols(), kept, ws.order());
    std::fill(h.row(t), h.row(t) + h.cols(), 0.0f);
    for (index j = 0; j < kept; ++j) h.row(t)[ws.order()[j]] = full.row(t)[ws.order()[j]];
  }
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
