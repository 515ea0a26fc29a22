// An owned row-major float matrix for tests, with views for tformer's entry points.
#pragma once

#include <vector>

#include "support/random.hpp"
#include "tformer/core/views.hpp"

namespace test {

struct Matrix {
  tformer::index rows = 0, cols = 0;
  std::vector<float> data;

  Matrix() = default;
  Matrix(tformer::index r, tformer::index c, float fill = 0.0f)
      : rows(r), cols(c), data(static_cast<std::size_t>(r * c), fill) {}
  static Matrix random(Random& rng, tformer::index r, tformer::index c, float stddev = 1.0f) {
    Matrix m(r, c);
    m.data = rng.normal_floats(m.data.size(), stddev);
    return m;
  }
  float& at(tformer::index r, tformer::index c) { return data[std::size_t(r * cols + c)]; }
  float at(tformer::index r, tformer::index c) const { return data[std::size_t(r * cols + c)]; }
  tformer::MatrixView<float> view() { return {data.data(), rows, cols}; }
  tformer::MatrixView<const float> view() const { return {data.data(), rows, cols}; }
  tformer::MatrixView<const float> cview() const { return view(); }
};

}  // namespace test
