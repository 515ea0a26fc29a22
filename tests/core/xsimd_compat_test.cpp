// Conformance of every xsimd primitive the kernels use, on this build's instruction set, against
// plain scalar code: rows whose lanes all differ, so a permutation of lanes cannot pass unseen.
// (xsimd 8.1's AVX-512 haddp returns its 16 sums with lanes 2<->4, 3<->5, 10<->12, 11<->13
// exchanged, and its own test uses rows that this permutation leaves unchanged.) The suite runs
// at every ISA the host supports (scripts/test), so each primitive is proven on each.
#include <catch2/catch.hpp>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "reference/weight_reference.hpp"
#include "support/random.hpp"
#include "tformer/core/simd.hpp"
#include "tformer/core/simd_load.hpp"

#if TFORMER_HAS_SIMD

namespace {

using B = tformer::simd::batch;
constexpr int W = static_cast<int>(B::size);
constexpr double u = 0x1p-24;  // unit roundoff of float

// W distinct values per row: the lane index is in every value, and no two rows are alike.
std::vector<float> distinct_lanes(int rows, std::uint64_t seed) {
  test::Random rng(seed);
  std::vector<float> x(std::size_t(rows) * W);
  for (int r = 0; r < rows; ++r)
    for (int i = 0; i < W; ++i)
      x[std::size_t(r) * W + i] = float((r + 1) * 1000 + i * 17) + float(rng.uniform(0.0, 0.5));
  return x;
}

std::vector<float> lanes_of(const B& b) {
  alignas(64) float out[W];
  b.store_aligned(out);
  return {out, out + W};
}

// The lanes of f(batch) against g(lane) for each lane, within tol(expected).
template <class F, class G, class Tol>
void check_lanewise(const std::vector<float>& x, F f, G g, Tol tol, const char* what) {
  for (std::size_t r = 0; r < x.size() / W; ++r) {
    const auto got = lanes_of(f(B::load_unaligned(x.data() + r * W)));
    for (int i = 0; i < W; ++i) {
      const double expected = g(x[r * W + i]);
      INFO(what << ": row " << r << " lane " << i << " of " << W << ", input " << x[r * W + i]);
      REQUIRE(std::abs(got[i] - expected) <= tol(expected));
    }
  }
}

}  // namespace

TEST_CASE("xsimd: reduce_add_rows sums each row into its own lane", "[core][xsimd]") {
  const auto x = distinct_lanes(W, 1);
  B rows[W];
  for (int r = 0; r < W; ++r) rows[r] = B::load_unaligned(x.data() + r * W);
  const auto got = lanes_of(tformer::xsimd_compat::reduce_add_rows(rows));
  for (int r = 0; r < W; ++r) {
    double expected = 0;
    for (int i = 0; i < W; ++i) expected += x[std::size_t(r) * W + i];
    INFO("row " << r << " of " << W << " (" << tformer::simd::arch::name() << ")");
    // W terms of about (r + 1)·1000 + 255: a float sum is within (W − 1)·u of their |sum|.
    REQUIRE(std::abs(got[r] - expected) <= (W - 1) * u * expected);
  }
}

TEST_CASE("xsimd: reduce_max finds the largest lane wherever it is, skipping NaN lanes",
          "[core][xsimd]") {
  const auto x = distinct_lanes(1, 4);
  for (int at = 0; at < W; ++at) {  // the largest in every lane in turn
    auto y = x;
    y[std::size_t(at)] = 1e6f + float(at);
    REQUIRE(tformer::xsimd_compat::reduce_max(B::load_unaligned(y.data())) == 1e6f + float(at));
    y[std::size_t((at + 1) % W)] = std::numeric_limits<float>::quiet_NaN();  // skipped
    if (W > 1)
      REQUIRE(tformer::xsimd_compat::reduce_max(B::load_unaligned(y.data())) == 1e6f + float(at));
    // Every other lane NaN: the one number, negative, is the answer.
    std::vector<float> lone(static_cast<std::size_t>(W), std::numeric_limits<float>::quiet_NaN());
    lone[std::size_t(at)] = -3.0f - float(at);
    REQUIRE(tformer::xsimd_compat::reduce_max(B::load_unaligned(lone.data())) == -3.0f - float(at));
  }
  const float inf = std::numeric_limits<float>::infinity();
  REQUIRE(tformer::xsimd_compat::reduce_max(B(-inf)) == -inf);
  REQUIRE(tformer::xsimd_compat::reduce_max(B(std::numeric_limits<float>::quiet_NaN())) == -inf);
  std::vector<float> neg(static_cast<std::size_t>(W));
  for (int i = 0; i < W; ++i) neg[std::size_t(i)] = -float(i + 1);  // all negative: not 0
  REQUIRE(tformer::xsimd_compat::reduce_max(B::load_unaligned(neg.data())) == -1.0f);
}

TEST_CASE("xsimd: reduce_add sums the lanes of one register", "[core][xsimd]") {
  const auto x = distinct_lanes(8, 2);
  for (int r = 0; r < 8; ++r) {
    double expected = 0;
    for (int i = 0; i < W; ++i) expected += x[std::size_t(r) * W + i];
    const float got = tformer::xsimd_compat::reduce_add(B::load_unaligned(x.data() + r * W));
    REQUIRE(std::abs(got - expected) <= (W - 1) * u * expected);
  }
}

TEST_CASE("xsimd: max lane by lane", "[core][xsimd]") {
  const auto x = distinct_lanes(2, 9);
  const B a = B::load_unaligned(x.data()), b = B::load_unaligned(x.data() + W);
  const auto m = lanes_of(xsimd::max(b, a)), al = lanes_of(a), bl = lanes_of(b);
  for (int i = 0; i < W; ++i) REQUIRE(m[i] == std::max(al[i], bl[i]));
}

TEST_CASE("simd_load: bf16 and f16 rows widen to the floats they hold, lane by lane",
          "[core][xsimd]") {
  // Lanes that all differ: the bits of lane i hold i, so a lane moved or dropped shows.
  std::vector<tformer::bf16> b(std::size_t(2 * W));
  std::vector<tformer::f16> h(b.size());
  for (std::size_t i = 0; i < b.size(); ++i) {
    b[i] = {std::uint16_t(0x3f80 + 3 * i)};  // 1 + 3i·2^-7 …
    h[i] = {std::uint16_t(0x3c00 + 37 * i)};  // 1 + 37i·2^-10 …
  }
  b[3] = {0xc2f7};  // −123.5
  h[2] = {0x0001};  // the smallest subnormal, 2^−24
  h[5] = {0xfc00};  // −inf
  for (int offset : {0, 1, W}) {  // unaligned too
    const auto bl = lanes_of(tformer::simd::load_float(b.data() + offset));
    const auto hl = lanes_of(tformer::simd::load_float(h.data() + offset));
    for (int i = 0; i < W; ++i) {
      INFO("offset " << offset << " lane " << i);
      REQUIRE(bl[i] == float(ref::bfloat_value(b[std::size_t(offset + i)].bits)));
      REQUIRE(hl[i] == float(ref::half_value(h[std::size_t(offset + i)].bits)));
    }
  }
}

TEST_CASE("simd_load: int8 rows widen to their integers, lane by lane, signs kept",
          "[core][xsimd]") {
  // Lanes that all differ, both signs, and the ends −128 and 127.
  std::vector<std::int8_t> q(std::size_t(2 * W));
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = std::int8_t(int(i) * 13 % 251 - 125);
  q[1] = -128;
  q[2] = 127;
  q[3] = -1;
  for (int offset : {0, 1, 3, W}) {  // unaligned too
    const auto l = lanes_of(tformer::simd::load_float(q.data() + offset));
    for (int i = 0; i < W; ++i) {
      INFO("offset " << offset << " lane " << i);
      REQUIRE(l[i] == float(q[std::size_t(offset + i)]));
    }
  }
  CHECK(tformer::as_float(std::int8_t(-128)) == -128.0f);
}

TEST_CASE("xsimd: loads, stores and broadcasts keep every lane in place", "[core][xsimd]") {
  const auto x = distinct_lanes(3, 3);
  alignas(64) float aligned[3 * W];
  for (int i = 0; i < 3 * W; ++i) aligned[i] = x[std::size_t(i)];
  for (int offset = 0; offset < W; ++offset) {  // every misalignment
    const B b = B::load_unaligned(x.data() + offset);
    std::vector<float> out(std::size_t(3) * W, -1.0f);
    b.store_unaligned(out.data() + (W - offset));
    for (int i = 0; i < W; ++i)
      REQUIRE(out[std::size_t(W - offset + i)] == x[std::size_t(offset + i)]);
    REQUIRE(out[std::size_t(W - offset - 1)] == -1.0f);  // nothing written before
    REQUIRE(out[std::size_t(2 * W - offset)] == -1.0f);  // nor after
  }
  const auto a = lanes_of(B::load_aligned(aligned + W));
  for (int i = 0; i < W; ++i) REQUIRE(a[i] == x[std::size_t(W + i)]);
  for (float v : lanes_of(B(3.25f))) REQUIRE(v == 3.25f);
}

TEST_CASE("xsimd_compat: partial loads and stores touch only the first n lanes", "[core][xsimd]") {
  const auto x = distinct_lanes(1, 8);
  for (int n = 0; n <= W; ++n) {
    INFO("n " << n << " of " << W);
    const auto got = lanes_of(
        tformer::xsimd_compat::load_partial<tformer::simd::arch>(x.data(), std::size_t(n)));
    for (int i = 0; i < W; ++i) REQUIRE(got[i] == (i < n ? x[std::size_t(i)] : 0.0f));
    std::vector<float> out(std::size_t(W) + 1, -1.0f);
    tformer::xsimd_compat::store_partial(out.data(), B::load_unaligned(x.data()), std::size_t(n));
    for (int i = 0; i <= W; ++i)
      REQUIRE(out[std::size_t(i)] == (i < n ? x[std::size_t(i)] : -1.0f));
  }
}

TEST_CASE("xsimd_compat: partial loads and stores never touch memory past the n-th float",
          "[core][xsimd]") {
  // n floats that end where an inaccessible page begins: any access past them faults.
  const long page = sysconf(_SC_PAGESIZE);
  void* map = mmap(nullptr, std::size_t(2 * page), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(map != MAP_FAILED);
  REQUIRE(mprotect(static_cast<char*>(map) + page, std::size_t(page), PROT_NONE) == 0);
  float* end = reinterpret_cast<float*>(static_cast<char*>(map) + page);
  const auto x = distinct_lanes(1, 9);
  for (int n = 0; n <= W; ++n) {
    INFO("n " << n);
    float* p = end - n;
    for (int i = 0; i < n; ++i) p[i] = x[std::size_t(i)];
    const auto got =
        lanes_of(tformer::xsimd_compat::load_partial<tformer::simd::arch>(p, std::size_t(n)));
    for (int i = 0; i < n; ++i) REQUIRE(got[i] == x[std::size_t(i)]);
    tformer::xsimd_compat::store_partial(p, B::load_unaligned(x.data()), std::size_t(n));
    for (int i = 0; i < n; ++i) REQUIRE(p[i] == x[std::size_t(i)]);
  }
  munmap(map, std::size_t(2 * page));
}

TEST_CASE("xsimd: arithmetic lane by lane, fma and fnma rounded once", "[core][xsimd]") {
  const auto x = distinct_lanes(4, 4);
  const B y = B::load_unaligned(x.data() + W), z = B::load_unaligned(x.data() + 2 * W);
  const auto yl = lanes_of(y), zl = lanes_of(z);
  const auto a = lanes_of(B::load_unaligned(x.data()));
  const auto fma = lanes_of(tformer::xsimd_compat::fma(B::load_unaligned(x.data()), y, z));
  const auto fnma = lanes_of(tformer::xsimd_compat::fnma(B::load_unaligned(x.data()), y, z));
  const auto sum = lanes_of(B::load_unaligned(x.data()) + y);
  const auto diff = lanes_of(B::load_unaligned(x.data()) - y);
  const auto prod = lanes_of(B::load_unaligned(x.data()) * y);
  const auto quot = lanes_of(B::load_unaligned(x.data()) / y);
  const auto neg = lanes_of(-B::load_unaligned(x.data()));
  for (int i = 0; i < W; ++i) {
    const double p = double(a[i]) * yl[i];
    INFO("lane " << i);
    // With FMA hardware fma rounds once: within u of the exact a·y + z (xsimd 8.1's own AVX-512
    // fma rounds twice and fails this). Without (SSE levels), a product and a sum: u·(|p| + |e|).
#if defined(__FMA__) || defined(__AVX512F__)
    const auto tol = [&](double e) { return u * std::abs(e); };
#else
    const auto tol = [&](double e) { return u * (std::abs(p) + std::abs(e)) * (1 + u); };
#endif
    REQUIRE(std::abs(fma[i] - (p + zl[i])) <= tol(p + zl[i]));
    REQUIRE(std::abs(fnma[i] - (zl[i] - p)) <= tol(zl[i] - p));
    REQUIRE(sum[i] == a[i] + yl[i]);
    REQUIRE(diff[i] == a[i] - yl[i]);
    REQUIRE(prod[i] == a[i] * yl[i]);
    REQUIRE(quot[i] == a[i] / yl[i]);
    REQUIRE(neg[i] == -a[i]);
  }
}

TEST_CASE("xsimd: exp, tanh and abs against the standard library, lane by lane", "[core][xsimd]") {
  test::Random rng(5);
  std::vector<float> x(std::size_t(64) * W);
  for (auto& v : x) v = float(rng.uniform(-80.0, 80.0));
  // xsimd 8.1: exp within 1.5 ulp, tanh within 1.4 ulp (docs/CONVENTIONS.md); 2 ulp here.
  check_lanewise(
      x, [](B b) { return xsimd::exp(b); }, [](float v) { return std::exp(double(v)); },
      [](double e) { return 4 * u * std::abs(e); }, "exp");
  for (auto& v : x) v *= 0.1f;
  check_lanewise(
      x, [](B b) { return xsimd::tanh(b); }, [](float v) { return std::tanh(double(v)); },
      [](double e) { return 4 * u * std::abs(e) + 1e-45; }, "tanh");
  check_lanewise(
      x, [](B b) { return xsimd::abs(b); }, [](float v) { return std::abs(double(v)); },
      [](double) { return 0.0; }, "abs");
}

TEST_CASE("simd: exp_nonpositive against the standard library, lane by lane", "[core][xsimd]") {
  test::Random rng(15);
  std::vector<float> x(std::size_t(256) * W);
  for (auto& v : x) v = float(rng.uniform(-86.5, 0.0));
  for (int i = 0; i < W; ++i) x[i] = -0.05f * float(i);  // around 0, where most weights lie
  // xsimd::exp's polynomial: relative error within 2^−22 (as the exp test above), and a normal
  // result down to −86.5.
  const auto exp_np = [](B b) { return tformer::simd::exp_nonpositive(b); };
  check_lanewise(
      x, exp_np, [](float v) { return std::exp(double(v)); },
      [](double e) { return 4 * u * std::abs(e); }, "exp_nonpositive");
  for (auto& v : x) v = float(rng.uniform(0.0, 88.0));  // defined up to 88 too
  check_lanewise(
      x, exp_np, [](float v) { return std::exp(double(v)); },
      [](double e) { return 4 * u * std::abs(e); }, "exp_nonpositive, x > 0");
  // The edges, each in every lane in turn: 0 below −86.5 and at −inf, NaN kept whatever its
  // payload (the low bits of a NaN must not reach the exponent), e^0 exactly 1.
  constexpr float inf = std::numeric_limits<float>::infinity();
  const float edges[] = {-inf,
                         -1e30f,
                         -200.0f,
                         -86.51f,
                         -86.5f,
                         -0.0f,
                         0.0f,
                         std::numeric_limits<float>::quiet_NaN(),
                         std::bit_cast<float>(0x7fc00001u),
                         std::bit_cast<float>(0xffffffffu),
                         std::bit_cast<float>(0x7fffffffu),
                         std::bit_cast<float>(0xffc001ffu)};
  for (int lane = 0; lane < W; ++lane) {
    for (const float e : edges) {
      std::vector<float> row(W);
      for (int i = 0; i < W; ++i) row[i] = -0.25f * float(i + 1);
      row[lane] = e;
      const auto got = lanes_of(exp_np(B::load_unaligned(row.data())));
      INFO("lane " << lane << " of " << W << ", input " << e);
      if (std::isnan(e)) {
        CHECK(std::isnan(got[lane]));
      } else if (e < -86.5f) {
        CHECK(got[lane] == 0.0f);
      } else if (e == 0.0f) {
        CHECK(got[lane] == 1.0f);
      } else {
        CHECK(std::abs(got[lane] - std::exp(double(e))) <= 4 * u * std::exp(double(e)));
        CHECK(std::isnormal(got[lane]));
      }
      for (int i = 0; i < W; ++i)  // the other lanes untouched by the edge
        if (i != lane)
          CHECK(std::abs(got[i] - std::exp(double(row[i]))) <= 4 * u * std::exp(double(row[i])));
    }
  }
}

TEST_CASE("xsimd: select and comparisons pick per lane", "[core][xsimd]") {
  const auto x = distinct_lanes(2, 6);
  std::vector<float> signed_x(x.begin(), x.begin() + W);
  for (int i = 0; i < W; ++i)
    if ((i * 7) % 3 != 0) signed_x[std::size_t(i)] = -signed_x[std::size_t(i)];  // mixed signs
  const B a = B::load_unaligned(signed_x.data()), other = B::load_unaligned(x.data() + W);
  const auto got = lanes_of(xsimd::select(a >= B(0.0f), a, other));
  for (int i = 0; i < W; ++i)
    REQUIRE(got[i] ==
            (signed_x[std::size_t(i)] >= 0 ? signed_x[std::size_t(i)] : x[std::size_t(W + i)]));
}

namespace {
struct Reverse {
  static constexpr unsigned get(unsigned lane, unsigned lanes) { return lanes - 1 - lane; }
};
struct SpreadLow {  // the pattern rope/apply.hpp uses
  static constexpr unsigned get(unsigned lane, unsigned) { return lane / 2; }
};
struct SpreadHigh {
  static constexpr unsigned get(unsigned lane, unsigned lanes) { return lanes / 2 + lane / 2; }
};

template <class Gen>
void check_swizzle(const std::vector<float>& x, const char* what) {
  const auto got = lanes_of(
      xsimd::swizzle(B::load_unaligned(x.data()), tformer::xsimd_compat::index_constant<B, Gen>()));
  for (unsigned i = 0; i < unsigned(W); ++i) {
    INFO(what << " lane " << i);
    REQUIRE(got[i] == x[Gen::get(i, unsigned(W))]);
  }
}
}  // namespace

TEST_CASE("xsimd: swizzles move lanes where their pattern says", "[core][xsimd]") {
  const auto x = distinct_lanes(1, 7);
  check_swizzle<Reverse>(x, "reverse");
  check_swizzle<SpreadLow>(x, "spread low");
  check_swizzle<SpreadHigh>(x, "spread high");
  const auto swapped =
      lanes_of(tformer::xsimd_compat::swap_adjacent_pairs(B::load_unaligned(x.data())));
  for (int i = 0; i < W; ++i) REQUIRE(swapped[i] == x[std::size_t(i ^ 1)]);
}

#else

TEST_CASE("xsimd: no SIMD primitives in the scalar build", "[core][xsimd]") {
  WARN("scalar build: the xsimd conformance tests run in the SIMD builds");
}

#endif
