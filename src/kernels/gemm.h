// Dense layers: y = x · wᵀ + b in PyTorch's Linear layout.
//
// x is [m, k] row-major, w is [n, k] row-major (one output feature per row, as checkpoints store it),
// bias is [n] or null, y is [m, n] row-major. LinearRef is the scalar reference that the fast path is
// tested against; Linear runs oneDNN's matmul, which picks the best kernel for the CPU at run time.
#pragma once

#include <cstdint>

namespace imgsearch::kernels {

void LinearRef(const float* x, const float* w, const float* bias, float* y, int m, int k, int n);

// Fast path. Thread-safe; oneDNN primitives are cached per shape.
void Linear(const float* x, const float* w, const float* bias, float* y, int m, int k, int n);

// Rounds n floats to bfloat16 (the upper 16 bits, to nearest even; NaN stays NaN).
void ToBf16(const float* x, uint16_t* out, int64_t n);

// The same layer with bfloat16 weights ([n, k], ToBf16 of the fp32 ones): x is rounded to bfloat16
// on the way in, products are summed in fp32, bias and y stay fp32. Needs NativeBf16() (cpu.h).
void LinearBf16(const float* x, const uint16_t* w, const float* bias, float* y, int m, int k, int n);

}  // namespace imgsearch::kernels
