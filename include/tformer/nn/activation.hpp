// Activations of the gated feed-forward family, vectorised with xsimd, each with a scalar twin
// that computes the same formula in float (the scalar build and the SIMD tails use it).
//
//   SiLU          silu(x) = x · sigmoid(x), sigmoid(x) = 1 / (1 + e^−x)     Llama, Qwen, Mistral
//   GeluTanh      0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))               Gemma (GeGLU)
//   SiluSigmoid   silu(x) · sigmoid(β·x)                                     seed 000's gated form
//   soft cap      c · tanh(x / c), in place                                  Gemma 2's final logits
//
// Accuracy against the same formulas in double, checked by tests/nn/activation_test.cpp over
// [−100, 100] and extremes (xsimd 8.1's exp ≤ 1.5 ulp, tanh ≤ 1.4 ulp):
//   silu: relative error ≤ 4 ulp (4.8e-7); below x = −87.3 xsimd's exp flushes to 0, so there
//   the result is −0 where the exact value has magnitude < 1.5e-36;
//   gelu_tanh: absolute error ≤ 4 ulp of |x| (the float sum 1 + tanh cancels for x < −3, as in
//   PyTorch's float32 GELU); silu(x)·sigmoid(βx): relative error ≤ 8 ulp; soft cap: relative
//   error ≤ 4 ulp.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "tformer/core/error.hpp"
#include "tformer/core/simd.hpp"
#include "tformer/core/views.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

enum class ActivationKind { SiLU, GeluTanh, SiluSigmoid };

struct Activation {
  ActivationKind kind = ActivationKind::SiLU;
  float beta = 1.0f;  // SiluSigmoid only: sigmoid(β·x)
};

namespace activation_math {

// Each formula twice: float (std::exp, std::tanh) and, when SIMD is on, simd::batch (xsimd).
// sigmoid uses e = exp(−|x|), which never overflows: 1/(1 + e) for x ≥ 0, e/(1 + e) below.
inline float sigmoid(float x) noexcept {
  const float e = std::exp(-std::abs(x));
  const float r = 1.0f / (1.0f + e);
  return x >= 0.0f ? r : e * r;
}
inline float silu(float x) noexcept { return x * sigmoid(x); }
inline float gelu_tanh(float x) noexcept {
  constexpr float k = 0.7978845608028654f;  // sqrt(2/π)
  return 0.5f * x * (1.0f + std::tanh(k * (x + 0.044715f * x * x * x)));
}
inline float soft_cap(float x, float cap) noexcept { return cap * std::tanh(x / cap); }

#if TFORMER_HAS_SIMD
inline simd::batch sigmoid(const simd::batch& x) noexcept {
  const simd::batch e = xsimd::exp(-xsimd::abs(x));
  const simd::batch r = simd::batch(1.0f) / (simd::batch(1.0f) + e);
  return xsimd::select(x >= simd::batch(0.0f), r, e * r);
}
inline simd::batch silu(const simd::batch& x) noexcept { return x * sigmoid(x); }
inline simd::batch gelu_tanh(const simd::batch& x) noexcept {
  const simd::batch k(0.7978845608028654f), c(0.044715f), half(0.5f), one(1.0f);
  return half * x * (one + xsimd::tanh(k * (x + c * x * x * x)));
}
inline simd::batch soft_cap(const simd::batch& x, float cap) noexcept {
  const simd::batch c(cap);
  return c * xsimd::tanh(x / c);
}
#endif

}  // namespace activation_math

namespace activation_kernels {

// out[i] = f(gate[i]) · up[i] for i < n; out may equal gate or up.
template <class F>
inline void gated(const float* gate, const float* up, float* out, index n, F f) noexcept {
  index i = 0;
#if TFORMER_HAS_SIMD
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  for (const index vector_end = n / W * W; i < vector_end; i += W)
    (f(B::load_unaligned(gate + i)) * B::load_unaligned(up + i)).store_unaligned(out + i);
#endif
  for (; i < n; ++i) out[i] = f(gate[i]) * up[i];
}

// out[i] = act(gate[i]) · up[i]: the activation is chosen once, outside the loop.
inline void gated(const float* gate, const float* up, float* out, index n,
                  Activation act) noexcept {
  using namespace activation_math;
  switch (act.kind) {
    case ActivationKind::SiLU:
      return gated(gate, up, out, n, [](const auto& x) { return silu(x); });
    case ActivationKind::GeluTanh:
      return gated(gate, up, out, n, [](const auto& x) { return gelu_tanh(x); });
    case ActivationKind::SiluSigmoid: {
      const float beta = act.beta;
      return gated(gate, up, out, n, [beta](const auto& x) {
        return silu(x) * sigmoid(std::decay_t<decltype(x)>(beta) * x);
      });
    }
  }
}

// x[i] = cap · tanh(x[i] / cap) for i < n. Precondition: cap finite and > 0.
inline void soft_cap(float* x, index n, float cap) noexcept {
  index i = 0;
#if TFORMER_HAS_SIMD
  using B = simd::batch;
  constexpr index W = static_cast<index>(B::size);
  for (const index vector_end = n / W * W; i < vector_end; i += W)
    activation_math::soft_cap(B::load_unaligned(x + i), cap).store_unaligned(x + i);
#endif
  for (; i < n; ++i) x[i] = activation_math::soft_cap(x[i], cap);
}

}  // namespace activation_kernels

// Throws tformer::Error unless act.kind is one of ActivationKind and, for SiluSigmoid, β is
// finite: what every entry point taking an Activation checks.
inline void check_activation(std::string_view where, const Activation& act) {
  const int kind = static_cast<int>(act.kind);
  check(kind >= 0 && kind <= static_cast<int>(ActivationKind::SiluSigmoid), where, "kind",
        "SiLU, GeluTanh or SiluSigmoid (0, 1 or 2)", kind);
  if (act.kind == ActivationKind::SiluSigmoid)
    check(std::isfinite(act.beta), where, "beta", "a finite value", act.beta);
}

namespace activation_detail {
// Throws if out overlaps `in` other than exactly (the same first element).
inline void check_alias(const char* where, std::span<const float> in, const char* in_name,
                        std::span<float> out) {
  if (out.empty() || in.data() == out.data()) return;
  const auto a = reinterpret_cast<std::uintptr_t>(in.data());
  const auto b = reinterpret_cast<std::uintptr_t>(out.data());
  if (a < b + out.size_bytes() && b < a + in.size_bytes()) [[unlikely]]
    detail::fail_check(where, "out",
                       std::string("the same memory as ") + in_name + ", or memory disjoint from it",
                       "a shifted overlap");
}
}  // namespace activation_detail

// out = act(gate) ⊙ up, elementwise over spans of equal size; out may alias gate or up (the
// same memory), not overlap them otherwise. Throws unless the kind is one of ActivationKind and,
// for SiluSigmoid, β is finite. NaN in the data propagates elementwise.
inline void gated_activation(std::span<const float> gate, std::span<const float> up,
                             std::span<float> out, Activation act = {}) {
  constexpr const char* where = "gated_activation";
  check_eq(where, "up size (= gate size)", gate.size(), up.size());
  check_eq(where, "out size (= gate size)", gate.size(), out.size());
  check_activation(where, act);
  activation_detail::check_alias(where, gate, "gate", out);
  activation_detail::check_alias(where, up, "up", out);
  activation_kernels::gated(gate.data(), up.data(), out.data(), index(gate.size()), act);
}

// x = cap · tanh(x / cap), elementwise in place (Gemma 2 caps its logits with cap 30 and its
// attention scores with 50). Throws unless cap is finite and > 0. NaN propagates.
inline void soft_cap(std::span<float> x, float cap) {
  check(std::isfinite(cap) && cap > 0.0f, "soft_cap", "cap", "a finite value > 0", cap);
  activation_kernels::soft_cap(x.data(), index(x.size()), cap);
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
