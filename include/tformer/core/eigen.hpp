// Eigen maps over MatrixView: the zero-copy bridge from caller-owned buffers to Eigen's GEMM and
// GEMV. Every alias spells its storage order: tformer is row-major throughout.
//
// Also the one place that includes Eigen/Core (fenced: TFORMER_THIRD_PARTY_BEGIN in core/arch.hpp);
// rope/givens.hpp adds Eigen/SVD, fenced the same way, for re-orthogonalisation only.
#pragma once

#include "tformer/core/arch.hpp"

TFORMER_THIRD_PARTY_BEGIN
#include <Eigen/Core>
TFORMER_THIRD_PARTY_END

#include "tformer/core/views.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {
namespace eigen {

using RowMajorMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vector = Eigen::Matrix<float, Eigen::Dynamic, 1>;
using Stride = Eigen::OuterStride<>;
using ConstMatrixMap = Eigen::Map<const RowMajorMatrix, Eigen::Unaligned, Stride>;
using MatrixMap = Eigen::Map<RowMajorMatrix, Eigen::Unaligned, Stride>;

inline ConstMatrixMap map(MatrixView<const float> m) {
  return ConstMatrixMap(m.data(), m.rows(), m.cols(), Stride(m.row_stride()));
}
inline MatrixMap map(MatrixView<float> m) {
  return MatrixMap(m.data(), m.rows(), m.cols(), Stride(m.row_stride()));
}
// Row r of m as a contiguous column vector.
inline Eigen::Map<const Vector> map_row(MatrixView<const float> m, index r) {
  return Eigen::Map<const Vector>(m.row(r), m.cols());
}
inline Eigen::Map<Vector> map_row(MatrixView<float> m, index r) {
  return Eigen::Map<Vector>(m.row(r), m.cols());
}

}  // namespace eigen
}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
