// Choosing the next token from a row of logits, and scoring chosen tokens (classification).
//
// sample() runs these steps, each only when its setting is on:
//   1. logit_bias                 l[t] += bias (−inf bans t)                        OpenAI, HF
//   2. penalties over the history  repetition r: l → l/r if l > 0, else l·r        CTRL, HF
//                                  frequency f, presence q: l −= f·count + q·[count > 0]  OpenAI
//   3. Greedy: the largest logit (the lowest id among equal maxima); else, at temperature T,
//      p ∝ exp(l / T), then the truncations, in Hugging Face's order:
//   4. top_k > 0                   keep the k most probable
//   5. top_p < 1                   keep the shortest most-probable prefix whose mass reaches
//                                  top_p of what step 4 kept
//   6. min_p > 0                   keep tokens at least min_p times as probable as the first
//   7. one uniform draw from what is kept, renormalised, over the kept tokens in id order.
// Ties order by the lower id. Sampling draws exactly one uniform number per token from a Rng
// (SplitMix64 seeded by the caller), so a seed reproduces a run on every platform (up to draws
// within about 1e-6 of a boundary, where float rounding of one instruction set may differ).
//
// No step sorts the vocabulary: the truncations gather the tokens above a logit threshold with
// one vector pass, lowering it only when what is gathered cannot hold the kept set; only the
// gathered few are sorted. Steps 3 to 7 read exp() of the whole vocabulary only when their
// result depends on all of it: with no truncation, and for top_p without top_k only when the
// bounds on the ungathered tokens' mass, from the pass that finds the maximum (scan_blocks),
// cannot place the cut.
// Scratch lives in SamplerWorkspace: no allocation per token.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <type_traits>

#include "tformer/core/error.hpp"
#include "tformer/core/memory.hpp"
#include "tformer/core/simd.hpp"
#include "tformer/core/views.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

// SplitMix64: tiny, fast, and the same sequence everywhere.
class Rng {
 public:
  explicit constexpr Rng(std::uint64_t seed) noexcept : state_(seed) {}
  constexpr std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1), 53 bits.
  constexpr double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t state_;
};

// Greedy takes the argmax. The other kinds sample with every truncation that is set; each names
// the one its factory sets (and requires it: TopK a top_k >= 1, TopP a top_p in (0, 1]).
enum class SamplerKind { Greedy, Temperature, TopK, TopP };

// A bias added to one token's logit before anything else (−inf: never chosen).
struct LogitBias {
  std::int32_t token = 0;
  float bias = 0.0f;
};

struct Sampler {
  SamplerKind kind = SamplerKind::Greedy;
  float temperature = 1.0f;  // > 0 (not Greedy)
  index top_k = 0;           // in [0, vocab]; 0: off
  float top_p = 1.0f;        // in (0, 1]; 1: off
  float min_p = 0.0f;        // in [0, 1]; 0: off
  float repetition_penalty = 1.0f;  // > 0; 1: off (1.1–1.3 is usual)
  float frequency_penalty = 0.0f;   // finite; 0: off
  float presence_penalty = 0.0f;    // finite; 0: off
  index penalty_window = 0;         // the last tokens of the history penalised; 0: all of it
  std::span<const LogitBias> logit_bias = {};  // ids in [0, vocab), bias a number or −inf

  static constexpr Sampler greedy() noexcept { return {}; }
  static constexpr Sampler with_temperature(float t) noexcept {
    return {.kind = SamplerKind::Temperature, .temperature = t};
  }
  static constexpr Sampler with_top_k(index k, float t = 1.0f) noexcept {
    return {.kind = SamplerKind::TopK, .temperature = t, .top_k = k};
  }
  static constexpr Sampler with_top_p(float p, float t = 1.0f) noexcept {
    return {.kind = SamplerKind::TopP, .temperature = t, .top_p = p};
  }
  static constexpr Sampler with_min_p(float p, float t = 1.0f) noexcept {
    return {.kind = SamplerKind::Temperature, .temperature = t, .min_p = p};
  }

  bool penalises() const noexcept {
    return repetition_penalty != 1.0f || frequency_penalty != 0.0f || presence_penalty != 0.0f;
  }
};

// A sampled token and its log-probability under the model's own distribution:
// log softmax(logits)[token], at temperature 1, before bias, penalties and truncation (what
// perplexity and OpenAI-style logprobs report).
struct Sampled {
  std::int32_t token = 0;
  float logprob = 0.0f;
};

namespace sampling_kernels {

// exp_sum's unit: a float sum a block, the blocks' sums in double.
inline constexpr index block = 256;
// scan_blocks' unit (BlockMass), larger: each block ends in two horizontal reductions and a
// few scalar steps, about 20 cycles that the next block's work does not hide (Zen 5, AVX-512).
// Fewer blocks also shorten gather_and_bound_rest's loop over them.
inline constexpr index mass_block = 512;
// top_p_prefix's histogram: parts of the gathered logits' span.
inline constexpr index prefix_buckets = 1024;

// A token the truncations consider.
struct Candidate {
  std::int32_t id = 0;
  float logit = 0.0f;
  double weight = 0.0;  // exp((logit − max)/T)
};

struct MaxScan {
  float max;
  bool bad;  // true when a NaN or +inf is among the values (max is then meaningless), and
             // rarely without one (a sum overflowed): a cue to check exactly
};

#if TFORMER_HAS_SIMD
// Lanes where a or b is NaN: one compare on AVX, two elsewhere.
template <class B>
inline auto unordered(const B& a, const B& b) noexcept {
#if defined(__AVX__)
  if constexpr (B::size == 8)
    return xsimd::batch_bool<float, typename B::arch_type>(_mm256_cmp_ps(a, b, _CMP_UNORD_Q));
#endif
  return xsimd::isnan(a) | xsimd::isnan(b);
}
// Whether max_scan and the one-pass block see a NaN by unordered(): AVX (a +inf then shows in
// the largest value; the two-loop block_mass keeps a running sum).
// AVX-512 compares against +inf in mask registers (max_scan) or lets the chords' sum show both
// (chord_lanes); SSE and NEON keep a running sum of the values, one add a register.
template <class B>
inline constexpr bool pairs_show_nan = B::size == 8;
#endif

// The largest of x[0, n), n >= 1, and whether a value may be NaN or +inf.
inline MaxScan max_scan(const float* x, index n) noexcept {
  constexpr float inf = std::numeric_limits<float>::infinity();
  float m = -inf;
  bool bad = false;
  index i = 0;
#if TFORMER_HAS_SIMD
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  if (n >= W) {
    // Four maxima (one would wait on max's latency). A NaN or +inf shows in a compare where
    // AVX-512's mask registers make it cheap; on AVX a NaN in one unordered compare per two
    // registers and a +inf in the maximum; on SSE and NEON in a running sum, NaN or +inf (as
    // may a sum that overflows: `bad` then sends the caller to its exact check for nothing), one
    // add a register where a compare, a negation and an or cost three.
    constexpr bool masks = std::is_same_v<simd::arch, xsimd::avx512f>;
    constexpr bool pairs = !masks && pairs_show_nan<B>;
    B m0(-inf), m1(-inf), m2(-inf), m3(-inf), sum(0.0f);
    auto vbad = B(0.0f) != B(0.0f);  // all false
    const auto not_below_inf = [](const B& v) { return !(v < B(inf)); };  // NaN or +inf
    const index end = n / W * W;
    for (; i + 4 * W <= end; i += 4 * W) {
      const B v0 = B::load_unaligned(x + i), v1 = B::load_unaligned(x + i + W),
              v2 = B::load_unaligned(x + i + 2 * W), v3 = B::load_unaligned(x + i + 3 * W);
      if constexpr (masks)
        vbad = vbad |
               ((not_below_inf(v0) | not_below_inf(v1)) | (not_below_inf(v2) | not_below_inf(v3)));
      else if constexpr (pairs)
        vbad = vbad | (unordered(v0, v1) | unordered(v2, v3));
      else
        sum += (v0 + v1) + (v2 + v3);
      m0 = xsimd::max(m0, v0);
      m1 = xsimd::max(m1, v1);
      m2 = xsimd::max(m2, v2);
      m3 = xsimd::max(m3, v3);
    }
    for (; i < end; i += W) {
      const B v = B::load_unaligned(x + i);
      vbad = vbad | not_below_inf(v);
      m0 = xsimd::max(m0, v);
    }
    m = xsimd_compat::reduce_max(xsimd::max(xsimd::max(m0, m1), xsimd::max(m2, m3)));
    bad = xsimd::any(vbad | !(sum < B(inf))) || !(m < inf);
  }
#endif
  for (; i < n; ++i) {
    bad = bad || !(x[i] < inf);
    m = std::max(m, x[i]);
  }
  return {m, bad};
}

// The first i < n with x[i] == v. Precondition: there is one.
inline index find_first(const float* x, [[maybe_unused]] index n, float v) noexcept {
  index i = 0;
#if TFORMER_HAS_SIMD
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  for (const index end = n / W * W; i < end; i += W)
    if (xsimd::any(B::load_unaligned(x + i) == B(v))) break;
#endif
  while (x[i] != v) ++i;
  return i;
}

// Σ exp((x[i] − m)·inv_t) over i < n with x[i] < below: in float within blocks of `block`
// values, the block sums in double. Writes e[i] = exp(…) (every i) and blocks[b] = the sum of
// block b when they are not null. Precondition: x[i] <= m (each term in [0, 1]).
inline double exp_sum(const float* x, index n, float m, float inv_t, float* e, double* blocks,
                      float below = std::numeric_limits<float>::infinity()) noexcept {
  double total = 0.0;
  for (index b0 = 0; b0 < n; b0 += block) {
    const index b1 = std::min(n, b0 + block);
    float sum = 0.0f;
    index i = b0;
#if TFORMER_HAS_SIMD
    using B = simd::batch;
    constexpr index W = static_cast<index>(B::size);
    B vs(0.0f);
    for (const index end = b0 + (b1 - b0) / W * W; i < end; i += W) {
      const B xi = B::load_unaligned(x + i);
      const B v = xsimd::exp((xi - B(m)) * B(inv_t));
      if (e) v.store_unaligned(e + i);
      vs += xsimd::select(xi < B(below), v, B(0.0f));
    }
    alignas(64) float lanes[W];
    vs.store_aligned(lanes);
    for (index j = 0; j < W; ++j) sum += lanes[j];
#endif
    for (; i < b1; ++i) {
      const float v = std::exp((x[i] - m) * inv_t);
      if (e) e[i] = v;
      if (x[i] < below) sum += v;
    }
    if (blocks) blocks[b0 / block] = sum;
    total += sum;
  }
  return total;
}

// exp(d·inv_t) for y < 128, rounded up to the chord of 2^y between the powers of two around it
// (y = d·inv_t·log2 e): the float whose bits are (y + 127)·2^23, which is 2^⌊y⌋·(1 + frac y).
// `k` is inv_t·log2(e)·2^23 (chord_scale). At least exp(d·inv_t) and at most chord_slack times
// it (the largest (1 + f)/2^f, 1.06148 at f = 1/ln 2 − 1), up to 3e-5 of rounding, where exp
// is at least 2^-126; below that it falls short (0 from 2^-127 down, d = −inf included).
inline constexpr double chord_slack = 1.0615;
inline constexpr float chord_bias = 127.0f * 0x1p23f;  // the exponent's bias, in the bits' units
inline float chord_scale(float inv_t) noexcept {
  return inv_t * float(1.4426950408889634 * 0x1p23);
}
// The float whose bits are d·k + c (0 below 0), as the SIMD kernels compute it: one FMA where
// the target has one, else two roundings (both within the 3e-5).
inline float chord_bits(float d, float k, float c) noexcept {
#if defined(FP_FAST_FMAF)
  const float bits = std::fma(d, k, c);
#else
  const float bits = d * k + c;
#endif
  return std::bit_cast<float>(bits > 0.0f ? std::int32_t(bits) : std::int32_t(0));
}
inline float chord_exp(float d, float k) noexcept { return chord_bits(d, k, chord_bias); }
// chord_exp(x − ref, k), as x·k + (chord_bias − ref·k) (one FMA a value) when |ref|·k < 2^32:
// then the tokens it does not flush have |x|·k < 2^32 + 2^30, whose roundings move the bits by
// at most ~900 of their 2^23 a unit of y, 1.1e-4 of the chord. Otherwise as chord_exp.
inline bool chord_folds(float ref, float k) noexcept { return std::abs(ref) * k < 0x1p32f; }
inline float chord_against(float x, float ref, float k) noexcept {
  return chord_folds(ref, k) ? chord_bits(x, k, chord_bias - ref * k) : chord_exp(x - ref, k);
}

// Writes every i < n with x[i] >= threshold to out, in increasing order; returns how many.
inline index gather_at_least(const float* x, index n, float threshold, std::int32_t* out) noexcept {
  index c = 0, i = 0;
#if TFORMER_HAS_SIMD
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  // Four registers a test; when a value reaches the threshold, each register's test, and the
  // values of those that pass one by one.
  for (const index end = n / (4 * W) * (4 * W); i < end; i += 4 * W) {
    const B v0 = B::load_unaligned(x + i), v1 = B::load_unaligned(x + i + W),
            v2 = B::load_unaligned(x + i + 2 * W), v3 = B::load_unaligned(x + i + 3 * W);
    const B t(threshold);
    if (xsimd::all(((v0 < t) & (v1 < t)) & ((v2 < t) & (v3 < t)))) continue;
    for (index r = i; r < i + 4 * W; r += W) {
      if (xsimd::all(B::load_unaligned(x + r) < t)) continue;
      for (index j = r; j < r + W; ++j)
        if (x[j] >= threshold) out[c++] = std::int32_t(j);
    }
  }
#endif
  for (; i < n; ++i)
    if (x[i] >= threshold) out[c++] = std::int32_t(i);
  return c;
}

// One block of scan_blocks.
struct BlockMass {
  float top;  // the block's largest value (NaN skipped)
  float ref;  // what its chords are taken against (see block_mass)
  float sum;  // Σ chord_against(x, ref, chord_scale(inv_t)) over the block, in float
};

namespace detail {
#if TFORMER_HAS_SIMD
// chord_exp's bits, d·k + c, on a register. On AVX-512 a NaN or +inf in x makes the lane NaN (its
// unsigned conversion gives all ones), so that a block's sum shows one; elsewhere 0 or, where the
// conversion saturates (NEON), NaN: block_mass's sum of the raw values catches them there.
template <class B>
inline B chord_lanes(const B& d, const B& k, const B& c) noexcept {
  const B bits = xsimd_compat::fma(d, k, c);
#if defined(__AVX512F__)
  if constexpr (B::size == 16)  // max(0, NaN) is NaN (maxps returns its second operand)
    return _mm512_castsi512_ps(_mm512_cvttps_epu32(_mm512_max_ps(_mm512_setzero_ps(), bits)));
#endif
  using I = xsimd::batch<std::int32_t, typename B::arch_type>;
  return xsimd::bitwise_cast<B>(xsimd::max(xsimd::to_int(bits), I(0)));
}
#endif

// Σ chord_against(x, ref, k) over x[0, len), Folds = chord_folds(ref, k).
template <bool Folds>
[[gnu::always_inline]] inline float chord_sum(const float* x, index len, float ref,
                                              float k) noexcept {
  float sum = 0.0f;
  index i = 0;
#if TFORMER_HAS_SIMD
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  if (const index end = len / W * W; end > 0) {
    // x·k + (chord_bias − ref·k), or (x − ref)·k + chord_bias
    const B vk(k), vc(Folds ? chord_bias - ref * k : chord_bias), vr(ref);
    const auto chord = [&](index at) {
      const B v = B::load_unaligned(x + at);
      if constexpr (Folds)
        return chord_lanes(v, vk, vc);
      else
        return chord_lanes(v - vr, vk, vc);
    };
    B a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f);
    for (; i + 4 * W <= end; i += 4 * W) {
      a0 += chord(i);
      a1 += chord(i + W);
      a2 += chord(i + 2 * W);
      a3 += chord(i + 3 * W);
    }
    for (; i < end; i += W) a0 += chord(i);
    sum = xsimd_compat::reduce_add((a0 + a1) + (a2 + a3));
  }
#endif
  for (; i < len; ++i) sum += chord_against(x[i], ref, k);
  return sum;
}

[[gnu::always_inline]] inline float chord_sum(const float* x, index len, float ref,
                                              float k) noexcept {
  return chord_folds(ref, k) ? chord_sum<true>(x, len, ref, k) : chord_sum<false>(x, len, ref, k);
}

// block_mass's rare case: the block against its own largest value (0 when that is −inf).
[[gnu::noinline, gnu::cold]] inline BlockMass own_block_mass(const float* x, index len, float top,
                                                             float k) noexcept {
  const float ref = top > -std::numeric_limits<float>::infinity() ? top : 0.0f;
  return {top, ref, chord_sum(x, len, ref, k)};
}

// A block's chords stay below 2^60 (y < 60, in the bits' units): a float sum of 512 is finite.
inline constexpr float chord_headroom = 60.0f * 0x1p23f;

// The block x[0, len) against `before` (a value no larger than the largest before it): its
// largest value, its reference (`before`, or its own largest when `before` is −inf or the block
// is 2^60 times as probable: then its chords could overflow) and Σ chord_against(x, ref, k).
// `bad` is set when a value may be NaN or +inf (on AVX-512 the sum shows it instead, see
// chord_lanes: max_scan's compare a register made this scan 1.2× slower). Two loops over the
// block, the maximum first. Any block length and reference (scan_blocks' general case).
[[gnu::always_inline]] inline BlockMass block_mass(const float* x, index len, float before, float k,
                                                   bool& bad) noexcept {
  constexpr float inf = std::numeric_limits<float>::infinity();
  float top = -inf;
  index i = 0;
#if TFORMER_HAS_SIMD
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  constexpr bool sum_shows_bad = B::size == 16 && std::is_same_v<simd::arch, xsimd::avx512f>;
  if (const index end = len / W * W; end > 0) {
    B t0(-inf), t1(-inf), raw(0.0f);
    for (; i + 2 * W <= end; i += 2 * W) {
      const B v0 = B::load_unaligned(x + i), v1 = B::load_unaligned(x + i + W);
      t0 = xsimd::max(t0, v0);
      t1 = xsimd::max(t1, v1);
      if constexpr (!sum_shows_bad) raw += v0 + v1;  // NaN or +inf (see max_scan)
    }
    for (; i < end; i += W) {
      const B v = B::load_unaligned(x + i);
      t0 = xsimd::max(t0, v);
      if constexpr (!sum_shows_bad) raw += v;
    }
    top = xsimd_compat::reduce_max(xsimd::max(t0, t1));
    if constexpr (!sum_shows_bad) bad = bad || !(xsimd_compat::reduce_add(raw) < inf);
  }
#endif
  for (; i < len; ++i) {
    bad = bad || !(x[i] < inf);
    top = std::max(top, x[i]);
  }
  // The chords against `before` need not wait for this block's maximum; against its own when
  // that is far above (rare: a cold call). Before the first value above −inf, 0: x − ref is then
  // −inf, not NaN, for x = −inf.
  if (before > -inf && (top - before) * k < chord_headroom) [[likely]]
    return {top, before, chord_sum(x, len, before, k)};
  return own_block_mass(x, len, top, k);
}

#if TFORMER_HAS_SIMD
// block_mass's common case in one pass: a whole block (mass_block values) against `ref`, finite
// with chord_folds(ref, k); the largest value and the chords in the same loop, which waits on
// nothing from the block before (scan_blocks' ref comes from two blocks back).
[[gnu::always_inline]] inline BlockMass block_mass_against(const float* x, float ref, float k,
                                                           bool& bad) noexcept {
  constexpr float inf = std::numeric_limits<float>::infinity();
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  static_assert(mass_block % (4 * W) == 0);
  constexpr bool sum_shows_bad = B::size == 16 && std::is_same_v<simd::arch, xsimd::avx512f>;
  const B vk(k), vc(chord_bias - ref * k);  // chord_against(x, ref, k) folded: x·k + vc
  B t0(-inf), t1(-inf), raw0(0.0f), raw1(0.0f), a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f);
  auto nan = B(0.0f) != B(0.0f);  // all false
  // Not unrolled: GCC 12 unrolls the 8 steps of AVX-512 fully, holds the chords of many steps and
  // spills them (6.8 µs at 128,256 tokens, 5.7 µs as a loop).
#pragma GCC unroll 1
  for (index i = 0; i < mass_block; i += 4 * W) {
    const B v0 = B::load_unaligned(x + i), v1 = B::load_unaligned(x + i + W),
            v2 = B::load_unaligned(x + i + 2 * W), v3 = B::load_unaligned(x + i + 3 * W);
    t0 = xsimd::max(t0, xsimd::max(v0, v1));
    t1 = xsimd::max(t1, xsimd::max(v2, v3));
    if constexpr (pairs_show_nan<B>)  // a NaN (a +inf shows in the largest value)
      nan = nan | (unordered(v0, v1) | unordered(v2, v3));
    else if constexpr (!sum_shows_bad) {  // NaN or +inf (see max_scan)
      raw0 += v0 + v1;
      raw1 += v2 + v3;
    }
    a0 += chord_lanes(v0, vk, vc);
    a1 += chord_lanes(v1, vk, vc);
    a2 += chord_lanes(v2, vk, vc);
    a3 += chord_lanes(v3, vk, vc);
  }
  const float top = xsimd_compat::reduce_max(xsimd::max(t0, t1));
  if constexpr (pairs_show_nan<B>)  // a +inf is scan_blocks' largest value: it checks that
    bad = bad || xsimd::any(nan);
  else if constexpr (!sum_shows_bad)
    bad = bad || !(xsimd_compat::reduce_add(raw0 + raw1) < inf);
  if ((top - ref) * k < chord_headroom) [[likely]]
    return {top, ref, xsimd_compat::reduce_add((a0 + a1) + (a2 + a3))};
  return own_block_mass(x, mass_block, top, k);
}
#endif
}  // namespace detail

// max_scan, and for each block b of `mass_block` values (the last may be shorter) its BlockMass
// in blocks[b]: the mass of every token to within the chord's bounds, without an exp and in the
// same pass over memory. Each block's reference is the largest value before the block before it
// (before it while there is none two blocks back; or its own largest: see block_mass), so that
// neither its chords nor its loads wait on the reduction that ends the block before (one pass
// over a block against the largest value right before it took 8.0 µs at 128,256 tokens, against
// the one two blocks back 6.6 µs; two passes, the maximum first, 7.7 µs: Zen 5, AVX-512, blocks
// of 256). `blocks` is meaningless when `bad`. Precondition: inv_t > 0 and chord_scale(inv_t)
// finite.
inline MaxScan scan_blocks(const float* x, index n, float inv_t, BlockMass* blocks) noexcept {
  constexpr float inf = std::numeric_limits<float>::infinity();
  const float k = chord_scale(inv_t);
  float m = -inf;    // the largest value before the block
  float ref = -inf;  // and before the block before it
  bool bad = false;
  for (index b0 = 0; b0 < n; b0 += mass_block) {
    const index len = std::min(mass_block, n - b0);
    const float before = ref > -inf ? ref : m;
#if TFORMER_HAS_SIMD
    const BlockMass r = len == mass_block && before > -inf && chord_folds(before, k)
                            ? detail::block_mass_against(x + b0, before, k, bad)
                            : detail::block_mass(x + b0, len, before, k, bad);
#else
    const BlockMass r = detail::block_mass(x + b0, len, before, k, bad);
#endif
    bad = bad || !(r.sum < inf);
    ref = m;
    m = std::max(m, r.top);
    blocks[b0 / mass_block] = r;
  }
  return {m, bad || !(m < inf)};
}

// What gather_and_bound_rest found: `count` indices, and the mass of the tokens it left out.
struct Gathered {
  index count;
  double rest_lo, rest_hi;  // bounds on Σ exp((x[i] − m)·inv_t) over the tokens not gathered
};

// gather_at_least, visiting only the blocks that reach the threshold, and bounds on the mass
// Σ exp((x[i] − m)·inv_t) of the tokens it leaves out: each block's chord sum (scan_blocks) less
// its gathered tokens' chords, scaled from its reference to m in double. The upper bound is
// within 6.4 % of the lower, plus twice 2^-13 of each block's chords (at most 2^-12·1.07 of every
// token's mass: it matters only where the rest is small beside the gathered); unbounded above
// when chord_scale(inv_t) overflows. Preconditions: `blocks` from scan_blocks(x, n, inv_t, blocks)
// with nothing bad, m its max; inv_t > 0 finite.
inline Gathered gather_and_bound_rest(const float* x, index n, float threshold, float m,
                                      float inv_t, const BlockMass* blocks,
                                      std::int32_t* out) noexcept {
  const float k = chord_scale(inv_t);
  if (!(k < std::numeric_limits<float>::infinity()))  // T < 3.6e-32
    return {gather_at_least(x, n, threshold, out), 0.0, HUGE_VAL};
  // A block's float sum of ≤ 512 chords is within 511·2^-24 = 3.05e-5 of its exact sum,
  // relatively (the scalar build's one chain; far less in the SIMD builds' 4·W chains). The
  // chords subtracted here are the kernel's bit for bit where chord_bits and xsimd_compat::fma
  // agree on fusing; where they do not (e.g. -ffp-contract=off with an FMA ISA), one rounding of
  // x·k apart: ≤ 384 of the bits' 2^23, 4.6e-5 of a chord. 2^-13 of the block's chords covers
  // both: a block with nothing gathered adds its sum times 1 ± 2^-13 to the bounds.
  constexpr double slack_of_sum = 0x1p-13;
  index c = 0;
  double lo = 0.0, hi = 0.0, scale = 0.0;
  float scale_ref = std::numeric_limits<float>::quiet_NaN();
  // The sums of the blocks with nothing gathered since the reference last changed (references
  // change a few times over a vocabulary): one add a block, scaled once a run.
  double run = 0.0;
  const auto end_run = [&] {
    hi += scale * run * (1.0 + slack_of_sum);
    lo += scale * run * (1.0 - slack_of_sum);
    run = 0.0;
  };
  for (index b0 = 0; b0 < n; b0 += mass_block) {
    const BlockMass& r = blocks[b0 / mass_block];
    if (r.top == -std::numeric_limits<float>::infinity()) continue;
    if (r.ref != scale_ref) {
      end_run();
      scale_ref = r.ref;
      scale = std::exp((double(r.ref) - double(m)) * double(inv_t));
    }
    if (!(r.top >= threshold)) [[likely]] {
      run += double(r.sum);
      continue;
    }
    const index from = c, len = std::min(mass_block, n - b0);
    c += gather_at_least(x + b0, len, threshold, out + c);
    for (index j = from; j < c; ++j) out[j] += std::int32_t(b0);
    if (c - from == len) continue;  // all gathered: no rest
    double rest = r.sum;
    for (index j = from; j < c; ++j) rest -= double(chord_against(x[out[j]], r.ref, k));
    const double e = slack_of_sum * double(r.sum);
    hi += scale * (rest + e);
    lo += scale * std::max(0.0, rest - e);
  }
  end_run();
  // The chord is above exp by at most chord_slack; 1e-3 covers its rounding (3e-5, 1.1e-4
  // folded: chord_against) and the scales'; n·2^-126 what the chord flushes to 0.
  return {c, lo / chord_slack * (1.0 - 1e-3), hi * (1.0 + 1e-3) + double(n) * 0x1p-126};
}

// w[j] = exp((l[order[j]] − m)·inv_t) for j < c: the gathered tokens' weights, in float.
inline void candidate_weights(const float* l, const std::int32_t* order, index c, float m,
                              float inv_t, float* w) noexcept {
  for (index j = 0; j < c; ++j) w[j] = l[order[j]];
  index j = 0;
#if TFORMER_HAS_SIMD
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  for (const index end = c / W * W; j < end; j += W)
    xsimd::exp((B::load_unaligned(w + j) - B(m)) * B(inv_t)).store_unaligned(w + j);
#endif
  for (; j < c; ++j) w[j] = std::exp((w[j] - m) * inv_t);
}

// Writes the k best of x[0, n) (larger first, ties to the lower index) to out, in no order;
// returns min(k, n). One pass: indices at or above the running k-th best are buffered and cut
// back to k (nth_element) when the buffer fills, raising the bar. Precondition: k >= 1; out
// has room for n indices.
inline index select_top_k(const float* x, index n, index k, std::int32_t* out) {
  if (k >= n) {
    for (index i = 0; i < n; ++i) out[i] = std::int32_t(i);
    return n;
  }
  const auto better = [x](std::int32_t a, std::int32_t b) {
    return x[a] > x[b] || (x[a] == x[b] && a < b);
  };
  // Before the first cut everything is taken; after it only what beats the k-th best, which
  // an equal value met later cannot (its index is higher).
  float bar = -std::numeric_limits<float>::infinity();
  bool strict = false;
  index c = 0;
  const auto cut = [&] {
    std::nth_element(out, out + (k - 1), out + c, better);
    c = k;
    bar = x[out[k - 1]];
    strict = true;
  };
  const auto take = [&](index i) {
    if (strict ? x[i] > bar : x[i] >= bar) out[c++] = std::int32_t(i);
  };
  index i = 0;
#if TFORMER_HAS_SIMD
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
#else
  constexpr index W = 1;
#endif
  const index room = std::min(n, 2 * k + 4 * W + 64);  // > k + W: a cut always frees a register's room
#if TFORMER_HAS_SIMD
  for (const index end = n / W * W; i < end; i += W) {
    if (c + W > room) cut();
    const B v = B::load_unaligned(x + i);
    if (xsimd::any(strict ? v > B(bar) : v >= B(bar)))
      for (index j = i; j < i + W; ++j) take(j);
  }
#endif
  for (; i < n; ++i) {
    if (c + 1 > room) cut();
    take(i);
  }
  if (c > k) cut();
  return c;
}

}  // namespace sampling_kernels

// Scratch for one vocabulary, sized at construction.
class SamplerWorkspace {
 public:
  explicit SamplerWorkspace(index vocab)
      : vocab_(checked(vocab)),
        adjusted_(size(vocab)),
        e_(size(vocab)),
        probs_(size(vocab)),
        blocks_(size((vocab + sampling_kernels::block - 1) / sampling_kernels::block)),
        block_mass_(size((vocab + sampling_kernels::mass_block - 1) / sampling_kernels::mass_block)),
        order_(size(vocab)),
        candidates_(size(vocab)),
        counts_(size(vocab)),
        bucket_mass_(size(sampling_kernels::prefix_buckets)),
        bucket_count_(size(sampling_kernels::prefix_buckets)) {}
  index vocab() const noexcept { return vocab_; }

 private:
  friend struct sampling_detail;
  static index checked(index vocab) {  // token ids are int32
    check(vocab >= 1 && vocab <= std::numeric_limits<std::int32_t>::max(), "SamplerWorkspace",
          "vocab", "a value in [1, 2^31 - 1]", vocab);
    return vocab;
  }
  static std::size_t size(index n) { return static_cast<std::size_t>(n); }
  index vocab_;
  AlignedBuffer<float> adjusted_;     // logits after bias and penalties
  AlignedBuffer<float> e_;  // exp((l − max)/T): by id with no truncation, else by candidate
  AlignedBuffer<double> probs_;       // kept weights by id for a draw over many; zero between calls
  AlignedBuffer<double> blocks_;      // e_'s block sums
  AlignedBuffer<sampling_kernels::BlockMass> block_mass_;  // top-p's scan of the logits
  AlignedBuffer<std::int32_t> order_;   // gathered token ids
  AlignedBuffer<sampling_kernels::Candidate> candidates_;  // gathered tokens with logit and weight
  AlignedBuffer<std::int32_t> counts_;  // history counts, zero between calls
  AlignedBuffer<double> bucket_mass_;   // top_p_prefix's histogram: each part's mass
  AlignedBuffer<std::int32_t> bucket_count_;  // and its count of tokens
};

// Throws unless the sampler's settings are valid for `vocab` tokens.
inline void check_sampler(const Sampler& s, index vocab) {
  constexpr const char* where = "sample";
  check(s.kind >= SamplerKind::Greedy && s.kind <= SamplerKind::TopP, where, "sampler kind",
        "Greedy, Temperature, TopK or TopP", static_cast<int>(s.kind));
  check(s.repetition_penalty > 0.0f && std::isfinite(s.repetition_penalty), where,
        "repetition_penalty", "> 0 and finite (1: off)", s.repetition_penalty);
  check(std::isfinite(s.frequency_penalty), where, "frequency_penalty", "a finite number",
        s.frequency_penalty);
  check(std::isfinite(s.presence_penalty), where, "presence_penalty", "a finite number",
        s.presence_penalty);
  check(s.penalty_window >= 0, where, "penalty_window", ">= 0 (0: the whole history)",
        s.penalty_window);
  for (const LogitBias& b : s.logit_bias) {
    check_index(where, "logit_bias token", b.token, vocab);
    if (!(b.bias < std::numeric_limits<float>::infinity())) [[unlikely]]
      detail::fail_check(where, "logit_bias bias", "a number below +inf (-inf bans the token)",
                         b.bias);
  }
  if (s.kind == SamplerKind::Greedy) return;
  check(s.temperature > 0.0f && std::isfinite(s.temperature), where, "temperature",
        "> 0 and finite", s.temperature);
  const index min_k = s.kind == SamplerKind::TopK ? 1 : 0;
  if (s.top_k < min_k || s.top_k > vocab) [[unlikely]]
    detail::fail_check(where, "top_k",
                       "a count in [" + std::to_string(min_k) + ", " + std::to_string(vocab) +
                           "] (vocab" + (min_k ? ")" : "; 0: off)"),
                       s.top_k);
  check(s.top_p > 0.0f && s.top_p <= 1.0f, where, "top_p", "a value in (0, 1] (1: off)", s.top_p);
  check(s.min_p >= 0.0f && s.min_p <= 1.0f, where, "min_p", "a value in [0, 1] (0: off)", s.min_p);
}

// Throws unless every logit is a number below +Inf (−Inf is a masked token). A NaN or +Inf
// logit is non-finite data from the model or its inputs: sample() reports it rather than turn it
// into a valid token; choose() propagates it (NaN probabilities), as softmax does.
inline void check_logits(const char* where, std::span<const float> logits) {
  for (std::size_t i = 0; i < logits.size(); ++i)
    if (!(logits[i] < std::numeric_limits<float>::infinity())) [[unlikely]]
      detail::fail_check(where, "logits[" + std::to_string(i) + "]",
                         "a number below +inf (non-finite logits: check the model and its inputs)",
                         logits[i]);
}

// Throws unless every token of `history` is an id in [0, vocab).
inline void check_history(const char* where, std::span<const std::int32_t> history, index vocab) {
  for (std::int32_t t : history) check_index(where, "history token", t, vocab);
}

struct sampling_detail {
  using Candidate = sampling_kernels::Candidate;
  static constexpr index prefix_buckets = sampling_kernels::prefix_buckets;

  // The history as two spans (a generate call's prompt, then what it generated), of which the
  // last `window` tokens count (0: all).
  struct History {
    std::span<const std::int32_t> a, b;
    History last(index window) const noexcept {
      if (window == 0) return *this;
      const std::size_t w = static_cast<std::size_t>(window);
      if (b.size() >= w) return {{}, b.last(w)};
      return {a.last(std::min(a.size(), w - b.size())), b};
    }
  };

  // Steps 1 and 2 into ws.adjusted_; returns the logits the later steps read.
  static const float* adjust(const float* logits, index n, const Sampler& s, History h,
                             SamplerWorkspace& ws) {
    if (s.logit_bias.empty() && !s.penalises()) return logits;
    float* l = ws.adjusted_.data();
    std::memcpy(l, logits, static_cast<std::size_t>(n) * sizeof(float));
    for (const LogitBias& b : s.logit_bias) l[b.token] += b.bias;
    if (!s.penalises()) return l;
    h = h.last(s.penalty_window);
    std::int32_t* count = ws.counts_.data();
    for (auto part : {h.a, h.b})
      for (std::int32_t t : part) ++count[t];
    for (auto part : {h.a, h.b})
      for (std::int32_t t : part) {
        if (count[t] == 0) continue;  // already penalised
        float& x = l[t];
        if (s.repetition_penalty != 1.0f)
          x = x > 0.0f ? x / s.repetition_penalty : x * s.repetition_penalty;
        x -= s.frequency_penalty * float(count[t]) + s.presence_penalty;
        count[t] = 0;
      }
    return l;
  }

  // 1/T in float, at most FLT_MAX: a temperature below 1/FLT_MAX is greedy (0 · inf is NaN).
  static float inverse_temperature(const Sampler& s) noexcept {
    return float(std::min(1.0 / double(s.temperature), double(std::numeric_limits<float>::max())));
  }

  // Steps 3 to 7 on the adjusted logits l, whose largest is m (finite); for top-p without
  // top-k, ws.block_mass_ holds scan_blocks(l) (run).
  static std::int32_t draw(const float* l, index n, float m, const Sampler& s, Rng& rng,
                           SamplerWorkspace& ws) {
    namespace k = sampling_kernels;
    const double T = s.temperature;
    const float inv_t = inverse_temperature(s);
    const index top_k = s.top_k;
    const bool top_p = s.top_p < 1.0f, min_p = s.min_p > 0.0f;
    if (top_k == 0 && !top_p && !min_p) {  // every token, in id order
      float* e = ws.e_.data();
      double* blocks = ws.blocks_.data();
      const double total = k::exp_sum(l, n, m, inv_t, e, blocks);
      const double r = rng.uniform() * total;
      double acc = 0.0;
      index b = 0;
      const index nb = (n + k::block - 1) / k::block;
      while (b + 1 < nb && acc + blocks[b] <= r) acc += blocks[b++];
      // The block whose (float) sum holds r; re-added here, rounding may leave r just past its
      // end: then its last token with weight. Past the last block: the last token with weight.
      const index end = std::min(n, (b + 1) * k::block);
      index last = -1;
      for (index i = b * k::block; i < end; ++i) {
        acc += e[i];
        if (e[i] > 0.0f) last = i;
        if (r < acc) return std::int32_t(i);
      }
      if (last >= 0) return std::int32_t(last);
      for (index i = n; i-- > 0;)
        if (e[i] > 0.0f) return std::int32_t(i);
      return 0;
    }
    const double log_min_p = min_p ? std::log(double(s.min_p)) : -HUGE_VAL;
    std::int32_t* order = ws.order_.data();
    if (top_k > 0) {  // exactly the k most probable, then top_p and min_p within them
      const index c = k::select_top_k(l, n, top_k, order);
      return draw_kept(l, m, inv_t, s, rng, ws, c, 0.0, 0.0, log_min_p, false);
    }
    // No logit below `lowest` is kept under min_p: a margin below the exact bound, which
    // draw_kept applies in double.
    const double lowest =
        min_p ? double(m) + T * log_min_p - 1e-3 * (1.0 + std::abs(double(m))) : -HUGE_VAL;
    // Gather the tokens with (l − m)/T >= tau; lower tau until they hold the kept set. Without
    // top_k, top_p's mass is a fraction of all tokens': the scan's block sums bound the mass of
    // those the gathering leaves out, which decides the prefix unless its cut falls within the
    // bounds' 6 %; only then does an exp pass over the rest make the mass exact.
    for (double tau = -9.0;; tau = tau > -90.0 ? tau - 18.0 : -HUGE_VAL) {
      const double bound = std::max(double(m) + T * tau, lowest);
      const float threshold = bound < -double(std::numeric_limits<float>::max())
                                  ? -std::numeric_limits<float>::infinity()
                                  : float(bound);
      // Everything that can be kept is gathered when the bound is min_p's or there is none;
      // otherwise top_p needs its prefix here (draw_kept says), min_p alone the whole set.
      const bool complete = threshold == -std::numeric_limits<float>::infinity() || bound == lowest;
      if (!complete && !top_p) continue;
      const k::Gathered g =
          top_p ? k::gather_and_bound_rest(l, n, threshold, m, inv_t, ws.block_mass_.data(), order)
                : k::Gathered{k::gather_at_least(l, n, threshold, order), 0, 0};
      std::int32_t token =
          draw_kept(l, m, inv_t, s, rng, ws, g.count, g.rest_lo, g.rest_hi, log_min_p, !complete);
      if (token == undecided) {
        const double rest = k::exp_sum(l, n, m, inv_t, nullptr, nullptr, threshold);
        token = draw_kept(l, m, inv_t, s, rng, ws, g.count, rest, rest, log_min_p, !complete);
      }
      if (token >= 0) return token;
    }
  }

  static constexpr std::int32_t need_more = -1, undecided = -2;

  // Steps 5 to 7 over the c tokens ws.order_[0, c), which hold every token steps 5 and 6 keep:
  // top_p's shortest most-probable prefix reaching top_p of the c's mass plus the rest's (in
  // [rest_lo, rest_hi]; 0 for top_k's set), min_p's cut, one draw in id order. Returns need_more
  // when top_p's prefix goes past the c and `may_need_more`, and undecided when the rest's
  // bounds leave the prefix open; then it draws nothing.
  static std::int32_t draw_kept(const float* l, float m, float inv_t, const Sampler& s, Rng& rng,
                                SamplerWorkspace& ws, index c, double rest_lo, double rest_hi,
                                double log_min_p, bool may_need_more) {
    const double T = s.temperature;
    Candidate* cand = ws.candidates_.data();
    const float* weight = ws.e_.data();
    sampling_kernels::candidate_weights(l, ws.order_.data(), c, m, inv_t, ws.e_.data());
    for (index j = 0; j < c; ++j) {
      const std::int32_t t = ws.order_[std::size_t(j)];
      cand[j] = {t, l[t], double(weight[j])};
    }
    const double mass_of_c = mass(cand, c);
    index kept = c;
    if (s.top_p < 1.0f) {
      const double lo = s.top_p * (mass_of_c + rest_lo), hi = s.top_p * (mass_of_c + rest_hi);
      if (mass_of_c < lo && may_need_more) return need_more;
      const Prefix prefix =
          top_p_prefix(cand, c, lo, ws.bucket_mass_.data(), ws.bucket_count_.data());
      // The prefix reaching hi is this one unless this one falls short of hi (with exact
      // bounds it never does: a last-bit difference between two sums is no reason to ask again).
      if (rest_hi > rest_lo && prefix.mass < hi && (prefix.count < c || may_need_more))
        return undecided;
      kept = prefix.count;
    }
    if (s.min_p > 0.0f)  // the most probable token always passes ((m − m)/T = 0 >= log min_p)
      kept = index(std::partition(cand, cand + kept, [&](const Candidate& x) {
                     return (double(x.logit) - m) / T >= log_min_p;
                   }) - cand);
    // One draw over the kept tokens in id order: sorted when few, else marked and scanned.
    const double r = rng.uniform() * mass(cand, kept);
    const index n = ws.vocab_;
    if (kept <= 4096 || kept * 16 <= n) {
      std::sort(cand, cand + kept, [](const Candidate& a, const Candidate& b) { return a.id < b.id; });
      double acc = 0.0;
      for (index j = 0; j < kept; ++j) {
        acc += cand[j].weight;
        if (r < acc) return cand[j].id;
      }
      for (index j = kept; j-- > 0;)  // rounding left r at the top: the last with weight
        if (cand[j].weight > 0.0) return cand[j].id;
      return cand[0].id;
    }
    double* w = ws.probs_.data();  // zero between calls
    std::int32_t token = -1, last = -1;  // rounding left r at the top: the last with weight
    for (index j = 0; j < kept; ++j) {
      w[cand[j].id] = cand[j].weight;
      if (cand[j].weight > 0.0) last = std::max(last, cand[j].id);
    }
    // Block by block: a block the draw passes is summed in four independent chains; the one it
    // falls in is walked token by token.
    double acc = 0.0;
    for (index b0 = 0; b0 < n && token < 0; b0 += sampling_kernels::block) {
      const index b1 = std::min(n, b0 + sampling_kernels::block);
      if (const double sum = sum4(b1 - b0, [&](index j) { return w[b0 + j]; }); acc + sum <= r) {
        acc += sum;
        continue;
      }
      for (index i = b0; i < b1; ++i) {
        acc += w[i];
        if (r < acc) {
          token = std::int32_t(i);
          break;
        }
      }
    }
    for (index j = 0; j < kept; ++j) w[cand[j].id] = 0.0;
    return token >= 0 ? token : last >= 0 ? last : cand[0].id;
  }

  // Reorders cand[0, c) so that its first j are the j most probable (larger logit first, ties
  // to the lower id), j the fewest whose weights reach `target` (all c if none do); returns j
  // and their mass. A selection by histogram: the logits' span in prefix_buckets equal parts,
  // the mass of each, then the part holding the cut again, until few remain (sorted); equal
  // logits by the lowest ids (nth_element). O(c) a round, a round or two for a vocabulary's
  // logits; never a full sort. `part_mass` and `part_count` are scratch of prefix_buckets
  // entries.
  struct Prefix {
    index count;
    double mass;
  };
  static Prefix top_p_prefix(Candidate* cand, index c, double target, double* part_mass,
                             std::int32_t* part_count) {
    constexpr float inf = std::numeric_limits<float>::infinity();
    index lo = 0, hi = c;  // cand[0, lo) is in the prefix, with mass acc < target
    double acc = 0.0;
    while (hi - lo > 64) {
      float top = -inf, bottom = inf, finite_bottom = inf;
      for (index j = lo; j < hi; ++j) {
        const float x = cand[j].logit;
        top = std::max(top, x);
        bottom = std::min(bottom, x);
        if (x > -inf) finite_bottom = std::min(finite_bottom, x);
      }
      if (top == bottom) return equal_logits(cand, lo, hi, acc, target);
      // About 8 tokens a part, at most prefix_buckets parts. Part 0 holds the top; the last part
      // (or, by rounding, the one before) the finite bottom; the last every −inf (weight 0).
      const index parts =
          std::min(prefix_buckets, index(std::bit_ceil(std::uint64_t(hi - lo) / 8)));
      const double span = double(top) - double(finite_bottom);
      const double scale = span > 0.0 ? double(parts - 1) / span : 0.0;
      const auto part = [&](float x) {
        const double t = (double(top) - double(x)) * scale;  // NaN for −inf when scale is 0
        return t < double(parts - 1) ? index(t) : parts - 1;
      };
      std::fill(part_mass, part_mass + parts, 0.0);
      std::fill(part_count, part_count + parts, std::int32_t(0));
      for (index j = lo; j < hi; ++j) {
        const index b = part(cand[j].logit);
        part_mass[b] += cand[j].weight;
        ++part_count[b];
      }
      index cut = 0;  // the part where the running mass reaches the target
      double before = acc;
      while (cut < parts && before + part_mass[cut] < target) before += part_mass[cut++];
      if (cut == parts) {
        if (lo == 0 && hi == c) return {c, before};  // the target is past every token's mass
        // Summed in another order than the round before, the mass fell a last bit short: the
        // cut is in the last part with mass.
        do before -= part_mass[--cut];
        while (cut > 0 && part_mass[cut] == 0.0);
      }
      Candidate* first =
          partition(cand + lo, cand + hi, [&](const Candidate& x) { return part(x.logit) < cut; });
      partition(first, cand + hi, [&](const Candidate& x) { return part(x.logit) == cut; });
      acc = before;
      lo = index(first - cand);
      hi = lo + part_count[cut];
    }
    std::sort(cand + lo, cand + hi, better);
    for (index j = lo; j < hi; ++j) {
      acc += cand[j].weight;
      if (acc >= target) return {j + 1, acc};
    }
    return {hi, acc};
  }

  // Σ weight(j) over j < n in four independent sums (one would wait on the add's latency).
  template <class Weight>
  static double sum4(index n, Weight weight) noexcept {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    index j = 0;
    for (; j + 4 <= n; j += 4) {
      s0 += weight(j);
      s1 += weight(j + 1);
      s2 += weight(j + 2);
      s3 += weight(j + 3);
    }
    for (; j < n; ++j) s0 += weight(j);
    return (s0 + s1) + (s2 + s3);
  }

  // The weights of cand[0, n).
  static double mass(const Candidate* cand, index n) noexcept {
    return sum4(n, [&](index j) { return cand[j].weight; });
  }

  // std::partition without a branch per element (whose outcome is a coin toss here): every
  // element is swapped to the boundary, which moves on when it satisfies `pred`.
  template <class Pred>
  static Candidate* partition(Candidate* first, Candidate* last, Pred pred) noexcept {
    for (Candidate* x = first; x != last; ++x) {
      const bool keep = pred(*x);
      std::swap(*first, *x);
      first += keep;
    }
    return first;
  }

  static bool better(const Candidate& a, const Candidate& b) noexcept {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  }

  // top_p_prefix over cand[lo, hi), whose logits (and so weights) are all equal: the lowest ids.
  static Prefix equal_logits(Candidate* cand, index lo, index hi, double acc, double target) {
    const double w = cand[lo].weight;
    const index n = hi - lo;
    if (!(acc + double(n) * w >= target)) return {hi, acc + double(n) * w};
    index j = 1;         // the target is already met: one token (as a walk would take)
    if (target > acc) {  // then w > 0
      j = index(std::clamp(std::ceil((target - acc) / w), 1.0, double(n)));
      while (j < n && acc + double(j) * w < target) ++j;
      while (j > 1 && acc + double(j - 1) * w >= target) --j;
    }
    std::nth_element(cand + lo, cand + lo + (j - 1), cand + hi,
                     [](const Candidate& a, const Candidate& b) { return a.id < b.id; });
    return {lo + j, acc + double(j) * w};
  }

  // The whole of sample(); logprob only when asked (one more exp pass over the vocabulary).
  static Sampled run(std::span<const float> logits, const Sampler& s, Rng& rng,
                     SamplerWorkspace& ws, History h, bool want_logprob) {
    const index n = index(logits.size());
    const float* raw = logits.data();
    // Top-p without top-k bounds the mass of every token: that scan finds the max too (draw).
    const float inv_t = inverse_temperature(s);
    sampling_kernels::BlockMass* blocks =
        s.kind != SamplerKind::Greedy && s.top_k == 0 && s.top_p < 1.0f &&
                sampling_kernels::chord_scale(inv_t) < std::numeric_limits<float>::infinity()
            ? ws.block_mass_.data()
            : nullptr;
    const auto scan = [&](const float* x) {
      return blocks ? sampling_kernels::scan_blocks(x, n, inv_t, blocks)
                    : sampling_kernels::max_scan(x, n);
    };
    // With bias or penalties the raw logits are only checked (and give logprob its max): the
    // adjusted ones are scanned.
    const float* l = adjust(raw, n, s, h, ws);
    const sampling_kernels::MaxScan raw_max =
        l == raw ? scan(raw) : sampling_kernels::max_scan(raw, n);
    if (raw_max.bad) [[unlikely]]
      check_logits("sample", logits);
    float m = raw_max.max;
    if (l != raw) {
      const sampling_kernels::MaxScan adjusted = scan(l);
      if (adjusted.bad) [[unlikely]]
        check_logits("sample: logits after logit_bias and penalties", {l, std::size_t(n)});
      m = adjusted.max;
    }
    Sampled out;
    if (m == -std::numeric_limits<float>::infinity()) {  // every token masked: the lowest id
      if (s.kind != SamplerKind::Greedy) (void)rng.uniform();  // one draw per token, always
      out.token = 0;
    }
    else if (s.kind == SamplerKind::Greedy)
      out.token = std::int32_t(sampling_kernels::find_first(l, n, m));
    else
      out.token = draw(l, n, m, s, rng, ws);
    if (want_logprob) {
      const float x = raw[out.token];
      const float mr = raw_max.max;
      if (x == -std::numeric_limits<float>::infinity() || mr == -std::numeric_limits<float>::infinity()) {
        out.logprob = -std::numeric_limits<float>::infinity();
      } else {
        const double z = sampling_kernels::exp_sum(raw, n, mr, 1.0f, nullptr, nullptr);
        out.logprob = static_cast<float>(double(x) - mr - std::log(z));
      }
    }
    return out;
  }

  static void check_call(std::span<const float> logits, const Sampler& s, SamplerWorkspace& ws,
                         std::span<const std::int32_t> history) {
    const index n = index(logits.size());
    check_eq("sample", "logits size (= workspace vocab)", ws.vocab_, n);
    check_sampler(s, n);
    check_history("sample", history, n);
  }
};

// The next token from `logits` (vocab entries, each a number below +Inf: see check_logits).
// `history` (the tokens so far, oldest first) feeds the penalties; ids in [0, vocab).
inline std::int32_t sample(std::span<const float> logits, const Sampler& s, Rng& rng,
                           SamplerWorkspace& ws, std::span<const std::int32_t> history = {}) {
  sampling_detail::check_call(logits, s, ws, history);
  return sampling_detail::run(logits, s, rng, ws, {history, {}}, false).token;
}

// sample(), and the token's log-probability under the model (see Sampled).
inline Sampled sample_with_logprob(std::span<const float> logits, const Sampler& s, Rng& rng,
                                   SamplerWorkspace& ws,
                                   std::span<const std::int32_t> history = {}) {
  sampling_detail::check_call(logits, s, ws, history);
  return sampling_detail::run(logits, s, rng, ws, {history, {}}, true);
}

// Classification over chosen tokens (seed 003's [YES]/[NO]): out_logits[i] = logits[ids[i]],
// probs = softmax(out_logits) over the chosen ids only (computed in double). A NaN or +Inf among
// the chosen logits makes every probability NaN (as softmax does): the caller sees it.
inline void choose(std::span<const float> logits, std::span<const std::int32_t> ids,
                   std::span<float> out_logits, std::span<float> probs) {
  constexpr const char* where = "choose";
  check(!ids.empty(), where, "ids", "at least one token id", ids.size());
  check_eq(where, "out_logits size (= ids)", ids.size(), out_logits.size());
  check_eq(where, "probs size (= ids)", ids.size(), probs.size());
  double m = -std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < ids.size(); ++i) {
    check_index(where, "ids[i]", ids[i], index(logits.size()));
    out_logits[i] = logits[std::size_t(ids[i])];
    m = std::max(m, double(out_logits[i]));
  }
  double total = 0.0;
  for (std::size_t i = 0; i < ids.size(); ++i) total += std::exp(double(out_logits[i]) - m);
  for (std::size_t i = 0; i < ids.size(); ++i)
    probs[i] = static_cast<float>(std::exp(double(out_logits[i]) - m) / total);
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
