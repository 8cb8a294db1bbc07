// The pre-LN transformer block shared by both towers of every family.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/weights.h"

namespace imgsearch::model {

// Scratch space for one forward pass; grows to the largest batch seen and is then reused. A GEMM's
// input is fp32, or bfloat16 (the *_bf16 buffers) when the layer's weights are: then the operation
// before it writes it rounded.
struct BlockScratch {
  std::vector<float> ln;    // [tokens, width]: a LayerNorm's output, then attention's (each read by one GEMM)
  std::vector<float> qkv;   // [tokens, 3·width]
  std::vector<float> proj;  // [tokens, width]
  std::vector<float> mlp;   // [tokens, mlp_width]
  std::vector<uint16_t> ln_bf16, mlp_bf16;

  void Reserve(int n_tokens, const TowerConfig& c, bool bf16);
};

// x ([n_seqs·seq_len, width], sequences back to back) ← block(x), in place; pre-LN or post-LN as
// the tower says.
void TransformerBlock(const BlockWeights& w, const TowerConfig& c, float* x, int n_seqs, int seq_len, bool causal,
                      BlockScratch* s);

// Applies `linear` to `rows` rows of x; x in bfloat16 needs the layer's weights in bfloat16.
void ApplyLinear(const LinearWeights& linear, const float* x, int rows, float* y);
void ApplyLinear(const LinearWeights& linear, const uint16_t* x, int rows, float* y);

}  // namespace imgsearch::model
