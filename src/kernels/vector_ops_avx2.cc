// vector_ops.h's operations with AVX2 and FMA, the instruction set every build assumes.
#define IMGSEARCH_SIMD_OPS Avx2VectorOps
#include "kernels/vector_ops.inc"
