#include "model/transformer.h"

#include "kernels/gemm.h"
#include "kernels/ops.h"

namespace imgsearch::model {

void BlockScratch::Reserve(int n_tokens, const TowerConfig& c) {
  const size_t n = static_cast<size_t>(n_tokens);
  ln.resize(n * c.width);
  qkv.resize(n * 3 * c.width);
  attn.resize(n * c.width);
  proj.resize(n * c.width);
  mlp.resize(n * c.mlp_width);
}

void ApplyLinear(const LinearWeights& linear, const float* x, int rows, float* y) {
  if (linear.weight_bf16 != nullptr) {
    kernels::LinearBf16(x, linear.weight_bf16, linear.bias, y, rows, linear.in, linear.out);
  } else {
    kernels::Linear(x, linear.weight, linear.bias, y, rows, linear.in, linear.out);
  }
}

void ApplyActivation(Activation activation, float* x, int64_t n) {
  switch (activation) {
    case Activation::kQuickGelu: kernels::QuickGelu(x, n); return;
    case Activation::kGelu: kernels::Gelu(x, n); return;
    case Activation::kGeluTanh: kernels::GeluTanh(x, n); return;
  }
}

void TransformerBlock(const BlockWeights& w, const TowerConfig& c, float* x, int n_seqs, int seq_len, bool causal,
                      BlockScratch* s) {
  const int n_tokens = n_seqs * seq_len;
  const int64_t n_values = int64_t{n_tokens} * c.width;
  s->Reserve(n_tokens, c);

  const int64_t n_mlp = int64_t{n_tokens} * c.mlp_width;
  if (c.post_ln) {
    ApplyLinear(w.qkv, x, n_tokens, s->qkv.data());
    kernels::AttentionBatch(s->qkv.data(), s->attn.data(), n_seqs, seq_len, c.width, c.n_head, causal);
    ApplyLinear(w.out, s->attn.data(), n_tokens, s->proj.data());
    kernels::AddInPlace(x, s->proj.data(), n_values);
    kernels::LayerNorm(x, w.ln1.gamma, w.ln1.beta, x, n_tokens, c.width, c.layer_norm_eps);
    ApplyLinear(w.fc1, x, n_tokens, s->mlp.data());
    ApplyActivation(c.activation, s->mlp.data(), n_mlp);
    ApplyLinear(w.fc2, s->mlp.data(), n_tokens, s->proj.data());
    kernels::AddInPlace(x, s->proj.data(), n_values);
    kernels::LayerNorm(x, w.ln2.gamma, w.ln2.beta, x, n_tokens, c.width, c.layer_norm_eps);
    return;
  }

  // Attention half.
  kernels::LayerNorm(x, w.ln1.gamma, w.ln1.beta, s->ln.data(), n_tokens, c.width, c.layer_norm_eps);
  ApplyLinear(w.qkv, s->ln.data(), n_tokens, s->qkv.data());
  kernels::AttentionBatch(s->qkv.data(), s->attn.data(), n_seqs, seq_len, c.width, c.n_head, causal);
  ApplyLinear(w.out, s->attn.data(), n_tokens, s->proj.data());
  kernels::AddInPlace(x, s->proj.data(), n_values);

  // MLP half.
  kernels::LayerNorm(x, w.ln2.gamma, w.ln2.beta, s->ln.data(), n_tokens, c.width, c.layer_norm_eps);
  ApplyLinear(w.fc1, s->ln.data(), n_tokens, s->mlp.data());
  ApplyActivation(c.activation, s->mlp.data(), n_mlp);
  ApplyLinear(w.fc2, s->mlp.data(), n_tokens, s->proj.data());
  kernels::AddInPlace(x, s->proj.data(), n_values);
}

}  // namespace imgsearch::model
