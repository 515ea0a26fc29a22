// Linear layers: y = x · Wᵀ (+ b), W stored [out, in] as PyTorch stores it, so checkpoints map
// without a transpose. f32 MatrixViews: Eigen's GEMM for many tokens, its GEMV for one. Typed
// weights (WeightView): the project's own kernels (nn/matmul.hpp), but f32 views of up to
// matmul_kernels::max_rm tokens (4 on AVX-512, 2 below) take Eigen as a MatrixView does. No copy
// of the weights either way.
//
// Allocation: decode (one token, GEMV) allocates nothing, nor does a WeightView of more than
// max_rm tokens (SIMD builds). Eigen's GEMM (a MatrixView of 2 or more tokens, an f32 WeightView
// of 2..max_rm tokens, and every f32 WeightView in the scalar build) packs its operands into
// blocks on the stack up to 128 KiB (EIGEN_STACK_ALLOCATION_LIMIT) and on the heap beyond, so it
// may allocate for large widths.
#pragma once

#include <array>
#include <span>

#include "tformer/core/eigen.hpp"
#include "tformer/core/error.hpp"
#include "tformer/core/parallel.hpp"
#include "tformer/core/views.hpp"
#include "tformer/core/weight_view.hpp"
#include "tformer/nn/matmul.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

namespace linear_kernels {

// y = x · Wᵀ + b (b may be empty). Preconditions: shapes agree; y overlaps neither x nor W.
inline void project(MatrixView<const float> x, MatrixView<const float> w,
                    std::span<const float> bias, MatrixView<float> y) noexcept {
  if (x.rows() == 0 || w.rows() == 0) return;
  if (x.rows() == 1) {
    eigen::map_row(y, 0).noalias() = eigen::map(w) * eigen::map_row(x, 0);
  } else {
    eigen::map(y).noalias() = eigen::map(x) * eigen::map(w).transpose();
  }
  if (!bias.empty())
    eigen::map(y).rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bias.data(), w.rows());
}

// The same for a weight of any storage type: the project's kernels (matmul_kernels), but f32
// weights for up to max_rm tokens, which take Eigen as above (its GEMV streams f32 rows at the
// read bound; docs/PERFORMANCE.md). Prefill of f32 weights takes the f32 panels (1.25–1.27×
// Eigen's GEMM where W fits L3, 0.85–1.02× from DRAM before session 51's prefetch of the next
// panel; docs/PERFORMANCE.md), which, unlike Eigen's GEMM, never allocate. Preconditions as above,
// and w well formed.
inline void project(MatrixView<const float> x, const WeightView& w, std::span<const float> bias,
                    MatrixView<float> y) noexcept {
  const bool f32_gemv = w.type() == WeightType::f32 && w.activations() == Activations::f32 &&
                        (!TFORMER_HAS_SIMD || x.rows() <= matmul_kernels::max_rm);
  if (f32_gemv)
    project(x, w.f32(), bias, y);
  else
    matmul_kernels::project(x, w, bias, y);
}

}  // namespace linear_kernels

// y [T, out] = x [T, in] · w [out, in]ᵀ + bias [out] (bias may be empty). y must not overlap
// x or w. Row views of a fused weight (w.row_slice) select one projection of it.
inline void linear(MatrixView<const float> x, MatrixView<const float> w,
                   std::span<const float> bias, MatrixView<float> y) {
  constexpr const char* where = "linear";
  check_view(where, "x", x);
  check_view(where, "w", w);
  check_eq(where, "x.cols (= w.cols, the input width)", w.cols(), x.cols());
  check_shape(where, "y", y, x.rows(), w.rows());
  check_disjoint(where, "y", y, "x", x);
  check_disjoint(where, "y", y, "w", w);
  if (!bias.empty()) check_eq(where, "bias size (= w.rows)", w.rows(), index(bias.size()));
  linear_kernels::project(x, w, bias, y);
}

// y = x · wᵀ without bias.
inline void linear(MatrixView<const float> x, MatrixView<const float> w, MatrixView<float> y) {
  linear(x, w, {}, y);
}

// One of the projections of one input that parallel_project_all runs together: y = x · wᵀ + bias
// (bias may be empty). Holds views, not copies of the data.
struct Projection {
  WeightView w;
  MatrixView<float> y;
  std::span<const float> bias = {};
};

// parallel_project for N projections of one x (attention's Q, K and V) in one pass over the
// executor (for_row_chunks_of): one fork-join, and one wait for the last chunk, instead of N.
// Each projection's chunks are those parallel_project gives it, so the bits are the same.
// Preconditions as linear_kernels::project for each.
template <Executor E, std::size_t N>
void parallel_project_all(const E& exec, MatrixView<const float> x,
                          const std::array<Projection, N>& ps) {
  std::array<index, N> rows;
  for (std::size_t m = 0; m < N; ++m) rows[m] = ps[m].w.rows();
  for_row_chunks_of(exec, rows, [&](std::size_t m, index first, index n) {
    const Projection& p = ps[m];
    linear_kernels::project(
        x, p.w.row_slice(first, n),
        p.bias.empty() ? p.bias : p.bias.subspan(std::size_t(first), std::size_t(n)),
        p.y.col_slice(first, n));
  });
}

// linear_kernels::project with the output rows of w split over the executor (for_row_chunks);
// the bits do not depend on the number of workers. Preconditions as linear_kernels::project.
template <Executor E>
void parallel_project(const E& exec, MatrixView<const float> x, const WeightView& w,
                      MatrixView<float> y, std::span<const float> bias = {}) {
  parallel_project_all(exec, x, std::array{Projection{w, y, bias}});
}

// Weights of other storage types: matmul() (nn/matmul.hpp), which has the same checks.

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
