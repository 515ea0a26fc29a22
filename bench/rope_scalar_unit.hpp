// The scalar RoPE kernels behind an instruction-set neutral interface (plain pointers), so a
// translation unit compiled for SIMD can call them: tformer's own types differ between the two.
#pragma once

#include <functional>

// Rotates q [tokens, q_heads, head_dim] and k [tokens, kv_heads, head_dim] in place, tokens at
// positions offset, offset + 1, …, with tformer::scalar's kernels. Builds its table once.
using ScalarRope = std::function<void(float* q, float* k, int offset)>;
ScalarRope make_scalar_rope(bool interleaved, int tokens, int q_heads, int kv_heads, int head_dim,
                            int max_positions);
