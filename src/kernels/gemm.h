// Dense layers: y = x · wᵀ + b in PyTorch's Linear layout.
//
// x is [m, k] row-major, w is [n, k] row-major (one output feature per row, as checkpoints store it),
// bias is [n] or null, y is [m, n] row-major. LinearRef is the scalar reference that the fast path is
// tested against; Linear runs oneDNN's matmul, which picks the best kernel for the CPU at run time.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/ops.h"

namespace imgsearch::kernels {

void LinearRef(const float* x, const float* w, const float* bias, float* y, int m, int k, int n);

// How a layer's weights lie in memory: [n, k] rows as checkpoints store them, or packed into the
// blocked layout oneDNN's kernels read (PackWeights). Where the kernels are blocked (AVX-512) rows
// are re-blocked on every call; packed once, the encoders' GEMMs run 7–21 % faster (fp32, bfloat16
// and int8 alike). oneDNN 2.6's AVX2 GEMM reads plain layouts: nothing to pack there.
enum class Layout { kRows, kPacked };
enum class WeightType { kF32, kBf16, kS8 };

// The size of [n, k] weights of `type` once packed; 0 when this CPU's kernels read a plain layout
// (nothing to gain).
size_t PackedWeightBytes(WeightType type, int k, int n);
// Packs [n, k] `rows` of `type` into `packed` (PackedWeightBytes of them; 64-byte aligned is best).
void PackWeights(WeightType type, const void* rows, int k, int n, void* packed);

// Fast path. Thread-safe; oneDNN primitives are cached per shape.
void Linear(const float* x, const float* w, const float* bias, float* y, int m, int k, int n,
            Layout layout = Layout::kRows);

// The same layer with bfloat16 weights ([n, k], ops.h's ToBf16 of the fp32 ones): x is rounded to
// bfloat16 on the way in (or comes so), products are summed in fp32, bias and y stay fp32. Needs
// NativeBf16() (cpu.h).
void LinearBf16(const float* x, const uint16_t* w, const float* bias, float* y, int m, int k, int n,
                Layout layout = Layout::kRows);
void LinearBf16(const uint16_t* x, const uint16_t* w, const float* bias, float* y, int m, int k, int n,
                Layout layout = Layout::kRows);

// A layer finishing in the GEMM's own pass (oneDNN post-ops), for the transformer block:
// y += x · wᵀ + b (the residual), or y = activation(x · wᵀ + b), in the input's type (fp32, or
// bfloat16 with bfloat16 weights).
void LinearAccumulate(const float* x, const float* w, const float* bias, float* y, int m, int k, int n,
                      Layout layout = Layout::kRows);
void LinearAccumulate(const uint16_t* x, const uint16_t* w, const float* bias, float* y, int m, int k, int n,
                      Layout layout = Layout::kRows);
void LinearActivate(const float* x, const float* w, const float* bias, float* y, int m, int k, int n,
                    Activation activation, Layout layout = Layout::kRows);
void LinearActivate(const uint16_t* x, const uint16_t* w, const float* bias, uint16_t* y, int m, int k, int n,
                    Activation activation, Layout layout = Layout::kRows);

// int8 weights, per output feature: w[j] ≈ q[j] · scale[j], q in [-127, 127]; sum[j] = Σ q[j]
// (for the activations' offset). `w` is [rows, k]; q may be packed after.
void QuantizeInt8(const float* w, int rows, int k, int8_t* q, float* scale, int32_t* sum);

// What LinearInt8 does with each row of its result as it scales it back: stores it, adds it to y
// (the residual), or stores activation(result).
enum class Int8Result { kStore, kAdd, kActivate };

// The same layer with int8 weights (QuantizeInt8): each row of x is quantised on the way in to
// Int8Levels() steps either side of zero (its own scale), products are summed exactly in int32 and
// scaled back; bias and y stay fp32.
void LinearInt8(const float* x, const int8_t* w, const float* w_scale, const int32_t* w_sum, const float* bias,
                float* y, int m, int k, int n, Int8Result result = Int8Result::kStore,
                Activation activation = Activation::kQuickGelu, Layout layout = Layout::kRows);

// 127 where the GEMM sums u8·s8 products without saturating (VNNI: NativeVnni, cpu.h), else 63:
// the AVX2 and AVX-512 kernels without VNNI add pairs of products in 16 bits, so activations keep
// 7 bits there.
int Int8Levels();

}  // namespace imgsearch::kernels
