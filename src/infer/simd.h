/* infer/simd.h - small AVX2 helpers shared by the kernel files (kernels.c,
 * kernels_cl.c). Owned by src/infer. */
#ifndef MOESZ_INFER_SIMD_H
#define MOESZ_INFER_SIMD_H
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
/* Sum of the 8 lanes. */
__attribute__((target("avx2,fma"))) static inline float moesz_hsum8(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}
/* Largest of the 8 lanes (a NaN lane may or may not win: callers check). */
__attribute__((target("avx2,fma"))) static inline float moesz_hmax8(__m256 v) {
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  return _mm_cvtss_f32(m4);
}
#endif
#endif
