// vector_ops.h's operations with AVX-512 (F, BW, DQ, VL: CMakeLists.txt builds this file with them);
// ops.cc runs them only where the CPU has them and the kernels are not capped to AVX2.
#define IMGSEARCH_SIMD_AVX512
#define IMGSEARCH_SIMD_OPS Avx512VectorOps
#include "kernels/vector_ops.inc"
