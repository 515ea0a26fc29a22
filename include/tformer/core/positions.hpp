// Positions: where each token of a call sits in its sequence.
//
// Three forms, all explicit (no entry point guesses a position):
//   Positions::offset(p)                 token t is at p + t (p = the cache length before the call)
//   Positions::ids(ids)                  token t is at ids[t] (packed batches, Hugging Face
//   position_ids) Positions::per_sequence(offsets, n)  tokens are n per sequence; token t of the
//   call belongs to
//                                        sequence t / n and is at offsets[t / n] + t % n
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <sstream>
#include <string>
#include <string_view>

#include "tformer/core/arch.hpp"
#include "tformer/core/error.hpp"
#include "tformer/core/views.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

class Positions {
 public:
  static constexpr Positions offset(std::int32_t first) noexcept {
    return Positions(Kind::Offset, first, {}, 0);
  }
  static constexpr Positions ids(std::span<const std::int32_t> ids) noexcept {
    return Positions(Kind::Ids, 0, ids, 0);
  }
  static constexpr Positions per_sequence(std::span<const std::int32_t> offsets,
                                          index tokens_per_sequence) noexcept {
    return Positions(Kind::PerSequence, 0, offsets, tokens_per_sequence);
  }

  // The position of token t. Precondition: validate() accepted this token count (so it fits).
  constexpr std::int32_t operator()(index t) const noexcept {
    return static_cast<std::int32_t>(wide(t));
  }

  // Throws unless positions exist for `tokens` tokens and all lie in [0, limit) (and below 2^31,
  // so that each fits the std::int32_t operator() returns).
  void validate(std::string_view where, index tokens, std::int64_t limit) const {
    limit = std::min<std::int64_t>(limit, std::int64_t{1} << 31);
    switch (kind_) {
      case Kind::Offset:
        if (first_ < 0 || (tokens > 0 && first_ + tokens > limit)) [[unlikely]]
          detail::fail_check(where, "positions (offset + tokens)", in_range(limit),
                             describe_offset(tokens));
        return;
      case Kind::Ids:
        check_eq(where, "position ids count", tokens, static_cast<index>(values_.size()));
        break;
      case Kind::PerSequence:
        check(per_sequence_ > 0, where, "tokens per sequence", "> 0", per_sequence_);
        if (index total = 0;
            __builtin_mul_overflow(static_cast<index>(values_.size()), per_sequence_, &total))
            [[unlikely]]
          detail::fail_check(where, "tokens per sequence", "a count whose product with the "
                             "sequences fits 64 bits", per_sequence_);
        else
          check_eq(where, "tokens (sequences * tokens per sequence)", total, tokens);
        break;
    }
    for (index t = 0; t < tokens; ++t) {
      const std::int64_t p = wide(t);
      if (p < 0 || p >= limit) [[unlikely]] {
        std::ostringstream given;
        given << p << " (token " << t << ")";
        detail::fail_check(where, "position", in_range(limit), given.str());
      }
    }
  }

 private:
  enum class Kind { Offset, Ids, PerSequence };

  constexpr Positions(Kind kind, std::int32_t first, std::span<const std::int32_t> values,
                      index per_sequence) noexcept
      : kind_(kind), first_(first), values_(values), per_sequence_(per_sequence) {}

  static std::string in_range(std::int64_t limit) {
    std::ostringstream s;
    s << "positions in [0, " << limit << ")";
    return s.str();
  }
  std::string describe_offset(index tokens) const {
    std::ostringstream s;
    s << "[" << first_ << ", " << static_cast<std::int64_t>(first_) + tokens << ")";
    return s.str();
  }

  // Token t's position in 64 bits: an offset plus a token index near 2^31 must not wrap.
  constexpr std::int64_t wide(index t) const noexcept {
    switch (kind_) {
      case Kind::Offset:
        return std::int64_t{first_} + t;
      case Kind::Ids:
        return values_[static_cast<std::size_t>(t)];
      case Kind::PerSequence:
        return std::int64_t{values_[static_cast<std::size_t>(t / per_sequence_)]} +
               t % per_sequence_;
    }
    return 0;
  }

  Kind kind_;
  std::int32_t first_;
  std::span<const std::int32_t> values_;
  index per_sequence_;
};

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
