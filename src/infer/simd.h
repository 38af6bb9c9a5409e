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
#endif
#endif
