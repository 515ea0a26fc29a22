// KVCache: keys (after RoPE) and values of every layer for a batch of sequences, laid out
// [sequence][layer][kv_head][position][head_dim], so one head's keys for all positions are one
// contiguous block that decode streams once. Capacity is fixed at construction; nothing
// allocates afterwards.
//
// A step writes each layer's new K and V at the sequence's current length, runs attention over
// view(layer, seq, length + new tokens), and after the last layer calls advance(seq, tokens):
//   cache.write(layer, seq, k, v);            // positions [length(seq), length(seq) + T)
//   attention(q, cache.view(layer, seq, cache.length(seq) + T), …);
//   cache.advance(seq, T);                    // once per step, after all layers
// truncate() rolls a sequence back (rejected speculative tokens); reset() empties it. In ring
// mode (sliding-window layers) only the last window + max_step − 1 positions are kept, plus the
// first `sinks` positions (attention sinks, StreamingLLM) in slots of their own: a sequence then
// grows without bound at constant memory.
//
// Element type, chosen per cache at run time (KVCacheConfig::type): f32, f16 / bf16 at half the
// bytes, or q8 at a quarter plus a scale per row: int8 values with one f32 scale for each head's
// row of each position (per token, per head). write() rounds each value once; the attention
// kernels read the stored type directly (core/simd_load.hpp) and apply a q8 row's scale to its
// score (keys) or its softmax weight (values). Decode time falls less than the bytes do: the
// kernel is bound by its arithmetic as much as by memory (docs/PERFORMANCE.md).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>

#include "tformer/core/arch.hpp"
#include "tformer/core/error.hpp"
#include "tformer/core/memory.hpp"
#include "tformer/core/numeric.hpp"
#include "tformer/core/parallel.hpp"
#include "tformer/core/simd_load.hpp"
#include "tformer/core/views.hpp"

namespace tformer {

// What a KV cache stores its keys and values as. Round trip of one value x (core/convert.hpp):
// f32 exact; bf16 |x − x̂| <= 2^−8·|x| for normal x up to bf16's largest finite value (beyond,
// ±inf); f16 |x − x̂| <= 2^−11·|x| for 2^−14 <= |x| <= 65504 (|x| >= 65520 is stored as ±inf,
// below 2^−14 as a subnormal: within 2^−25). NaN stays NaN. q8: a row r (head_dim values of one
// head at one position) is stored as s = max|r_i| / 127 and q_i = round(r_i / s) (to nearest
// even) in [−127, 127], read as q_i · s: |r_i − q_i·s| <= s/2 · (1 + 2^−15) when s is a normal
// float (max|r_i| >= 127 · 2^−126; s is stepped down one float where 127·s would overflow); a row
// that is all zero, or below 64 · 2^−149, is s = 0 and reads as zeros. A row holding NaN or ±inf
// is stored as NaN (s = NaN): every value of it reads as NaN. (q8 rounds twice: x / s in float,
// then to the nearest integer in the current rounding mode, nearest-even by default.)
enum class KVType : std::uint8_t { f32, f16, bf16, q8 };

// Whether t is one of KVType's enumerators (a value cast from an integer may not be).
constexpr bool valid_kv_type(KVType t) noexcept {
  return t == KVType::f32 || t == KVType::f16 || t == KVType::bf16 || t == KVType::q8;
}
// Bytes of one stored value (q8's row scales are apart: 4 bytes per row).
constexpr index kv_type_bytes(KVType t) noexcept {
  return t == KVType::f32 ? 4 : t == KVType::q8 ? 1 : 2;
}
constexpr const char* kv_type_name(KVType t) noexcept {
  return t == KVType::f32    ? "f32"
         : t == KVType::f16  ? "f16"
         : t == KVType::bf16 ? "bf16"
         : t == KVType::q8   ? "q8"
                             : "?";
}
// What a check names as the valid types.
inline constexpr const char* kv_types_expected = "f32, f16, bf16 or q8 (KVType 0, 1, 2 or 3)";

inline namespace TFORMER_ARCH_NS {

// Calls f(T{}) with T the element type (float, f16, bf16 or std::int8_t for q8) of `type`: one
// kernel instantiation per stored type, chosen at run time. Precondition: type is one of
// KVType's enumerators.
template <class F>
decltype(auto) visit_kv_type(KVType type, F&& f) {
  switch (type) {
    case KVType::f16: return f(f16{});
    case KVType::bf16: return f(bf16{});
    case KVType::q8:
      return f(std::int8_t{});
    case KVType::f32: break;
  }
  return f(float{});
}

struct KVCacheConfig {
  index layers = 0;
  index kv_heads = 0;
  index head_dim = 0;
  index capacity = 0;   // positions per sequence (ignored in ring mode)
  index sequences = 1;  // batch size
  // Ring mode for sliding-window layers: window > 0 keeps only what a window of `window` keys
  // needs, in window + max_step − 1 slots after the sinks' (position p in slot cache_slot(p)),
  // and sequences may grow without bound. A step may write at most max_step tokens: its queries still need the
  // keys that its own writes would otherwise overwrite.
  index window = 0;
  index max_step = 1;
  // Ring mode: positions [0, sinks) keep slots [0, sinks) for good; later positions share the
  // window + max_step − 1 slots after them.
  index sinks = 0;
  KVType type = KVType::f32;  // the element type of keys and values
};

// The slot of `position` in a cache of `slots` slots of which the first `sinks` hold the sink
// positions (ring mode), or slot = position (slots = 0: a full cache).
constexpr index cache_slot(index position, index slots, index sinks) noexcept {
  if (slots == 0 || position < sinks) return position;
  return sinks + (position - sinks) % (slots - sinks);
}

// Read-only view of one layer of one sequence: `length` positions of `kv_heads` heads, stored
// as `type` (key<T>() and value<T>() with T its element type: float, f16, bf16, std::int8_t).
// q8 adds each row's scale: key_scale(head, position), laid out like the rows with one float
// per row (scale_stride floats from one head's to the next).
struct KVView {
  const void* keys = nullptr;
  const void* values = nullptr;
  index kv_heads = 0;
  index length = 0;
  index head_dim = 0;
  index head_stride = 0;  // elements from one kv head's block to the next
  index slots = 0;        // ring mode: slots per head (cache_slot); 0: position = slot
  index window = 0;       // ring mode: the window the ring keeps (keys (p − window, p])
  index sinks = 0;        // ring mode: positions [0, sinks) are kept for good
  KVType type = KVType::f32;
  const float* key_scales = nullptr;    // q8 only
  const float* value_scales = nullptr;  // q8 only
  index scale_stride = 0;               // q8: floats from one kv head's scales to the next
  // Positions stored from the view's start, the first `length` included (0: length).
  // Decode prefetches up to there, so a split's part asks for the next part's first keys (part()).
  index stored = 0;

  index slot(index position) const noexcept { return cache_slot(position, slots, sinks); }
  // Where decode's prefetch stops: length, or stored past it. Never a bound on the keys read.
  index prefetchable() const noexcept { return std::max(length, stored); }
  // Precondition: T is the element type of `type` (float, f16, bf16, std::int8_t for q8).
  template <FloatStorage T>
  const T* key(index head, index position) const noexcept {
    return static_cast<const T*>(keys) + head * head_stride + slot(position) * head_dim;
  }
  template <FloatStorage T>
  const T* value(index head, index position) const noexcept {
    return static_cast<const T*>(values) + head * head_stride + slot(position) * head_dim;
  }
  // q8: the scales of the rows from `position` on (contiguous as the rows are). Precondition:
  // type == KVType::q8.
  const float* key_scale(index head, index position) const noexcept {
    return key_scales + head * scale_stride + slot(position);
  }
  const float* value_scale(index head, index position) const noexcept {
    return value_scales + head * scale_stride + slot(position);
  }
  // Head g alone (kv_heads = 1). Precondition: 0 <= g < kv_heads.
  KVView head(index g) const noexcept {
    KVView one = *this;
    const index offset = g * head_stride * kv_type_bytes(type);
    one.keys = static_cast<const std::byte*>(keys) + offset;
    one.values = static_cast<const std::byte*>(values) + offset;
    if (type == KVType::q8) {
      one.key_scales = key_scales + g * scale_stride;
      one.value_scales = value_scales + g * scale_stride;
    }
    one.kv_heads = 1;
    return one;
  }
  // Positions [first, length) alone, renumbered from 0 (a split of the keys for attention_lse
  // and merge_attention). It keeps what is stored after them (stored = prefetchable() − first),
  // so cutting its length later still lets decode prefetch past the cut; set stored to stop there.
  // Precondition: not a ring (slots == 0), 0 <= first <= length.
  KVView from(index first) const noexcept {
    KVView rest = *this;
    const index offset = first * head_dim * kv_type_bytes(type);
    rest.keys = static_cast<const std::byte*>(keys) + offset;
    rest.values = static_cast<const std::byte*>(values) + offset;
    if (type == KVType::q8) {
      rest.key_scales = key_scales + first;
      rest.value_scales = value_scales + first;
    }
    rest.length = length - first;
    rest.stored = prefetchable() - first;
    return rest;
  }
  // Positions [first, first + count) alone, renumbered from 0: a part of a split of the keys, as
  // from() but `count` long. Decode prefetches on past its end into what this view holds after it:
  // the next part's first keys, when one thread takes consecutive parts.
  // Precondition: not a ring (slots == 0), 0 <= first, 0 <= count, first + count <= length.
  KVView part(index first, index count) const noexcept {
    KVView p = from(first);
    p.length = count;
    return p;
  }
  // How many positions from `position` on are stored contiguously (until the ring wraps, or
  // the sinks end).
  index contiguous(index position) const noexcept {
    if (slots == 0) return std::numeric_limits<index>::max();
    return position < sinks ? sinks - position : slots - slot(position);
  }
};

class KVCache {
 public:
  explicit KVCache(const KVCacheConfig& config)
      : config_(checked(config)),
        keys_(buffer_bytes(config)),
        values_(buffer_bytes(config)),
        key_scales_(scale_count(config)),
        value_scales_(scale_count(config)),
        lengths_(static_cast<std::size_t>(config.sequences)),
        written_(static_cast<std::size_t>(config.sequences)),
        valid_(static_cast<std::size_t>(config.sequences * config.layers)) {}

  KVCache(KVCache&&) noexcept = default;
  KVCache& operator=(KVCache&&) noexcept = default;

  const KVCacheConfig& config() const noexcept { return config_; }
  // Positions stored for sequence `seq`.
  index length(index seq) const {
    check_index("KVCache::length", "seq", seq, config_.sequences);
    return lengths_[static_cast<std::size_t>(seq)];
  }
  // Position slots per sequence: capacity, or sinks + window + max_step − 1 in ring mode.
  index slots() const noexcept { return slots_of(config_); }
  bool ring() const noexcept { return config_.window > 0; }
  // Bytes of keys and values: exactly
  // 2 · sequences · layers · kv_heads · slots · head_dim · kv_type_bytes(type), and for q8 the
  // row scales, 2 · sequences · layers · kv_heads · slots · 4.
  std::size_t bytes() const noexcept {
    return keys_.bytes() + values_.bytes() + key_scales_.bytes() + value_scales_.bytes();
  }

  // Stores k and v [T, kv_heads, head_dim] of layer `layer` at positions
  // [length(seq), length(seq) + T) of sequence `seq`, rounded to the cache's type (nearest,
  // ties to even). The length moves only with advance(). Precondition for the data: none (NaN
  // and Inf are stored as NaN and Inf; f16 stores |x| >= 65520 as ±inf; q8 stores a row holding
  // either as NaN).
  void write(index layer, index seq, HeadsView<const float> k, HeadsView<const float> v) {
    write(layer, seq, k, v, SerialExecutor{});
  }
  // The same, its tokens split over exec's workers in runs (for_token_runs): the same bits on
  // any executor. A rejected call changes nothing.
  template <Executor E>
  void write(index layer, index seq, HeadsView<const float> k, HeadsView<const float> v,
             const E& exec) {
    check_index("KVCache::write", "seq", seq, config_.sequences);
    const index first = lengths_[static_cast<std::size_t>(seq)];
    check_write("KVCache::write", layer, seq, k, v, first);
    for_token_runs(exec, k.tokens(), [&](index t, index n) {
      store_rows(layer, seq, k.tokens_slice(t, n), v.tokens_slice(t, n), first + t);
    });
    note_stored(layer, seq, first, k.tokens());
  }

  // Throws unless write(layer, seq, k, v) at position `first` would be valid.
  void check_write(const char* where, index layer, index seq, HeadsView<const float> k,
                   HeadsView<const float> v, index first) const {
    check_index(where, "layer", layer, config_.layers);
    check_index(where, "seq", seq, config_.sequences);
    check_view(where, "k", k);
    check_view(where, "v", v);
    check_eq(where, "k.heads (= kv_heads)", config_.kv_heads, k.heads());
    check_eq(where, "k.head_dim", config_.head_dim, k.head_dim());
    check_eq(where, "v.heads (= kv_heads)", config_.kv_heads, v.heads());
    check_eq(where, "v.head_dim", config_.head_dim, v.head_dim());
    check_eq(where, "v.tokens (= k.tokens)", k.tokens(), v.tokens());
    if (ring()) {
      if (k.tokens() > config_.max_step) [[unlikely]]
        detail::fail_check(where, "tokens",
                           "<= max_step (" + std::to_string(config_.max_step) + ") in ring mode",
                           k.tokens());
    } else if (first + k.tokens() > config_.capacity) [[unlikely]] {
      detail::fail_check(where, "positions (length + tokens)",
                         "<= capacity (" + std::to_string(config_.capacity) + ")",
                         first + k.tokens());
    }
  }

  // Positions [0, length) of layer `layer` of sequence `seq`; length may include positions
  // written in this step but not yet advanced. Every position below `length` must have been
  // written to this layer since the sequence last rolled back past it (a forgotten write() would
  // attend to stale memory).
  KVView view(index layer, index seq, index length) const {
    constexpr const char* where = "KVCache::view";
    check_index(where, "layer", layer, config_.layers);
    check_index(where, "seq", seq, config_.sequences);
    const index valid = valid_[static_cast<std::size_t>(seq * config_.layers + layer)];
    if (length < 0 || length > valid) [[unlikely]]
      detail::fail_check(where, "length",
                         "a value in [0, " + std::to_string(valid) +
                             "] (the positions written to this layer)",
                         length);
    return {keys_.data() + offset(layer, seq, 0),
            values_.data() + offset(layer, seq, 0),
            config_.kv_heads,
            length,
            config_.head_dim,
            slots() * config_.head_dim,
            ring() ? slots() : 0,
            config_.window,
            config_.sinks,
            config_.type,
            q8() ? key_scales_.data() + scale_offset(layer, seq, 0) : nullptr,
            q8() ? value_scales_.data() + scale_offset(layer, seq, 0) : nullptr,
            q8() ? slots() : 0};
  }

  // Commits `tokens` written positions of sequence `seq` (after every layer wrote them).
  void advance(index seq, index tokens) {
    constexpr const char* where = "KVCache::advance";
    check_index(where, "seq", seq, config_.sequences);
    const index length = lengths_[static_cast<std::size_t>(seq)];
    const index most = ring() ? config_.max_step : config_.capacity - length;
    if (tokens < 0 || tokens > most) [[unlikely]]
      detail::fail_check(where, "tokens",
                         ring() ? "a value in [0, " + std::to_string(most) + "] (max_step)"
                                : "a value in [0, " + std::to_string(most) + "] (capacity " +
                                      std::to_string(config_.capacity) + " - length " +
                                      std::to_string(length) + ")",
                         tokens);
    lengths_[static_cast<std::size_t>(seq)] = length + tokens;
  }

  // Rolls sequence `seq` back to `length` positions (<= its current length).
  void truncate(index seq, index length) {
    constexpr const char* where = "KVCache::truncate";
    check_index(where, "seq", seq, config_.sequences);
    const index current = lengths_[static_cast<std::size_t>(seq)];
    if (length < 0 || length > current) [[unlikely]]
      detail::fail_check(where, "length",
                         "a value in [0, " + std::to_string(current) + "] (current length)",
                         length);
    // A ring holds the keys a query at `length` needs only if nothing past length + max_step
    // was ever written over them. Lengths within the sinks are always safe: their slots are
    // never written over.
    if (ring() && length > config_.sinks &&
        written_[static_cast<std::size_t>(seq)] - length > config_.max_step)
        [[unlikely]]
      detail::fail_check(
          where, "length",
          ">= positions written - max_step in ring mode (" +
              std::to_string(written_[static_cast<std::size_t>(seq)] - config_.max_step) + ")",
          length);
    lengths_[static_cast<std::size_t>(seq)] = length;
    if (length <= config_.sinks) written_[static_cast<std::size_t>(seq)] = length;  // a fresh start
    for (index l = 0; l < config_.layers; ++l) {
      index& valid = valid_[static_cast<std::size_t>(seq * config_.layers + l)];
      valid = std::min(valid, length);
    }
  }

  void reset(index seq) { truncate(seq, 0); }
  void reset() noexcept {
    std::fill(lengths_.data(), lengths_.data() + lengths_.size(), index(0));
    std::fill(written_.data(), written_.data() + written_.size(), index(0));
    std::fill(valid_.data(), valid_.data() + valid_.size(), index(0));
  }

 private:
  friend class CrossKVCache;  // stores each layer's encoder keys at position 0 (store)

  // write()'s copy at positions [first, first + T), after its checks.
  void store(index layer, index seq, HeadsView<const float> k, HeadsView<const float> v,
             index first) noexcept {
    store_rows(layer, seq, k, v, first);
    note_stored(layer, seq, first, k.tokens());
  }
  // The rows alone. T <= max_step in a ring, so T consecutive positions have T distinct slots:
  // runs of tokens stored at once never write the same memory.
  void store_rows(index layer, index seq, HeadsView<const float> k, HeadsView<const float> v,
                  index first) noexcept {
    const index d = config_.head_dim, slots = ring() ? this->slots() : 0;
    visit_kv_type(config_.type, [&]<class T>(T) {
      for (index h = 0; h < config_.kv_heads; ++h) {
        T* kd = reinterpret_cast<T*>(keys_.data() + offset(layer, seq, h));
        T* vd = reinterpret_cast<T*>(values_.data() + offset(layer, seq, h));
        for (index t = 0; t < k.tokens(); ++t) {
          const index slot = cache_slot(first + t, slots, config_.sinks);
          if constexpr (std::is_same_v<T, std::int8_t>) {
            const index s = scale_offset(layer, seq, h) + slot;
            key_scales_.data()[s] = store_q8(k.row(t, h), d, kd + slot * d);
            value_scales_.data()[s] = store_q8(v.row(t, h), d, vd + slot * d);
          } else {
            store_row(k.row(t, h), d, kd + slot * d);
            store_row(v.row(t, h), d, vd + slot * d);
          }
        }
      }
    });
  }
  // What positions [first, first + tokens) of the layer now hold, after their rows are stored.
  void note_stored(index layer, index seq, index first, index tokens) noexcept {
    written_[static_cast<std::size_t>(seq)] =
        std::max(written_[static_cast<std::size_t>(seq)], first + tokens);
    index& valid = valid_[static_cast<std::size_t>(seq * config_.layers + layer)];
    if (valid >= first) valid = first + tokens;  // else a gap stays: view() refuses past it
  }

  static void store_row(const float* from, index n, float* to) noexcept { std::copy(from, from + n, to); }
  static void store_row(const float* from, index n, bf16* to) noexcept {
    for (index i = 0; i < n; ++i) to[i] = to_bf16(from[i]);
  }
  static void store_row(const float* from, index n, f16* to) noexcept {
    for (index i = 0; i < n; ++i) to[i] = to_f16(from[i]);
  }
  // Stores a row of n values as int8 (see KVType::q8) and returns its scale.
  static float store_q8(const float* from, index n, std::int8_t* to) noexcept {
    float amax = 0.0f;
    bool finite = true;
    for (index i = 0; i < n; ++i) {
      finite = finite && std::isfinite(from[i]);
      amax = std::max(amax, std::abs(from[i]));
    }
    if (!finite) [[unlikely]] {
      std::fill(to, to + n, std::int8_t(0));
      return std::numeric_limits<float>::quiet_NaN();
    }
    float s = amax / 127.0f;
    if (!std::isfinite(127.0f * s)) s = std::nextafter(s, 0.0f);  // a row reaching FLT_MAX
    for (index i = 0; i < n; ++i)  // |from[i] / s| <= 127 up to rounding: clamped
      to[i] =
          s == 0.0f
              ? std::int8_t(0)
              : static_cast<std::int8_t>(std::clamp(std::nearbyint(from[i] / s), -127.0f, 127.0f));
    return s;
  }

  static const KVCacheConfig& checked(const KVCacheConfig& c) {
    constexpr const char* where = "KVCache";
    check(valid_kv_type(c.type), where, "type", kv_types_expected, static_cast<int>(c.type));
    check(c.layers > 0, where, "layers", "> 0", c.layers);
    check(c.kv_heads > 0, where, "kv_heads", "> 0", c.kv_heads);
    check(c.head_dim > 0, where, "head_dim", "> 0", c.head_dim);
    check(c.sequences > 0, where, "sequences", "> 0", c.sequences);
    check(c.window >= 0, where, "window", ">= 0 (0: no ring)", c.window);
    check(c.sinks >= 0, where, "sinks", ">= 0", c.sinks);
    if (c.sinks > 0) check(c.window > 0, where, "window", "> 0 (sinks belong to a ring)", c.window);
    if (c.window > 0) {
      check(c.max_step >= 1, where, "max_step", ">= 1", c.max_step);
      // slots_of() stays far from overflow: each term is at most 2^40.
      for (const auto& [name, value] : {std::pair{"window", c.window}, std::pair{"sinks", c.sinks},
                                        std::pair{"max_step", c.max_step}})
        check(value <= index(max_buffer_bytes), where, name, "<= 2^40", value);
    } else {
      check(c.capacity > 0, where, "capacity", "> 0", c.capacity);
    }
    checked_size(where, "sequences * layers * kv_heads * slots * head_dim",
                 {c.sequences, c.layers, c.kv_heads, slots_of(c), c.head_dim},
                 std::size_t(kv_type_bytes(c.type)));
    if (c.type == KVType::q8)  // the row scales, keys' and values'
      checked_size(where, "sequences * layers * kv_heads * slots (q8 scales)",
                   {c.sequences, c.layers, c.kv_heads, slots_of(c)}, 2 * sizeof(float));
    return c;
  }
  static index slots_of(const KVCacheConfig& c) noexcept {
    return c.window > 0 ? c.sinks + c.window + c.max_step - 1 : c.capacity;
  }
  // Bytes of keys (and of values). Precondition: checked(c).
  static std::size_t buffer_bytes(const KVCacheConfig& c) {
    return static_cast<std::size_t>(c.sequences * c.layers * c.kv_heads * slots_of(c) * c.head_dim *
                                    kv_type_bytes(c.type));
  }
  // q8: row scales per buffer (keys', values'), one per (sequence, layer, head, slot); else 0.
  static std::size_t scale_count(const KVCacheConfig& c) {
    return c.type == KVType::q8
               ? static_cast<std::size_t>(c.sequences * c.layers * c.kv_heads * slots_of(c))
               : 0;
  }
  bool q8() const noexcept { return config_.type == KVType::q8; }
  // Floats from the start of a scale buffer to the scales of (layer, seq, head).
  index scale_offset(index layer, index seq, index head) const noexcept {
    return ((seq * config_.layers + layer) * config_.kv_heads + head) * slots();
  }
  // Bytes from the start of a buffer to the block of (layer, seq, head).
  index offset(index layer, index seq, index head) const noexcept {
    const index per_head = slots() * config_.head_dim;
    return ((seq * config_.layers + layer) * config_.kv_heads + head) * per_head *
           kv_type_bytes(config_.type);
  }

  KVCacheConfig config_;
  AlignedBuffer<std::byte> keys_, values_;
  AlignedBuffer<float> key_scales_, value_scales_;  // q8: [seq][layer][head][slot]
  AlignedBuffer<index> lengths_;
  AlignedBuffer<index> written_;  // per sequence: one past the highest position written
  // [seq][layer]: positions [0, valid) hold what was written to the layer (view()'s bound).
  AlignedBuffer<index> valid_;
};

// Cross-attention cache: each layer's keys and values of the encoder states (vision tokens),
// projected once per sequence by the caller (the encoder width may differ from the decoder's)
// and reused by every decode step, with the encoder's padding mask. Attention over it is
// non-causal: attention(q, cache.view(layer, seq), …, {.causal = false,
// .key_valid = cache.key_valid(seq)}).
class CrossKVCache {
 public:
  // config.capacity: the most encoder tokens a sequence may have (no ring mode).
  explicit CrossKVCache(const KVCacheConfig& config)
      : cache_(checked(config)),
        key_valid_(static_cast<std::size_t>(config.sequences * config.capacity)),
        set_(static_cast<std::size_t>(config.sequences * config.layers)) {}

  // Stores layer `layer`'s projected encoder keys and values [S, kv_heads, head_dim] for
  // sequence `seq`. Every layer of one encoder input has the same S; reset(seq) starts the next
  // input. `valid` has S flags (0 = padding), the same for every layer of the input; empty keeps
  // the flags an earlier layer gave, or marks all valid. A rejected call changes nothing.
  void set(index layer, index seq, HeadsView<const float> k, HeadsView<const float> v,
           std::span<const std::uint8_t> valid = {}) {
    constexpr const char* where = "CrossKVCache::set";
    check_index(where, "seq", seq, cache_.config().sequences);
    cache_.check_write(where, layer, seq, k, v, 0);
    if (!valid.empty())
      check_eq(where, "valid size (= encoder tokens)", k.tokens(), index(valid.size()));
    const index length = cache_.length(seq);
    if (length != 0 && length != k.tokens()) [[unlikely]]
      detail::fail_check(where, "encoder tokens (as for the other layers; reset(seq) first)",
                         length, k.tokens());
    check(!is_set(layer, seq), where, "layer", "one not yet set for this input (reset(seq) first)",
          layer);
    std::uint8_t* flags = key_valid_.data() + seq * cache_.config().capacity;
    if (length != 0 && !valid.empty() && !std::equal(valid.begin(), valid.end(), flags))
        [[unlikely]]
      detail::fail_check(where, "valid", "the padding mask an earlier layer of this input gave "
                         "(or empty; reset(seq) for a new input)", "a different mask");
    if (length == 0) {
      if (valid.empty())
        std::fill(flags, flags + k.tokens(), std::uint8_t(1));
      else
        std::copy(valid.begin(), valid.end(), flags);
    }
    cache_.store(layer, seq, k, v, 0);
    if (length == 0) cache_.advance(seq, k.tokens());
    set_[static_cast<std::size_t>(seq * cache_.config().layers + layer)] = 1;
  }

  index tokens(index seq) const {
    check_index("CrossKVCache::tokens", "seq", seq, cache_.config().sequences);
    return cache_.length(seq);
  }
  // Layer `layer`'s keys and values of the current input; throws if that layer was not set.
  KVView view(index layer, index seq) const {
    check_index("CrossKVCache::view", "seq", seq, cache_.config().sequences);
    check_index("CrossKVCache::view", "layer", layer, cache_.config().layers);
    check(is_set(layer, seq), "CrossKVCache::view", "layer", "one set for the current input",
          layer);
    return cache_.view(layer, seq, tokens(seq));
  }
  std::span<const std::uint8_t> key_valid(index seq) const {
    check_index("CrossKVCache::key_valid", "seq", seq, cache_.config().sequences);
    return {key_valid_.data() + seq * cache_.config().capacity, static_cast<std::size_t>(tokens(seq))};
  }
  void reset(index seq) {
    check_index("CrossKVCache::reset", "seq", seq, cache_.config().sequences);
    cache_.reset(seq);
    std::fill_n(set_.data() + seq * cache_.config().layers, cache_.config().layers,
                std::uint8_t(0));
  }
  std::size_t bytes() const noexcept { return cache_.bytes() + key_valid_.bytes() + set_.bytes(); }

 private:
  static const KVCacheConfig& checked(const KVCacheConfig& c) {
    check(c.window == 0, "CrossKVCache", "window", "0 (cross-attention keeps every token)",
          c.window);
    return c;
  }
  bool is_set(index layer, index seq) const noexcept {
    return set_[static_cast<std::size_t>(seq * cache_.config().layers + layer)] != 0;
  }

  KVCache cache_;
  AlignedBuffer<std::uint8_t> key_valid_;  // [seq][encoder token]: 0 = padding
  AlignedBuffer<std::uint8_t> set_;  // [seq][layer]: set for the current input
};

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
