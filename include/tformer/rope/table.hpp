// RopeTable: cos and sin for every position in [0, max_positions) and every frequency
// i in [0, rotary_dim/2), precomputed once so the kernels only load and multiply.
//
// Angles are computed in double (position · inv_freq, then cos and sin) and rounded to float
// once, so position 1,000,000 is as exact as position 10. Computing them on the fly with a
// vector sincos would be slower, not faster: xsimd's sin/cos leave their fast path beyond ~64π,
// i.e. past position ~200 for the highest frequency.
//
// Row p holds the rotary_dim/2 cos values of position p, then its rotary_dim/2 sin values, both
// already multiplied by the attention factor (YaRN, LongRoPE; 1 otherwise), as Hugging Face does.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <utility>
#include <variant>

#include "tformer/core/arch.hpp"
#include "tformer/core/error.hpp"
#include "tformer/core/memory.hpp"
#include "tformer/core/positions.hpp"
#include "tformer/core/views.hpp"
#include "tformer/rope/scaling.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

struct RopeConfig {
  int rotary_dim = 0;     // d: dimensions that rotate, even, <= head_dim
  int max_positions = 0;  // positions [0, max_positions) are valid
  double base = 10000.0;  // rope_theta
  RopeScaling scaling = rope_scaling::None{};
};

// The rotary dimension of a partial-rotary model, as Hugging Face computes it:
// int(head_dim · partial_rotary_factor). Phi-2: 80 · 0.4 = 32; GPT-NeoX: 0.25.
// Throws unless head_dim > 0 and the factor is in (0, 1].
inline int partial_rotary_dim(int head_dim, double partial_rotary_factor) {
  check(head_dim > 0, "partial_rotary_dim", "head_dim", "> 0", head_dim);
  check(partial_rotary_factor > 0.0 && partial_rotary_factor <= 1.0, "partial_rotary_dim",
        "partial_rotary_factor", "a value in (0, 1]", partial_rotary_factor);
  return static_cast<int>(head_dim * partial_rotary_factor);
}

class RopeTable {
 public:
  // Throws tformer::Error naming the parameter unless rotary_dim is even and > 0, max_positions
  // > 0, the table (max_positions · rotary_dim floats) at most 2^40 bytes, and base and scaling
  // valid (compute_rope_frequencies). Everything is checked before the table is allocated.
  explicit RopeTable(RopeConfig config) : RopeTable(std::move(config), -1) {}
  // A table whose rows are those of a sequence of `sequence_length` positions (dynamic NTK,
  // LongRoPE; -1: the table's full length, or L0 for dynamic NTK, as the first constructor).
  // A decoder starts its sequences short: RopeTable(config, 0) holds LongRoPE's short factors.
  RopeTable(RopeConfig config, int sequence_length) : config_(std::move(config)) {
    constexpr const char* where = "RopeTable";
    check(sequence_length >= -1, where, "sequence_length", ">= 0, or -1 (the table's length)",
          sequence_length);
    check(config_.rotary_dim > 0 && config_.rotary_dim % 2 == 0, where, "rotary_dim",
          "an even number > 0", config_.rotary_dim);
    check(config_.max_positions > 0, where, "max_positions", "> 0", config_.max_positions);
    const index size = checked_size(where, "max_positions * rotary_dim",
                                    {config_.max_positions, config_.rotary_dim}, sizeof(float));
    sequence_length_ = sequence_length >= 0 ? sequence_length : initial_sequence_length();
    frequencies_ = compute_rope_frequencies(config_.scaling, config_.rotary_dim, config_.base,
                                            config_.max_positions, sequence_length_);
    other_ = other_regime(config_, sequence_length_, frequencies_);
    rows_ = AlignedBuffer<float>(static_cast<std::size_t>(size));
    fill_rows();
  }

  RopeTable(RopeTable&&) noexcept = default;
  RopeTable& operator=(RopeTable&&) noexcept = default;
  [[nodiscard]] RopeTable copy() const { return RopeTable(*this, rows_.copy()); }

  int rotary_dim() const noexcept { return config_.rotary_dim; }
  int half() const noexcept { return config_.rotary_dim / 2; }
  int max_positions() const noexcept { return config_.max_positions; }
  double base() const noexcept { return config_.base; }
  const RopeConfig& config() const noexcept { return config_; }
  // The sequence length the rows are for (only dynamic NTK and LongRoPE depend on it).
  int sequence_length() const noexcept { return sequence_length_; }
  // Whether the scaling's frequencies depend on the sequence length (dynamic NTK, LongRoPE).
  bool length_dependent() const noexcept {
    return std::holds_alternative<rope_scaling::DynamicNtk>(config_.scaling) ||
           std::holds_alternative<rope_scaling::LongRope>(config_.scaling);
  }
  // Whether the rows are those a sequence of `length` positions rotates with: always, unless
  // the scaling depends on the length and `length` gives other frequencies than the table's.
  bool serves(int length) const noexcept { return regime(length) == regime(sequence_length_); }

  // inv_i for i in [0, rotary_dim/2), after scaling; the angle of pair i at position m is m·inv_i.
  std::span<const double> inv_freq() const noexcept { return frequencies_.inv_freq; }
  // The factor that multiplies cos and sin (YaRN's mscale; LongRoPE's; 1 otherwise).
  double attention_factor() const noexcept { return frequencies_.attention_factor; }

  // rotary_dim/2 values each. Precondition: 0 <= p < max_positions().
  const float* cos(index p) const noexcept { return rows_.data() + p * config_.rotary_dim; }
  const float* sin(index p) const noexcept { return cos(p) + half(); }

  // Rows laid out as cos(p) and sin(p) are, for the positions of `tokens` tokens (any p >= 0,
  // e.g. past the table), computed the same way: out [tokens, rotary_dim]. One cos and one sin
  // per frequency and token; for decoders whose sequences outgrow the table (a ring cache).
  void compute_rows(const Positions& positions, index tokens, MatrixView<float> out) const {
    constexpr const char* where = "RopeTable::compute_rows";
    positions.validate(where, tokens, std::numeric_limits<std::int32_t>::max());
    check_shape(where, "out", out, tokens, index(config_.rotary_dim));
    for (index t = 0; t < tokens; ++t) fill_row(positions(t), out.row(t));
  }

  // As above, with the frequencies of a sequence of `length` positions (length >= 0; Hugging
  // Face: max(position_ids) + 1 of the forward pass) instead of the table's, which stay as they
  // are: how a decoder rotates a step's tokens once its sequence leaves the table's regime
  // (dynamic NTK past L0, LongRoPE's long factors). Allocates nothing: LongRoPE's other factors
  // are computed at construction, dynamic NTK's in a buffer of rotary_dim/2 values held here
  // (not thread-safe: one call at a time per table). Throws if dynamic NTK's scaled base is not
  // finite at that length.
  void compute_rows(const Positions& positions, index tokens, int length, MatrixView<float> out) {
    constexpr const char* where = "RopeTable::compute_rows";
    check(length >= 0, where, "length", ">= 0", length);
    positions.validate(where, tokens, std::numeric_limits<std::int32_t>::max());
    check_shape(where, "out", out, tokens, index(config_.rotary_dim));
    const RopeFrequencies* f = &frequencies_;
    if (!serves(length)) {
      if (const auto* ntk = std::get_if<rope_scaling::DynamicNtk>(&config_.scaling))
        ntk_frequencies(*ntk, length);
      f = &other_;
    }
    for (index t = 0; t < tokens; ++t) fill_row(positions(t), out.row(t), *f);
  }

  // Recomputes the table for a new base (the seed's "dynamic base adjustment"). Throws, and
  // changes nothing, if the base is invalid.
  void set_base(double base) {
    RopeConfig next = config_;
    next.base = base;
    recompute(std::move(next), sequence_length_);
  }

  // The sequence length that length-dependent scalings use: dynamic NTK (L = max(length, L0))
  // and LongRoPE (long factors once length > L0). Recomputes the table when that changes the
  // frequencies, at one cos and one sin per entry, so call it when the sequence grows past a
  // threshold (e.g. per prefill), not per token. Hugging Face passes max(position_ids) + 1.
  // Other scalings only record the length.
  void set_sequence_length(int length) {
    check(length >= 0, "RopeTable::set_sequence_length", "length", ">= 0", length);
    if (regime(length) == regime(sequence_length_)) {
      sequence_length_ = length;
      return;
    }
    recompute(config_, length);
  }

  // Bytes held by the cos/sin rows.
  std::size_t bytes() const noexcept { return rows_.bytes(); }

 private:
  RopeTable(const RopeTable& other, AlignedBuffer<float> rows)
      : config_(other.config_),
        frequencies_(other.frequencies_),
        other_(other.other_),
        sequence_length_(other.sequence_length_),
        rows_(std::move(rows)) {}

  int initial_sequence_length() const {
    if (const auto* ntk = std::get_if<rope_scaling::DynamicNtk>(&config_.scaling))
      return std::max(ntk->original_max_positions, 0);  // < 1 is reported as the parameter
    return config_.max_positions;
  }

  // What the frequencies depend on for a sequence length: the effective NTK length, LongRoPE's
  // short/long choice, or nothing.
  int regime(int length) const {
    if (const auto* ntk = std::get_if<rope_scaling::DynamicNtk>(&config_.scaling))
      return std::max(length, ntk->original_max_positions);
    if (const auto* lr = std::get_if<rope_scaling::LongRope>(&config_.scaling))
      return length > lr->original_max_positions ? 1 : 0;
    return 0;
  }

  // Validates by computing the frequencies first; only then replaces the state.
  void recompute(RopeConfig config, int length) {
    RopeFrequencies f = compute_rope_frequencies(config.scaling, config.rotary_dim, config.base,
                                                 config.max_positions, length);
    RopeFrequencies other = other_regime(config, length, f);
    config_ = std::move(config);
    frequencies_ = std::move(f);
    other_ = std::move(other);
    sequence_length_ = length;
    fill_rows();
  }

  // The frequencies compute_rows(…, length, …) needs outside the regime of a table for
  // `length`: LongRoPE's other factors, or room for dynamic NTK's (set per call); else none.
  static RopeFrequencies other_regime(const RopeConfig& c, int length,
                                      const RopeFrequencies& current) {
    if (const auto* lr = std::get_if<rope_scaling::LongRope>(&c.scaling)) {
      const int other = length > lr->original_max_positions ? 0 : lr->original_max_positions + 1;
      return compute_rope_frequencies(c.scaling, c.rotary_dim, c.base, c.max_positions, other);
    }
    if (std::holds_alternative<rope_scaling::DynamicNtk>(c.scaling)) return current;
    return {};
  }
  // Dynamic NTK at `length` into other_: b' = b · (s·L/L0 − (s − 1))^(d/(d−2)), L = max(length,
  // L0), inv_i = b'^(−2i/d), as compute_rope_frequencies.
  void ntk_frequencies(const rope_scaling::DynamicNtk& s, int length) {
    const double d = config_.rotary_dim, l0 = s.original_max_positions;
    const double len = std::max<double>(length, l0);
    const double b =
        config_.base * std::pow(s.factor * len / l0 - (s.factor - 1.0), d / (d - 2.0));
    check(std::isfinite(b) && b > 1.0, "RopeTable::compute_rows",
          "dynamic NTK's scaled base at this length", "a finite value > 1", b);
    for (std::size_t i = 0; i < other_.inv_freq.size(); ++i)
      other_.inv_freq[i] = std::pow(b, -2.0 * static_cast<double>(i) / d);
  }

  void fill_rows() {
    for (index p = 0; p < config_.max_positions; ++p)
      fill_row(p, rows_.data() + p * config_.rotary_dim);
  }
  void fill_row(index p, float* c) const noexcept { fill_row(p, c, frequencies_); }
  // Row of position p: rotary_dim/2 cos values, then rotary_dim/2 sin values.
  void fill_row(index p, float* c, const RopeFrequencies& f) const noexcept {
    const std::size_t h = static_cast<std::size_t>(half());
    const double a = f.attention_factor;
    float* s = c + h;
    for (std::size_t i = 0; i < h; ++i) {
      const double angle = static_cast<double>(p) * f.inv_freq[i];
      c[i] = static_cast<float>(a * std::cos(angle));
      s[i] = static_cast<float>(a * std::sin(angle));
    }
  }

  RopeConfig config_;
  RopeFrequencies frequencies_;
  RopeFrequencies other_;  // compute_rows outside the table's regime (dynamic NTK, LongRoPE)
  int sequence_length_ = 0;
  AlignedBuffer<float> rows_;
};

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
