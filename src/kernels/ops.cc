#include "kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace imgsearch::kernels {

// Below this many values a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 15;

void LayerNorm(const float* x, const float* gamma, const float* beta, float* out, int rows, int width, float eps) {
#pragma omp parallel for schedule(static) if (int64_t{rows} * width >= kParallelMin)
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + int64_t{r} * width;
    float* yr = out + int64_t{r} * width;
    float sum = 0.0f;
    for (int i = 0; i < width; ++i) sum += xr[i];
    const float mean = sum / static_cast<float>(width);
    float sq = 0.0f;
    for (int i = 0; i < width; ++i) {
      const float d = xr[i] - mean;
      sq += d * d;
    }
    const float inv_std = 1.0f / std::sqrt(sq / static_cast<float>(width) + eps);
    for (int i = 0; i < width; ++i) yr[i] = (xr[i] - mean) * inv_std * gamma[i] + beta[i];
  }
}

void QuickGelu(float* x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + std::exp(-1.702f * x[i]));
}

void Gelu(float* x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
}

void GeluTanh(float* x, int64_t n) {
  constexpr float kBeta = 0.7978845608028654f;  // sqrt(2 / π)
  constexpr float kKappa = 0.044715f;
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    x[i] = 0.5f * v * (1.0f + std::tanh(kBeta * (v + kKappa * v * v * v)));
  }
}

void AddInPlace(float* y, const float* x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void L2Normalize(float* x, int n) {
  double sq = 0.0;
  for (int i = 0; i < n; ++i) sq += static_cast<double>(x[i]) * x[i];
  if (sq <= 0.0) return;
  const float inv = static_cast<float>(1.0 / std::sqrt(sq));
  for (int i = 0; i < n; ++i) x[i] *= inv;
}

namespace {

// One head's output for one query row: softmax(q · kᵀ · scale) · v over `n_keys` keys, whose rows
// (k and v of one head) are `stride` floats apart. `scratch` holds n_keys floats.
void AttendRow(const float* q, const float* k, const float* v, int64_t stride, int n_keys, int head_dim, float scale,
               float* out, float* scratch) {
  float max_score = -INFINITY;
  for (int j = 0; j < n_keys; ++j) {
    const float* kj = k + j * stride;
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int d = 0; d < head_dim; ++d) dot += q[d] * kj[d];
    scratch[j] = dot * scale;
    max_score = std::max(max_score, scratch[j]);
  }
  float denom = 0.0f;
  for (int j = 0; j < n_keys; ++j) {
    scratch[j] = std::exp(scratch[j] - max_score);
    denom += scratch[j];
  }
  const float inv_denom = 1.0f / denom;
  std::fill(out, out + head_dim, 0.0f);
  for (int j = 0; j < n_keys; ++j) {
    const float p = scratch[j] * inv_denom;
    const float* vj = v + j * stride;
    for (int d = 0; d < head_dim; ++d) out[d] += p * vj[d];
  }
}

}  // namespace

void Attention(const float* qkv, float* out, int n_tokens, int width, int n_head, bool causal, float* scratch) {
  const int head_dim = width / n_head;
  const int64_t stride = int64_t{3} * width;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  for (int h = 0; h < n_head; ++h) {
    const float* q = qkv + int64_t{h} * head_dim;
    const float* k = qkv + width + int64_t{h} * head_dim;
    const float* v = qkv + 2 * int64_t{width} + int64_t{h} * head_dim;
    for (int i = 0; i < n_tokens; ++i) {
      AttendRow(q + i * stride, k, v, stride, causal ? i + 1 : n_tokens, head_dim, scale,
                out + int64_t{i} * width + int64_t{h} * head_dim, scratch);
    }
  }
}

void AttendOne(const float* q, const float* kv, float* out, int n_keys, int width, int n_head, float* scratch) {
  const int head_dim = width / n_head;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  for (int h = 0; h < n_head; ++h) {
    const int64_t at = int64_t{h} * head_dim;
    AttendRow(q + at, kv + at, kv + width + at, int64_t{2} * width, n_keys, head_dim, scale, out + at, scratch);
  }
}

void AttentionBatch(const float* qkv, float* out, int n_seqs, int seq_len, int width, int n_head, bool causal) {
  const int64_t seq_stride = int64_t{seq_len} * width;
#pragma omp parallel if (n_seqs > 1)
  {
    std::vector<float> scratch(static_cast<size_t>(seq_len));
#pragma omp for schedule(static)
    for (int s = 0; s < n_seqs; ++s) {
      Attention(qkv + 3 * s * seq_stride, out + s * seq_stride, seq_len, width, n_head, causal, scratch.data());
    }
  }
}

}  // namespace imgsearch::kernels
