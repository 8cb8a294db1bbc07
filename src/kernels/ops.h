// Element-wise and row-wise transformer operations on row-major float matrices.
#pragma once

#include <cstdint>

namespace imgsearch::kernels {

// out[r] = (x[r] - mean) / sqrt(var + eps) * gamma + beta, for each of `rows` rows of `width`.
// `out` may alias `x`.
void LayerNorm(const float* x, const float* gamma, const float* beta, float* out, int rows, int width, float eps);

// x * sigmoid(1.702 x), in place.
void QuickGelu(float* x, int64_t n);

// 0.5 x (1 + erf(x / sqrt 2)), in place.
void Gelu(float* x, int64_t n);

// 0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³))), PyTorch's gelu(approximate="tanh"), in place.
void GeluTanh(float* x, int64_t n);

// y += x.
void AddInPlace(float* y, const float* x, int64_t n);

// Scales x to unit L2 norm (left as is when the norm is 0).
void L2Normalize(float* x, int n);

// Multi-head self-attention core for one sequence.
// qkv rows are [q | k | v], each `width` wide with heads side by side (head h owns columns
// h*head_dim .. (h+1)*head_dim); `out` receives the per-head outputs in the same layout, [n_tokens, width].
// With `causal`, token i attends to tokens 0..i only. `scratch` holds n_tokens floats.
void Attention(const float* qkv, float* out, int n_tokens, int width, int n_head, bool causal, float* scratch);

// One query row `q` ([width], heads side by side) attending over `n_keys` rows of `kv`, each
// [k | v] (2·width wide). Writes [width] to `out`. `scratch` holds n_keys floats.
void AttendOne(const float* q, const float* kv, float* out, int n_keys, int width, int n_head, float* scratch);

// Attention for n_seqs sequences of seq_len tokens laid back to back, in parallel.
void AttentionBatch(const float* qkv, float* out, int n_seqs, int seq_len, int width, int n_head, bool causal);

}  // namespace imgsearch::kernels
