// Three translation units include the same tformer headers with different instruction sets and
// are linked into this program. Each must run its own kernels (its own inline namespace) and
// give the right answer; SIMD and scalar results must agree.
#include <catch2/catch.hpp>

#include <algorithm>
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

std::vector<float> attention_native(const std::vector<float>& q, const std::vector<float>& k,
                                    const std::vector<float>& v, int T, int Hq, int Hkv, int D,
                                    int L, int window, float softcap, int sinks);
std::vector<float> attention_scalar(const std::vector<float>& q, const std::vector<float>& k,
                                    const std::vector<float>& v, int T, int Hq, int Hkv, int D,
                                    int L, int window, float softcap, int sinks);
std::vector<float> norm_activation_native(const std::vector<float>& x, const std::vector<float>& w,
                                          int rows, int n);
std::vector<float> norm_activation_scalar(const std::vector<float>& x, const std::vector<float>& w,
                                          int rows, int n);

TEST_CASE("odr: SIMD and scalar attention agree on random shapes, decode and prefill",
          "[odr][attention]") {
  // Each output is a convex combination of value rows. A float score carries an error up to
  // (D + 2)·u·|q|·|k|·scale, which moves the weights by at most that relatively; the weighted
  // sum adds (L + 2)·u·max|v|. Both builds are within that of exact, so within twice of each
  // other: tol = 2·((D + 2)·max|s| + L + 2)·u·max|v| with max|s| ≤ |q|·|k|·scale.
  const double u = FLT_EPSILON / 2;
  test::Random rng(37);
  for (int trial = 0; trial < 60; ++trial) {
    const int Hkv = rng.integer(1, 3), Hq = Hkv * rng.integer(1, 5);
    const int D = 4 * rng.integer(1, 40), L = rng.integer(1, 300);
    const int T = trial % 2 == 0 ? 1 : rng.integer(1, std::min(L, 70));
    const int window = trial % 3 == 0 ? rng.integer(1, L) : 0;
    const float softcap = trial % 5 == 0 ? 5.0f : 0.0f;
    const int sinks = window > 0 && trial % 4 < 2 ? rng.integer(1, 8) : 0;  // both paths
    const auto q = rng.normal_floats(std::size_t(T) * Hq * D);
    const auto k = rng.normal_floats(std::size_t(L) * Hkv * D);
    const auto v = rng.normal_floats(k.size());
    const auto a = attention_native(q, k, v, T, Hq, Hkv, D, L, window, softcap, sinks);
    const auto b = attention_scalar(q, k, v, T, Hq, Hkv, D, L, window, softcap, sinks);
    double q_max = 0, k_max = 0, v_max = 0;
    for (float x : q) q_max = std::max(q_max, double(std::abs(x)));
    for (float x : k) k_max = std::max(k_max, double(std::abs(x)));
    for (float x : v) v_max = std::max(v_max, double(std::abs(x)));
    const double s_max = q_max * k_max * D / std::sqrt(double(D));  // |q|·|k|·scale bound
    const double tol = 2 * ((D + 2) * s_max + L + 2) * u * v_max;
    INFO("trial " << trial << ": T " << T << " Hq " << Hq << " Hkv " << Hkv << " D " << D << " L "
                  << L << " window " << window << " softcap " << softcap << " sinks " << sinks);
    for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(std::abs(a[i] - b[i]) <= tol);
  }
}

TEST_CASE("odr: SIMD and scalar RMSNorm and activation agree", "[odr][rmsnorm]") {
  // RMSNorm is within (n + 12)·u relatively of exact (rmsnorm_test.cpp) and the activation within
  // 8u more (activation_test.cpp); twice their sum bounds the difference of the two builds.
  const double u = FLT_EPSILON / 2;
  test::Random rng(41);
  for (int trial = 0; trial < 40; ++trial) {
    const int rows = rng.integer(1, 5), n = rng.integer(1, 700);
    const auto x = rng.normal_floats(std::size_t(rows) * n);
    const auto w = rng.normal_floats(std::size_t(n));
    const auto a = norm_activation_native(x, w, rows, n);
    const auto b = norm_activation_scalar(x, w, rows, n);
    INFO("rows " << rows << " n " << n);
    const std::size_t m = x.size();
    for (std::size_t i = 0; i < m; ++i) {
      // silu(y)'s relative condition number is at most 1 + |y|.
      const double y = b[i], norm_tol = 2 * (n + 12) * u * std::abs(y);
      const double act_tol = 2 * ((n + 12) * (1 + std::abs(y)) + 8) * u * std::abs(b[m + i]);
      REQUIRE(std::abs(a[i] - b[i]) <= norm_tol);
      REQUIRE(std::abs(a[m + i] - b[m + i]) <= act_tol + 1e-37);
    }
  }
}
