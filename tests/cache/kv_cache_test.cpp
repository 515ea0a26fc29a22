#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "reference/weight_reference.hpp"
#include "support/random.hpp"
#include "tformer/cache/kv_cache.hpp"

using Catch::Matchers::Contains;
using tformer::CrossKVCache;
using tformer::HeadsView;
using tformer::KVCache;

TEST_CASE("cache/kv_cache: layout, lengths per sequence, truncate and reset", "[cache]") {
  const tformer::KVCacheConfig config{
      .layers = 3, .kv_heads = 2, .head_dim = 4, .capacity = 10, .sequences = 2};
  KVCache cache(config);
  CHECK(cache.bytes() == 2u * 2 * 3 * 2 * 10 * 4 * sizeof(float));
  test::Random rng(1);
  const auto k = rng.normal_floats(3 * 2 * 4), v = rng.normal_floats(3 * 2 * 4);
  for (int layer = 0; layer < 3; ++layer)
    cache.write(layer, 1, HeadsView<const float>(k.data(), 3, 2, 4),
                HeadsView<const float>(v.data(), 3, 2, 4));
  CHECK(cache.length(1) == 0);  // written, not yet advanced
  cache.advance(1, 3);
  CHECK(cache.length(1) == 3);
  CHECK(cache.length(0) == 0);
  const auto view = cache.view(2, 1, cache.length(1));
  CHECK(view.length == 3);
  for (int t = 0; t < 3; ++t)
    for (int h = 0; h < 2; ++h)
      for (int i = 0; i < 4; ++i) {
        REQUIRE(view.key<float>(h, t)[i] == k[(t * 2 + h) * 4 + i]);  // [head][position][dim]
        REQUIRE(view.value<float>(h, t)[i] == v[(t * 2 + h) * 4 + i]);
      }
  CHECK(view.key<float>(1, 0) == view.key<float>(0, 0) + 10 * 4);  // one head's positions are contiguous
  cache.truncate(1, 1);
  CHECK(cache.length(1) == 1);
  cache.reset(1);
  CHECK(cache.length(1) == 0);
}

namespace {

// The value of 16-bit `bits` of `type`, decoded from the format's definition (ref::).
double decoded(tformer::KVType type, std::uint16_t bits) {
  return type == tformer::KVType::f16 ? ref::half_value(bits) : ref::bfloat_value(bits);
}

// Whether `bits` is x rounded to nearest, ties to even, in `type`: no neighbour (one unit of the
// last place either way, same sign) is nearer, a tie picks the even one, and the sign is x's (a
// negative x that rounds to zero is −0). f16 overflows to inf
// from 65520 on (IEEE: beyond the largest finite value plus half its unit in the last place).
bool rounds_to_nearest_even(tformer::KVType type, float x, std::uint16_t bits) {
  const double y = decoded(type, bits);
  if (std::isnan(x)) return std::isnan(y);
  if (((bits & 0x8000) != 0) != std::signbit(x)) return false;  // −0 for a negative x too
  if (std::isinf(x)) return y == double(x);
  if (type == tformer::KVType::f16 && std::abs(x) >= 65520.0f)
    return std::isinf(y) && (y > 0) == (x > 0);
  const double e = std::abs(double(x) - y);
  for (const int step : {-1, 1}) {
    const int magnitude = (bits & 0x7fff) + step;
    if (magnitude < 0 || magnitude > 0x7fff) continue;
    const double n = decoded(type, std::uint16_t((bits & 0x8000) | magnitude));
    if (!std::isfinite(n)) continue;
    const double en = std::abs(double(x) - n);
    if (en < e || (en == e && (bits & 1))) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("cache/kv_cache: f16 and bf16 caches store each value rounded to nearest even, in half "
          "the bytes",
          "[cache][kv16]") {
  const auto type = GENERATE(tformer::KVType::f16, tformer::KVType::bf16);
  CAPTURE(tformer::kv_type_name(type));
  const tformer::KVCacheConfig config{
      .layers = 2, .kv_heads = 3, .head_dim = 40, .capacity = 9, .sequences = 2, .type = type};
  KVCache cache(config);
  CHECK(cache.bytes() == 2u * 2 * 2 * 3 * 9 * 40 * 2);
  test::Random rng(7);
  const int T = 9, H = 3, D = 40;
  auto k = rng.normal_floats(std::size_t(T) * H * D, 3.0f), v = rng.normal_floats(k.size());
  // Every scale f16 and bf16 round differently at: subnormal f16, ties, overflow, NaN, ±inf.
  for (std::size_t i = 0; i < k.size(); i += 7) k[i] *= std::ldexp(1.0f, int(i % 50) - 30);
  k[1] = 65519.0f;  // f16: rounds to 65504
  k[2] = -70000.0f;  // f16: −inf
  k[3] = 1.0f + std::ldexp(1.0f, -11);  // a tie in f16 (to 1), not in bf16 (to 1)
  k[4] = 1.0f + 3 * std::ldexp(1.0f, -8);  // a tie in bf16 (1.5 units: to 1 + 2^−6)
  k[5] = std::numeric_limits<float>::quiet_NaN();
  k[6] = -std::numeric_limits<float>::infinity();
  k[8] = 1e-7f;  // f16: a subnormal (about 1.7 steps of 2^−24)
  k[9] = 1e-9f;  // f16: below half the smallest subnormal, to zero
  cache.write(1, 1, HeadsView<const float>(k.data(), T, H, D), HeadsView<const float>(v.data(), T, H, D));
  cache.advance(1, T);
  const tformer::KVView view = cache.view(1, 1, T);
  CHECK(view.type == type);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < D; ++i) {
        // The stored bits, through the typed accessors.
        const auto bits = [&](auto tag) {
          using E = decltype(tag);
          return std::pair{view.key<E>(h, t)[i].bits, view.value<E>(h, t)[i].bits};
        };
        const auto [kb, vb] = type == tformer::KVType::f16 ? bits(tformer::f16{}) : bits(tformer::bf16{});
        const float kx = k[(std::size_t(t) * H + h) * D + i], vx = v[(std::size_t(t) * H + h) * D + i];
        INFO("t " << t << " head " << h << " dim " << i << " k " << kx << " stored " << kb);
        REQUIRE(rounds_to_nearest_even(type, kx, kb));
        REQUIRE(rounds_to_nearest_even(type, vx, vb));
      }
  // [head][slot][dim], 2 bytes a value; a view of one head, and one from position 3 on.
  const auto* base = static_cast<const std::byte*>(view.keys);
  CHECK(static_cast<const void*>(view.key<tformer::f16>(2, 4)) == base + 2 * ((2 * 9 + 4) * D));
  CHECK(view.from(3).length == T - 3);
  CHECK(view.from(3).keys == base + 2 * (3 * D));
  CHECK(view.head(2).keys == base + 2 * (2 * 9 * D));
  CHECK(view.head(2).kv_heads == 1);
}

TEST_CASE("cache/kv_cache: a q8 cache stores each row as int8 with its scale, within half a step",
          "[cache][kvq8]") {
  const tformer::KVCacheConfig config{.layers = 2,
                                      .kv_heads = 3,
                                      .head_dim = 40,
                                      .capacity = 9,
                                      .sequences = 2,
                                      .type = tformer::KVType::q8};
  KVCache cache(config);
  // int8 values plus one float scale per (sequence, layer, head, position) for keys and values.
  CHECK(cache.bytes() == 2u * 2 * 2 * 3 * 9 * 40 * 1 + 2u * 2 * 2 * 3 * 9 * 4);
  test::Random rng(8);
  const int T = 9, H = 3, D = 40;
  auto k = rng.normal_floats(std::size_t(T) * H * D, 3.0f), v = rng.normal_floats(k.size());
  const auto row = [&](std::vector<float>& x, int t, int h) {
    return x.data() + (std::size_t(t) * H + h) * D;
  };
  // Rows of every kind: magnitudes far apart, all zero, a NaN, an inf, one value alone, ties.
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < D; ++i) row(k, t, h)[i] *= std::ldexp(1.0f, 3 * t - 12);
  std::fill(row(k, 1, 0), row(k, 1, 0) + D, 0.0f);
  row(k, 2, 1)[7] = std::numeric_limits<float>::quiet_NaN();
  row(v, 3, 2)[0] = -std::numeric_limits<float>::infinity();
  std::fill(row(v, 4, 0), row(v, 4, 0) + D, 0.0f);
  row(v, 4, 0)[5] = -2.5f;  // one value: stored as −127 with scale 2.5/127
  for (int i = 0; i < D; ++i) row(k, 5, 2)[i] = 127.0f - float(i) / 2;  // scale 1: half-way ties
  // Subnormal scales, a row that rounds to s = 0, and one reaching FLT_MAX (s stepped down).
  for (int i = 0; i < D; ++i) row(k, 6, 0)[i] = float(i - 20) * 1e-40f;
  for (int i = 0; i < D; ++i) row(k, 7, 1)[i] = float(i % 3) * std::ldexp(1.0f, -149);
  row(v, 8, 1)[3] = -std::numeric_limits<float>::max();
  cache.write(1, 1, HeadsView<const float>(k.data(), T, H, D),
              HeadsView<const float>(v.data(), T, H, D));
  cache.advance(1, T);
  const tformer::KVView view = cache.view(1, 1, T);
  CHECK(view.type == tformer::KVType::q8);
  const auto check_row = [&](const float* x, const std::int8_t* q, float s) {
    double amax = 0;
    bool finite = true;
    for (int i = 0; i < D; ++i) {
      finite = finite && std::isfinite(x[i]);
      amax = std::max(amax, std::abs(double(x[i])));
    }
    if (!finite) {  // stored as NaN
      REQUIRE(std::isnan(s));
      return;
    }
    float want = float(amax / 127);  // the scale rounded once, stepped down if 127·s overflows
    if (!std::isfinite(127.0f * want)) want = std::nextafter(want, 0.0f);
    REQUIRE(s == want);
    // A subnormal scale has fewer bits: up to 127 · 2^−150 more.
    const double slack = s < std::numeric_limits<float>::min() ? 127 * std::ldexp(1.0, -150) : 0.0;
    for (int i = 0; i < D; ++i) {
      INFO("dim " << i << " x " << x[i] << " stored " << int(q[i]) << " scale " << s);
      REQUIRE(std::abs(int(q[i])) <= 127);
      if (s == 0.0f) {
        REQUIRE(q[i] == 0);
        REQUIRE(std::abs(x[i]) <= slack);
        continue;
      }
      const double y = double(x[i]) / double(s);  // the nearest integer, ties to even
      if (slack == 0) {
        REQUIRE(std::abs(y - q[i]) <= 0.5 + 1e-5);
        if (std::abs(std::abs(y - q[i]) - 0.5) > 1e-5) REQUIRE(std::abs(y - q[i]) < 0.5);
      }
      REQUIRE(std::abs(double(x[i]) - double(q[i]) * s) <=
              0.5 * s * (1 + std::ldexp(1.0, -15)) + slack);
    }
  };
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h) {
      CAPTURE(t, h);
      check_row(row(k, t, h), view.key<std::int8_t>(h, t), *view.key_scale(h, t));
      check_row(row(v, t, h), view.value<std::int8_t>(h, t), *view.value_scale(h, t));
    }
  CHECK(*view.value_scale(0, 4) == 2.5f / 127);
  CHECK(view.value<std::int8_t>(0, 4)[5] == -127);
  CHECK(view.key<std::int8_t>(2, 5)[1] == 126);  // 126.5: the tie goes to the even 126
  CHECK(view.key<std::int8_t>(2, 5)[3] == 126);  // 125.5: to 126
  CHECK(*view.key_scale(1, 7) == 0.0f);
  CHECK(*view.key_scale(0, 6) < std::numeric_limits<float>::min());
  CHECK(*view.key_scale(0, 6) > 0.0f);
  CHECK(std::isfinite(127.0f * *view.value_scale(1, 8)));
  CHECK(view.value<std::int8_t>(1, 8)[3] == -127);
  // Scales laid out like the rows: [head][slot]; views of one head and from a position carry them.
  CHECK(view.scale_stride == 9);
  CHECK(view.key_scale(2, 4) == view.key_scales + 2 * 9 + 4);
  CHECK(view.from(3).key_scale(0, 0) == view.key_scale(0, 3));
  CHECK(view.from(3).value_scale(1, 2) == view.value_scale(1, 5));
  CHECK(view.head(2).key_scale(0, 1) == view.key_scale(2, 1));
  CHECK(view.head(2).value_scale(0, 1) == view.value_scale(2, 1));
  CHECK(static_cast<const void*>(view.head(2).key<std::int8_t>(0, 1)) ==
        static_cast<const void*>(view.key<std::int8_t>(2, 1)));
}

namespace {

// Every item of a parallel_for on the calling thread, last first, while claiming 3 workers: a
// split and an order no thread team produces.
struct Reversed {
  tformer::index concurrency() const noexcept { return 3; }
  template <class F>
  void parallel_for(tformer::index begin, tformer::index end, F&& f) const {
    for (tformer::index i = end; i-- > begin;) f(i);
  }
};

// Whether slots [0, slots) of every head of (layer, seq) hold the same bytes in a and b (values
// and, for q8, row scales).
bool same_slots(const KVCache& a, const KVCache& b, tformer::index layer, tformer::index seq,
                tformer::index length, tformer::index slots) {
  const tformer::KVView x = a.view(layer, seq, length), y = b.view(layer, seq, length);
  const auto bytes = std::size_t(x.head_dim * tformer::kv_type_bytes(x.type));
  for (tformer::index h = 0; h < x.kv_heads; ++h) {
    const tformer::KVView xh = x.head(h), yh = y.head(h);
    if (std::memcmp(xh.keys, yh.keys, bytes * std::size_t(slots)) != 0 ||
        std::memcmp(xh.values, yh.values, bytes * std::size_t(slots)) != 0)
      return false;
    if (x.type == tformer::KVType::q8 &&
        (std::memcmp(xh.key_scales, yh.key_scales, sizeof(float) * std::size_t(slots)) != 0 ||
         std::memcmp(xh.value_scales, yh.value_scales, sizeof(float) * std::size_t(slots)) != 0))
      return false;
  }
  return true;
}

}  // namespace

TEST_CASE(
    "cache/kv_cache: a write split over workers stores what write() stores, in every type "
    "and in a ring",
    "[cache][threads]") {
  const tformer::ThreadTeam team(3);
  test::Random rng(31);
  for (const auto type :
       {tformer::KVType::f32, tformer::KVType::f16, tformer::KVType::bf16, tformer::KVType::q8})
    for (const bool ring : {false, true}) {
      INFO("type " << int(type) << (ring ? ", ring" : ", full"));
      // A ring of 2 sinks + 8 + 40 - 1 slots, wrapped by steps of 40, 40 and 5 tokens (every slot
      // written); a full cache of 85 positions.
      const tformer::KVCacheConfig config{.layers = 2,
                                          .kv_heads = 3,
                                          .head_dim = 20,
                                          .capacity = 85,
                                          .sequences = 2,
                                          .window = ring ? 8 : 0,
                                          .max_step = 40,
                                          .sinks = ring ? 2 : 0,
                                          .type = type};
      KVCache plain(config), split(config), reversed(config);
      for (const tformer::index T : {40, 40, 5}) {
        const auto k = rng.normal_floats(std::size_t(T) * 3 * 20, 2.0f),
                   v = rng.normal_floats(k.size());
        const HeadsView<const float> kv(k.data(), T, 3, 20), vv(v.data(), T, 3, 20);
        for (tformer::index layer = 0; layer < 2; ++layer) {
          plain.write(layer, 1, kv, vv);
          split.write(layer, 1, kv, vv, team);
          reversed.write(layer, 1, kv, vv, Reversed{});
        }
        plain.advance(1, T);
        split.advance(1, T);
        reversed.advance(1, T);
      }
      const tformer::index length = plain.length(1), slots = ring ? plain.slots() : length;
      REQUIRE(split.length(1) == length);
      for (tformer::index layer = 0; layer < 2; ++layer) {
        CHECK(same_slots(plain, split, layer, 1, length, slots));
        CHECK(same_slots(plain, reversed, layer, 1, length, slots));
      }
      // A rejected split write raises write()'s error and changes nothing.
      const auto k = rng.normal_floats(41 * 3 * 20);
      const HeadsView<const float> big(k.data(), 41, 3, 20);
      CHECK_THROWS_WITH(split.write(0, 1, big, big, team),
                        Contains(ring ? "max_step (40)" : "capacity (85)"));
      CHECK(same_slots(plain, split, 0, 1, length, slots));
    }
}

TEST_CASE("cache/kv_cache: overflow and bad arguments raise tformer::Error", "[cache][errors]") {
  KVCache cache({.layers = 1, .kv_heads = 1, .head_dim = 2, .capacity = 4});
  std::vector<float> kv(5 * 2);
  CHECK_THROWS_WITH(cache.write(0, 0, HeadsView<const float>(kv.data(), 5, 1, 2),
                                HeadsView<const float>(kv.data(), 5, 1, 2)),
                    Contains("capacity (4)") && Contains("got 5"));
  CHECK_THROWS_WITH(cache.write(1, 0, HeadsView<const float>(kv.data(), 1, 1, 2),
                                HeadsView<const float>(kv.data(), 1, 1, 2)),
                    Contains("layer") && Contains("[0, 1)"));
  CHECK_THROWS_WITH(cache.write(0, 0, HeadsView<const float>(kv.data(), 1, 2, 2),
                                HeadsView<const float>(kv.data(), 1, 2, 2)),
                    Contains("k.heads (= kv_heads)") && Contains("expected 1, got 2"));
  CHECK_THROWS_WITH(cache.advance(0, 5), Contains("tokens") && Contains("capacity 4 - length 0"));
  CHECK_THROWS_WITH(cache.truncate(0, 1), Contains("[0, 0] (current length)"));
  CHECK_THROWS_WITH(KVCache({.layers = 0, .kv_heads = 1, .head_dim = 2, .capacity = 4}),
                    Contains("layers"));
  CHECK_THROWS_WITH(KVCache({.layers = 1,
                             .kv_heads = 1,
                             .head_dim = 2,
                             .capacity = 4,
                             .type = static_cast<tformer::KVType>(7)}),
                    Contains("type") && Contains("f32, f16, bf16 or q8") && Contains("got 7"));
}

TEST_CASE("cache/kv_cache: view() covers only positions written to that layer", "[cache][errors]") {
  KVCache cache({.layers = 2, .kv_heads = 1, .head_dim = 2, .capacity = 8});
  std::vector<float> kv(3 * 2, 1.0f);
  const HeadsView<const float> three(kv.data(), 3, 1, 2), one(kv.data(), 1, 1, 2);
  cache.write(0, 0, three, three);
  CHECK(cache.view(0, 0, 3).length == 3);
  // Layer 1 was never written: attending over it would read zeros or stale keys.
  CHECK_THROWS_WITH(cache.view(1, 0, 3), Contains("length") && Contains("[0, 0]"));
  cache.write(1, 0, three, three);
  cache.advance(0, 3);
  // Roll back one position (a rejected draft token): position 2 is stale until written again.
  cache.truncate(0, 2);
  CHECK_THROWS_WITH(cache.view(0, 0, 3), Contains("[0, 2]"));
  cache.write(0, 0, one, one);
  CHECK(cache.view(0, 0, 3).length == 3);
  CHECK_THROWS_WITH(cache.view(1, 0, 3), Contains("[0, 2]"));
  // A layer skipped for a whole step leaves a gap that a later write does not hide.
  cache.advance(0, 1);  // layer 1 did not write position 2
  cache.write(1, 0, one, one);
  CHECK_THROWS_WITH(cache.view(1, 0, 4), Contains("[0, 2]"));
  cache.reset(0);
  CHECK_THROWS_WITH(cache.view(0, 0, 1), Contains("[0, 0]"));
}

TEST_CASE("cache/kv_cache: sizes that overflow or exceed 2^40 bytes are refused before allocating",
          "[cache][errors]") {
  constexpr tformer::index huge = tformer::index(1) << 62;
  CHECK_THROWS_WITH(KVCache({.layers = 1, .kv_heads = 1, .head_dim = 2, .window = huge,
                             .max_step = huge + 2}),
                    Contains("window") && Contains("2^40"));
  CHECK_THROWS_WITH(KVCache({.layers = 1 << 16, .kv_heads = 1 << 16, .head_dim = 1 << 16,
                             .capacity = 1 << 16, .sequences = 1 << 16}),
                    Contains("sequences * layers * kv_heads * slots * head_dim") &&
                        Contains("65536 * 65536"));
  CHECK_THROWS_WITH(KVCache({.layers = 1, .kv_heads = 8, .head_dim = 128,
                             .capacity = tformer::index(1) << 40}),
                    Contains("2^40 bytes"));
}

TEST_CASE("cache/kv_cache: advance(INT64_MAX) fails without changing the length", "[cache][errors]") {
  KVCache cache({.layers = 1, .kv_heads = 1, .head_dim = 2, .capacity = 4});
  std::vector<float> kv(2, 0.5f);
  cache.write(0, 0, HeadsView<const float>(kv.data(), 1, 1, 2),
              HeadsView<const float>(kv.data(), 1, 1, 2));
  cache.advance(0, 1);
  CHECK_THROWS_WITH(cache.advance(0, std::numeric_limits<tformer::index>::max()), Contains("tokens"));
  CHECK(cache.length(0) == 1);
  KVCache ring({.layers = 1, .kv_heads = 1, .head_dim = 2, .window = 4, .max_step = 2});
  CHECK_THROWS_WITH(ring.advance(0, std::numeric_limits<tformer::index>::max()), Contains("max_step"));
  CHECK(ring.length(0) == 0);
}

TEST_CASE("cache/cross_kv_cache: every layer of one input has the same padding mask",
          "[cache][errors]") {
  CrossKVCache cross({.layers = 2, .kv_heads = 1, .head_dim = 2, .capacity = 3});
  std::vector<float> kv(3 * 2, 0.25f);
  const HeadsView<const float> s(kv.data(), 3, 1, 2);
  const std::vector<std::uint8_t> mask{1, 1, 0}, other{1, 0, 0};
  cross.set(0, 0, s, s, mask);
  CHECK_THROWS_WITH(cross.set(1, 0, s, s, other), Contains("valid") && Contains("padding mask"));
  cross.set(1, 0, s, s, mask);  // the same mask, or none, is fine
  CHECK(std::vector<std::uint8_t>(cross.key_valid(0).begin(), cross.key_valid(0).end()) == mask);
  CHECK(cross.view(0, 0).length == 3);
  CHECK(cross.view(1, 0).length == 3);
}
