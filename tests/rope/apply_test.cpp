// RoPE kernels against the double reference, and the properties a rotation must have.
//
// Tolerance: an output a·c − b·s (or a·s + b·c) takes three roundings in float: cos and sin to
// float, the product, the sum, each at most u = FLT_EPSILON/2 relative. Its error is therefore
// below 3u·(|a| + |b|)·attention_factor; the tests allow 2·FLT_EPSILON·(|a| + |b|)·factor = 4u.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "reference/rope_reference.hpp"
#include "support/random.hpp"
#include "tformer/rope/apply.hpp"

using tformer::HeadsView;
using tformer::Positions;
using tformer::RopeConfig;
using tformer::RopeDirection;
using tformer::RopeLayout;
using tformer::RopeTable;

namespace {

ref::Layout to_ref(RopeLayout l) {
  return l == RopeLayout::Interleaved ? ref::Layout::Interleaved : ref::Layout::RotateHalf;
}

// Checks y (float, [T, H, D]) against the reference rotation of x at positions pos[t]. The
// reference takes inv_freq and the attention factor from the table: scaling_test checks those
// against independent formulas, so this checks the rotation alone.
void check_against_reference(const std::vector<float>& x, const std::vector<float>& y, int T, int H,
                             int D, const RopeTable& table, RopeLayout layout,
                             const std::vector<std::int32_t>& pos, double sign = 1.0) {
  const std::vector<double> inv(table.inv_freq().begin(), table.inv_freq().end());
  const double factor = table.attention_factor();
  const int d = table.rotary_dim();
  for (int t = 0; t < T; ++t) {
    for (int h = 0; h < H; ++h) {
      const std::size_t base = (static_cast<std::size_t>(t) * H + h) * D;
      std::vector<double> xr(x.begin() + base, x.begin() + base + D);
      auto expected = ref::rope(xr, d, to_ref(layout), pos[t], inv, factor, sign);
      for (int i = 0; i < d / 2; ++i) {
        const std::size_t a = ref::pair_first(to_ref(layout), i);
        const std::size_t b = ref::pair_second(to_ref(layout), i, d);
        const double tol = 2.0 * FLT_EPSILON * (std::abs(xr[a]) + std::abs(xr[b])) * factor;
        INFO("token " << t << " head " << h << " pair " << i << " position " << pos[t]);
        REQUIRE(std::abs(y[base + a] - expected[a]) <= tol);
        REQUIRE(std::abs(y[base + b] - expected[b]) <= tol);
      }
      for (int i = d; i < D; ++i) REQUIRE(y[base + i] == x[base + i]);  // pass-through, exact
    }
  }
}

std::vector<std::int32_t> offset_positions(int first, int T) {
  std::vector<std::int32_t> p(T);
  std::iota(p.begin(), p.end(), first);
  return p;
}

double dot(const float* a, const float* b, int n) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

const RopeLayout kLayouts[] = {RopeLayout::Interleaved, RopeLayout::RotateHalf};

}  // namespace

TEST_CASE("rope/apply: the worked example of shared/reference, both layouts", "[rope]") {
  // head_dim 4, base 10000, position 1, q = [3.5, 2.1, -1.2, 0.8]; expected values to 5 decimals
  // computed by hand (shared/reference/README.md), so allow half a unit of the 5th decimal.
  RopeTable table(RopeConfig{.rotary_dim = 4, .max_positions = 8, .base = 10000.0});
  const std::vector<float> q = {3.5f, 2.1f, -1.2f, 0.8f};

  std::vector<float> y = q;
  tformer::apply_rope_inplace<RopeLayout::RotateHalf>(table, HeadsView<float>(y.data(), 1, 1, 4),
                                                      Positions::offset(1));
  const double rotate_half[] = {2.90082, 2.09190, 2.29679, 0.82096};
  for (int i = 0; i < 4; ++i) CHECK(y[i] == Approx(rotate_half[i]).margin(5e-6));

  y = q;
  tformer::apply_rope_inplace<RopeLayout::Interleaved>(table, HeadsView<float>(y.data(), 1, 1, 4),
                                                       Positions::offset(1));
  const double interleaved[] = {0.12397, 4.07978, -1.20794, 0.78796};
  for (int i = 0; i < 4; ++i) CHECK(y[i] == Approx(interleaved[i]).margin(5e-6));
}

TEST_CASE("rope/apply: random shapes match the double reference", "[rope][property]") {
  const auto seed = GENERATE(range(1, 61));
  CAPTURE(seed);
  test::Random rng(seed);
  const int D = rng.even(2, 272);
  const int d = rng.even(2, D);
  const int T = rng.integer(1, 24);
  const int H = rng.integer(1, 9);
  const int max_positions = rng.integer(T, 5000);
  const RopeLayout layout = kLayouts[seed % 2];
  CAPTURE(D, d, T, H, max_positions, to_string(layout));
  RopeTable table(
      RopeConfig{.rotary_dim = d, .max_positions = max_positions, .base = rng.uniform(100.0, 1e6)});
  const auto x = rng.normal_floats(static_cast<std::size_t>(T) * H * D);
  const int first = rng.integer(0, max_positions - T);

  SECTION("in place, from an offset") {
    auto y = x;
    tformer::apply_rope_inplace(layout, table, HeadsView<float>(y.data(), T, H, D),
                                Positions::offset(first));
    check_against_reference(x, y, T, H, D, table, layout, offset_positions(first, T));
  }
  SECTION("out of place, from per-token position ids") {
    std::vector<std::int32_t> ids(T);
    for (auto& p : ids) p = rng.integer(0, max_positions - 1);
    std::vector<float> y(x.size(), -7.0f);
    auto in = HeadsView<const float>(x.data(), T, H, D);
    auto out = HeadsView<float>(y.data(), T, H, D);
    if (layout == RopeLayout::Interleaved)
      tformer::apply_rope<RopeLayout::Interleaved>(table, in, out, Positions::ids(ids));
    else
      tformer::apply_rope<RopeLayout::RotateHalf>(table, in, out, Positions::ids(ids));
    check_against_reference(x, y, T, H, D, table, layout, ids);
  }
  SECTION("inverse rotation") {
    auto y = x;
    tformer::apply_rope_inplace(layout, table, HeadsView<float>(y.data(), T, H, D),
                                Positions::offset(first), RopeDirection::Inverse);
    check_against_reference(x, y, T, H, D, table, layout, offset_positions(first, T), -1.0);
  }
}

TEST_CASE("rope/apply: Q and K of a fused QKV row, rotated together", "[rope]") {
  // One buffer [T, (Hq + 2·Hkv)·D]; Q and K are strided views into it; V must stay untouched.
  const int T = 5, Hq = 4, Hkv = 2, D = 32, stride = (Hq + 2 * Hkv) * D;
  test::Random rng(7);
  const auto qkv = rng.normal_floats(static_cast<std::size_t>(T) * stride);
  auto y = qkv;
  RopeTable table(RopeConfig{.rotary_dim = D, .max_positions = 64});
  HeadsView<float> q(y.data(), T, Hq, D, stride);
  HeadsView<float> k(y.data() + Hq * D, T, Hkv, D, stride);
  tformer::apply_rope_inplace<RopeLayout::RotateHalf>(table, q, k, Positions::offset(10));

  const auto inv = std::vector<double>(table.inv_freq().begin(), table.inv_freq().end());
  for (int t = 0; t < T; ++t) {
    for (int h = 0; h < Hq + 2 * Hkv; ++h) {
      const std::size_t base = static_cast<std::size_t>(t) * stride + h * D;
      std::vector<double> xr(qkv.begin() + base, qkv.begin() + base + D);
      auto expected = h < Hq + Hkv ? ref::rope(xr, D, ref::Layout::RotateHalf, 10 + t, inv) : xr;
      for (int i = 0; i < D; ++i) {
        // The pair partner of i (rotate-half): the 4u bound of check_against_reference.
        const int partner = i < D / 2 ? i + D / 2 : i - D / 2;
        const double tol =
            h < Hq + Hkv ? 2.0 * FLT_EPSILON * (std::abs(xr[i]) + std::abs(xr[partner])) : 0.0;
        REQUIRE(std::abs(y[base + i] - expected[i]) <= tol);
      }
    }
  }
}

TEST_CASE("rope/apply: position 0 is the identity", "[rope]") {
  RopeTable table(RopeConfig{.rotary_dim = 64, .max_positions = 4});
  test::Random rng(3);
  const auto x = rng.normal_floats(3 * 64);
  for (RopeLayout layout : kLayouts) {
    auto y = x;
    std::vector<std::int32_t> zeros(3, 0);
    tformer::apply_rope_inplace(layout, table, HeadsView<float>(y.data(), 3, 1, 64),
                                Positions::ids(zeros));
    CHECK(y == x);  // cos 0 = 1 and sin 0 = 0 exactly, so the rotation is exact
  }
}

TEST_CASE("rope/apply: every pair keeps its norm", "[rope][property]") {
  const auto seed = GENERATE(range(100, 110));
  CAPTURE(seed);
  test::Random rng(seed);
  const int D = rng.even(2, 256), T = rng.integer(1, 16);
  RopeTable table(RopeConfig{.rotary_dim = D, .max_positions = 70000});
  const auto x = rng.normal_floats(static_cast<std::size_t>(T) * D);
  for (RopeLayout layout : kLayouts) {
    auto y = x;
    const int first = rng.integer(0, 70000 - T);
    tformer::apply_rope_inplace(layout, table, HeadsView<float>(y.data(), T, 1, D),
                                Positions::offset(first));
    for (int t = 0; t < T; ++t) {
      for (int i = 0; i < D / 2; ++i) {
        const std::size_t a = t * D + ref::pair_first(to_ref(layout), i);
        const std::size_t b = t * D + ref::pair_second(to_ref(layout), i, D);
        const double before = std::hypot(double(x[a]), double(x[b]));
        const double after = std::hypot(double(y[a]), double(y[b]));
        // |cos|, |sin| carry u each; the outputs 4u·(|a|+|b|) <= 4u·sqrt2·norm.
        REQUIRE(std::abs(after - before) <= 6.0 * FLT_EPSILON * before + 1e-30);
      }
    }
  }
}

TEST_CASE("rope/apply: <R_m q, R_n k> depends only on m - n", "[rope][property]") {
  const auto seed = GENERATE(range(200, 215));
  CAPTURE(seed);
  test::Random rng(seed);
  const int D = rng.even(2, 256);
  const int max_positions = 100000;
  RopeTable table(
      RopeConfig{.rotary_dim = D, .max_positions = max_positions, .base = rng.uniform(1e3, 1e6)});
  const auto q = rng.normal_floats(D), k = rng.normal_floats(D);
  const int m = rng.integer(0, 50000), n = rng.integer(0, 50000);
  const int shift = rng.integer(0, 49999);
  for (RopeLayout layout : kLayouts) {
    CAPTURE(to_string(layout), m, n, shift);
    auto rotated = [&](const std::vector<float>& v, int p) {
      auto y = v;
      tformer::apply_rope_inplace(layout, table, HeadsView<float>(y.data(), 1, 1, D),
                                  Positions::offset(p));
      return y;
    };
    const double near = dot(rotated(q, m).data(), rotated(k, n).data(), D);
    const double far = dot(rotated(q, m + shift).data(), rotated(k, n + shift).data(), D);
    // Each rotated vector is within ~4u·sqrt2·norm of exact: the products differ by far less
    // than 1e-5·|q|·|k|.
    const double scale = std::sqrt(dot(q.data(), q.data(), D) * dot(k.data(), k.data(), D));
    REQUIRE(std::abs(near - far) <= 1e-5 * scale);
  }
}

TEST_CASE("rope/apply: T tokens at offset p equal the last T rows of a pass from 0", "[rope]") {
  const int p = 37, T = 11, H = 3, D = 48;
  RopeTable table(RopeConfig{.rotary_dim = D, .max_positions = 128});
  test::Random rng(11);
  const auto all = rng.normal_floats(static_cast<std::size_t>(p + T) * H * D);
  for (RopeLayout layout : kLayouts) {
    auto full = all;
    tformer::apply_rope_inplace(layout, table, HeadsView<float>(full.data(), p + T, H, D),
                                Positions::offset(0));
    std::vector<float> tail(all.begin() + std::size_t(p) * H * D, all.end());
    tformer::apply_rope_inplace(layout, table, HeadsView<float>(tail.data(), T, H, D),
                                Positions::offset(p));
    CHECK(std::equal(tail.begin(), tail.end(), full.begin() + std::size_t(p) * H * D));
  }
}

TEST_CASE("rope/apply: interleaved equals rotate-half under the pair permutation", "[rope]") {
  // P sends interleaved index 2i to i and 2i+1 to i + d/2; then RotateHalf(P x) = P Interleaved(x).
  const int D = 128, T = 6;
  RopeTable table(RopeConfig{.rotary_dim = D, .max_positions = 5000, .base = 500000.0});
  test::Random rng(5);
  const auto x = rng.normal_floats(T * D);
  auto permute = [&](const std::vector<float>& v) {
    std::vector<float> out(v.size());
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < D / 2; ++i) {
        out[t * D + i] = v[t * D + 2 * i];
        out[t * D + i + D / 2] = v[t * D + 2 * i + 1];
      }
    return out;
  };
  auto a = x;
  tformer::apply_rope_inplace<RopeLayout::Interleaved>(table, HeadsView<float>(a.data(), T, 1, D),
                                                       Positions::offset(4000));
  auto b = permute(x);
  tformer::apply_rope_inplace<RopeLayout::RotateHalf>(table, HeadsView<float>(b.data(), T, 1, D),
                                                      Positions::offset(4000));
  const auto pa = permute(a);
  for (std::size_t i = 0; i < b.size(); ++i) REQUIRE(b[i] == Approx(pa[i]).margin(1e-6));
}

TEST_CASE("rope/apply: the inverse after the rotation is the identity", "[rope][property]") {
  const auto seed = GENERATE(range(300, 310));
  CAPTURE(seed);
  test::Random rng(seed);
  const int D = rng.even(2, 200), d = rng.even(2, D), T = rng.integer(1, 10), H = rng.integer(1, 4);
  RopeTable table(RopeConfig{.rotary_dim = d, .max_positions = 1 << 16});
  const auto x = rng.normal_floats(static_cast<std::size_t>(T) * H * D);
  for (RopeLayout layout : kLayouts) {
    auto y = x;
    HeadsView<float> v(y.data(), T, H, D);
    const auto at = Positions::offset(rng.integer(0, (1 << 16) - T));
    tformer::apply_rope_inplace(layout, table, v, at);
    tformer::apply_rope_inplace(layout, table, v, at, RopeDirection::Inverse);
    for (std::size_t i = 0; i < x.size(); ++i)
      REQUIRE(std::abs(y[i] - x[i]) <= 8.0 * FLT_EPSILON * (std::abs(x[i]) + 1.0f));
  }
}

TEST_CASE(
    "rope/apply: with an attention factor, Inverse undoes Forward and Transpose is the adjoint",
    "[rope][property]") {
  const auto seed = GENERATE(range(320, 326));
  CAPTURE(seed);
  test::Random rng(seed);
  const int D = rng.even(2, 160), T = rng.integer(1, 8), H = rng.integer(1, 5);
  // YaRN s = 16: attention factor 1 + 0.1 ln 16 = 1.277.
  RopeTable table(RopeConfig{
      .rotary_dim = D,
      .max_positions = 4096,
      .scaling = tformer::rope_scaling::Yarn{.factor = 16, .original_max_positions = 256}});
  REQUIRE(table.attention_factor() > 1.2);
  const auto x = rng.normal_floats(static_cast<std::size_t>(T) * H * D);
  const auto g = rng.normal_floats(x.size());
  const auto at = Positions::offset(rng.integer(0, 4096 - T));
  for (RopeLayout layout : kLayouts) {
    auto y = x;
    HeadsView<float> v(y.data(), T, H, D);
    tformer::apply_rope_inplace(layout, table, v, at);
    tformer::apply_rope_inplace(layout, table, v, at, RopeDirection::Inverse);
    for (std::size_t i = 0; i < x.size(); ++i)
      REQUIRE(std::abs(y[i] - x[i]) <= 8.0 * FLT_EPSILON * (std::abs(x[i]) + 1.0f));
    // <f R x, g> = <x, f Rᵀ g>: Transpose is the backward pass.
    auto rx = x, rtg = g;
    tformer::apply_rope_inplace(layout, table, HeadsView<float>(rx.data(), T, H, D), at);
    tformer::apply_rope_inplace(layout, table, HeadsView<float>(rtg.data(), T, H, D), at,
                                RopeDirection::Transpose);
    const int n = static_cast<int>(x.size());
    const double lhs = dot(rx.data(), g.data(), n), rhs = dot(x.data(), rtg.data(), n);
    const double scale = std::sqrt(dot(x.data(), x.data(), n) * dot(g.data(), g.data(), n));
    REQUIRE(std::abs(lhs - rhs) <= 1e-5 * scale);
  }
}

TEST_CASE("rope/apply: per-sequence offsets of a padded batch", "[rope]") {
  // Two sequences of 4 tokens each in one call, at offsets 3 and 90.
  const int per = 4, H = 2, D = 16;
  RopeTable table(RopeConfig{.rotary_dim = D, .max_positions = 100});
  test::Random rng(13);
  const auto x = rng.normal_floats(2 * per * H * D);
  auto y = x;
  const std::vector<std::int32_t> offsets = {3, 90};
  tformer::apply_rope_inplace<RopeLayout::RotateHalf>(
      table, HeadsView<float>(y.data(), 2 * per, H, D), Positions::per_sequence(offsets, per));
  check_against_reference(x, y, 2 * per, H, D, table, RopeLayout::RotateHalf,
                          {3, 4, 5, 6, 90, 91, 92, 93});
}

TEST_CASE("rope/apply: partial rotary leaves the trailing dimensions alone", "[rope]") {
  // Phi-2: head_dim 80, partial_rotary_factor 0.4 -> 32 rotary dims; exponent uses 32, not 80.
  const int D = 80, d = tformer::partial_rotary_dim(D, 0.4);
  REQUIRE(d == 32);
  RopeTable table(RopeConfig{.rotary_dim = d, .max_positions = 2048});
  REQUIRE(table.inv_freq()[1] == Approx(std::pow(10000.0, -2.0 / 32)).epsilon(1e-15));
  test::Random rng(17);
  const auto x = rng.normal_floats(3 * 2 * D);
  for (RopeLayout layout : kLayouts) {
    auto y = x;
    tformer::apply_rope_inplace(layout, table, HeadsView<float>(y.data(), 3, 2, D),
                                Positions::offset(2000));
    check_against_reference(x, y, 3, 2, D, table, layout, offset_positions(2000, 3));
  }
}

TEST_CASE("rope/apply: positions up to 2^20 match the double reference to 1e-5", "[rope]") {
  const int D = 16, max_positions = (1 << 20) + 1;
  RopeTable table(RopeConfig{.rotary_dim = D, .max_positions = max_positions, .base = 10000.0});
  test::Random rng(19);
  const std::vector<std::int32_t> ids = {0, 1, 4095, 65535, 100000, 524287, 999999, 1 << 20};
  const int T = static_cast<int>(ids.size());
  const auto x = rng.normal_floats(static_cast<std::size_t>(T) * D);
  const auto inv = ref::default_inv_freq(D, 10000.0);
  for (RopeLayout layout : kLayouts) {
    auto y = x;
    tformer::apply_rope_inplace(layout, table, HeadsView<float>(y.data(), T, 1, D),
                                Positions::ids(ids));
    for (int t = 0; t < T; ++t) {
      std::vector<double> xr(x.begin() + t * D, x.begin() + (t + 1) * D);
      const auto expected = ref::rope(xr, D, to_ref(layout), ids[t], inv);
      for (int i = 0; i < D; ++i) REQUIRE(std::abs(y[t * D + i] - expected[i]) <= 1e-5);
    }
  }
}

TEST_CASE("rope/apply: bad arguments raise tformer::Error naming them", "[rope][errors]") {
  using Catch::Matchers::Contains;
  RopeTable table(RopeConfig{.rotary_dim = 8, .max_positions = 16});
  std::vector<float> buf(4 * 2 * 10, 0.0f);
  auto apply = [&](HeadsView<float> v, Positions p) {
    tformer::apply_rope_inplace<RopeLayout::RotateHalf>(table, v, p);
  };
  CHECK_THROWS_WITH(apply(HeadsView<float>(buf.data(), 4, 2, 7), Positions::offset(0)),
                    Contains("x.head_dim") && Contains("even") && Contains("got 7"));
  CHECK_THROWS_WITH(apply(HeadsView<float>(buf.data(), 4, 2, 6), Positions::offset(0)),
                    Contains("x.head_dim") && Contains(">= rotary_dim (8)") && Contains("got 6"));
  CHECK_THROWS_WITH(apply(HeadsView<float>(buf.data(), 4, 2, 8), Positions::offset(13)),
                    Contains("positions") && Contains("[0, 16)") && Contains("[13, 17)"));
  CHECK_THROWS_WITH(apply(HeadsView<float>(buf.data(), 4, 2, 8), Positions::offset(-1)),
                    Contains("positions"));
  const std::vector<std::int32_t> ids = {0, 3, 16, 2};
  CHECK_THROWS_WITH(apply(HeadsView<float>(buf.data(), 4, 2, 8), Positions::ids(ids)),
                    Contains("position") && Contains("got 16 (token 2)"));
  const std::vector<std::int32_t> three = {0, 1, 2};
  CHECK_THROWS_WITH(apply(HeadsView<float>(buf.data(), 4, 2, 8), Positions::ids(three)),
                    Contains("position ids count") && Contains("expected 4, got 3"));
  CHECK_THROWS_WITH(apply(HeadsView<float>(buf.data(), 4, 2, 8, 10), Positions::offset(0)),
                    Contains("token_stride >= heads * head_dim"));
  CHECK_THROWS_WITH(apply(HeadsView<float>(nullptr, 4, 2, 8), Positions::offset(0)),
                    Contains("x data"));

  std::vector<float> out(buf.size());
  CHECK_THROWS_WITH(tformer::apply_rope<RopeLayout::Interleaved>(
                        table, HeadsView<const float>(buf.data(), 4, 2, 8),
                        HeadsView<float>(out.data(), 4, 1, 8), Positions::offset(0)),
                    Contains("out.heads") && Contains("expected 2, got 1"));
  HeadsView<float> q(buf.data(), 4, 1, 8), k(out.data(), 3, 1, 8);
  CHECK_THROWS_WITH(
      tformer::apply_rope_inplace<RopeLayout::Interleaved>(table, q, k, Positions::offset(0)),
      Contains("k.tokens") && Contains("expected 4, got 3"));
  // Overlapping views are rejected; Q and K interleaved in one fused row are not overlapping.
  CHECK_THROWS_WITH(tformer::apply_rope<RopeLayout::Interleaved>(
                        table, HeadsView<const float>(buf.data(), 4, 2, 8),
                        HeadsView<float>(buf.data() + 8, 4, 2, 8), Positions::offset(0)),
                    Contains("out") && Contains("memory disjoint from in"));
  CHECK_THROWS_WITH(tformer::apply_rope_inplace<RopeLayout::Interleaved>(
                        table, HeadsView<float>(buf.data(), 4, 2, 8),
                        HeadsView<float>(buf.data(), 4, 2, 8), Positions::offset(0)),
                    Contains("k") && Contains("memory disjoint from q"));
  CHECK_NOTHROW(tformer::apply_rope_inplace<RopeLayout::Interleaved>(
      table, HeadsView<float>(buf.data(), 4, 1, 8, 20),
      HeadsView<float>(buf.data() + 8, 4, 1, 8, 20), Positions::offset(0)));
  std::fill(buf.begin(), buf.end(), 0.0f);
  // Nothing was written by a rejected call.
  CHECK(std::all_of(buf.begin(), buf.end(), [](float v) { return v == 0.0f; }));
}

TEST_CASE("rope/apply: explicit rows rotate as the table does, past the table too",
          "[rope][rows]") {
  test::Random rng(77);
  const int T = 5, Hq = 4, Hk = 2, D = 32, d = 24;  // partial rotary: 24 of 32
  RopeTable table(RopeConfig{.rotary_dim = d, .max_positions = 64});
  const auto q0 = rng.normal_floats(std::size_t(T) * Hq * D), k0 = rng.normal_floats(std::size_t(T) * Hk * D);
  for (const int first : {10, 1000}) {
    CAPTURE(first);
    std::vector<float> rows(std::size_t(T) * d);
    table.compute_rows(Positions::offset(first), T, {rows.data(), T, d});
    auto q = q0, k = k0;
    tformer::apply_rope_rows_inplace<RopeLayout::Interleaved>({rows.data(), T, d},
                                                             {q.data(), T, Hq, D}, {k.data(), T, Hk, D});
    if (first + T <= table.max_positions()) {  // the same rows: the same floats
      auto qt = q0, kt = k0;
      tformer::apply_rope_inplace<RopeLayout::Interleaved>(table, {qt.data(), T, Hq, D},
                                                          {kt.data(), T, Hk, D}, Positions::offset(first));
      REQUIRE(q == qt);
      REQUIRE(k == kt);
    } else {  // past the table: the double reference. A rotated value a·c − b·s carries the
              // rounding of c and s (u each) and of two products and a sum: <= 3u·(|a| + |b|),
              // within 4·FLT_EPSILON·max|x| of the head vector.
      const auto inv = ref::default_inv_freq(d, 10000.0);
      for (int t = 0; t < T; ++t)
        for (int h = 0; h < Hq; ++h) {
          const std::vector<double> x(q0.begin() + (t * Hq + h) * D, q0.begin() + (t * Hq + h + 1) * D);
          const auto want = ref::rope(x, std::size_t(d), ref::Layout::Interleaved, double(first + t), inv);
          double xmax = 0;
          for (double xi : x) xmax = std::max(xmax, std::abs(xi));
          for (int i = 0; i < D; ++i)
            REQUIRE(std::abs(q[std::size_t((t * Hq + h) * D + i)] - want[std::size_t(i)]) <=
                    4 * FLT_EPSILON * xmax);
        }
    }
  }
  std::vector<float> rows(std::size_t(T) * d), q(std::size_t(T) * Hq * D), k(std::size_t(T) * Hk * D);
  CHECK_THROWS_WITH(tformer::apply_rope_rows_inplace<RopeLayout::RotateHalf>(
                        {rows.data(), T - 1, d}, {q.data(), T, Hq, D}, {k.data(), T, Hk, D}),
                    Catch::Contains("rows.rows"));
}

TEST_CASE("rope/apply: sizes whose products wrap, and enums out of range, raise tformer::Error",
          "[rope][errors]") {
  using Catch::Matchers::Contains;
  using tformer::index;
  RopeTable table(RopeConfig{.rotary_dim = 8, .max_positions = 16});
  std::vector<float> buf(64, 0.0f), rows(8, 0.0f);
  // heads · head_dim = 2^61 · 8 wraps to 0: the view's token stride and size look empty.
  const HeadsView<float> wrapped(buf.data(), 1, index(1) << 61, 8);
  const HeadsView<float> small(buf.data() + 32, 1, 2, 8);
  const auto at0 = Positions::offset(0);
  CHECK_THROWS_WITH(tformer::apply_rope_inplace<RopeLayout::Interleaved>(table, wrapped, at0),
                    Contains("apply_rope_inplace: x shape") &&
                        Contains("heads 2305843009213693952, head_dim 8"));
  CHECK_THROWS_WITH(tformer::apply_rope_inplace<RopeLayout::RotateHalf>(table, small, wrapped, at0),
                    Contains("k shape"));
  CHECK_THROWS_WITH(tformer::apply_rope_inplace<RopeLayout::RotateHalf>(table, wrapped, small, at0),
                    Contains("q shape"));
  CHECK_THROWS_WITH(tformer::apply_rope<RopeLayout::RotateHalf>(table, wrapped, small, at0),
                    Contains("in shape"));
  CHECK_THROWS_WITH(tformer::apply_rope<RopeLayout::RotateHalf>(table, small, wrapped, at0),
                    Contains("out shape"));
  CHECK_THROWS_WITH(tformer::apply_rope_rows_inplace<RopeLayout::RotateHalf>(
                        {rows.data(), 1, 8}, wrapped, small),
                    Contains("q shape"));
  // Two tokens 2^62 floats apart.
  const HeadsView<float> far(buf.data(), 2, 1, 8, index(1) << 62);
  CHECK_THROWS_WITH(tformer::apply_rope_inplace<RopeLayout::Interleaved>(table, far, at0),
                    Contains("x shape"));
  CHECK_THROWS_WITH(tformer::apply_rope_rows_inplace<RopeLayout::RotateHalf>(
                        {rows.data(), index(1) << 62, 8, index(1) << 62}, small, small),
                    Contains("rows shape"));

  const auto bad_direction = static_cast<RopeDirection>(7);
  CHECK_THROWS_WITH(
      tformer::apply_rope_inplace<RopeLayout::Interleaved>(table, small, at0, bad_direction),
      Contains("apply_rope_inplace: direction") && Contains("got 7"));
  CHECK_THROWS_WITH(tformer::apply_rope<RopeLayout::Interleaved>(
                        table, HeadsView<const float>(buf.data(), 1, 2, 8), small, at0,
                        bad_direction),
                    Contains("direction"));
  CHECK_THROWS_WITH(tformer::apply_rope_inplace<RopeLayout::Interleaved>(
                        table, HeadsView<float>(buf.data(), 1, 2, 8), small, at0, bad_direction),
                    Contains("direction"));
  CHECK_THROWS_WITH(
      tformer::apply_rope_inplace(static_cast<RopeLayout>(2), table, small, at0),
      Contains("apply_rope_inplace: layout") && Contains("got 2"));
  CHECK_THROWS_WITH(tformer::apply_rope_inplace(RopeLayout::Interleaved, table, small, at0,
                                                static_cast<RopeDirection>(-1)),
                    Contains("direction"));
  CHECK(std::all_of(buf.begin(), buf.end(), [](float v) { return v == 0.0f; }));
}

TEST_CASE("rope/apply: NaN and inf in the data propagate to their own pair only, every path",
          "[rope]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  RopeTable table(RopeConfig{.rotary_dim = 64, .max_positions = 16});
  for (const RopeLayout layout : {RopeLayout::Interleaved, RopeLayout::RotateHalf}) {
    CAPTURE(tformer::to_string(layout));
    std::vector<float> x(3 * 64, 1.0f);
    // Pair 5 of the middle head, pair 31 (the last) of the last head.
    const int a5 = layout == RopeLayout::Interleaved ? 10 : 5;
    const int a31 = layout == RopeLayout::Interleaved ? 62 : 31;
    x[64 + a5] = nan;
    x[128 + a31] = std::numeric_limits<float>::infinity();
    tformer::apply_rope_inplace(layout, table, {x.data(), 1, 3, 64}, Positions::offset(3));
    for (int h = 0; h < 3; ++h)
      for (int i = 0; i < 32; ++i) {
        const int ia = layout == RopeLayout::Interleaved ? 2 * i : i;
        const int ib = layout == RopeLayout::Interleaved ? 2 * i + 1 : i + 32;
        const bool poisoned = (h == 1 && i == 5) || (h == 2 && i == 31);
        INFO("head " << h << " pair " << i);
        CHECK(std::isfinite(x[std::size_t(h * 64 + ia)]) != poisoned);
        CHECK(std::isfinite(x[std::size_t(h * 64 + ib)]) != poisoned);
      }
  }
}
