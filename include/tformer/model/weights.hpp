// A decoder's weights as views (ModelWeights: zero copy over buffers someone else owns, e.g. an
// engine's arena or a memory-mapped checkpoint), an owning form with seeded random init
// (OwnedWeights), and a converted copy in other storage types (ConvertedWeights). Matrices are
// [out, in] as PyTorch stores them. Every matrix a linear layer multiplies (projections, FFN and
// experts, embedding and LM head, cross-attention, encoder projection) is a WeightView of any
// storage type, chosen per matrix; norms, biases, routers and the other small tables are f32.
#pragma once

#include <cmath>
#include <cstdint>
#include <deque>
#include <numbers>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "tformer/core/error.hpp"
#include "tformer/core/memory.hpp"
#include "tformer/core/convert.hpp"
#include "tformer/core/views.hpp"
#include "tformer/core/weight_view.hpp"
#include "tformer/model/config.hpp"
#include "tformer/nn/swiglu.hpp"
#include "tformer/rope/givens.hpp"
#include "tformer/rope/sinusoidal.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

// One decoder layer. Which members are used depends on the Config: q_norm/k_norm with qk_norm,
// cross_* with cross-attention, ffn (+ optional ffn_down_t) for Dense/TopK, router + experts
// (+ shared_expert, with Dims::shared_intermediate) for MoE, post_*_norm with post_norms.
// Unused members stay empty.
struct LayerWeights {
  std::span<const float> attn_norm;        // [H]
  WeightView wq, wk, wv, wo;               // [Hq·D, H], [Hkv·D, H], [Hkv·D, H], [H, Hq·D]
  std::span<const float> bq, bk, bv, bo;   // their biases, each empty (none) or [rows]: Qwen2
                                           // has bq, bk, bv; Llama's attention_bias all four
  std::span<const float> q_norm, k_norm;   // [D] each
  std::span<const GivensRotation> givens;  // rotary block: planes and angles, in order
  MatrixView<const float> rotation;        // rotary block: orthogonal R [D, D]
  std::span<const float> cross_norm;       // [H]
  WeightView cross_wq, cross_wk, cross_wv, cross_wo;  // as wq … wo; K, V read the
                                                      // projected encoder [S, H]
  MatrixView<const float> conv;             // conv_kernel > 0: depthwise kernel [H, k]
  std::span<const float> conv_bias;         // [H] or empty
  std::span<const float> post_attn_norm;    // post_norms: [H], on the attention output
  std::span<const float> ffn_norm;          // [H]
  std::span<const float> post_ffn_norm;     // post_norms: [H], on the FFN output
  SwiGluWeights ffn;                        // gate, up [I, H], down [H, I]
  MatrixView<const float> ffn_down_t;       // TopK: down transposed [I, H]; empty: built once
  MatrixView<const float> router;           // MoE: [E, H]
  std::vector<SwiGluWeights> experts;       // MoE: E experts
  SwiGluWeights shared_expert;              // MoE with Dims::shared_intermediate S > 0: gate,
                                            // up [S, H], down [H, S], on every token
  MatrixView<const float> shared_expert_gate;  // [1, H] or empty: the shared expert's output
                                               // × sigmoid(x · g) (Qwen2-MoE)
};

struct ModelWeights {
  WeightView embedding;               // [V, H]; rows are decoded to float on lookup
  std::vector<LayerWeights> layers;
  std::span<const float> final_norm;  // [H]
  WeightView lm_head;                 // [V, H]; empty: tied to the embedding
  WeightView encoder_proj;                     // [H, encoder_width]; empty when equal widths
  std::span<const float> encoder_proj_bias;    // [H] or empty
  MatrixView<const float> position_embedding;  // Sinusoidal: [max_positions, H]
  MatrixView<const float> relative_bias;       // T5 bias: [t5_buckets, heads], shared by layers

  WeightView head() const noexcept {
    return lm_head.rows() > 0 ? lm_head : embedding;
  }
};

namespace weights_detail {

inline std::string layer_name(index l, const char* member) {
  return "layers[" + std::to_string(l) + "]." + member;
}
template <class Matrix>  // MatrixView<const float> or WeightView
void check_matrix(const std::string& name, const Matrix& m, index rows, index cols) {
  check_shape("ModelWeights", name.c_str(), m, rows, cols);
}
inline void check_vector(const std::string& name, std::span<const float> v, index n) {
  check_eq("ModelWeights", (name + " size").c_str(), n, index(v.size()));
}

}  // namespace weights_detail

// Throws tformer::Error naming the first member whose shape does not match the Config, the dims
// and the parameters (qk_norm, t5_buckets).
template <DecoderConfig C>
void validate_weights(const Dims& d, const ModelWeights& w,
                      const ModelParams& p = default_params<C>()) {
  using namespace weights_detail;
  const index H = d.hidden, qd = d.heads * d.head_dim, kvd = d.kv_heads * d.head_dim;
  check_matrix("embedding", w.embedding, d.vocab, H);
  check_vector("final_norm", w.final_norm, H);
  if constexpr (C::head == HeadKind::Tied) {
    check(w.lm_head.rows() == 0 || w.lm_head.data() == w.embedding.data(), "ModelWeights",
          "lm_head", "empty or the embedding (the Config ties the head)", w.lm_head.rows());
    if (w.lm_head.rows() > 0) check_matrix("lm_head", w.lm_head, d.vocab, H);
  }
  if constexpr (C::head == HeadKind::Own) check_matrix("lm_head", w.lm_head, d.vocab, H);
  if constexpr (C::head == HeadKind::AsLoaded)
    if (w.lm_head.rows() > 0) check_matrix("lm_head", w.lm_head, d.vocab, H);
  if constexpr (C::cross_attention) {
    if (w.encoder_proj.rows() > 0 || d.encoder_width != H)
      check_matrix("encoder_proj", w.encoder_proj, H, d.encoder_width);
    if (!w.encoder_proj_bias.empty()) check_vector("encoder_proj_bias", w.encoder_proj_bias, H);
  }
  if constexpr (C::positions == PositionKind::Sinusoidal)
    check_matrix("position_embedding", w.position_embedding, d.max_positions, H);
  if constexpr (C::bias == BiasKind::T5)
    check_matrix("relative_bias", w.relative_bias, p.t5_buckets, d.heads);
  check_eq("ModelWeights", "layers count", d.layers, index(w.layers.size()));
  for (index l = 0; l < d.layers; ++l) {
    const LayerWeights& lw = w.layers[static_cast<std::size_t>(l)];
    check_vector(layer_name(l, "attn_norm"), lw.attn_norm, H);
    check_matrix(layer_name(l, "wq"), lw.wq, qd, H);
    check_matrix(layer_name(l, "wk"), lw.wk, kvd, H);
    check_matrix(layer_name(l, "wv"), lw.wv, kvd, H);
    check_matrix(layer_name(l, "wo"), lw.wo, H, qd);
    if (!lw.bq.empty()) check_vector(layer_name(l, "bq"), lw.bq, qd);
    if (!lw.bk.empty()) check_vector(layer_name(l, "bk"), lw.bk, kvd);
    if (!lw.bv.empty()) check_vector(layer_name(l, "bv"), lw.bv, kvd);
    if (!lw.bo.empty()) check_vector(layer_name(l, "bo"), lw.bo, H);
    check_eq("ModelWeights", layer_name(l, "givens count").c_str(), C::givens_rotations,
             index(lw.givens.size()));
    if constexpr (C::rotation_matrix)
      check_matrix(layer_name(l, "rotation"), lw.rotation, d.head_dim, d.head_dim);
    if (p.qk_norm) {
      check_vector(layer_name(l, "q_norm"), lw.q_norm, d.head_dim);
      check_vector(layer_name(l, "k_norm"), lw.k_norm, d.head_dim);
    }
    if constexpr (C::cross_attention) {
      check_vector(layer_name(l, "cross_norm"), lw.cross_norm, H);
      check_matrix(layer_name(l, "cross_wq"), lw.cross_wq, qd, H);
      check_matrix(layer_name(l, "cross_wk"), lw.cross_wk, kvd, H);
      check_matrix(layer_name(l, "cross_wv"), lw.cross_wv, kvd, H);
      check_matrix(layer_name(l, "cross_wo"), lw.cross_wo, H, qd);
    }
    if constexpr (C::post_norms) {
      check_vector(layer_name(l, "post_attn_norm"), lw.post_attn_norm, H);
      check_vector(layer_name(l, "post_ffn_norm"), lw.post_ffn_norm, H);
    }
    if constexpr (C::conv_kernel > 0) {
      check_matrix(layer_name(l, "conv"), lw.conv, H, C::conv_kernel);
      if (!lw.conv_bias.empty()) check_vector(layer_name(l, "conv_bias"), lw.conv_bias, H);
    }
    check_vector(layer_name(l, "ffn_norm"), lw.ffn_norm, H);
    // Shared-expert weights the Dims do not announce (shared_intermediate 0, or no MoE) would be
    // ignored: each must be empty.
    auto check_no_shared_expert = [&] {
      const std::pair<const char*, index> parts[] = {
          {"shared_expert.gate rows", lw.shared_expert.gate.rows()},
          {"shared_expert.up rows", lw.shared_expert.up.rows()},
          {"shared_expert.down rows", lw.shared_expert.down.rows()},
          {"shared_expert_gate rows", lw.shared_expert_gate.rows()}};
      for (const auto& [name, rows] : parts)
        check_eq("ModelWeights",
                 layer_name(l, name) + " (0: no shared expert, as Dims::shared_intermediate says)",
                 index(0), rows);
    };
    auto check_ffn = [&](const std::string& name, const SwiGluWeights& f) {
      check_matrix(name + ".gate", f.gate, d.intermediate, H);
      check_matrix(name + ".up", f.up, d.intermediate, H);
      check_matrix(name + ".down", f.down, H, d.intermediate);
    };
    if constexpr (C::ffn == FfnKind::MoE) {
      check_matrix(layer_name(l, "router"), lw.router, d.experts, H);
      check_eq("ModelWeights", layer_name(l, "experts count").c_str(), d.experts,
               index(lw.experts.size()));
      for (index e = 0; e < d.experts; ++e)
        check_ffn(layer_name(l, "experts[") + std::to_string(e) + "]",
                  lw.experts[static_cast<std::size_t>(e)]);
      const index S = d.shared_intermediate;
      if (S > 0) {
        check_matrix(layer_name(l, "shared_expert.gate"), lw.shared_expert.gate, S, H);
        check_matrix(layer_name(l, "shared_expert.up"), lw.shared_expert.up, S, H);
        check_matrix(layer_name(l, "shared_expert.down"), lw.shared_expert.down, H, S);
        if (lw.shared_expert_gate.rows() > 0)
          check_matrix(layer_name(l, "shared_expert_gate"), lw.shared_expert_gate, 1, H);
      } else {
        check_no_shared_expert();
      }
    } else {
      check_no_shared_expert();
      check_ffn(layer_name(l, "ffn"), lw.ffn);
      if (C::ffn == FfnKind::TopK && lw.ffn_down_t.rows() > 0)
        check_matrix(layer_name(l, "ffn_down_t"), lw.ffn_down_t, d.intermediate, H);
    }
  }
}

// Weights in one 64-byte aligned arena: seeded random init as seed 003 does it (every matrix
// normal(0, 0.02), the pad row of the embedding zero, norm weights at identity, biases 0); a
// sinusoidal position table starts at its formula. The parameters decide the optional members
// (qk-norm weights, the T5 table's buckets) and the pad row.
template <DecoderConfig C>
class OwnedWeights {
 public:
  OwnedWeights(const Dims& dims, std::uint64_t seed, const ModelParams& params = default_params<C>())
      : dims_(resolve_dims<C>(dims)), params_(params) {
    check_params<C>("OwnedWeights", params_, dims_);
    // f32 weights of all layers in one buffer: bounded before carve() sizes the layer list.
    // Each term is below 2^38 (resolve_dims).
    const index experts = C::ffn == FfnKind::MoE ? dims_.experts : 1;
    const index per_layer =
        (2 * dims_.heads + 2 * dims_.kv_heads) * dims_.head_dim * dims_.hidden +
        3 * experts * dims_.intermediate * dims_.hidden +
        (3 * dims_.shared_intermediate + 1) * dims_.hidden;
    checked_size("OwnedWeights", "layers * weights per layer", {dims_.layers, per_layer},
                 sizeof(float));
    const index n = carve(nullptr);
    arena_ = AlignedBuffer<float>(static_cast<std::size_t>(n));
    carve(arena_.data());
    fill(seed);
  }
  OwnedWeights(OwnedWeights&&) noexcept = default;
  OwnedWeights& operator=(OwnedWeights&&) noexcept = default;

  const Dims& dims() const noexcept { return dims_; }
  const ModelWeights& view() const noexcept { return view_; }
  // Every parameter, for writers (io/llama2c.hpp's tests) and engines that fill their own.
  std::span<float> data() noexcept { return {arena_.data(), arena_.size()}; }
  // Mutable access to a member the view names (same memory).
  static float* mut(std::span<const float> s) noexcept { return const_cast<float*>(s.data()); }
  static float* mut(MatrixView<const float> m) noexcept { return const_cast<float*>(m.data()); }
  // Precondition: an f32 view (every matrix of OwnedWeights is).
  static float* mut(const WeightView& m) noexcept {
    return const_cast<float*>(reinterpret_cast<const float*>(m.data()));
  }

 private:
  // Lays out every member from `base` (nullptr: only counts). Returns the floats used.
  index carve(float* base) {
    index used = 0;
    auto take = [&](index count) -> float* {  // count: at most 2^38 (resolve_dims)
      float* p = base ? base + used : nullptr;
      used = checked_size("OwnedWeights", "floats of all weights", {used + (count + 15) / 16 * 16},
                          sizeof(float));  // each member 64-byte aligned
      return p;
    };
    auto matrix = [&](index rows, index cols) -> MatrixView<const float> {
      return {take(checked_size("OwnedWeights", "rows * cols", {rows, cols}, sizeof(float))), rows,
              cols};
    };
    auto vec = [&](index count) -> std::span<const float> {
      return {take(count), static_cast<std::size_t>(count)};
    };
    auto ffn = [&]() -> SwiGluWeights {
      return {matrix(dims_.intermediate, dims_.hidden), matrix(dims_.intermediate, dims_.hidden),
              matrix(dims_.hidden, dims_.intermediate)};
    };
    const Dims& d = dims_;
    const index H = d.hidden, qd = d.heads * d.head_dim, kvd = d.kv_heads * d.head_dim;
    ModelWeights w;
    w.embedding = matrix(d.vocab, H);
    if constexpr (C::head == HeadKind::Own || C::head == HeadKind::AsLoaded)
      w.lm_head = matrix(d.vocab, H);
    w.final_norm = vec(H);
    if constexpr (C::positions == PositionKind::Sinusoidal)
      w.position_embedding = matrix(d.max_positions, H);
    if constexpr (C::bias == BiasKind::T5) w.relative_bias = matrix(params_.t5_buckets, d.heads);
    if constexpr (C::cross_attention) {
      if (d.encoder_width != H) {
        w.encoder_proj = matrix(H, d.encoder_width);
        w.encoder_proj_bias = vec(H);
      }
    }
    w.layers.resize(static_cast<std::size_t>(d.layers));
    for (LayerWeights& l : w.layers) {
      l.attn_norm = vec(H);
      l.wq = matrix(qd, H);
      l.wk = matrix(kvd, H);
      l.wv = matrix(kvd, H);
      l.wo = matrix(H, qd);
      if (params_.qk_norm) {
        l.q_norm = vec(d.head_dim);
        l.k_norm = vec(d.head_dim);
      }
      if constexpr (C::rotation_matrix) l.rotation = matrix(d.head_dim, d.head_dim);
      if constexpr (C::cross_attention) {
        l.cross_norm = vec(H);
        l.cross_wq = matrix(qd, H);
        l.cross_wk = matrix(kvd, H);
        l.cross_wv = matrix(kvd, H);
        l.cross_wo = matrix(H, qd);
      }
      if constexpr (C::conv_kernel > 0) {
        l.conv = matrix(H, C::conv_kernel);
        l.conv_bias = vec(H);
      }
      l.ffn_norm = vec(H);
      if constexpr (C::post_norms) {
        l.post_attn_norm = vec(H);
        l.post_ffn_norm = vec(H);
      }
      if constexpr (C::ffn == FfnKind::MoE) {
        l.router = matrix(d.experts, H);
        for (index e = 0; e < d.experts; ++e) l.experts.push_back(ffn());
        if (d.shared_intermediate > 0) {  // with its sigmoid gate, as Qwen2-MoE
          const index S = d.shared_intermediate;
          l.shared_expert = {matrix(S, H), matrix(S, H), matrix(H, S)};
          l.shared_expert_gate = matrix(1, H);
        }
      } else {
        l.ffn = ffn();
      }
    }
    if (base) view_ = std::move(w);
    return used;
  }

  void fill(std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    // Box–Muller on 53-bit uniforms: the same numbers with every standard library.
    auto uniform = [&] { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53; };
    auto normal = [&](const auto& m) {  // MatrixView<const float> or an f32 WeightView
      float* p = mut(m);
      for (index i = 0; i < m.rows() * m.cols(); ++i) {
        const double r = std::sqrt(-2.0 * std::log(uniform())), a = 2.0 * std::numbers::pi * uniform();
        p[i] = static_cast<float>(0.02 * r * std::cos(a));
      }
    };
    // Norm weights at identity: 1 for w·x̂, 0 for (1 + w)·x̂.
    const float one = C::norm == NormScale::Weight ? 1.0f : 0.0f;
    auto ones = [&](std::span<const float> v) {
      std::fill(mut(v), mut(v) + v.size(), one);
    };
    ModelWeights& w = view_;
    normal(w.embedding);
    if (params_.pad_id >= 0)
      std::fill(mut(w.embedding) + params_.pad_id * dims_.hidden,
                mut(w.embedding) + (params_.pad_id + 1) * dims_.hidden, 0.0f);
    if (w.lm_head.rows() > 0) normal(w.lm_head);
    ones(w.final_norm);
    if (w.position_embedding.rows() > 0)
      sinusoidal_init({mut(w.position_embedding), w.position_embedding.rows(), dims_.hidden});
    if (w.relative_bias.rows() > 0) normal(w.relative_bias);
    if (w.encoder_proj.rows() > 0) {
      normal(w.encoder_proj);
      std::fill(mut(w.encoder_proj_bias), mut(w.encoder_proj_bias) + w.encoder_proj_bias.size(),
                0.0f);
    }
    givens_.assign(static_cast<std::size_t>(dims_.layers * C::givens_rotations), {});
    std::uniform_int_distribution<std::int32_t> dim(0, std::int32_t(dims_.head_dim) - 1);
    for (GivensRotation& g : givens_) {  // random distinct planes, angles in (−π, π)
      g.i = dim(rng);
      do g.j = dim(rng);
      while (g.j == g.i && dims_.head_dim > 1);
      g.theta = static_cast<float>(std::numbers::pi * (2.0 * uniform() - 1.0));
    }
    for (LayerWeights& l : w.layers) {
      const auto n = static_cast<std::size_t>(C::givens_rotations);
      l.givens = std::span<const GivensRotation>(givens_).subspan(
          static_cast<std::size_t>(&l - w.layers.data()) * n, n);
      if (l.rotation.rows() > 0) {  // a random orthogonal matrix
        normal(l.rotation);
        reorthogonalize({mut(l.rotation), dims_.head_dim, dims_.head_dim});
      }
      ones(l.attn_norm);
      for (auto m : {l.wq, l.wk, l.wv, l.wo}) normal(m);
      if (!l.q_norm.empty()) {
        ones(l.q_norm);
        ones(l.k_norm);
      }
      if (!l.cross_norm.empty()) {
        ones(l.cross_norm);
        for (auto m : {l.cross_wq, l.cross_wk, l.cross_wv, l.cross_wo}) normal(m);
      }
      ones(l.ffn_norm);
      if (!l.post_attn_norm.empty()) {
        ones(l.post_attn_norm);
        ones(l.post_ffn_norm);
      }
      if (l.conv.rows() > 0) {
        normal(l.conv);
        std::fill(mut(l.conv_bias), mut(l.conv_bias) + l.conv_bias.size(), 0.0f);
      }
      if (l.router.rows() > 0) normal(l.router);
      for (const SwiGluWeights& f : l.experts)
        for (auto m : {f.gate, f.up, f.down}) normal(m);
      if (l.shared_expert.gate.rows() > 0) {
        for (auto m : {l.shared_expert.gate, l.shared_expert.up, l.shared_expert.down}) normal(m);
        normal(l.shared_expert_gate);
      }
      if (l.experts.empty())
        for (auto m : {l.ffn.gate, l.ffn.up, l.ffn.down}) normal(m);
    }
  }

  Dims dims_;
  ModelParams params_;  // qk_norm, pad_id and t5_buckets shape the weights
  AlignedBuffer<float> arena_;
  std::vector<GivensRotation> givens_;  // every layer's rotations, in layer order
  ModelWeights view_;
};

// The kinds of matrix a model multiplies, as WeightTypes names them.
enum class MatrixKind { attention, ffn, embedding, head, cross };

// fn(matrix, its kind, its name) for every non-empty matrix of w a linear layer multiplies (a tied
// LM head, which is the embedding's memory, only as the embedding).
template <class Fn>
void for_each_matrix(ModelWeights& w, Fn&& fn) {
  auto one = [&](WeightView& m, MatrixKind kind, const std::string& name) {
    if (m.rows() * m.cols() > 0) fn(m, kind, name);
  };
  one(w.embedding, MatrixKind::embedding, "embedding");
  if (w.lm_head.data() != w.embedding.data()) one(w.lm_head, MatrixKind::head, "lm_head");
  one(w.encoder_proj, MatrixKind::cross, "encoder_proj");
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    LayerWeights& lw = w.layers[l];
    const std::string at = "layers[" + std::to_string(l) + "].";
    one(lw.wq, MatrixKind::attention, at + "wq");
    one(lw.wk, MatrixKind::attention, at + "wk");
    one(lw.wv, MatrixKind::attention, at + "wv");
    one(lw.wo, MatrixKind::attention, at + "wo");
    one(lw.cross_wq, MatrixKind::cross, at + "cross_wq");
    one(lw.cross_wk, MatrixKind::cross, at + "cross_wk");
    one(lw.cross_wv, MatrixKind::cross, at + "cross_wv");
    one(lw.cross_wo, MatrixKind::cross, at + "cross_wo");
    auto ffn = [&](SwiGluWeights& f, const std::string& name) {
      one(f.gate, MatrixKind::ffn, name + ".gate");
      one(f.up, MatrixKind::ffn, name + ".up");
      one(f.down, MatrixKind::ffn, name + ".down");
    };
    ffn(lw.ffn, at + "ffn");
    for (std::size_t e = 0; e < lw.experts.size(); ++e)
      ffn(lw.experts[e], at + "experts[" + std::to_string(e) + "]");
    ffn(lw.shared_expert, at + "shared_expert");
  }
}

// Sets `a` on every matrix of w that can take it (int8: the q8_0, q4_0 and q8_group ones; bf16:
// the bf16 ones; the others get f32, but the x16 types keep int8), e.g. on a copy of a reader's
// ModelWeights. A tied LM head follows the embedding.
inline void set_activations(ModelWeights& w, Activations a) {
  const bool tied = w.lm_head.rows() > 0 && w.lm_head.data() == w.embedding.data();
  for_each_matrix(w, [&](WeightView& m, MatrixKind, const std::string&) {
    if (takes_activations(m, a) || takes_activations(m, Activations::f32))  // x16: int8 only
      m = m.with_activations(takes_activations(m, a) ? a : Activations::f32);
  });
  if (tied) w.lm_head = w.embedding;
}

// Storage types for ConvertedWeights, per kind of matrix.
struct WeightTypes {
  WeightType attention = WeightType::f32;  // wq, wk, wv, wo
  WeightType ffn = WeightType::f32;        // gate, up, down of the FFN and of every expert
  WeightType embedding = WeightType::f32;  // the token embedding (and so a tied LM head)
  WeightType head = WeightType::f32;       // an LM head of its own
  WeightType cross = WeightType::f32;      // cross_wq … cross_wo and encoder_proj
  // int8: every q8_0 / q4_0 matrix multiplies int8 activations (nn/matmul_int8.hpp); bf16:
  // every bf16 matrix multiplies bf16 activations (nn/matmul_bf16.hpp).
  Activations activations = Activations::f32;

  WeightType of(MatrixKind kind) const noexcept {
    switch (kind) {
      case MatrixKind::attention: return attention;
      case MatrixKind::ffn: return ffn;
      case MatrixKind::embedding: return embedding;
      case MatrixKind::head: return head;
      case MatrixKind::cross: return cross;
    }
    return WeightType::f32;
  }
};

namespace detail {
// A model whose matrices are rewritten into one 64-byte aligned arena (ConvertedWeights,
// RepackedWeights): bytes(m, kind) of each matrix's new form (−1: kept as given), then
// write(m, kind, dst, name) → its new view. The other members still point into the source.
class RewrittenWeights {
 public:
  RewrittenWeights(RewrittenWeights&&) noexcept = default;
  RewrittenWeights& operator=(RewrittenWeights&&) noexcept = default;

  const ModelWeights& view() const noexcept { return view_; }
  // Bytes of the rewritten matrices (each padded to 64).
  std::size_t bytes() const noexcept { return arena_.size(); }

 protected:
  template <class Bytes, class Write>
  RewrittenWeights(const ModelWeights& src, Bytes&& bytes, Write&& write) {
    view_ = src;
    index used = 0;
    for_each_matrix(view_, [&](WeightView& m, MatrixKind kind, const std::string&) {
      used += (std::max<index>(0, bytes(m, kind)) + 63) / 64 * 64;
    });
    arena_ = AlignedBuffer<std::byte>(static_cast<std::size_t>(used));
    used = 0;
    for_each_matrix(view_, [&](WeightView& m, MatrixKind kind, const std::string& name) {
      const index n = bytes(m, kind);
      if (n < 0) return;
      names_.push_back(name);  // a deque: the strings stay where they are, moves included
      m = write(m, kind, std::span<std::byte>(arena_.data() + used, static_cast<std::size_t>(n)),
                names_.back());
      used += (n + 63) / 64 * 64;
    });
    if (src.lm_head.rows() > 0 && src.lm_head.data() == src.embedding.data())
      view_.lm_head = view_.embedding;  // tied, and given as the embedding's own memory
  }

 private:
  AlignedBuffer<std::byte> arena_;
  std::deque<std::string> names_;  // the views' names, for error messages
  ModelWeights view_;
};
}  // namespace detail

// A copy of a model's f32 matrices in other storage types (core/convert.hpp), in one 64-byte
// aligned arena; the norms, biases, routers and other f32 members of view() still point into the
// source's memory, which must outlive this object. For engines that quantize their own weights
// at load time, and for tests. Throws if a source matrix is not f32 or does not convert
// (cols not whole blocks, values outside f16's range). bytes(): of the converted matrices.
class ConvertedWeights : public detail::RewrittenWeights {
 public:
  ConvertedWeights(const ModelWeights& src, const WeightTypes& types)
      : RewrittenWeights(
            src,
            [&](const WeightView& m, MatrixKind kind) {
              return converted_bytes(types.of(kind), m.rows(), m.cols());
            },
            [&](const WeightView& m, MatrixKind kind, std::span<std::byte> dst,
                const std::string& name) {
              check(m.type() == WeightType::f32, "ConvertedWeights", name + " type", "f32",
                    type_name(m.type()));
              const WeightView out = convert_weights(m.f32(), types.of(kind), dst, name.c_str());
              return takes_activations(out, types.activations)
                         ? out.with_activations(types.activations)
                         : out;
            }) {}
};

// A model's multiplied q4_0 and q8_0 matrices (all but an untied embedding) repacked as q4_0x16
// and q8_0x16 (repack_x16: the same blocks, laid out for the int8 kernel, with int8
// activations), in one 64-byte aligned arena; every other member of view() still points into the
// source's memory, which must outlive this object. For engines that load q4_0 or q8_0 checkpoints
// (a GGUF file) and decode with int8 activations: the x16 kernel is 1.6–4.7× the q4_0 one and
// 1.0–4.9× the q8_0 one per GEMV (docs/PERFORMANCE.md). Costs those matrices' bytes again (and up to 15 padding rows each); the
// source's pages of them are not read again. bytes(): of the copies.
class RepackedWeights : public detail::RewrittenWeights {
 public:
  explicit RepackedWeights(const ModelWeights& src)
      : RewrittenWeights(
            src,
            [tied = src.head().data() == src.embedding.data()](const WeightView& m,
                                                               MatrixKind kind) {
              // An embedding that is not the head is looked up, never multiplied: kept.
              return x16_type(m.type()) != m.type() && (kind != MatrixKind::embedding || tied)
                         ? converted_bytes(x16_type(m.type()), m.rows(), m.cols())
                         : index(-1);
            },
            [](const WeightView& m, MatrixKind, std::span<std::byte> dst, const std::string& name) {
              return repack_x16(m, dst, name.c_str());
            }) {}
};

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
