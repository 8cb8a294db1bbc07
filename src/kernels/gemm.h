// Dense layers: y = x · wᵀ + b in PyTorch's Linear layout.
//
// x is [m, k] row-major, w is [n, k] row-major (one output feature per row, as checkpoints store it),
// bias is [n] or null, y is [m, n] row-major. LinearRef is the scalar reference that the fast path is
// tested against; Linear runs oneDNN's matmul, which picks the best kernel for the CPU at run time.
#pragma once

namespace imgsearch::kernels {

void LinearRef(const float* x, const float* w, const float* bias, float* y, int m, int k, int n);

// Fast path. Thread-safe; oneDNN primitives are cached per shape.
void Linear(const float* x, const float* w, const float* bias, float* y, int m, int k, int n);

}  // namespace imgsearch::kernels
