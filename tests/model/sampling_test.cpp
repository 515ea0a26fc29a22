// The samplers against the plain double reference (tests/reference/sampling_reference.hpp) on
// random vocabularies, logits and settings; the vector kernels against plain loops on lanes that
// all differ; the distributions by frequency.
//
// Tolerances: the library computes exp in float (xsimd ≤ 1.5 ulp, blocks of 256 summed in float,
// 1e-6 relative at worst on the totals) and applies bias and penalties in float; a sampled token
// may differ from the reference's only where the reference's decision was within 1e-5 (relative)
// of going the other way, which the random cases reach rarely (at most 1% of them is allowed).
// Log-probabilities: within 1e-5·(1 + |logprob|).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "reference/sampling_reference.hpp"
#include "support/random.hpp"
#include "tformer/model/sampling.hpp"

using tformer::LogitBias;
using tformer::Rng;
using tformer::Sampler;
using tformer::SamplerKind;
using tformer::SamplerWorkspace;
using tformer::sample;
namespace kernels = tformer::sampling_kernels;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// A random sampler: any kind, any combination of truncations, sometimes penalties and biases.
Sampler random_sampler(test::Random& rng, tformer::index vocab, std::vector<LogitBias>& bias) {
  Sampler s;
  s.kind = static_cast<SamplerKind>(rng.integer(0, 3));
  s.temperature = float(rng.uniform(0.2, 2.0));
  if (s.kind == SamplerKind::TopK || rng.integer(0, 2) == 0)
    s.top_k = rng.integer(1, int(std::min<tformer::index>(vocab, 100)));
  if (s.kind == SamplerKind::TopP || rng.integer(0, 2) == 0) s.top_p = float(rng.uniform(0.05, 1.0));
  if (rng.integer(0, 2) == 0) s.min_p = float(rng.uniform(0.0, 0.3));
  if (rng.integer(0, 2) == 0) {
    s.repetition_penalty = float(rng.uniform(0.7, 1.5));
    s.frequency_penalty = float(rng.uniform(-0.5, 1.0));
    s.presence_penalty = float(rng.uniform(-0.5, 1.0));
    s.penalty_window = rng.integer(0, 20);
  }
  bias.clear();
  if (rng.integer(0, 2) == 0)
    for (int i = rng.integer(1, 4); i-- > 0;)
      bias.push_back({rng.integer(0, int(vocab) - 1),
                      rng.integer(0, 4) == 0 ? -kInf : float(rng.uniform(-5, 5))});
  s.logit_bias = bias;
  return s;
}

// Logits of one of three shapes: Gaussian of a random spread, peaked (a few far above a Gaussian
// body, as a model's usually are), or coarse (integers: many ties); some masked.
std::vector<float> random_logits(test::Random& rng, std::size_t n) {
  std::vector<float> l = rng.normal_floats(n, float(rng.uniform(0.3, 4.0)));
  switch (rng.integer(0, 2)) {
    case 1:
      for (int i = rng.integer(1, 5); i-- > 0;) l[std::size_t(rng.integer(0, int(n) - 1))] += float(rng.uniform(5, 15));
      break;
    case 2:
      for (float& x : l) x = std::round(x);
      break;
    default:
      break;
  }
  if (rng.integer(0, 3) == 0)
    for (int i = rng.integer(1, 3); i-- > 0;) l[std::size_t(rng.integer(0, int(n) - 1))] = -kInf;
  return l;
}

}  // namespace

TEST_CASE("sampling: every sampler agrees with the double reference on random cases",
          "[sampling]") {
  int cases = 0, excused = 0;
  for (const int vocab : {1, 2, 7, 33, 300, 1000, 5000, 40000}) {
    SamplerWorkspace ws(vocab);
    for (int seed = 0; seed < (vocab >= 5000 ? 60 : 300); ++seed) {
      CAPTURE(vocab, seed);
      test::Random rng(std::uint64_t(vocab) * 1000 + std::uint64_t(seed));
      std::vector<LogitBias> bias;
      const Sampler s = random_sampler(rng, vocab, bias);
      const std::vector<float> logits = random_logits(rng, std::size_t(vocab));
      std::vector<std::int32_t> history(std::size_t(rng.integer(0, 30)));
      for (auto& t : history) t = rng.integer(0, vocab - 1);
      CAPTURE(int(s.kind), s.temperature, s.top_k, s.top_p, s.min_p, s.repetition_penalty,
              s.frequency_penalty, s.presence_penalty, s.penalty_window, bias.size());
      Rng draw(std::uint64_t(seed) + 5);
      Rng copy = draw;
      const double u = copy.uniform();
      const tformer::Sampled got = tformer::sample_with_logprob(logits, s, draw, ws, history);
      const ref::SampleResult want = ref::sample(logits, s, u, history);
      CAPTURE(got.token, want.token, want.margin, logits, u);
      ++cases;
      if (got.token != want.token) {
        REQUIRE(want.margin < 1e-5);
        ++excused;
      }
      // One uniform per non-greedy token, none for greedy.
      Rng expect = s.kind == SamplerKind::Greedy ? Rng(std::uint64_t(seed) + 5) : copy;
      CHECK(draw.next() == expect.next());
      const double lp = ref::logprob(logits, got.token);
      if (!std::isfinite(lp))  // the token masked (−inf), or all of them (NaN)
        CHECK(got.logprob == -kInf);
      else
        CHECK(std::abs(got.logprob - lp) <= 1e-5 * (1 + std::abs(lp)));
      CHECK(sample(logits, s, *std::make_unique<Rng>(std::uint64_t(seed) + 5), ws, history) == got.token);
    }
  }
  WARN("sampling: " << cases << " random cases, " << excused
                    << " tokens differing from the reference within 1e-5 of a decision boundary");
  CHECK(excused * 100 <= cases);
}

TEST_CASE("sampling: top-p over a flat vocabulary keeps the growing prefix it needs",
          "[sampling]") {
  // Equal logits: all of them are gathered at once; ties order by id, so top_p·n of the lowest
  // ids are kept.
  const int n = 50000;
  const std::vector<float> flat(n, 1.5f);
  SamplerWorkspace ws(n);
  for (const float p : {0.3f, 0.999f, 1.0f}) {
    Rng rng(11);
    for (int i = 0; i < 50; ++i) {
      Rng copy = rng;
      const std::int32_t t = sample(flat, Sampler::with_top_p(p), rng, ws);
      CHECK(t == ref::sample(flat, Sampler::with_top_p(p), copy.uniform()).token);
      CHECK(t < std::int32_t(std::ceil(p * n)) + 1);
    }
  }
  // Two tokens above a crowd just below the first threshold (−9·T). At top_p 0.5 the prefix
  // needs the crowd, so the threshold goes down. With top_p 1 % below the first token's share or
  // 0.1 % above it, the cut lies inside the slack of the gathering pass's bounds on the crowd's
  // mass (−0.5 %, +5.9 % here): the exact mass decides, the first token alone or both.
  // The same at T = 1e-33 with logits 1e-33 times as large: there the chord's scale overflows
  // float, so the gathering pass cannot bound the crowd and the exact mass always decides.
  const double share = 1.0 / (2.0 + (n - 2) * std::exp(-10.0));
  for (const float scale : {1.0f, 1e-33f}) {
    std::vector<float> crowd(n, -10.0f * scale);
    crowd[777] = crowd[778] = 0.0f;
    for (const double p : {0.5, 0.99 * share, 1.001 * share}) {
      CAPTURE(scale, p);
      const Sampler s = Sampler::with_top_p(float(p), scale);
      Rng rng(5);
      int first = 0, second = 0;
      for (int i = 0; i < 120; ++i) {
        Rng copy = rng;
        const std::int32_t t = sample(crowd, s, rng, ws);
        const ref::SampleResult want = ref::sample(crowd, s, copy.uniform());
        CHECK((t == want.token || want.margin < 1e-5));
        first += t == 777;
        second += t == 778;
      }
      if (p < share) CHECK(first == 120);
      if (p > share && p < 0.49) CHECK((second > 30 && first + second == 120));  // ~60 expected
    }
  }
  // Top-k larger than the tokens near the top: the threshold goes down until k are in.
  std::vector<float> peaked(n, -30.0f);
  peaked[123] = 10.0f;
  SamplerWorkspace ws2(n);
  Rng rng(3);
  int far = 0;
  for (int i = 0; i < 2000; ++i) far += sample(peaked, Sampler::with_top_k(n, 100.0f), rng, ws2) != 123;
  CHECK(far > 1000);  // at T = 100 the 49,999 others hold ~1/(1 + e^0.4/5e4) of the mass
}

TEST_CASE("sampling: distributions follow the softmax, top-k and top-p keep what they should",
          "[sampling]") {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, -INFINITY, 1.0f};
  SamplerWorkspace ws(5);
  CHECK(sample(logits, Sampler::greedy(), *std::make_unique<Rng>(1), ws) == 2);
  // Temperature 1: frequencies within 4 standard deviations of softmax (−inf never drawn).
  const double z = 1 + 2 * std::exp(1.0) + std::exp(2.0);
  const std::vector<double> p = {1 / z, std::exp(1.0) / z, std::exp(2.0) / z, 0, std::exp(1.0) / z};
  Rng rng(3);
  for (const Sampler s : {Sampler::with_temperature(1), Sampler::with_top_p(1.0f),
                          Sampler::with_min_p(0.01f)}) {
    std::vector<int> count(5, 0);
    const int n = 20000;
    for (int i = 0; i < n; ++i) ++count[static_cast<std::size_t>(sample(logits, s, rng, ws))];
    for (std::size_t j = 0; j < 5; ++j)
      CHECK(std::abs(count[j] - n * p[j]) <= 4 * std::sqrt(n * p[j] * (1 - p[j])) + 1e-9);
  }
  // Top-2 keeps ids 2 and 1 (ties to the lower id); top-p 0.5 keeps only id 2 (p = 0.5 > …);
  // min_p 0.5 keeps id 2 alone (e^−1 < 0.5), 0.3 also ids 1 and 4.
  for (int i = 0; i < 200; ++i) {
    const auto t = sample(logits, Sampler::with_top_k(2), rng, ws);
    CHECK((t == 2 || t == 1));
    CHECK(sample(logits, Sampler::with_top_p(0.5f), rng, ws) == 2);
    CHECK(sample(logits, Sampler::with_min_p(0.5f), rng, ws) == 2);
    const auto m = sample(logits, Sampler::with_min_p(0.3f), rng, ws);
    CHECK((m == 2 || m == 1 || m == 4));
  }
  // NaN or +inf is non-finite data: every sampler reports it (never a valid token), and
  // choose() propagates it to every probability, as softmax does. Every token at −inf: id 0.
  const std::vector<float> masked = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
  for (const Sampler s : {Sampler::greedy(), Sampler::with_temperature(2), Sampler::with_top_k(3),
                          Sampler::with_top_p(0.5f), Sampler::with_min_p(0.1f)}) {
    for (const float bad : {std::nanf(""), -std::nanf(""), INFINITY}) {
      const std::vector<float> row = {0.0f, 1.0f, bad, 0.5f, 1.0f};
      CHECK_THROWS_WITH(sample(row, s, rng, ws),
                        Catch::Contains("logits[2]") && Catch::Contains("below +inf"));
    }
    CHECK(sample(masked, s, rng, ws) == 0);
  }
  for (const float bad : {std::nanf(""), -std::nanf(""), INFINITY}) {
    const std::vector<float> row = {0.0f, 1.0f, bad};
    const std::vector<std::int32_t> ids = {0, 2};
    std::vector<float> out(2), probs(2);
    tformer::choose(row, ids, out, probs);
    CHECK((std::isnan(probs[0]) && std::isnan(probs[1])));
  }
}

TEST_CASE("sampling: bias and penalties change the logits as defined", "[sampling]") {
  const std::vector<float> logits = {2.0f, 1.9f, -1.0f, 0.5f};
  SamplerWorkspace ws(4);
  Rng rng(1);
  // Bias: −inf bans the argmax; a positive bias lifts another token above it.
  const std::vector<LogitBias> ban = {{0, -INFINITY}}, lift = {{3, 1.6f}};
  Sampler s = Sampler::greedy();
  s.logit_bias = ban;
  CHECK(sample(logits, s, rng, ws) == 1);
  s.logit_bias = lift;
  CHECK(sample(logits, s, rng, ws) == 3);
  // Repetition 1.2: 2.0 → 1.667 below 1.9; a negative logit is multiplied (−1 → −1.2).
  const std::vector<std::int32_t> seen = {0, 0, 2};
  s = Sampler::greedy();
  s.repetition_penalty = 1.2f;
  CHECK(sample(logits, s, rng, ws, seen) == 1);
  CHECK(sample(logits, s, rng, ws) == 0);  // no history: no penalty
  // Frequency 0.06 per occurrence: 2.0 − 2·0.06 = 1.88 < 1.9; presence alone 0.06 is not enough.
  s = Sampler::greedy();
  s.frequency_penalty = 0.06f;
  CHECK(sample(logits, s, rng, ws, seen) == 1);
  s = Sampler::greedy();
  s.presence_penalty = 0.06f;
  CHECK(sample(logits, s, rng, ws, seen) == 0);
  // The window: only the last token (2) counts, so 0 keeps its lead.
  s.presence_penalty = 0.2f;
  s.penalty_window = 1;
  CHECK(sample(logits, s, rng, ws, seen) == 0);
  s.penalty_window = 2;
  CHECK(sample(logits, s, rng, ws, seen) == 1);
  // The counts are cleared after each call: the same call twice gives the same answer.
  CHECK(sample(logits, s, rng, ws, seen) == 1);
  // The logits themselves are not changed.
  CHECK(logits == std::vector<float>{2.0f, 1.9f, -1.0f, 0.5f});
}

TEST_CASE("sampling: a temperature below 1/FLT_MAX samples the argmax", "[sampling]") {
  const std::vector<float> logits = {0.5f, 3.0f, -1.0f, 2.999f};
  SamplerWorkspace ws(4);
  Rng rng(4);
  for (const float t : {1e-39f, 1e-45f, 1e-30f})
    for (Sampler s : {Sampler::with_temperature(t), Sampler::with_top_p(0.9f, t),
                      Sampler::with_min_p(0.5f, t), Sampler::with_top_k(3, t)}) {
      CAPTURE(t, int(s.kind));
      CHECK(sample(logits, s, rng, ws) == 1);
    }
}

TEST_CASE("sampling: log-probabilities are the model's, before bias and truncation",
          "[sampling]") {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, -INFINITY};
  SamplerWorkspace ws(4);
  Rng rng(2);
  Sampler s = Sampler::with_top_k(1, 0.1f);
  const std::vector<LogitBias> lift = {{0, 10.0f}};
  s.logit_bias = lift;
  const tformer::Sampled got = tformer::sample_with_logprob(logits, s, rng, ws);
  CHECK(got.token == 0);
  CHECK(got.logprob == Approx(ref::logprob(logits, 0)).epsilon(1e-6));
}

// gather_and_bound_rest's bounds are as tight as stated: the upper within the chord's slack of
// the lower (and 0.3 % of rounding), plus what the chord flushes (n·2^-126) and twice each block's
// sum slack, 2^-13 of its chords (at most 1.07 times every token's mass, `total`).
static double tight_enough(double rest_lo, double total, int n) {
  return kernels::chord_slack * 1.003 * rest_lo + n * 0x1p-126 + 3 * 0x1p-13 * total;
}

TEST_CASE("sampling: kernels agree with plain loops on lanes that all differ", "[sampling]") {
  // Every length up to five registers of 16 and a tail (past the kernels' four-register steps),
  // the extreme at every position; then lengths past the 256- and 512-value blocks (2200:
  // scan_blocks in one pass from its second block), at some positions.
  std::vector<int> lengths;
  for (int n = 1; n <= 5 * 16 + 5; ++n) lengths.push_back(n);
  for (const int n : {300, 600, 1100, 2200}) lengths.push_back(n);
  for (const int n : lengths) {
    std::vector<float> x(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) x[std::size_t(i)] = float((i * 7919) % 101) - 60.0f;  // all differ in a register
    for (int at = 0; at<n; at += n> 85 ? 37 : 1) {
      CAPTURE(n, at);
      std::vector<float> y = x;
      y[std::size_t(at)] = 50.0f;
      const auto scan = kernels::max_scan(y.data(), n);
      CHECK(scan.max == 50.0f);
      CHECK_FALSE(scan.bad);
      CHECK(kernels::find_first(y.data(), n, 50.0f) == at);
      for (const float bad : {std::nanf(""), -std::nanf(""), INFINITY}) {
        std::vector<float> z = y;
        z[std::size_t(at)] = bad;
        CHECK(kernels::max_scan(z.data(), n).bad);
      }
      if (n > 16) {  // +inf after −inf in the same lane (a sum of the two is NaN, still bad)
        std::vector<float> z = y;
        z[std::size_t(at)] = -INFINITY;
        z[std::size_t((at + 16) % n)] = INFINITY;
        CHECK(kernels::max_scan(z.data(), n).bad);
      }
      std::vector<std::int32_t> got(std::size_t(n) + 1), want;
      const float threshold = y[std::size_t((at * 13) % n)];
      for (int i = 0; i < n; ++i)
        if (y[std::size_t(i)] >= threshold) want.push_back(i);
      got.resize(std::size_t(kernels::gather_at_least(y.data(), n, threshold, got.data())));
      CHECK(got == want);
      // scan_blocks: the max, each block's max and chord sum against its reference; then
      // gather_and_bound_rest: the same tokens, and bounds on the others' mass in double (at
      // inv_t 3 part of it lies below 2^-126, where the chord is 0).
      for (const float inv_t : {0.5f, 3.0f}) {
        CAPTURE(inv_t);
        const float k = kernels::chord_scale(inv_t);
        std::vector<kernels::BlockMass> blocks(
            std::size_t((n + kernels::mass_block - 1) / kernels::mass_block));
        const auto s = kernels::scan_blocks(y.data(), n, inv_t, blocks.data());
        CHECK(s.max == 50.0f);
        CHECK_FALSE(s.bad);
        // the largest value before the block, and before the block before it
        float before = -INFINITY, before2 = -INFINITY;
        for (std::size_t b = 0; b < blocks.size(); ++b) {
          const int b0 = int(b) * int(kernels::mass_block),
                    b1 = std::min(n, b0 + int(kernels::mass_block));
          float top = -INFINITY;
          double chords = 0;
          for (int i = b0; i < b1; ++i) {
            top = std::max(top, y[std::size_t(i)]);
            chords += kernels::chord_against(y[std::size_t(i)], blocks[b].ref, k);
          }
          CHECK(blocks[b].top == top);
          // two blocks back (one back while there is none); its own when there is none, or when
          // the block is 2^60 times as probable (0 when its own is −inf)
          const float other = before2 > -INFINITY ? before2 : before;
          const float ref = other > -INFINITY && (top - other) * k < kernels::detail::chord_headroom
                                ? other
                            : top > -INFINITY ? top
                                              : 0.0f;
          CHECK(blocks[b].ref == ref);
          CHECK(blocks[b].ref <= s.max);
          // a float sum of positive terms: within (len − 1)·2^-24 of the sum, relatively
          CHECK(std::abs(blocks[b].sum - chords) <= (b1 - b0) * 0x1p-24 * chords);
          before2 = before;
          before = std::max(before, top);
        }
        got.assign(std::size_t(n) + 1, -1);
        const kernels::Gathered g = kernels::gather_and_bound_rest(
            y.data(), n, threshold, s.max, inv_t, blocks.data(), got.data());
        got.resize(std::size_t(g.count));
        CHECK(got == want);
        double rest = 0, total = 0;
        for (int i = 0; i < n; ++i) {
          const double w = std::exp((double(y[std::size_t(i)]) - 50.0) * inv_t);
          total += w;
          if (y[std::size_t(i)] < threshold) rest += w;
        }
        CHECK(g.rest_lo <= rest);
        CHECK(rest <= g.rest_hi);
        CHECK(g.rest_hi <= tight_enough(g.rest_lo, total, n));
        for (const float bad : {std::nanf(""), -std::nanf(""), INFINITY}) {
          std::vector<float> z = y;
          z[std::size_t(at)] = bad;
          CHECK(kernels::scan_blocks(z.data(), n, inv_t, blocks.data()).bad);
        }
      }
    }
    // exp_sum: the sum, the values and the block sums, against double.
    std::vector<float> e(static_cast<std::size_t>(n));
    std::vector<double> blocks(std::size_t((n + kernels::block - 1) / kernels::block));
    const double total = kernels::exp_sum(x.data(), n, 41.0f, 0.5f, e.data(), blocks.data());
    double want = 0;
    for (int i = 0; i < n; ++i) {
      const double v = std::exp((double(x[std::size_t(i)]) - 41.0) * 0.5);
      CHECK(std::abs(e[std::size_t(i)] - v) <= 1e-6 * v);
      want += v;
    }
    CHECK(std::abs(total - want) <= 1e-6 * want);
    double sum_of_blocks = 0;  // in the same order as the kernel's
    for (const double b : blocks) sum_of_blocks += b;
    CHECK(sum_of_blocks == total);
    // exp_sum over the values below a threshold only.
    const float below = x[std::size_t(n / 2)];
    double want_below = 0;
    for (int i = 0; i < n; ++i)
      if (x[std::size_t(i)] < below)
        want_below += std::exp((double(x[std::size_t(i)]) - 41.0) * 0.5);
    CHECK(std::abs(kernels::exp_sum(x.data(), n, 41.0f, 0.5f, nullptr, nullptr, below) -
                   want_below) <= 1e-6 * want_below);
  }
  // The chord of 2^y lies on or above exp and within chord_slack of it, up to 3e-5 of rounding,
  // over the whole range where exp is a normal float and at the boundaries between powers of 2.
  for (const float inv_t : {0.25f, 1.0f, 1.7f}) {
    const float k = kernels::chord_scale(inv_t);
    for (double d = 0; d * inv_t >= -87; d -= 0.0137) {
      CAPTURE(inv_t, d);
      const double e = std::exp(d * inv_t), chord = kernels::chord_exp(float(d), k);
      CHECK(chord >= e * (1 - 3e-5));
      CHECK(chord <= e * kernels::chord_slack * (1 + 3e-5));
    }
    CHECK(kernels::chord_exp(-INFINITY, k) == 0.0f);
  }
}

TEST_CASE("sampling: the block scan's references: far below, all -inf, far from 0", "[sampling]") {
  // Block 0 far below the rest (blocks 2 and 3, whose references would be block 0's largest, are
  // then 2^60 times as probable: their own), block 1 all −inf (no mass, and no NaN from
  // −inf − −inf), then values near 50 in block 2 and near 55 after (block 4 against block 2's
  // largest, in one pass, not block 3's; the shorter last block against block 3's); and the same
  // shifted by 1e4, where |ref|·k passes 2^32 and the chords are not folded.
  for (const float shift : {0.0f, 1e4f}) {
    for (const float inv_t : {0.5f, 3.0f}) {
      CAPTURE(shift, inv_t);
      const int n = 5 * int(kernels::mass_block) + 77;
      std::vector<float> x(static_cast<std::size_t>(n));
      for (int i = 0; i < n; ++i)
        x[std::size_t(i)] = i < int(kernels::mass_block)       ? -200.0f + float(i % 13)
                            : i < 2 * int(kernels::mass_block) ? -INFINITY
                            : i < 3 * int(kernels::mass_block) ? 50.0f - float((i * 7919) % 31) / 4
                                                               : 55.0f - float((i * 7919) % 31) / 4;
      for (float& v : x) v += shift;
      const float k = kernels::chord_scale(inv_t);
      std::vector<kernels::BlockMass> blocks(6);
      const auto s = kernels::scan_blocks(x.data(), n, inv_t, blocks.data());
      CHECK_FALSE(s.bad);
      CHECK(s.max == 55.0f + shift);
      CHECK(blocks[0].ref == blocks[0].top);
      CHECK(blocks[1].top == -INFINITY);
      CHECK(blocks[1].sum == 0.0f);
      CHECK(blocks[2].ref == blocks[2].top);  // 250/T above block 0: past the headroom
      CHECK(blocks[3].ref == blocks[3].top);  // likewise (two blocks back: block 0's largest)
      CHECK(blocks[2].top == 50.0f + shift);
      CHECK(blocks[3].top == 55.0f + shift);
      CHECK(blocks[4].ref == blocks[2].top);
      CHECK(blocks[5].ref == blocks[3].top);
      CHECK(kernels::chord_folds(blocks[4].ref, k) == (shift == 0.0f));
      for (std::size_t b = 2; b < blocks.size(); ++b) {  // the chords' sums, against double
        CAPTURE(b);
        const int b0 = int(b) * int(kernels::mass_block),
                  b1 = std::min(n, b0 + int(kernels::mass_block));
        double chords = 0;
        for (int i = b0; i < b1; ++i)
          chords += kernels::chord_against(x[std::size_t(i)], blocks[b].ref, k);
        CHECK(std::abs(blocks[b].sum - chords) <= (b1 - b0) * 0x1p-24 * chords);
      }
      for (const float threshold : {55.0f + shift - 2.0f, -150.0f + shift}) {
        std::vector<std::int32_t> got(std::size_t(n) + 1);
        const kernels::Gathered g = kernels::gather_and_bound_rest(
            x.data(), n, threshold, s.max, inv_t, blocks.data(), got.data());
        double rest = 0, total = 0;
        std::int64_t count = 0;
        for (int i = 0; i < n; ++i) {
          const double w = std::exp((double(x[std::size_t(i)]) - s.max) * inv_t);
          total += w;
          if (x[std::size_t(i)] >= threshold)
            CHECK(got[std::size_t(count++)] == i);
          else
            rest += w;
        }
        CHECK(g.count == count);
        CHECK(g.rest_lo <= rest);
        CHECK(rest <= g.rest_hi);
        CHECK(g.rest_hi <= tight_enough(g.rest_lo, total, n));
      }
    }
  }
}

TEST_CASE("sampling: the gathering's bounds over runs of blocks that share a reference",
          "[sampling]") {
  // A model-shaped body (σ = 2) over 10 blocks and a tail, the largest logits in block 0 and
  // block 5: blocks 2 to 6 share block 0's largest as their reference and 7 on block 5's, so the
  // gathering adds runs of several blocks it gathers nothing from, closed where the reference
  // changes; the bounds hold the mass left out, and the same tokens are gathered as by a loop.
  std::mt19937_64 rng(7);
  std::normal_distribution<float> body(0.0f, 2.0f);
  const int n = 10 * int(kernels::mass_block) + 33;
  std::vector<float> x(static_cast<std::size_t>(n));
  for (float& v : x) v = body(rng);
  x[100] = 12.0f;
  x[std::size_t(5 * kernels::mass_block + 7)] = 14.0f;
  for (const float inv_t : {1.25f, 0.5f}) {
    CAPTURE(inv_t);
    std::vector<kernels::BlockMass> blocks(11);
    const auto s = kernels::scan_blocks(x.data(), n, inv_t, blocks.data());
    REQUIRE_FALSE(s.bad);
    CHECK(s.max == 14.0f);
    for (std::size_t b = 2; b <= 6; ++b) CHECK(blocks[b].ref == 12.0f);
    for (std::size_t b = 7; b <= 10; ++b) CHECK(blocks[b].ref == 14.0f);
    for (const float below : {9.0f, 4.0f}) {  // (l − m)·inv_t >= −tau: top-p's first thresholds
      const float threshold = s.max - below / inv_t;
      CAPTURE(threshold);
      std::vector<std::int32_t> got(std::size_t(n) + 1), want;
      const kernels::Gathered g = kernels::gather_and_bound_rest(x.data(), n, threshold, s.max,
                                                                 inv_t, blocks.data(), got.data());
      got.resize(std::size_t(g.count));
      double rest = 0, total = 0;
      for (int i = 0; i < n; ++i) {
        const double w = std::exp((double(x[std::size_t(i)]) - s.max) * inv_t);
        total += w;
        if (x[std::size_t(i)] >= threshold)
          want.push_back(i);
        else
          rest += w;
      }
      CHECK(got == want);
      CHECK(g.rest_lo <= rest);
      CHECK(rest <= g.rest_hi);
      CHECK(g.rest_hi <= tight_enough(g.rest_lo, total, n));
    }
  }
}

TEST_CASE("sampling: top-p's prefix is the most probable tokens' shortest reaching the target",
          "[sampling]") {
  // top_p_prefix (histogram rounds, ties by id, −inf tokens) against a stable sort and a walk,
  // on candidate sets of every size class: spread logits, integer logits (ties across parts),
  // all equal, some −inf, a dense cluster a few ulps wide (rounds after the first with a span),
  // and the top over zeros and −infs (a round whose finite logits are equal: scale 0).
  using tformer::sampling_detail;
  using Candidate = tformer::sampling_kernels::Candidate;
  std::vector<double> mass(tformer::sampling_kernels::prefix_buckets);
  std::vector<std::int32_t> count(tformer::sampling_kernels::prefix_buckets);
  test::Random rng(77);
  for (int round = 0; round < 300; ++round) {
    const int c = rng.integer(1, round < 200 ? 300 : 20000);
    const int shape = rng.integer(0, 5);
    std::vector<Candidate> cand(static_cast<std::size_t>(c));
    for (int j = 0; j < c; ++j) {
      float l = float(rng.uniform(-8, 8));
      if (shape == 1) l = std::round(l);
      if (shape == 2) l = 1.25f;
      if (shape == 3 && rng.integer(0, 9) == 0) l = -kInf;
      if (shape == 4) l = 1.0f + float(rng.integer(0, 300)) * 0x1p-23f;
      if (shape == 5) l = rng.integer(0, 1) ? 0.0f : -kInf;
      cand[std::size_t(j)] = {std::int32_t(c - 1 - j), l, 0.0};
    }
    cand[0].logit = 8.0f;  // a finite maximum
    for (Candidate& x : cand) x.weight = std::exp(double(x.logit) - 8.0);
    double total = 0;
    for (const Candidate& x : cand) total += x.weight;
    const double target = total * rng.uniform(0.0, 1.05);
    CAPTURE(round, c, shape, target, total);
    std::vector<Candidate> sorted = cand;
    std::stable_sort(sorted.begin(), sorted.end(), [](const Candidate& a, const Candidate& b) {
      return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
    });
    tformer::index want = c;
    double acc = 0;
    for (int j = 0; j < c; ++j) {
      acc += sorted[std::size_t(j)].weight;
      if (acc >= target) {
        want = j + 1;
        break;
      }
    }
    // Where the reference's running mass is within 1e-12 of the target, sums in another order
    // may round the other way.
    double before = 0;
    for (tformer::index j = 0; j + 1 < want; ++j) before += sorted[std::size_t(j)].weight;
    if (std::abs(before - target) < 1e-12 * total || std::abs(acc - target) < 1e-12 * total) continue;
    const auto got = sampling_detail::top_p_prefix(cand.data(), c, target, mass.data(), count.data());
    REQUIRE(got.count == want);
    std::vector<std::int32_t> got_ids, want_ids;
    for (tformer::index j = 0; j < want; ++j) {
      got_ids.push_back(cand[std::size_t(j)].id);
      want_ids.push_back(sorted[std::size_t(j)].id);
    }
    std::sort(got_ids.begin(), got_ids.end());
    std::sort(want_ids.begin(), want_ids.end());
    CHECK(got_ids == want_ids);
    std::vector<std::int32_t> all;  // still a permutation of the candidates
    for (const Candidate& x : cand) all.push_back(x.id);
    std::sort(all.begin(), all.end());
    std::vector<std::int32_t> ids(std::size_t(c), 0);
    std::iota(ids.begin(), ids.end(), 0);
    CHECK(all == ids);
    double got_mass = 0;
    for (tformer::index j = 0; j < want; ++j) got_mass += cand[std::size_t(j)].weight;
    CHECK(std::abs(got.mass - got_mass) <= 1e-12 * total);
  }
}

TEST_CASE("sampling: bad settings raise tformer::Error naming them", "[sampling][errors]") {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, 0.5f, 1.0f};
  SamplerWorkspace ws(5);
  Rng rng(1);
  const auto error = [&](Sampler s, std::span<const std::int32_t> history = {}) {
    try {
      (void)sample(logits, s, rng, ws, history);
    } catch (const tformer::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  using Catch::Contains;
  CHECK_THAT(error(Sampler::with_top_k(6)), Contains("top_k"));
  CHECK_THAT(error(Sampler::with_temperature(0)), Contains("temperature"));
  CHECK_THAT(error(Sampler::with_top_p(1.5f)), Contains("top_p"));
  CHECK_THAT(error(Sampler::with_min_p(-0.1f)), Contains("min_p"));
  CHECK_THAT(error(Sampler::with_min_p(1.5f)), Contains("min_p"));
  Sampler s = Sampler::greedy();
  s.repetition_penalty = 0;
  CHECK_THAT(error(s), Contains("repetition_penalty"));
  s = Sampler::greedy();
  s.frequency_penalty = std::nanf("");
  CHECK_THAT(error(s), Contains("frequency_penalty"));
  s = Sampler::greedy();
  s.presence_penalty = INFINITY;
  CHECK_THAT(error(s), Contains("presence_penalty"));
  s = Sampler::greedy();
  s.penalty_window = -1;
  CHECK_THAT(error(s), Contains("penalty_window"));
  const std::vector<LogitBias> out_of_range = {{5, 1.0f}}, plus_inf = {{1, INFINITY}};
  s = Sampler::greedy();
  s.logit_bias = out_of_range;
  CHECK_THAT(error(s), Contains("logit_bias token"));
  s.logit_bias = plus_inf;
  CHECK_THAT(error(s), Contains("logit_bias bias"));
  const std::vector<std::int32_t> bad_history = {1, 7};
  CHECK_THAT(error(Sampler::greedy(), bad_history), Contains("history token"));
  // Finite logits pushed to +inf by a bias are reported too.
  const std::vector<float> huge = {3e38f, 0.0f};
  SamplerWorkspace ws2(2);
  const std::vector<LogitBias> push = {{0, 3e38f}};
  s = Sampler::greedy();
  s.logit_bias = push;
  CHECK_THROWS_WITH(sample(huge, s, rng, ws2), Contains("after logit_bias"));
}
