// A float vector of the width one instruction set offers, for the element-wise and row-wise kernels
// (vector_ops.inc). A file that includes this defines IMGSEARCH_SIMD_AVX512 (built with AVX-512
// F/BW/DQ/VL) or not (AVX2 and FMA), and everything lives in that instruction set's namespace
// (IMGSEARCH_SIMD_NS), so the two builds never share a symbol.
#pragma once

#include <immintrin.h>

#include <cstdint>

#if defined(IMGSEARCH_SIMD_AVX512)
#define IMGSEARCH_SIMD_NS avx512
#else
#define IMGSEARCH_SIMD_NS avx2
#endif

namespace imgsearch::kernels::IMGSEARCH_SIMD_NS {

#if defined(IMGSEARCH_SIMD_AVX512)

struct Vf {
  __m512 v;
};
constexpr int kLanes = 16;

inline __mmask16 Mask(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
inline Vf Set(float a) { return {_mm512_set1_ps(a)}; }
inline Vf Load(const float* p) { return {_mm512_loadu_ps(p)}; }
// The first n (< kLanes) values; the rest 0.
inline Vf LoadPartial(const float* p, int n) { return {_mm512_maskz_loadu_ps(Mask(n), p)}; }
inline void Store(float* p, Vf a) { _mm512_storeu_ps(p, a.v); }
// a's first n lanes, the rest 0.
inline Vf KeepFirst(Vf a, int n) { return {_mm512_maskz_mov_ps(Mask(n), a.v)}; }
inline void StorePartial(float* p, Vf a, int n) { _mm512_mask_storeu_ps(p, Mask(n), a.v); }
inline Vf operator+(Vf a, Vf b) { return {_mm512_add_ps(a.v, b.v)}; }
inline Vf operator-(Vf a, Vf b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline Vf operator*(Vf a, Vf b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline Vf operator/(Vf a, Vf b) { return {_mm512_div_ps(a.v, b.v)}; }
inline Vf Fma(Vf a, Vf b, Vf c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }  // a·b + c
inline Vf Max(Vf a, Vf b) { return {_mm512_max_ps(a.v, b.v)}; }
inline Vf Min(Vf a, Vf b) { return {_mm512_min_ps(a.v, b.v)}; }
inline Vf Round(Vf a) { return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }
// 2^n for whole numbers n in [-127, 128] (128 gives infinity).
inline Vf Pow2(Vf n) {
  const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n.v), _mm512_set1_epi32(127)), 23);
  return {_mm512_castsi512_ps(bits)};
}
inline float Sum(Vf a) { return _mm512_reduce_add_ps(a.v); }
inline float Largest(Vf a) { return _mm512_reduce_max_ps(a.v); }
inline __m512i Bits(Vf a) { return _mm512_castps_si512(a.v); }
inline Vf Abs(Vf a) { return {_mm512_abs_ps(a.v)}; }

// (a[i] - offset · b[i]) as floats, for the first n (≤ kLanes) of each.
inline Vf OffsetDifference(const int32_t* a, const int32_t* b, int32_t offset, int n) {
  const __m512i va = n == kLanes ? _mm512_loadu_si512(a) : _mm512_maskz_loadu_epi32(Mask(n), a);
  const __m512i vb = n == kLanes ? _mm512_loadu_si512(b) : _mm512_maskz_loadu_epi32(Mask(n), b);
  return {_mm512_cvtepi32_ps(_mm512_sub_epi32(va, _mm512_mullo_epi32(vb, _mm512_set1_epi32(offset))))};
}
// Rounds the first n lanes to the nearest integer (ties to even) and stores them as bytes; each
// must lie in [0, 255].
inline void StoreBytes(uint8_t* p, Vf a, int n) {
  const __m128i bytes = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(a.v));
  if (n == kLanes) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), bytes);
  } else {
    _mm_mask_storeu_epi8(p, Mask(n), bytes);
  }
}

// bfloat16 of 16 floats, to nearest even; NaN stays a quiet NaN (kernels::ToBf16's rounding).
inline __m256i Bf16Of(Vf a) {
  const __m512i u = Bits(a);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
  const __m512i quiet_nan = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  const __mmask16 nan = _mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q);
  return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, rounded, quiet_nan));
}
inline void StoreBf16(uint16_t* p, Vf a) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), Bf16Of(a)); }
inline void StoreBf16Partial(uint16_t* p, Vf a, int n) { _mm256_mask_storeu_epi16(p, Mask(n), Bf16Of(a)); }

#else  // AVX2 and FMA

struct Vf {
  __m256 v;
};
constexpr int kLanes = 8;

inline __m256i Mask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline Vf Set(float a) { return {_mm256_set1_ps(a)}; }
inline Vf Load(const float* p) { return {_mm256_loadu_ps(p)}; }
inline Vf LoadPartial(const float* p, int n) { return {_mm256_maskload_ps(p, Mask(n))}; }
inline void Store(float* p, Vf a) { _mm256_storeu_ps(p, a.v); }
inline Vf KeepFirst(Vf a, int n) { return {_mm256_and_ps(a.v, _mm256_castsi256_ps(Mask(n)))}; }
inline void StorePartial(float* p, Vf a, int n) { _mm256_maskstore_ps(p, Mask(n), a.v); }
inline Vf operator+(Vf a, Vf b) { return {_mm256_add_ps(a.v, b.v)}; }
inline Vf operator-(Vf a, Vf b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline Vf operator*(Vf a, Vf b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline Vf operator/(Vf a, Vf b) { return {_mm256_div_ps(a.v, b.v)}; }
inline Vf Fma(Vf a, Vf b, Vf c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline Vf Max(Vf a, Vf b) { return {_mm256_max_ps(a.v, b.v)}; }
inline Vf Min(Vf a, Vf b) { return {_mm256_min_ps(a.v, b.v)}; }
inline Vf Round(Vf a) { return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }
inline Vf Pow2(Vf n) {
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127)), 23);
  return {_mm256_castsi256_ps(bits)};
}
inline float Sum(Vf a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float Largest(Vf a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline Vf Abs(Vf a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)}; }

inline Vf OffsetDifference(const int32_t* a, const int32_t* b, int32_t offset, int n) {
  const __m256i mask = Mask(n);
  const __m256i va = _mm256_maskload_epi32(reinterpret_cast<const int*>(a), mask);
  const __m256i vb = _mm256_maskload_epi32(reinterpret_cast<const int*>(b), mask);
  return {_mm256_cvtepi32_ps(_mm256_sub_epi32(va, _mm256_mullo_epi32(vb, _mm256_set1_epi32(offset))))};
}
inline void StoreBytes(uint8_t* p, Vf a, int n) {
  const __m256i i32 = _mm256_cvtps_epi32(a.v);
  const __m128i u16 = _mm_packus_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
  const __m128i bytes = _mm_packus_epi16(u16, u16);
  if (n == kLanes) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), bytes);
  } else {
    alignas(16) uint8_t tmp[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), bytes);
    for (int i = 0; i < n; ++i) p[i] = tmp[i];
  }
}

inline __m128i Bf16Of(Vf a) {
  const __m256i u = _mm256_castps_si256(a.v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
  const __m256i quiet_nan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q));
  const __m256i r = _mm256_blendv_epi8(rounded, quiet_nan, nan);
  // Pack the low halves of the 32-bit lanes (each ≤ 0xFFFF, so unsigned saturation keeps them).
  return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}
inline void StoreBf16(uint16_t* p, Vf a) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), Bf16Of(a)); }
inline void StoreBf16Partial(uint16_t* p, Vf a, int n) {
  alignas(16) uint16_t tmp[8];
  _mm_store_si128(reinterpret_cast<__m128i*>(tmp), Bf16Of(a));
  for (int i = 0; i < n; ++i) p[i] = tmp[i];
}

#endif

// e^x to within 2 ulp (Cephes' expf: 2^n · a degree-6 polynomial of the remainder), for x up to
// 88.376 (where n reaches 128 and 2^n infinity; e^x is held there beyond); x ≤ -87.34 gives about
// 1e-38.
inline Vf Exp(Vf x) {
  x = Min(Max(x, Set(-87.33654f)), Set(88.3762626647949f));
  const Vf n = Round(x * Set(1.44269504088896341f));
  Vf r = Fma(n, Set(-0.693359375f), x);  // ln 2 in two parts, so r stays exact
  r = Fma(n, Set(2.12194440e-4f), r);
  Vf p = Set(1.9875691500e-4f);
  p = Fma(p, r, Set(1.3981999507e-3f));
  p = Fma(p, r, Set(8.3334519073e-3f));
  p = Fma(p, r, Set(4.1665795894e-2f));
  p = Fma(p, r, Set(1.6666665459e-1f));
  p = Fma(p, r, Set(5.0000001201e-1f));
  p = Fma(p, r * r, r) + Set(1.0f);
  return p * Pow2(n);
}

}  // namespace imgsearch::kernels::IMGSEARCH_SIMD_NS
