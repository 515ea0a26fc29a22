// A plain decoder in double precision, written from the definitions (issue 5's reference): no
// cache, no tiles, one token at a time in loops. It reads the weights through the same
// tformer::ModelWeights views as the Decoder (data only) and shares no kernel with it.
// Returns the logits of every position of `tokens`, fed at positions 0, 1, ….
#pragma once

#include <algorithm>
#include <cmath>
#include <span>
#include <cstdint>
#include <stdexcept>
#include <variant>
#include <vector>

#include "reference/ffn_reference.hpp"
#include "reference/rope_reference.hpp"
#include "reference/weight_reference.hpp"
#include "tformer/model/config.hpp"
#include "tformer/model/weights.hpp"

namespace ref {

// A typed weight's row r as doubles, decoded by the format's definition (weight_reference.hpp).
inline Vec weight_row(const tformer::WeightView& w, tformer::index r) {
  return decode_view_row(w, long(r));
}

// y = W x (+ b), W [out, in] of any storage type.
inline Vec matvec(const tformer::WeightView& w, const Vec& x, std::span<const float> bias = {}) {
  Vec y(static_cast<std::size_t>(w.rows()), 0.0);
  for (tformer::index o = 0; o < w.rows(); ++o) {
    const Vec row = weight_row(w, o);
    double s = 0;
    for (tformer::index i = 0; i < w.cols(); ++i) s += row[static_cast<std::size_t>(i)] * x[static_cast<std::size_t>(i)];
    y[static_cast<std::size_t>(o)] = s + (bias.empty() ? 0.0 : double(bias[static_cast<std::size_t>(o)]));
  }
  return y;
}

// y = W x (+ b), W a [out, in] view.
inline Vec matvec(tformer::MatrixView<const float> w, const Vec& x,
                  std::span<const float> bias = {}) {
  Vec y(static_cast<std::size_t>(w.rows()), 0.0);
  for (tformer::index o = 0; o < w.rows(); ++o) {
    double s = 0;
    for (tformer::index i = 0; i < w.cols(); ++i) s += double(w.row(o)[i]) * x[static_cast<std::size_t>(i)];
    y[static_cast<std::size_t>(o)] = s + (bias.empty() ? 0.0 : double(bias[static_cast<std::size_t>(o)]));
  }
  return y;
}

inline Vec rmsnorm(const Vec& x, std::span<const float> w, double eps, bool one_plus) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double inv = 1.0 / std::sqrt(ss / double(x.size()) + eps);
  Vec y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * (one_plus ? 1.0 + w[i] : w[i]);
  return y;
}

inline void add(Vec& x, const Vec& y) {
  for (std::size_t i = 0; i < x.size(); ++i) x[i] += y[i];
}

// RoPE of a model as Hugging Face's rotary embeddings compute it: the inverse frequencies and
// the factor that multiplies cos and sin, for a forward pass whose positions end at `length`
// (max(position_ids) + 1: dynamic NTK's base and LongRoPE's factors depend on it). `local`:
// local layers' own base without scaling (Gemma 3's rope_local_base_freq), when given.
struct RopeAt {
  std::vector<double> inv_freq;
  double factor = 1.0;
};
inline RopeAt decoder_rope(const tformer::Dims& d, const tformer::ModelParams& p, double length,
                           bool local = false) {
  namespace rs = tformer::rope_scaling;
  const int rotary = int(p.rotary_dim > 0 ? p.rotary_dim : d.head_dim);
  const double base = p.rope_base;
  if (local && p.local_rope_base > 0) return {default_inv_freq(rotary, p.local_rope_base), 1.0};
  const auto& scaling = p.rope_scaling;
  if (std::holds_alternative<rs::None>(scaling)) return {default_inv_freq(rotary, base), 1.0};
  if (const auto* lin = std::get_if<rs::Linear>(&scaling))  // positions / s
    return {linear_inv_freq(rotary, base, lin->factor), 1.0};
  if (const auto* l3 = std::get_if<rs::Llama3>(&scaling))
    return {llama3_inv_freq(rotary, base, l3->factor, l3->low_freq_factor, l3->high_freq_factor,
                            l3->original_max_positions),
            1.0};
  if (const auto* y = std::get_if<rs::Yarn>(&scaling)) {  // no mscale pair in these tests
    if (y->mscale || y->mscale_all_dim) throw std::logic_error("decoder reference: YaRN mscale");
    return {yarn_inv_freq(rotary, base, y->factor, y->original_max_positions, y->beta_fast,
                          y->beta_slow, y->truncate),
            y->attention_factor.value_or(yarn_default_attention_factor(y->factor))};
  }
  if (const auto* n = std::get_if<rs::DynamicNtk>(&scaling))  // b grows with L = max(length, L0)
    return {dynamic_ntk_inv_freq(rotary, base, n->factor, n->original_max_positions, length), 1.0};
  if (const auto* lr = std::get_if<rs::LongRope>(&scaling)) {
    // Long factors once the pass's length exceeds L0; s = max_position_embeddings / L0; the
    // factor sqrt(1 + ln s / ln L0) when s > 1.
    const double l0 = lr->original_max_positions;
    const double s = lr->factor.value_or(double(d.max_positions) / l0);
    return {longrope_inv_freq(rotary, base, length > l0 ? lr->long_factor : lr->short_factor),
            lr->attention_factor.value_or(s > 1 ? std::sqrt(1 + std::log(s) / std::log(l0)) : 1.0)};
  }
  throw std::logic_error("decoder reference: scaling not covered");
}

// The largest |a − b| over rows of logits of the same shape: how far two runs are apart.
inline double max_difference(const std::vector<Vec>& a, const std::vector<Vec>& b) {
  double m = 0;
  for (std::size_t t = 0; t < a.size(); ++t)
    for (std::size_t j = 0; j < a[t].size(); ++j) m = std::max(m, std::abs(a[t][j] - b[t][j]));
  return m;
}

// Softmax attention of one query head over keys/values rows [n][D] with a visibility mask.
inline Vec attend_one(const Vec& q, const std::vector<Vec>& keys, const std::vector<Vec>& values,
                      const std::vector<bool>& visible, double scale,
                      const std::vector<double>& bias = {}, double softcap = 0,
                      std::vector<double>* probs = nullptr) {  // the softmax weights, if given
  std::vector<double> s(keys.size(), 0.0);
  double m = -INFINITY;
  for (std::size_t j = 0; j < keys.size(); ++j) {
    if (!visible[j]) continue;
    double dot = 0;
    for (std::size_t i = 0; i < q.size(); ++i) dot += q[i] * keys[j][i];
    const double capped = softcap > 0 ? softcap * std::tanh(dot * scale / softcap) : dot * scale;
    s[j] = capped + (bias.empty() ? 0.0 : bias[j]);
    m = std::max(m, s[j]);
  }
  Vec out(q.size(), 0.0);
  if (probs != nullptr) probs->assign(keys.size(), 0.0);
  if (m == -INFINITY) return out;
  double z = 0;
  for (std::size_t j = 0; j < keys.size(); ++j)
    if (visible[j]) z += std::exp(s[j] - m);
  for (std::size_t j = 0; j < keys.size(); ++j)
    if (visible[j]) {
      const double pj = std::exp(s[j] - m) / z;
      if (probs != nullptr) (*probs)[j] = pj;
      for (std::size_t i = 0; i < q.size(); ++i) out[i] += pj * values[j][i];
    }
  return out;
}

// ALiBi slopes as the paper's repository computes them (get_slopes): for a power of two n,
// start = 2^(−2^−(log2 n − 3)) and slope_i = start^(i+1); otherwise those of the closest power
// of two p, then every second slope of 2p.
inline std::vector<double> alibi_slopes(int n) {
  auto pow2 = [](int m) {
    const double start = std::pow(2.0, -std::pow(2.0, -(std::log2(double(m)) - 3)));
    std::vector<double> s;
    for (int i = 0; i < m; ++i) s.push_back(start * std::pow(start, i));
    return s;
  };
  const double l = std::log2(double(n));
  if (l == std::floor(l)) return pow2(n);
  const int p = 1 << int(std::floor(l));
  std::vector<double> s = pow2(p);
  const std::vector<double> twice = alibi_slopes(2 * p);
  for (int i = 0; int(s.size()) < n; i += 2) s.push_back(twice[static_cast<std::size_t>(i)]);
  return s;
}

// Hugging Face's T5 _relative_position_bucket for r = key − query.
inline long t5_bucket(long r, long buckets, long max_distance, bool bidirectional) {
  long ret = 0;
  if (bidirectional) {
    buckets /= 2;
    ret += (r > 0 ? 1 : 0) * buckets;
    r = std::labs(r);
  } else {
    r = -std::min(r, 0L);
  }
  const long max_exact = buckets / 2;
  if (r < max_exact) return ret + r;
  long large = max_exact + long(std::log(double(r) / max_exact) /
                                std::log(double(max_distance) / max_exact) *
                                double(buckets - max_exact));
  return ret + std::min(large, buckets - 1);
}

// Splits a [heads · D] vector into heads.
inline std::vector<Vec> heads_of(const Vec& x, tformer::index heads, tformer::index D) {
  std::vector<Vec> h(static_cast<std::size_t>(heads));
  for (tformer::index i = 0; i < heads; ++i)
    h[static_cast<std::size_t>(i)] = Vec(x.begin() + i * D, x.begin() + (i + 1) * D);
  return h;
}

// What decoder_logits records on request (Hugging Face's output_hidden_states and
// output_attentions): hidden[l][t] the residual stream of token t before layer l (hidden[layers]:
// after the last), self[l][t][h] and cross[l][t][h] the softmax weights over every key (0 where
// not seen).
struct DecoderTrace {
  std::vector<std::vector<Vec>> hidden;
  std::vector<std::vector<std::vector<Vec>>> self, cross;
};

template <class C>
std::vector<Vec> decoder_logits(const tformer::ModelWeights& w, const tformer::Dims& d,
                                const std::vector<std::int32_t>& tokens,
                                const std::vector<float>& encoder = {},  // [S, encoder_width]
                                const std::vector<std::uint8_t>& encoder_valid = {},
                                const tformer::ModelParams& p = tformer::default_params<C>(),
                                DecoderTrace* trace = nullptr,
                                // The forward passes the tokens come in (sizes summing to the
                                // tokens; empty: one pass): a pass's RoPE length is its end.
                                const std::vector<tformer::index>& passes = {}) {
  using tformer::index;
  if (p.activation.kind != tformer::ActivationKind::SiLU &&
      p.activation.kind != tformer::ActivationKind::GeluTanh)  // the reference's activations
    throw std::logic_error("decoder reference: SiLU (SwiGLU) or GELU-tanh (GeGLU) only");
  const Act act = p.activation.kind == tformer::ActivationKind::SiLU ? Act::SiLU : Act::GeluTanh;
  const bool one_plus = C::norm == tformer::NormScale::OnePlusWeight;
  const double eps = p.eps;
  const index T = index(tokens.size()), D = d.head_dim, group = d.heads / d.kv_heads;
  const double scale = 1.0 / std::sqrt(double(D));
  // Each token's RoPE (global layers, local layers): that of its pass's length.
  std::vector<RopeAt> rope_global, rope_local;
  {
    std::vector<tformer::index> sizes = passes.empty() ? std::vector<tformer::index>{T} : passes;
    tformer::index end = 0;
    for (tformer::index n : sizes) {
      end += n;
      for (tformer::index i = 0; i < n; ++i) {
        rope_global.push_back(decoder_rope(d, p, double(end)));
        rope_local.push_back(decoder_rope(d, p, double(end), true));
      }
    }
    if (end != T) throw std::logic_error("decoder reference: passes do not sum to the tokens");
  }
  const Layout layout =
      C::rope_layout == tformer::RopeLayout::Interleaved ? Layout::Interleaved : Layout::RotateHalf;

  std::vector<Vec> x(static_cast<std::size_t>(T));
  for (index t = 0; t < T; ++t) {
    x[static_cast<std::size_t>(t)] = weight_row(w.embedding, tokens[static_cast<std::size_t>(t)]);
    for (double& e : x[static_cast<std::size_t>(t)]) e *= p.embed_scale;
    if constexpr (C::positions == tformer::PositionKind::Sinusoidal) {  // + scale · pe / |pe|
      const float* pe = w.position_embedding.row(t);
      double ss = 0;
      for (index c = 0; c < d.hidden; ++c) ss += double(pe[c]) * pe[c];
      for (index c = 0; c < d.hidden; ++c)
        x[static_cast<std::size_t>(t)][static_cast<std::size_t>(c)] +=
            ss > 0 ? p.position_scale * pe[c] / std::sqrt(ss) : 0.0;
    }
  }
  const std::vector<double> slopes = alibi_slopes(int(d.heads));
  // The encoder, projected to the hidden width.
  std::vector<Vec> enc;
  if constexpr (C::cross_attention) {
    const index S = index(encoder.size()) / d.encoder_width;
    for (index s = 0; s < S; ++s) {
      Vec e(encoder.begin() + s * d.encoder_width, encoder.begin() + (s + 1) * d.encoder_width);
      enc.push_back(w.encoder_proj.rows() > 0 ? matvec(w.encoder_proj, e, w.encoder_proj_bias) : e);
    }
  }
  const auto per_token_head = [&] {
    return std::vector<std::vector<Vec>>(static_cast<std::size_t>(T),
                                         std::vector<Vec>(static_cast<std::size_t>(d.heads)));
  };
  for (const tformer::LayerWeights& lw : w.layers) {
    const index layer = index(&lw - w.layers.data());
    if (trace != nullptr) {
      trace->hidden.push_back(x);
      trace->self.push_back(per_token_head());
      if (C::cross_attention) trace->cross.push_back(per_token_head());
    }
    // Local or global, written out: a local_layers list says it per layer; else, with
    // global_every = n, layers n−1, 2n−1, … are global.
    const auto pattern = p.attention;
    const bool global = pattern.local_layers.empty()
                            ? pattern.global_every > 0 && (layer + 1) % pattern.global_every == 0
                            : !pattern.local_layers[static_cast<std::size_t>(layer)];
    const index window = global ? 0 : pattern.window;
    // Attention sinks, as StreamingLLM runs them: the first `sinks` keys stay visible. With
    // in-cache positions, a query past sinks + window − 1 sits at that position of a cache that
    // holds the sinks at 0…sinks − 1 and its window right after them; RoPE and the bias see
    // those positions (else every token keeps its own).
    const index sinks = global ? 0 : pattern.sinks;
    const bool in_cache = pattern.sink_positions == tformer::SinkPositions::InCache;
    std::vector<std::vector<Vec>> q(static_cast<std::size_t>(T)), k(static_cast<std::size_t>(T)), v(static_cast<std::size_t>(T));
    std::vector<Vec> normed(static_cast<std::size_t>(T));  // the attention block's input
    for (index t = 0; t < T; ++t) {
      const Vec h = rmsnorm(x[static_cast<std::size_t>(t)], lw.attn_norm, eps, one_plus);
      normed[static_cast<std::size_t>(t)] = h;
      q[t] = heads_of(matvec(lw.wq, h, lw.bq), d.heads, D);
      k[t] = heads_of(matvec(lw.wk, h, lw.bk), d.kv_heads, D);
      v[t] = heads_of(matvec(lw.wv, h, lw.bv), d.kv_heads, D);
      // The rotary block: Givens rotations in order, then R, in double.
      auto rotate = [&](Vec& v) {
        for (const tformer::GivensRotation& g : lw.givens) {
          const double c = std::cos(double(g.theta)), s = std::sin(double(g.theta));
          const double a = v[static_cast<std::size_t>(g.i)], b = v[static_cast<std::size_t>(g.j)];
          v[static_cast<std::size_t>(g.i)] = c * a - s * b;
          v[static_cast<std::size_t>(g.j)] = s * a + c * b;
        }
        if (lw.rotation.rows() > 0) v = matvec(lw.rotation, v);
      };
      for (auto& head : q[t]) {  // RoPE comes at attention time, at the pair's positions
        if (p.qk_norm) head = rmsnorm(head, lw.q_norm, eps, one_plus);
        rotate(head);
      }
      for (auto& head : k[t]) {
        if (p.qk_norm) head = rmsnorm(head, lw.k_norm, eps, one_plus);
        rotate(head);
      }
    }
    // Token t's head rotated at `position` with t's frequencies; cos and sin × the factor.
    const auto rotated = [&](const Vec& head, index t, index position) {
      if (C::positions != tformer::PositionKind::Rope) return head;
      const RopeAt& r = (window > 0 ? rope_local : rope_global)[static_cast<std::size_t>(t)];
      const std::size_t rot = static_cast<std::size_t>(p.rotary_dim > 0 ? p.rotary_dim : D);
      Vec out = rope(head, rot, layout, double(position), r.inv_freq);
      for (std::size_t i = 0; i < rot; ++i) out[i] *= r.factor;
      return out;
    };
    for (index t = 0; t < T; ++t) {
      Vec att;
      const bool shifted = sinks > 0 && in_cache && t > sinks + window - 1;
      const index qpos = shifted ? sinks + window - 1 : t;
      for (index h = 0; h < d.heads; ++h) {
        const Vec query = rotated(q[t][static_cast<std::size_t>(h)], t, qpos);
        std::vector<Vec> keys, values;
        std::vector<bool> visible;
        std::vector<double> bias;
        for (index j = 0; j < T; ++j) {
          const index kpos = !shifted || j < sinks ? j : sinks + window - 1 - (t - j);
          keys.push_back(rotated(k[j][static_cast<std::size_t>(h / group)], j, kpos));
          values.push_back(v[j][static_cast<std::size_t>(h / group)]);
          visible.push_back(j <= t && (window == 0 || j > t - window || j < sinks));
          if (C::bias == tformer::BiasKind::ALiBi)
            bias.push_back(slopes[static_cast<std::size_t>(h)] * double(kpos - qpos));
          if (C::bias == tformer::BiasKind::T5)
            bias.push_back(w.relative_bias.row(t5_bucket(kpos - qpos, p.t5_buckets,
                                                         p.t5_max_distance, false))[h]);
        }
        const Vec o = attend_one(query, keys, values, visible, p.attention_scale > 0 ? double(p.attention_scale) : scale,
                                 bias, p.attention_softcap,
                                 trace != nullptr ? &trace->self.back()[t][h] : nullptr);
        att.insert(att.end(), o.begin(), o.end());
      }
      Vec out = matvec(lw.wo, att, lw.bo);
      if (C::post_norms) out = rmsnorm(out, lw.post_attn_norm, eps, one_plus);  // Gemma 2
      if constexpr (C::conv_kernel > 0) {  // + Σ_i w[c][i] · h[t − (k − 1) + i][c], zero before 0
        const index k = C::conv_kernel;
        for (index c = 0; c < d.hidden; ++c) {
          double acc = lw.conv_bias.empty() ? 0.0 : lw.conv_bias[static_cast<std::size_t>(c)];
          for (index i = 0; i < k; ++i) {
            const index src = t - (k - 1) + i;
            if (src >= 0)
              acc += double(lw.conv.row(c)[i]) *
                     normed[static_cast<std::size_t>(src)][static_cast<std::size_t>(c)];
          }
          out[static_cast<std::size_t>(c)] += acc;
        }
      }
      add(x[static_cast<std::size_t>(t)], out);
    }
    if constexpr (C::cross_attention) {
      std::vector<std::vector<Vec>> ck, cv;
      std::vector<bool> visible;
      for (std::size_t s = 0; s < enc.size(); ++s) {
        ck.push_back(heads_of(matvec(lw.cross_wk, enc[s]), d.kv_heads, D));
        cv.push_back(heads_of(matvec(lw.cross_wv, enc[s]), d.kv_heads, D));
        visible.push_back(encoder_valid.empty() || encoder_valid[s] != 0);
      }
      for (index t = 0; t < T; ++t) {
        const Vec h = rmsnorm(x[static_cast<std::size_t>(t)], lw.cross_norm, eps, one_plus);
        const auto cq = heads_of(matvec(lw.cross_wq, h), d.heads, D);
        Vec att;
        for (index hh = 0; hh < d.heads; ++hh) {
          std::vector<Vec> keys, values;
          for (std::size_t s = 0; s < enc.size(); ++s) {
            keys.push_back(ck[s][static_cast<std::size_t>(hh / group)]);
            values.push_back(cv[s][static_cast<std::size_t>(hh / group)]);
          }
          const Vec o = attend_one(cq[static_cast<std::size_t>(hh)], keys, values, visible, scale,
                                   {}, 0, trace != nullptr ? &trace->cross.back()[t][hh] : nullptr);
          att.insert(att.end(), o.begin(), o.end());
        }
        add(x[static_cast<std::size_t>(t)], matvec(lw.cross_wo, att));
      }
    }
    for (index t = 0; t < T; ++t) {
      const Vec h = rmsnorm(x[static_cast<std::size_t>(t)], lw.ffn_norm, eps, one_plus);
      auto ffn = [&](const tformer::SwiGluWeights& f, int topk) {
        Vec g = matvec(f.gate, h), u = matvec(f.up, h);
        for (std::size_t j = 0; j < g.size(); ++j) g[j] = activate(act, g[j]) * u[j];
        if (topk >= 0) g = keep_topk(g, topk);
        return matvec(f.down, g);
      };
      if constexpr (C::ffn == tformer::FfnKind::MoE) {
        const auto chosen = route(matvec(lw.router, h), int(d.top_k),
                                  p.router == tformer::RouterKind::SoftmaxThenTopK, p.renormalize);
        Vec y(static_cast<std::size_t>(d.hidden), 0.0);
        for (const auto& [e, weight] : chosen) {
          const Vec ye = ffn(lw.experts[static_cast<std::size_t>(e)], -1);
          for (std::size_t i = 0; i < y.size(); ++i) y[i] += weight * ye[i];
        }
        if (lw.shared_expert.gate.rows() > 0) {  // + sigmoid(h · g) · shared(h) (Qwen2-MoE)
          const Vec ys = ffn(lw.shared_expert, -1);
          const double g = lw.shared_expert_gate.rows() > 0
                               ? sigmoid(matvec(lw.shared_expert_gate, h)[0])
                               : 1.0;
          for (std::size_t i = 0; i < y.size(); ++i) y[i] += g * ys[i];
        }
        if (C::post_norms) y = rmsnorm(y, lw.post_ffn_norm, eps, one_plus);
        add(x[static_cast<std::size_t>(t)], y);
      } else {
        Vec y = ffn(lw.ffn, C::ffn == tformer::FfnKind::TopK ? int(d.top_k) : -1);
        if (C::post_norms) y = rmsnorm(y, lw.post_ffn_norm, eps, one_plus);  // Gemma 2
        add(x[static_cast<std::size_t>(t)], y);
      }
    }
  }
  if (trace != nullptr) trace->hidden.push_back(x);
  std::vector<Vec> logits;
  for (index t = 0; t < T; ++t) {
    logits.push_back(matvec(w.head(), rmsnorm(x[static_cast<std::size_t>(t)], w.final_norm, eps, one_plus)));
    if (p.final_softcap > 0)
      for (double& z : logits.back()) z = p.final_softcap * std::tanh(z / p.final_softcap);
  }
  return logits;
}

}  // namespace ref
