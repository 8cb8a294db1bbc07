#include "model/transformer.h"

#include <type_traits>

#include "kernels/gemm.h"
#include "kernels/ops.h"

namespace imgsearch::model {

void BlockScratch::Reserve(int n_tokens, const TowerConfig& c, bool bf16) {
  const size_t n = static_cast<size_t>(n_tokens);
  qkv.resize(n * 3 * c.width);
  if (bf16) {
    ln_bf16.resize(n * c.width);
    attn_bf16.resize(n * c.width);
    mlp_bf16.resize(n * c.mlp_width);
  } else {
    ln.resize(n * c.width);
    attn.resize(n * c.width);
    mlp.resize(n * c.mlp_width);
  }
}

void ApplyLinear(const LinearWeights& linear, const float* x, int rows, float* y) {
  if (linear.weight_bf16 != nullptr) {
    kernels::LinearBf16(x, linear.weight_bf16, linear.bias, y, rows, linear.in, linear.out);
  } else if (linear.weight_s8 != nullptr) {
    kernels::LinearInt8(x, linear.weight_s8, linear.weight_scale, linear.weight_sum, linear.bias, y, rows, linear.in,
                        linear.out);
  } else {
    kernels::Linear(x, linear.weight, linear.bias, y, rows, linear.in, linear.out);
  }
}

void ApplyLinear(const LinearWeights& linear, const uint16_t* x, int rows, float* y) {
  kernels::LinearBf16(x, linear.weight_bf16, linear.bias, y, rows, linear.in, linear.out);
}

void ApplyActivation(Activation activation, float* x, int64_t n) {
  switch (activation) {
    case Activation::kQuickGelu: kernels::QuickGelu(x, n); return;
    case Activation::kGelu: kernels::Gelu(x, n); return;
    case Activation::kGeluTanh: kernels::GeluTanh(x, n); return;
  }
}

namespace {

// x += linear(in): the residual is added in the GEMM's own pass where the kernels can.
void AddLinear(const LinearWeights& linear, const float* in, int rows, float* x, BlockScratch* s) {
  if (linear.weight_s8 != nullptr) {
    kernels::LinearInt8(in, linear.weight_s8, linear.weight_scale, linear.weight_sum, linear.bias, x, rows, linear.in,
                        linear.out, kernels::Int8Result::kAdd);
    return;
  }
  s->proj.resize(static_cast<size_t>(rows) * linear.out);
  ApplyLinear(linear, in, rows, s->proj.data());
  kernels::AddInPlace(x, s->proj.data(), int64_t{rows} * linear.out);
}

void AddLinear(const LinearWeights& linear, const uint16_t* in, int rows, float* x, BlockScratch*) {
  kernels::LinearBf16Accumulate(in, linear.weight_bf16, linear.bias, x, rows, linear.in, linear.out);
}

// out = activation(linear(in)), in the type the next GEMM reads, in the GEMM's own pass where the
// kernels can.
void ActivatedLinear(const LinearWeights& linear, Activation activation, const float* in, int rows, float* out) {
  if (linear.weight_s8 != nullptr) {
    kernels::LinearInt8(in, linear.weight_s8, linear.weight_scale, linear.weight_sum, linear.bias, out, rows, linear.in,
                        linear.out, kernels::Int8Result::kActivate, activation);
    return;
  }
  ApplyLinear(linear, in, rows, out);
  ApplyActivation(activation, out, int64_t{rows} * linear.out);
}

void ActivatedLinear(const LinearWeights& linear, Activation activation, const uint16_t* in, int rows, uint16_t* out) {
  kernels::LinearBf16Activate(in, linear.weight_bf16, linear.bias, out, rows, linear.in, linear.out, activation);
}

// A pre-LN block whose GEMMs read In: float, or uint16_t for bfloat16 (each GEMM's input then
// written so by the operation before it).
template <typename In>
void PreLnBlock(const BlockWeights& w, const TowerConfig& c, float* x, int n_seqs, int seq_len, bool causal, In* ln,
                In* attn, In* mlp, BlockScratch* s) {
  const int n_tokens = n_seqs * seq_len;
  // Attention half.
  kernels::LayerNorm(x, w.ln1.gamma, w.ln1.beta, ln, n_tokens, c.width, c.layer_norm_eps);
  ApplyLinear(w.qkv, ln, n_tokens, s->qkv.data());
  kernels::AttentionBatch(s->qkv.data(), attn, n_seqs, seq_len, c.width, c.n_head, causal);
  AddLinear(w.out, attn, n_tokens, x, s);
  // MLP half.
  kernels::LayerNorm(x, w.ln2.gamma, w.ln2.beta, ln, n_tokens, c.width, c.layer_norm_eps);
  ActivatedLinear(w.fc1, c.activation, ln, n_tokens, mlp);
  AddLinear(w.fc2, mlp, n_tokens, x, s);
}

}  // namespace

void TransformerBlock(const BlockWeights& w, const TowerConfig& c, float* x, int n_seqs, int seq_len, bool causal,
                      BlockScratch* s) {
  const int n_tokens = n_seqs * seq_len;
  const bool bf16 = w.qkv.weight_bf16 != nullptr && w.out.weight_bf16 != nullptr && w.fc1.weight_bf16 != nullptr &&
                    w.fc2.weight_bf16 != nullptr && !c.post_ln;
  s->Reserve(n_tokens, c, bf16);

  if (c.post_ln) {
    // x is both the residual and the next GEMM's input: it stays fp32.
    ApplyLinear(w.qkv, x, n_tokens, s->qkv.data());
    kernels::AttentionBatch(s->qkv.data(), s->attn.data(), n_seqs, seq_len, c.width, c.n_head, causal);
    AddLinear(w.out, s->attn.data(), n_tokens, x, s);
    kernels::LayerNorm(x, w.ln1.gamma, w.ln1.beta, x, n_tokens, c.width, c.layer_norm_eps);
    ActivatedLinear(w.fc1, c.activation, x, n_tokens, s->mlp.data());
    AddLinear(w.fc2, s->mlp.data(), n_tokens, x, s);
    kernels::LayerNorm(x, w.ln2.gamma, w.ln2.beta, x, n_tokens, c.width, c.layer_norm_eps);
    return;
  }
  if (bf16) {
    PreLnBlock(w, c, x, n_seqs, seq_len, causal, s->ln_bf16.data(), s->attn_bf16.data(), s->mlp_bf16.data(), s);
  } else {
    PreLnBlock(w, c, x, n_seqs, seq_len, causal, s->ln.data(), s->attn.data(), s->mlp.data(), s);
  }
}

}  // namespace imgsearch::model
