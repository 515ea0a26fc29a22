// One translation unit's worth of kernels (RoPE, attention, RMSNorm, activation, top-k FFN,
// MoE), compiled once per instruction-set level by tformer_add_isa_variants (tests/CMakeLists.txt):
// each copy defines its functions in namespace odr::<level> (odr::avx512::rope, ...), and
// odr_test.cpp calls every copy this CPU runs.
#include <span>
#include <string>
#include <vector>

#include "tformer/cache/kv_cache.hpp"
#include "tformer/nn/activation.hpp"
#include "tformer/nn/attention.hpp"
#include "tformer/core/convert.hpp"
#include "tformer/nn/linear.hpp"
#include "tformer/nn/matmul.hpp"
#include "tformer/nn/moe.hpp"
#include "tformer/nn/rmsnorm.hpp"
#include "tformer/nn/swiglu.hpp"
#include "tformer/rope/apply.hpp"

// An inline function outside tformer's namespaces whose body depends on the instruction set, as
// Eigen's and the standard library's do: one symbol in every variant. tformer_add_isa_variants
// gives each variant its own copy; were they merged, every variant would return one answer.
namespace probe {
// noinline, as Eigen's GEMM kernels are: a call, not a copy folded into the caller.
[[gnu::noinline]] inline const char* compiled_for() {
#if defined(TFORMER_SIMD_SCALAR)
  return "scalar";
#elif defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__)
  return "avx2_fma";
#elif defined(__SSE4_2__)
  return "sse4_2";
#else
  return "sse2";
#endif
}
}  // namespace probe

namespace odr::TFORMER_ISA_NS {

std::string shared_inline_probe() { return probe::compiled_for(); }

// y [T, out] = x [T, in] · w [out, in]ᵀ through linear() (Eigen's GEMV for T = 1, GEMM beyond).
std::vector<float> linear(const std::vector<float>& x, const std::vector<float>& w, int T, int in,
                          int out) {
  std::vector<float> y(std::size_t(T) * out);
  tformer::linear({x.data(), T, in}, {w.data(), out, in}, {y.data(), T, out});
  return y;
}

// y [T, out] = x · wᵀ through matmul() with w converted to storage type `type % 8` (a
// WeightType) in this unit, multiplying activations `type / 8` (an Activations); the converted
// bytes are appended to y, so the caller checks they agree across levels.
std::vector<float> matmul(const std::vector<float>& x, const std::vector<float>& w, int T, int in,
                          int out, int type) {
  const auto wt = tformer::WeightType(type % 8);
  std::vector<std::byte> bytes(std::size_t(tformer::converted_bytes(wt, out, in)));
  const tformer::WeightView view = tformer::convert_weights({w.data(), out, in}, wt, bytes, "w")
                                       .with_activations(tformer::Activations(type / 8));
  std::vector<float> y(std::size_t(T) * out);
  tformer::matmul({x.data(), T, in}, view, {y.data(), T, out});
  for (std::byte b : bytes) y.push_back(float(b));
  return y;
}

// Rotates x ([T, H, D]) in place at offset `first` (rotate-half, then interleaved on the result),
// and returns the name of the instruction-set namespace this unit compiled tformer into.
std::string rope(std::vector<float>& x, int T, int H, int D, int first) {
  tformer::RopeTable table(tformer::RopeConfig{.rotary_dim = D, .max_positions = first + T});
  tformer::HeadsView<float> view(x.data(), T, H, D);
  tformer::apply_rope_inplace<tformer::RopeLayout::RotateHalf>(table, view,
                                                               tformer::Positions::offset(first));
  tformer::apply_rope_inplace<tformer::RopeLayout::Interleaved>(table, view,
                                                                tformer::Positions::offset(first));
  return tformer::simd::arch_name;
}

// One RoPE call with every option explicit, for the SIMD-against-scalar sweep: returns
// out = apply_rope(x) ([T, H, D], rotary_dim d; layout 0 interleaved, 1 rotate-half; direction
// 0 forward, 1 transpose, 2 inverse; YaRN s = 4 when `scaled`), in place or out of place.
std::vector<float> sweep(const std::vector<float>& x, int T, int H, int D, int d, int layout,
                         int direction, bool in_place, bool scaled, int first) {
  tformer::RopeConfig config{.rotary_dim = d, .max_positions = first + T};
  if (scaled)
    config.scaling = tformer::rope_scaling::Yarn{.factor = 4, .original_max_positions = 64};
  const tformer::RopeTable table(config);
  const auto l = layout == 0 ? tformer::RopeLayout::Interleaved : tformer::RopeLayout::RotateHalf;
  const auto dir = static_cast<tformer::RopeDirection>(direction);
  const auto at = tformer::Positions::offset(first);
  std::vector<float> out = x;
  if (in_place) {
    tformer::apply_rope_inplace(l, table, tformer::HeadsView<float>(out.data(), T, H, D), at, dir);
  } else {
    tformer::HeadsView<const float> in(x.data(), T, H, D);
    tformer::HeadsView<float> o(out.data(), T, H, D);
    if (l == tformer::RopeLayout::Interleaved)
      tformer::apply_rope<tformer::RopeLayout::Interleaved>(table, in, o, at, dir);
    else
      tformer::apply_rope<tformer::RopeLayout::RotateHalf>(table, in, o, at, dir);
  }
  return out;
}

// Causal attention of q [T, Hq, D] (positions L − T …) over K, V [L, Hkv, D] written into a cache;
// window 0 = global; sinks > 0: that many attention sinks (their own pass in both paths; with
// no bias or sink queries, in-cache and original positions score alike). Decode when T = 1,
// the GEMM block path when T > 1.
std::vector<float> attention(const std::vector<float>& q, const std::vector<float>& k,
                             const std::vector<float>& v, int T, int Hq, int Hkv, int D, int L,
                             int window, float softcap, int sinks) {
  tformer::KVCache cache({.layers = 1, .kv_heads = Hkv, .head_dim = D, .capacity = L});
  cache.write(0, 0, {k.data(), L, Hkv, D}, {v.data(), L, Hkv, D});
  cache.advance(0, L);
  tformer::AttentionWorkspace ws(Hq / Hkv, D);
  std::vector<float> o(q.size());
  tformer::AttentionOptions opt;
  opt.window = window;
  opt.softcap = softcap;
  opt.sinks = sinks;
  opt.sink_positions = tformer::SinkPositions::InCache;
  tformer::attention({q.data(), T, Hq, D}, cache.view(0, 0, L), tformer::Positions::offset(L - T),
                     {o.data(), T, Hq, D}, ws, opt);
  return o;
}

// Returns [y, a]: y = RMSNorm(x [rows, n]) · w, then a = silu(y) ⊙ x elementwise.
std::vector<float> norm_activation(const std::vector<float>& x, const std::vector<float>& w,
                                   int rows, int n) {
  std::vector<float> y(2 * x.size());
  const std::span<float> norm(y.data(), x.size()), act(y.data() + x.size(), x.size());
  tformer::rmsnorm({x.data(), rows, n}, w, 1e-6f, {norm.data(), rows, n});
  tformer::gated_activation(norm, x, act);
  return y;
}

// y [T, H] = the top-k sparse SwiGLU of x [T, H] with gate, up [I, H] and down [H, I] (k of I).
std::vector<float> ffn_topk(const std::vector<float>& x, const std::vector<float>& gate,
                            const std::vector<float>& up, const std::vector<float>& down, int T,
                            int H, int I, int k) {
  const tformer::SwiGluWeights w{{gate.data(), I, H}, {up.data(), I, H}, {down.data(), H, I}};
  const tformer::TransposedWeights down_t(w.down);
  tformer::FfnWorkspace ws(T, I);
  std::vector<float> y(std::size_t(T) * H);
  tformer::swiglu_topk({x.data(), T, H}, w, down_t.view(), tformer::TopK::count(k),
                       {y.data(), T, H}, ws);
  return y;
}

// y [T, H] = a mixture of E experts (gate, up [E·I, H], down [E·H, I]) with a softmax-then-top-k
// router [E, H], k of E.
std::vector<float> moe(const std::vector<float>& x, const std::vector<float>& router,
                       const std::vector<float>& gate, const std::vector<float>& up,
                       const std::vector<float>& down, int T, int H, int I, int E, int k) {
  std::vector<tformer::SwiGluWeights> experts;
  for (int e = 0; e < E; ++e)
    experts.push_back({{gate.data() + std::size_t(e) * I * H, I, H},
                       {up.data() + std::size_t(e) * I * H, I, H},
                       {down.data() + std::size_t(e) * H * I, H, I}});
  const tformer::MoeConfig config{E, k};
  tformer::MoeWorkspace ws(T, H, I, config);
  std::vector<float> y(std::size_t(T) * H);
  tformer::moe({x.data(), T, H}, {{router.data(), E, H}, experts, std::nullopt, {}}, config,
               {y.data(), T, H}, ws);
  return y;
}

}  // namespace odr::TFORMER_ISA_NS
