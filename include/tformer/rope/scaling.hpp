// RoPE frequency scalings, as Hugging Face transformers computes them (modeling_rope_utils.py).
//
// Notation (docs/CONVENTIONS.md): d = rotary_dim, b = base (rope_theta), i = 0 … d/2 − 1,
// f_i = b^(−2i/d) the default inverse frequency, L0 = the original (pre-trained) maximum
// positions, s = the scaling factor. Position m rotates pair i by the angle m · inv_i. A scaling
// changes inv_i and may set an attention factor `a` that multiplies both cos and sin.
//
// Everything here is computed in double: Hugging Face computes in float32, which differs from
// the exact values by ~1e-7 relative; double keeps the table exact at any position.
//
// Every parameter must be finite and in its range (factors > 0, original lengths > 0, ...), and
// so must what it produces (every inv_i finite and >= 0, the attention factor finite and > 0):
// compute_rope_frequencies throws tformer::Error naming the parameter otherwise, so no NaN or
// infinity reaches a table.
#pragma once

#include <algorithm>
#include <cmath>
#include <numbers>
#include <optional>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "tformer/core/arch.hpp"
#include "tformer/core/error.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {
namespace rope_scaling {

// No scaling: inv_i = f_i.
struct None {};

// Position interpolation: inv_i = f_i / s.
struct Linear {
  double factor = 1.0;
};

// Dynamic NTK: with L = max(sequence length, L0), b' = b · (s·L/L0 − (s − 1))^(d/(d−2)),
// inv_i = b'^(−2i/d). Grows with the sequence: see RopeTable::set_sequence_length.
struct DynamicNtk {
  double factor = 1.0;
  int original_max_positions = 0;
};

// YaRN (NTK-by-parts interpolation plus an attention factor).
struct Yarn {
  double factor = 1.0;
  int original_max_positions = 0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  // a (finite, > 0); when absent, 0.1·ln(s) + 1, or mscale(s, mscale)/mscale(s, mscale_all_dim)
  // when both of those are given and non-zero (DeepSeek-V2/V3 checkpoints; Hugging Face tests
  // truthiness). mscale and mscale_all_dim must be finite.
  std::optional<double> attention_factor = std::nullopt;
  std::optional<double> mscale = std::nullopt;
  std::optional<double> mscale_all_dim = std::nullopt;
  // Round the correction range to whole dimensions (true in all but gpt-oss checkpoints).
  bool truncate = true;
};

// LongRoPE (Phi-3): inv_i = 1 / (e_i · b^(2i/d)); e = long_factor when the current sequence
// length exceeds L0, else short_factor (Hugging Face switches per forward pass on
// max(position_ids) + 1; RopeTable::set_sequence_length does the same).
struct LongRope {
  std::vector<double> short_factor;  // d/2 values
  std::vector<double> long_factor;   // d/2 values
  int original_max_positions = 0;
  // s = max_position_embeddings / L0 of the model's config; when absent, the table's
  // max_positions / L0 (pass it when the table is smaller than the model's maximum).
  std::optional<double> factor = std::nullopt;
  // a (finite, > 0); when absent, sqrt(1 + ln(s)/ln(L0)) if s > 1 (which needs L0 > 1), else 1.
  std::optional<double> attention_factor = std::nullopt;
};

// Llama 3.1: wavelengths shorter than L0/high_freq_factor keep f_i, longer than
// L0/low_freq_factor use f_i/s, and the band between blends the two smoothly.
struct Llama3 {
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int original_max_positions = 8192;
};

}  // namespace rope_scaling

using RopeScaling = std::variant<rope_scaling::None, rope_scaling::Linear, rope_scaling::DynamicNtk,
                                 rope_scaling::Yarn, rope_scaling::LongRope, rope_scaling::Llama3>;

// The result of a scaling: inverse frequencies (d/2) and the factor that multiplies cos and sin.
struct RopeFrequencies {
  std::vector<double> inv_freq;
  double attention_factor = 1.0;
};

namespace detail {

inline std::vector<double> default_inv_freq(int rotary_dim, double base) {
  std::vector<double> f(static_cast<std::size_t>(rotary_dim / 2));
  for (std::size_t i = 0; i < f.size(); ++i)
    f[i] = std::pow(base, -2.0 * static_cast<double>(i) / rotary_dim);
  return f;
}

inline void check_factor(const char* where, double factor) {
  check(std::isfinite(factor) && factor > 0, where, "scaling factor", "a finite value > 0", factor);
}

inline void check_original(const char* where, int original_max_positions) {
  check(original_max_positions > 0, where, "original_max_positions", "> 0", original_max_positions);
}

inline void check_attention_factor(const char* where, const std::optional<double>& a) {
  if (a)
    check(std::isfinite(*a) && *a > 0, where, "attention_factor", "a finite value > 0", *a);
}

inline double yarn_mscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

}  // namespace detail

// Computes inv_freq and the attention factor of `scaling` for rotary dimension d and base b.
// `max_positions` is the table's size (LongRoPE's default factor); `sequence_length` the
// current length (dynamic NTK; LongRoPE's choice of factors). Throws tformer::Error on invalid
// parameters.
inline RopeFrequencies compute_rope_frequencies(const RopeScaling& scaling, int rotary_dim,
                                                double base, int max_positions,
                                                int sequence_length) {
  constexpr const char* where = "compute_rope_frequencies";
  // At most 2^20: no model rotates more, and the frequency vectors never fail to allocate.
  check(rotary_dim > 0 && rotary_dim % 2 == 0 && rotary_dim <= (1 << 20), where, "rotary_dim",
        "an even number in [2, 2^20]", rotary_dim);
  check(std::isfinite(base) && base > 1.0, where, "base", "a finite value > 1", base);
  check(max_positions > 0, where, "max_positions", "> 0", max_positions);
  check(sequence_length >= 0, where, "sequence_length", ">= 0", sequence_length);
  const double d = rotary_dim;
  const std::size_t half = static_cast<std::size_t>(rotary_dim / 2);

  struct Visitor {
    int rotary_dim;
    double d;
    std::size_t half;
    double base;
    int max_positions;
    int sequence_length;

    RopeFrequencies operator()(const rope_scaling::None&) const {
      return {detail::default_inv_freq(rotary_dim, base), 1.0};
    }
    RopeFrequencies operator()(const rope_scaling::Linear& s) const {
      detail::check_factor("rope_scaling::Linear", s.factor);
      auto f = detail::default_inv_freq(rotary_dim, base);
      for (double& x : f) x /= s.factor;
      return {std::move(f), 1.0};
    }
    RopeFrequencies operator()(const rope_scaling::DynamicNtk& s) const {
      detail::check_factor("rope_scaling::DynamicNtk", s.factor);
      detail::check_original("rope_scaling::DynamicNtk", s.original_max_positions);
      check(rotary_dim > 2, "rope_scaling::DynamicNtk", "rotary_dim", "> 2", rotary_dim);
      const double l0 = s.original_max_positions;
      const double len = std::max<double>(sequence_length, l0);
      const double b = base * std::pow(s.factor * len / l0 - (s.factor - 1.0), d / (d - 2.0));
      // >= base in exact arithmetic; a factor near 2^53 rounds s·L/L0 − (s − 1) to 0.
      check(std::isfinite(b) && b > 1.0, "rope_scaling::DynamicNtk",
            "scaled base (from factor and original_max_positions)", "a finite value > 1", b);
      return {detail::default_inv_freq(rotary_dim, b), 1.0};
    }
    RopeFrequencies operator()(const rope_scaling::Yarn& s) const {
      constexpr const char* w = "rope_scaling::Yarn";
      detail::check_factor(w, s.factor);
      detail::check_original(w, s.original_max_positions);
      if (!(std::isfinite(s.beta_fast) && s.beta_fast > 0 && std::isfinite(s.beta_slow) &&
            s.beta_slow > 0)) [[unlikely]]
        detail::fail_check(w, "beta_fast, beta_slow", "finite values > 0",
                           std::to_string(s.beta_fast) + ", " + std::to_string(s.beta_slow));
      detail::check_attention_factor(w, s.attention_factor);
      if (s.mscale)
        check(std::isfinite(*s.mscale), w, "mscale", "a finite value", *s.mscale);
      if (s.mscale_all_dim)
        check(std::isfinite(*s.mscale_all_dim), w, "mscale_all_dim", "a finite value",
              *s.mscale_all_dim);
      const double l0 = s.original_max_positions;
      // The dimension index whose wavelength completes `rotations` turns within L0.
      auto correction_dim = [&](double rotations) {
        return d * std::log(l0 / (rotations * 2.0 * std::numbers::pi)) / (2.0 * std::log(base));
      };
      double low = correction_dim(s.beta_fast);
      double high = correction_dim(s.beta_slow);
      if (s.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = std::max(low, 0.0);
      high = std::min(high, d - 1.0);
      if (low == high) high += 0.001;  // avoid a division by zero in the ramp

      auto f = detail::default_inv_freq(rotary_dim, base);
      for (std::size_t i = 0; i < half; ++i) {
        const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
        const double extrapolation = 1.0 - ramp;
        f[i] = (f[i] / s.factor) * (1.0 - extrapolation) + f[i] * extrapolation;
      }
      double a;
      if (s.attention_factor)
        a = *s.attention_factor;
      else if (s.mscale.value_or(0.0) != 0.0 && s.mscale_all_dim.value_or(0.0) != 0.0)
        a = detail::yarn_mscale(s.factor, *s.mscale) /
            detail::yarn_mscale(s.factor, *s.mscale_all_dim);
      else
        a = detail::yarn_mscale(s.factor, 1.0);
      return {std::move(f), a};
    }
    RopeFrequencies operator()(const rope_scaling::LongRope& s) const {
      constexpr const char* w = "rope_scaling::LongRope";
      detail::check_original(w, s.original_max_positions);
      check_eq(w, "short_factor size (rotary_dim / 2)", half, s.short_factor.size());
      check_eq(w, "long_factor size (rotary_dim / 2)", half, s.long_factor.size());
      const double l0 = s.original_max_positions;
      const double factor = s.factor.value_or(static_cast<double>(max_positions) / l0);
      detail::check_factor(w, factor);
      detail::check_attention_factor(w, s.attention_factor);
      if (!s.attention_factor && factor > 1.0)  // ln(L0) divides the default attention factor
        check(s.original_max_positions > 1, w, "original_max_positions",
              "> 1 (ln(original_max_positions) divides the attention factor; or give "
              "attention_factor)",
              s.original_max_positions);
      const auto& e = sequence_length > s.original_max_positions ? s.long_factor : s.short_factor;
      std::vector<double> f(half);
      for (std::size_t i = 0; i < half; ++i) {
        check(std::isfinite(e[i]) && e[i] > 0, w, "extension factor", "a finite value > 0", e[i]);
        f[i] = 1.0 / (e[i] * std::pow(base, 2.0 * static_cast<double>(i) / d));
      }
      const double a = s.attention_factor.value_or(
          factor <= 1.0 ? 1.0 : std::sqrt(1.0 + std::log(factor) / std::log(l0)));
      return {std::move(f), a};
    }
    RopeFrequencies operator()(const rope_scaling::Llama3& s) const {
      constexpr const char* w = "rope_scaling::Llama3";
      detail::check_factor(w, s.factor);
      detail::check_original(w, s.original_max_positions);
      if (!(s.low_freq_factor > 0 && s.high_freq_factor > s.low_freq_factor &&
            std::isfinite(s.high_freq_factor))) [[unlikely]]
        detail::fail_check(
            w, "low_freq_factor, high_freq_factor",
            "0 < low_freq_factor < high_freq_factor, both finite",
            std::to_string(s.low_freq_factor) + ", " + std::to_string(s.high_freq_factor));
      const double l0 = s.original_max_positions;
      const double low_freq_wavelen = l0 / s.low_freq_factor;
      const double high_freq_wavelen = l0 / s.high_freq_factor;
      auto f = detail::default_inv_freq(rotary_dim, base);
      for (double& x : f) {
        const double wavelen = 2.0 * std::numbers::pi / x;
        if (wavelen < high_freq_wavelen) continue;  // high frequency: unchanged
        if (wavelen > low_freq_wavelen) {           // low frequency: interpolated
          x /= s.factor;
          continue;
        }
        const double t =
            (l0 / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        x = (1.0 - t) * x / s.factor + t * x;
      }
      return {std::move(f), 1.0};
    }
  };
  RopeFrequencies f =
      std::visit(Visitor{rotary_dim, d, half, base, max_positions, sequence_length}, scaling);
  // What valid-looking parameters may still produce at the edges of double's range (a factor
  // near 1e-308 overflows a frequency; mscale values whose quotient is negative).
  for (std::size_t i = 0; i < f.inv_freq.size(); ++i)
    if (!(std::isfinite(f.inv_freq[i]) && f.inv_freq[i] >= 0)) [[unlikely]] {
      std::ostringstream what;
      what << "inverse frequency " << i << " (from the scaling's parameters)";
      detail::fail_check(where, what.str(), "a finite value >= 0", f.inv_freq[i]);
    }
  check(std::isfinite(f.attention_factor) && f.attention_factor > 0, where,
        "attention factor (from the scaling's parameters)", "a finite value > 0",
        f.attention_factor);
  return f;
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
