// Grouped-query attention over a KV view, streaming softmax in tiles.
//
// For query token t at position p = positions(t) and query head h (kv head g = h / (Hq / Hkv):
// each KV head repeated, not tiled), key position j is visible when
//   j < kv.length, and (causal) j <= p, and (window W > 0) j > p − W   [Mistral: W keys
//   including the query's own position], and key_valid[j] != 0 when a padding mask is given.
// With attention sinks S (StreamingLLM), a key j < S that the window has left (j <= p − W) is
// visible too: a sink. Sinks are scored like any key (SinkPositions::Original), or as from the
// query's position in a cache that holds only the sinks and the window (InCache, StreamingLLM):
// min(p, S + W − 1), where the bias is evaluated and where opt.sink_q holds the query rotated.
// Scores s_j = scale · <q, k_j>, capped to softcap·tanh(s/softcap) when softcap > 0 (Gemma 2),
// plus bias(h, p, j) (after the cap, as Hugging Face adds its mask), then
// o = Σ softmax(s)_j · v_j. A query that sees no key gets o = 0.
//
// NaN: a NaN score among the keys a query sees (a NaN in its query, in a visible key, or from
// the bias) makes that query head's whole output NaN, as PyTorch's softmax does, and so does a
// score of +inf (scale · <q, k> past the float range: exp(inf − inf)); other queries are
// untouched. A masked key is never scored for the query it is masked from. A NaN or inf in a
// value reaches the outputs through the weighted sum, and in the many-token path may reach rows
// of a block that give that value weight 0 (0 · NaN in the block's P·V product, as in PyTorch's
// math backend; docs/CONVENTIONS.md says which). Options are checked: scale and softcap finite and
// >= 0, a bias with heads() (AlibiBias, T5Bias) covering q.heads, o disjoint from q and sink_q.
//
// The g query heads of a group are processed together: each K and V row is read from memory once
// per query token for all of them (a tile stays in L1). Keys are consumed in tiles of 32 with a
// running maximum and sum
// (online softmax), so no score matrix over the whole context exists and logits of any magnitude
// are stable. exp is vectorised. Many query tokens (prefill) take the same steps in blocks of
// 64 tokens × 128 keys whose products are register tiles (block_product): S = Q·Kᵀ over the key
// block transposed once, then O = α·O + P·V over the values as stored (f32) or widened (16-bit,
// or q8 times its row scales).
//
// The cache's element type (KVView::type: f32, f16, bf16, q8) is read as stored: the one-token
// path widens each register it loads (core/simd_load.hpp), the many-token path widens each 128-key
// block once into the workspace. Results equal f32 attention over the stored (rounded) values;
// for q8 up to float rounding, as a row's scale multiplies its dot product (keys) or its softmax
// weight (values) in the one-token path, and its values when a block is widened.
//
// attention(exec, …, std::span<AttentionWorkspace>) runs the same call on an executor's threads
// (core/parallel.hpp), one workspace per worker: tasks of a KV head × a block of 64 queries (one
// token: a KV head), each writing its own outputs, so every executor gives the same bits. Decode
// over one long context splits its keys instead (attention_lse, merge_attention; the decoder does).
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tformer/cache/kv_cache.hpp"
#include "tformer/core/error.hpp"
#include "tformer/core/memory.hpp"
#include "tformer/core/parallel.hpp"
#include "tformer/core/positions.hpp"
#include "tformer/core/prefetch.hpp"
#include "tformer/core/simd.hpp"
#include "tformer/core/simd_load.hpp"
#include "tformer/core/views.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

// Where a query scores the sinks from once its window has left them (see the header).
enum class SinkPositions {
  Original,  // its own position p: a sink is an ordinary key at distance p − j
  InCache,   // min(p, sinks + window − 1): distances stay within what the cache spans
};

struct AttentionOptions {
  float scale = 0.0f;    // 0: 1/sqrt(head_dim); Gemma 2: query_pre_attn_scalar^−1/2
  float softcap = 0.0f;  // 0: off
  index window = 0;      // 0: global; W > 0: keys (p − W, p]
  bool causal = true;
  std::span<const std::uint8_t> key_valid = {};  // empty, or kv.length flags (0 = padding)
  index sinks = 0;  // with a window: keys [0, sinks) stay visible (attention sinks)
  SinkPositions sink_positions = SinkPositions::Original;
  // Queries for the sinks, q's shape: with RoPE and InCache, q rotated at sink_position(p)
  // instead of p. Empty: q (Original, or positions only through the bias).
  HeadsView<const float> sink_q = {};
};

// No additive bias.
struct NoBias {
  float operator()(index, index, index) const noexcept { return 0.0f; }
};

// Scratch for one attention call: per query head of a group, its running accumulator and the
// scores of a tile. Allocated at construction.
class AttentionWorkspace {
 public:
  static constexpr index tile = 32;        // keys per step of the one-token (decode) path
  // Blocks of the many-token path: 64 × 128 ran 1.02–1.14× as fast as 32 × 64 (0.99× for a
  // group of 32 on two threads; docs/PERFORMANCE.md, session 57).
  static constexpr index query_tile = 64;  // query tokens per block of the many-token path
  static constexpr index key_tile = 128;   // keys per block of the many-token path
  // Throws unless group_size >= 1, head_dim >= 1 and the largest buffer is at most 2^40 bytes.
  AttentionWorkspace(index group_size, index head_dim)
      : group_(checked(group_size, head_dim)),
        head_dim_(head_dim),
        acc_(size(group_size * head_dim)),
        scores_(size(group_size * tile)),
        q_block_(size(query_tile * group_size * head_dim)),
        o_block_(size(query_tile * group_size * head_dim)),
        s_block_(size(query_tile * group_size * key_tile)),
        m_(size(query_tile * group_size)),
        l_(size(query_tile * group_size * index(simd::lanes))),
        alpha_(size(query_tile * group_size)),
        k_block_(size(key_tile * head_dim)),
        v_block_(size(key_tile * head_dim)),
        kt_block_(size(key_tile * head_dim)),
        q_rows_(size(2 * group_size)),
        o_rows_(size(group_size)) {}
  index group_size() const noexcept { return group_; }
  index head_dim() const noexcept { return head_dim_; }
  std::size_t bytes() const noexcept {
    return acc_.bytes() + scores_.bytes() + q_block_.bytes() + o_block_.bytes() + s_block_.bytes() +
           m_.bytes() + l_.bytes() + alpha_.bytes() + q_rows_.bytes() + o_rows_.bytes() +
           k_block_.bytes() + v_block_.bytes() + kt_block_.bytes();
  }
  float* acc(index h) noexcept { return acc_.data() + h * head_dim_; }
  float* scores(index h) noexcept { return scores_.data() + h * tile; }
  // The one-token path's running state (attention_kernels::DecodeState) for the group.
  float* decode_max() noexcept { return m_.data(); }
  float* decode_sum() noexcept { return l_.data(); }
  // Many-token path: a block of query_tile · group rows.
  float* q_block() noexcept { return q_block_.data(); }
  float* o_block() noexcept { return o_block_.data(); }
  float* s_block() noexcept { return s_block_.data(); }
  float* row_max() noexcept { return m_.data(); }
  float* row_sum() noexcept { return l_.data(); }          // simd::lanes partial sums per row
  float* row_rescale() noexcept { return alpha_.data(); }  // α of each row for the block's P·V
  // Many-token path over a 16-bit or q8 cache: a block of key_tile keys and values widened to
  // float (q8 with its row scales).
  float* k_block() noexcept { return k_block_.data(); }
  float* v_block() noexcept { return v_block_.data(); }
  // Many-token path, every cache type: the key block transposed, [head_dim, key_tile].
  float* kt_block() noexcept { return kt_block_.data(); }
  // One-token path: per head of the group, its query row, sink query row and output row.
  const float** q_rows() noexcept { return q_rows_.data(); }
  const float** sink_q_rows() noexcept { return q_rows_.data() + group_; }
  float** o_rows() noexcept { return o_rows_.data(); }

 private:
  static std::size_t size(index n) { return static_cast<std::size_t>(std::max<index>(n, 0)); }
  static index checked(index group_size, index head_dim) {
    constexpr const char* where = "AttentionWorkspace";
    check(group_size >= 1, where, "group_size", ">= 1", group_size);
    check(head_dim >= 1, where, "head_dim", ">= 1", head_dim);
    checked_size(where, "query_tile * group_size * head_dim", {query_tile, group_size, head_dim},
                 sizeof(float));
    checked_size(where, "query_tile * group_size * key_tile", {query_tile, group_size, key_tile},
                 sizeof(float));
    checked_size(where, "key_tile * head_dim", {key_tile, head_dim}, sizeof(float));
    return group_size;
  }
  index group_, head_dim_;
  AlignedBuffer<float> acc_, scores_, q_block_, o_block_, s_block_, m_, l_, alpha_, k_block_,
      v_block_, kt_block_;
  AlignedBuffer<const float*> q_rows_;
  AlignedBuffer<float*> o_rows_;
};

namespace attention_kernels {

inline bool valid(const AttentionOptions& opt, index kp) noexcept {
  return opt.key_valid.empty() || opt.key_valid[static_cast<std::size_t>(kp)];
}
// Whether key position kp is in the window of a query at position p (causal, window, padding).
inline bool in_window(const AttentionOptions& opt, index p, index kp) noexcept {
  return (!opt.causal || kp <= p) && (opt.window == 0 || kp > p - opt.window) && valid(opt, kp);
}
// Whether kp is a sink the window of p has left.
inline bool as_sink(const AttentionOptions& opt, index p, index kp) noexcept {
  return kp < opt.sinks && opt.window > 0 && kp <= p - opt.window && valid(opt, kp);
}
// Whether key position kp is visible to a query at position p (the header's rule).
inline bool visible(const AttentionOptions& opt, index p, index kp) noexcept {
  return in_window(opt, p, kp) || as_sink(opt, p, kp);
}
// The position a query at p scores its sinks from.
inline index sink_position(const AttentionOptions& opt, index p) noexcept {
  return opt.sink_positions == SinkPositions::InCache && opt.window > 0
             ? std::min(p, opt.sinks + opt.window - 1)
             : p;
}

// <a, b> over n values, b stored as T.
template <FloatStorage T>
inline float dot(const float* a, const T* b, index n) noexcept {
  index i = 0;
  float total = 0.0f;
#if TFORMER_HAS_SIMD
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  B acc0(0.0f), acc1(0.0f);
  for (const index end2 = n / (2 * W) * (2 * W); i < end2; i += 2 * W) {
    acc0 = xsimd_compat::fma(B::load_unaligned(a + i), simd::load_float(b + i), acc0);
    acc1 = xsimd_compat::fma(B::load_unaligned(a + i + W), simd::load_float(b + i + W), acc1);
  }
  total = xsimd_compat::reduce_add(acc0 + acc1);
#endif
  for (; i < n; ++i) total = simd::multiply_add(a[i], as_float(b[i]), total);
  return total;
}

// to[i] = from[i] as float for i < n.
template <FloatStorage T>
inline void widen(const T* from, index n, float* to) noexcept {
  index i = 0;
#if TFORMER_HAS_SIMD
  constexpr index W = static_cast<index>(simd::lanes);
  for (const index end = n / W * W; i < end; i += W) simd::load_float(from + i).store_unaligned(to + i);
#endif
  for (; i < n; ++i) to[i] = as_float(from[i]);
}

// to[j·d + i] = scale[j] · from[j·d + i] for j < n, i < d: q8 rows widened with their scales.
inline void widen_scaled(const std::int8_t* from, const float* scale, index n, index d,
                         float* to) noexcept {
  for (index j = 0; j < n; ++j) {
    const std::int8_t* row = from + j * d;
    float* out = to + j * d;
    index i = 0;
#if TFORMER_HAS_SIMD
    constexpr index W = static_cast<index>(simd::lanes);
    const simd::batch f(scale[j]);
    for (const index end = d / W * W; i < end; i += W)
      (simd::load_float(row + i) * f).store_unaligned(out + i);
#endif
    for (; i < d; ++i) out[i] = as_float(row[i]) * scale[j];
  }
}

// s[j] *= f[j] for j < n: q8 row scales applied to dot products or softmax weights.
inline void scale_each(float* s, const float* f, index n) noexcept {
  index j = 0;
#if TFORMER_HAS_SIMD
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  for (const index end = n / W * W; j < end; j += W)
    (B::load_unaligned(s + j) * B::load_unaligned(f + j)).store_unaligned(s + j);
#endif
  for (; j < n; ++j) s[j] *= f[j];
}

// s[j] = exp(scale·s[j] − m) for j < n (−inf scores give 0; vectors by simd::exp_nonpositive,
// the tail by std::exp), and sum[i] = α·sum[i] + lane i's share of their total, for
// i < simd::lanes: a row's sum kept in lanes is added up once, at its end, not once per block of
// keys (0.997–1.011× at 32/8 × 128 T 512, 1.03–1.05× with heads of 64 on one thread, session 58).
// Precondition: m is at least the largest scale·s[j], give or take its rounding.
[[gnu::always_inline]] inline void exp_shifted_lanes(float* s, index n, float m, float scale,
                                                     float alpha, float* sum) noexcept {
  index j = 0;
  float rest = 0.0f;
#if TFORMER_HAS_SIMD
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  const B f(scale), minus_m(-m);
  B acc = B::load_unaligned(sum) * B(alpha);
  for (const index end = n / W * W; j < end; j += W) {
    const B e = simd::exp_nonpositive(xsimd_compat::fma(B::load_unaligned(s + j), f, minus_m));
    e.store_unaligned(s + j);
    acc += e;
  }
  acc.store_unaligned(sum);
#else
  sum[0] *= alpha;
#endif
  for (; j < n; ++j) {
    s[j] = std::exp(simd::multiply_add(s[j], scale, -m));
    rest += s[j];
  }
  sum[0] += rest;
}

// s[j] = exp(s[j] − m) for j < n; returns their sum. −inf scores give 0. Precondition: m is at
// least the largest s[j].
inline float exp_shifted(float* s, index n, float m) noexcept {
  alignas(64) float sum[simd::lanes] = {};
  exp_shifted_lanes(s, n, m, 1.0f, 1.0f, sum);
#if TFORMER_HAS_SIMD
  return xsimd_compat::reduce_add(simd::batch::load_aligned(sum));
#else
  return sum[0];
#endif
}

// out[j] = <q, key(g, k0 + j)> for j < n, keys stored as T. W keys at a time: one accumulator
// per key over head_dim, reduced together (reduce_add_rows), so no key pays a horizontal sum of
// its own.
template <FloatStorage T>
inline void tile_dots(const float* q, const KVView& kv, index g, index k0, index n,
                      float* out) noexcept {
  const index d = kv.head_dim;
  const T* keys = kv.key<T>(g, k0);  // the tile's rows are contiguous (attend splits at wraps)
  index j = 0;
#if TFORMER_HAS_SIMD
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  const index dv = d / W * W;
  for (const index nv = n / W * W; j < nv; j += W) {
    B acc[W];
    for (index w = 0; w < W; ++w) acc[w] = B(0.0f);
    for (index i = 0; i < dv; i += W) {
      const B qv = B::load_unaligned(q + i);
      for (index w = 0; w < W; ++w)
        acc[w] = xsimd_compat::fma(qv, simd::load_float(keys + (j + w) * d + i), acc[w]);
    }
    B sums = xsimd_compat::reduce_add_rows(acc);
    if (dv < d) {  // head_dim not a multiple of W: the rest per key
      alignas(64) float tail[W];
      for (index w = 0; w < W; ++w) {
        const T* key = keys + (j + w) * d;
        float t = 0.0f;
        for (index i = dv; i < d; ++i) t = simd::multiply_add(q[i], as_float(key[i]), t);
        tail[w] = t;
      }
      sums += B::load_aligned(tail);
    }
    sums.store_unaligned(out + j);
  }
#endif
  for (; j < n; ++j) out[j] = dot(q, keys + j * d, d);
}

// Cache lines a row of `bytes` bytes starts (a row that is not whole lines shares its last).
constexpr index lines_of(index bytes) noexcept { return (bytes + 63) / 64; }

// The prefetch of a tile's keys and values `ahead` bytes on. Each pass asks for half of the lines
// of both, key and value lines in turn: the score pass lines [0, half) of each, the value pass
// [half, 2·half). Each pass asking for its own stream only (keys while scoring, values while
// summing) left the other stream idle half the time; with both, f32 decode from DRAM is
// 1.21–1.32× faster at L 4096–32768 (docs/PERFORMANCE.md, session 48). A line is a 64-byte step
// from the tile's first row: exact where rows are whole lines; otherwise 2·half runs a little
// past the tile's end (hints: nothing is missed, some lines are asked for twice).
// Lines go to L1 (one asked for per line read, so about a tile is in flight): against L2, decode
// from DRAM measured 0.97–1.16× at 16k–32k keys for f32 head_dim 128 (median 1.06 of 16 runs,
// AVX-512 and AVX2), up to 1.18–1.41× for head_dim 64 and f16, and within 3 % in L3
// (docs/PERFORMANCE.md, session 54).
struct TilePrefetch {
  const char* keys = nullptr;    // the tile's first key row
  const char* values = nullptr;  // and its first value row
  index ahead = 0;               // bytes; 0: no prefetch
  index half = 0;                // lines of one stream each pass asks for

  // Line `number` of the keys or of the values, `ahead` bytes on, into L1 (a line past the tile
  // is no out-of-bounds pointer: prefetch() forms the address as an integer).
  void line(index number, bool of_values) const noexcept {
    prefetch<CacheLevel::L1>(of_values ? values : keys, ahead + number * 64);
  }
  // Point c of a sequence that alternates key and value lines: line c / 2 of keys or values.
  void point(index c) const noexcept { line(c >> 1, (c & 1) != 0); }
  // The first `bytes` bytes of the keys and of the values, `ahead` bytes on, into `level` in one
  // run (bytes <= the tile's rows: the pointers stay in the tile).
  template <CacheLevel level>
  void run(index bytes) const noexcept {
    for (index b = 0; b < bytes; b += 64) {
      prefetch<level>(keys + b, ahead);
      prefetch<level>(values + b, ahead);
    }
  }
};

#if TFORMER_HAS_SIMD
// One register of a key or value row as floats, shared by a batch of heads. f32 on AVX-512 stays
// in a register: GCC folds its load into each head's FMA (decode 1.03–1.09× slower, measured).
// Converted rows are in a register already; AVX2 (16 registers) measured no gain.
template <FloatStorage T>
inline simd::batch shared_row(const T* row) noexcept {
  simd::batch v = simd::load_float(row);
  if constexpr (simd::lanes == 16 && std::is_same_v<T, float>) simd::in_register(v.data);
  return v;
}
#endif

// out[h][j] = <q[h], key(g, k0 + j)> for H heads and j < n: W / H keys of H heads per
// reduce_add_rows, each key register shared by the H heads (shared_row; tile_dots: one per head).
// A head_dim that is not a multiple of W takes dot() per key, one horizontal sum each: slower
// than tile_dots' blocks (head_dims of real models are multiples of 16).
template <int H, FloatStorage T>
inline void tile_dots_heads(const float* const* q, const KVView& kv, index g, index k0, index n,
                            float* const* out, [[maybe_unused]] const TilePrefetch& pf) noexcept {
  const index d = kv.head_dim;
  const T* keys = kv.key<T>(g, k0);
  index j = 0;
#if TFORMER_HAS_SIMD
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  constexpr index J = W / H;  // keys per block
  static_assert(J % 2 == 0, "a block's prefetch points pair key and value lines");
  const index row_lines = lines_of(d * index(sizeof(T)));  // prefetch points per key row
  if (d % W == 0) {
    for (const index nv = n / J * J; j < nv; j += J) {
      B acc[W];  // acc[h·J + w]: head h, key j + w
      for (index w = 0; w < W; ++w) acc[w] = B(0.0f);
      for (index i = 0; i < d; i += W) {
        B qv[H];
        for (int h = 0; h < H; ++h) qv[h] = B::load_unaligned(q[h] + i);
        for (index w = 0; w < J; ++w) {
          const T* row = keys + (j + w) * d + i;
          // The block's points in turn: an even w asks for a key line, the next w for the value
          // line of the same number.
          if (pf.ahead != 0 && (i * index(sizeof(T))) % 64 == 0)
            pf.line(((j / J) * row_lines + i * index(sizeof(T)) / 64) * (J / 2) + w / 2,
                    w % 2 != 0);
          const B k = shared_row(row);
          for (int h = 0; h < H; ++h) acc[h * J + w] = xsimd_compat::fma(qv[h], k, acc[h * J + w]);
        }
      }
      alignas(64) float sums[W];
      xsimd_compat::reduce_add_rows(acc).store_aligned(sums);
      for (int h = 0; h < H; ++h) std::copy_n(sums + h * J, J, out[h] + j);
    }
  }
#endif
  for (; j < n; ++j)
    for (int h = 0; h < H; ++h) out[h][j] = dot(q[h], keys + j * d, d);
}

#if TFORMER_HAS_SIMD
// acc[i, i + R·W) = acc · alpha + Σ_{j < n} p[j] · values[j·d + i …]: R registers of the output
// held across the tile, the keys split over K interleaved partial sums (added at the end), so
// R·K >= 8 independent FMA chains hide the FMA latency whatever the register width.
template <int R, int K, FloatStorage T>
inline void values_chunk(float* acc, const simd::batch& alpha, const float* p, const T* values,
                         index d, index n, index i) noexcept {
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  B r[K][R];
  for (int k = 0; k < R; ++k) {
    r[0][k] = B::load_unaligned(acc + i + k * W) * alpha;
    for (int s = 1; s < K; ++s) r[s][k] = B(0.0f);
  }
  index j = 0;
  for (; j + K <= n; j += K)
    for (int s = 0; s < K; ++s) {
      const B pj(p[j + s]);
      const T* v = values + (j + s) * d + i;
      for (int k = 0; k < R; ++k) r[s][k] = xsimd_compat::fma(pj, simd::load_float(v + k * W), r[s][k]);
    }
  for (; j < n; ++j) {
    const B pj(p[j]);
    for (int k = 0; k < R; ++k)
      r[0][k] = xsimd_compat::fma(pj, simd::load_float(values + j * d + i + k * W), r[0][k]);
  }
  for (int k = 0; k < R; ++k) {
    for (int s = 1; s < K; ++s) r[0][k] += r[s][k];
    r[0][k].store_unaligned(acc + i + k * W);
  }
}
#endif

// acc = acc · alpha + Σ_{j < n} p[j] · value(g, k0 + j): head_dim in chunks held in registers
// across the tile: 8 registers, then (AVX-512) 64 floats as 4 registers × 2 key sets, so head_dim
// 64 keeps 8 independent FMA chains at every register width; the rest one register × 4 key sets.
template <FloatStorage T>
inline void tile_values(float* acc, float alpha, const float* p, const KVView& kv, index g,
                        index k0, index n) noexcept {
  const index d = kv.head_dim;
  const T* values = kv.value<T>(g, k0);  // contiguous rows, as in tile_dots
  index i = 0;
#if TFORMER_HAS_SIMD
  using B = simd::batch;
  constexpr int W = static_cast<int>(B::size);
  const B a(alpha);
  // 8 registers (32, 64 or 128 floats); on AVX-512 then 64 floats as 4 registers × 2 key sets;
  // then one register × 4 key sets.
  for (const index end = d / (8 * W) * (8 * W); i < end; i += 8 * W)
    values_chunk<8, 1>(acc, a, p, values, d, n, i);
  if constexpr (W == 16)
    for (const index end = d / 64 * 64; i < end; i += 64) values_chunk<4, 2>(acc, a, p, values, d, n, i);
  for (const index end = d / W * W; i < end; i += W) values_chunk<1, 4>(acc, a, p, values, d, n, i);
#endif
  for (; i < d; ++i) {
    float t = acc[i] * alpha;
    for (index j = 0; j < n; ++j) t = simd::multiply_add(p[j], as_float(values[j * d + i]), t);
    acc[i] = t;
  }
}

#if TFORMER_HAS_SIMD
// For each of H heads, acc[h][i, i + R·W) = acc[h] · alpha[h] + Σ_{j < n} p[h][j] · values[j·d + i
// …]: H·R output registers held across the tile, each value register shared by the H heads
// (shared_row; tile_values loads it per head). Per head: acc · alpha, then one FMA per key in key
// order.
template <int H, int R, FloatStorage T>
inline void values_heads_chunk(float* const* acc, const float* alpha, const float* const* p,
                               const T* values, index d, index n, index i,
                               const TilePrefetch& pf) noexcept {
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  // Prefetch points per row of a chunk (1 where a chunk is shorter than a line).
  constexpr index chunk_lines = std::max<index>(1, R * W * index(sizeof(T)) / 64);
  B r[H][R];
  for (int h = 0; h < H; ++h) {
    const B a(alpha[h]);
    for (int k = 0; k < R; ++k) r[h][k] = B::load_unaligned(acc[h] + i + k * W) * a;
  }
  for (index j = 0; j < n; ++j) {
    B v[R];
    for (int k = 0; k < R; ++k) {
      const T* row = values + j * d + i + k * W;
      if (pf.ahead != 0 && ((i + k * W) * index(sizeof(T))) % 64 == 0) {
        // The point sequence after the score pass's, chunk by chunk, row by row. An even
        // chunk_lines pairs a row's lines (i is a multiple of R·W, so the point's parity is the
        // line's); an odd one alternates at run time.
        const index reg_line = k * W * index(sizeof(T)) / 64;  // this register's line in the row
        if constexpr (chunk_lines % 2 == 0)
          pf.line(pf.half + (i / (R * W) * n + j) * (chunk_lines / 2) + reg_line / 2,
                  reg_line % 2 != 0);
        else
          pf.point(2 * pf.half + i * index(sizeof(T)) / 64 * n + j * chunk_lines + reg_line);
      }
      v[k] = shared_row(row);
    }
    for (int h = 0; h < H; ++h) {
      const B pj(p[h][j]);
      for (int k = 0; k < R; ++k) r[h][k] = xsimd_compat::fma(pj, v[k], r[h][k]);
    }
  }
  for (int h = 0; h < H; ++h)
    for (int k = 0; k < R; ++k) r[h][k].store_unaligned(acc[h] + i + k * W);
}
#endif

// Heads of a group that take their dot products and value passes together: their registers fit
// the register file (value pass: 4 heads × 4 accumulators + 4 loaded rows + a broadcast, 21 of
// AVX-512's 32 registers; 2 × 4 + 4 + 1 = 13 of AVX2's 16).
inline constexpr index pass_heads = simd::lanes == 16 ? 4 : 2;

// tile_values for H heads at once: acc[h] = acc[h] · alpha[h] + Σ_j p[h][j] · value(g, k0 + j).
// A head's sums are the same bits whatever H is (which heads of a batch are live depends on data).
template <int H, FloatStorage T>
inline void tile_values_heads(float* const* acc, const float* alpha, const float* const* p,
                              const KVView& kv, index g, index k0, index n,
                              [[maybe_unused]] const TilePrefetch& pf) noexcept {
  const index d = kv.head_dim;
  const T* values = kv.value<T>(g, k0);
  index i = 0;
#if TFORMER_HAS_SIMD
  constexpr index W = static_cast<index>(simd::lanes);
  for (const index end = d / (4 * W) * (4 * W); i < end; i += 4 * W)
    values_heads_chunk<H, 4>(acc, alpha, p, values, d, n, i, pf);
  for (const index end = d / W * W; i < end; i += W)
    values_heads_chunk<H, 1>(acc, alpha, p, values, d, n, i, pf);
#endif
  for (index h = 0; h < H; ++h)
    for (index c = i; c < d; ++c) {
      float t = acc[h][c] * alpha[h];
      for (index j = 0; j < n; ++j) t = simd::multiply_add(p[h][j], as_float(values[j * d + c]), t);
      acc[h][c] = t;
    }
}

// tile_values_heads for the first `live` (1 to pass_heads) of the arrays.
template <FloatStorage T>
inline void tile_values_live(index live, float* const* acc, const float* alpha,
                             const float* const* p, const KVView& kv, index g, index k0, index n,
                             const TilePrefetch& pf) noexcept {
  [&]<int... H>(std::integer_sequence<int, H...>) {
    (void)((live == H + 1 ? (tile_values_heads<H + 1, T>(acc, alpha, p, kv, g, k0, n, pf), true)
                          : false) ||
           ...);
  }
  (std::make_integer_sequence<int, static_cast<int>(pass_heads)>{});
}

// The largest s[j] for j < n, −inf when n is 0. With a NaN among them, as scale_max: −inf or the
// largest of some others.
inline float max_of(const float* s, index n) noexcept {
  index j = 0;
  float m = -std::numeric_limits<float>::infinity();
#if TFORMER_HAS_SIMD
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  if (n >= W) {
    B vm(m);
    for (const index end = n / W * W; j < end; j += W)
      vm = xsimd::max(vm, B::load_unaligned(s + j));
    m = xsimd_compat::reduce_max(vm);
  }
#endif
  for (; j < n; ++j) m = std::max(m, s[j]);
  return m;
}

// s[j] *= scale for j < n; returns the largest, −inf when n is 0. With a NaN among them the result
// is −inf or the largest of some others: the callers' NaN rules (has_nan, exp) then make the
// output NaN either way.
inline float scale_max(float* s, index n, float scale) noexcept {
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  index j = 0;
  float m = neg_inf;
#if TFORMER_HAS_SIMD
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  if (n >= W) {
    const B f(scale);
    B vm(neg_inf);
    for (const index end = n / W * W; j < end; j += W) {
      const B x = B::load_unaligned(s + j) * f;
      x.store_unaligned(s + j);
      vm = xsimd::max(vm, x);
    }
    m = xsimd_compat::reduce_max(vm);
  }
#endif
  for (; j < n; ++j) {
    s[j] *= scale;
    m = std::max(m, s[j]);
  }
  return m;
}

// exp(m_old − m_new), the factor for sums kept against the old maximum once it is m_new; 0 before
// any key (m_old −inf). Where the maximum did not move (most tiles after the first few) it is 1
// without a call to exp. std::exp(0) is exactly 1, so the bits are those of the call.
// Decode measured 1.03–1.10× faster without the call (session 55).
// Precondition: m_new >= m_old, or either is NaN.
inline float rescale_factor(float m_old, float m_new) noexcept {
  if (m_old == m_new && std::isfinite(m_old)) return 1.0f;
  return m_old == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(m_old - m_new);
}

// Whether s[0, n) holds a NaN: asked only when a tile's maximum is −inf, i.e. when std::max,
// std::max_element or scale_max may have skipped NaN scores (std::max compares with <;
// xsimd::max and reduce_max may drop a NaN lane), so that a NaN score makes the output NaN
// without a test per key on the hot path.
inline bool has_nan(const float* s, index n) noexcept {
  for (index j = 0; j < n; ++j)
    if (std::isnan(s[j])) return true;
  return false;
}

// Running softmax state of one query token's group over some keys: per head the maximum
// score m (NaN once a NaN score was seen), the sum l of exp(score − m), and acc, the sum of
// exp(score − m) · value; plus the scores of a tile. In an AttentionWorkspace, or in a caller's
// buffers for a part of the keys (split-K decode).
struct DecodeState {
  float* m;       // [group]
  float* l;       // [group]
  float* acc;     // [group, head_dim]
  float* scores;  // [group, AttentionWorkspace::tile]
  index head_dim;
  float* acc_of(index h) const noexcept { return acc + h * head_dim; }
  float* scores_of(index h) const noexcept { return scores + h * AttentionWorkspace::tile; }
  // No key seen yet.
  void reset(index group) const noexcept {
    for (index h = 0; h < group; ++h) {
      m[h] = -std::numeric_limits<float>::infinity();
      l[h] = 0.0f;
      std::fill(acc_of(h), acc_of(h) + head_dim, 0.0f);
    }
  }
};

// accumulate() for keys and values stored as T.
template <FloatStorage T, class Bias>
void accumulate_as(const float* const* q, index group, index first_head, const KVView& kv,
                   index g, index lo, index hi, index position, const AttentionOptions& opt,
                   float scale, const Bias& bias, const DecodeState& st) noexcept {
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  const index d = kv.head_dim;
  // Prefetch distance, in keys: the next tile. With both streams asked for in turn (TilePrefetch),
  // 1 tile ahead measured faster than 2 or 4 (4 was best when each pass asked for its own stream).
  constexpr index ahead = AttentionWorkspace::tile;
  // A view of fewer than 5 tiles takes none, as the prefetch 4 tiles ahead before it took none.
  // Where such a view is in cache its prefetches only take load slots (L 64 and 128 re-read:
  // 0.80–0.88× with them); from 5 tiles on they gain or cost little (L 256–1024: 0.95–1.02×).
  const bool stream = kv.length >= 5 * AttentionWorkspace::tile;
  constexpr bool q8 = std::is_same_v<T, std::int8_t>;
  // No bias, soft-cap or padding mask: a score is its dot product scaled, one vector pass.
  const bool plain = std::is_same_v<Bias, NoBias> && opt.softcap == 0.0f && opt.key_valid.empty();
  for (index k0 = lo, n = 0; k0 < hi; k0 += n) {
    n = std::min({AttentionWorkspace::tile, hi - k0, kv.contiguous(k0)});
    // Streaming from DRAM: the rows `ahead` keys on are asked for while these are read, one line
    // per line read, by the first batch of heads, key and value lines in turn (TilePrefetch); a
    // group too small for a batch asks for them in one run here. (Before session 29 every group
    // took one run of the tile 2 tiles ahead into L1, which evicted the tile every head reads and
    // stalled while the run's misses queued; for a group of 4, one run 1 tile ahead into L1 is
    // still 0.47–0.58× the spread, session 54; docs/PERFORMANCE.md.) Past hi too, up to what the
    // view holds (prefetchable(): its length, or the positions stored after a part()): the
    // decoder's split-K parts end every 512 keys, and the next part's first keys are read next (a
    // prefetch never faults, so a part's end needs no stop).
    const index ahead_bytes =
        stream && k0 + ahead + n <= kv.prefetchable() && kv.contiguous(k0) >= ahead + n
            ? ahead * d * index(sizeof(T))
            : 0;
    const TilePrefetch tile_pf{reinterpret_cast<const char*>(kv.key<T>(g, k0)),
                               reinterpret_cast<const char*>(kv.value<T>(g, k0)), ahead_bytes,
                               n * lines_of(d * index(sizeof(T))) / 2};
    if (group < pass_heads && ahead_bytes != 0) {
      // Into L1 where the run's keys and values take at most 32 KiB, the smallest L1 data cache of
      // current x86 cores: 1.03–1.15× faster than into L2 at head_dim 64 and 128 (f32). A 64 KiB
      // run (head_dim 256, f32) gained nothing in L1 (0.98–1.00×, what two builds of one code
      // differ by) and would overflow a 32 KiB L1, so it goes to L2 (session 54).
      constexpr index l1_run_bytes = 32 * 1024;
      const index stream_bytes = n * d * index(sizeof(T));  // of the keys, and of the values
      if (2 * stream_bytes <= l1_run_bytes)
        tile_pf.run<CacheLevel::L1>(stream_bytes);
      else
        tile_pf.run<CacheLevel::L2>(stream_bytes);
    }
    // Heads in batches of pass_heads: each head's scores and softmax, then the batch's values in
    // one pass (a head that sees nothing yet takes no value pass, as alone).
    for (index h0 = 0; h0 < group; h0 += pass_heads) {
      const index batch = std::min(pass_heads, group - h0);
      float alpha[pass_heads];
      float* acc[pass_heads];
      const float* p[pass_heads];
      index live = 0;
      {
        // Runs at most once; written as a loop because `if (batch == pass_heads)` here measured
        // 20 % slower in cache (L 512, GCC 12: different code for the same work).
        index h = h0;
        for (; h + pass_heads <= h0 + batch; h += pass_heads) {
          float* out[pass_heads];
          for (index e = 0; e < pass_heads; ++e) out[e] = st.scores_of(h + e);
          tile_dots_heads<static_cast<int>(pass_heads), T>(q + h, kv, g, k0, n, out,
                                                           h == 0 ? tile_pf : TilePrefetch{});
        }
        for (; h < h0 + batch; ++h) tile_dots<T>(q[h], kv, g, k0, n, st.scores_of(h));
      }
      for (index h = h0; h < h0 + batch; ++h) {
        float* s = st.scores_of(h);
        if constexpr (q8) scale_each(s, kv.key_scale(g, k0), n);  // <q, k̂> = s_k · <q, k_int>
        float tile_max;
        if (plain) {
          // One pass; its lane maximum is a tree (reduce_max). std::max_element here was a serial
          // chain of 32 maxima per head and tile: 12 % of decode time in cache (session 30).
          tile_max = scale_max(s, n, scale);
        } else {
          for (index j = 0; j < n; ++j) {
            float x = s[j] * scale;
            if (opt.softcap > 0.0f) x = opt.softcap * std::tanh(x / opt.softcap);
            s[j] = valid(opt, k0 + j) ? x + bias(first_head + h, position, k0 + j) : neg_inf;
          }
          tile_max = *std::max_element(s, s + n);
        }
        const float m_new = std::max(st.m[h], tile_max);
        if (m_new == neg_inf) [[unlikely]] {  // nothing visible yet, or only NaN scores
          if (has_nan(s, n)) st.m[h] = st.l[h] = std::numeric_limits<float>::quiet_NaN();
          continue;  // else weights stay 0
        }
        // A NaN max (marked above) stays NaN through std::max, alpha and the sums.
        alpha[live] = rescale_factor(st.m[h], m_new);
        st.l[h] = st.l[h] * alpha[live] + exp_shifted(s, n, m_new);
        st.m[h] = m_new;
        if constexpr (q8) scale_each(s, kv.value_scale(g, k0), n);  // p · v̂ = (p · s_v) · v_int
        acc[live] = st.acc_of(h);
        p[live] = s;
        ++live;
      }
      if (batch == pass_heads)
        tile_values_live<T>(live, acc, alpha, p, kv, g, k0, n, h0 == 0 ? tile_pf : TilePrefetch{});
      else  // the group's last heads, fewer than pass_heads: one at a time
        for (index h = 0; h < live; ++h) tile_values<T>(acc[h], alpha[h], p[h], kv, g, k0, n);
    }
  }
}

// Adds keys [lo, hi) of kv head g to the state of one query token (its group of `group`
// heads, rows q[h]), scored from `position`. A tile's keys and values (2 · 32 rows) stay in L1
// while every head of the group uses them.
template <class Bias>
void accumulate(const float* const* q, index group, index first_head, const KVView& kv, index g,
                index lo, index hi, index position, const AttentionOptions& opt, float scale,
                const Bias& bias, const DecodeState& st) noexcept {
  visit_kv_type(kv.type, [&]<class T>(T) {
    accumulate_as<T>(q, group, first_head, kv, g, lo, hi, position, opt, scale, bias, st);
  });
}

// The state of one query token at `position` against kv head g over its window keys
// [lo, hi) scored with q, after the sinks [0, sinks_end) the window has left (sinks_end <= lo)
// scored with q_sink.
template <class Bias>
void attend_state(const float* const* q, const float* const* q_sink, index group,
                  index first_head, const KVView& kv, index g, index sinks_end, index lo,
                  index hi, index position, const AttentionOptions& opt, float scale,
                  const Bias& bias, const DecodeState& st) noexcept {
  st.reset(group);
  if (sinks_end > 0)
    accumulate(q_sink, group, first_head, kv, g, 0, sinks_end, sink_position(opt, position), opt,
               scale, bias, st);
  accumulate(q, group, first_head, kv, g, lo, hi, position, opt, scale, bias, st);
}

// o = acc / l of head h of the state (0 where no key was seen; NaN stays NaN).
inline void finish_head(const DecodeState& st, index h, float* o) noexcept {
  const float inv = st.l[h] == 0.0f ? 0.0f : 1.0f / st.l[h];
  for (index i = 0; i < st.head_dim; ++i) o[i] = st.acc_of(h)[i] * inv;
}

// o[h] = acc / l per head of the state.
inline void finish(const DecodeState& st, index group, float* const* o) noexcept {
  for (index h = 0; h < group; ++h) finish_head(st, h, o[h]);
}

// log Σ exp(score) of a state's head: m + log l, −inf when no key was seen, NaN stays NaN.
inline float log_sum_exp(float m, float l) noexcept {
  return l == 0.0f ? -std::numeric_limits<float>::infinity() : m + std::log(l);
}

// Head h of `count` states over disjoint key sets, part(c) for c < count, combined in that
// order into `into` (which may be part(0)): the state over all of them. Any NaN maximum makes
// the result NaN.
template <class PartOf>
void merge_states(index count, const PartOf& part, index h, const DecodeState& into) noexcept {
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  const index d = into.head_dim;
  float m = neg_inf;
  bool nan = false;
  for (index c = 0; c < count; ++c) {
    const float mc = part(c).m[h];
    nan = nan || std::isnan(mc);
    m = std::max(m, mc);
  }
  float* acc = into.acc_of(h);
  if (nan || m == neg_inf) {  // NaN everywhere, or no key seen: l = 0 gives o = 0
    into.m[h] = nan ? std::numeric_limits<float>::quiet_NaN() : neg_inf;
    into.l[h] = nan ? std::numeric_limits<float>::quiet_NaN() : 0.0f;
    std::fill(acc, acc + d, into.l[h]);
    return;
  }
  float l = 0.0f;
  for (index c = 0; c < count; ++c) {
    const DecodeState pc = part(c);
    const float w = rescale_factor(pc.m[h], m);  // m is no NaN and the largest of the parts
    const float* a = pc.acc_of(h);
    if (c == 0)
      for (index i = 0; i < d; ++i) acc[i] = w * a[i];  // a may be acc
    else
      for (index i = 0; i < d; ++i) acc[i] += w * a[i];
    l += w * pc.l[h];
  }
  into.m[h] = m;
  into.l[h] = l;
}

// A KV view's sizes: a length >= 0, keys and values when it holds any, and heads, positions (or
// ring slots) and head_dim spanning at most 2^40 bytes.
inline void check_kv(const char* where, const KVView& kv) {
  check(valid_kv_type(kv.type), where, "kv.type", kv_types_expected, static_cast<int>(kv.type));
  const auto bytes = std::size_t(kv_type_bytes(kv.type));
  check(kv.length >= 0, where, "kv.length", ">= 0", kv.length);
  check(kv.slots >= 0, where, "kv.slots", ">= 0", kv.slots);
  check(kv.stored >= 0, where, "kv.stored", ">= 0 (0: length)", kv.stored);
  if (kv.slots > 0)
    check(kv.sinks >= 0 && kv.sinks < kv.slots && kv.window >= 1, where,
          "kv.sinks, kv.window (ring)", "0 <= sinks < slots, window >= 1", kv.sinks);
  const index held = kv.slots > 0 ? kv.slots : kv.length;
  const index head = checked_size(where, "kv positions held * head_dim", {held, kv.head_dim}, bytes);
  if (kv.kv_heads > 1 && held > 0) {
    checked_size(where, "kv kv_heads * head_stride", {kv.kv_heads, kv.head_stride}, bytes);
    check(kv.head_stride >= head, where, "kv.head_stride", ">= positions held * head_dim",
          kv.head_stride);
  }
  if (kv.length > 0 && (kv.keys == nullptr || kv.values == nullptr)) [[unlikely]]
    detail::fail_check(where, "kv keys, values", "non-null pointers", "nullptr");
  if (kv.type == KVType::q8 && kv.length > 0) {
    if (kv.key_scales == nullptr || kv.value_scales == nullptr) [[unlikely]]
      detail::fail_check(where, "kv key_scales, value_scales (q8)", "non-null pointers", "nullptr");
    if (kv.kv_heads > 1) {
      checked_size(where, "kv kv_heads * scale_stride", {kv.kv_heads, kv.scale_stride},
                   sizeof(float));
      check(kv.scale_stride >= held, where, "kv.scale_stride (q8)", ">= positions held",
            kv.scale_stride);
    }
  }
}

// The checks attention() and attention_weights() share: q against the view, the mask options,
// positions, and what a ring cache still holds.
inline void check_inputs(const char* where, HeadsView<const float> q, const KVView& kv,
                         const Positions& positions, const AttentionOptions& opt) {
  check_view(where, "q", q);
  if (kv.kv_heads <= 0 || q.heads() % kv.kv_heads != 0) [[unlikely]]
    detail::fail_check(where, "q.heads",
                       "a multiple of kv_heads (" + std::to_string(kv.kv_heads) + ")", q.heads());
  check(q.head_dim() >= 1, where, "q.head_dim", ">= 1", q.head_dim());
  check_eq(where, "q.head_dim (= kv head_dim)", kv.head_dim, q.head_dim());
  check_kv(where, kv);
  check(opt.window >= 0, where, "window", ">= 0", opt.window);
  check(opt.sinks >= 0, where, "sinks", ">= 0", opt.sinks);
  if (opt.sinks > 0) check(opt.window > 0, where, "window", "> 0 (sinks need a window)", opt.window);
  const int sink_positions = static_cast<int>(opt.sink_positions);
  check(sink_positions == 0 || sink_positions == 1, where, "sink_positions",
        "Original or InCache (0 or 1)", sink_positions);
  if (opt.sink_q.data() != nullptr) {
    check_view(where, "sink_q", opt.sink_q);
    check_eq(where, "sink_q.tokens (= q.tokens)", q.tokens(), opt.sink_q.tokens());
    check_eq(where, "sink_q.heads (= q.heads)", q.heads(), opt.sink_q.heads());
    check_eq(where, "sink_q.head_dim (= q.head_dim)", q.head_dim(), opt.sink_q.head_dim());
  }

  if (!opt.key_valid.empty())
    check(index(opt.key_valid.size()) >= kv.length, where, "key_valid size", ">= kv.length",
          opt.key_valid.size());
  positions.validate(where, q.tokens(),
                     opt.causal ? kv.length : std::numeric_limits<std::int32_t>::max());
  if (kv.slots > 0) {  // a ring keeps its sinks and the last kv.window keys of each query only
    if (!(opt.causal && opt.window > 0 && opt.window <= kv.window)) [[unlikely]]
      detail::fail_check(where, "window",
                         "causal, in [1, " + std::to_string(kv.window) + "] for a ring cache",
                         opt.window);
    check(opt.sinks <= kv.sinks, where, "sinks", "<= the ring's sinks", opt.sinks);
    // Held: positions [0, kv.sinks) and [held_from, kv.length).
    const index held_from = std::max(kv.sinks, kv.length - (kv.slots - kv.sinks));
    for (index t = 0; t < q.tokens(); ++t)
      if (std::max<index>(positions(t) - opt.window + 1, kv.sinks) < held_from) [[unlikely]]
        detail::fail_check(where, "position",
                           "one whose window the ring still holds (>= " +
                               std::to_string(held_from + opt.window - 1) + ")",
                           positions(t));
  }
  check(std::isfinite(opt.scale) && opt.scale >= 0.0f, where, "scale",
        "a finite value >= 0 (0: 1/sqrt(head_dim))", opt.scale);
  check(std::isfinite(opt.softcap) && opt.softcap >= 0.0f, where, "softcap",
        "a finite value >= 0 (0: off)", opt.softcap);
}

// A bias that states its heads (AlibiBias: its slopes; T5Bias: its table's columns) must cover
// every query head. Other callables (a lambda over a model's heads) are the caller's to size.
template <class Bias>
void check_bias(const char* where, const Bias& bias, index q_heads) {
  if constexpr (requires { { bias.heads() } -> std::convertible_to<index>; }) {
    const index heads = bias.heads();
    if (heads < q_heads) [[unlikely]]
      detail::fail_check(where, "bias heads (ALiBi slopes, T5 table columns)",
                         ">= q.heads (" + std::to_string(q_heads) + ")", heads);
  }
}

#if TFORMER_HAS_SIMD
// block_product for rows [0, RM) and the RN vectors of columns from c (the last one `tail`
// lanes wide when tail > 0): the tile of out stays in registers over the depth.
template <index RM, index RN>
inline void product_tile(float* out, index ldo, const float* alpha, const float* a, index lda,
                         const float* b, index ldb, index depth, index c,
                         std::size_t tail) noexcept {
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  const auto load = [&](const float* at, index u) {
    return tail > 0 && u == RN - 1 ? xsimd_compat::load_partial<simd::arch>(at, tail)
                                   : B::load_unaligned(at);
  };
  B acc[RM * RN];
  TFORMER_UNROLL for (index m = 0; m < RM; ++m) {
    TFORMER_UNROLL for (index u = 0; u < RN; ++u)
      acc[m * RN + u] = alpha ? B(alpha[m]) * load(out + m * ldo + c + u * W, u) : B(0.0f);
  }
  for (index j = 0; j < depth; ++j) {
    B bv[RN];
    TFORMER_UNROLL for (index u = 0; u < RN; ++u) bv[u] = load(b + j * ldb + c + u * W, u);
    TFORMER_UNROLL for (index m = 0; m < RM; ++m) {
      const B aj(a[m * lda + j]);
      TFORMER_UNROLL for (index u = 0; u < RN; ++u)
        acc[m * RN + u] = xsimd_compat::fma(aj, bv[u], acc[m * RN + u]);
    }
  }
  TFORMER_UNROLL for (index m = 0; m < RM; ++m)
    TFORMER_UNROLL for (index u = 0; u < RN; ++u) {
      float* at = out + m * ldo + c + u * W;
      if (tail > 0 && u == RN - 1)
        xsimd_compat::store_partial<simd::arch>(at, acc[m * RN + u], tail);
      else
        acc[m * RN + u].store_unaligned(at);
    }
}

#endif

// Where a block_product's rows end early (the causal diagonal of prefill, where a row's keys end
// inside the block): row r needs only out's columns [0, end(r)), the rest may be left unwritten
// (Ragged::columns), or its a[r][j] are 0 for j >= end(r), whose products may be skipped
// (Ragged::depth). A tile of rows takes the largest end of its rows; columns in whole vectors.
enum class Ragged { none, columns, depth };

// The ends of rows that need everything (Ragged::none).
struct WholeRows {
  index operator()(index) const noexcept { return std::numeric_limits<index>::max(); }
};

#if TFORMER_HAS_SIMD
// product_tile for the first `used` (1 to RN) of its RN vectors.
template <index RM, index RN>
inline void product_tile_first(index used, float* out, index ldo, const float* alpha,
                               const float* a, index lda, const float* b, index ldb, index depth,
                               index c, std::size_t tail) noexcept {
  if constexpr (RN > 1) {
    if (used < RN)
      return product_tile_first<RM, RN - 1>(used, out, ldo, alpha, a, lda, b, ldb, depth, c, 0);
  }
  product_tile<RM, RN>(out, ldo, alpha, a, lda, b, ldb, depth, c, tail);
}

// product_tile over the RM rows from r for the columns from c, cut to what the rows' ends need.
template <index RM, index RN, class Ends>
inline void product_rows_from(index r, Ragged ragged, const Ends& ends, float* out, index ldo,
                              const float* alpha, const float* a, index lda, const float* b,
                              index ldb, index depth, index c, std::size_t tail) noexcept {
  constexpr index W = static_cast<index>(simd::lanes);
  index used = RN;
  if (ragged != Ragged::none) {
    index end = 0;
    for (index m = 0; m < RM; ++m) end = std::max(end, ends(r + m));
    if (ragged == Ragged::columns) {
      if (end <= c) return;
      used = std::min(RN, (end - c + W - 1) / W);
    } else {
      depth = std::clamp<index>(end, 0, depth);
    }
  }
  product_tile_first<RM, RN>(used, out + r * ldo, ldo, alpha ? alpha + r : nullptr, a + r * lda,
                             lda, b, ldb, depth, c, tail);
}

// product_tile over rows [0, rows) in tiles of RM (then of 2, then one at a time) for the columns
// from c.
template <index RM, index RN, class Ends>
inline void product_rows(float* out, index ldo, const float* alpha, index rows, const float* a,
                         index lda, const float* b, index ldb, index depth, index c,
                         std::size_t tail, Ragged ragged, const Ends& ends) noexcept {
  index r = 0;
  for (; r + RM <= rows; r += RM)
    product_rows_from<RM, RN>(r, ragged, ends, out, ldo, alpha, a, lda, b, ldb, depth, c, tail);
  if constexpr (RM > 2)
    for (; r + 2 <= rows; r += 2)
      product_rows_from<2, RN>(r, ragged, ends, out, ldo, alpha, a, lda, b, ldb, depth, c, tail);
  for (; r < rows; ++r)
    product_rows_from<1, RN>(r, ragged, ends, out, ldo, alpha, a, lda, b, ldb, depth, c, tail);
}
#endif

// out[r][c] = alpha[r]·out[r][c] + Σ_j a[r][j]·b[j][c] for r < rows, c < cols, j < depth; without
// alpha (nullptr) out = a·b. Row-major with strides ldo, lda, ldb, read in place. Tiles of 6 rows ×
// 4 vectors of out (2 vectors below AVX-512) in registers over the whole depth: per j the tile's b
// vectors, a broadcast of each row's a value, one FMA per row and vector, no horizontal sum. Every
// j is added, a weight 0 too (0·NaN is NaN, as in a GEMM), except where `ragged` and `ends` say
// a row ends early (the scalar build computes everything).
template <class Ends = WholeRows>
inline void block_product(float* out, index ldo, const float* alpha, index rows, index cols,
                          const float* a, index lda, const float* b, index ldb, index depth,
                          [[maybe_unused]] Ragged ragged = Ragged::none,
                          [[maybe_unused]] const Ends& ends = {}) noexcept {
  index c = 0;
#if TFORMER_HAS_SIMD
  // AVX-512: 24 accumulators, 4 b vectors and a broadcast in 29 of 32 registers, 10 loads per 24
  // FMAs (the 4 × 4 tile as GCC compiled it, b folded into each FMA: 20 per 16, 1.17–1.19×
  // slower; 12 × 2 1.06×); below: 12, 2 and 1 of 16 (2 × 4 tiles were 1.22–1.23× slower on
  // AVX2). docs/PERFORMANCE.md, session 50.
  constexpr index W = static_cast<index>(simd::lanes), tile_rows = 6, vectors = W == 16 ? 4 : 2;
  for (; c + vectors * W <= cols; c += vectors * W)
    product_rows<tile_rows, vectors>(out, ldo, alpha, rows, a, lda, b, ldb, depth, c, 0, ragged,
                                     ends);
  for (; c + W <= cols; c += W)
    product_rows<tile_rows, 1>(out, ldo, alpha, rows, a, lda, b, ldb, depth, c, 0, ragged, ends);
  if (c < cols)
    product_rows<tile_rows, 1>(out, ldo, alpha, rows, a, lda, b, ldb, depth, c,
                               std::size_t(cols - c), ragged, ends);
  c = cols;
#endif
  for (index r = 0; r < rows; ++r) {
    float* o = out + r * ldo;
    for (index i = c; i < cols; ++i) o[i] = alpha ? o[i] * alpha[r] : 0.0f;
    for (index j = 0; j < depth; ++j) {
      const float w = a[r * lda + j];
      for (index i = c; i < cols; ++i) o[i] += w * b[j * ldb + i];
    }
  }
}

// to[i·ld + j] = from[j·d + i] for j < n, i < d: n rows of d values to d rows of n. With AVX, in
// 8 × 8 squares held in registers (8 loads, 24 shuffles, 8 stores: a third of the scalar loop's
// time); the edges one value at a time.
inline void transpose_block(const float* from, index n, index d, float* to, index ld) noexcept {
  index j0 = 0;
#if defined(__AVX__) && TFORMER_HAS_SIMD
  for (; j0 + 8 <= n; j0 += 8) {
    index i0 = 0;
    for (; i0 + 8 <= d; i0 += 8) {
      __m256 r[8], t[8], u[8];
      for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(from + (j0 + k) * d + i0);
      for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);  // r_k[0] r_k+1[0] r_k[1] r_k+1[1] | [4], [5]
        t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);  // the same of [2], [3] | [6], [7]
      }
      for (int k = 0; k < 8; k += 4)
        for (int h = 0; h < 2; ++h) {  // 4 rows' values [2h], [2h + 1] | [2h + 4], [2h + 5]
          u[k + 2 * h] = _mm256_shuffle_ps(t[k + h], t[k + h + 2], _MM_SHUFFLE(1, 0, 1, 0));
          u[k + 2 * h + 1] = _mm256_shuffle_ps(t[k + h], t[k + h + 2], _MM_SHUFFLE(3, 2, 3, 2));
        }
      for (int k = 0; k < 4; ++k) {  // column k of rows 0-3 | 4-7, and column k + 4
        _mm256_storeu_ps(to + (i0 + k) * ld + j0, _mm256_permute2f128_ps(u[k], u[k + 4], 0x20));
        _mm256_storeu_ps(to + (i0 + k + 4) * ld + j0, _mm256_permute2f128_ps(u[k], u[k + 4], 0x31));
      }
    }
    for (; i0 < d; ++i0)
      for (index j = j0; j < j0 + 8; ++j) to[i0 * ld + j] = from[j * d + i0];
  }
#endif
  for (index j = j0; j < n; ++j)
    for (index i = 0; i < d; ++i) to[i * ld + j] = from[j * d + i];
}

// The many-token (prefill) path for query tokens [t0, t0 + tq) and kv head g: their group's
// rows (token, head) form a block Q [rows, D]; for each key block K [n, D] of the union of
// their visible ranges, S = Q·Kᵀ and O = α·O + P·V (block_product), with the streaming softmax
// applied row by row between them. Sinks the window has left are a first pass with Q taken
// from opt.sink_q (when given).
template <class Bias>
void attend_block(HeadsView<const float> q, HeadsView<float> o, const Positions& positions,
                  index t0, index tq, index g, index group, const KVView& kv,
                  const AttentionOptions& opt, float scale, const Bias& bias,
                  AttentionWorkspace& ws, MatrixView<float> lse) {
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  constexpr index bk = AttentionWorkspace::key_tile;
  const index d = kv.head_dim, rows = tq * group;
  float* qb = ws.q_block();
  float* ob = ws.o_block();
  float* sb = ws.s_block();
  float* m = ws.row_max();
  float* l = ws.row_sum();
  float* alpha = ws.row_rescale();
  index lo_min = std::numeric_limits<index>::max(), lo_max = 0, hi_max = 0;
  for (index t = 0; t < tq; ++t) {
    const index p = positions(t0 + t);
    const index lo = opt.window > 0 ? std::max<index>(0, p - opt.window + 1) : index(0);
    lo_min = std::min(lo_min, lo);
    lo_max = std::max(lo_max, lo);
    hi_max = std::max(hi_max, opt.causal ? std::min(p + 1, kv.length) : kv.length);
  }
  // The group's query rows, copied token by token (a token's group is contiguous), each token
  // asked for 4 tokens ahead: 1.00–1.02× on two threads at T 512 (session 57). Read in place,
  // 0.94–0.96× at 32/8 × 128 (a guess: 64 tokens' rows a token stride apart share L1 sets).
  const auto load_q = [&](HeadsView<const float> from) {
    constexpr index ahead = 4;
    const index bytes = group * d * index(sizeof(float));
    const auto ask = [&](index t) {
      if (t < tq)
        for (index b = 0; b < bytes; b += 64)
          prefetch<CacheLevel::L1>(from.row(t0 + t, g * group), b);
    };
    for (index t = 0; t < ahead; ++t) ask(t);
    for (index t = 0; t < tq; ++t) {
      ask(t + ahead);
      std::copy_n(from.row(t0 + t, g * group), group * d, qb + t * group * d);
    }
  };
  bool first = true;  // no key block yet: the first one's P·V writes O without reading it
  std::fill(m, m + rows, neg_inf);
  constexpr index lanes = static_cast<index>(simd::lanes);
  std::fill(l, l + rows * lanes, 0.0f);
  // No bias, soft-cap or padding mask: a row's visible keys are one run, scaled in the exponential's
  // pass and masked only where the run ends inside the block (the diagonal, the window's edge).
  const bool plain = std::is_same_v<Bias, NoBias> && opt.softcap == 0.0f && opt.key_valid.empty();
  // Keys [k_lo, k_hi) for the rows, scored from position_of(p): the keys p sees are the run
  // run_of(p) = [from, to) (causal end, window start, the sinks the window left), minus the keys
  // the padding mask hides.
  const auto pass = [&](index k_lo, index k_hi, auto position_of, auto run_of) {
    index end_min = std::numeric_limits<index>::max();  // the earliest end of the rows' keys
    for (index t = 0; t < tq; ++t) end_min = std::min(end_min, run_of(positions(t0 + t)).second);
    for (index k0 = k_lo, n = 0; k0 < k_hi; k0 += n) {
      n = std::min({bk, k_hi - k0, kv.contiguous(k0)});
      const float* kb = ws.k_block();
      const float* vb = ws.v_block();
      if (kv.type == KVType::f32) {
        kb = kv.key<float>(g, k0);
        vb = kv.value<float>(g, k0);
      } else {  // widened once per block, for every row of the block's products
        visit_kv_type(kv.type, [&]<class T>(T) {
          if constexpr (std::is_same_v<T, std::int8_t>) {
            widen_scaled(kv.key<T>(g, k0), kv.key_scale(g, k0), n, d, ws.k_block());
            widen_scaled(kv.value<T>(g, k0), kv.value_scale(g, k0), n, d, ws.v_block());
          } else {
            widen(kv.key<T>(g, k0), n * d, ws.k_block());
            widen(kv.value<T>(g, k0), n * d, ws.v_block());
          }
        });
      }
      transpose_block(kb, n, d, ws.kt_block(), bk);
      // The next block's keys and values, asked for into L2 a few lines per row of this block's
      // softmax, arrive while its products run (1.01–1.05× at T 512, session 57).
      const index k1 = k0 + n, row_bytes = d * kv_type_bytes(kv.type);
      const index next_lines =
          k1 < k_hi ? (std::min({bk, k_hi - k1, kv.contiguous(k1)}) * row_bytes + 63) / 64 : 0;
      const index lines_per_row = (next_lines + rows - 1) / rows;
      const index next_at =
          k1 < k_hi ? (g * kv.head_stride + kv.slot(k1) * d) * kv_type_bytes(kv.type) : 0;
      const auto* next_k = static_cast<const std::byte*>(kv.keys) + next_at;
      const auto* next_v = static_cast<const std::byte*>(kv.values) + next_at;
      // Plain rows need their scores up to the end of their run only (the rest is masked below),
      // and their weights past it are 0: where a row ends inside or before the block (the causal
      // diagonal), both products skip what lies past each tile of rows' last end (S in vectors of
      // keys, P·V at the end itself).
      const bool ragged = plain && end_min < k0 + n;
      const auto end_of = [&](index r) { return run_of(positions(t0 + r / group)).second - k0; };
      block_product(sb, bk, nullptr, rows, n, qb, d, ws.kt_block(), bk, d,
                    ragged ? Ragged::columns : Ragged::none, end_of);
      for (index r = 0; r < rows; ++r) {
        for (index i = r * lines_per_row; i < std::min(next_lines, (r + 1) * lines_per_row); ++i) {
          prefetch<CacheLevel::L2>(next_k, i * 64);
          prefetch<CacheLevel::L2>(next_v, i * 64);
        }
        const index p = positions(t0 + r / group), h = g * group + r % group;
        const index at = position_of(p);
        float* srow = sb + r * bk;
        float tile_max = neg_inf;
        const auto [from, to] = run_of(p);
        if (plain) {
          const index a = std::clamp<index>(from - k0, 0, n), b = std::clamp<index>(to - k0, a, n);
          std::fill(srow, srow + a, neg_inf);
          std::fill(srow + b, srow + n, neg_inf);
          // Scaled in the exponential's pass below; scale > 0 and rounding keeps order, so the
          // largest scaled score is scale times the largest.
          tile_max = scale * max_of(srow + a, b - a);
        } else {
          for (index j = 0; j < n; ++j) {
            const index kp = k0 + j;
            float x = srow[j] * scale;
            if (opt.softcap > 0.0f) x = opt.softcap * std::tanh(x / opt.softcap);
            srow[j] = kp >= from && kp < to && valid(opt, kp) ? x + bias(h, at, kp) : neg_inf;
          }
          tile_max = *std::max_element(srow, srow + n);
        }
        const float m_new = std::max(m[r], tile_max);
        if (m_new == neg_inf) [[unlikely]] {  // nothing visible to this row yet, or only NaN
          if (has_nan(srow, n)) {  // the row is NaN from now on (see accumulate): its sum is NaN
            m[r] = std::numeric_limits<float>::quiet_NaN();
            std::fill(l + r * lanes, l + (r + 1) * lanes, m[r]);
          }
          std::fill(srow, srow + n, 0.0f);  // else its weights stay 0
          alpha[r] = 1.0f;
          continue;
        }
        alpha[r] = rescale_factor(m[r], m_new);
        exp_shifted_lanes(srow, n, m_new, plain ? scale : 1.0f, alpha[r], l + r * lanes);
        m[r] = m_new;
      }
      // The first block writes O = P·V (every row: a tile whose rows all end before the block
      // gets 0), later ones O = α·O + P·V: no pass to zero O first.
      block_product(ob, d, first ? nullptr : alpha, rows, d, sb, bk, vb, d, n,
                    ragged ? Ragged::depth : Ragged::none, end_of);
      first = false;
    }
  };
  if (const index sinks_end = opt.window > 0 ? std::min(opt.sinks, lo_max) : 0; sinks_end > 0) {
    load_q(opt.sink_q.data() != nullptr ? opt.sink_q : q);
    pass(
        0, sinks_end, [&](index p) { return sink_position(opt, p); },
        [&](index p) {
          return std::pair<index, index>(0, std::min(opt.sinks, p - opt.window + 1));
        });
  }
  load_q(q);
  pass(
      lo_min, hi_max, [](index p) { return p; },
      [&](index p) {
        return std::pair<index, index>(opt.window > 0 ? p - opt.window + 1 : 0,
                                       opt.causal ? p + 1 : kv.length);
      });
  if (first) std::fill(ob, ob + rows * d, 0.0f);  // no key at all
  for (index r = 0; r < rows; ++r) {
    // A maximum of +inf (scale · score past the float range, an inf key or bias) makes the row NaN,
    // as exp(inf − inf) does in the one-token path and in PyTorch; where the exponential's
    // scale · s − m is an fma (one rounding) its scores would have had weight 0.
    const float sum = m[r] == std::numeric_limits<float>::infinity()
                          ? std::numeric_limits<float>::quiet_NaN()
                          : std::accumulate(l + r * lanes, l + (r + 1) * lanes, 0.0f);
    const float inv = sum == 0.0f ? 0.0f : 1.0f / sum;  // NaN stays NaN
    float* out = o.row(t0 + r / group, g * group + r % group);
    for (index i = 0; i < d; ++i) out[i] = ob[r * d + i] * inv;
    if (lse.data() != nullptr)
      lse.row(t0 + r / group)[g * group + r % group] = log_sum_exp(m[r], sum);
  }
}

}  // namespace attention_kernels

namespace attention_kernels {

// The factor of every score: opt.scale, or 1/sqrt(head_dim) when it is 0.
inline float score_scale(const AttentionOptions& opt, index head_dim) noexcept {
  return opt.scale > 0.0f ? opt.scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
}

// The checks of attention() and attention_lse() but the workspace's; returns the score scale.
template <class Bias>
float check_attention(const char* where, HeadsView<const float> q, const KVView& kv,
                      const Positions& positions, HeadsView<float> o, const AttentionOptions& opt,
                      const Bias& bias) {
  check_inputs(where, q, kv, positions, opt);
  check_view(where, "o", o);
  check_eq(where, "o.tokens (= q.tokens)", q.tokens(), o.tokens());
  check_eq(where, "o.heads (= q.heads)", q.heads(), o.heads());
  check_eq(where, "o.head_dim (= q.head_dim)", q.head_dim(), o.head_dim());
  check_disjoint(where, "o", o, "q", q);
  if (opt.sink_q.data() != nullptr) check_disjoint(where, "o", o, "sink_q", opt.sink_q);
  check_bias(where, bias, q.heads());
  return score_scale(opt, q.head_dim());
}

// Throws unless ws was made for this call's group size and head_dim (and was not moved from).
inline void check_workspace(const char* where, const AttentionWorkspace& ws, index group,
                            index head_dim) {
  check_eq(where, "workspace group size", group, ws.group_size());
  check_eq(where, "workspace head_dim", head_dim, ws.head_dim());
  check(ws.bytes() > 0, where, "workspace bytes (none once moved from)", "> 0", index(ws.bytes()));
}

// The independent pieces of an attention call, each writing its own rows of o (and lse): many
// tokens, one per (kv head, block of query_tile queries), kv head by kv head and each head's last
// blocks (most keys when causal) first, so that a worker's next task reads the keys and values it
// just read (0.97–1.06× on two threads, session 57); one token, one per kv head.
inline index attention_tasks(index tokens, index kv_heads) noexcept {
  const index blocks =
      tokens > 1 ? (tokens + AttentionWorkspace::query_tile - 1) / AttentionWorkspace::query_tile
                 : std::min<index>(tokens, 1);
  return blocks * kv_heads;
}

// Task `task` (< attention_tasks) of a checked call, in ws. Its result does not depend on what
// ran in ws before or on which thread runs it.
template <class Bias>
void attention_task(index task, HeadsView<const float> q, const KVView& kv,
                    const Positions& positions, HeadsView<float> o, MatrixView<float> lse,
                    const AttentionOptions& opt, float scale, const Bias& bias,
                    AttentionWorkspace& ws) noexcept {
  const index group = q.heads() / kv.kv_heads;
  if (q.tokens() > 1) {  // many tokens: blocks of register-tiled products
    constexpr index tile = AttentionWorkspace::query_tile;
    const index blocks = (q.tokens() + tile - 1) / tile, t0 = (blocks - 1 - task % blocks) * tile;
    attend_block(q, o, positions, t0, std::min(tile, q.tokens() - t0), task / blocks, group, kv,
                 opt, scale, bias, ws, lse);
    return;
  }
  const index g = task;
  const float** qs = ws.q_rows();
  const float** sink_qs = ws.sink_q_rows();
  float** os = ws.o_rows();
  const index p = positions(0);
  const index hi = opt.causal ? std::min(p + 1, kv.length) : kv.length;
  const index lo = opt.window > 0 ? std::max<index>(0, p - opt.window + 1) : 0;
  const index sinks_end = opt.window > 0 ? std::min(opt.sinks, lo) : 0;  // sinks left behind
  const HeadsView<const float> sq = opt.sink_q.data() != nullptr ? opt.sink_q : q;
  for (index h = 0; h < group; ++h) {
    qs[h] = q.row(0, g * group + h);
    sink_qs[h] = sq.row(0, g * group + h);
    os[h] = o.row(0, g * group + h);
  }
  const DecodeState st{ws.decode_max(), ws.decode_sum(), ws.acc(0), ws.scores(0), q.head_dim()};
  attend_state(qs, sink_qs, group, g * group, kv, g, sinks_end, lo, std::max(lo, hi), p, opt, scale,
               bias, st);
  finish(st, group, os);
  if (lse.data() != nullptr)
    for (index h = 0; h < group; ++h) lse.row(0)[g * group + h] = log_sum_exp(st.m[h], st.l[h]);
}

// attention() and attention_lse(): lse [T, Hq] written when it has data.
template <class Bias>
void attention_checked(const char* where, HeadsView<const float> q, const KVView& kv,
                       const Positions& positions, HeadsView<float> o, MatrixView<float> lse,
                       AttentionWorkspace& ws, const AttentionOptions& opt, const Bias& bias) {
  const float scale = check_attention(where, q, kv, positions, o, opt, bias);
  check_workspace(where, ws, q.heads() / kv.kv_heads, q.head_dim());
  for (index task = 0, tasks = attention_tasks(q.tokens(), kv.kv_heads); task < tasks; ++task)
    attention_task(task, q, kv, positions, o, lse, opt, scale, bias, ws);
}

}  // namespace attention_kernels

// o [T, Hq, D] = attention of queries q [T, Hq, D] at `positions` over kv (Hkv heads, positions
// [0, kv.length)), with Hq = g · Hkv. `bias(q_head, q_position, k_position)` is added
// to each scaled score (ALiBi, T5 buckets). o must not overlap q. Causal queries need
// positions < kv.length (their own key written).
template <class Bias = NoBias>
void attention(HeadsView<const float> q, const KVView& kv, const Positions& positions,
               HeadsView<float> o, AttentionWorkspace& ws, const AttentionOptions& opt = {},
               const Bias& bias = {}) {
  attention_kernels::attention_checked("attention", q, kv, positions, o, MatrixView<float>{}, ws,
                                       opt, bias);
}

// attention() on exec's workers, with a workspace for each (at most ws.size() work at once): the
// tasks (kv head × block of 64 queries; one token: kv heads) are taken from a shared counter. The
// same bits as attention() whatever the executor and its threads: every task's result is its own,
// computed by one compiled body (attention_task) on every thread. Everything is checked on the
// calling thread first; the workers run unchecked kernels. bias is called from several threads at
// once, so it must be safe to (a const call without shared state, as AlibiBias and T5Bias are) and
// must not throw.
template <Executor E, class Bias = NoBias>
void attention(const E& exec, HeadsView<const float> q, const KVView& kv,
               const Positions& positions, HeadsView<float> o, std::span<AttentionWorkspace> ws,
               const AttentionOptions& opt = {}, const Bias& bias = {}) {
  constexpr const char* where = "attention";
  check(!ws.empty(), where, "ws.size() (workspaces)", ">= 1", index(ws.size()));
  const float scale = attention_kernels::check_attention(where, q, kv, positions, o, opt, bias);
  for (const AttentionWorkspace& w : ws)
    attention_kernels::check_workspace(where, w, q.heads() / kv.kv_heads, q.head_dim());
  const index tasks = attention_kernels::attention_tasks(q.tokens(), kv.kv_heads);
  const index workers = std::min({index(exec.concurrency()), index(ws.size()), tasks});
  const auto run = [&](index task, AttentionWorkspace& w) {
    attention_kernels::attention_task(task, q, kv, positions, o, MatrixView<float>{}, opt, scale,
                                      bias, w);
  };
  if (workers <= 1) {
    for (index task = 0; task < tasks; ++task) run(task, ws[0]);
    return;
  }
  std::atomic<index> next{0};
  exec.parallel_for(0, workers, [&](index w) {
    for (index task; (task = next.fetch_add(1, std::memory_order_relaxed)) < tasks;)
      run(task, ws[std::size_t(w)]);
  });
}

// attention(), and lse [T, Hq] = log Σ_j exp(s_j) over the keys each query sees (−inf when it
// sees none): an attention over part of the keys (a shared prefix, a page, a split of a long
// context) that merge_attention() combines with the other parts exactly.
// Split one view with kv.part(): decode then prefetches on into the next part's keys.
// On 2 threads with 512-key parts that was 1.01–1.06× faster (docs/PERFORMANCE.md, session 55).
template <class Bias = NoBias>
void attention_lse(HeadsView<const float> q, const KVView& kv, const Positions& positions,
                   HeadsView<float> o, MatrixView<float> lse, AttentionWorkspace& ws,
                   const AttentionOptions& opt = {}, const Bias& bias = {}) {
  constexpr const char* where = "attention_lse";
  check_view(where, "lse", lse);
  check_shape(where, "lse", lse, q.tokens(), q.heads());
  attention_kernels::attention_checked(where, q, kv, positions, o, lse, ws, opt, bias);
}

// Two attentions of the same queries over disjoint key sets, (o_a, lse_a) and (o_b, lse_b)
// from attention_lse() [T, H, D] and [T, H], combined into the attention over both keys:
//   lse = log(e^lse_a + e^lse_b),  o = (e^(lse_a − lse)·o_a + e^(lse_b − lse)·o_b).
// o and lse may be o_a and lse_a (or o_b and lse_b), not overlap them otherwise. A part that
// saw no key (lse −inf) adds nothing; a NaN in either lse makes the row NaN.
inline void merge_attention(HeadsView<const float> o_a, MatrixView<const float> lse_a,
                            HeadsView<const float> o_b, MatrixView<const float> lse_b,
                            HeadsView<float> o, MatrixView<float> lse) {
  constexpr const char* where = "merge_attention";
  const index T = o.tokens(), H = o.heads(), D = o.head_dim();
  for (const auto& [name, v] : {std::pair{"o_a", o_a}, std::pair{"o_b", o_b}}) {
    check_view(where, name, v);
    check_eq(where, (std::string(name) + ".tokens (= o.tokens)").c_str(), T, v.tokens());
    check_eq(where, (std::string(name) + ".heads (= o.heads)").c_str(), H, v.heads());
    check_eq(where, (std::string(name) + ".head_dim (= o.head_dim)").c_str(), D, v.head_dim());
  }
  check_view(where, "o", o);
  check_shape(where, "lse_a", lse_a, T, H);
  check_shape(where, "lse_b", lse_b, T, H);
  check_shape(where, "lse", lse, T, H);
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  for (index t = 0; t < T; ++t)
    for (index h = 0; h < H; ++h) {
      const float a = lse_a.row(t)[h], b = lse_b.row(t)[h];
      const float* xa = o_a.row(t, h);
      const float* xb = o_b.row(t, h);
      float* out = o.row(t, h);
      if (std::isnan(a) || std::isnan(b)) {
        std::fill(out, out + D, std::numeric_limits<float>::quiet_NaN());
        lse.row(t)[h] = std::numeric_limits<float>::quiet_NaN();
        continue;
      }
      const float m = std::max(a, b);
      if (m == neg_inf) {  // neither part saw a key
        std::fill(out, out + D, 0.0f);
        lse.row(t)[h] = neg_inf;
        continue;
      }
      const float wa = std::exp(a - m), wb = std::exp(b - m), z = wa + wb;
      const float ca = wa / z, cb = wb / z;
      // A part without weight is not read (its rows may be anything, e.g. an unused page).
      if (cb == 0.0f)
        for (index i = 0; i < D; ++i) out[i] = ca * xa[i];
      else if (ca == 0.0f)
        for (index i = 0; i < D; ++i) out[i] = cb * xb[i];
      else
        for (index i = 0; i < D; ++i) out[i] = ca * xa[i] + cb * xb[i];
      lse.row(t)[h] = m + std::log(z);
    }
}

// The slow explain path (seed 003's output_attentions): weights [T, Hq, kv.length] receive the
// softmax probabilities that attention() applies, 0 for keys a query does not see. Forms the
// whole score matrix; for debugging and pictures, never on the fast path. Same checks and masks.
template <class Bias = NoBias>
void attention_weights(HeadsView<const float> q, const KVView& kv, const Positions& positions,
                       HeadsView<float> weights, const AttentionOptions& opt = {},
                       const Bias& bias = {}) {
  constexpr const char* where = "attention_weights";
  attention_kernels::check_inputs(where, q, kv, positions, opt);
  check_view(where, "weights", weights);
  check_eq(where, "weights.tokens", q.tokens(), weights.tokens());
  check_eq(where, "weights.heads", q.heads(), weights.heads());
  check_eq(where, "weights.head_dim (= kv.length)", kv.length, weights.head_dim());
  check_disjoint(where, "weights", weights, "q", q);
  if (opt.sink_q.data() != nullptr) check_disjoint(where, "weights", weights, "sink_q", opt.sink_q);
  attention_kernels::check_bias(where, bias, q.heads());
  const index group = q.heads() / kv.kv_heads;
  const double scale =
      opt.scale > 0.0f ? opt.scale : 1.0 / std::sqrt(static_cast<double>(q.head_dim()));
  // A ring holds its sinks and [held_from, kv.length); no other key is visible.
  const index held_from =
      kv.slots > 0 ? std::max(kv.sinks, kv.length - (kv.slots - kv.sinks)) : index(0);
  const HeadsView<const float> sq = opt.sink_q.data() != nullptr ? opt.sink_q : q;
  for (index t = 0; t < q.tokens(); ++t) {
    const index p = positions(t);
    for (index h = 0; h < q.heads(); ++h) {
      float* w = weights.row(t, h);
      std::fill(w, w + kv.length, 0.0f);
      std::vector<double> s;  // scores of the visible keys, in key order
      std::vector<index> seen;
      const auto score = [&](index j) {
        const bool window = attention_kernels::in_window(opt, p, j);
        if (!window && !attention_kernels::as_sink(opt, p, j)) return;
        const float* qr = window ? q.row(t, h) : sq.row(t, h);
        const index at = window ? p : attention_kernels::sink_position(opt, p);
        double x = visit_kv_type(kv.type,
                                 [&]<class T>(T) {
                                   const float dot = attention_kernels::dot(
                                       qr, kv.key<T>(h / group, j), q.head_dim());
                                   if constexpr (std::is_same_v<T, std::int8_t>)
                                     return dot * *kv.key_scale(h / group, j);
                                   return dot;
                                 }) *
                   scale;
        if (opt.softcap > 0.0f) x = opt.softcap * std::tanh(x / opt.softcap);
        s.push_back(x + bias(h, at, j));
        seen.push_back(j);
      };
      for (index j = 0; j < kv.sinks; ++j) score(j);  // a ring's sink slots (held_from >= them)
      for (index j = held_from; j < kv.length; ++j) score(j);
      if (s.empty()) continue;
      const double m = *std::max_element(s.begin(), s.end());
      double z = 0.0;
      for (double x : s) z += std::exp(x - m);
      for (std::size_t n = 0; n < s.size(); ++n)
        w[seen[n]] = static_cast<float>(std::exp(s[n] - m) / z);
    }
  }
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
