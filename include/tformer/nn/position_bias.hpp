// Relative position biases for attention's bias hook, bias(head, query_position, key_position),
// both functions of key − query position only, so they are right at any cache offset.
//
//   ALiBi (Press et al.; BLOOM/MPT): bias = slope_h · (k − q). Slopes are the geometric
//     sequence of the paper for n heads: with p = 2^⌊log2 n⌋, slope_i = 2^(−8i/p) for
//     i = 1 … p, and for n > p the odd powers 2^(−4(2j−1)/p), j = 1 … n − p (Hugging Face's
//     build_alibi_tensor).
//   T5 (seed 001's bucketed bias): bias = table[bucket(k − q)][h] with table [buckets, heads]
//     and Hugging Face's _relative_position_bucket: half the buckets exact distances, the rest
//     logarithmic up to max_distance; bidirectional splits buckets by sign (encoders),
//     unidirectional (decoders) maps every future key to bucket 0.
#pragma once

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "tformer/core/error.hpp"
#include "tformer/core/memory.hpp"
#include "tformer/core/views.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

// The ALiBi slopes of `heads` heads. Throws unless 1 <= heads <= 2^20 (no model has more, and
// the vector then never fails to allocate).
inline std::vector<float> alibi_slopes(index heads) {
  check(heads >= 1 && heads <= (index(1) << 20), "alibi_slopes", "heads", "a count in [1, 2^20]",
        heads);
  index p = 1;
  while (2 * p <= heads) p *= 2;
  std::vector<float> s;
  for (index i = 1; i <= p; ++i) s.push_back(float(std::exp2(-8.0 * double(i) / double(p))));
  for (index j = 1; j <= heads - p; ++j)
    s.push_back(float(std::exp2(-4.0 * double(2 * j - 1) / double(p))));
  return s;
}

struct AlibiBias {
  std::span<const float> slopes;  // one per query head
  // The query heads it covers (attention() checks them against q.heads).
  index heads() const noexcept { return static_cast<index>(slopes.size()); }
  float operator()(index h, index q, index k) const noexcept {
    return slopes[static_cast<std::size_t>(h)] * static_cast<float>(k - q);
  }
};

// T5's bucket of a relative position r = key − query, in [0, buckets). Throws unless buckets >=
// 2 (4 bidirectional) and max_distance > the exact buckets (buckets / 2, halved again
// bidirectional).
inline index t5_bucket(index r, index buckets, index max_distance, bool bidirectional) {
  constexpr const char* where = "t5_bucket";
  check(buckets >= (bidirectional ? 4 : 2), where, "buckets",
        bidirectional ? ">= 4 (bidirectional)" : ">= 2", buckets);
  check(max_distance > (bidirectional ? buckets / 2 : buckets) / 2, where, "max_distance",
        "> the exact buckets", max_distance);
  index bucket = 0;
  if (bidirectional) {
    buckets /= 2;
    if (r > 0) bucket += buckets;
    r = r < 0 ? -r : r;
  } else {
    r = r < 0 ? -r : 0;  // distance into the past; future keys share bucket 0
  }
  const index exact = buckets / 2;
  if (r < exact) return bucket + r;
  const index large = exact + static_cast<index>(std::log(double(r) / double(exact)) /
                                                  std::log(double(max_distance) / double(exact)) *
                                                  double(buckets - exact));
  return bucket + std::min(large, buckets - 1);
}

// T5 bias over a [buckets, heads] table. Buckets are looked up per distance from a small table
// built at construction: beyond ±max_distance every bucket is the last of its side.
// The largest T5 max_distance (and bucket count) accepted: the lookup table of
// 2·max_distance + 1 entries then never fails to allocate.
inline constexpr index t5_limit = index(1) << 20;

class T5Bias {
 public:
  // table [buckets, heads]. Throws unless it has data, buckets >= 2 (4 bidirectional), heads
  // >= 1, and the exact buckets < max_distance <= 2^20 (T5 uses 128; the lookup table of
  // 2·max_distance + 1 entries then never fails to allocate).
  T5Bias(MatrixView<const float> table, index max_distance, bool bidirectional)
      : table_(table), max_distance_(max_distance) {
    constexpr const char* where = "T5Bias";
    check_view(where, "table", table);
    check(table.rows() >= (bidirectional ? 4 : 2), where, "table rows (buckets)",
          bidirectional ? ">= 4" : ">= 2", table.rows());
    check(table.cols() >= 1, where, "table cols (heads)", ">= 1", table.cols());
    const index exact = (bidirectional ? table.rows() / 2 : table.rows()) / 2;
    check(max_distance > exact, where, "max_distance", "> the exact buckets", max_distance);
    check(max_distance <= t5_limit, where, "max_distance", "<= 2^20", max_distance);
    bucket_.resize(static_cast<std::size_t>(2 * max_distance + 1));
    for (index r = -max_distance; r <= max_distance; ++r)
      bucket_[static_cast<std::size_t>(r + max_distance)] =
          t5_bucket(r, table.rows(), max_distance, bidirectional);
  }
  index heads() const noexcept { return table_.cols(); }
  float operator()(index h, index q, index k) const noexcept {
    const index r = std::clamp(k - q, -max_distance_, max_distance_);
    return table_.row(bucket_[static_cast<std::size_t>(r + max_distance_)])[h];
  }

 private:
  MatrixView<const float> table_;
  index max_distance_;
  std::vector<index> bucket_;  // by r + max_distance
};

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
