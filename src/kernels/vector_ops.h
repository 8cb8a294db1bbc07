// The vectorised bodies of the row-wise and element-wise transformer operations, one set per
// instruction set (vector_ops.inc, built as vector_ops_avx2.cc and vector_ops_avx512.cc). ops.cc
// picks a set at run time and runs them in parallel; callers use ops.h.
//
// Each writes its result either as fp32 (`out`) or, for a bfloat16 GEMM that reads it next, rounded
// to bfloat16 (`out_bf16`, as kernels::ToBf16 rounds); exactly one of the two is non-null.
#pragma once

#include <cstdint>

namespace imgsearch::kernels {

struct VectorOps {
  const char* isa;
  // One row of `width`: (x - mean) / sqrt(var + eps) · gamma + beta.
  void (*layer_norm)(const float* x, const float* gamma, const float* beta, float* out, uint16_t* out_bf16, int width,
                     float eps);
  // x · sigmoid(1.702 x), in place (fp32 only: a bfloat16 GEMM applies its own activation).
  void (*quick_gelu)(float* x, int64_t n);
  // 0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³))), in place.
  void (*gelu_tanh)(float* x, int64_t n);
  void (*to_bf16)(const float* x, uint16_t* out, int64_t n);
  // y += x.
  void (*add)(float* y, const float* x, int64_t n);
  // One row quantised for an int8 GEMM: q[i] = round(x[i] / scale) + levels + 1, in [1, 2·levels + 1],
  // scale = max |x| / levels (1 for a row of zeros); returns scale.
  float (*quantize_row)(const float* x, int width, int levels, uint8_t* q);
  // One row of an int8 GEMM's sums back to fp32: y[j] (+)= row_scale · col_scale[j] · (acc[j] -
  // offset · col_sum[j]) + bias[j] (bias may be null; with `add`, added to y).
  void (*dequantize_row)(const int32_t* acc, int n, float row_scale, const float* col_scale, const int32_t* col_sum,
                         int32_t offset, const float* bias, bool add, float* y);
  // One head of attention: query rows q + i·q_stride (i < n_queries) attend over keys k + j·kv_stride
  // and values v + j·kv_stride (j < n_keys), each head_dim wide; with `causal`, query i over keys
  // 0..i only. Output row i goes to (out or out_bf16) + i·out_stride. `scratch` holds
  // AttendScratchFloats(n_keys, head_dim) floats.
  void (*attend_head)(const float* q, int64_t q_stride, int n_queries, const float* k, const float* v,
                      int64_t kv_stride, int n_keys, int head_dim, bool causal, float* out, uint16_t* out_bf16,
                      int64_t out_stride, float* scratch);
};

// Floats of scratch attend_head needs (for any instruction set).
inline int64_t AttendScratchFloats(int n_keys, int head_dim) {
  const int64_t padded = (int64_t{n_keys} + 15) / 16 * 16;
  return (int64_t{head_dim} + 1) * padded;
}

const VectorOps& Avx2VectorOps();
const VectorOps& Avx512VectorOps();  // needs AVX-512 F, BW, DQ and VL

}  // namespace imgsearch::kernels
