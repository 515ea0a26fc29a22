// Bad inputs of the public entry points in include/tformer/nn/ (see bad_input.hpp).
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "bad_input/bad_input.hpp"
#include "tformer/cache/kv_cache.hpp"
#include "tformer/nn/activation.hpp"
#include "tformer/nn/attention.hpp"
#include "tformer/nn/causal_conv.hpp"
#include "tformer/nn/position_bias.hpp"
#include "tformer/nn/rmsnorm.hpp"

using namespace tformer;
using Index = tformer::index;
using namespace bad_input;

TEST_CASE("bad_input: activations, RMSNorm, convolution", "[bad_input][nn]") {
  std::vector<float> gate(16, 0.5f), up(16, 2.0f), out(16, 0.0f), buf(48, 1.0f);
  auto act_state = [&] { return contents(out) + contents(buf); };
  const std::span<float> all(buf);
  const auto gated = [&](std::span<const float> g, std::span<const float> u, std::span<float> o,
                         Activation a = {}) { return [=] { gated_activation(g, u, o, a); }; };
  const std::string ga = "gated_activation";

  std::vector<float> x(2 * 8, 1.0f), y(2 * 8, 0.0f), r(2 * 8, 0.5f), w(8, 1.0f), big(64, 1.0f);
  auto norm_state = [&] { return contents(x) + contents(y) + contents(big); };
  const MatrixView<const float> cx(x.data(), 2, 8);
  const MatrixView<float> vx(x.data(), 2, 8), vy(y.data(), 2, 8);
  const MatrixView<const float> cr(r.data(), 2, 8);
  const HeadsView<float> heads(x.data(), 2, 2, 4);
  const std::vector<float> w4(4, 1.0f), w7(7, 1.0f);

  std::vector<float> cx_data(3 * 2, 1.0f), cw(2 * 3, 0.5f), cstate(2 * 2, 0.0f), cy(3 * 2, 0.0f),
      cbig(64, 0.0f);
  auto conv_state = [&] { return contents(cstate) + contents(cy) + contents(cbig); };
  const std::vector<float> bias2(2, 0.1f), bias3(3, 0.1f);
  const auto conv = [&](MatrixView<const float> xv, MatrixView<const float> wv,
                        std::span<const float> b, MatrixView<float> sv, MatrixView<float> yv) {
    return [=] { causal_conv1d(xv, wv, b, sv, yv); };
  };
  const MatrixView<const float> X(cx_data.data(), 3, 2), W(cw.data(), 2, 3);
  const MatrixView<float> S(cstate.data(), 2, 2), Y(cy.data(), 3, 2);
  const std::string cc = "causal_conv1d";

  bad_input::run({
      {ga, "up size 15", "up size", gated(gate, std::span(up).first(15), out), act_state},
      {ga, "out size 17", "out size", gated(gate, up, std::span(buf).first(17)), act_state},
      {ga, "SiluSigmoid beta = NaN", "beta", gated(gate, up, out, {ActivationKind::SiluSigmoid, kNaN}),
       act_state},
      {ga, "SiluSigmoid beta = +inf", "beta",
       gated(gate, up, out, {ActivationKind::SiluSigmoid, kInf}), act_state},
      {ga, "SiluSigmoid beta = -inf", "beta",
       gated(gate, up, out, {ActivationKind::SiluSigmoid, -kInf}), act_state},
      {ga, "kind = 3", "kind", gated(gate, up, out, {static_cast<ActivationKind>(3), 1.0f}),
       act_state},
      {ga, "kind = -1", "kind", gated(gate, up, out, {static_cast<ActivationKind>(-1), 1.0f}),
       act_state},
      {ga, "out one value past gate (overlapping)", "out",
       gated(all.subspan(0, 16), up, all.subspan(1, 16)), act_state},
      {ga, "out overlapping up", "out", gated(gate, all.subspan(8, 16), all.subspan(0, 16)),
       act_state},
      {"soft_cap", "cap = 0", "cap", [&] { soft_cap(out, 0.0f); }, act_state},
      {"soft_cap", "cap = -30", "cap", [&] { soft_cap(out, -30.0f); }, act_state},
      {"soft_cap", "cap = NaN", "cap", [&] { soft_cap(out, kNaN); }, act_state},
      {"soft_cap", "cap = +inf", "cap",
       [&] { soft_cap(out, std::numeric_limits<float>::infinity()); }, act_state},
      {"check_activation", "SiluSigmoid beta = NaN", "beta",
       [] { check_activation("f", {ActivationKind::SiluSigmoid, kNaN}); }},
      {"check_activation", "kind = 7", "kind",
       [] { check_activation("f", {static_cast<ActivationKind>(7), 1.0f}); }},

      {"rmsnorm", "eps = NaN", "eps", [&] { rmsnorm(cx, w, kNaN, vy); }, norm_state},
      {"rmsnorm", "eps = +inf", "eps", [&] { rmsnorm(cx, w, kInf, vy); }, norm_state},
      {"rmsnorm", "eps = -1e-6", "eps", [&] { rmsnorm(cx, w, -1e-6f, vy); }, norm_state},
      {"rmsnorm", "weight size 7", "weight size", [&] { rmsnorm(cx, w7, 1e-6f, vy); }, norm_state},
      {"rmsnorm", "y [3, 8]", "y shape",
       [&] { rmsnorm(cx, w, 1e-6f, {big.data(), 3, 8}); }, norm_state},
      {"rmsnorm", "y one row into x", "memory disjoint from x",
       [&] { rmsnorm({big.data(), 2, 8}, w, 1e-6f, {big.data() + 8, 2, 8}); }, norm_state},
      {"rmsnorm", "x rows = 2^62 (extent wraps)", "x shape",
       [&] { rmsnorm({x.data(), opaque(huge), 8}, w, 1e-6f, {y.data(), opaque(huge), 8}); },
       norm_state},
      {"rmsnorm", "x rows = -1", "x shape", [&] { rmsnorm({x.data(), -1, 8}, w, 1e-6f, vy); },
       norm_state},
      {"rmsnorm", "x null", "x data", [&] { rmsnorm({nullptr, 2, 8}, w, 1e-6f, vy); }, norm_state},
      {"rmsnorm", "row_stride < cols", "row_stride >= cols",
       [&] { rmsnorm({x.data(), 2, 8, 4}, w, 1e-6f, {y.data(), 2, 8, 4}); }, norm_state},
      {"rmsnorm_residual", "eps = NaN", "eps", [&] { rmsnorm_residual(vx, cr, w, kNaN, vy); },
       norm_state},
      {"rmsnorm_residual", "eps = -inf", "eps", [&] { rmsnorm_residual(vx, cr, w, -kInf, vy); },
       norm_state},
      {"rmsnorm_residual", "weight size 7", "weight size",
       [&] { rmsnorm_residual(vx, cr, w7, 1e-6f, vy); }, norm_state},
      {"rmsnorm_residual", "residual [1, 8]", "residual shape",
       [&] { rmsnorm_residual(vx, cr.row_slice(0, 1), w, 1e-6f, vy); }, norm_state},
      {"rmsnorm_residual", "y [2, 4]", "y shape",
       [&] { rmsnorm_residual(vx, cr, w, 1e-6f, {y.data(), 2, 4}); }, norm_state},
      {"rmsnorm_residual", "y = x", "memory disjoint from x",
       [&] { rmsnorm_residual(vx, cr, w, 1e-6f, vx); }, norm_state},
      {"rmsnorm_residual", "y = residual", "memory disjoint from residual",
       [&] { rmsnorm_residual(vx, cr, w, 1e-6f, {r.data(), 2, 8}); }, norm_state},
      {"rmsnorm_residual", "residual = x", "memory disjoint from residual",
       [&] { rmsnorm_residual(vx, cx, w, 1e-6f, vy); }, norm_state},
      {"rmsnorm_residual", "x rows = 2^62", "x shape",
       [&] { rmsnorm_residual({x.data(), opaque(huge), 8}, cr, w, 1e-6f, vy); }, norm_state},
      {"rmsnorm_heads", "eps = NaN", "eps", [&] { rmsnorm_heads(heads, w4, kNaN); }, norm_state},
      {"rmsnorm_heads", "eps = +inf", "eps", [&] { rmsnorm_heads(heads, w4, kInf); }, norm_state},
      {"rmsnorm_heads", "weight size 8 for head_dim 4", "weight size",
       [&] { rmsnorm_heads(heads, w, 1e-6f); }, norm_state},
      {"rmsnorm_heads", "heads = 2^61 (wraps)", "x shape",
       [&] { rmsnorm_heads({x.data(), 1, Index(1) << 61, 8}, w, 1e-6f); }, norm_state},
      {"rmsnorm_heads", "token_stride < heads * head_dim", "token_stride",
       [&] { rmsnorm_heads({x.data(), 2, 2, 4, 6}, w4, 1e-6f); }, norm_state},
      {"rmsnorm_heads", "null data", "x data", [&] { rmsnorm_heads({nullptr, 2, 2, 4}, w4, 1e-6f); },
       norm_state},

      {cc, "w.rows 3 for 2 channels", "w.rows", conv(X, {cw.data(), 3, 2}, {}, S, Y), conv_state},
      {cc, "kernel size 0", "kernel size", conv(X, {cw.data(), 2, 0}, {}, {cstate.data(), 0, 2}, Y),
       conv_state},
      {cc, "bias size 3", "bias size", conv(X, W, bias3, S, Y), conv_state},
      {cc, "state [1, 2] for k = 3", "state shape", conv(X, W, bias2, {cstate.data(), 1, 2}, Y),
       conv_state},
      {cc, "y [2, 2] for 3 rows", "y shape", conv(X, W, bias2, S, {cy.data(), 2, 2}), conv_state},
      {cc, "y = x", "memory disjoint from x",
       conv({cbig.data(), 3, 2}, W, bias2, S, {cbig.data(), 3, 2}), conv_state},
      {cc, "y overlapping w", "memory disjoint from w",
       conv(X, {cbig.data(), 2, 3}, bias2, S, {cbig.data() + 4, 3, 2}), conv_state},
      {cc, "y overlapping state", "memory disjoint from state",
       conv(X, W, bias2, {cbig.data(), 2, 2}, {cbig.data() + 2, 3, 2}), conv_state},
      {cc, "state overlapping x", "memory disjoint from x",
       conv({cbig.data(), 3, 2}, W, bias2, {cbig.data() + 4, 2, 2}, Y), conv_state},
      {cc, "state overlapping w", "memory disjoint from w",
       conv(X, {cbig.data(), 2, 3}, bias2, {cbig.data() + 2, 2, 2}, Y), conv_state},
      {cc, "x rows = 2^62", "x shape",
       conv({cx_data.data(), opaque(huge), 2}, W, bias2, S, Y), conv_state},
      {cc, "w null", "w data", conv(X, {nullptr, 2, 3}, bias2, S, Y), conv_state},
      {cc, "x cols = -2", "x shape", conv({cx_data.data(), 3, -2}, W, bias2, S, Y), conv_state},
  });
}

TEST_CASE("bad_input: position biases", "[bad_input][nn]") {
  std::vector<float> table(32 * 2, 0.0f);
  const auto t5 = [&](MatrixView<const float> t, Index max_distance, bool bidirectional) {
    return [=] { T5Bias b(t, max_distance, bidirectional); };
  };
  const MatrixView<const float> T(table.data(), 32, 2);
  bad_input::run({
      {"alibi_slopes", "heads = 0", "heads", [] { (void)alibi_slopes(0); }},
      {"alibi_slopes", "heads = -3", "heads", [] { (void)alibi_slopes(-3); }},
      {"alibi_slopes", "heads = INT64_MAX", "heads", [] { (void)alibi_slopes(max_index); }},
      {"alibi_slopes", "heads = 2^40 (2^42 bytes)", "heads",
       [] { (void)alibi_slopes(Index(1) << 40); }},
      {"alibi_slopes", "heads = 2^36 (256 GiB: below 2^40 bytes, past any memory)", "heads",
       [] { (void)alibi_slopes(Index(1) << 36); }},
      {"t5_bucket", "buckets = 1", "buckets", [] { (void)t5_bucket(3, 1, 128, false); }},
      {"t5_bucket", "buckets = 3, bidirectional", "buckets", [] { (void)t5_bucket(3, 3, 128, true); }},
      {"t5_bucket", "max_distance = 16 within 16 exact buckets", "max_distance",
       [] { (void)t5_bucket(3, 32, 16, false); }},
      {"t5_bucket", "max_distance = -1", "max_distance", [] { (void)t5_bucket(3, 32, -1, true); }},
      {"T5Bias", "3 buckets, bidirectional", "table rows", t5({table.data(), 3, 2}, 128, true)},
      {"T5Bias", "1 bucket", "table rows", t5({table.data(), 1, 2}, 128, false)},
      {"T5Bias", "0 heads", "table cols (heads)", t5({table.data(), 32, 0}, 128, false)},
      {"T5Bias", "max_distance = 16 within the exact buckets", "max_distance", t5(T, 16, false)},
      {"T5Bias", "max_distance = INT64_MAX", "max_distance", t5(T, max_index, false)},
      {"T5Bias", "max_distance = 2^34 (256 GiB of lookup, below 2^40 bytes)", "max_distance",
       t5(T, Index(1) << 34, false)},
      {"T5Bias", "max_distance = 2^40 (2^44 bytes of lookup)", "max_distance",
       t5(T, Index(1) << 40, true)},
      {"T5Bias", "null table", "table data", t5({nullptr, 32, 2}, 128, false)},
      {"T5Bias", "table rows = 2^62", "table shape", t5({table.data(), huge, 2}, 128, false)},
  });
}

TEST_CASE("bad_input: attention", "[bad_input][nn][attention]") {
  const Index D = 8, Hq = 4, Hkv = 2, L = 10;
  KVCache cache({.layers = 1, .kv_heads = Hkv, .head_dim = D, .capacity = L});
  std::vector<float> kv_data(std::size_t(L * Hkv * D), 0.5f);
  cache.write(0, 0, HeadsView<const float>(kv_data.data(), L, Hkv, D),
              HeadsView<const float>(kv_data.data(), L, Hkv, D));
  cache.advance(0, L);
  const KVView kv = cache.view(0, 0, L);
  KVCache ring({.layers = 1, .kv_heads = Hkv, .head_dim = D, .window = 4, .max_step = 1,
                .sinks = 1});
  for (Index t = 0; t < L; ++t) {
    ring.write(0, 0, HeadsView<const float>(kv_data.data(), 1, Hkv, D),
               HeadsView<const float>(kv_data.data(), 1, Hkv, D));
    ring.advance(0, 1);
  }
  const KVView ring_view = ring.view(0, 0, L);

  std::vector<float> q(std::size_t(2 * Hq * D), 1.0f), o(q.size(), 0.0f), big(256, 1.0f),
      w(std::size_t(2 * Hq * L), 0.0f);
  auto state = [&] { return contents(o) + contents(big) + contents(w); };
  const HeadsView<const float> qv(q.data(), 2, Hq, D);
  const HeadsView<float> ov(o.data(), 2, Hq, D), wv(w.data(), 2, Hq, L);
  AttentionWorkspace ws(Hq / Hkv, D), wrong_group(1, D), wrong_dim(Hq / Hkv, 16);
  const auto at = Positions::offset(8);
  const std::vector<std::uint8_t> short_valid(L - 1, 1);
  const std::vector<std::int32_t> ids3 = {1, 2, 3};
  const auto three = alibi_slopes(3), four = alibi_slopes(Hq);
  std::vector<float> t5_table(32 * 3, 0.0f);
  const T5Bias t5_three({t5_table.data(), 32, 3}, 128, false);

  // attention() with options changed from the defaults.
  const auto attend = [&](void (*change)(AttentionOptions&), HeadsView<const float> qq,
                          const KVView& k, Positions p, HeadsView<float> oo,
                          AttentionWorkspace& wsp) {
    AttentionOptions opt;
    change(opt);
    return [=, &wsp] { attention(qq, k, p, oo, wsp, opt); };
  };
  const auto with = [&](void (*change)(AttentionOptions&)) {
    return attend(change, qv, kv, at, ov, ws);
  };
  const auto weights = [&](void (*change)(AttentionOptions&), HeadsView<float> wt) {
    AttentionOptions opt;
    change(opt);
    return [=] { attention_weights(qv, kv, at, wt, opt); };
  };
  const auto same = [](AttentionOptions&) {};
  const auto kv_with = [&](void (*change)(KVView&)) {
    KVView k = kv;
    change(k);
    return k;
  };
  const std::string a = "attention", aw = "attention_weights", ws_name = "AttentionWorkspace";
  std::vector<float> lse(std::size_t(2 * Hq), 0.0f);
  const MatrixView<const float> lse_c(lse.data(), 2, Hq);
  auto lse_state = [&] { return contents(o) + contents(big) + contents(lse); };
  AttentionOptions with_sink_q;
  with_sink_q.window = 4;
  with_sink_q.sinks = 1;
  with_sink_q.sink_q = HeadsView<const float>(o.data(), 2, Hq, D);

  bad_input::run({
      {ws_name, "group_size = 0", "group_size", [] { AttentionWorkspace x(0, 8); }},
      {ws_name, "group_size = -2", "group_size", [] { AttentionWorkspace x(-2, 8); }},
      {ws_name, "head_dim = 0", "head_dim", [] { AttentionWorkspace x(2, 0); }},
      {ws_name, "group_size = 2^60 (products wrap)", "group_size",
       [] { AttentionWorkspace x(Index(1) << 60, 16); }},
      {ws_name, "head_dim = 2^40", "head_dim", [] { AttentionWorkspace x(1, Index(1) << 40); }},

      {a, "scale = +inf", "scale", with([](auto& o) { o.scale = kInf; }), state},
      {a, "scale = NaN", "scale", with([](auto& o) { o.scale = kNaN; }), state},
      {a, "scale = -1", "scale", with([](auto& o) { o.scale = -1.0f; }), state},
      {a, "softcap = NaN (would read as off)", "softcap", with([](auto& o) { o.softcap = kNaN; }),
       state},
      {a, "softcap = +inf (outputs would be 0)", "softcap", with([](auto& o) { o.softcap = kInf; }),
       state},
      {a, "softcap = -5", "softcap", with([](auto& o) { o.softcap = -5.0f; }), state},
      {a, "window = -1", "window", with([](auto& o) { o.window = -1; }), state},
      {a, "sinks = -1", "sinks", with([](auto& o) { o.sinks = -1; }), state},
      {a, "sinks without a window", "sinks need a window", with([](auto& o) { o.sinks = 2; }),
       state},
      {a, "sink_positions = 5", "sink_positions", with([](auto& o) {
         o.window = 4;
         o.sinks = 1;
         o.sink_positions = static_cast<SinkPositions>(5);
       }),
       state},
      {a, "key_valid of 9 flags for 10 keys", "key_valid size",
       [&] {
         AttentionOptions opt;
         opt.key_valid = short_valid;
         attention(qv, kv, at, ov, ws, opt);
       },
       state},
      {a, "sink_q of 1 token for 2", "sink_q.tokens",
       [&] {
         AttentionOptions opt;
         opt.window = 4;
         opt.sinks = 1;
         opt.sink_q = HeadsView<const float>(big.data(), 1, Hq, D);
         attention(qv, kv, at, ov, ws, opt);
       },
       state},
      {a, "sink_q heads 2", "sink_q.heads",
       [&] {
         AttentionOptions opt;
         opt.window = 4;
         opt.sinks = 1;
         opt.sink_q = HeadsView<const float>(big.data(), 2, 2, D);
         attention(qv, kv, at, ov, ws, opt);
       },
       state},
      {a, "o = sink_q", "memory disjoint from sink_q",
       [&] { attention(qv, kv, at, ov, ws, with_sink_q); }, state},
      {a, "q.heads 3 for 2 kv heads", "q.heads",
       attend(same, {q.data(), 2, 3, D}, kv, at, {o.data(), 2, 3, D}, ws), state},
      {a, "q.head_dim 4 for kv head_dim 8", "q.head_dim",
       attend(same, {q.data(), 2, Hq, 4}, kv, at, {o.data(), 2, Hq, 4}, ws), state},
      {a, "q heads = 2^61 (wraps)", "q shape",
       attend(same, {q.data(), 1, Index(1) << 61, D}, kv, at, ov, ws), state},
      {a, "q null", "q data", attend(same, {nullptr, 2, Hq, D}, kv, at, ov, ws), state},
      {a, "o.tokens 1", "o.tokens", attend(same, qv, kv, at, {o.data(), 1, Hq, D}, ws), state},
      {a, "o.heads 2", "o.heads", attend(same, qv, kv, at, {o.data(), 2, 2, D}, ws), state},
      {a, "o = q", "memory disjoint from q",
       attend(same, {big.data(), 2, Hq, D}, kv, at, {big.data(), 2, Hq, D}, ws), state},
      {a, "o one head into q", "memory disjoint from q",
       attend(same, {big.data(), 2, Hq, D}, kv, at, {big.data() + D, 2, Hq, D}, ws), state},
      {a, "workspace group 1 for group 2", "workspace group size",
       attend(same, qv, kv, at, ov, wrong_group), state},
      {a, "workspace head_dim 16", "workspace head_dim", attend(same, qv, kv, at, ov, wrong_dim),
       state},
      {a, "causal position 10 of 10 keys", "positions",
       attend(same, qv, kv, Positions::offset(9), ov, ws), state},
      {a, "3 position ids for 2 tokens", "position ids count",
       attend(same, qv, kv, Positions::ids(ids3), ov, ws), state},
      {a, "kv.length = -1", "kv.length",
       attend([](auto& o) { o.causal = false; }, qv, kv_with([](auto& k) { k.length = -1; }), at,
              ov, ws),
       state},
      {a, "kv.stored = -1", "kv.stored",
       attend(same, qv, kv_with([](auto& k) { k.stored = -1; }), at, ov, ws), state},
      {a, "kv.kv_heads = 0", "q.heads",
       attend(same, qv, kv_with([](auto& k) { k.kv_heads = 0; }), at, ov, ws), state},
      {a, "kv.type 9 (not a KVType)", "kv.type",
       attend(same, qv, kv_with([](auto& k) { k.type = static_cast<tformer::KVType>(9); }), at, ov,
              ws),
       state},
      {a, "kv.keys null", "kv keys",
       attend(same, qv, kv_with([](auto& k) { k.keys = nullptr; }), at, ov, ws), state},
      {a, "q8 kv without its key scales", "key_scales, value_scales (q8)",
       attend(same, qv, kv_with([](auto& k) { k.type = tformer::KVType::q8; }), at, ov, ws), state},
      {a, "kv.head_stride below length * head_dim", "kv.head_stride",
       attend(same, qv, kv_with([](auto& k) { k.head_stride = 8; }), at, ov, ws), state},
      {a, "kv.head_stride = 2^62", "kv kv_heads * head_stride",
       attend(same, qv, kv_with([](auto& k) { k.head_stride = Index(1) << 62; }), at, ov, ws),
       state},
      {a, "kv.length = 2^40 (non-causal)", "kv positions held * head_dim",
       attend([](auto& o) { o.causal = false; }, qv,
              kv_with([](auto& k) { k.length = Index(1) << 40; }), at, ov, ws),
       state},
      {a, "ring view with global attention", "ring cache", attend(same, qv, ring_view, at, ov, ws),
       state},
      {a, "ring view, window 8 > its 4", "ring cache",
       attend([](auto& o) { o.window = 8; }, qv, ring_view, at, ov, ws), state},
      {a, "ring view, 2 sinks > its 1", "sinks",
       attend(
           [](auto& o) {
             o.window = 4;
             o.sinks = 2;
           },
           qv, ring_view, at, ov, ws),
       state},
      {a, "ring view, a query whose window was overwritten", "ring still holds",
       attend([](auto& o) { o.window = 4; }, qv, ring_view, Positions::offset(2), ov, ws), state},
      {a, "ring view with sinks >= slots", "kv.sinks",
       attend([](auto& o) { o.window = 4; }, qv,
              [&] {
                KVView k = ring_view;
                k.sinks = k.slots;
                return k;
              }(),
              at, ov, ws),
       state},
      {a, "ALiBi with 3 slopes for 4 query heads", "bias heads",
       [&] { attention(qv, kv, at, ov, ws, {}, AlibiBias{three}); }, state},
      {a, "T5 table of 3 heads for 4", "bias heads",
       [&] { attention(qv, kv, at, ov, ws, {}, t5_three); }, state},

      {aw, "scale = +inf", "scale", weights([](auto& o) { o.scale = kInf; }, wv), state},
      {aw, "softcap = NaN", "softcap", weights([](auto& o) { o.softcap = kNaN; }, wv), state},
      {aw, "weights.head_dim 8 for 10 keys", "weights.head_dim",
       weights(same, {w.data(), 2, Hq, 8}), state},
      {aw, "weights.heads 2", "weights.heads", weights(same, {w.data(), 2, 2, L}), state},
      {aw, "weights over q", "memory disjoint from q",
       [&] {
         attention_weights({big.data(), 2, Hq, D}, kv, at, {big.data() + D, 2, Hq, L});
       },
       state},
      {aw, "weights tokens = 2^62", "weights shape", weights(same, {w.data(), opaque(huge), Hq, L}),
       state},
      {aw, "sink_positions = -1", "sink_positions",
       weights(
           [](auto& o) {
             o.window = 4;
             o.sinks = 1;
             o.sink_positions = static_cast<SinkPositions>(-1);
           },
           wv),
       state},
      {aw, "ALiBi with 3 slopes for 4 query heads", "bias heads",
       [&] { attention_weights(qv, kv, at, wv, {}, AlibiBias{three}); }, state},
      {aw, "causal position 10 of 10 keys", "positions",
       [&] { attention_weights(qv, kv, Positions::offset(9), wv); }, state},
      {"attention_lse", "lse [2, 3] for 4 heads", "lse",
       [&] { attention_lse(qv, kv, at, ov, {lse.data(), 2, 3}, ws); }, lse_state},
      {"attention_lse", "lse null", "lse",
       [&] { attention_lse(qv, kv, at, ov, {static_cast<float*>(nullptr), 2, Hq}, ws); },
       lse_state},
      {"attention_lse", "causal position 10 of 10 keys", "positions",
       [&] { attention_lse(qv, kv, Positions::offset(9), ov, {lse.data(), 2, Hq}, ws); },
       lse_state},
      {"merge_attention", "o_b with 2 heads", "o_b.heads",
       [&] { merge_attention(qv, lse_c, {q.data(), 2, 2, 2 * D}, lse_c, ov, {lse.data(), 2, Hq}); },
       lse_state},
      {"merge_attention", "o_a head_dim 4", "o_a.head_dim",
       [&] { merge_attention({q.data(), 2, Hq, D / 2}, lse_c, qv, lse_c, ov, {lse.data(), 2, Hq}); },
       lse_state},
      {"merge_attention", "lse_b [1, 4]", "lse_b",
       [&] { merge_attention(qv, lse_c, qv, {lse.data(), 1, Hq}, ov, {lse.data(), 2, Hq}); },
       lse_state},
      {"merge_attention", "lse [2, 5]", "lse",
       [&] { merge_attention(qv, lse_c, qv, lse_c, ov, {big.data(), 2, 5}); }, lse_state},
  });
  // The valid calls next to those rows go through.
  CHECK_NOTHROW(attention(qv, kv, at, ov, ws, {}, AlibiBias{four}));
}
