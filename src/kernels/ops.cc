#include "kernels/ops.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels/cpu.h"
#include "kernels/vector_ops.h"

namespace imgsearch::kernels {

namespace {

// Below this many values a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 15;
// Element-wise work is split into blocks of this many values.
constexpr int64_t kBlock = 1 << 13;

// Runs f(begin, end) over [0, n) in blocks, on all threads when n is large enough.
template <typename F>
void ForBlocks(int64_t n, F f) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) f(b * kBlock, std::min(n, (b + 1) * kBlock));
}

template <typename Out>
void LayerNormRows(const float* x, const float* gamma, const float* beta, Out* out, int rows, int width, float eps) {
  const VectorOps& ops = ActiveVectorOps();
#pragma omp parallel for schedule(static) if (int64_t{rows} * width >= kParallelMin)
  for (int r = 0; r < rows; ++r) {
    const int64_t at = int64_t{r} * width;
    if constexpr (std::is_same_v<Out, float>) {
      ops.layer_norm(x + at, gamma, beta, out + at, nullptr, width, eps);
    } else {
      ops.layer_norm(x + at, gamma, beta, nullptr, out + at, width, eps);
    }
  }
}

void ActivateInPlace(void (*f)(float*, int64_t), float* x, int64_t n) {
  ForBlocks(n, [&](int64_t begin, int64_t end) { f(x + begin, end - begin); });
}

// Each sequence's heads, in parallel: qkv rows are [q | k | v].
void Attend(const float* qkv, float* out, uint16_t* out_bf16, int n_seqs, int seq_len, int width, int n_head,
            bool causal) {
  const VectorOps& ops = ActiveVectorOps();
  const int head_dim = width / n_head;
  const int64_t stride = int64_t{3} * width;
  const int64_t tasks = int64_t{n_seqs} * n_head;
  const int64_t work = int64_t{n_seqs} * seq_len * seq_len * width;
#pragma omp parallel if (tasks > 1 && work >= kParallelMin * 8)
  {
    thread_local std::vector<float> scratch;
    scratch.resize(static_cast<size_t>(AttendScratchFloats(seq_len, head_dim)));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t s = t / n_head, h = t % n_head;
      const float* q = qkv + s * seq_len * stride + h * head_dim;
      const int64_t at = s * seq_len * width + h * head_dim;
      ops.attend_head(q, stride, seq_len, q + width, q + 2 * width, stride, seq_len, head_dim, causal,
                      out != nullptr ? out + at : nullptr, out_bf16 != nullptr ? out_bf16 + at : nullptr, width,
                      scratch.data());
    }
  }
}

}  // namespace

void LayerNorm(const float* x, const float* gamma, const float* beta, float* out, int rows, int width, float eps) {
  LayerNormRows(x, gamma, beta, out, rows, width, eps);
}

void LayerNorm(const float* x, const float* gamma, const float* beta, uint16_t* out, int rows, int width, float eps) {
  LayerNormRows(x, gamma, beta, out, rows, width, eps);
}

void QuickGelu(float* x, int64_t n) { ActivateInPlace(ActiveVectorOps().quick_gelu, x, n); }

void Gelu(float* x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
}

void GeluTanh(float* x, int64_t n) { ActivateInPlace(ActiveVectorOps().gelu_tanh, x, n); }

void Activate(Activation activation, float* x, int64_t n) {
  switch (activation) {
    case Activation::kQuickGelu: QuickGelu(x, n); return;
    case Activation::kGelu: Gelu(x, n); return;
    case Activation::kGeluTanh: GeluTanh(x, n); return;
  }
}

void ToBf16(const float* x, uint16_t* out, int64_t n) {
  const VectorOps& ops = ActiveVectorOps();
  ForBlocks(n, [&](int64_t begin, int64_t end) { ops.to_bf16(x + begin, out + begin, end - begin); });
}

void AddInPlace(float* y, const float* x, int64_t n) {
  const VectorOps& ops = ActiveVectorOps();
  ForBlocks(n, [&](int64_t begin, int64_t end) { ops.add(y + begin, x + begin, end - begin); });
}

void L2Normalize(float* x, int n) {
  double sq = 0.0;
  for (int i = 0; i < n; ++i) sq += static_cast<double>(x[i]) * x[i];
  if (sq <= 0.0) return;
  const float inv = static_cast<float>(1.0 / std::sqrt(sq));
  for (int i = 0; i < n; ++i) x[i] *= inv;
}

void AttendOne(const float* q, const float* kv, float* out, int n_keys, int width, int n_head) {
  const VectorOps& ops = ActiveVectorOps();
  const int head_dim = width / n_head;
  thread_local std::vector<float> scratch;
  scratch.resize(static_cast<size_t>(AttendScratchFloats(n_keys, head_dim)));
  for (int h = 0; h < n_head; ++h) {
    const int64_t at = int64_t{h} * head_dim;
    ops.attend_head(q + at, 0, 1, kv + at, kv + width + at, int64_t{2} * width, n_keys, head_dim, /*causal=*/false,
                    out + at, nullptr, 0, scratch.data());
  }
}

void AttentionBatch(const float* qkv, float* out, int n_seqs, int seq_len, int width, int n_head, bool causal) {
  Attend(qkv, out, nullptr, n_seqs, seq_len, width, n_head, causal);
}

void AttentionBatch(const float* qkv, uint16_t* out, int n_seqs, int seq_len, int width, int n_head, bool causal) {
  Attend(qkv, nullptr, out, n_seqs, seq_len, width, n_head, causal);
}

}  // namespace imgsearch::kernels
