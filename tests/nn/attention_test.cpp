// Grouped-query attention against the double reference.
//
// Tolerance per output: each score carries at most E = (D + 2)·u·scale·max_j Σ_i |q_i·k_ji| of
// rounding, which moves every softmax weight by a relative 2E at most; exp, the running sums over
// L keys and the final division add (L + 16)·u. The output, a convex combination of value rows,
// is then within max|v|·(2E + (L + 16)·u) of the reference.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "reference/attention_reference.hpp"
#include "reference/weight_reference.hpp"
#include "support/engine_pool.hpp"
#include "support/random.hpp"
#include "tformer/core/parallel.hpp"
#include "tformer/nn/attention.hpp"
#include "tformer/nn/position_bias.hpp"

using Catch::Matchers::Contains;
using tformer::AttentionOptions;
using tformer::AttentionWorkspace;
using tformer::HeadsView;
using tformer::KVCache;
using tformer::Positions;

namespace {

constexpr double u = FLT_EPSILON / 2;

// One layer, one sequence: random keys and values for `length` positions, stored through write()
// in a cache of `type`.
struct Setup {
  int Hq, Hkv, D, L;
  std::vector<float> k, v;              // [L, Hkv, D] token-major, as a projection writes them
  std::vector<float> k_heads, v_heads;  // [Hkv, L, D] for the reference: the values stored
  KVCache cache;

  Setup(test::Random& rng, int hq, int hkv, int d, int l, float key_scale = 1.0f,
        tformer::KVType type = tformer::KVType::f32)
      : Hq(hq),
        Hkv(hkv),
        D(d),
        L(l),
        k(rng.normal_floats(std::size_t(l) * hkv * d, key_scale)),
        v(rng.normal_floats(std::size_t(l) * hkv * d)),
        cache({.layers = 1, .kv_heads = hkv, .head_dim = d, .capacity = l, .type = type}) {
    cache.write(0, 0, HeadsView<const float>(k.data(), l, hkv, d),
                HeadsView<const float>(v.data(), l, hkv, d));
    cache.advance(0, l);
    k_heads.resize(k.size());
    v_heads.resize(v.size());
    if (type == tformer::KVType::f32) {
      for (int t = 0; t < l; ++t)
        for (int g = 0; g < hkv; ++g)
          for (int i = 0; i < d; ++i) {
            k_heads[(std::size_t(g) * l + t) * d + i] = k[(std::size_t(t) * hkv + g) * d + i];
            v_heads[(std::size_t(g) * l + t) * d + i] = v[(std::size_t(t) * hkv + g) * d + i];
          }
    } else if (type == tformer::KVType::q8) {  // the stored values: integer · row scale, in float
      const tformer::KVView view = cache.view(0, 0, l);
      for (int g = 0; g < hkv; ++g)
        for (int t = 0; t < l; ++t)
          for (int i = 0; i < d; ++i) {
            k_heads[(std::size_t(g) * l + t) * d + i] =
                float(view.key<std::int8_t>(g, t)[i]) * *view.key_scale(g, t);
            v_heads[(std::size_t(g) * l + t) * d + i] =
                float(view.value<std::int8_t>(g, t)[i]) * *view.value_scale(g, t);
          }
    } else {  // the stored 16-bit values, decoded from their format's definition
      const tformer::KVView view = cache.view(0, 0, l);
      const auto decode = [&](auto tag) {
        using E = decltype(tag);
        const auto value_of = [](E x) {
          return float(std::is_same_v<E, tformer::f16> ? ref::half_value(x.bits) : ref::bfloat_value(x.bits));
        };
        for (int g = 0; g < hkv; ++g)
          for (int t = 0; t < l; ++t)
            for (int i = 0; i < d; ++i) {
              k_heads[(std::size_t(g) * l + t) * d + i] = value_of(view.key<E>(g, t)[i]);
              v_heads[(std::size_t(g) * l + t) * d + i] = value_of(view.value<E>(g, t)[i]);
            }
      };
      if (type == tformer::KVType::f16) decode(tformer::f16{});
      else decode(tformer::bf16{});
    }
  }
  ref::AttentionCase reference(const AttentionOptions& opt) const {
    ref::AttentionCase c{
        Hq, Hkv, D, L, &k_heads, &v_heads, opt.scale > 0 ? opt.scale : 1.0 / std::sqrt(double(D))};
    c.softcap = opt.softcap;
    c.window = int(opt.window);
    c.causal = opt.causal;
    c.sinks = int(opt.sinks);
    c.sinks_in_cache = opt.sink_positions == tformer::SinkPositions::InCache;
    return c;
  }
};

// sink_q: empty, or the sink queries (q's shape) the call was given.
void check_outputs(const Setup& s, const ref::AttentionCase& c, const std::vector<float>& q,
                   const std::vector<float>& o, const std::vector<std::int32_t>& pos,
                   const std::vector<float>& sink_q = {}) {
  double vmax = 0;
  for (float x : s.v_heads) vmax = std::max(vmax, double(std::abs(x)));
  const int T = int(pos.size());
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < s.Hq; ++h) {
      const float* qh = q.data() + (std::size_t(t) * s.Hq + h) * s.D;
      const float* sh = sink_q.empty() ? qh : sink_q.data() + (qh - q.data());
      const auto expected = ref::attend(c, h, qh, pos[t], sh);
      double e = 0;
      const int g = h / (s.Hq / s.Hkv);
      for (int j = 0; j < s.L; ++j) {
        double m = 0, ms = 0;
        for (int i = 0; i < s.D; ++i) {
          m += std::abs(qh[i] * s.k_heads[(std::size_t(g) * s.L + j) * s.D + i]);
          ms += std::abs(sh[i] * s.k_heads[(std::size_t(g) * s.L + j) * s.D + i]);
        }
        e = std::max({e, m, ms});
      }
      e *= (s.D + 2) * u * c.scale;
      const double tol = vmax * (2 * e + (s.L + 16) * u) + 1e-30;
      for (int i = 0; i < s.D; ++i) {
        INFO("token " << t << " head " << h << " dim " << i << " position " << pos[t]);
        REQUIRE(std::abs(o[(std::size_t(t) * s.Hq + h) * s.D + i] - expected[i]) <= tol);
      }
    }
}

// A one-layer f32 cache holding keys k and values v ([L, Hkv, D], token-major) at positions [0, L).
KVCache cache_of(const std::vector<float>& k, const std::vector<float>& v, int L, int Hkv, int D) {
  KVCache cache({.layers = 1, .kv_heads = Hkv, .head_dim = D, .capacity = L});
  cache.write(0, 0, HeadsView<const float>(k.data(), L, Hkv, D),
              HeadsView<const float>(v.data(), L, Hkv, D));
  cache.advance(0, L);
  return cache;
}

std::vector<float> run(Setup& s, const std::vector<float>& q, const std::vector<std::int32_t>& pos,
                       const AttentionOptions& opt = {}) {
  const int T = int(pos.size());
  std::vector<float> o(q.size(), -9.0f);
  AttentionWorkspace ws(s.Hq / s.Hkv, s.D);
  tformer::attention(HeadsView<const float>(q.data(), T, s.Hq, s.D), s.cache.view(0, 0, s.L),
                     Positions::ids(pos), HeadsView<float>(o.data(), T, s.Hq, s.D), ws, opt);
  return o;
}

// The property tests' mask options by seed: a window (one draw of rng), a soft-cap, non-causal.
AttentionOptions seeded_masks(int seed, test::Random& rng) {
  AttentionOptions opt;
  if (seed % 3 == 1) opt.window = rng.integer(1, 80);
  if (seed % 4 == 2) opt.softcap = 5.0f;
  if (seed % 5 == 3) opt.causal = false;
  return opt;
}

// Random queries for T tokens at random positions below s.L, run and checked against the reference.
void check_random_queries(Setup& s, test::Random& rng, int T, const AttentionOptions& opt) {
  const auto q = rng.normal_floats(std::size_t(T) * s.Hq * s.D);
  std::vector<std::int32_t> pos(T);
  for (auto& p : pos) p = rng.integer(0, s.L - 1);
  check_outputs(s, s.reference(opt), q, run(s, q, pos, opt), pos);
}

}  // namespace

TEST_CASE("nn/attention: GQA matches the reference on random shapes and masks",
          "[nn][attention][property]") {
  const auto seed = GENERATE(range(1, 25));
  CAPTURE(seed);
  test::Random rng(seed);
  // Groups up to 9: decode takes heads in batches (4 on AVX-512, 2 below) and the rest alone.
  const int Hkv = rng.integer(1, 4), g = rng.integer(1, 9), D = rng.even(2, 96);
  // Seeds 3, 7, 11, ...: a prefill of 65 to 150 tokens over 130 to 300 keys (two or three query
  // tiles of 64, two or three key blocks of 128); the others up to 12 tokens.
  const bool long_prefill = seed % 4 == 3;
  const int L = rng.integer(long_prefill ? 130 : 1, 300);
  const int T = long_prefill ? rng.integer(65, 150) : rng.integer(1, std::min(L, 12));
  Setup s(rng, Hkv * g, Hkv, D, L);
  AttentionOptions opt = seeded_masks(seed, rng);
  if (seed % 2) opt.scale = float(rng.uniform(0.05, 0.5));
  CAPTURE(Hkv, g, D, L, T, opt.window, opt.softcap, opt.causal);
  check_random_queries(s, rng, T, opt);
}

// q8: the one-token path scales a row's dot product (and its softmax weight) instead of its
// values: a score is D − 1 sums, D products, the row scale and the softmax scale against the
// reference's stored value (one rounding of q·s), D + 2 roundings, what check_outputs' (D + 2)·u
// allows; the weight's one more rounding fits in its 16u of the sum.
TEST_CASE(
    "nn/attention: f16, bf16 and q8 caches match the reference over the stored values, "
    "both paths and every mask",
    "[nn][attention][property][kv16][kvq8]") {
  const auto type = GENERATE(tformer::KVType::f16, tformer::KVType::bf16, tformer::KVType::q8);
  const auto seed = GENERATE(range(1, 17));
  CAPTURE(tformer::kv_type_name(type), seed);
  test::Random rng(seed + 100);
  const int Hkv = rng.integer(1, 4), g = rng.integer(1, 9), D = rng.integer(1, 140);
  const int L = rng.integer(1, 400), T = seed % 2 ? 1 : rng.integer(2, std::min(L + 1, 150));
  Setup s(rng, Hkv * g, Hkv, D, L, 1.0f, type);
  AttentionOptions opt = seeded_masks(seed, rng);
  if (seed % 7 == 5 && opt.window > 0) opt.sinks = rng.integer(1, 6);
  CAPTURE(Hkv, g, D, L, T, opt.window, opt.softcap, opt.causal, opt.sinks);
  check_random_queries(s, rng, T, opt);
}

// Decode (one query token) with head_dim a multiple of 16, so every SIMD width runs its vector
// blocks: groups that fill decode's batches of heads (4 on AVX-512, 2 below), exceed them, and fall
// short; contexts past the prefetch distance (128 keys), every cache type, every mask.
TEST_CASE("nn/attention: decode over every cache type, group and vector head_dim",
          "[nn][attention][property][kv16][kvq8]") {
  const auto type = GENERATE(tformer::KVType::f32, tformer::KVType::f16, tformer::KVType::bf16,
                             tformer::KVType::q8);
  const auto seed = GENERATE(range(0, 8));
  CAPTURE(tformer::kv_type_name(type), seed);
  test::Random rng(std::uint64_t(seed + 600));
  constexpr int groups[8] = {4, 8, 1, 5, 2, 9, 3, 6};
  const int Hkv = rng.integer(1, 2), g = groups[seed], D = 16 * rng.integer(1, 8);
  const int L = rng.integer(130, 700);
  Setup s(rng, Hkv * g, Hkv, D, L, 1.0f, type);
  AttentionOptions opt = seeded_masks(seed, rng);
  CAPTURE(Hkv, g, D, L, opt.window, opt.softcap, opt.causal);
  check_random_queries(s, rng, 1, opt);
}

TEST_CASE(
    "nn/attention: f16, bf16 and q8 caches are within the stated bound of the f32 cache, "
    "and equal an f32 cache of the stored values",
    "[nn][attention][kv16][kvq8]") {
  // Bound: each stored key moves each score by at most r·scale·Σ_i |q_i·k_i| (r = 2^−11 for
  // f16 in its normal range, 2^−8 for bf16), for q8 by scale·Σ_i |q_i|·s_k/2·(1 + 2^−15) (s_k the
  // key row's scale, KVType::q8's bound), so each softmax weight by a relative factor within
  // e^(2E) − 1 (E the largest such move); each value by r·|v|, for q8 by s_v/2·(1 + 2^−15). On
  // top, both runs' own float rounding (the reference tolerance of check_outputs, twice). A
  // worst-case bound, loose for bf16 and q8 (the test against the reference over the stored
  // values above is the tight one).
  const auto type = GENERATE(tformer::KVType::f16, tformer::KVType::bf16, tformer::KVType::q8);
  const auto seed = GENERATE(range(1, 9));
  CAPTURE(tformer::kv_type_name(type), seed);
  test::Random rng(seed);
  const int Hkv = rng.integer(1, 3), g = rng.integer(1, 4), D = rng.integer(16, 128);
  const int L = rng.integer(50, 2000), T = seed % 2 ? 1 : 37;
  test::Random rng16 = rng;  // the same keys and values for both caches
  Setup s32(rng, Hkv * g, Hkv, D, L), s16(rng16, Hkv * g, Hkv, D, L, 1.0f, type);
  const auto q = rng.normal_floats(std::size_t(T) * s32.Hq * D);
  std::vector<std::int32_t> pos(T);
  for (auto& p : pos) p = rng.integer(0, L - 1);
  const auto o32 = run(s32, q, pos), o16 = run(s16, q, pos);
  const bool q8 = type == tformer::KVType::q8;
  const double r = type == tformer::KVType::f16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
  const double half_step = 0.5 * (1 + std::ldexp(1.0, -15)) / 127;  // q8: of a row's max |x|
  const auto row_max = [&](const std::vector<float>& x, int kh,
                           int j) {  // of s32's head-major rows
    double m = 0;
    for (int i = 0; i < D; ++i)
      m = std::max(m, double(std::abs(x[(std::size_t(kh) * L + j) * D + i])));
    return m;
  };
  const double scale = 1.0 / std::sqrt(double(D));
  double vmax = 0, qk = 0, E = 0, value_error = 0;
  for (float x : s32.v) vmax = std::max(vmax, double(std::abs(x)));
  for (int kh = 0; kh < Hkv; ++kh)
    for (int j = 0; j < L; ++j)
      value_error = std::max(value_error, q8 ? half_step * row_max(s32.v_heads, kh, j) : r * vmax);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < s32.Hq; ++h)
      for (int j = 0; j < L; ++j) {
        double m = 0, qsum = 0;
        for (int i = 0; i < D; ++i) {
          const float qi = q[(std::size_t(t) * s32.Hq + h) * D + i];
          m += std::abs(qi * s32.k_heads[(std::size_t(h / g) * L + j) * D + i]);
          qsum += std::abs(qi);
        }
        qk = std::max(qk, m);
        E = std::max(E, scale * (q8 ? qsum * half_step * row_max(s32.k_heads, h / g, j) : r * m));
      }
  const double e32 = (D + 2) * u * scale * qk;
  const double tol = vmax * std::expm1(2 * E) + value_error + 2 * vmax * (2 * e32 + (L + 16) * u);
  double worst = 0;
  for (std::size_t n = 0; n < o32.size(); ++n) worst = std::max(worst, double(std::abs(o32[n] - o16[n])));
  CAPTURE(worst, tol);
  CHECK(worst <= tol);
  CHECK(worst > 0);  // the cache really rounded
  // Exactly: an f32 cache holding the stored values (decoded by the formats' definitions) gives
  // the same bits, both paths: the 16-bit kernels widen exactly and sum in the same order. q8
  // widens a block to exactly the stored values in the many-token path; the one-token path
  // scales dot products and weights instead: within the float rounding of the reference test.
  std::vector<float> k(s16.k_heads.size()), v(k.size());
  for (int t = 0; t < L; ++t)
    for (int kh = 0; kh < Hkv; ++kh)
      for (int i = 0; i < D; ++i) {
        k[(std::size_t(t) * Hkv + kh) * D + i] = s16.k_heads[(std::size_t(kh) * L + t) * D + i];
        v[(std::size_t(t) * Hkv + kh) * D + i] = s16.v_heads[(std::size_t(kh) * L + t) * D + i];
      }
  KVCache stored({.layers = 1, .kv_heads = Hkv, .head_dim = D, .capacity = L});
  stored.write(0, 0, HeadsView<const float>(k.data(), L, Hkv, D), HeadsView<const float>(v.data(), L, Hkv, D));
  stored.advance(0, L);
  std::vector<float> o_stored(q.size());
  AttentionWorkspace ws(g, D);
  tformer::attention(HeadsView<const float>(q.data(), T, s32.Hq, D), stored.view(0, 0, L),
                     Positions::ids(pos), HeadsView<float>(o_stored.data(), T, s32.Hq, D), ws);
  const double rounding = q8 && T == 1 ? 2 * vmax * (2 * e32 + (L + 16) * u) : 0.0;
  for (std::size_t n = 0; n < o16.size(); ++n) REQUIRE(std::abs(o16[n] - o_stored[n]) <= rounding);
  // The same with a bias hook, a window and a soft-cap: the per-key scalar path (score · scale
  // + bias, cap · tanh + bias) is compiled once per storage type and must round alike in each.
  // q8's one-token runs differ in their scores already; the cap (slope <= 1) and the bias (slope
  // 1) carry that difference on, and their own rounding on different inputs (a few ulp of
  // score + bias, a few tens at most for the keys that carry weight here) stays within the
  // bound's slack: 2·e32 and (L + 16)·u.
  const auto alibi = [](tformer::index h, tformer::index p, tformer::index j) {
    return -0.03125f * float(h + 1) * float(p - j);
  };
  for (const float softcap : {0.0f, 2.5f}) {
    CAPTURE(softcap);
    const AttentionOptions opt{.softcap = softcap, .window = L / 2};
    std::vector<float> o16_opt(q.size()), o_stored_opt(q.size());
    tformer::attention(HeadsView<const float>(q.data(), T, s32.Hq, D), s16.cache.view(0, 0, L),
                       Positions::ids(pos), HeadsView<float>(o16_opt.data(), T, s32.Hq, D), ws, opt,
                       alibi);
    tformer::attention(HeadsView<const float>(q.data(), T, s32.Hq, D), stored.view(0, 0, L),
                       Positions::ids(pos), HeadsView<float>(o_stored_opt.data(), T, s32.Hq, D), ws,
                       opt, alibi);
    for (std::size_t n = 0; n < o16.size(); ++n)
      REQUIRE(std::abs(o16_opt[n] - o_stored_opt[n]) <= rounding);
  }
}

TEST_CASE("nn/attention: multi-query attention, one KV head for up to 71 query heads",
          "[nn][attention]") {
  // Falcon-7B: 71 query heads over one KV head (head_dim 64); StarCoder: 48 over one.
  for (const int g : {71, 48, 17}) {
    CAPTURE(g);
    test::Random rng(std::uint64_t(100 + g));
    Setup s(rng, g, 1, 64, 97);
    for (const int T : {1, 5}) {  // the decode and the block path
      const auto q = rng.normal_floats(std::size_t(T) * g * 64);
      std::vector<std::int32_t> pos(static_cast<std::size_t>(T));
      for (int t = 0; t < T; ++t) pos[std::size_t(t)] = 92 + t;
      check_outputs(s, s.reference({}), q, run(s, q, pos), pos);
      AttentionOptions windowed;  // with a window and sinks too
      windowed.window = 20;
      windowed.sinks = 3;
      check_outputs(s, s.reference(windowed), q, run(s, q, pos, windowed), pos);
    }
  }
}

TEST_CASE("nn/attention: GQA equals MHA with each KV head repeated", "[nn][attention]") {
  test::Random rng(11);
  const int Hkv = 2, g = 4, D = 32, L = 50, T = 5;
  Setup gqa(rng, Hkv * g, Hkv, D, L);
  // The MHA cache: kv head h holds GQA head h / g.
  test::Random unused(0);
  Setup mha(unused, Hkv * g, Hkv * g, D, L);
  std::vector<float> k(std::size_t(L) * Hkv * g * D), v(k.size());
  for (int t = 0; t < L; ++t)
    for (int h = 0; h < Hkv * g; ++h)
      for (int i = 0; i < D; ++i) {
        k[(std::size_t(t) * Hkv * g + h) * D + i] = gqa.k[(std::size_t(t) * Hkv + h / g) * D + i];
        v[(std::size_t(t) * Hkv * g + h) * D + i] = gqa.v[(std::size_t(t) * Hkv + h / g) * D + i];
      }
  mha.cache.reset();
  mha.cache.write(0, 0, HeadsView<const float>(k.data(), L, Hkv * g, D),
                  HeadsView<const float>(v.data(), L, Hkv * g, D));
  mha.cache.advance(0, L);
  const auto q = rng.normal_floats(std::size_t(T) * Hkv * g * D);
  const std::vector<std::int32_t> pos = {45, 46, 47, 48, 49};
  // The same per-head arithmetic, grouped differently into GEMM blocks: equal within float
  // rounding of these unit-scale values (the bound of check_outputs is ~1e-5 here).
  const auto a = run(gqa, q, pos), b = run(mha, q, pos);
  for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(std::abs(a[i] - b[i]) <= 1e-5);
  check_outputs(gqa, gqa.reference({}), q, a, pos);
}

TEST_CASE("nn/attention: later tokens never change earlier outputs and prefill equals decode",
          "[nn][attention]") {
  test::Random rng(12);
  const int Hkv = 2, g = 2, D = 40, L = 30;
  Setup s(rng, Hkv * g, Hkv, D, L);
  const auto q = rng.normal_floats(std::size_t(L) * s.Hq * D);
  std::vector<std::int32_t> all(L);
  for (int t = 0; t < L; ++t) all[t] = t;
  const auto prefill = run(s, q, all);
  // Token by token over a cache that grows as decode would see it.
  KVCache growing({.layers = 1, .kv_heads = Hkv, .head_dim = D, .capacity = L});
  AttentionWorkspace ws(g, D);
  for (int t = 0; t < L; ++t) {
    growing.write(0, 0, HeadsView<const float>(s.k.data() + std::size_t(t) * Hkv * D, 1, Hkv, D),
                  HeadsView<const float>(s.v.data() + std::size_t(t) * Hkv * D, 1, Hkv, D));
    std::vector<float> o(std::size_t(s.Hq) * D);
    tformer::attention(HeadsView<const float>(q.data() + std::size_t(t) * s.Hq * D, 1, s.Hq, D),
                       growing.view(0, 0, t + 1), Positions::offset(t),
                       HeadsView<float>(o.data(), 1, s.Hq, D), ws);
    growing.advance(0, 1);
    // Decode (one token) and prefill (GEMM blocks) round differently: both within the
    // reference bound, so within twice that of each other (~1e-5 for these sizes).
    for (int i = 0; i < s.Hq * D; ++i)
      REQUIRE(std::abs(o[i] - prefill[std::size_t(t) * s.Hq * D + i]) <= 2e-5);
  }
}

TEST_CASE("nn/attention: padded keys change nothing and a window >= T equals causal",
          "[nn][attention]") {
  test::Random rng(13);
  const int Hkv = 1, g = 3, D = 16, L = 40;
  Setup s(rng, Hkv * g, Hkv, D, L);
  const auto q = rng.normal_floats(std::size_t(4) * s.Hq * D);
  const std::vector<std::int32_t> pos = {10, 20, 30, 39};
  std::vector<std::uint8_t> valid(L, 1);
  for (int j : {3, 7, 15, 33}) valid[j] = 0;
  AttentionOptions opt;
  opt.key_valid = valid;
  auto c = s.reference(opt);
  c.key_valid = &valid;
  check_outputs(s, c, q, run(s, q, pos, opt), pos);
  AttentionOptions wide;
  wide.window = L;
  CHECK(run(s, q, pos, wide) == run(s, q, pos));  // the same blocks and masks: identical
}

TEST_CASE("nn/attention: logits of ±1e4 stay finite and correct", "[nn][attention]") {
  test::Random rng(14);
  const int Hkv = 2, g = 2, D = 8, L = 100;
  Setup s(rng, Hkv * g, Hkv, D, L, 300.0f);  // |q·k|·scale reaches ~1e4
  auto q = rng.normal_floats(std::size_t(3) * s.Hq * D, 300.0f);
  const std::vector<std::int32_t> pos = {0, 50, 99};
  const auto o = run(s, q, pos);
  for (float x : o) REQUIRE(std::isfinite(x));
  check_outputs(s, s.reference({}), q, o, pos);
}

TEST_CASE("nn/attention: a bias hook (ALiBi) is added per head and key distance",
          "[nn][attention]") {
  test::Random rng(15);
  const int Hkv = 2, g = 2, D = 16, L = 60;
  Setup s(rng, Hkv * g, Hkv, D, L);
  const auto q = rng.normal_floats(std::size_t(2) * s.Hq * D);
  const std::vector<std::int32_t> pos = {30, 59};
  auto alibi = [](tformer::index h, tformer::index p, tformer::index j) {
    return -std::pow(2.0f, -8.0f * float(h + 1) / 4.0f) * float(p - j);
  };
  std::vector<float> o(q.size());
  AttentionWorkspace ws(g, D);
  tformer::attention(HeadsView<const float>(q.data(), 2, s.Hq, D), s.cache.view(0, 0, L),
                     Positions::ids(pos), HeadsView<float>(o.data(), 2, s.Hq, D), ws, {}, alibi);
  auto c = s.reference({});
  c.bias = [&](int h, int p, int j) { return double(alibi(h, p, j)); };
  check_outputs(s, c, q, o, pos);
}

TEST_CASE("nn/attention: bad shapes raise tformer::Error", "[nn][attention][errors]") {
  test::Random rng(16);
  Setup s(rng, 4, 2, 8, 10);
  std::vector<float> q(3 * 8), o(q.size());
  AttentionWorkspace ws(1, 8);
  CHECK_THROWS_WITH(
      tformer::attention(HeadsView<const float>(q.data(), 1, 3, 8), s.cache.view(0, 0, 10),
                         Positions::offset(0), HeadsView<float>(o.data(), 1, 3, 8), ws),
      Contains("q.heads") && Contains("multiple of kv_heads (2)") && Contains("got 3"));
  std::vector<float> q4(4 * 8), o4(q4.size());
  AttentionWorkspace ws2(2, 8);
  CHECK_THROWS_WITH(
      tformer::attention(HeadsView<const float>(q4.data(), 1, 4, 8), s.cache.view(0, 0, 10),
                         Positions::offset(10), HeadsView<float>(o4.data(), 1, 4, 8), ws2),
      Contains("positions") && Contains("[0, 10)"));
  // An engine's own q8 view without its row scales, or with scale rows that overlap.
  Setup s8(rng, 4, 2, 8, 10, 1.0f, tformer::KVType::q8);
  tformer::KVView no_scales = s8.cache.view(0, 0, 10);
  no_scales.value_scales = nullptr;
  CHECK_THROWS_WITH(
      tformer::attention(HeadsView<const float>(q4.data(), 1, 4, 8), no_scales,
                         Positions::offset(9), HeadsView<float>(o4.data(), 1, 4, 8), ws2),
      Contains("key_scales, value_scales (q8)") && Contains("nullptr"));
  tformer::KVView overlap = s8.cache.view(0, 0, 10);
  overlap.scale_stride = 9;
  CHECK_THROWS_WITH(
      tformer::attention(HeadsView<const float>(q4.data(), 1, 4, 8), overlap, Positions::offset(9),
                         HeadsView<float>(o4.data(), 1, 4, 8), ws2),
      Contains("scale_stride") && Contains(">= positions held") && Contains("got 9"));
}

TEST_CASE("nn/attention: a ring cache equals a full cache with the window mask, past its size",
          "[nn][attention][ring]") {
  const auto step = GENERATE(1, 3);
  const auto type = GENERATE(tformer::KVType::f32, tformer::KVType::f16, tformer::KVType::bf16,
                             tformer::KVType::q8);
  CAPTURE(step, tformer::kv_type_name(type));
  test::Random rng(17);
  const int Hkv = 2, g = 2, D = 24, W = 7, L = 60;
  const auto k = rng.normal_floats(std::size_t(L) * Hkv * D), v = rng.normal_floats(k.size());
  const auto q = rng.normal_floats(std::size_t(L) * Hkv * g * D);
  KVCache full({.layers = 1, .kv_heads = Hkv, .head_dim = D, .capacity = L, .type = type});
  KVCache ring({.layers = 1, .kv_heads = Hkv, .head_dim = D, .window = W, .max_step = step,
                .type = type});
  CHECK(ring.slots() == W + step - 1);
  CHECK(ring.bytes() ==
        2u * Hkv * (W + step - 1) * D * std::size_t(tformer::kv_type_bytes(type)) +
            (type == tformer::KVType::q8 ? 2u * Hkv * (W + step - 1) * sizeof(float) : 0));
  AttentionWorkspace ws(g, D);
  AttentionOptions opt;
  opt.window = W;
  for (int t0 = 0; t0 < L; t0 += step) {
    const int T = std::min(step, L - t0);
    HeadsView<const float> kt(k.data() + std::size_t(t0) * Hkv * D, T, Hkv, D);
    HeadsView<const float> vt(v.data() + std::size_t(t0) * Hkv * D, T, Hkv, D);
    HeadsView<const float> qt(q.data() + std::size_t(t0) * Hkv * g * D, T, Hkv * g, D);
    full.write(0, 0, kt, vt);
    ring.write(0, 0, kt, vt);
    std::vector<float> a(std::size_t(T) * Hkv * g * D), b(a.size());
    tformer::attention(qt, full.view(0, 0, t0 + T), Positions::offset(t0),
                       HeadsView<float>(a.data(), T, Hkv * g, D), ws, opt);
    tformer::attention(qt, ring.view(0, 0, t0 + T), Positions::offset(t0),
                       HeadsView<float>(b.data(), T, Hkv * g, D), ws, opt);
    full.advance(0, T);
    ring.advance(0, T);
    // The same keys in the same order, only stored elsewhere (tiles split at the wrap, so the
    // float sums may group differently): each within (W + 16)·u·max|v| ≈ 1e-6 of exact.
    for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(std::abs(a[i] - b[i]) <= 1e-5);
  }
  CHECK(ring.length(0) == L);  // far past the ring's slots
  const auto ring_view = ring.view(0, 0, L);  // taken before the rollback below
  // Rolling back further than max_step past the last write would read overwritten keys.
  if (step == 1) CHECK_THROWS_WITH(ring.truncate(0, L - 2), Contains("ring mode"));
  CHECK_NOTHROW(ring.truncate(0, L - step));
  std::vector<float> many(std::size_t(step + 1) * Hkv * D);
  CHECK_THROWS_WITH(ring.write(0, 0, HeadsView<const float>(many.data(), step + 1, Hkv, D),
                               HeadsView<const float>(many.data(), step + 1, Hkv, D)),
                    Contains("max_step"));
  std::vector<float> q1(std::size_t(Hkv) * g * D), o1(q1.size());
  AttentionOptions global;  // a ring cannot serve global attention
  CHECK_THROWS_WITH(tformer::attention(HeadsView<const float>(q1.data(), 1, Hkv * g, D),
                                       ring_view, Positions::offset(L - 1),
                                       HeadsView<float>(o1.data(), 1, Hkv * g, D), ws, global),
                    Contains("window") && Contains("ring cache"));
}

TEST_CASE("nn/attention: a 32k-token context matches the reference, decode and prefill",
          "[nn][attention][long]") {
  // The worst-case bound of check_outputs grows with L (here 2e-3, more than the output itself:
  // it passed with a 64-key block skipped). Rounding errors of random data add like a random
  // walk, so this test bounds them statistically, per output i (Higham, Accuracy and
  // Stability, 2nd ed., sect. 2.8 / Higham & Mary 2019): the running sums over L keys err by
  // about sqrt(L)·u·Σ_j w_j·|v_ji|, and score errors of relative size E move the output by
  // about E·sqrt(Σ_j w_j²·v_ji²) (E as in check_outputs, a worst case per score). tol = 8 times
  // their sum, a margin no rounding of random data reaches. A skipped block of 64
  // keys moves an output by ~sqrt(64)/L ≈ 2.4e-4, a 5 % scale error by ~3e-4; tol ≈ 5e-5.
  test::Random rng(18);
  const int Hkv = 1, g = 2, D = 32, L = 32768;
  Setup s(rng, Hkv * g, Hkv, D, L);
  const auto q = rng.normal_floats(std::size_t(2) * s.Hq * D);
  const std::vector<std::int32_t> pos = {L - 1, 20000};
  const double scale = 1.0 / std::sqrt(double(D));
  const auto check = [&](const std::vector<float>& o, int t, std::int32_t p) {
    for (int h = 0; h < s.Hq; ++h) {
      const float* qh = q.data() + (std::size_t(t) * s.Hq + h) * D;
      std::vector<double> w(std::size_t(p) + 1);
      double m = -1e300, z = 0, e = 0;
      for (int j = 0; j <= p; ++j) {
        double dot = 0, mag = 0;
        for (int i = 0; i < D; ++i) {
          dot += double(qh[i]) * s.k_heads[std::size_t(j) * D + i];
          mag += std::abs(double(qh[i]) * s.k_heads[std::size_t(j) * D + i]);
        }
        w[std::size_t(j)] = dot * scale;
        m = std::max(m, w[std::size_t(j)]);
        e = std::max(e, (D + 2) * u * scale * mag);
      }
      for (auto& x : w) z += (x = std::exp(x - m));
      for (int i = 0; i < D; ++i) {
        double expected = 0, abs_sum = 0, sq_sum = 0;
        for (int j = 0; j <= p; ++j) {
          const double wj = w[std::size_t(j)] / z, v = s.v_heads[std::size_t(j) * D + i];
          expected += wj * v;
          abs_sum += wj * std::abs(v);
          sq_sum += wj * wj * v * v;
        }
        const double tol = 8 * (std::sqrt(double(p + 1)) * u * abs_sum + 2 * e * std::sqrt(sq_sum));
        INFO("token " << t << " head " << h << " dim " << i << " position " << p << " tol " << tol);
        REQUIRE(std::abs(o[(std::size_t(t) * s.Hq + h) * D + i] - expected) <= tol);
      }
    }
  };
  SECTION("prefill: two query tokens, the block path") {
    const auto o = run(s, q, pos);
    check(o, 0, pos[0]);
    check(o, 1, pos[1]);
  }
  SECTION("decode: one query token at a time, the tile path") {
    for (int t = 0; t < 2; ++t) {
      const std::vector<float> qt(q.begin() + std::ptrdiff_t(t) * s.Hq * D,
                                  q.begin() + std::ptrdiff_t(t + 1) * s.Hq * D);
      std::vector<float> o(q.size());
      const auto ot = run(s, qt, {pos[std::size_t(t)]});
      std::copy(ot.begin(), ot.end(), o.begin() + std::ptrdiff_t(t) * s.Hq * D);
      check(o, t, pos[std::size_t(t)]);
    }
  }
}

TEST_CASE("nn/attention: cross-attention over cached encoder states, invariant to their order",
          "[nn][attention][cross]") {
  test::Random rng(19);
  const int Hkv = 2, g = 4, D = 16, S = 23, T = 3;
  const auto k = rng.normal_floats(std::size_t(S) * Hkv * D), v = rng.normal_floats(k.size());
  std::vector<std::uint8_t> valid(S, 1);
  valid[4] = valid[17] = valid[22] = 0;  // padded vision tokens
  tformer::CrossKVCache cross({.layers = 2, .kv_heads = Hkv, .head_dim = D, .capacity = 32});
  for (int layer = 0; layer < 2; ++layer)
    cross.set(layer, 0, HeadsView<const float>(k.data(), S, Hkv, D),
              HeadsView<const float>(v.data(), S, Hkv, D), valid);
  CHECK(cross.tokens(0) == S);
  const auto q = rng.normal_floats(std::size_t(T) * Hkv * g * D);
  AttentionWorkspace ws(g, D);
  AttentionOptions opt;
  opt.causal = false;
  opt.key_valid = cross.key_valid(0);
  std::vector<float> o(q.size());
  tformer::attention(HeadsView<const float>(q.data(), T, Hkv * g, D), cross.view(1, 0),
                     Positions::offset(0), HeadsView<float>(o.data(), T, Hkv * g, D), ws, opt);
  // Against the reference, from the head-major copy of the same keys.
  std::vector<float> kh(k.size()), vh(v.size());
  for (int j = 0; j < S; ++j)
    for (int h = 0; h < Hkv; ++h)
      for (int i = 0; i < D; ++i) {
        kh[(std::size_t(h) * S + j) * D + i] = k[(std::size_t(j) * Hkv + h) * D + i];
        vh[(std::size_t(h) * S + j) * D + i] = v[(std::size_t(j) * Hkv + h) * D + i];
      }
  ref::AttentionCase c{Hkv * g, Hkv, D, S, &kh, &vh, 1.0 / std::sqrt(double(D))};
  c.causal = false;
  c.key_valid = &valid;
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < Hkv * g; ++h) {
      const auto e = ref::attend(c, h, q.data() + (std::size_t(t) * Hkv * g + h) * D, 0);
      for (int i = 0; i < D; ++i)
        REQUIRE(std::abs(o[(std::size_t(t) * Hkv * g + h) * D + i] - e[i]) <= 1e-5);
    }
  // Permute the encoder tokens together with their mask: the output stays the same.
  std::vector<int> perm(S);
  for (int j = 0; j < S; ++j) perm[j] = (j * 7 + 3) % S;
  std::vector<float> kp(k.size()), vp(v.size());
  std::vector<std::uint8_t> validp(S);
  for (int j = 0; j < S; ++j) {
    std::copy_n(k.begin() + std::size_t(perm[j]) * Hkv * D, Hkv * D,
                kp.begin() + std::size_t(j) * Hkv * D);
    std::copy_n(v.begin() + std::size_t(perm[j]) * Hkv * D, Hkv * D,
                vp.begin() + std::size_t(j) * Hkv * D);
    validp[j] = valid[perm[j]];
  }
  cross.reset(0);  // a new encoder input
  for (int layer = 0; layer < 2; ++layer)
    cross.set(layer, 0, HeadsView<const float>(kp.data(), S, Hkv, D),
              HeadsView<const float>(vp.data(), S, Hkv, D), validp);
  opt.key_valid = cross.key_valid(0);
  std::vector<float> op(q.size());
  tformer::attention(HeadsView<const float>(q.data(), T, Hkv * g, D), cross.view(1, 0),
                     Positions::offset(0), HeadsView<float>(op.data(), T, Hkv * g, D), ws, opt);
  // Same terms summed in another order: each within (L + 16)·u·max|v| ≈ 3e-6 of exact.
  for (std::size_t i = 0; i < o.size(); ++i) REQUIRE(std::abs(o[i] - op[i]) <= 1e-5);
  CHECK_THROWS_WITH(cross.set(0, 0, HeadsView<const float>(k.data(), S - 1, Hkv, D),
                              HeadsView<const float>(v.data(), S - 1, Hkv, D)),
                    Contains("encoder tokens") && Contains("expected 23, got 22"));
  // A layer already set for this input, and a failed call, change nothing.
  CHECK_THROWS_WITH(cross.set(0, 0, HeadsView<const float>(kp.data(), S, Hkv, D),
                              HeadsView<const float>(vp.data(), S, Hkv, D)),
                    Contains("not yet set"));
  CHECK_THROWS_WITH(cross.set(5, 0, HeadsView<const float>(kp.data(), S, Hkv, D),
                              HeadsView<const float>(vp.data(), S, Hkv, D)),
                    Contains("layer"));
  CHECK(cross.tokens(0) == S);
  cross.reset(0);
  CHECK_THROWS_WITH(cross.view(1, 0), Contains("one set for the current input"));
}

TEST_CASE("nn/attention: the explain path returns the weights the fast path applies",
          "[nn][attention]") {
  const auto type = GENERATE(tformer::KVType::f32, tformer::KVType::q8);  // q8: scales applied
  CAPTURE(tformer::kv_type_name(type));
  test::Random rng(20);
  const int Hkv = 2, g = 2, D = 16, L = 40, T = 3;
  Setup s(rng, Hkv * g, Hkv, D, L, 1.0f, type);
  const auto q = rng.normal_floats(std::size_t(T) * s.Hq * D);
  const std::vector<std::int32_t> pos = {5, 22, 39};
  AttentionOptions opt;
  opt.window = 10;
  const auto o = run(s, q, pos, opt);
  std::vector<float> w(std::size_t(T) * s.Hq * L);
  tformer::attention_weights(HeadsView<const float>(q.data(), T, s.Hq, D), s.cache.view(0, 0, L),
                             Positions::ids(pos), HeadsView<float>(w.data(), T, s.Hq, L), opt);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < s.Hq; ++h) {
      const float* wr = w.data() + (std::size_t(t) * s.Hq + h) * L;
      double total = 0;
      for (int j = 0; j < L; ++j) {
        if (j > pos[t] || j <= pos[t] - 10) REQUIRE(wr[j] == 0.0f);  // outside the window
        total += wr[j];
      }
      REQUIRE(std::abs(total - 1.0) <= 1e-6);
      // o = Σ w_j v_j, the fast path's output.
      const int kvh = h / g;
      for (int i = 0; i < D; ++i) {
        double e = 0;
        for (int j = 0; j < L; ++j)
          e += double(wr[j]) * s.v_heads[(std::size_t(kvh) * L + j) * D + i];
        REQUIRE(std::abs(o[(std::size_t(t) * s.Hq + h) * D + i] - e) <= 1e-5);
      }
    }
}

TEST_CASE("nn/attention: many-block prefill, wide groups, and the explain path with every mask",
          "[nn][attention]") {
  test::Random rng(21);
  // 3 query blocks (64, 64, 22 tokens), up to 3 key blocks of 128 each, group 16.
  const int Hkv = 1, g = 16, D = 8, L = 400, T = 150, W = 280;
  Setup s(rng, Hkv * g, Hkv, D, L);
  const auto q = rng.normal_floats(std::size_t(T) * s.Hq * D);
  std::vector<std::int32_t> pos(T);
  for (int t = 0; t < T; ++t) pos[t] = 240 + t;
  std::vector<std::uint8_t> valid(L, 1);
  for (int j : {0, 127, 128, 239, 240, 300, 389}) valid[j] = 0;
  AttentionOptions opt;
  opt.window = W;
  opt.softcap = 3.0f;
  opt.key_valid = valid;
  auto alibi = [](tformer::index h, tformer::index p, tformer::index j) {
    return -0.002f * float(h + 1) * float(p - j);  // keys 128 back weigh e^-4 at h = 15
  };
  std::vector<float> o(q.size()), w(std::size_t(T) * s.Hq * L);
  AttentionWorkspace ws(g, D);
  const HeadsView<const float> qv(q.data(), T, s.Hq, D);
  tformer::attention(qv, s.cache.view(0, 0, L), Positions::ids(pos),
                     HeadsView<float>(o.data(), T, s.Hq, D), ws, opt, alibi);
  tformer::attention_weights(qv, s.cache.view(0, 0, L), Positions::ids(pos),
                             HeadsView<float>(w.data(), T, s.Hq, L), opt, alibi);
  auto c = s.reference(opt);
  c.key_valid = &valid;
  c.bias = [&](int h, int p, int j) { return double(alibi(h, p, j)); };
  check_outputs(s, c, q, o, pos);
  std::vector<float> from_weights(o.size());  // Σ_j w_j v_j with the explain path's weights
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < s.Hq; ++h) {
      const float* wr = w.data() + (std::size_t(t) * s.Hq + h) * L;
      double total = 0;
      for (int j = 0; j < L; ++j) {
        if (!valid[j] || j > pos[t] || j <= pos[t] - W) REQUIRE(wr[j] == 0.0f);
        total += wr[j];
      }
      REQUIRE(std::abs(total - 1.0) <= 1e-6);
      for (int i = 0; i < D; ++i) {
        double e = 0;
        for (int j = 0; j < L; ++j)
          e += double(wr[j]) * s.v_heads[(std::size_t(h / g) * L + j) * D + i];
        from_weights[(std::size_t(t) * s.Hq + h) * D + i] = float(e);
      }
    }
  // The weights themselves against the reference (soft-cap, ALiBi and masks): they carry the
  // scores' error and one rounding each, as the fast path's output does, so the same bound holds
  // (rounding the sum to float adds u·max|v|, inside its (L + 16)·u·max|v| term).
  check_outputs(s, c, q, from_weights, pos);
}

TEST_CASE("nn/attention: a query that sees no key outputs zeros, in both paths",
          "[nn][attention]") {
  test::Random rng(22);
  Setup s(rng, 2, 1, 8, 10);
  std::vector<std::uint8_t> none(10, 0);
  AttentionOptions opt;
  opt.key_valid = none;
  const auto q = rng.normal_floats(std::size_t(3) * 2 * 8);
  for (const std::vector<std::int32_t>& pos : {std::vector<std::int32_t>{9},
                                               std::vector<std::int32_t>{3, 6, 9}}) {
    const auto o = run(s, std::vector<float>(q.begin(), q.begin() + pos.size() * 16), pos, opt);
    for (float x : o) REQUIRE(x == 0.0f);
  }
}

// Attention sinks (StreamingLLM): keys [0, S) stay visible once the window has left them,
// scored from the sink queries at p or (InCache) at min(p, S + W − 1).
TEST_CASE("nn/attention: sinks match the reference on random shapes, both paths and policies",
          "[nn][attention][sinks][property]") {
  const auto seed = GENERATE(range(1, 31));
  CAPTURE(seed);
  test::Random rng(100 + seed);
  const int Hkv = rng.integer(1, 3), g = rng.integer(1, 4), D = rng.even(2, 80);
  const int L = rng.integer(2, 300), T = seed % 3 == 0 ? 1 : rng.integer(1, std::min(L, 150));
  const auto type =
      seed % 4 == 0 ? tformer::KVType::q8 : tformer::KVType::f32;  // sink rows' scales
  Setup s(rng, Hkv * g, Hkv, D, L, 1.0f, type);
  AttentionOptions opt;
  opt.window = rng.integer(1, std::max(1, L / 3));
  opt.sinks = rng.integer(1, 6);
  opt.sink_positions =
      seed % 2 ? tformer::SinkPositions::InCache : tformer::SinkPositions::Original;
  if (seed % 5 == 1) opt.softcap = 5.0f;
  const bool own_sink_q = seed % 4 != 3;  // else the sinks are scored with q
  CAPTURE(Hkv, g, D, L, T, opt.window, opt.sinks, own_sink_q);
  const auto q = rng.normal_floats(std::size_t(T) * s.Hq * D);
  const auto sq = own_sink_q ? rng.normal_floats(q.size()) : std::vector<float>{};
  if (own_sink_q) opt.sink_q = HeadsView<const float>(sq.data(), T, s.Hq, D);
  std::vector<std::int32_t> pos(T);
  for (auto& p : pos) p = rng.integer(0, L - 1);
  // An ALiBi-like bias, so that the position sinks are scored from matters; every third seed
  // none, so that the many-token path's vector score pass (no bias, soft-cap or padding) runs.
  const bool with_bias = seed % 3 != 2;
  CAPTURE(with_bias);
  auto bias = [](tformer::index h, tformer::index p, tformer::index j) {
    return -0.05f * float(h + 1) * float(p - j);
  };
  std::vector<float> o(q.size(), -9.0f);
  AttentionWorkspace ws(g, D);
  const HeadsView<const float> qv(q.data(), T, s.Hq, D);
  const HeadsView<float> ov(o.data(), T, s.Hq, D);
  if (with_bias)
    tformer::attention(qv, s.cache.view(0, 0, L), Positions::ids(pos), ov, ws, opt, bias);
  else
    tformer::attention(qv, s.cache.view(0, 0, L), Positions::ids(pos), ov, ws, opt);
  auto c = s.reference(opt);
  if (with_bias) c.bias = [&](int h, int p, int j) { return double(bias(h, p, j)); };
  check_outputs(s, c, q, o, pos, sq);
}

TEST_CASE("nn/attention: with sinks, a query whose window reaches them equals global attention",
          "[nn][attention][sinks]") {
  test::Random rng(41);
  const int Hkv = 2, g = 2, D = 32, S = 4, W = 9, L = S + W;
  Setup s(rng, Hkv * g, Hkv, D, L);
  AttentionOptions sinks;
  sinks.window = W;
  sinks.sinks = S;
  sinks.sink_positions = tformer::SinkPositions::InCache;
  for (int T : {1, L}) {
    const auto q = rng.normal_floats(std::size_t(T) * s.Hq * D);
    std::vector<std::int32_t> pos(T);
    for (int t = 0; t < T; ++t) pos[t] = T == 1 ? L - 1 : t;  // every position <= S + W − 1
    const auto a = run(s, q, pos, sinks), b = run(s, q, pos, {});
    // The same keys, summed in other groups (sinks first): within (L + 16)·u·max|v|.
    for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(std::abs(a[i] - b[i]) <= 1e-5);
  }
}

TEST_CASE("nn/attention: a ring with sinks equals a full cache with the sink mask, far past its size",
          "[nn][attention][sinks][ring]") {
  const auto step = GENERATE(1, 4);
  const auto policy = GENERATE(tformer::SinkPositions::Original, tformer::SinkPositions::InCache);
  CAPTURE(step, int(policy));
  test::Random rng(43);
  const int Hkv = 2, g = 3, D = 40, S = 3, W = 6, L = 70;
  const auto k = rng.normal_floats(std::size_t(L) * Hkv * D), v = rng.normal_floats(k.size());
  const auto q = rng.normal_floats(std::size_t(L) * Hkv * g * D), sq = rng.normal_floats(q.size());
  KVCache full({.layers = 1, .kv_heads = Hkv, .head_dim = D, .capacity = L});
  KVCache ring({.layers = 1, .kv_heads = Hkv, .head_dim = D, .window = W, .max_step = step,
                .sinks = S});
  CHECK(ring.slots() == S + W + step - 1);
  CHECK(ring.bytes() == 2u * Hkv * (S + W + step - 1) * D * sizeof(float));
  AttentionWorkspace ws(g, D);
  AttentionOptions opt;
  opt.window = W;
  opt.sinks = S;
  opt.sink_positions = policy;
  // A distance bias, so that the policy matters: the explain path (a separate implementation)
  // must score the sinks from the same position as the fast path.
  auto bias = [](tformer::index h, tformer::index p, tformer::index j) {
    return -0.1f * float(h + 1) * float(p - j);
  };
  for (int t0 = 0; t0 < L; t0 += step) {
    const int T = std::min(step, L - t0);
    HeadsView<const float> kt(k.data() + std::size_t(t0) * Hkv * D, T, Hkv, D);
    HeadsView<const float> vt(v.data() + std::size_t(t0) * Hkv * D, T, Hkv, D);
    HeadsView<const float> qt(q.data() + std::size_t(t0) * Hkv * g * D, T, Hkv * g, D);
    opt.sink_q = HeadsView<const float>(sq.data() + std::size_t(t0) * Hkv * g * D, T, Hkv * g, D);
    full.write(0, 0, kt, vt);
    ring.write(0, 0, kt, vt);
    std::vector<float> a(std::size_t(T) * Hkv * g * D), b(a.size());
    tformer::attention(qt, full.view(0, 0, t0 + T), Positions::offset(t0),
                       HeadsView<float>(a.data(), T, Hkv * g, D), ws, opt, bias);
    tformer::attention(qt, ring.view(0, 0, t0 + T), Positions::offset(t0),
                       HeadsView<float>(b.data(), T, Hkv * g, D), ws, opt, bias);
    full.advance(0, T);
    ring.advance(0, T);
    // The same S + W keys in the same order, stored elsewhere: within (S + W + 16)·u·max|v|.
    for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(std::abs(a[i] - b[i]) <= 1e-5);
    // The explain path sees the same keys through the ring: its weights reproduce b.
    std::vector<float> w(std::size_t(T) * Hkv * g * (t0 + T));
    tformer::attention_weights(qt, ring.view(0, 0, t0 + T), Positions::offset(t0),
                               HeadsView<float>(w.data(), T, Hkv * g, t0 + T), opt, bias);
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < Hkv * g; ++h) {
        const float* wr = w.data() + (std::size_t(t) * Hkv * g + h) * (t0 + T);
        double sum = 0;
        for (int j = 0; j < t0 + T; ++j) {
          sum += wr[j];
          const bool seen = (j <= t0 + t && j > t0 + t - W) || (j < S && j <= t0 + t);
          if (!seen) REQUIRE(wr[j] == 0.0f);
        }
        REQUIRE(std::abs(sum - 1.0) <= 1e-5);
        for (int i = 0; i < D; ++i) {
          double x = 0;
          for (int j = 0; j < t0 + T; ++j) x += wr[j] * v[(std::size_t(j) * Hkv + h / g) * D + i];
          REQUIRE(std::abs(x - b[(std::size_t(t) * Hkv * g + h) * D + i]) <= 1e-5);
        }
      }
  }
  CHECK(ring.length(0) == L);
  const auto ring_view = ring.view(0, 0, L);  // taken before the rollbacks below
  CHECK_THROWS_WITH(ring.truncate(0, L - step - 1), Contains("ring mode"));
  CHECK_NOTHROW(ring.truncate(0, L - step));  // its window was never written over
  ring.truncate(0, S);  // within the sinks: their slots never are
  CHECK(ring.length(0) == S);
  std::vector<float> q1(std::size_t(Hkv) * g * D), o1(q1.size());
  AttentionOptions more = opt;  // more sinks than the ring keeps
  more.sinks = S + 1;
  more.sink_q = {};
  CHECK_THROWS_WITH(tformer::attention(HeadsView<const float>(q1.data(), 1, Hkv * g, D),
                                       ring_view, Positions::offset(L - 1),
                                       HeadsView<float>(o1.data(), 1, Hkv * g, D), ws, more),
                    Contains("sinks"));
  AttentionOptions early = opt;  // a query whose window the ring no longer holds
  early.sink_q = {};
  CHECK_THROWS_WITH(tformer::attention(HeadsView<const float>(q1.data(), 1, Hkv * g, D),
                                       ring_view, Positions::offset(L - W - step - 2),
                                       HeadsView<float>(o1.data(), 1, Hkv * g, D), ws, early),
                    Contains("ring still holds"));
}

TEST_CASE("nn/attention: sink options are checked", "[nn][attention][sinks][errors]") {
  const int D = 8;
  KVCache cache({.layers = 1, .kv_heads = 1, .head_dim = D, .capacity = 8});
  std::vector<float> q(D), o(D), wrong(2 * D);
  AttentionWorkspace ws(1, D);
  const HeadsView<const float> qv(q.data(), 1, 1, D);
  const HeadsView<float> ov(o.data(), 1, 1, D);
  cache.write(0, 0, qv, qv);  // position 0, so that view(0, 0, 1) holds written keys
  AttentionOptions no_window;
  no_window.sinks = 2;
  CHECK_THROWS_WITH(tformer::attention(qv, cache.view(0, 0, 1), Positions::offset(0), ov, ws,
                                       no_window),
                    Contains("sinks need a window"));
  AttentionOptions bad_q;
  bad_q.window = 2;
  bad_q.sinks = 1;
  bad_q.sink_q = HeadsView<const float>(wrong.data(), 2, 1, D);
  CHECK_THROWS_WITH(tformer::attention(qv, cache.view(0, 0, 1), Positions::offset(0), ov, ws, bad_q),
                    Contains("sink_q.tokens"));
  CHECK_THROWS_WITH(KVCache({.layers = 1, .kv_heads = 1, .head_dim = D, .capacity = 8, .sinks = 2}),
                    Contains("sinks belong to a ring"));
}

// NaN policy (nn/attention.hpp): a NaN score a query sees makes that query's output NaN, as in
// PyTorch; nothing else changes. The other outputs are compared bit for bit with a clean run:
// each output row is computed by the same operations whatever the other rows hold.
TEST_CASE("nn/attention: a NaN in a query or a visible key makes exactly those outputs NaN",
          "[nn][attention][property]") {
  const auto seed = GENERATE(range(1, 17));
  CAPTURE(seed);
  test::Random rng(std::uint64_t(300 + seed));
  const int Hkv = rng.integer(1, 3), g = rng.integer(1, 4), D = rng.even(2, 80);
  const int L = rng.integer(1, 200);
  const int T = seed % 2 ? 1 : rng.integer(2, std::min(L, 150) + 1);  // decode, or blocks
  const int Hq = Hkv * g;
  CAPTURE(Hkv, g, D, L, T);
  Setup s(rng, Hq, Hkv, D, L);
  AttentionOptions opt;
  if (seed % 3 == 0) opt.window = rng.integer(1, 60);
  std::vector<std::int32_t> pos(static_cast<std::size_t>(T));
  for (auto& p : pos) p = rng.integer(0, L - 1);
  const auto q = rng.normal_floats(std::size_t(T) * Hq * D);
  const auto clean = run(s, q, pos, opt);
  check_outputs(s, s.reference(opt), q, clean, pos);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const auto row = [&](int t, int h) { return (std::size_t(t) * Hq + h) * D; };

  // One element of one query head: that head's output at that token is NaN (it sees at least
  // its own position, causal), everything else is unchanged.
  const int t0 = rng.integer(0, T - 1), h0 = rng.integer(0, Hq - 1);
  auto poisoned = q;
  poisoned[row(t0, h0) + std::size_t(rng.integer(0, D - 1))] = nan;
  const auto o = run(s, poisoned, pos, opt);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < Hq; ++h) {
      INFO("token " << t << " head " << h);
      for (int i = 0; i < D; ++i) {
        const float got = o[row(t, h) + std::size_t(i)];
        if (t == t0 && h == h0)
          REQUIRE(std::isnan(got));
        else
          REQUIRE(got == clean[row(t, h) + std::size_t(i)]);
      }
    }

  // One element of the key at position j0 of kv head g0: the heads of group g0 whose query sees
  // j0 are NaN; the rest are unchanged (a key masked for a query is never scored for it).
  const int j0 = rng.integer(0, L - 1), g0 = rng.integer(0, Hkv - 1);
  auto keys = s.k;
  keys[(std::size_t(j0) * Hkv + g0) * D + std::size_t(rng.integer(0, D - 1))] = nan;
  KVCache cache = cache_of(keys, s.v, L, Hkv, D);
  std::vector<float> ok(q.size());
  AttentionWorkspace ws(g, D);
  tformer::attention(HeadsView<const float>(q.data(), T, Hq, D), cache.view(0, 0, L),
                     Positions::ids(pos), HeadsView<float>(ok.data(), T, Hq, D), ws, opt);
  for (int t = 0; t < T; ++t) {
    const bool sees = j0 <= pos[std::size_t(t)] && (opt.window == 0 || j0 > pos[std::size_t(t)] - opt.window);
    for (int h = 0; h < Hq; ++h) {
      INFO("token " << t << " head " << h << " sees the NaN key: " << sees);
      for (int i = 0; i < D; ++i) {
        const float got = ok[row(t, h) + std::size_t(i)];
        if (sees && h / g == g0)
          REQUIRE(std::isnan(got));
        else
          REQUIRE(got == clean[row(t, h) + std::size_t(i)]);
      }
    }
  }
}

TEST_CASE(
    "nn/attention: a q8 row holding inf or NaN reads as NaN, for exactly the queries that "
    "see it",
    "[nn][attention][kvq8]") {
  const auto seed = GENERATE(range(1, 9));
  CAPTURE(seed);
  test::Random rng(std::uint64_t(700 + seed));
  const int Hkv = rng.integer(1, 3), g = rng.integer(1, 4), D = rng.integer(1, 80);
  const int L = rng.integer(1, 200);
  const int T = seed % 2 ? 1 : rng.integer(2, std::min(L, 150) + 1);  // decode, or blocks
  const int Hq = Hkv * g;
  CAPTURE(Hkv, g, D, L, T);
  Setup s(rng, Hq, Hkv, D, L, 1.0f, tformer::KVType::q8);
  std::vector<std::int32_t> pos(static_cast<std::size_t>(T));
  for (auto& p : pos) p = rng.integer(0, L - 1);
  const auto q = rng.normal_floats(std::size_t(T) * Hq * D);
  const auto clean = run(s, q, pos);
  // One element of the key (seeds 1 and 5, one token: of the value) at position j0 of kv head g0
  // made ±inf or NaN: the whole row is stored as NaN, so the heads of group g0 whose query sees
  // j0 are NaN, and the rest unchanged.
  const int j0 = rng.integer(0, L - 1), g0 = rng.integer(0, Hkv - 1);
  const bool value = seed % 4 == 1;
  const float bad = seed % 3 == 0
                        ? std::numeric_limits<float>::quiet_NaN()
                        : (seed % 3 == 1 ? 1.0f : -1.0f) * std::numeric_limits<float>::infinity();
  auto keys = s.k, values = s.v;
  (value ? values : keys)[(std::size_t(j0) * Hkv + g0) * D + std::size_t(rng.integer(0, D - 1))] =
      bad;
  KVCache cache(
      {.layers = 1, .kv_heads = Hkv, .head_dim = D, .capacity = L, .type = tformer::KVType::q8});
  cache.write(0, 0, HeadsView<const float>(keys.data(), L, Hkv, D),
              HeadsView<const float>(values.data(), L, Hkv, D));
  cache.advance(0, L);
  CHECK(std::isnan(
      *(value ? cache.view(0, 0, L).value_scale(g0, j0) : cache.view(0, 0, L).key_scale(g0, j0))));
  std::vector<float> o(q.size());
  AttentionWorkspace ws(g, D);
  tformer::attention(HeadsView<const float>(q.data(), T, Hq, D), cache.view(0, 0, L),
                     Positions::ids(pos), HeadsView<float>(o.data(), T, Hq, D), ws);
  for (int t = 0; t < T; ++t) {
    const bool sees = j0 <= pos[std::size_t(t)];
    for (int h = 0; h < Hq; ++h) {
      INFO("token " << t << " head " << h << " sees the row: " << sees);
      for (int i = 0; i < D; ++i) {
        const std::size_t at = (std::size_t(t) * Hq + h) * D + std::size_t(i);
        if (sees && h / g == g0)
          REQUIRE(std::isnan(o[at]));
        else
          REQUIRE(o[at] == clean[at]);
      }
    }
  }
}

TEST_CASE("nn/attention: a NaN query head with sinks, and the explain path, propagate NaN",
          "[nn][attention]") {
  test::Random rng(31);
  const int D = 16, L = 90;
  Setup s(rng, 2, 1, D, L);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  AttentionOptions opt;
  opt.window = 16;
  opt.sinks = 4;
  for (const std::vector<std::int32_t>& pos :
       {std::vector<std::int32_t>{80}, std::vector<std::int32_t>{40, 60, 80}}) {
    const int T = int(pos.size());
    auto q = rng.normal_floats(std::size_t(T) * 2 * D);
    auto sink_q = q;
    sink_q[std::size_t(D) + 3] = nan;  // only the sink query of token 0, head 1
    opt.sink_q = HeadsView<const float>(sink_q.data(), T, 2, D);
    const auto o = run(s, q, pos, opt);
    for (int i = 0; i < D; ++i) {
      REQUIRE(std::isfinite(o[std::size_t(i)]));
      REQUIRE(std::isnan(o[std::size_t(D + i)]));
    }
    opt.sink_q = {};
    q[5] = nan;  // token 0, head 0
    std::vector<float> w(std::size_t(T) * 2 * L);
    tformer::attention_weights(HeadsView<const float>(q.data(), T, 2, D), s.cache.view(0, 0, L),
                               Positions::ids(pos), HeadsView<float>(w.data(), T, 2, L), opt);
    for (int j = 0; j < L; ++j) {
      const bool seen = j < 4 || (j <= pos[0] && j > pos[0] - 16);
      REQUIRE(std::isnan(w[std::size_t(j)]) == seen);
      REQUIRE(std::isfinite(w[std::size_t(L + j)]));
    }
  }
}

TEST_CASE("nn/attention: non-finite options, short biases, overlaps and workspaces are rejected",
          "[nn][attention][errors]") {
  using tformer::index;
  test::Random rng(32);
  const int D = 8;
  Setup s(rng, 4, 2, D, 10);
  std::vector<float> q(std::size_t(2) * 4 * D, 1.0f), o(q.size(), 0.0f);
  AttentionWorkspace ws(2, D);
  const HeadsView<const float> qv(q.data(), 2, 4, D);
  const HeadsView<float> ov(o.data(), 2, 4, D);
  const auto at = Positions::offset(8);
  const auto kv = s.cache.view(0, 0, 10);
  const auto attend = [&](const AttentionOptions& opt) {
    tformer::attention(qv, kv, at, ov, ws, opt);
  };
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (const float scale : {inf, nan, -1.0f}) {
    AttentionOptions opt;
    opt.scale = scale;
    CHECK_THROWS_WITH(attend(opt), Contains("attention: scale"));
    std::vector<float> w(std::size_t(2) * 4 * 10);
    CHECK_THROWS_WITH(tformer::attention_weights(qv, kv, at, HeadsView<float>(w.data(), 2, 4, 10), opt),
                      Contains("attention_weights: scale"));
  }
  for (const float cap : {inf, nan, -2.0f}) {
    AttentionOptions opt;
    opt.softcap = cap;
    CHECK_THROWS_WITH(attend(opt), Contains("attention: softcap"));
  }
  AttentionOptions bad_sinks;
  bad_sinks.window = 4;
  bad_sinks.sinks = 1;
  bad_sinks.sink_positions = static_cast<tformer::SinkPositions>(5);
  CHECK_THROWS_WITH(attend(bad_sinks), Contains("sink_positions") && Contains("got 5"));

  // ALiBi with fewer slopes than query heads; a T5 table with fewer columns.
  const auto three = tformer::alibi_slopes(3);
  CHECK_THROWS_WITH(tformer::attention(qv, kv, at, ov, ws, {}, tformer::AlibiBias{three}),
                    Contains("attention: bias heads") && Contains(">= q.heads (4)") &&
                        Contains("got 3"));
  std::vector<float> table(32 * 2, 0.0f);
  const tformer::T5Bias t5({table.data(), 32, 2}, 128, false);
  CHECK_THROWS_WITH(tformer::attention(qv, kv, at, ov, ws, {}, t5), Contains("bias heads"));
  const auto four = tformer::alibi_slopes(4);
  CHECK_NOTHROW(tformer::attention(qv, kv, at, ov, ws, {}, tformer::AlibiBias{four}));
  std::fill(o.begin(), o.end(), 0.0f);

  // o overlapping q: in place, and shifted by one head.
  std::vector<float> buf(std::size_t(3) * 4 * D, 1.0f);
  CHECK_THROWS_WITH(tformer::attention(HeadsView<const float>(buf.data(), 2, 4, D), kv, at,
                                       HeadsView<float>(buf.data(), 2, 4, D), ws),
                    Contains("attention: o") && Contains("memory disjoint from q"));
  CHECK_THROWS_WITH(tformer::attention(HeadsView<const float>(buf.data(), 2, 4, D), kv, at,
                                       HeadsView<float>(buf.data() + D, 2, 4, D), ws),
                    Contains("memory disjoint from q"));
  AttentionOptions with_sink_q;
  with_sink_q.window = 4;
  with_sink_q.sinks = 1;
  with_sink_q.sink_q = HeadsView<const float>(o.data(), 2, 4, D);
  CHECK_THROWS_WITH(attend(with_sink_q), Contains("memory disjoint from sink_q"));
  CHECK_THROWS_WITH(tformer::attention_weights(HeadsView<const float>(buf.data(), 2, 4, D), kv, at,
                                               HeadsView<float>(buf.data() + D, 2, 4, 10)),
                    Contains("weights") && Contains("memory disjoint from q"));

  // A KV view with a negative length.
  auto negative = kv;
  negative.length = -1;
  AttentionOptions global;
  global.causal = false;
  CHECK_THROWS_WITH(tformer::attention(qv, negative, Positions::offset(0), ov, ws, global),
                    Contains("kv.length"));

  // Workspaces: sizes checked before anything is allocated.
  CHECK_THROWS_WITH(AttentionWorkspace(0, D), Contains("AttentionWorkspace: group_size"));
  CHECK_THROWS_WITH(AttentionWorkspace(2, -8), Contains("AttentionWorkspace: head_dim"));
  CHECK_THROWS_WITH(AttentionWorkspace(index(1) << 60, 16),
                    Contains("AttentionWorkspace: query_tile * group_size * head_dim"));
  CHECK(std::all_of(o.begin(), o.end(), [](float v) { return v == 0.0f; }));
}

TEST_CASE("nn/attention: attention over two key sets merged equals attention over all of them",
          "[nn][attention][merge]") {
  const auto seed = GENERATE(range(1, 17));
  CAPTURE(seed);
  test::Random rng(seed);
  const int Hkv = rng.integer(1, 3), g = rng.integer(1, 4), D = rng.even(2, 80);
  const int L = rng.integer(2, 400), split = rng.integer(1, L - 1), T = rng.integer(1, 150);
  Setup s(rng, Hkv * g, Hkv, D, L, float(rng.uniform(0.5, 3.0)));
  CAPTURE(Hkv, g, D, L, split, T);
  AttentionOptions opt;
  opt.causal = false;  // a key set's view counts its keys from 0: no position masks across it
  const auto q = rng.normal_floats(std::size_t(T) * s.Hq * D);
  const std::vector<std::int32_t> pos(std::size_t(T), L - 1);
  const HeadsView<const float> qv(q.data(), T, s.Hq, D);
  AttentionWorkspace ws(g, D);
  // Keys [0, split) and [split, L) as two views of the same cache.
  const tformer::KVView all = s.cache.view(0, 0, L);
  tformer::KVView first = all;
  first.length = split;
  const tformer::KVView second = all.from(split);
  std::vector<float> oa(q.size()), ob(q.size()), lse_a(std::size_t(T) * s.Hq),
      lse_b(lse_a.size()), lse_all(lse_a.size());
  tformer::attention_lse(qv, first, Positions::ids(pos), HeadsView<float>(oa.data(), T, s.Hq, D),
                         {lse_a.data(), T, s.Hq}, ws, opt);
  tformer::attention_lse(qv, second, Positions::ids(pos), HeadsView<float>(ob.data(), T, s.Hq, D),
                         {lse_b.data(), T, s.Hq}, ws, opt);
  std::vector<float> o_all(q.size());
  tformer::attention_lse(qv, all, Positions::ids(pos), HeadsView<float>(o_all.data(), T, s.Hq, D),
                         {lse_all.data(), T, s.Hq}, ws, opt);
  // In place into the first part.
  tformer::merge_attention(HeadsView<const float>(oa.data(), T, s.Hq, D), {lse_a.data(), T, s.Hq},
                           HeadsView<const float>(ob.data(), T, s.Hq, D), {lse_b.data(), T, s.Hq},
                           HeadsView<float>(oa.data(), T, s.Hq, D), {lse_a.data(), T, s.Hq});
  // The merged output against the double reference over all keys (this file's tolerance, plus
  // the merge's few roundings), and every lse against log Σ exp of the double scores.
  check_outputs(s, s.reference(opt), q, oa, pos);
  const double scale = 1.0 / std::sqrt(double(D));
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < s.Hq; ++h) {
      const float* qh = q.data() + (std::size_t(t) * s.Hq + h) * D;
      std::vector<double> sc(static_cast<std::size_t>(L));
      double m = -INFINITY, bound = 0;
      for (int j = 0; j < L; ++j) {
        double dot = 0, mag = 0;
        for (int i = 0; i < D; ++i) {
          const double kv = s.k_heads[(std::size_t(h / g) * L + j) * D + i];
          dot += qh[i] * kv;
          mag += std::abs(qh[i] * kv);
        }
        sc[std::size_t(j)] = dot * scale;
        m = std::max(m, sc[std::size_t(j)]);
        bound = std::max(bound, mag * scale);
      }
      double z = 0;
      for (double x : sc) z += std::exp(x - m);
      const double want = m + std::log(z);
      const double tol = (D + 2) * u * bound * 2 + (L + 16) * u + 4 * u * std::abs(want);
      CHECK(std::abs(lse_all[std::size_t(t) * s.Hq + h] - want) <= tol);
      CHECK(std::abs(lse_a[std::size_t(t) * s.Hq + h] - want) <= tol);
    }
}

// part(first, count) names keys [first, first + count) as from() does, `count` long, and lets the
// kernel prefetch the keys after them: a prefetch changes no bit, so each part's output and lse
// are those of a view of its keys alone. Lengths of 160 keys and more, where decode prefetches;
// not causal, so a key read past the part's end would change the output.
TEST_CASE("nn/attention: a part() of a view is its keys, with the bits of a view of them alone",
          "[nn][attention][merge]") {
  const auto seed = GENERATE(range(1, 13));
  CAPTURE(seed);
  test::Random rng(seed);
  const auto type = static_cast<tformer::KVType>(seed % 4);  // each type 3 times
  const int Hkv = rng.integer(1, 2), g = rng.integer(1, 8), D = 16 * rng.integer(1, 8);
  const int L = rng.integer(400, 2000), first = rng.integer(0, L - 160),
            count = rng.integer(160, L - first);
  Setup s(rng, Hkv * g, Hkv, D, L, 1.0f, type);
  CAPTURE(tformer::kv_type_name(type), Hkv, g, D, L, first, count);
  const tformer::KVView all = s.cache.view(0, 0, L);
  const tformer::KVView part = all.part(first, count);
  tformer::KVView alone = all.from(first);  // the same keys, no prefetch past them
  alone.length = alone.stored = count;
  CHECK(part.length == count);
  CHECK(part.prefetchable() == L - first);
  for (int h = 0; h < Hkv; ++h)
    for (int j : {0, count - 1}) {
      tformer::visit_kv_type(type, [&]<class T>(T) {
        CHECK(part.key<T>(h, j) == all.key<T>(h, first + j));
        CHECK(part.value<T>(h, j) == all.value<T>(h, first + j));
      });
      if (type == tformer::KVType::q8) {
        CHECK(part.key_scale(h, j) == all.key_scale(h, first + j));
        CHECK(part.value_scale(h, j) == all.value_scale(h, first + j));
      }
    }
  const auto q = rng.normal_floats(std::size_t(s.Hq) * D);
  const HeadsView<const float> qv(q.data(), 1, s.Hq, D);
  AttentionWorkspace ws(g, D);
  std::vector<float> o_part(q.size()), o_alone(q.size()), lse_part(std::size_t(s.Hq)),
      lse_alone(lse_part.size());
  const auto at = Positions::offset(count - 1);
  AttentionOptions opt;
  opt.causal = false;
  tformer::attention_lse(qv, part, at, HeadsView<float>(o_part.data(), 1, s.Hq, D),
                         {lse_part.data(), 1, s.Hq}, ws, opt);
  tformer::attention_lse(qv, alone, at, HeadsView<float>(o_alone.data(), 1, s.Hq, D),
                         {lse_alone.data(), 1, s.Hq}, ws, opt);
  CHECK(o_part == o_alone);
  CHECK(lse_part == lse_alone);
  CHECK(std::all_of(lse_part.begin(), lse_part.end(), [](float x) { return std::isfinite(x); }));
}

TEST_CASE("nn/attention: merging parts that saw no key or NaN", "[nn][attention][merge]") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> oa = {1, 2, 3, 4}, ob = {5, 6, 7, 8}, o(4);
  // Rows: b saw no key; a saw none; neither did; a NaN lse.
  for (const auto& [la, lb, want0, want_lse] :
       {std::tuple{0.5f, -inf, 1.0f, 0.5f}, std::tuple{-inf, 2.0f, 5.0f, 2.0f},
        std::tuple{-inf, -inf, 0.0f, -inf}}) {
    std::vector<float> lse_a = {la}, lse_b = {lb}, lse(1);
    tformer::merge_attention(HeadsView<const float>(oa.data(), 1, 1, 4), {lse_a.data(), 1, 1},
                             HeadsView<const float>(ob.data(), 1, 1, 4), {lse_b.data(), 1, 1},
                             HeadsView<float>(o.data(), 1, 1, 4), {lse.data(), 1, 1});
    CHECK(o[0] == want0);
    CHECK(lse[0] == want_lse);
  }
  std::vector<float> lse_a = {nan}, lse_b = {1.0f}, lse(1);
  tformer::merge_attention(HeadsView<const float>(oa.data(), 1, 1, 4), {lse_a.data(), 1, 1},
                           HeadsView<const float>(ob.data(), 1, 1, 4), {lse_b.data(), 1, 1},
                           HeadsView<float>(o.data(), 1, 1, 4), {lse.data(), 1, 1});
  CHECK(std::isnan(o[3]));
  CHECK(std::isnan(lse[0]));
  // A part that saw no key is not read: its rows may hold anything (an unused page).
  std::vector<float> junk = {nan, inf, -inf, nan};
  lse_a = {-inf};
  lse_b = {0.25f};
  tformer::merge_attention(HeadsView<const float>(junk.data(), 1, 1, 4), {lse_a.data(), 1, 1},
                           HeadsView<const float>(ob.data(), 1, 1, 4), {lse_b.data(), 1, 1},
                           HeadsView<float>(o.data(), 1, 1, 4), {lse.data(), 1, 1});
  CHECK(o == ob);
  CHECK(lse[0] == 0.25f);
  // Equal weights average the rows.
  lse_a = {3.0f};
  lse_b = {3.0f};
  tformer::merge_attention(HeadsView<const float>(oa.data(), 1, 1, 4), {lse_a.data(), 1, 1},
                           HeadsView<const float>(ob.data(), 1, 1, 4), {lse_b.data(), 1, 1},
                           HeadsView<float>(o.data(), 1, 1, 4), {lse.data(), 1, 1});
  CHECK(o == std::vector<float>{3, 4, 5, 6});
  CHECK(lse[0] == Approx(3.0 + std::log(2.0)));
  // Shapes are checked.
  CHECK_THROWS_WITH(
      tformer::merge_attention(HeadsView<const float>(oa.data(), 1, 1, 4), {lse_a.data(), 1, 1},
                               HeadsView<const float>(ob.data(), 1, 2, 2), {lse_b.data(), 1, 1},
                               HeadsView<float>(o.data(), 1, 1, 4), {lse.data(), 1, 1}),
      Contains("merge_attention") && Contains("o_b.heads"));
}

// The prefill path's two register-tiled products (attention_kernels::block_product, out =
// α·out + a·b, and a·b alone) against a double reference, on random sizes that reach every tail:
// rows past a whole tile, columns past whole vectors and a partial last vector, strides wider than
// the rows. Each output is a sum of `depth` products accumulated in float: within
// (depth + 1)·u·(|α·out| + Σ_j |a_j·b_j|) of the exact value. Some seeds give each row an end
// (the causal diagonal): Ragged::columns needs the row's columns before its end only (those after
// it may be left as they were or computed), Ragged::depth has a row's a values 0 from its end on
// (they may be skipped).
TEST_CASE(
    "nn/attention: the prefill block product matches a double reference, with and without "
    "the rescale, with rows that end early",
    "[nn][attention][prefill]") {
  namespace k = tformer::attention_kernels;
  for (std::uint64_t seed = 1; seed <= 60; ++seed) {
    CAPTURE(seed);
    test::Random rng(seed);
    const int rows = rng.integer(1, 140), cols = rng.integer(1, 150), depth = rng.integer(1, 140);
    const int lda = depth + rng.integer(0, 5), ldb = cols + rng.integer(0, 5),
              ldo = cols + rng.integer(0, 5);
    const bool rescale = seed % 2 == 0;
    const auto ragged = std::array{k::Ragged::none, k::Ragged::columns, k::Ragged::depth}[seed % 3];
    // Ends past the row's width too (a row that needs everything), and 0 (nothing).
    const int width = ragged == k::Ragged::columns ? cols : depth;
    std::vector<tformer::index> ends(static_cast<std::size_t>(rows));
    for (auto& e : ends) e = rng.integer(0, width + 3);
    CAPTURE(rows, cols, depth, rescale, int(ragged));
    auto a = rng.normal_floats(std::size_t(rows) * lda);
    if (ragged == k::Ragged::depth)
      for (int r = 0; r < rows; ++r)
        for (int j = int(ends[std::size_t(r)]); j < depth; ++j) a[std::size_t(r) * lda + j] = 0.0f;
    const auto b = rng.normal_floats(std::size_t(depth) * ldb);
    const auto alpha = rng.normal_floats(std::size_t(rows));
    auto out = rng.normal_floats(std::size_t(rows) * ldo);
    const auto before = out;
    k::block_product(out.data(), ldo, rescale ? alpha.data() : nullptr, rows, cols, a.data(), lda,
                     b.data(), ldb, depth, ragged,
                     [&](tformer::index r) { return ends[std::size_t(r)]; });
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < ldo; ++c) {
        const std::size_t at = std::size_t(r) * ldo + c;
        if (c >= cols) {  // past the columns: untouched
          REQUIRE(out[at] == before[at]);
          continue;
        }
        double exact = rescale ? double(alpha[r]) * before[at] : 0.0;
        double magnitude = std::abs(exact);
        for (int j = 0; j < depth; ++j) {
          const double p = double(a[std::size_t(r) * lda + j]) * b[std::size_t(j) * ldb + c];
          exact += p;
          magnitude += std::abs(p);
        }
        const bool needed = ragged != k::Ragged::columns || c < ends[std::size_t(r)];
        if (needed || out[at] != before[at])  // a column past the end: as it was, or computed
          REQUIRE(std::abs(out[at] - exact) <= (depth + 1) * u * magnitude + 1e-30);
      }
    }
  }
}

TEST_CASE("nn/attention: the prefill transpose moves every value once",
          "[nn][attention][prefill]") {
  test::Random rng(7);
  for (const auto& [n, d] :
       {std::pair{1, 1}, std::pair{64, 128}, std::pair{37, 5}, std::pair{3, 140}, std::pair{8, 8},
        std::pair{16, 24}, std::pair{23, 17}, std::pair{9, 100}}) {
    const auto from = rng.normal_floats(std::size_t(n) * d);
    const int ld = n + 3;
    std::vector<float> to(std::size_t(d) * ld, -1.0f);
    tformer::attention_kernels::transpose_block(from.data(), n, d, to.data(), ld);
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < ld; ++j)
        REQUIRE(to[std::size_t(i) * ld + j] == (j < n ? from[std::size_t(j) * d + i] : -1.0f));
  }
}

// The online softmax's rescale factor skips exp where the maximum did not move: the same bits as
// the former exp(m_old − m_new), 0 for no key yet, on 211² pairs formed as the kernels form them
// (m_new = max(m_old, tile maximum)), edge values among them.
TEST_CASE("nn/attention: the rescale factor is exp(m_old - m_new) to the bit", "[nn][attention]") {
  const float inf = std::numeric_limits<float>::infinity(),
              nan = std::numeric_limits<float>::quiet_NaN();
  const auto old_rule = [&](float m_old, float m_new) {
    return m_old == -inf ? 0.0f : std::exp(m_old - m_new);
  };
  test::Random rng(11);
  std::vector<float> values = {0.0f, -0.0f, 1.0f, -3.5f, 88.0f, -1e30f, 1e30f, inf, -inf, nan};
  values.push_back(std::numeric_limits<float>::denorm_min());
  for (int i = 0; i < 200; ++i) values.push_back(float(rng.uniform(-50.0, 50.0)));
  int equal_pairs = 0;
  for (float m_old : values)
    for (float tile_max : values) {
      const float m_new = std::max(m_old, tile_max);  // as the kernels form it
      if (m_new == -inf) continue;                    // the kernels return before asking
      const float got = tformer::attention_kernels::rescale_factor(m_old, m_new);
      const float want = old_rule(m_old, m_new);
      CAPTURE(m_old, tile_max, m_new, got, want);
      REQUIRE((std::isnan(want)
                   ? std::isnan(got)
                   : std::bit_cast<std::uint32_t>(got) == std::bit_cast<std::uint32_t>(want)));
      equal_pairs += m_old == m_new;
    }
  CHECK(equal_pairs > 200);  // pairs where the maximum did not move were among them
}

// docs/CONVENTIONS.md: a NaN value reaches every output that weights it; in the many-token path
// it may reach rows of its query tile that give it weight 0 (0 · NaN where a product tile of rows
// reaches past their ends), never rows of a query tile whose keys end before it. Tokens 64-66
// (group 2: rows 0-5 of their tile, one register tile whose last end is key 67) give it weight 0:
// the SIMD builds stop that tile's P·V before it, the scalar build multiplies the whole block.
TEST_CASE(
    "nn/attention: a NaN value reaches the rows that weight it in a prefill, and no query "
    "tile that ends before it",
    "[nn][attention][prefill]") {
  constexpr int tile = int(AttentionWorkspace::query_tile);             // 64
  constexpr int Hq = 2, Hkv = 1, D = 16, L = tile + 8, bad = tile + 3;  // tiles [0, 64), [64, 72)
  test::Random rng(5);
  const auto k = rng.normal_floats(std::size_t(L) * Hkv * D);
  auto v = rng.normal_floats(k.size());
  std::fill(v.begin() + bad * D, v.begin() + (bad + 1) * D,
            std::numeric_limits<float>::quiet_NaN());
  KVCache cache = cache_of(k, v, L, Hkv, D);
  const auto q = rng.normal_floats(std::size_t(L) * Hq * D);
  std::vector<float> o(q.size());
  AttentionWorkspace ws(Hq / Hkv, D);
  tformer::attention(HeadsView<const float>(q.data(), L, Hq, D), cache.view(0, 0, L),
                     Positions::offset(0), HeadsView<float>(o.data(), L, Hq, D), ws);
  for (int t = 0; t < L; ++t) {
    CAPTURE(t);
    const bool nan = t >= bad || (t >= tile && !TFORMER_HAS_SIMD);
    for (int i = 0; i < Hq * D; ++i) REQUIRE(std::isnan(o[std::size_t(t) * Hq * D + i]) == nan);
  }
}

// A score scaled past the float range is +inf: softmax's exp(inf − inf) makes the head NaN, as
// in PyTorch. The many-token path scales inside the exponential's fma (one rounding, on FMA
// targets), where inf − inf never forms: without its check those rows would get weights 0 and
// output 0.
TEST_CASE("nn/attention: a score scaled to +inf makes its query head NaN, in both paths",
          "[nn][attention]") {
  constexpr int Hq = 2, Hkv = 1, D = 16, L = 40, big = 30;
  test::Random rng(31);
  auto k = rng.normal_floats(std::size_t(L) * Hkv * D, 1e-3f);
  k[std::size_t(big) * D] = 1.0f;  // head 0's score at key `big`: 4 · 1e38, past FLT_MAX
  const auto v = rng.normal_floats(k.size());
  KVCache cache = cache_of(k, v, L, Hkv, D);
  auto q = rng.normal_floats(std::size_t(L) * Hq * D);
  for (int t = 0; t < L; ++t) {  // head 0 = (1e38, 0, …): its other scores stay below 1e37
    std::fill_n(q.begin() + std::ptrdiff_t(t) * Hq * D, D, 0.0f);
    q[std::size_t(t) * Hq * D] = 1e38f;
  }
  AttentionOptions opt;
  opt.scale = 4.0f;
  AttentionWorkspace ws(Hq / Hkv, D);
  std::vector<float> prefill(q.size()), decode(q.size());
  tformer::attention(HeadsView<const float>(q.data(), L, Hq, D), cache.view(0, 0, L),
                     Positions::offset(0), HeadsView<float>(prefill.data(), L, Hq, D), ws, opt);
  for (int t = 0; t < L; ++t)
    tformer::attention(HeadsView<const float>(q.data() + std::size_t(t) * Hq * D, 1, Hq, D),
                       cache.view(0, 0, L), Positions::offset(t),
                       HeadsView<float>(decode.data() + std::size_t(t) * Hq * D, 1, Hq, D), ws,
                       opt);
  for (const auto* o : {&prefill, &decode})
    for (int t = 0; t < L; ++t)
      for (int h = 0; h < Hq; ++h) {
        INFO("token " << t << " head " << h << (o == &prefill ? " prefill" : " decode"));
        for (int i = 0; i < D; ++i) {
          const float x = (*o)[(std::size_t(t) * Hq + h) * D + i];
          if (h == 0 && t >= big)
            REQUIRE(std::isnan(x));
          else
            REQUIRE(std::isfinite(x));
        }
      }
}

// A many-token call whose queries see no key at all (no key block runs) writes zeros, whatever the
// workspace's output block held from an earlier call (NaN here, from a NaN value every row saw).
TEST_CASE("nn/attention: a prefill that sees no key writes zeros over a workspace left NaN",
          "[nn][attention][prefill]") {
  constexpr int Hq = 2, Hkv = 1, D = 16, L = 10;
  test::Random rng(32);
  const auto k = rng.normal_floats(std::size_t(L) * Hkv * D);
  auto v = rng.normal_floats(k.size());
  // Key 0's value, which every causal query sees.
  std::fill_n(v.begin(), D, std::numeric_limits<float>::quiet_NaN());
  KVCache cache = cache_of(k, v, L, Hkv, D);
  const auto q = rng.normal_floats(std::size_t(L) * Hq * D);
  std::vector<float> o(q.size());
  AttentionWorkspace ws(Hq / Hkv, D);
  tformer::attention(HeadsView<const float>(q.data(), L, Hq, D), cache.view(0, 0, L),
                     Positions::offset(0), HeadsView<float>(o.data(), L, Hq, D), ws);
  for (float x : o) REQUIRE(std::isnan(x));
  AttentionOptions opt;  // not causal, window 4: keys [p − 3, 10) for p = 50, 51, none
  opt.causal = false;
  opt.window = 4;
  const std::vector<std::int32_t> pos = {50, 51};
  std::fill(o.begin(), o.end(), 1.0f);
  tformer::attention(HeadsView<const float>(q.data(), 2, Hq, D), cache.view(0, 0, L),
                     Positions::ids(pos), HeadsView<float>(o.data(), 2, Hq, D), ws, opt);
  for (int i = 0; i < 2 * Hq * D; ++i) REQUIRE(o[std::size_t(i)] == 0.0f);
}

// attention() on an executor splits a call into (kv head, block of 64 queries) tasks, one token
// into kv heads; each task writes its own rows, so every executor gives attention()'s bits.
TEST_CASE("nn/attention: on threads, the same bits as on one, every cache type and mask",
          "[nn][attention][threads]") {
  const auto seed = GENERATE(range(1, 13));
  CAPTURE(seed);
  test::Random rng(std::uint64_t(seed + 900));
  const auto type = std::array{tformer::KVType::f32, tformer::KVType::f16, tformer::KVType::bf16,
                               tformer::KVType::q8}[std::size_t(seed % 4)];
  // At least 2 KV heads, so that every call has tasks for 2 workers.
  const int Hkv = rng.integer(2, 4), g = rng.integer(1, 5), D = rng.integer(1, 70);
  const int L = rng.integer(1, 200), T = seed % 3 == 0 ? 1 : rng.integer(2, std::min(L + 1, 150));
  Setup s(rng, Hkv * g, Hkv, D, L, 1.0f, type);
  AttentionOptions opt = seeded_masks(seed, rng);
  if (seed % 6 == 1 && opt.window > 0) opt.sinks = rng.integer(1, 4);
  std::vector<std::uint8_t> valid;  // a padding mask on some seeds
  if (seed % 4 == 1) {
    for (int j = 0; j < L; ++j) valid.push_back(rng.integer(0, 3) != 0);
    opt.key_valid = valid;
  }
  CAPTURE(tformer::kv_type_name(type), Hkv, g, D, L, T, opt.window, opt.softcap, opt.causal,
          valid.size());
  const auto q = rng.normal_floats(std::size_t(T) * s.Hq * s.D);
  std::vector<std::int32_t> pos(static_cast<std::size_t>(T));
  for (auto& p : pos) p = rng.integer(0, L - 1);
  const auto slopes = tformer::alibi_slopes(s.Hq);
  const tformer::AlibiBias alibi{slopes};
  const HeadsView<const float> qv(q.data(), T, s.Hq, D);
  const auto kv = s.cache.view(0, 0, L);
  for (const bool biased : {false, true}) {
    CAPTURE(biased);
    std::vector<float> serial(q.size(), -9.0f);
    AttentionWorkspace one(g, D);
    const HeadsView<float> sv(serial.data(), T, s.Hq, D);
    if (biased)
      tformer::attention(qv, kv, Positions::ids(pos), sv, one, opt, alibi);
    else
      tformer::attention(qv, kv, Positions::ids(pos), sv, one, opt);
    if (!biased) {
      auto c = s.reference(opt);
      if (!valid.empty()) c.key_valid = &valid;
      check_outputs(s, c, q, serial, pos);
    }
    const auto same_bits = [&](const auto& exec, int workspaces) {
      std::vector<AttentionWorkspace> ws;
      for (int w = 0; w < workspaces; ++w) ws.emplace_back(g, D);
      std::vector<float> o(q.size(), -9.0f);
      const HeadsView<float> ov(o.data(), T, s.Hq, D);
      if (biased)
        tformer::attention(exec, qv, kv, Positions::ids(pos), ov, std::span(ws), opt, alibi);
      else
        tformer::attention(exec, qv, kv, Positions::ids(pos), ov, std::span(ws), opt);
      REQUIRE(std::memcmp(o.data(), serial.data(), o.size() * sizeof(float)) == 0);
    };
    same_bits(tformer::SerialExecutor{}, 1);
    for (const int threads : {2, 3}) {
      CAPTURE(threads);
      const tformer::ThreadTeam team(threads);
      same_bits(team, threads);
      same_bits(team, 1);  // one workspace: one worker, whatever the team
      same_bits(test::EnginePool(threads), threads);
    }
  }
}

TEST_CASE("nn/attention: on threads, bad input is rejected before any worker runs",
          "[nn][attention][threads][errors]") {
  test::Random rng(33);
  const int D = 8;
  Setup s(rng, 4, 2, D, 40);
  std::vector<float> q(std::size_t(40) * 4 * D, 1.0f), o(q.size(), -9.0f);
  const HeadsView<const float> qv(q.data(), 40, 4, D);
  const HeadsView<float> ov(o.data(), 40, 4, D);
  const auto kv = s.cache.view(0, 0, 40);
  const tformer::ThreadTeam team(2);
  std::vector<AttentionWorkspace> none;
  CHECK_THROWS_WITH(tformer::attention(team, qv, kv, Positions::offset(0), ov, std::span(none)),
                    Contains("attention: ws.size() (workspaces): expected >= 1, got 0"));
  std::vector<AttentionWorkspace> mixed;
  mixed.emplace_back(2, D);
  mixed.emplace_back(4, D);  // the second of the wrong group size
  CHECK_THROWS_WITH(tformer::attention(team, qv, kv, Positions::offset(0), ov, std::span(mixed)),
                    Contains("attention: workspace group size: expected 2, got 4"));
  std::vector<AttentionWorkspace> ws;
  ws.emplace_back(2, D);
  ws.emplace_back(2, D);
  AttentionWorkspace taken = std::move(ws[1]);  // leaves ws[1] without buffers
  CHECK_THROWS_WITH(
      tformer::attention(team, qv, kv, Positions::offset(0), ov, std::span(ws)),
      Contains("attention: workspace bytes (none once moved from): expected > 0, got 0"));
  ws[1] = std::move(taken);
  // The last causal query at position 40, past the 40 keys.
  CHECK_THROWS_WITH(
      tformer::attention(team, qv, kv, Positions::offset(1), ov, std::span(ws)),
      Contains(
          "attention: positions (offset + tokens): expected positions in [0, 40), got [1, 41)"));
  CHECK(std::all_of(o.begin(), o.end(), [](float x) { return x == -9.0f; }));
  // No tokens: nothing to do, nothing written.
  tformer::attention(team, HeadsView<const float>(q.data(), 0, 4, D), kv, Positions::offset(0),
                     HeadsView<float>(o.data(), 0, 4, D), std::span(ws));
  CHECK(std::all_of(o.begin(), o.end(), [](float x) { return x == -9.0f; }));
  tformer::attention(team, qv, kv, Positions::offset(0), ov, std::span(ws));
  CHECK(std::none_of(o.begin(), o.end(), [](float x) { return x == -9.0f; }));
}
