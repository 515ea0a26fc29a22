// Three translation units include the same tformer headers with different instruction sets and
// are linked into this program. Each must run its own kernels (its own inline namespace) and
// give the right answer; SIMD and scalar results must agree.
#include <catch2/catch.hpp>

#include <cfloat>
#include <cmath>
#include <string>
#include <vector>

#include "reference/rope_reference.hpp"
#include "support/random.hpp"
#include "tformer/core/simd.hpp"

std::string rope_native(std::vector<float>& x, int T, int H, int D, int first);
std::string rope_scalar(std::vector<float>& x, int T, int H, int D, int first);
std::string rope_baseline(std::vector<float>& x, int T, int H, int D, int first);
std::vector<float> sweep_native(const std::vector<float>& x, int T, int H, int D, int d, int layout,
                                int direction, bool in_place, bool scaled, int first);
std::vector<float> sweep_scalar(const std::vector<float>& x, int T, int H, int D, int d, int layout,
                                int direction, bool in_place, bool scaled, int first);

TEST_CASE("odr: units built for different instruction sets keep their own kernels", "[odr]") {
  const int T = 7, H = 3, D = 72, first = 1000;
  test::Random rng(29);
  const auto x = rng.normal_floats(T * H * D);

  auto native = x, scalar = x, baseline = x;
  const std::string native_name = rope_native(native, T, H, D, first);
  const std::string scalar_name = rope_scalar(scalar, T, H, D, first);
  const std::string baseline_name = rope_baseline(baseline, T, H, D, first);
  CAPTURE(native_name, scalar_name, baseline_name);
  CHECK(scalar_name == "scalar");
#if TFORMER_HAS_SIMD
  CHECK(native_name == tformer::simd::arch_name);
  CHECK(native_name != scalar_name);
#endif

  // Reference: rotate-half then interleaved, in double.
  const auto inv = ref::default_inv_freq(D, 10000.0);
  for (int row = 0; row < T * H; ++row) {
    std::vector<double> v(x.begin() + row * D, x.begin() + (row + 1) * D);
    const int pos = first + row / H;
    v = ref::rope(v, D, ref::Layout::RotateHalf, pos, inv);
    v = ref::rope(v, D, ref::Layout::Interleaved, pos, inv);
    for (int i = 0; i < D; ++i) {
      INFO("row " << row << " dim " << i);
      // Two rotations, each within 4u·(|a| + |b|) of exact: 1e-5 covers unit-scale inputs.
      REQUIRE(std::abs(native[row * D + i] - v[i]) <= 1e-5);
      REQUIRE(std::abs(scalar[row * D + i] - v[i]) <= 1e-5);
      REQUIRE(std::abs(baseline[row * D + i] - v[i]) <= 1e-5);
      // SIMD against scalar: both are within ~8u of exact for unit-scale values.
      REQUIRE(std::abs(native[row * D + i] - scalar[row * D + i]) <= 16 * FLT_EPSILON * 4);
    }
  }
}

TEST_CASE("odr: SIMD and scalar kernels agree on every shape, layout and direction",
          "[odr][rope]") {
  // Each result is within 4u·(|a| + |b|)·f of exact (apply_test.cpp), so the two are within
  // twice that of each other; the inverse divides by f², bounded by f = 1.14 here.
  const double u = FLT_EPSILON / 2;
  test::Random rng(31);
  int cases = 0;
  for (int D = 2; D <= 80; D += 2) {
    for (int d = 2; d <= D; d += (D > 40 ? 6 : 2)) {
      const int T = rng.integer(1, 3), H = rng.integer(1, 6), first = rng.integer(0, 300);
      const auto x = rng.normal_floats(std::size_t(T) * H * D);
      for (int layout = 0; layout < 2; ++layout)
        for (int direction = 0; direction < 3; ++direction)
          for (bool in_place : {true, false}) {
            const bool scaled = (cases % 3) == 0;
            const auto a = sweep_native(x, T, H, D, d, layout, direction, in_place, scaled, first);
            const auto b = sweep_scalar(x, T, H, D, d, layout, direction, in_place, scaled, first);
            ++cases;
            for (int row = 0; row < T * H; ++row)
              for (int i = 0; i < D; ++i) {
                const int j = i >= d        ? i
                              : layout == 0 ? (i ^ 1)
                                            : (i < d / 2 ? i + d / 2 : i - d / 2);
                const double tol =
                    8 * u * 1.14 * (std::abs(x[row * D + i]) + std::abs(x[row * D + j]));
                INFO("D " << D << " d " << d << " layout " << layout << " direction " << direction
                          << " in place " << in_place << " scaled " << scaled);
                REQUIRE(std::abs(a[row * D + i] - b[row * D + i]) <= tol);
              }
          }
    }
  }
  CHECK(cases > 1000);
}
