// Seed 001's rotary block with learned rotations, pinned down by issue 6: each head vector x
// (head_dim D) becomes
//   x' = R · G_N ⋯ G_2 · G_1 · x,   then standard RoPE (rope/apply.hpp),
// the same for Q and K. G_k rotates the plane (i_k, j_k) by θ_k:
//   x_i ← cos θ · x_i − sin θ · x_j,   x_j ← sin θ · x_i + cos θ · x_j
// (G_ii = G_jj = cos θ, G_ij = −sin θ, G_ji = sin θ), applied in O(1) each, never as a matrix.
// R [D, D] is orthogonal (checked when loaded, within a tolerance on max |RᵀR − I|; an
// R that has drifted can be re-orthogonalised). All of it is orthogonal, so norms are kept and,
// applied to both q and k, <q', k'> still depends only on their relative position.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "tformer/core/arch.hpp"
#include "tformer/core/eigen.hpp"
#include "tformer/core/error.hpp"
#include "tformer/core/memory.hpp"
#include "tformer/core/views.hpp"

TFORMER_THIRD_PARTY_BEGIN
#include <Eigen/SVD>
TFORMER_THIRD_PARTY_END

namespace tformer {
inline namespace TFORMER_ARCH_NS {

struct GivensRotation {
  std::int32_t i = 0, j = 0;  // the plane, i != j, both < head_dim
  float theta = 0.0f;
};

namespace givens_detail {
// Throws unless r is a square matrix of at least one row.
template <class T>
void check_square(const char* where, MatrixView<T> r) {
  check_view(where, "r", r);
  check(r.rows() >= 1, where, "r.rows", ">= 1", r.rows());
  check_eq(where, "r.cols (= r.rows)", r.rows(), r.cols());
}
}  // namespace givens_detail

// max |RᵀR − I| over the entries of a square r, in double (NaN if r holds NaN or inf).
inline double orthogonality_error(MatrixView<const float> r) {
  givens_detail::check_square("orthogonality_error", r);
  const Eigen::MatrixXd m = eigen::map(r).cast<double>();
  if (!m.allFinite()) return std::numeric_limits<double>::quiet_NaN();  // maxCoeff skips NaN
  return (m.transpose() * m - Eigen::MatrixXd::Identity(m.rows(), m.cols())).cwiseAbs().maxCoeff();
}

// Replaces r [D, D] by the nearest orthogonal matrix (the polar factor U·Vᵀ of its SVD). Throws,
// changing nothing, unless every entry is finite.
inline void reorthogonalize(MatrixView<float> r) {
  constexpr const char* where = "reorthogonalize";
  givens_detail::check_square(where, r);
  for (index i = 0; i < r.rows(); ++i)
    for (index j = 0; j < r.cols(); ++j)
      if (!std::isfinite(r.row(i)[j])) [[unlikely]] {
        std::ostringstream given;
        given << r.row(i)[j] << " at (" << i << ", " << j << ")";
        detail::fail_check(where, "r", "finite entries", given.str());
      }
  const Eigen::MatrixXd m = eigen::map(MatrixView<const float>(r)).cast<double>();
  const Eigen::JacobiSVD<Eigen::MatrixXd> svd(m, Eigen::ComputeFullU | Eigen::ComputeFullV);
  eigen::map(r) = (svd.matrixU() * svd.matrixV().transpose()).cast<float>();
}

// The learned pre-RoPE rotation of one layer, checked and ready to apply. Holds cos/sin of each
// θ and a [64, D] scratch (allocated here, not per call): one block serves one thread.
class RotaryBlock {
 public:
  // r: [D, D], or empty for the identity. Throws unless head_dim >= 1 (and its scratch at most
  // 2^40 bytes), every plane is valid with a finite θ, `tolerance` is finite and >= 0, and r is
  // orthogonal within it.
  RotaryBlock(index head_dim, std::span<const GivensRotation> rotations,
              MatrixView<const float> r = {}, double tolerance = 1e-4)
      : d_(head_dim), r_(r) {
    constexpr const char* where = "RotaryBlock";
    check(head_dim >= 1, where, "head_dim", ">= 1", head_dim);
    const index scratch = checked_size(where, "head_dim (scratch: 64 * head_dim)",
                                       {rows_per_gemm, head_dim}, sizeof(float));
    check(std::isfinite(tolerance) && tolerance >= 0, where, "tolerance", "a finite value >= 0",
          tolerance);
    planes_.reserve(rotations.size());
    for (std::size_t k = 0; k < rotations.size(); ++k) {
      const GivensRotation& g = rotations[k];
      check_index(where, "rotation plane i", g.i, head_dim);
      check_index(where, "rotation plane j", g.j, head_dim);
      check(g.i != g.j, where, "rotation plane (i, j)", "two different dimensions", g.i);
      if (!std::isfinite(g.theta)) [[unlikely]]
        detail::fail_check(where, "rotation " + std::to_string(k) + " theta", "a finite angle",
                           g.theta);
      planes_.push_back({g.i, g.j, std::cos(double(g.theta)), std::sin(double(g.theta))});
    }
    if (r.rows() > 0) {
      check_shape(where, "r", r, head_dim, head_dim);
      const double err = orthogonality_error(r);
      check(err <= tolerance, where, "max |RᵀR − I|",
            "<= " + std::to_string(tolerance) + " (reorthogonalize() repairs drift)", err);
    }
    scratch_ = AlignedBuffer<float>(static_cast<std::size_t>(scratch));
  }

  index head_dim() const noexcept { return d_; }
  index rotations() const noexcept { return index(planes_.size()); }

  // Applies R · G_N ⋯ G_1 to every head vector of x, in place. R multiplies up to 64 head
  // vectors of a token at once (a GEMM against Rᵀ through the block's scratch).
  void apply(HeadsView<float> x) {
    check_view("RotaryBlock::apply", "x", x);
    check_eq("RotaryBlock::apply", "x.head_dim", d_, x.head_dim());
    for (index t = 0; t < x.tokens(); ++t)
      for (index h0 = 0; h0 < x.heads(); h0 += rows_per_gemm) {
        const index n = std::min(rows_per_gemm, x.heads() - h0);
        for (index h = h0; h < h0 + n; ++h) rotate_planes(x.row(t, h));
        if (r_.rows() == 0) continue;
        const MatrixView<float> rows(x.row(t, h0), n, d_), out(scratch_.data(), n, d_);
        eigen::map(out).noalias() = eigen::map(MatrixView<const float>(rows)) *
                                    eigen::map(r_).transpose();
        eigen::map(rows) = eigen::map(MatrixView<const float>(out));
      }
  }

 private:
  static constexpr index rows_per_gemm = 64;

  void rotate_planes(float* v) const noexcept {
    for (const Plane& p : planes_) {
      const double a = v[p.i], b = v[p.j];
      v[p.i] = static_cast<float>(p.c * a - p.s * b);
      v[p.j] = static_cast<float>(p.s * a + p.c * b);
    }
  }

  struct Plane {
    index i, j;
    double c, s;
  };
  index d_;
  MatrixView<const float> r_;
  std::vector<Plane> planes_;
  AlignedBuffer<float> scratch_;
};

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
