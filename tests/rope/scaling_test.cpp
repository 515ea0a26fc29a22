// Every frequency scaling's inv_freq and attention factor against its formula evaluated in
// double (tests/reference/rope_reference.hpp). Both sides are double, so the tolerance is a
// relative 1e-12: room for a different order of the same operations, nothing more.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "reference/rope_reference.hpp"
#include "support/random.hpp"
#include "tformer/rope/scaling.hpp"

namespace rs = tformer::rope_scaling;
using Catch::Matchers::Contains;

namespace {

void require_close(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("i = " << i);
    REQUIRE(got[i] == Approx(want[i]).epsilon(1e-12));
  }
}

tformer::RopeFrequencies freqs(const tformer::RopeScaling& s, int d, double base,
                               int max_positions = 4096, int seq_len = 0) {
  return tformer::compute_rope_frequencies(s, d, base, max_positions, seq_len);
}

}  // namespace

TEST_CASE("rope/scaling: default and linear", "[rope][scaling]") {
  const auto seed = GENERATE(range(1, 11));
  CAPTURE(seed);
  test::Random rng(seed);
  const int d = rng.even(4, 256);
  const double base = rng.uniform(1e3, 1e7), s = rng.uniform(1.0, 16.0);
  auto none = freqs(rs::None{}, d, base);
  require_close(none.inv_freq, ref::default_inv_freq(d, base));
  CHECK(none.attention_factor == 1.0);
  auto linear = freqs(rs::Linear{s}, d, base);
  require_close(linear.inv_freq, ref::linear_inv_freq(d, base, s));
  CHECK(linear.attention_factor == 1.0);
}

TEST_CASE("rope/scaling: the worked example's frequencies", "[rope][scaling]") {
  // head_dim 4, base 10000: inv_freq = [1, 0.01] (shared/reference/README.md).
  auto f = freqs(rs::None{}, 4, 10000.0);
  CHECK(f.inv_freq[0] == 1.0);
  CHECK(f.inv_freq[1] == Approx(0.01).epsilon(1e-15));
}

TEST_CASE("rope/scaling: dynamic NTK grows the base past the original length", "[rope][scaling]") {
  const int d = 128;
  const double base = 10000.0;
  const rs::DynamicNtk ntk{.factor = 2.0, .original_max_positions = 2048};
  // Within the original length nothing changes.
  require_close(freqs(ntk, d, base, 8192, 100).inv_freq, ref::default_inv_freq(d, base));
  require_close(freqs(ntk, d, base, 8192, 2048).inv_freq, ref::default_inv_freq(d, base));
  // At twice the original length with factor 2, the base becomes b · 3^(d/(d-2)).
  require_close(freqs(ntk, d, base, 8192, 4096).inv_freq,
                ref::default_inv_freq(d, base * std::pow(3.0, 128.0 / 126.0)));
  for (int len : {2049, 3000, 8191})
    require_close(freqs(ntk, d, base, 8192, len).inv_freq,
                  ref::dynamic_ntk_inv_freq(d, base, 2.0, 2048, len));
}

TEST_CASE("rope/scaling: YaRN", "[rope][scaling]") {
  const auto seed = GENERATE(range(1, 11));
  CAPTURE(seed);
  test::Random rng(seed);
  const int d = rng.even(8, 256);
  const double base = rng.uniform(1e4, 1e6), s = rng.uniform(1.5, 40.0);
  const int l0 = rng.integer(512, 32768);
  const bool truncate = seed % 3 != 0;
  rs::Yarn yarn{.factor = s, .original_max_positions = l0, .truncate = truncate};
  auto f = freqs(yarn, d, base);
  require_close(f.inv_freq, ref::yarn_inv_freq(d, base, s, l0, 32, 1, truncate));
  CHECK(f.attention_factor == Approx(ref::yarn_default_attention_factor(s)).epsilon(1e-12));

  yarn.attention_factor = 1.25;
  CHECK(freqs(yarn, d, base).attention_factor == 1.25);
}

TEST_CASE("rope/scaling: YaRN with a correction range of one dimension", "[rope][scaling]") {
  // beta_fast = beta_slow makes low == high; the ramp then spans 0.001 dimensions.
  rs::Yarn yarn{.factor = 8.0, .original_max_positions = 4096, .beta_fast = 4, .beta_slow = 4};
  require_close(freqs(yarn, 64, 1e4).inv_freq, ref::yarn_inv_freq(64, 1e4, 8.0, 4096, 4, 4));
  yarn.beta_fast = 64;  // non-default betas
  yarn.beta_slow = 2;
  require_close(freqs(yarn, 64, 1e4).inv_freq, ref::yarn_inv_freq(64, 1e4, 8.0, 4096, 64, 2));
}

TEST_CASE("rope/scaling: YaRN attention factor and frequency bands", "[rope][scaling]") {
  // Qwen2.5 / DeepSeek style: factor 4, original 32768, d 128, base 1e6.
  rs::Yarn yarn{.factor = 4.0, .original_max_positions = 32768};
  auto f = freqs(yarn, 128, 1e6);
  CHECK(f.attention_factor == Approx(1.0 + 0.1 * std::log(4.0)).epsilon(1e-15));  // 1.13863
  const auto plain = ref::default_inv_freq(128, 1e6);
  CHECK(f.inv_freq.front() == plain.front());            // fastest: extrapolated (unchanged)
  CHECK(f.inv_freq.back() == Approx(plain.back() / 4));  // slowest: interpolated
  // DeepSeek-V3: mscale = mscale_all_dim = 1 gives an attention factor of exactly 1.
  yarn.mscale = 1.0;
  yarn.mscale_all_dim = 1.0;
  CHECK(freqs(yarn, 128, 1e6).attention_factor == 1.0);
  // Hugging Face tests `mscale and mscale_all_dim` for truthiness: a zero falls back to
  // the default 0.1·ln(s) + 1.
  yarn.mscale_all_dim = 0.0;
  CHECK(freqs(yarn, 128, 1e6).attention_factor == Approx(1.0 + 0.1 * std::log(4.0)));
  yarn.mscale = 0.707;  // DeepSeek-V2: mscale = mscale_all_dim = 0.707 gives exactly 1
  yarn.mscale_all_dim = 0.707;
  CHECK(freqs(yarn, 128, 1e6).attention_factor == Approx(1.0).epsilon(1e-15));
  yarn.mscale_all_dim.reset();
  CHECK(freqs(yarn, 128, 1e6).attention_factor == Approx(1.0 + 0.1 * std::log(4.0)));
}

TEST_CASE("rope/scaling: LongRoPE", "[rope][scaling]") {
  const int d = 96;  // Phi-3-mini: head_dim 96
  test::Random rng(23);
  std::vector<double> short_f(d / 2), long_f(d / 2);
  for (auto& e : short_f) e = rng.uniform(1.0, 3.0);
  for (auto& e : long_f) e = rng.uniform(1.0, 60.0);
  rs::LongRope lr{.short_factor = short_f, .long_factor = long_f, .original_max_positions = 4096};
  // A table of 131072 positions: s = 131072 / 4096 = 32, a = sqrt(1 + ln 32 / ln 4096) for
  // short and long sequences alike; the factors switch on the sequence length, as in HF.
  const double a = std::sqrt(17.0 / 12.0);
  auto longer = freqs(lr, d, 10000.0, 131072, 5000);
  require_close(longer.inv_freq, ref::longrope_inv_freq(d, 10000.0, long_f));
  CHECK(longer.attention_factor == Approx(a).epsilon(1e-14));
  auto shorter = freqs(lr, d, 10000.0, 131072, 4096);
  require_close(shorter.inv_freq, ref::longrope_inv_freq(d, 10000.0, short_f));
  CHECK(shorter.attention_factor == Approx(a).epsilon(1e-14));
  // An explicit factor (the model's max_position_embeddings / L0) overrides the table size.
  lr.factor = 32.0;
  CHECK(freqs(lr, d, 10000.0, 8192, 100).attention_factor == Approx(a).epsilon(1e-14));
  // No extension (s = 1): a = 1.
  lr.factor.reset();
  CHECK(freqs(lr, d, 10000.0, 4096, 100).attention_factor == 1.0);
  lr.short_factor.pop_back();
  CHECK_THROWS_WITH(freqs(lr, d, 10000.0, 4096),
                    Contains("short_factor size") && Contains("expected 48, got 47"));
}

TEST_CASE("rope/scaling: Llama 3 with other parameters", "[rope][scaling]") {
  const auto seed = GENERATE(range(1, 9));
  CAPTURE(seed);
  test::Random rng(seed);
  const double s = rng.uniform(2, 32), lo = rng.uniform(0.5, 2), hi = lo + rng.uniform(0.5, 8);
  const int l0 = rng.integer(1024, 65536), d = rng.even(16, 256);
  const double base = rng.uniform(1e4, 1e6);
  auto f = freqs(
      rs::Llama3{
          .factor = s, .low_freq_factor = lo, .high_freq_factor = hi, .original_max_positions = l0},
      d, base);
  require_close(f.inv_freq, ref::llama3_inv_freq(d, base, s, lo, hi, l0));
}

TEST_CASE("rope/scaling: Llama 3", "[rope][scaling]") {
  // Llama 3.1 8B: base 500000, d 128, factor 8, low 1, high 4, original 8192.
  const rs::Llama3 llama3{};
  auto f = freqs(llama3, 128, 500000.0);
  const auto plain = ref::default_inv_freq(128, 500000.0);
  require_close(f.inv_freq, ref::llama3_inv_freq(128, 500000.0, 8, 1, 4, 8192));
  CHECK(f.attention_factor == 1.0);
  int unchanged = 0, interpolated = 0, blended = 0;
  for (std::size_t i = 0; i < plain.size(); ++i) {
    const double wavelen = 2 * M_PI / plain[i];
    if (wavelen < 8192.0 / 4) {
      CHECK(f.inv_freq[i] == Approx(plain[i]).epsilon(1e-12));
      ++unchanged;
    } else if (wavelen > 8192.0) {
      CHECK(f.inv_freq[i] == Approx(plain[i] / 8).epsilon(1e-15));
      ++interpolated;
    } else {
      CHECK(f.inv_freq[i] < plain[i]);
      CHECK(f.inv_freq[i] > plain[i] / 8);
      ++blended;
    }
  }
  // All three bands occur for this configuration.
  CHECK(unchanged > 0);
  CHECK(interpolated > 0);
  CHECK(blended > 0);
}

TEST_CASE("rope/scaling: invalid parameters raise tformer::Error", "[rope][scaling][errors]") {
  CHECK_THROWS_WITH(freqs(rs::None{}, 7, 1e4), Contains("rotary_dim") && Contains("got 7"));
  CHECK_THROWS_WITH(freqs(rs::None{}, 8, 0.5), Contains("base") && Contains("got 0.5"));
  CHECK_THROWS_WITH(freqs(rs::Linear{0.0}, 8, 1e4), Contains("scaling factor"));
  CHECK_THROWS_WITH(freqs(rs::Yarn{.factor = 2.0}, 8, 1e4),
                    Contains("original_max_positions") && Contains("got 0"));
  CHECK_THROWS_WITH(freqs(rs::Llama3{.low_freq_factor = 4, .high_freq_factor = 1}, 8, 1e4),
                    Contains("low_freq_factor") && Contains("got 4.000000, 1.000000"));
  CHECK_THROWS_WITH(
      freqs(rs::Yarn{.factor = 2, .original_max_positions = 64, .beta_slow = -1}, 8, 1e4),
      Contains("beta_fast, beta_slow") && Contains("got 32.000000, -1.000000"));
  CHECK_THROWS_WITH(freqs(rs::DynamicNtk{.factor = 2, .original_max_positions = 8}, 2, 1e4),
                    Contains("rotary_dim") && Contains("> 2"));
}

TEST_CASE("rope/scaling: non-finite and degenerate parameters are rejected, naming them",
          "[rope][scaling][errors]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  using rs::Yarn;
  const Yarn yarn{.factor = 4, .original_max_positions = 64};
  auto with = [&](auto change) {
    Yarn y = yarn;
    change(y);
    return y;
  };
  for (const double a : {nan, inf, 0.0, -1.0}) {
    CAPTURE(a);
    CHECK_THROWS_WITH(freqs(with([&](Yarn& y) { y.attention_factor = a; }), 8, 1e4),
                      Contains("rope_scaling::Yarn: attention_factor"));
  }
  CHECK_THROWS_WITH(freqs(with([&](Yarn& y) { y.mscale = nan; y.mscale_all_dim = 1.0; }), 8, 1e4),
                    Contains("mscale"));
  CHECK_THROWS_WITH(freqs(with([&](Yarn& y) { y.mscale = 1.0; y.mscale_all_dim = inf; }), 8, 1e4),
                    Contains("mscale_all_dim"));
  // mscale(s, −20) = 0.1·(−20)·ln 4 + 1 < 0: the quotient would be a negative attention factor.
  CHECK_THROWS_WITH(freqs(with([&](Yarn& y) { y.mscale = -20.0; y.mscale_all_dim = 1.0; }), 8, 1e4),
                    Contains("attention factor"));
  CHECK_THROWS_WITH(freqs(with([&](Yarn& y) { y.beta_fast = inf; }), 8, 1e4),
                    Contains("beta_fast, beta_slow"));
  CHECK_THROWS_WITH(freqs(with([&](Yarn& y) { y.factor = nan; }), 8, 1e4),
                    Contains("scaling factor"));

  // LongRoPE: ln(L0) divides the default attention factor, so L0 = 1 would make it infinite.
  const rs::LongRope lr{.short_factor = {1, 1}, .long_factor = {2, 2}, .original_max_positions = 1};
  CHECK_THROWS_WITH(freqs(lr, 4, 1e4), Contains("original_max_positions") && Contains("got 1"));
  rs::LongRope given = lr;
  given.attention_factor = 1.2;  // an explicit factor needs no logarithm
  CHECK(freqs(given, 4, 1e4).attention_factor == 1.2);
  for (const double a : {nan, inf, 0.0}) {
    rs::LongRope bad = given;
    bad.attention_factor = a;
    CHECK_THROWS_WITH(freqs(bad, 4, 1e4), Contains("rope_scaling::LongRope: attention_factor"));
  }
  rs::LongRope nan_factor = given;
  nan_factor.factor = nan;
  CHECK_THROWS_WITH(freqs(nan_factor, 4, 1e4), Contains("scaling factor"));
  rs::LongRope nan_extension = given;
  nan_extension.short_factor[1] = nan;
  CHECK_THROWS_WITH(freqs(nan_extension, 4, 1e4), Contains("extension factor"));

  for (const double f : {nan, inf, 0.0, -2.0}) {
    CAPTURE(f);
    CHECK_THROWS_WITH(freqs(rs::Linear{f}, 8, 1e4), Contains("scaling factor"));
    CHECK_THROWS_WITH(freqs(rs::DynamicNtk{f, 64}, 8, 1e4, 4096, 128), Contains("scaling factor"));
    CHECK_THROWS_WITH(freqs(rs::Llama3{.factor = f}, 8, 1e4), Contains("scaling factor"));
  }
  // Dynamic NTK at a factor so large that s·L/L0 − (s − 1) rounds to 0: the base would be 0.
  CHECK_THROWS_WITH(freqs(rs::DynamicNtk{1e17, 64}, 8, 1e4, 4096, 64), Contains("base"));
  // A linear factor so small that the frequencies overflow.
  CHECK_THROWS_WITH(freqs(rs::Linear{1e-310}, 8, 1e4), Contains("inverse frequency"));
  CHECK_THROWS_WITH(freqs(rs::Llama3{.high_freq_factor = inf}, 8, 1e4),
                    Contains("low_freq_factor, high_freq_factor"));
  CHECK_THROWS_WITH(freqs(rs::Llama3{.low_freq_factor = nan}, 8, 1e4),
                    Contains("low_freq_factor, high_freq_factor"));
  CHECK_THROWS_WITH(freqs(rs::Llama3{.original_max_positions = -5}, 8, 1e4),
                    Contains("original_max_positions"));
  for (const double b : {nan, inf, -inf, 1.0, 0.0})
    CHECK_THROWS_WITH(freqs(rs::None{}, 8, b), Contains("base"));
  CHECK_THROWS_WITH(freqs(rs::None{}, 8, 1e4, 0, 0), Contains("max_positions"));
  CHECK_THROWS_WITH(freqs(rs::None{}, 8, 1e4, 16, -1), Contains("sequence_length"));
}
