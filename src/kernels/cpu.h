// What the CPU can do, and which instruction set the kernels are allowed to use.
#pragma once

#include <string>

namespace imgsearch::kernels {

enum class IsaLimit { kNative, kAvx2 };

// Caps the instruction set oneDNN may use. Must be called before the first GEMM; later calls are
// ignored by oneDNN. `IMGSEARCH_MAX_ISA=avx2` in the environment has the same effect.
void LimitIsa(IsaLimit limit);

// True when the kernels are capped to AVX2 (by LimitIsa or the environment).
bool IsaLimitedToAvx2();

// True when bfloat16 GEMMs run natively: oneDNN, after any cap on its instruction set, runs
// AVX512_BF16 or AMX-BF16 kernels.
bool NativeBf16();

// True when oneDNN, after any cap, sums u8·s8 products with AVX512_VNNI or AMX (exactly, in 32 bits).
bool NativeVnni();

// A short description of the path in use, e.g. "avx512_core_bf16 (oneDNN 2.6), avx512 vector ops".
std::string DescribeIsa();

// The vectorised element-wise and row-wise operations for this CPU, after any cap (vector_ops.h).
struct VectorOps;  // vector_ops.h
const VectorOps& ActiveVectorOps();

// Threads the kernels use; 0 means all cores.
void SetNumThreads(int n_threads);
int NumThreads();

}  // namespace imgsearch::kernels
