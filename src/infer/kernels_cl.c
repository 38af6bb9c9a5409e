/* infer/kernels_cl.c - owns the linear kernels over the codec's compute
 * layout (moesz/codec.h): Y[t, r] (+)= step * sum_c q[r, c] X[t, c] + the
 * row's escapes, for one token (matvec) or a few (small-batch GEMM, the codes
 * of each group unpacked once for up to 4 tokens), without materialising the
 * weights. AVX2 unpacks 8 codes of any width with one broadcast load, a byte
 * shuffle and two shifts; the scalar twin computes the same sums (up to
 * summation order). */
#include "infer/kernels.h"
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MOESZ_X86 1
#else
#define MOESZ_X86 0
#endif
#include "moesz/codec.h"

#define G MOESZ_CL_GROUP
#define TBLK 4          /* tokens per pass over a row's codes */

/* The row's escapes: sum of w_e * x[c_e]. */
static inline float esc_dot(const moesz_cl *m, int64_t r, const float *x) {
  float s = 0;
  size_t base = (size_t)r * (size_t)m->cols;   /* esc_idx counts from row 0 */
  for (uint32_t e = m->esc_start[r]; e < m->esc_start[r + 1]; e++) s += m->esc_val[e] * x[m->esc_idx[e] - base];
  return s;
}

static inline int code_at(const uint8_t *p, int b, int i) {
  size_t bit = (size_t)i * (size_t)b;
  uint32_t w = (uint32_t)p[bit >> 3] | (uint32_t)p[(bit >> 3) + 1] << 8 | (uint32_t)p[(bit >> 3) + 2] << 16;
  uint32_t u = (w >> (bit & 7)) & ((1u << b) - 1);
  return (int)(u ^ (1u << (b - 1))) - (1 << (b - 1));
}

static void cl_scalar(const moesz_cl *m, int64_t r0, int64_t r1, const float *x, size_t ldx, int nt, float *y,
                      size_t ldy, int acc) {
  int64_t cols = m->cols;
  for (int64_t r = r0; r < r1; r++)
    for (int t = 0; t < nt; t++) {
      const float *xt = x + (size_t)t * ldx;
      const uint8_t *p = m->data + m->row_off[r];
      float s = 0;
      for (int64_t g = 0; g < m->ngroups; g++) {
        int b = moesz_cl_width(m, r, g);
        if (!b) continue;
        float sg = 0;
        for (int i = 0; i < G && g * G + i < cols; i++) sg += (float)code_at(p, b, i) * xt[g * G + i];
        s += sg;
        p += 8 * b;
      }
      float v = s * m->step + esc_dot(m, r, xt);
      float *o = y + (size_t)t * ldy + (r - r0);
      *o = acc ? *o + v : v;
    }
}

#if MOESZ_X86
#include "infer/kernels_cl_tab.h"
#define TGT __attribute__((target("avx2,fma")))

TGT static inline float hsum8(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

/* 8 codes of width b at p as floats. */
#define UNPACK8(p, shuf, shl, sra)                                                                   \
  _mm256_cvtepi32_ps(_mm256_sra_epi32(                                                             \
      _mm256_sllv_epi32(_mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(p))), shuf), shl), \
      sra))

/* One token, rows r0..r1; the last partial group reads a zero-padded copy of x. */
TGT static void cl_mv_avx2(const moesz_cl *m, int64_t r0, int64_t r1, const float *x, float *y, int acc) {
  int64_t full = m->cols / G, ng = m->ngroups;
  float xt[G] __attribute__((aligned(32)));
  if (ng > full) {
    memset(xt, 0, sizeof xt);
    memcpy(xt, x + full * G, (size_t)(m->cols - full * G) * sizeof(float));
  }
  for (int64_t r = r0; r < r1; r++) {
    const uint8_t *p = m->data + m->row_off[r];
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (int64_t g = 0; g < ng; g++) {
      int b = moesz_cl_width(m, r, g);
      if (!b) continue;
      const float *xg = g < full ? x + g * G : xt;
      __m256i shuf = _mm256_load_si256((const __m256i *)CL_SHUF[b]);
      __m256i shl = _mm256_load_si256((const __m256i *)CL_SHL[b]);
      __m128i sra = _mm_cvtsi32_si128(32 - b);
      for (int j = 0; j < 8; j += 2) {
        a0 = _mm256_fmadd_ps(UNPACK8(p + j * b, shuf, shl, sra), _mm256_loadu_ps(xg + 8 * j), a0);
        a1 = _mm256_fmadd_ps(UNPACK8(p + (j + 1) * b, shuf, shl, sra), _mm256_loadu_ps(xg + 8 * j + 8), a1);
      }
      p += 8 * b;
    }
    float v = hsum8(_mm256_add_ps(a0, a1)) * m->step + esc_dot(m, r, x);
    y[r - r0] = acc ? y[r - r0] + v : v;
  }
}

/* nt <= TBLK tokens, rows r0..r1: each group's codes unpacked once. */
TGT static void cl_mm_avx2(const moesz_cl *m, int64_t r0, int64_t r1, const float *x, size_t ldx, int nt, float *y,
                           size_t ldy, int acc) {
  int64_t full = m->cols / G, ng = m->ngroups;
  float xt[TBLK][G] __attribute__((aligned(32)));
  const float *xr[TBLK];
  for (int t = 0; t < nt; t++) xr[t] = x + (size_t)t * ldx;
  if (ng > full)
    for (int t = 0; t < nt; t++) {
      memset(xt[t], 0, sizeof xt[t]);
      memcpy(xt[t], xr[t] + full * G, (size_t)(m->cols - full * G) * sizeof(float));
    }
  for (int64_t r = r0; r < r1; r++) {
    const uint8_t *p = m->data + m->row_off[r];
    __m256 a[TBLK];
    for (int t = 0; t < TBLK; t++) a[t] = _mm256_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
      int b = moesz_cl_width(m, r, g);
      if (!b) continue;
      __m256i shuf = _mm256_load_si256((const __m256i *)CL_SHUF[b]);
      __m256i shl = _mm256_load_si256((const __m256i *)CL_SHL[b]);
      __m128i sra = _mm_cvtsi32_si128(32 - b);
      const float *xg[TBLK];
      for (int t = 0; t < nt; t++) xg[t] = g < full ? xr[t] + g * G : xt[t];
      for (int j = 0; j < 8; j++) {
        __m256 f = UNPACK8(p + j * b, shuf, shl, sra);
        if (nt == 4) {
          a[0] = _mm256_fmadd_ps(f, _mm256_loadu_ps(xg[0] + 8 * j), a[0]);
          a[1] = _mm256_fmadd_ps(f, _mm256_loadu_ps(xg[1] + 8 * j), a[1]);
          a[2] = _mm256_fmadd_ps(f, _mm256_loadu_ps(xg[2] + 8 * j), a[2]);
          a[3] = _mm256_fmadd_ps(f, _mm256_loadu_ps(xg[3] + 8 * j), a[3]);
        } else {
          for (int t = 0; t < nt; t++) a[t] = _mm256_fmadd_ps(f, _mm256_loadu_ps(xg[t] + 8 * j), a[t]);
        }
      }
      p += 8 * b;
    }
    for (int t = 0; t < nt; t++) {
      float v = hsum8(a[t]) * m->step + esc_dot(m, r, xr[t]);
      float *o = y + (size_t)t * ldy + (r - r0);
      *o = acc ? *o + v : v;
    }
  }
}
#endif

void moesz_k_cl_rows(const moesz_cl *m, int64_t r0, int64_t r1, const float *x, size_t ldx, int nt, float *y,
                     size_t ldy, int acc, int simd) {
#if MOESZ_X86
  if (simd) {
    if (nt == 1) { cl_mv_avx2(m, r0, r1, x, y, acc); return; }
    for (int t = 0; t < nt; t += TBLK) {
      int k = nt - t < TBLK ? nt - t : TBLK;
      cl_mm_avx2(m, r0, r1, x + (size_t)t * ldx, ldx, k, y + (size_t)t * ldy, ldy, acc);
    }
    return;
  }
#else
  (void)simd;
#endif
  cl_scalar(m, r0, r1, x, ldx, nt, y, ldy, acc);
}
