// Element-wise and row-wise transformer operations on row-major float matrices.
#pragma once

#include <cstdint>

namespace imgsearch::kernels {

// Those that feed a bfloat16 GEMM (LinearBf16) can write their result rounded to bfloat16 (as
// ToBf16 rounds) instead of fp32, which saves the GEMM a pass over its input (the activations are
// applied by the bfloat16 GEMM itself: gemm.h). All run on the widest
// vectors the CPU offers (cpu.h: ActiveVectorOps), in parallel when large enough.

// out[r] = (x[r] - mean) / sqrt(var + eps) * gamma + beta, for each of `rows` rows of `width`.
// `out` may alias `x`.
void LayerNorm(const float* x, const float* gamma, const float* beta, float* out, int rows, int width, float eps);
void LayerNorm(const float* x, const float* gamma, const float* beta, uint16_t* out, int rows, int width, float eps);

// A transformer MLP's activation: quick_gelu x·sigmoid(1.702 x) (CLIP), gelu with erf, or
// gelu_pytorch_tanh (SigLIP).
enum class Activation { kQuickGelu, kGelu, kGeluTanh };

// x * sigmoid(1.702 x), in place.
void QuickGelu(float* x, int64_t n);

// 0.5 x (1 + erf(x / sqrt 2)), in place.
void Gelu(float* x, int64_t n);

// 0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³))), PyTorch's gelu(approximate="tanh"), in place.
void GeluTanh(float* x, int64_t n);

// One of the three above, in place.
void Activate(Activation activation, float* x, int64_t n);

// Rounds n floats to bfloat16 (the upper 16 bits, to nearest even; NaN stays NaN).
void ToBf16(const float* x, uint16_t* out, int64_t n);

// y += x.
void AddInPlace(float* y, const float* x, int64_t n);

// Scales x to unit L2 norm (left as is when the norm is 0).
void L2Normalize(float* x, int n);

// Multi-head self-attention for n_seqs sequences of seq_len tokens laid back to back; each
// sequence's heads in parallel. qkv rows are [q | k | v], each `width` wide with heads side by side
// (head h owns columns h*head_dim .. (h+1)*head_dim); `out` receives the per-head outputs in the
// same layout, [n_seqs * seq_len, width]. With `causal`, token i attends to tokens 0..i only.
void AttentionBatch(const float* qkv, float* out, int n_seqs, int seq_len, int width, int n_head, bool causal);
void AttentionBatch(const float* qkv, uint16_t* out, int n_seqs, int seq_len, int width, int n_head, bool causal);

// One query row `q` ([width], heads side by side) attending over `n_keys` rows of `kv`, each
// [k | v] (2·width wide). Writes [width] to `out`.
void AttendOne(const float* q, const float* kv, float* out, int n_keys, int width, int n_head);

}  // namespace imgsearch::kernels
