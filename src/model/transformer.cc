#include "model/transformer.h"

#include <algorithm>
#include <type_traits>

#include "kernels/gemm.h"
#include "kernels/ops.h"

namespace imgsearch::model {

namespace {

// A pre-LN block's MLP runs this many tokens at a time (the GEMMs stay large enough to run at full
// speed; the hidden layer's buffer stays a fraction of a batch's).
constexpr int kMlpRows = 512;

}  // namespace

void BlockScratch::Reserve(int n_tokens, const TowerConfig& c, bool bf16) {
  const bool post_ln = c.post_ln;
  const size_t n = static_cast<size_t>(n_tokens);
  qkv.resize(n * 3 * c.width);
  // The other precision's buffers go (a process may load models of both).
  auto drop = [](auto& v) { std::remove_reference_t<decltype(v)>().swap(v); };
  if (bf16) {
    ln_bf16.resize(n * c.width);
    mlp_bf16.resize(std::min<size_t>(n, kMlpRows) * c.mlp_width);
    drop(ln);
    drop(mlp);
  } else {
    ln.resize(n * c.width);
    mlp.resize((post_ln ? n : std::min<size_t>(n, kMlpRows)) * c.mlp_width);
    drop(ln_bf16);
    drop(mlp_bf16);
  }
}

void ApplyLinear(const LinearWeights& linear, const float* x, int rows, float* y) {
  if (linear.weight_bf16 != nullptr) {
    kernels::LinearBf16(x, linear.weight_bf16, linear.bias, y, rows, linear.in, linear.out, linear.layout);
  } else if (linear.weight_s8 != nullptr) {
    kernels::LinearInt8(x, linear.weight_s8, linear.weight_scale, linear.weight_sum, linear.bias, y, rows, linear.in,
                        linear.out, kernels::Int8Result::kStore, Activation::kQuickGelu, linear.layout);
  } else {
    kernels::Linear(x, linear.weight, linear.bias, y, rows, linear.in, linear.out, linear.layout);
  }
}

void ApplyLinear(const LinearWeights& linear, const uint16_t* x, int rows, float* y) {
  kernels::LinearBf16(x, linear.weight_bf16, linear.bias, y, rows, linear.in, linear.out, linear.layout);
}

namespace {

// x += linear(in): the residual is added in the GEMM's own pass where the kernels can.
void AddLinear(const LinearWeights& linear, const float* in, int rows, float* x, BlockScratch* s) {
  if (linear.weight_s8 != nullptr) {
    kernels::LinearInt8(in, linear.weight_s8, linear.weight_scale, linear.weight_sum, linear.bias, x, rows, linear.in,
                        linear.out, kernels::Int8Result::kAdd, Activation::kQuickGelu, linear.layout);
    return;
  }
  if (linear.weight != nullptr) {
    kernels::LinearAccumulate(in, linear.weight, linear.bias, x, rows, linear.in, linear.out, linear.layout);
    return;
  }
  // bfloat16 weights reading fp32 (a post-LN block).
  s->proj.resize(static_cast<size_t>(rows) * linear.out);
  ApplyLinear(linear, in, rows, s->proj.data());
  kernels::AddInPlace(x, s->proj.data(), int64_t{rows} * linear.out);
}

void AddLinear(const LinearWeights& linear, const uint16_t* in, int rows, float* x, BlockScratch*) {
  kernels::LinearAccumulate(in, linear.weight_bf16, linear.bias, x, rows, linear.in, linear.out, linear.layout);
}

// out = activation(linear(in)), in the type the next GEMM reads, in the GEMM's own pass where the
// kernels can.
void ActivatedLinear(const LinearWeights& linear, Activation activation, const float* in, int rows, float* out) {
  if (linear.weight_s8 != nullptr) {
    kernels::LinearInt8(in, linear.weight_s8, linear.weight_scale, linear.weight_sum, linear.bias, out, rows, linear.in,
                        linear.out, kernels::Int8Result::kActivate, activation, linear.layout);
    return;
  }
  if (linear.weight != nullptr) {
    kernels::LinearActivate(in, linear.weight, linear.bias, out, rows, linear.in, linear.out, activation,
                            linear.layout);
    return;
  }
  ApplyLinear(linear, in, rows, out);  // bfloat16 weights reading fp32 (a post-LN block)
  kernels::Activate(activation, out, int64_t{rows} * linear.out);
}

void ActivatedLinear(const LinearWeights& linear, Activation activation, const uint16_t* in, int rows, uint16_t* out) {
  kernels::LinearActivate(in, linear.weight_bf16, linear.bias, out, rows, linear.in, linear.out, activation,
                          linear.layout);
}

// A pre-LN block whose GEMMs read In: float, or uint16_t for bfloat16 (each GEMM's input then
// written so by the operation before it).
template <typename In>
void PreLnBlock(const BlockWeights& w, const TowerConfig& c, float* x, int n_seqs, int seq_len, bool causal, In* ln,
                In* mlp, BlockScratch* s) {
  const int n_tokens = n_seqs * seq_len;
  // Attention half.
  kernels::LayerNorm(x, w.ln1.gamma, w.ln1.beta, ln, n_tokens, c.width, c.layer_norm_eps);
  ApplyLinear(w.qkv, ln, n_tokens, s->qkv.data());
  kernels::AttentionBatch(s->qkv.data(), ln, n_seqs, seq_len, c.width, c.n_head, causal);  // ln is free again
  AddLinear(w.out, ln, n_tokens, x, s);
  // MLP half, kMlpRows tokens at a time: its hidden layer (4× the width) is the largest buffer.
  kernels::LayerNorm(x, w.ln2.gamma, w.ln2.beta, ln, n_tokens, c.width, c.layer_norm_eps);
  for (int first = 0; first < n_tokens; first += kMlpRows) {
    const int rows = std::min(kMlpRows, n_tokens - first);
    ActivatedLinear(w.fc1, c.activation, ln + int64_t{first} * c.width, rows, mlp);
    AddLinear(w.fc2, mlp, rows, x + int64_t{first} * c.width, s);
  }
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
    kernels::AttentionBatch(s->qkv.data(), s->ln.data(), n_seqs, seq_len, c.width, c.n_head, causal);
    AddLinear(w.out, s->ln.data(), n_tokens, x, s);
    kernels::LayerNorm(x, w.ln1.gamma, w.ln1.beta, x, n_tokens, c.width, c.layer_norm_eps);
    ActivatedLinear(w.fc1, c.activation, x, n_tokens, s->mlp.data());
    AddLinear(w.fc2, s->mlp.data(), n_tokens, x, s);
    kernels::LayerNorm(x, w.ln2.gamma, w.ln2.beta, x, n_tokens, c.width, c.layer_norm_eps);
    return;
  }
  if (bf16) {
    PreLnBlock(w, c, x, n_seqs, seq_len, causal, s->ln_bf16.data(), s->mlp_bf16.data(), s);
  } else {
    PreLnBlock(w, c, x, n_seqs, seq_len, causal, s->ln.data(), s->mlp.data(), s);
  }
}

}  // namespace imgsearch::model
