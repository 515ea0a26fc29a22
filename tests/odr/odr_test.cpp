// The library's kernels compiled once per instruction-set level (odr_unit.cpp through
// tformer_add_isa_variants) and linked into this program: each copy must run its own kernels
// (its own inline namespace) and agree with the scalar copy within a stated bound, for every
// kernel family, at every level this CPU runs. Also the runtime choice among the copies.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "reference/rope_reference.hpp"
#include "support/random.hpp"
#include "tformer/core/isa.hpp"
#include "tformer/core/simd.hpp"
#include "tformer/rope/apply.hpp"

TFORMER_DECLARE_ISA_VARIANTS(odr, rope, std::string(std::vector<float>&, int, int, int, int))
TFORMER_DECLARE_ISA_VARIANTS(odr, sweep,
                             std::vector<float>(const std::vector<float>&, int, int, int, int, int,
                                                int, bool, bool, int))
TFORMER_DECLARE_ISA_VARIANTS(odr, attention,
                             std::vector<float>(const std::vector<float>&,
                                                const std::vector<float>&,
                                                const std::vector<float>&, int, int, int, int, int,
                                                int, float, int))
TFORMER_DECLARE_ISA_VARIANTS(odr, norm_activation,
                             std::vector<float>(const std::vector<float>&,
                                                const std::vector<float>&, int, int))
TFORMER_DECLARE_ISA_VARIANTS(odr, ffn_topk,
                             std::vector<float>(const std::vector<float>&,
                                                const std::vector<float>&,
                                                const std::vector<float>&,
                                                const std::vector<float>&, int, int, int, int))
TFORMER_DECLARE_ISA_VARIANTS(odr, moe,
                             std::vector<float>(const std::vector<float>&,
                                                const std::vector<float>&,
                                                const std::vector<float>&,
                                                const std::vector<float>&,
                                                const std::vector<float>&, int, int, int, int, int))
TFORMER_DECLARE_ISA_VARIANTS(odr, shared_inline_probe, std::string())
TFORMER_DECLARE_ISA_VARIANTS(odr, linear,
                             std::vector<float>(const std::vector<float>&,
                                                const std::vector<float>&, int, int, int))
TFORMER_DECLARE_ISA_VARIANTS(odr, matmul,
                             std::vector<float>(const std::vector<float>&,
                                                const std::vector<float>&, int, int, int, int))

namespace {

// The compiled copies of odr::<level>::fn this CPU runs, but the scalar one; logs the others.
template <class Fn, std::size_t N>
std::vector<tformer::IsaVariant<Fn>> runnable(const std::array<tformer::IsaVariant<Fn>, N>& all) {
  std::vector<tformer::IsaVariant<Fn>> out;
  for (const auto& v : all) {
    if (v.isa == tformer::Isa::scalar) continue;
    if (const auto missing = tformer::isa_missing_feature(v.isa); !missing.empty())
      WARN("skipped " << tformer::isa_name(v.isa) << ": this CPU lacks " << missing);
    else
      out.push_back(v);
  }
  return out;
}

}  // namespace

TEST_CASE("odr: units built for different instruction sets keep their own kernels", "[odr]") {
  const int T = 7, H = 3, D = 72, first = 1000;
  test::Random rng(29);
  const auto x = rng.normal_floats(T * H * D);

  auto scalar = x;
  CHECK(odr::scalar::rope(scalar, T, H, D, first) == "scalar");
  const auto variants = runnable(TFORMER_ISA_VARIANTS(odr, rope));
  CHECK(variants.size() >= 1);  // sse2 at least, on any x86-64 CPU
  for (const auto& variant : variants) {
    auto native = x;
    const std::string native_name = variant.fn(native, T, H, D, first);
    CAPTURE(native_name);
    CHECK(native_name == tformer::isa_name(variant.isa));  // its own kernels, not another copy's

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
        // SIMD against scalar: both are within ~8u of exact for unit-scale values.
        REQUIRE(std::abs(native[row * D + i] - scalar[row * D + i]) <= 16 * FLT_EPSILON * 4);
      }
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
  for (const auto& variant : runnable(TFORMER_ISA_VARIANTS(odr, sweep))) {
    INFO("level " << tformer::isa_name(variant.isa));
    for (int D = 2; D <= 80; D += 2) {
      for (int d = 2; d <= D; d += (D > 40 ? 6 : 2)) {
        const int T = rng.integer(1, 3), H = rng.integer(1, 6), first = rng.integer(0, 300);
        const auto x = rng.normal_floats(std::size_t(T) * H * D);
        for (int layout = 0; layout < 2; ++layout)
          for (int direction = 0; direction < 3; ++direction)
            for (bool in_place : {true, false}) {
              const bool scaled = (cases % 3) == 0;
              const auto a = variant.fn(x, T, H, D, d, layout, direction, in_place, scaled, first);
              const auto b =
                  odr::scalar::sweep(x, T, H, D, d, layout, direction, in_place, scaled, first);
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
  }
  CHECK(cases > 1000);
}

std::vector<float> norm_activation_scalar(const std::vector<float>& x, const std::vector<float>& w,
                                          int rows, int n);

TEST_CASE("odr: SIMD and scalar attention agree on random shapes, decode and prefill",
          "[odr][attention]") {
  // Each output is a convex combination of value rows. A float score carries an error up to
  // (D + 2)·u·|q|·|k|·scale, which moves the weights by at most that relatively; the weighted
  // sum adds (L + 2)·u·max|v|. Both builds are within that of exact, so within twice of each
  // other: tol = 2·((D + 2)·max|s| + L + 2)·u·max|v| with max|s| ≤ |q|·|k|·scale.
  const double u = FLT_EPSILON / 2;
  for (const auto& variant : runnable(TFORMER_ISA_VARIANTS(odr, attention))) {
    INFO("level " << tformer::isa_name(variant.isa));
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
      const auto a = variant.fn(q, k, v, T, Hq, Hkv, D, L, window, softcap, sinks);
      const auto b = odr::scalar::attention(q, k, v, T, Hq, Hkv, D, L, window, softcap, sinks);
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
}

TEST_CASE("odr: SIMD and scalar RMSNorm and activation agree", "[odr][rmsnorm]") {
  // RMSNorm is within (n + 12)·u relatively of exact (rmsnorm_test.cpp) and the activation within
  // 8u more (activation_test.cpp); twice their sum bounds the difference of the two builds.
  const double u = FLT_EPSILON / 2;
  for (const auto& variant : runnable(TFORMER_ISA_VARIANTS(odr, norm_activation))) {
    INFO("level " << tformer::isa_name(variant.isa));
    test::Random rng(41);
    for (int trial = 0; trial < 40; ++trial) {
      const int rows = rng.integer(1, 5), n = rng.integer(1, 700);
      const auto x = rng.normal_floats(std::size_t(rows) * n);
      const auto w = rng.normal_floats(std::size_t(n));
      const auto a = variant.fn(x, w, rows, n);
      const auto b = odr::scalar::norm_activation(x, w, rows, n);
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
}

namespace {

// A bound on the rounding error of one build's dense SwiGLU output i against exact arithmetic,
// first order in u: g_j = gate_j·x and p_j = up_j·x err by (H + 2)·u·G_j and (H + 2)·u·P_j
// (G_j, P_j: sums of |terms|); silu' is within [−0.1, 1.1] and |silu(g)| ≤ |g| + 0.28, and the
// activation adds 8u relatively (activation_test.cpp); the down product over I terms adds
// (I + 2)·u·Σ_j |down_ij·h_j|.
std::vector<double> swiglu_error_bound(const std::vector<float>& x, const float* gate,
                                       const float* up, const float* down, int t, int H, int I) {
  const double u = FLT_EPSILON / 2;
  std::vector<double> h_err(static_cast<std::size_t>(I)), h_abs(static_cast<std::size_t>(I));
  for (int j = 0; j < I; ++j) {
    double g = 0, p = 0, G = 0, P = 0;
    for (int c = 0; c < H; ++c) {
      const double xc = x[std::size_t(t) * H + c];
      g += gate[std::size_t(j) * H + c] * xc;
      p += up[std::size_t(j) * H + c] * xc;
      G += std::abs(gate[std::size_t(j) * H + c] * xc);
      P += std::abs(up[std::size_t(j) * H + c] * xc);
    }
    const double silu = g / (1 + std::exp(-g));
    h_abs[std::size_t(j)] = std::abs(silu * p);
    h_err[std::size_t(j)] = (H + 2) * u * (1.1 * G * std::abs(p) + (std::abs(g) + 0.28) * P) +
                            8 * u * h_abs[std::size_t(j)];
  }
  std::vector<double> bound(static_cast<std::size_t>(H));
  for (int i = 0; i < H; ++i) {
    double b = 0;
    for (int j = 0; j < I; ++j) {
      const double d = std::abs(down[std::size_t(i) * I + j]);
      b += d * (h_err[std::size_t(j)] + (I + 2) * u * h_abs[std::size_t(j)]);
    }
    bound[std::size_t(i)] = b;
  }
  return bound;
}

}  // namespace

TEST_CASE("odr: SIMD and scalar top-k SwiGLU and MoE agree", "[odr][swiglu][moe]") {
  // Each build is within swiglu_error_bound of exact (the top-k form sums fewer terms, so the
  // dense bound covers it), so the two within twice that. Random data leaves no near-ties in the
  // top-k or router choice at these seeds: a tie broken differently would fail loudly.
  for (const auto& variant : runnable(TFORMER_ISA_VARIANTS(odr, ffn_topk))) {
    INFO("level " << tformer::isa_name(variant.isa));
    test::Random rng(43);
    for (int trial = 0; trial < 20; ++trial) {
      const int T = rng.integer(1, 4), H = rng.integer(1, 70), I = rng.integer(1, 90);
      const int k = rng.integer(1, I);
      const auto x = rng.normal_floats(std::size_t(T) * H);
      const auto gate = rng.normal_floats(std::size_t(I) * H), up = rng.normal_floats(gate.size());
      const auto down = rng.normal_floats(gate.size());
      const auto a = variant.fn(x, gate, up, down, T, H, I, k);
      const auto b = odr::scalar::ffn_topk(x, gate, up, down, T, H, I, k);
      INFO("trial " << trial << ": T " << T << " H " << H << " I " << I << " k " << k);
      for (int t = 0; t < T; ++t) {
        const auto bound = swiglu_error_bound(x, gate.data(), up.data(), down.data(), t, H, I);
        for (int i = 0; i < H; ++i)
          REQUIRE(std::abs(a[std::size_t(t) * H + i] - b[std::size_t(t) * H + i]) <=
                  2 * bound[std::size_t(i)]);
      }
    }
  }
  for (const auto& variant : runnable(TFORMER_ISA_VARIANTS(odr, moe))) {
    INFO("level " << tformer::isa_name(variant.isa));
    test::Random rng(47);
    for (int trial = 0; trial < 20; ++trial) {
      const int T = rng.integer(1, 6), H = rng.integer(2, 48), I = rng.integer(1, 40);
      const int E = rng.integer(1, 6), k = rng.integer(1, E);
      const auto x = rng.normal_floats(std::size_t(T) * H);
      const auto router = rng.normal_floats(std::size_t(E) * H);
      const auto gate = rng.normal_floats(std::size_t(E) * I * H),
                 up = rng.normal_floats(gate.size());
      const auto down = rng.normal_floats(gate.size());
      const auto a = variant.fn(x, router, gate, up, down, T, H, I, E, k);
      const auto b = odr::scalar::moe(x, router, gate, up, down, T, H, I, E, k);
      INFO("trial " << trial << ": T " << T << " H " << H << " I " << I << " E " << E << " k "
                    << k);
      // Routing weights (≤ 1) err relatively by 2·(H + 2)·u·R + 8u (R: the largest Σ|router·x|
      // of a logit) through softmax and renormalisation; they scale expert outputs of at most
      // Σ_j |down_ij·h_j| each.
      const double u = FLT_EPSILON / 2;
      for (int t = 0; t < T; ++t) {
        double R = 0;
        for (int e = 0; e < E; ++e) {
          double r = 0;
          for (int c = 0; c < H; ++c)
            r += std::abs(router[std::size_t(e) * H + c] * x[std::size_t(t) * H + c]);
          R = std::max(R, r);
        }
        std::vector<double> tol(static_cast<std::size_t>(H), 0.0);
        for (int e = 0; e < E; ++e) {
          const float* g = gate.data() + std::size_t(e) * I * H;
          const float* p = up.data() + std::size_t(e) * I * H;
          const float* d = down.data() + std::size_t(e) * H * I;
          const auto bound = swiglu_error_bound(x, g, p, d, t, H, I);
          for (int i = 0; i < H; ++i) {
            double mag = 0;  // Σ_j |down_ij·h_j| ≤ Σ_j |down_ij|·|silu(g_j)·p_j|
            for (int j = 0; j < I; ++j) {
              double gj = 0, pj = 0;
              for (int c = 0; c < H; ++c) {
                gj += g[std::size_t(j) * H + c] * x[std::size_t(t) * H + c];
                pj += p[std::size_t(j) * H + c] * x[std::size_t(t) * H + c];
              }
              mag += std::abs(d[std::size_t(i) * I + j]) * std::abs(gj / (1 + std::exp(-gj)) * pj);
            }
            tol[std::size_t(i)] +=
                2 * (bound[std::size_t(i)] + (2 * (H + 2) * u * R + 8 * u) * mag);
          }
        }
        for (int i = 0; i < H; ++i)
          REQUIRE(std::abs(a[std::size_t(t) * H + i] - b[std::size_t(t) * H + i]) <=
                  tol[std::size_t(i)] + (H + I) * u * 1e-3);
      }
    }
  }
}

TEST_CASE("odr: the runtime choice runs the best level, or the one TFORMER_ISA names",
          "[odr][dispatch]") {
  const auto all = TFORMER_ISA_VARIANTS(odr, rope);
  const auto best = tformer::select_isa_variant(all, nullptr);
  CHECK(best.isa == tformer::best_supported_isa());  // every level is compiled here
  std::vector<float> x(2 * 3 * 8, 0.5f);
  CHECK(best.fn(x, 2, 3, 8, 0) == tformer::isa_name(best.isa));
  for (const auto& v : all) {
    const std::string name(tformer::isa_name(v.isa));
    if (tformer::isa_supported(v.isa)) {
      const auto chosen = tformer::select_isa_variant(all, name.c_str());
      CHECK(chosen.isa == v.isa);
      CHECK(chosen.fn(x, 2, 3, 8, 0) == name);
    } else {
      CHECK_THROWS_WITH(tformer::select_isa_variant(all, name.c_str()),
                        Catch::Matchers::Contains("TFORMER_ISA") &&
                            Catch::Matchers::Contains("this CPU runs (it lacks"));
    }
  }
  CHECK_THROWS_WITH(tformer::select_isa_variant(all, "avx9000"),
                    Catch::Matchers::Contains("TFORMER_ISA: expected one of avx512, avx2_fma") &&
                        Catch::Matchers::Contains("got avx9000"));
  const std::array<tformer::IsaVariant<odr::scalar::rope_signature>, 1> only_scalar = {
      {{tformer::Isa::scalar, &odr::scalar::rope}}};
  CHECK_THROWS_WITH(tformer::select_isa_variant(only_scalar, "sse2"),
                    Catch::Matchers::Contains("a level that was compiled (scalar)"));
  CHECK(tformer::select_isa_variant(only_scalar, nullptr).isa == tformer::Isa::scalar);
  // The environment variable is what select_isa_variant reads by default.
  ::setenv("TFORMER_ISA", "scalar", 1);
  CHECK(tformer::select_isa_variant(all).isa == tformer::Isa::scalar);
  ::unsetenv("TFORMER_ISA");
}

TEST_CASE("odr: the CPU check agrees with /proc/cpuinfo", "[odr][dispatch]") {
  std::FILE* f = std::fopen("/proc/cpuinfo", "r");
  if (f == nullptr) {
    WARN("no /proc/cpuinfo");
    return;
  }
  std::string flags;
  char line[8192];
  while (std::fgets(line, sizeof line, f))
    if (std::string(line).rfind("flags", 0) == 0) {
      flags = std::string(line) + " ";
      break;
    }
  std::fclose(f);
  const auto has = [&](const char* name) {
    return flags.find(std::string(" ") + name + " ") != std::string::npos ||
           flags.find(std::string(" ") + name + "\n") != std::string::npos;
  };
  CHECK(
      tformer::isa_supported(tformer::Isa::avx512) ==
      (has("avx512f") && has("avx512bw") && has("avx512cd") && has("avx512dq") && has("avx512vl")));
  CHECK(tformer::isa_supported(tformer::Isa::avx2_fma) ==
        (has("avx2") && has("fma") && has("bmi2")));
  CHECK(tformer::isa_supported(tformer::Isa::sse4_2) == (has("sse4_2") && has("popcnt")));
  WARN("this CPU runs: " << [] {
    std::string s;
    for (auto isa : tformer::all_isas)
      if (tformer::isa_supported(isa)) s += std::string(tformer::isa_name(isa)) + " ";
    return s;
  }());
}

std::string abort_unit_namespace();

TEST_CASE("odr: a TFORMER_NO_EXCEPTIONS unit keeps its own checks", "[odr][errors]") {
  // unit_abort.cpp (linked first, so its copies of shared templates would win) instantiates the
  // same checks with TFORMER_NO_EXCEPTIONS: they live in <level>_abort and this unit's still throw.
  CHECK(abort_unit_namespace() == std::string(tformer::simd::isa_name) + "_abort");
  tformer::RopeTable table(tformer::RopeConfig{.rotary_dim = 8, .max_positions = 16});
  std::vector<float> x(2 * 8, 1.0f);
  CHECK_THROWS_AS(
      tformer::apply_rope_inplace<tformer::RopeLayout::RotateHalf>(
          table, tformer::HeadsView<float>(x.data(), 2, 1, 8), tformer::Positions::offset(15)),
      tformer::Error);
}

TEST_CASE("odr: each level has its own copy of inline code outside tformer (Eigen, std)",
          "[odr][eigen]") {
  // probe::compiled_for() is one inline function in every variant; each must run its own copy.
  for (const auto& v : TFORMER_ISA_VARIANTS(odr, shared_inline_probe)) {
    if (!tformer::isa_supported(v.isa)) continue;
    CHECK(v.fn() == tformer::isa_name(v.isa));
  }
}

TEST_CASE("odr: SIMD and scalar linear() (Eigen GEMV and GEMM) agree", "[odr][linear]") {
  // Each output is a sum of `in` products: each build within (in + 2)·u·Σ|x·w| of exact.
  const double u = FLT_EPSILON / 2;
  for (const auto& variant : runnable(TFORMER_ISA_VARIANTS(odr, linear))) {
    INFO("level " << tformer::isa_name(variant.isa));
    test::Random rng(53);
    for (int trial = 0; trial < 12; ++trial) {
      const int T = trial % 3 == 0 ? 1 : rng.integer(2, 80), in = rng.integer(1, 300);
      const int out = rng.integer(1, 200);
      const auto x = rng.normal_floats(std::size_t(T) * in),
                 w = rng.normal_floats(std::size_t(out) * in);
      const auto a = variant.fn(x, w, T, in, out), b = odr::scalar::linear(x, w, T, in, out);
      INFO("T " << T << " in " << in << " out " << out);
      for (int t = 0; t < T; ++t)
        for (int o = 0; o < out; ++o) {
          double mag = 0;
          for (int i = 0; i < in; ++i)
            mag += std::abs(double(x[std::size_t(t) * in + i]) * w[std::size_t(o) * in + i]);
          REQUIRE(std::abs(a[std::size_t(t) * out + o] - b[std::size_t(t) * out + o]) <=
                  2 * (in + 2) * u * mag);
        }
    }
  }
}

TEST_CASE("odr: SIMD and scalar matmul() agree for every weight type", "[odr][matmul]") {
  // Conversion is exact arithmetic on each value (the same bytes at every level); the products
  // are float dot products of `in` terms over the stored values ŵ, each build within
  // (in + 40)·u·Σ|x·ŵ| of exact (tests/nn/matmul_test.cpp), so two builds within twice that.
  // |ŵ| <= |w| + m/8 with m the row's largest |w| (q4_0's bound, the loosest type). With int8 or
  // bf16 activations x is quantized the same way at every level (the same bytes), and the
  // products are of the quantized x̂: |x̂| <= |x| + (block's largest |x|)/254 (int8) or
  // |x|·(1 + 2^-8) (bf16), which the magnitude below covers.
  const double u = FLT_EPSILON / 2;
  for (const auto& variant : runnable(TFORMER_ISA_VARIANTS(odr, matmul))) {
    INFO("level " << tformer::isa_name(variant.isa));
    test::Random rng(59);
    for (int trial = 0; trial < 30; ++trial) {
      // Trials 20–29: int8 activations on q8_0 / q4_0, bf16 activations on bf16.
      const int type = trial < 20 ? trial % 5 : trial % 3 == 0 ? 1 + 8 * 2 : 3 + trial % 2 + 8 * 1;
      const int T = trial % 4 == 0 ? 1 : rng.integer(2, 70), in = 32 * rng.integer(1, 40);
      const int out = rng.integer(1, 70);
      const auto x = rng.normal_floats(std::size_t(T) * in),
                 w = rng.normal_floats(std::size_t(out) * in, 0.1f);
      const auto a = variant.fn(x, w, T, in, out, type), b = odr::scalar::matmul(x, w, T, in, out, type);
      INFO("type " << type % 8 << " (0 f32, 1 bf16, 2 f16, 3 q8_0, 4 q4_0), activations "
                   << type / 8 << " (0 f32, 1 int8, 2 bf16), T " << T << " in " << in << " out " << out);
      REQUIRE(a.size() == b.size());
      const std::size_t n = std::size_t(T) * out;
      for (std::size_t i = n; i < a.size(); ++i) REQUIRE(a[i] == b[i]);  // the converted bytes
      for (int t = 0; t < T; ++t)
        for (int o = 0; o < out; ++o) {
          double m = 0, mag = 0;
          for (int i = 0; i < in; ++i) m = std::max(m, double(std::abs(w[std::size_t(o) * in + i])));
          for (int i = 0; i < in; ++i) {
            double block_max = 0;  // of x's block of 32 around i
            for (int j = i / 32 * 32; j < i / 32 * 32 + 32; ++j)
              block_max = std::max(block_max, std::abs(double(x[std::size_t(t) * in + j])));
            const double xi = std::abs(double(x[std::size_t(t) * in + i])) * (1 + 0x1p-8) +
                              (type / 8 == 1 ? block_max / 254 : 0.0);
            mag += xi * (std::abs(w[std::size_t(o) * in + i]) + m / 8);
          }
          REQUIRE(std::abs(a[std::size_t(t) * out + o] - b[std::size_t(t) * out + o]) <=
                  2 * (in + 40) * u * mag);
        }
    }
  }
}
