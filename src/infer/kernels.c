/* infer/kernels.c - linear (matvec for one token; the small-batch path for
 * 2..kctx.sb_max tokens over BF16/F16 rows, which gives each token the
 * one-token sums bit for bit while reading each weight row once; packed
 * blocked matmul beyond, and for F32 rows: a tile of rows packed once per
 * task, then with AVX2 transposed and multiplied by an outer-product
 * kernel), rmsnorm, rope, softmax, silu,
 * attention; small calls run on the caller's thread (kctx.serial_macs); the
 * dispatch of compute-layout views to kernels_cl.c; the one-time check of
 * the AVX-512 paths. See kernels.h. The AVX2 and AVX-512 functions carry
 * __attribute__((target(...))) so the file builds for any x86-64 and picks
 * them at run time; each has a scalar twin computing the same sums (up to
 * summation order). */
#include "infer/kernels.h"
#include "infer/simd.h"
#include "infer/kernels_x512.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MOESZ_X86 1
#else
#define MOESZ_X86 0
#endif
#include "moesz/tensor.h"
#include "base/cpu.h"
#include "moesz/codec.h"

#define CH 16     /* rows per packed tile (batched path) */
#define TB 33     /* tokens per block (batched path), multiple of 3 */
#define SB_MAX 12 /* default kctx.sb_max (bench/infer_kernels: the small-batch path against the
                     packed one for 2..16 tokens) */
#define SERIAL_MACS (1 << 18)   /* default kctx.serial_macs */
/* Compute layout, from this many tokens: kctx.cl_act 2, the 8-bit tile; otherwise a tile of rows
 * unpacked to f32 and multiplied as the batched path does. Fewer tokens: the fused kernels over the
 * codes, each group unpacked once for up to 4 tokens (kernels_cl.c row_dotn). bench/expert_decode
 * (OLMoE's experts, 2 threads, Zen 3, ms per layer at 3 / 4 / 5-6 tokens, eb 1e-3): exact x fused
 * 4.5-4.6 / 5.8-6.1 / 8.0-9.7, f32 tile 5.9-7.0 / 7.3-8.4 / 7.7-8.0; 16-bit x fused 3.5 / 4.1 /
 * 5.7-7.0, tile 6.1-7.5 / 7.3-8.6 / 7.8-8.0; at eb 4e-3, 16-bit x fused 4.1-4.3 / 4.7-5.4 / 7.2,
 * 8-bit tile 4.7-6.5 / 6.8-7.1 / 6.3. The fused kernels' tasks are row chunks of about 256 KiB of
 * codes, and the tokens' split x is kept per thread for all tasks of a call. */
#ifndef CL_TILE_MIN
#define CL_TILE_MIN 5
#endif
#define CL8_MIN CL_TILE_MIN
/* AVX2 packed path: a tile unpacked to f32 first (compute layout, MXFP4, transposed views) takes the
 * outer-product kernel from this many tokens, fewer the 4x3 kernel on the row-major tile as it lies: its
 * transpose costs more than it saves there (bench/expert_decode, exact x, ms per layer at 3 / 8 / 16 / 32
 * / 64 / 128 tokens: 12.1 / 15.5 / 19.9 / 28.8 / 46.3 / 86.2 with the transpose, 6.2 / 10.6 / 15.6 /
 * 25.6 / 46.2 / 89.0 without). Rows read straight into the k-major tile (F32, BF16, F16) always take it. */
#define KM_UNPACKED_MIN 64

int moesz_k_cpu_simd(void) {
  return moesz_cpu_avx2();
}

size_t moesz_k_scratch_need(size_t max_cols, size_t max_ctx) {
  /* CH packed f32 rows and their k-major copy, or TB tokens of BF16 x padded to 32 columns (kctx.bf16x) */
  size_t a = 2 * ((size_t)CH * max_cols + 8) + 64, b = max_ctx + 64, xb = ((size_t)TB * ((max_cols + 31) / 32 * 32) + 1) / 2 + 64;
  if (xb > a) a = xb;
  return a > b ? a : b;
}

static int avx512_agrees(void);
static int vbmi_agrees(void);
static int bf16_agrees(void);

int moesz_kctx_init(moesz_kctx *c, moesz_pool *pool, int simd, size_t scratch_floats) {
  memset(c, 0, sizeof *c);
  c->pool = pool;
  c->nthreads = moesz_pool_size(pool);
  int have = moesz_k_cpu_simd();
  if (have && moesz_cpu_avx512_vnni() && avx512_agrees()) have = 2;
  if (have == 2 && moesz_cpu_avx512_vbmi() && vbmi_agrees()) have = 3;
  c->simd = simd < 0 ? have : (simd && have ? (simd < have ? simd : have) : 0);
  c->dpbf16 = c->simd >= 2 && moesz_cpu_avx512_bf16() && bf16_agrees();
#if MOESZ_X86
  c->bf16_rows = moesz_kx_bf16_rows;
  c->x_to_bf16 = moesz_kx_x_to_bf16;
#endif
  c->sb_max = SB_MAX;
  c->serial_macs = SERIAL_MACS;
  c->scratch_floats = scratch_floats;
  c->scratch = calloc((size_t)c->nthreads, sizeof *c->scratch);
  c->memo_gen = calloc((size_t)c->nthreads, sizeof *c->memo_gen);
  c->memo_x = calloc((size_t)c->nthreads, sizeof *c->memo_x);
  c->memo_shape = calloc((size_t)c->nthreads, sizeof *c->memo_shape);
  if (!c->scratch || !c->memo_gen || !c->memo_x || !c->memo_shape) { moesz_kctx_free(c); return MOESZ_E_NOMEM; }
  for (int i = 0; i < c->nthreads; i++) {
    c->scratch[i] = aligned_alloc(64, ((scratch_floats * sizeof(float)) + 63) / 64 * 64);
    if (!c->scratch[i]) { moesz_kctx_free(c); return MOESZ_E_NOMEM; }
  }
  return MOESZ_OK;
}

void moesz_kctx_free(moesz_kctx *c) {
  if (!c) return;
  if (c->scratch)
    for (int i = 0; i < c->nthreads; i++) free(c->scratch[i]);
  free(c->scratch);
  free(c->memo_gen);
  free(c->memo_x);
  free(c->memo_shape);
  c->scratch = NULL;
  c->memo_gen = NULL;
  c->memo_x = NULL;
  c->memo_shape = NULL;
}

/* ------------------------------------------------------------ conversion */

static inline float ld1(moesz_dtype dt, const void *p, size_t i) {
  switch (dt) {
  case MOESZ_DT_F32: return ((const float *)p)[i];
  case MOESZ_DT_BF16: return moesz_bf16_to_f32(((const uint16_t *)p)[i]);
  default: return moesz_f16_to_f32(((const uint16_t *)p)[i]);
  }
}

/* Rows [r0, r1) of w as f32, row-major [r1 - r0, cols] into dst. */
static void pack_rows(const moesz_matview *w, int64_t r0, int64_t r1, float *dst) {
  size_t cols = (size_t)w->cols, es = moesz_dtype_size(w->dtype);
  if (!w->transposed) {
    for (int64_t r = r0; r < r1; r++) {
      const char *src = (const char *)w->data + (size_t)r * (size_t)w->ld * es;
      float *d = dst + (size_t)(r - r0) * cols;
      if (w->dtype == MOESZ_DT_F32) memcpy(d, src, cols * sizeof(float));
      else if (w->dtype == MOESZ_DT_BF16) moesz_bf16_to_f32_n((const uint16_t *)src, d, cols);
      else moesz_f16_to_f32_n((const uint16_t *)src, d, cols);
    }
  } else {
    /* element (r, c) at data[c * ld + r] */
    for (size_t c = 0; c < cols; c++) {
      size_t base = c * (size_t)w->ld;
      for (int64_t r = r0; r < r1; r++)
        dst[(size_t)(r - r0) * cols + c] = ld1(w->dtype, w->data, base + (size_t)r);
    }
  }
}

float moesz_k_row_dot(const moesz_matview *w, int64_t r, const float *x, int simd) {
  (void)simd;
  double s = 0;
  for (int64_t c = 0; c < w->cols; c++) {
    size_t idx = w->transposed ? (size_t)c * (size_t)w->ld + (size_t)r
                               : (size_t)r * (size_t)w->ld + (size_t)c;
    s += (double)ld1(w->dtype, w->data, idx) * (double)x[c];
  }
  return (float)s;
}

/* ------------------------------------------------------- scalar kernels */

/* y[r - r0] for rows r0..r1 of a row-major native-dtype view. */
static void mv_scalar(const moesz_matview *w, int64_t r0, int64_t r1, const float *x,
                      float *y, int acc) {
  size_t cols = (size_t)w->cols, es = moesz_dtype_size(w->dtype);
  for (int64_t r = r0; r < r1; r++) {
    const void *row = (const char *)w->data + (size_t)r * (size_t)w->ld * es;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t c = 0;
    for (; c + 4 <= cols; c += 4) {
      s0 += ld1(w->dtype, row, c) * x[c];
      s1 += ld1(w->dtype, row, c + 1) * x[c + 1];
      s2 += ld1(w->dtype, row, c + 2) * x[c + 2];
      s3 += ld1(w->dtype, row, c + 3) * x[c + 3];
    }
    for (; c < cols; c++) s0 += ld1(w->dtype, row, c) * x[c];
    float s = (s0 + s1) + (s2 + s3);
    y[r - r0] = acc ? y[r - r0] + s : s;
  }
}

/* Packed tile p [nr, c] times tokens x [nt, c] (stride ldx) -> y[t*ldy + r]. */
static void mm_scalar(const float *p, int nr, const float *x, size_t ldx, int nt, size_t c,
                      float *y, size_t ldy, int acc) {
  for (int t = 0; t < nt; t++)
    for (int r = 0; r < nr; r++) {
      const float *a = p + (size_t)r * c, *b = x + (size_t)t * ldx;
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      size_t k = 0;
      for (; k + 4 <= c; k += 4) {
        s0 += a[k] * b[k]; s1 += a[k + 1] * b[k + 1];
        s2 += a[k + 2] * b[k + 2]; s3 += a[k + 3] * b[k + 3];
      }
      for (; k < c; k++) s0 += a[k] * b[k];
      float s = (s0 + s1) + (s2 + s3);
      float *o = y + (size_t)t * ldy + r;
      *o = acc ? *o + s : s;
    }
}

/* Small-batch path: rows r0..r1 of a row-major view times n tokens x [n,
 * cols] (row stride ldx) -> y[t * ldy + (r - r0)], each weight row read once
 * for a block of tokens (from L1 for the next block). Per token these are the
 * sums of the one-token matvec of the same simd level, in the same order, so
 * a token's result does not depend on how many tokens share the product. */
static void sb_scalar(const moesz_matview *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int n,
                      float *y, size_t ldy, int acc) {
  size_t cols = (size_t)w->cols, es = moesz_dtype_size(w->dtype);
  for (int64_t r = r0; r < r1; r++) {
    const void *row = (const char *)w->data + (size_t)r * (size_t)w->ld * es;
    for (int t0 = 0; t0 < n; t0 += 4) {
      int nt = n - t0 < 4 ? n - t0 : 4;
      float s[4][4] = {{0}};
      size_t c = 0;
      for (; c + 4 <= cols; c += 4) {
        float w0 = ld1(w->dtype, row, c), w1 = ld1(w->dtype, row, c + 1);
        float w2 = ld1(w->dtype, row, c + 2), w3 = ld1(w->dtype, row, c + 3);
        for (int j = 0; j < nt; j++) {
          const float *xj = x + (size_t)(t0 + j) * ldx;
          s[j][0] += w0 * xj[c]; s[j][1] += w1 * xj[c + 1];
          s[j][2] += w2 * xj[c + 2]; s[j][3] += w3 * xj[c + 3];
        }
      }
      for (; c < cols; c++) {
        float w0 = ld1(w->dtype, row, c);
        for (int j = 0; j < nt; j++) s[j][0] += w0 * x[(size_t)(t0 + j) * ldx + c];
      }
      for (int j = 0; j < nt; j++) {
        float v = (s[j][0] + s[j][1]) + (s[j][2] + s[j][3]);
        float *o = y + (size_t)(t0 + j) * ldy + (r - r0);
        *o = acc ? *o + v : v;
      }
    }
  }
}

/* --------------------------------------------------------- AVX2 kernels */
#if MOESZ_X86
#define TGT __attribute__((target("avx2,fma,f16c")))

TGT static inline __m256 ld8_f32(const void *p, size_t k) {
  return _mm256_loadu_ps((const float *)p + k);
}
TGT static inline __m256 ld8_f16(const void *p, size_t k) {
  return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + k)));
}

/* matvec over rows r0..r1: 4 rows at a time, 2 x 8 columns per step. */
#define MV_AVX(NAME, LD8, ES)                                                            \
  TGT static void NAME(const moesz_matview *w, int64_t r0, int64_t r1, const float *x,   \
                       float *y, int acc) {                                              \
    size_t cols = (size_t)w->cols, ld = (size_t)w->ld;                                   \
    const char *base = (const char *)w->data;                                            \
    int64_t r = r0;                                                                      \
    for (; r + 4 <= r1; r += 4) {                                                        \
      const void *w0 = base + (size_t)r * ld * ES, *w1 = base + (size_t)(r + 1) * ld * ES; \
      const void *w2 = base + (size_t)(r + 2) * ld * ES, *w3 = base + (size_t)(r + 3) * ld * ES; \
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                        \
      __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;                                         \
      size_t k = 0;                                                                      \
      for (; k + 16 <= cols; k += 16) {                                                  \
        __m256 xa = _mm256_loadu_ps(x + k), xb = _mm256_loadu_ps(x + k + 8);             \
        a0 = _mm256_fmadd_ps(LD8(w0, k), xa, a0); b0 = _mm256_fmadd_ps(LD8(w0, k + 8), xb, b0); \
        a1 = _mm256_fmadd_ps(LD8(w1, k), xa, a1); b1 = _mm256_fmadd_ps(LD8(w1, k + 8), xb, b1); \
        a2 = _mm256_fmadd_ps(LD8(w2, k), xa, a2); b2 = _mm256_fmadd_ps(LD8(w2, k + 8), xb, b2); \
        a3 = _mm256_fmadd_ps(LD8(w3, k), xa, a3); b3 = _mm256_fmadd_ps(LD8(w3, k + 8), xb, b3); \
      }                                                                                  \
      for (; k + 8 <= cols; k += 8) {                                                    \
        __m256 xa = _mm256_loadu_ps(x + k);                                              \
        a0 = _mm256_fmadd_ps(LD8(w0, k), xa, a0); a1 = _mm256_fmadd_ps(LD8(w1, k), xa, a1); \
        a2 = _mm256_fmadd_ps(LD8(w2, k), xa, a2); a3 = _mm256_fmadd_ps(LD8(w3, k), xa, a3); \
      }                                                                                  \
      float s[4] = {moesz_hsum8(_mm256_add_ps(a0, b0)), moesz_hsum8(_mm256_add_ps(a1, b1)),          \
                    moesz_hsum8(_mm256_add_ps(a2, b2)), moesz_hsum8(_mm256_add_ps(a3, b3))};         \
      const void *wr[4] = {w0, w1, w2, w3};                                              \
      for (; k < cols; k++)                                                              \
        for (int i = 0; i < 4; i++) s[i] += ld1(w->dtype, wr[i], k) * x[k];              \
      for (int i = 0; i < 4; i++) {                                                      \
        float *o = y + (r - r0) + i;                                                     \
        *o = acc ? *o + s[i] : s[i];                                                     \
      }                                                                                  \
    }                                                                                    \
    for (; r < r1; r++) {                                                                \
      const void *w0 = base + (size_t)r * ld * ES;                                       \
      __m256 a0 = _mm256_setzero_ps();                                                   \
      size_t k = 0;                                                                      \
      for (; k + 8 <= cols; k += 8) a0 = _mm256_fmadd_ps(LD8(w0, k), _mm256_loadu_ps(x + k), a0); \
      float s = moesz_hsum8(a0);                                                               \
      for (; k < cols; k++) s += ld1(w->dtype, w0, k) * x[k];                            \
      float *o = y + (r - r0);                                                           \
      *o = acc ? *o + s : s;                                                             \
    }                                                                                    \
  }
MV_AVX(mv_avx_f32, ld8_f32, 4)

/* x split for mv_avx_bf16_eo: xs = [x0 x2 .. x14 | x1 x3 .. x15] per block of 16. */
static void split_even_odd(const float *x, size_t cols, float *xs) {
  for (size_t b = 0; b < cols / 16; b++)
    for (int i = 0; i < 8; i++) {
      xs[b * 16 + (size_t)i] = x[b * 16 + 2 * (size_t)i];
      xs[b * 16 + 8 + (size_t)i] = x[b * 16 + 2 * (size_t)i + 1];
    }
}

/* BF16 matvec with one 256-bit load per 16 weights: the even elements are the
 * low halves of the 32-bit lanes (shift left 16), the odd ones the high halves
 * (mask), against x split by split_even_odd. One row at a time, 32 columns per
 * step: with 4 KiB rows (2048 BF16) a single sequential stream per thread
 * measured 14% faster in the model than 4 interleaved row streams (F32, 8 KiB
 * rows, prefers the 4-row kernel above). cols % 16 tail in scalar. */
TGT static void mv_avx_bf16_eo(const moesz_matview *w, int64_t r0, int64_t r1, const float *x,
                               const float *xs, float *y, int acc) {
  size_t cols = (size_t)w->cols, ld = (size_t)w->ld, n16 = cols / 16 * 16, n32 = cols / 32 * 32;
  const uint16_t *base = w->data;
  const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
  for (int64_t r = r0; r < r1; r++) {
    const uint16_t *w0 = base + (size_t)r * ld;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
    size_t k = 0;
    for (; k < n32; k += 32) {
      __m256i v = _mm256_loadu_si256((const __m256i *)(w0 + k));
      __m256i u = _mm256_loadu_si256((const __m256i *)(w0 + k + 16));
      a0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), _mm256_loadu_ps(xs + k), a0);
      b0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v, hi)), _mm256_loadu_ps(xs + k + 8), b0);
      a1 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(u, 16)), _mm256_loadu_ps(xs + k + 16), a1);
      b1 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(u, hi)), _mm256_loadu_ps(xs + k + 24), b1);
    }
    if (k < n16) {
      __m256i v = _mm256_loadu_si256((const __m256i *)(w0 + k));
      a0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), _mm256_loadu_ps(xs + k), a0);
      b0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v, hi)), _mm256_loadu_ps(xs + k + 8), b0);
    }
    float s = moesz_hsum8(_mm256_add_ps(_mm256_add_ps(a0, b0), _mm256_add_ps(a1, b1)));
    for (k = n16; k < cols; k++) s += moesz_bf16_to_f32(w0[k]) * x[k];
    float *o = y + (r - r0);
    *o = acc ? *o + s : s;
  }
}
MV_AVX(mv_avx_f16, ld8_f16, 2)

/* Micro-kernel: R packed rows (stride c) x T tokens (stride ldx). */
#define MK_AVX(R, T)                                                                     \
  TGT static void mk_##R##x##T(const float *p, const float *x, size_t ldx, size_t c,     \
                               float *y, size_t ldy, int acc) {                          \
    __m256 a[R][T];                                                                      \
    _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)                                  \
      _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) a[i][j] = _mm256_setzero_ps(); \
    size_t k = 0;                                                                        \
    for (; k + 8 <= c; k += 8) {                                                         \
      __m256 wv[R];                                                                      \
      _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) wv[i] = _mm256_loadu_ps(p + (size_t)i * c + k); \
      _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) {                              \
        __m256 xv = _mm256_loadu_ps(x + (size_t)j * ldx + k);                            \
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) a[i][j] = _mm256_fmadd_ps(wv[i], xv, a[i][j]); \
      }                                                                                  \
    }                                                                                    \
    for (int i = 0; i < R; i++)                                                          \
      for (int j = 0; j < T; j++) {                                                      \
        float s = moesz_hsum8(a[i][j]);                                                        \
        for (size_t kk = k; kk < c; kk++) s += p[(size_t)i * c + kk] * x[(size_t)j * ldx + kk]; \
        float *o = y + (size_t)j * ldy + i;                                              \
        *o = acc ? *o + s : s;                                                           \
      }                                                                                  \
  }
MK_AVX(4, 3)
MK_AVX(4, 2)
MK_AVX(4, 1)
MK_AVX(1, 3)
MK_AVX(1, 1)

static void mm_avx(const float *p, int nr, const float *x, size_t ldx, int nt, size_t c,
                   float *y, size_t ldy, int acc) {
  int r = 0;
  for (; r + 4 <= nr; r += 4) {
    int t = 0;
    for (; t + 3 <= nt; t += 3)
      mk_4x3(p + (size_t)r * c, x + (size_t)t * ldx, ldx, c, y + (size_t)t * ldy + r, ldy, acc);
    if (nt - t == 2)   /* two tokens left: one pass over the rows, not two */
      mk_4x2(p + (size_t)r * c, x + (size_t)t * ldx, ldx, c, y + (size_t)t * ldy + r, ldy, acc);
    else if (t < nt)
      mk_4x1(p + (size_t)r * c, x + (size_t)t * ldx, ldx, c, y + (size_t)t * ldy + r, ldy, acc);
  }
  for (; r < nr; r++) {
    int t = 0;
    for (; t + 3 <= nt; t += 3)
      mk_1x3(p + (size_t)r * c, x + (size_t)t * ldx, ldx, c, y + (size_t)t * ldy + r, ldy, acc);
    for (; t < nt; t++)
      mk_1x1(p + (size_t)r * c, x + (size_t)t * ldx, ldx, c, y + (size_t)t * ldy + r, ldy, acc);
  }
}

/* The packed path's outer-product form (AVX2): the tile p [nr, c] (nr <= CH)
 * transposed once into pt [c, CH] (k-major, rows zero padded to CH), then
 * per column k two 8-row loads of pt and one broadcast of each token's x[k]
 * feed 2 x T accumulators of 8 rows x 1 token: the tile and T token rows are
 * read as sequential streams (the 4x3 inner-product kernel above streams 4 rows
 * and 3 tokens through L2 for every 96 multiply-adds and measured at about a
 * third of the FMA units' rate in prompts). Each output is one sequential f32
 * sum over k. */
TGT static inline __m256 ld8_bf16(const void *p, size_t k) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + k))), 16));
}
/* Rows of dtype DT at p (nr <= CH of them, ld elements apart, row-major) into
 * pt [c, CH] (k-major, rows zero padded to CH), widened on the way: BF16 and
 * F16 rows are read once, not converted into a row-major tile first. */
#define TILE_KMAJOR(NAME, LD8, DT)                                                                \
  TGT static void NAME(const void *p, size_t ld, int nr, size_t c, float *pt) {                   \
    size_t es = moesz_dtype_size(DT), c8 = c / 8 * 8;                                             \
    for (int h = 0; h < CH; h += 8) {                                                             \
      const char *row[8];                                                                         \
      for (int i = 0; i < 8; i++) row[i] = h + i < nr ? (const char *)p + (size_t)(h + i) * ld * es : NULL; \
      for (size_t k = 0; k < c8; k += 8) {                                                        \
        __m256 r[8];                                                                              \
        for (int i = 0; i < 8; i++) r[i] = row[i] ? LD8(row[i], k) : _mm256_setzero_ps();         \
        moesz_tr8(r);                                                                             \
        for (int j = 0; j < 8; j++) _mm256_store_ps(pt + (k + (size_t)j) * CH + h, r[j]);         \
      }                                                                                           \
      for (size_t k = c8; k < c; k++)                                                             \
        for (int i = 0; i < 8; i++) pt[k * CH + (size_t)(h + i)] = row[i] ? ld1(DT, row[i], k) : 0.0f; \
    }                                                                                             \
  }
TILE_KMAJOR(tile_kmajor, ld8_f32, MOESZ_DT_F32)
TILE_KMAJOR(tile_kmajor_bf16, ld8_bf16, MOESZ_DT_BF16)
TILE_KMAJOR(tile_kmajor_f16, ld8_f16, MOESZ_DT_F16)

#define OP_AVX(T)                                                                        \
  TGT static void op_##T(const float *pt, size_t c, const float *x, size_t ldx, float *y, size_t ldy, \
                         int nr, int acc) {                                              \
    __m256 a0[T], a1[T];                                                                 \
    const float *xr[T];                                                                  \
    _Pragma("GCC unroll 6") for (int j = 0; j < T; j++) {                                \
      a0[j] = a1[j] = _mm256_setzero_ps();                                               \
      xr[j] = x + (size_t)j * ldx;                                                       \
    }                                                                                    \
    for (size_t k = 0; k < c; k++) {                                                     \
      __m256 w0 = _mm256_load_ps(pt + k * CH), w1 = _mm256_load_ps(pt + k * CH + 8);     \
      _Pragma("GCC unroll 6") for (int j = 0; j < T; j++) {                              \
        __m256 xb = _mm256_broadcast_ss(xr[j] + k);                                      \
        a0[j] = _mm256_fmadd_ps(w0, xb, a0[j]);                                          \
        a1[j] = _mm256_fmadd_ps(w1, xb, a1[j]);                                          \
      }                                                                                  \
    }                                                                                    \
    _Pragma("GCC unroll 6") for (int j = 0; j < T; j++) {                                \
      float t[CH], *o = y + (size_t)j * ldy;                                             \
      _mm256_storeu_ps(t, a0[j]);                                                        \
      _mm256_storeu_ps(t + 8, a1[j]);                                                    \
      for (int i = 0; i < nr; i++) o[i] = acc ? o[i] + t[i] : t[i];                      \
    }                                                                                    \
  }
OP_AVX(6)
OP_AVX(5)
OP_AVX(4)
OP_AVX(3)
OP_AVX(2)
OP_AVX(1)

/* nr (<= CH) rows of the k-major tile pt times nt tokens, 6 at a time. */
static void mm_op(const float *pt, int nr, const float *x, size_t ldx, int nt, size_t c, float *y, size_t ldy,
                  int acc) {
  int t = 0;
  for (; t + 6 <= nt; t += 6) op_6(pt, c, x + (size_t)t * ldx, ldx, y + (size_t)t * ldy, ldy, nr, acc);
  const float *xt = x + (size_t)t * ldx;
  float *yt = y + (size_t)t * ldy;
  switch (nt - t) {
  case 5: op_5(pt, c, xt, ldx, yt, ldy, nr, acc); break;
  case 4: op_4(pt, c, xt, ldx, yt, ldy, nr, acc); break;
  case 3: op_3(pt, c, xt, ldx, yt, ldy, nr, acc); break;
  case 2: op_2(pt, c, xt, ldx, yt, ldy, nr, acc); break;
  case 1: op_1(pt, c, xt, ldx, yt, ldy, nr, acc); break;
  default: break;
  }
}

/* Small-batch AVX2 kernels, one weight row against T tokens. F16 mirrors
 * MV_AVX: rows of a full block of 4 (four = 1) sum 16 columns a step in two
 * chains, the last rows % 4 rows 8 columns in one. BF16 mirrors
 * mv_avx_bf16_eo against each token's split x (xs + t * ldxs). */
#define SB_AVX(NAME, LD8, T)                                                             \
  TGT static void NAME##_##T(const void *w0, moesz_dtype dt, size_t cols, int four, const float *x, \
                             size_t ldx, float *y, size_t ldy, int acc) {                \
    __m256 a[T], b[T];                                                                   \
    float s[T];                                                                          \
    _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) a[j] = b[j] = _mm256_setzero_ps(); \
    size_t k = 0;                                                                        \
    if (four) {                                                                          \
      for (; k + 16 <= cols; k += 16) {                                                  \
        __m256 wa = LD8(w0, k), wb = LD8(w0, k + 8);                                     \
        _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) {                            \
          a[j] = _mm256_fmadd_ps(wa, _mm256_loadu_ps(x + (size_t)j * ldx + k), a[j]);    \
          b[j] = _mm256_fmadd_ps(wb, _mm256_loadu_ps(x + (size_t)j * ldx + k + 8), b[j]); \
        }                                                                                \
      }                                                                                  \
      for (; k + 8 <= cols; k += 8) {                                                    \
        __m256 wa = LD8(w0, k);                                                          \
        _Pragma("GCC unroll 4") for (int j = 0; j < T; j++)                              \
          a[j] = _mm256_fmadd_ps(wa, _mm256_loadu_ps(x + (size_t)j * ldx + k), a[j]);    \
      }                                                                                  \
      _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) s[j] = moesz_hsum8(_mm256_add_ps(a[j], b[j])); \
    } else {                                                                             \
      for (; k + 8 <= cols; k += 8) {                                                    \
        __m256 wa = LD8(w0, k);                                                          \
        _Pragma("GCC unroll 4") for (int j = 0; j < T; j++)                              \
          a[j] = _mm256_fmadd_ps(wa, _mm256_loadu_ps(x + (size_t)j * ldx + k), a[j]);    \
      }                                                                                  \
      _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) s[j] = moesz_hsum8(a[j]);      \
    }                                                                                    \
    _Pragma("GCC unroll 8") for (int j = 0; j < T; j++) {                                \
      for (size_t kk = k; kk < cols; kk++) s[j] += ld1(dt, w0, kk) * x[(size_t)j * ldx + kk]; \
      float *o = y + (size_t)j * ldy;                                                    \
      *o = acc ? *o + s[j] : s[j];                                                       \
    }                                                                                    \
  }
SB_AVX(sb_f16, ld8_f16, 4)
SB_AVX(sb_f16, ld8_f16, 3)
SB_AVX(sb_f16, ld8_f16, 2)
SB_AVX(sb_f16, ld8_f16, 1)

#define SB_EO(T)                                                                         \
  TGT static void sb_eo_##T(const uint16_t *w0, size_t cols, const float *x, size_t ldx,  \
                            const float *xs, size_t ldxs, float *y, size_t ldy, int acc) { \
    size_t n16 = cols / 16 * 16, n32 = cols / 32 * 32;                                   \
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);                              \
    __m256 a0[T], b0[T], a1[T], b1[T];                                                   \
    _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) a0[j] = b0[j] = a1[j] = b1[j] = _mm256_setzero_ps(); \
    size_t k = 0;                                                                        \
    for (; k < n32; k += 32) {                                                           \
      __m256i v = _mm256_loadu_si256((const __m256i *)(w0 + k));                         \
      __m256i u = _mm256_loadu_si256((const __m256i *)(w0 + k + 16));                    \
      __m256 ve = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));                         \
      __m256 vo = _mm256_castsi256_ps(_mm256_and_si256(v, hi));                          \
      __m256 ue = _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));                         \
      __m256 uo = _mm256_castsi256_ps(_mm256_and_si256(u, hi));                          \
      _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) {                              \
        const float *q = xs + (size_t)j * ldxs + k;                                      \
        a0[j] = _mm256_fmadd_ps(ve, _mm256_loadu_ps(q), a0[j]);                          \
        b0[j] = _mm256_fmadd_ps(vo, _mm256_loadu_ps(q + 8), b0[j]);                      \
        a1[j] = _mm256_fmadd_ps(ue, _mm256_loadu_ps(q + 16), a1[j]);                     \
        b1[j] = _mm256_fmadd_ps(uo, _mm256_loadu_ps(q + 24), b1[j]);                     \
      }                                                                                  \
    }                                                                                    \
    if (k < n16) {                                                                       \
      __m256i v = _mm256_loadu_si256((const __m256i *)(w0 + k));                         \
      __m256 ve = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));                         \
      __m256 vo = _mm256_castsi256_ps(_mm256_and_si256(v, hi));                          \
      _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) {                              \
        const float *q = xs + (size_t)j * ldxs + k;                                      \
        a0[j] = _mm256_fmadd_ps(ve, _mm256_loadu_ps(q), a0[j]);                          \
        b0[j] = _mm256_fmadd_ps(vo, _mm256_loadu_ps(q + 8), b0[j]);                      \
      }                                                                                  \
    }                                                                                    \
    _Pragma("GCC unroll 8") for (int j = 0; j < T; j++) {                                \
      float s = moesz_hsum8(_mm256_add_ps(_mm256_add_ps(a0[j], b0[j]), _mm256_add_ps(a1[j], b1[j]))); \
      for (k = n16; k < cols; k++) s += moesz_bf16_to_f32(w0[k]) * x[(size_t)j * ldx + k]; \
      float *o = y + (size_t)j * ldy;                                                    \
      *o = acc ? *o + s : s;                                                             \
    }                                                                                    \
  }
SB_EO(3)
SB_EO(2)
SB_EO(1)

/* Rows r0..r1 times n tokens with the kernels above (xs: the tokens' split x
 * for BF16, stride ldxs). */
TGT static void sb_avx(const moesz_matview *w, int64_t r0, int64_t r1, const float *x, size_t ldx,
                       const float *xs, size_t ldxs, int n, float *y, size_t ldy, int acc) {
  size_t cols = (size_t)w->cols, es = moesz_dtype_size(w->dtype);
  int64_t full = w->rows / 4 * 4;   /* rows below this sit in a 4-row block of MV_AVX */
  for (int64_t r = r0; r < r1; r++) {
    const void *w0 = (const char *)w->data + (size_t)r * (size_t)w->ld * es;
    float *yr = y + (r - r0);
    int four = r < full;
    if (w->dtype == MOESZ_DT_BF16) {
      int t = 0;
      for (; t + 3 <= n; t += 3)
        sb_eo_3(w0, cols, x + (size_t)t * ldx, ldx, xs + (size_t)t * ldxs, ldxs, yr + (size_t)t * ldy, ldy, acc);
      if (n - t == 2) sb_eo_2(w0, cols, x + (size_t)t * ldx, ldx, xs + (size_t)t * ldxs, ldxs, yr + (size_t)t * ldy, ldy, acc);
      else if (n - t == 1) sb_eo_1(w0, cols, x + (size_t)t * ldx, ldx, xs + (size_t)t * ldxs, ldxs, yr + (size_t)t * ldy, ldy, acc);
      continue;
    }
    int t = 0;
    const float *xt = x;
    float *yt = yr;
#define SB_CALL(NAME)                                                                    \
    for (; t + 4 <= n; t += 4, xt += 4 * ldx, yt += 4 * ldy) NAME##_4(w0, w->dtype, cols, four, xt, ldx, yt, ldy, acc); \
    switch (n - t) {                                                                     \
    case 3: NAME##_3(w0, w->dtype, cols, four, xt, ldx, yt, ldy, acc); break;            \
    case 2: NAME##_2(w0, w->dtype, cols, four, xt, ldx, yt, ldy, acc); break;            \
    case 1: NAME##_1(w0, w->dtype, cols, four, xt, ldx, yt, ldy, acc); break;            \
    default: break;                                                                      \
    }
    SB_CALL(sb_f16)
#undef SB_CALL
  }
}

/* AVX-512 (F, BW): the F32 matvec. Same sums as the AVX2 kernel up to
 * summation order. BF16 rows take the AVX2 kernels (mv_avx_bf16_eo, sb_avx)
 * on AVX-512 CPUs too: on Zen 4 the BF16 bench model (bench/infer_vs_llamacpp.sh)
 * decoded at 40 tok/s on one thread against 35 for a 512-bit copy of
 * mv_avx_bf16_eo and 29 for 512-bit zero-extension, and a 512-bit small-batch
 * kernel took the same time as sb_avx (2-16 tokens, build/bench/infer_kernels). */
#define TGT512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw")))
/* F32, one row at a time (a single sequential stream per thread), 64 columns
 * a step in four chains: on Zen 4 the F32 bench model decoded at 19.6-20.0
 * tok/s on one thread against 13.5-13.7 with four interleaved row streams. */
TGT512 static void mv512_f32(const moesz_matview *w, int64_t r0, int64_t r1, const float *x, float *y, int acc) {
  size_t cols = (size_t)w->cols, ld = (size_t)w->ld, n16 = cols / 16 * 16, n64 = cols / 64 * 64;
  const float *base = w->data;
  for (int64_t r = r0; r < r1; r++) {
    const float *w0 = base + (size_t)r * ld;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t k = 0;
    for (; k < n64; k += 64) {
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + k), _mm512_loadu_ps(x + k), a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + k + 16), _mm512_loadu_ps(x + k + 16), a1);
      a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + k + 32), _mm512_loadu_ps(x + k + 32), a2);
      a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + k + 48), _mm512_loadu_ps(x + k + 48), a3);
    }
    for (; k < n16; k += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + k), _mm512_loadu_ps(x + k), a0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    for (; k < cols; k++) s += w0[k] * x[k];
    float *o = y + (r - r0);
    *o = acc ? *o + s : s;
  }
}

TGT static float dot_avx(const float *a, const float *b, int n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0;
  int k = 0;
  for (; k + 16 <= n; k += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), s1);
  }
  for (; k + 8 <= n; k += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
  float s = moesz_hsum8(_mm256_add_ps(s0, s1));
  for (; k < n; k++) s += a[k] * b[k];
  return s;
}

TGT static void axpy_avx(float *y, float a, const float *x, int n) {
  __m256 av = _mm256_set1_ps(a);
  int k = 0;
  for (; k + 8 <= n; k += 8)
    _mm256_storeu_ps(y + k, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + k), _mm256_loadu_ps(y + k)));
  for (; k < n; k++) y[k] += a * x[k];
}
#endif

static float dot_scalar(const float *a, const float *b, int n) {
  float s = 0;
  for (int k = 0; k < n; k++) s += a[k] * b[k];
  return s;
}

/* ---------------------------------------------------------- linear driver */

#define MAXJ 256

typedef struct {
  moesz_kctx *c;
  const moesz_kjob *jobs;
  int njobs;
  size_t first[MAXJ + 1];   /* task index of each job's first task */
  int64_t rchunk[MAXJ];      /* rows per task */
  int64_t nrch[MAXJ];        /* row chunks per job */
} lin_ctx;

/* 1 if job jb takes the small-batch path: 2..sb_max tokens (at most CH: the
 * split x of every token fits the scratch) over row-major BF16/F16 rows. F32
 * rows keep the packed path, which multiplies them where they lie 4 rows x 3
 * tokens at a time and measured faster (bench/results/serve.md). */
static int small_batch(const moesz_kctx *c, const moesz_kjob *jb) {
  moesz_dtype dt = jb->w.dtype;
  return jb->n > 1 && jb->n <= c->sb_max && jb->n <= CH && !jb->w.transposed &&
         (dt == MOESZ_DT_BF16 || dt == MOESZ_DT_F16);
}

/* Rows r0..r1 of a small-batch job (thread tid). */
static void sb_rows(moesz_kctx *c, const moesz_kjob *jb, int64_t r0, int64_t r1, int tid) {
  const moesz_matview *w = &jb->w;
  float *y = jb->y + r0;
#if MOESZ_X86
  if (c->simd) {
    size_t cols = (size_t)w->cols;
    const float *xs = NULL;
    if (w->dtype == MOESZ_DT_BF16) {
      /* the tokens' split x, reused by this thread for every task of the call on the same x */
      uint64_t key = c->gen | (1ull << 62), shape = ((uint64_t)jb->n << 40) ^ (uint64_t)jb->ldx;
      if (c->memo_gen[tid] != key || c->memo_x[tid] != jb->x || c->memo_shape[tid] != shape) {
        for (int t = 0; t < jb->n; t++)
          split_even_odd(jb->x + (size_t)t * jb->ldx, cols, c->scratch[tid] + (size_t)t * cols);
        c->memo_gen[tid] = key;
        c->memo_x[tid] = jb->x;
        c->memo_shape[tid] = shape;
      }
      xs = c->scratch[tid];
    }
    sb_avx(w, r0, r1, jb->x, jb->ldx, xs, cols, jb->n, y, jb->ldy, jb->accumulate);
    return;
  }
#endif
  sb_scalar(w, r0, r1, jb->x, jb->ldx, jb->n, y, jb->ldy, jb->accumulate);
}

/* 1 if job jb takes the AVX512_BF16 path (kctx.bf16x, row-major BF16 rows, a CPU that has it, and
 * at least BF16X_MIN tokens: one token streams its rows faster through the exact matvec, Zen 4
 * `build/bench/infer_kernels 8192 2048 64 2`: 8.3 against 6.5 G weights/s a thread) */
#define BF16X_MIN 2
static int bf16x_job(const moesz_kctx *c, const moesz_kjob *jb) {
  return c->bf16x && c->dpbf16 && jb->w.dtype == MOESZ_DT_BF16 && !jb->w.transposed && jb->n >= BF16X_MIN;
}

#if MOESZ_X86
/* kctx.bf16x: rows r0..r1 of a BF16 job against token block tb (all tokens
 * of a one-token or small-batch job, whose tasks cover every token) with x
 * rounded to BF16 in this thread's scratch, kept for every task of the call
 * on the same block. 0 if the scratch cannot hold the block (the caller then
 * takes the exact path). */
static int bf16x_rows(moesz_kctx *c, const moesz_kjob *jb, int64_t r0, int64_t r1, int tb, int tid) {
  int t0 = tb * TB, t1 = t0 + TB < jb->n ? t0 + TB : jb->n;
  size_t cols = (size_t)jb->w.cols, ldb = moesz_kx_bf16_ld(cols);
  if ((size_t)(t1 - t0) * ldb * sizeof(uint16_t) > c->scratch_floats * sizeof(float)) return 0;
  const float *x = jb->x + (size_t)t0 * jb->ldx;
  uint16_t *xb = (uint16_t *)c->scratch[tid];
  uint64_t key = c->gen | (1ull << 61), shape = ((uint64_t)(t1 - t0) << 40) ^ (uint64_t)jb->ldx;
  if (c->memo_gen[tid] != key || c->memo_x[tid] != x || c->memo_shape[tid] != shape) {
    c->x_to_bf16(x, jb->ldx, t1 - t0, cols, xb, ldb);
    c->memo_gen[tid] = key;
    c->memo_x[tid] = x;
    c->memo_shape[tid] = shape;
  }
  c->bf16_rows((const uint16_t *)jb->w.data + (size_t)r0 * (size_t)jb->w.ld, (size_t)jb->w.ld, cols,
               (int)(r1 - r0), xb, ldb, t1 - t0, jb->y + (size_t)t0 * jb->ldy + r0, jb->ldy, jb->accumulate);
  return 1;
}
#endif

static void lin_task(void *vctx, size_t ti, int tid) {
  lin_ctx *L = vctx;
  int j = 0;
  while (j + 1 < L->njobs && L->first[j + 1] <= ti) j++;
  const moesz_kjob *jb = &L->jobs[j];
  size_t local = ti - L->first[j];
  int64_t rc = L->rchunk[j];
  int64_t ri = (int64_t)(local % (size_t)L->nrch[j]);
  int tb = (int)(local / (size_t)L->nrch[j]);
  int64_t r0 = ri * rc, r1 = r0 + rc;
  if (r1 > jb->w.rows) r1 = jb->w.rows;
  const moesz_matview *w = &jb->w;
  int simd = L->c->simd;
  if (w->dtype == MOESZ_VIEW_CL && L->c->cl_act == 2 && simd && !L->c->no_int && jb->n >= CL8_MIN) {
    /* 8-bit x, several tokens: the 8-bit tile (kernels_cl.c); its x8 stays in this thread's scratch
     * for every task of the call on the same x */
    moesz_kctx *c = L->c;
    uint64_t key = c->gen | (1ull << 61), shape = ((uint64_t)jb->n << 40) ^ (uint64_t)jb->ldx;
    int have = c->memo_gen[tid] == key && c->memo_x[tid] == jb->x && c->memo_shape[tid] == shape;
    int done = moesz_k_cl8_rows(w->data, r0, r1, jb->x, jb->ldx, jb->n, jb->y + r0, jb->ldy, jb->accumulate,
                                c->scratch[tid], c->scratch_floats * sizeof(float), have, simd);
    c->memo_gen[tid] = done == 2 ? key : 0;
    c->memo_x[tid] = done == 2 ? jb->x : NULL;
    c->memo_shape[tid] = shape;
    if (done) return;
  }
  if (w->dtype == MOESZ_VIEW_CL && jb->n < CL_TILE_MIN) {
    /* fused: the codes are multiplied where they lie (kernels_cl.c) */
    int t0 = jb->n == 1 ? 0 : tb * TB, t1 = jb->n == 1 ? 1 : t0 + TB;
    if (t1 > jb->n) t1 = jb->n;
    moesz_kctx *c = L->c;
    int use_scr = !c->no_int && moesz_k_cl_scratch_bytes(w->cols) <= c->scratch_floats * sizeof(float);
    /* the tokens' split x stays in this thread's scratch for every task of the call on the same x */
    uint64_t key = c->gen | (1ull << 63), shape = ((uint64_t)jb->n << 40) ^ (uint64_t)jb->ldx;
    int have = c->memo_gen[tid] == key && c->memo_x[tid] == jb->x && c->memo_shape[tid] == shape;
    int holds = moesz_k_cl_rows(w->data, r0, r1, jb->x + (size_t)t0 * jb->ldx, jb->ldx, t1 - t0,
                                jb->y + (size_t)t0 * jb->ldy + r0, jb->ldy, jb->accumulate, simd, c->cl_act,
                                use_scr ? c->scratch[tid] : NULL, have);
    c->memo_gen[tid] = holds ? key : 0;
    c->memo_x[tid] = holds ? jb->x : NULL;
    c->memo_shape[tid] = shape;
    return;
  }
#if MOESZ_X86
  if (bf16x_job(L->c, jb) && bf16x_rows(L->c, jb, r0, r1, tb, tid)) return;
#endif
  if (w->dtype == MOESZ_VIEW_MXFP4 && jb->n == 1) {   /* gpt-oss MXFP4 (kernels_oss.c) */
    moesz_k_mxfp4_rows(w->data, r0, r1, jb->x, jb->y + r0, jb->accumulate, simd);
    return;
  }
  if (jb->n == 1 && !w->transposed) {
    float *y = jb->y + r0;
#if MOESZ_X86
    if (simd >= 2 && w->dtype == MOESZ_DT_F32) {
      mv512_f32(w, r0, r1, jb->x, y, jb->accumulate);
      return;
    }
    if (simd) {
      if (w->dtype == MOESZ_DT_F32) mv_avx_f32(w, r0, r1, jb->x, y, jb->accumulate);
      else if (w->dtype == MOESZ_DT_BF16) {
        /* the split x is reused by this thread for every task of the call on the same x */
        moesz_kctx *c = L->c;
        if (c->memo_gen[tid] != c->gen || c->memo_x[tid] != jb->x) {
          split_even_odd(jb->x, (size_t)w->cols, c->scratch[tid]);
          c->memo_gen[tid] = c->gen;
          c->memo_x[tid] = jb->x;
        }
        mv_avx_bf16_eo(w, r0, r1, jb->x, c->scratch[tid], y, jb->accumulate);
      }
      else mv_avx_f16(w, r0, r1, jb->x, y, jb->accumulate);
      return;
    }
#endif
    mv_scalar(w, r0, r1, jb->x, y, jb->accumulate);
    return;
  }
  if (small_batch(L->c, jb)) {
    sb_rows(L->c, jb, r0, r1, tid);
    return;
  }
  /* packed path: tile rows r0..r1 as f32, tokens in blocks of TB */
  float *pk = L->c->scratch[tid];
  L->c->memo_x[tid] = NULL;   /* scratch no longer holds a split x */
  size_t cols = (size_t)w->cols;
  /* the tile is packed once for every token, in blocks of TB (a task of the AVX512_BF16 plan that
   * falls back here: its own block) */
  int ta = 0, tz = jb->n;
  if (bf16x_job(L->c, jb)) { ta = tb * TB; tz = ta + TB < jb->n ? ta + TB : jb->n; }
#if MOESZ_X86
  /* AVX2: the tile transposed once (k-major, after the row-major tile in the scratch, 32-byte aligned;
   * row-major F32/BF16/F16 rows straight from the weights), then the outer-product kernel. On
   * AVX-512 CPUs too for BF16/F16 rows (Zen 4, the BF16 bench model's 64-token prompt: 95-107 ->
   * 123-125 tok/s on one thread, 198 -> 206 on two); F32 rows there are used in place by the 4x6
   * AVX-512 kernel (119.5 against 115 tok/s with the tile) */
  size_t pt_off = ((size_t)CH * cols + 7) / 8 * 8;
  int dense = !w->transposed && (w->dtype == MOESZ_DT_BF16 || w->dtype == MOESZ_DT_F16 || w->dtype == MOESZ_DT_F32);
  int km = simd == 1 || (simd >= 2 && dense && w->dtype != MOESZ_DT_F32);
  if (km && (dense || tz - ta >= KM_UNPACKED_MIN) && pt_off + (size_t)CH * cols <= L->c->scratch_floats) {
    float *pt = pk + pt_off;
    int nr = (int)(r1 - r0);
    const char *rows = dense ? (const char *)w->data + (size_t)r0 * (size_t)w->ld * moesz_dtype_size(w->dtype) : NULL;
    if (dense && w->dtype == MOESZ_DT_BF16) tile_kmajor_bf16(rows, (size_t)w->ld, nr, cols, pt);
    else if (dense && w->dtype == MOESZ_DT_F16) tile_kmajor_f16(rows, (size_t)w->ld, nr, cols, pt);
    else if (dense) tile_kmajor(rows, (size_t)w->ld, nr, cols, pt);
    else {
      if (w->dtype == MOESZ_VIEW_CL) moesz_k_cl_unpack(w->data, r0, r1, pk, simd);
      else if (w->dtype == MOESZ_VIEW_MXFP4) moesz_k_mxfp4_unpack(w->data, r0, r1, pk);
      else pack_rows(w, r0, r1, pk);
      tile_kmajor(pk, cols, nr, cols, pt);
    }
    mm_op(pt, nr, jb->x + (size_t)ta * jb->ldx, jb->ldx, tz - ta, cols, jb->y + (size_t)ta * jb->ldy + r0, jb->ldy,
          jb->accumulate);
    return;
  }
#endif
  const float *p;
  if (w->dtype == MOESZ_VIEW_CL) {
    moesz_k_cl_unpack(w->data, r0, r1, pk, simd);
    p = pk;
  } else if (w->dtype == MOESZ_VIEW_MXFP4) {
    moesz_k_mxfp4_unpack(w->data, r0, r1, pk);
    p = pk;
  } else if (w->dtype == MOESZ_DT_F32 && !w->transposed) {
    p = (const float *)w->data + (size_t)r0 * (size_t)w->ld;
    if ((size_t)w->ld != cols) { pack_rows(w, r0, r1, pk); p = pk; }
  } else {
    pack_rows(w, r0, r1, pk);
    p = pk;
  }
  for (int t0 = ta; t0 < tz; t0 += TB) {
    int t1 = t0 + TB < tz ? t0 + TB : tz;
    const float *x = jb->x + (size_t)t0 * jb->ldx;
    float *y = jb->y + (size_t)t0 * jb->ldy + r0;
#if MOESZ_X86
    if (simd >= 2) { moesz_kx_mm_f32(p, (int)(r1 - r0), x, jb->ldx, t1 - t0, cols, y, jb->ldy, jb->accumulate); continue; }
    if (simd) { mm_avx(p, (int)(r1 - r0), x, jb->ldx, t1 - t0, cols, y, jb->ldy, jb->accumulate); continue; }
#endif
    mm_scalar(p, (int)(r1 - r0), x, jb->ldx, t1 - t0, cols, y, jb->ldy, jb->accumulate);
  }
}

/* Checks the jobs' views: MOESZ_OK, MOESZ_E_UNSUPPORTED or MOESZ_E_INTERNAL. */
static int lin_check(const moesz_kctx *c, const moesz_kjob *jobs, int njobs) {
  for (int j = 0; j < njobs; j++) {
    moesz_dtype dt = jobs[j].w.dtype;
    if (dt == MOESZ_VIEW_CL) {
      const moesz_cl *m = jobs[j].w.data;
      if (!m || m->rows != jobs[j].w.rows || m->cols != jobs[j].w.cols) return MOESZ_E_INTERNAL;
      if (jobs[j].n >= CL_TILE_MIN && jobs[j].w.cols * CH > (int64_t)c->scratch_floats) return MOESZ_E_INTERNAL;
      continue;
    }
    if (dt == MOESZ_VIEW_MXFP4) {
      const moesz_mxfp4_view *m = jobs[j].w.data;
      if (!m || m->rows != jobs[j].w.rows || m->cols != jobs[j].w.cols || m->cols % 32) return MOESZ_E_INTERNAL;
    } else if (dt != MOESZ_DT_F32 && dt != MOESZ_DT_BF16 && dt != MOESZ_DT_F16) return MOESZ_E_UNSUPPORTED;
    if (jobs[j].w.cols * CH > (int64_t)c->scratch_floats) return MOESZ_E_INTERNAL;
  }
  return MOESZ_OK;
}

/* Splits jobs[0..nj) (nj <= MAXJ) into tasks (L->first, rchunk, nrch); returns
 * their multiply-adds. The split depends on the jobs and c->nthreads only, so
 * moesz_k_linear and moesz_k_linear_on run the same tasks. */
static double lin_plan(moesz_kctx *c, const moesz_kjob *jobs, int nj, lin_ctx *L) {
  L->c = c;
  L->jobs = jobs;
  L->njobs = nj;
  L->first[0] = 0;
  for (int j = 0; j < nj; j++) {
    const moesz_kjob *jb = &jobs[j];
    int64_t rows = jb->w.rows, rc;
    size_t ntb = 1;
    if (jb->n <= 0 || rows <= 0) { L->rchunk[j] = 1; L->nrch[j] = 1; L->first[j + 1] = L->first[j]; continue; }
    if ((jb->n == 1 && !jb->w.transposed) || small_batch(c, jb) ||
        (jb->w.dtype == MOESZ_VIEW_CL && jb->n < CL_TILE_MIN)) {
      /* one token or a small batch: chunks of about 256 KiB of weights (so the last chunks of a region
       * are short and threads finish together), at least 4 tasks per thread,
       * at least 16 rows, a multiple of 4 */
      int64_t rb = jb->w.dtype == MOESZ_VIEW_CL ? jb->w.cols * 3 / 4 /* about 6 bits a weight */
                   : jb->w.dtype == MOESZ_VIEW_MXFP4 ? jb->w.cols * 17 / 32 /* 4.25 bits a weight */
                                                : jb->w.cols * (int64_t)moesz_dtype_size(jb->w.dtype);
      rc = (256 << 10) / (rb > 0 ? rb : 1);
      if (rc > rows / (4 * (int64_t)c->nthreads)) rc = rows / (4 * (int64_t)c->nthreads);
      rc = (rc + 3) / 4 * 4;
      if (rc < 16) rc = 16;
      if (c->nthreads == 1) rc = rows;
    } else {
      /* the packed path: a task packs a tile of CH rows once and multiplies it by every token;
       * the AVX512_BF16 path's tasks take one block of TB tokens each (the block's BF16 x is
       * kept per thread for the tasks of that block) */
      rc = CH;
      if (bf16x_job(c, jb)) ntb = (size_t)((jb->n + TB - 1) / TB);
    }
    L->rchunk[j] = rc;
    L->nrch[j] = (rows + rc - 1) / rc;
    L->first[j + 1] = L->first[j] + (size_t)L->nrch[j] * ntb;
  }
  double macs = 0;
  for (int j = 0; j < nj; j++) macs += (double)jobs[j].w.rows * (double)jobs[j].w.cols * (double)jobs[j].n;
  return macs;
}

int moesz_k_linear(moesz_kctx *c, const moesz_kjob *jobs, int njobs) {
  int rc = lin_check(c, jobs, njobs);
  if (rc) return rc;
  while (njobs > 0) {
    int nj = njobs > MAXJ ? MAXJ : njobs;
    c->gen++;
    lin_ctx L;
    double macs = lin_plan(c, jobs, nj, &L);
    /* jobs with no work have no tasks; lin_task's job search skips them.
     * Little work runs on the calling thread: waking the pool costs more. */
    if (macs < (double)c->serial_macs)
      for (size_t i = 0; i < L.first[nj]; i++) lin_task(&L, i, 0);
    else moesz_pool_run(c->pool, L.first[nj], lin_task, &L);
    jobs += nj;
    njobs -= nj;
  }
  return MOESZ_OK;
}

int moesz_k_linear_on(moesz_kctx *c, const moesz_kjob *jobs, int njobs, int tid) {
  if (tid < 0 || tid >= c->nthreads) return MOESZ_E_INTERNAL;
  int rc = lin_check(c, jobs, njobs);
  if (rc) return rc;
  while (njobs > 0) {
    int nj = njobs > MAXJ ? MAXJ : njobs;
    /* c->gen is shared by the threads of the region and stays as it is: the
     * thread's own memo is forgotten instead, so it spans this call only */
    c->memo_gen[tid] = 0;
    c->memo_x[tid] = NULL;
    lin_ctx L;
    lin_plan(c, jobs, nj, &L);
    for (size_t i = 0; i < L.first[nj]; i++) lin_task(&L, i, tid);
    c->memo_gen[tid] = 0;
    c->memo_x[tid] = NULL;
    jobs += nj;
    njobs -= nj;
  }
  return MOESZ_OK;
}

/* ------------------------------------------------------ elementwise ops */

void moesz_k_rmsnorm(float *out, size_t ldo, const float *x, size_t ldx, const float *w,
                     int n, int d, float eps) {
  for (int t = 0; t < n; t++) {
    const float *xi = x + (size_t)t * ldx;
    float *o = out + (size_t)t * ldo;
    double ss = 0;
    for (int i = 0; i < d; i++) ss += (double)xi[i] * (double)xi[i];
    float var = (float)(ss / d);
    float inv = 1.0f / sqrtf(var + eps);
    for (int i = 0; i < d; i++) {
      float v = xi[i] * inv;
      o[i] = w ? w[i] * v : v;
    }
  }
}

void moesz_k_rope(float *x, int nh, int hd, int pos, const float *inv_freq) {
  int half = hd / 2;
  for (int i = 0; i < half; i++) {
    float f = (float)pos * inv_freq[i];
    float cs = cosf(f), sn = sinf(f);
    for (int h = 0; h < nh; h++) {
      float *v = x + (size_t)h * hd;
      float a = v[i], b = v[i + half];
      v[i] = a * cs - b * sn;
      v[i + half] = b * cs + a * sn;
    }
  }
}

void moesz_k_softmax(float *x, int n) {
  if (n <= 0) return;
  float m = x[0];
  for (int i = 1; i < n; i++) if (x[i] > m) m = x[i];
  double s = 0;
  for (int i = 0; i < n; i++) { x[i] = expf(x[i] - m); s += x[i]; }
  float inv = (float)(1.0 / s);
  for (int i = 0; i < n; i++) x[i] *= inv;
}

void moesz_k_silu_mul(float *g, const float *u, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float v = g[i];
    g[i] = v / (1.0f + expf(-v)) * u[i];
  }
}

/* ------------------------------------------------------------ attention */

typedef struct {
  moesz_kctx *c;
  const float *q, *kc, *vc;
  size_t ldq, ldo;
  float *out;
  int pos0, n, nh, nkv, hd;
  float scale;
} att_ctx;

static void att_task(void *vctx, size_t ti, int tid) {
  att_ctx *A = vctx;
  int t = (int)(ti / (size_t)A->nh), h = (int)(ti % (size_t)A->nh);
  int g = h / (A->nh / A->nkv), hd = A->hd, p = A->pos0 + t;
  size_t kvw = (size_t)A->nkv * (size_t)hd;
  const float *q = A->q + (size_t)t * A->ldq + (size_t)h * hd;
  float *o = A->out + (size_t)t * A->ldo + (size_t)h * hd;
  float *s = A->c->scratch[tid];
  int simd = A->c->simd;
  for (int j = 0; j <= p; j++) {
    const float *k = A->kc + (size_t)j * kvw + (size_t)g * hd;
#if MOESZ_X86
    s[j] = (simd ? dot_avx(q, k, hd) : dot_scalar(q, k, hd)) * A->scale;
#else
    s[j] = dot_scalar(q, k, hd) * A->scale;
#endif
  }
  moesz_k_softmax(s, p + 1);
  memset(o, 0, (size_t)hd * sizeof(float));
  for (int j = 0; j <= p; j++) {
    const float *v = A->vc + (size_t)j * kvw + (size_t)g * hd;
#if MOESZ_X86
    if (simd) { axpy_avx(o, s[j], v, hd); continue; }
#endif
    for (int i = 0; i < hd; i++) o[i] += s[j] * v[i];
  }
}

void moesz_k_attention(moesz_kctx *c, const float *q, size_t ldq, const float *kc,
                       const float *vc, int pos0, int n, int nh, int nkv, int hd, float scale,
                       float *out, size_t ldo) {
  att_ctx A = {c, q, kc, vc, ldq, ldo, out, pos0, n, nh, nkv, hd, scale};
  size_t nt = (size_t)n * (size_t)nh;
  if (2.0 * (double)nt * (double)(pos0 + n) * (double)hd < (double)c->serial_macs)
    for (size_t i = 0; i < nt; i++) att_task(&A, i, 0);
  else moesz_pool_run(c->pool, nt, att_task, &A);
}

/* ------------------------------------------------- AVX-512 self-check */

/* The AVX-512 paths run only where the CPU has them, which the machines that
 * build and test this project may not: before a context uses them they are
 * checked once per process against the AVX2 kernels on small fixed inputs
 * (the F32 matvec, the packed path's micro-kernel, the 8-bit tile's VNNI
 * kernel),
 * and a disagreement keeps the context on AVX2; the AVX512_BF16 kernel is
 * checked against scalar sums of the same products and, failing, left unused
 * (kctx.dpbf16 = 0). Each answer is a fact
 * about this CPU and build, kept in a write-once cache like cpuid's. */
static int close_enough(const float *a, const float *b, int n) {
  for (int i = 0; i < n; i++)
    if (!(fabsf(a[i] - b[i]) <= 1e-4f * (1.0f + fabsf(b[i])))) return 0;
  return 1;
}

static int avx512_check(void) {
#if MOESZ_X86
  enum { R = 8, C = 160 };
  float wf[R * C], x[3 * C], y2[3 * R], y5[3 * R];
  for (int i = 0; i < R * C; i++) wf[i] = ldexpf((float)((i * 37) % 101 - 50) / 50.0f, i / C - 4);   /* scales 2^-4..2^3 */
  for (int i = 0; i < 3 * C; i++) x[i] = (float)((i * 53) % 97 - 48) / 48.0f;
  moesz_matview vf = {wf, MOESZ_DT_F32, R, C, C, 0};
  mv_avx_f32(&vf, 0, R, x, y2, 0);
  mv512_f32(&vf, 0, R, x, y5, 0);
  if (!close_enough(y5, y2, R)) return 0;
  /* the packed path: 8 rows x 3 tokens, and 7 x 3 over 150 columns (a column tail) */
  for (int c = C; c >= C - 10; c -= 10) {
    mm_avx(wf, R - (c < C), x, c, 3, (size_t)c, y2, R, 0);
    moesz_kx_mm_f32(wf, R - (c < C), x, c, 3, (size_t)c, y5, R, 0);
    if (!close_enough(y5, y2, 3 * R)) return 0;
  }
  void *buf;
  size_t len;
  moesz_cl m;
  int ok = 1;
  /* the 8-bit tile's AVX512_VNNI kernel: the AVX2 one's results bit for bit (3 and 7 tokens, 8 rows at
   * eb 4e-3: mostly 4-bit groups) */
  enum { NT = 7 };
  float x7[NT * C], z2[NT * R], z5[NT * R];
  for (int i = 0; i < NT * C; i++) x7[i] = (float)((i * 29) % 89 - 44) / 44.0f;
  size_t s8b = 64 * 1024;
  void *s8s = aligned_alloc(64, s8b);
  float w4[R * C];   /* |q| <= 4 at eb 4e-3: 4-bit groups */
  for (int i = 0; i < R * C; i++) w4[i] = (float)((i * 37) % 101 - 50) / 50.0f * 0.03f;
  ok = ok && s8s && moesz_cl_encode(w4, MOESZ_DT_F32, R, C, MOESZ_EB_ABS, 4e-3, 1, &buf, &len, NULL, NULL) == MOESZ_OK;
  if (ok) {
    ok = moesz_cl_parse(buf, len, &m, NULL) == MOESZ_OK;
    for (int nt = 3; ok && nt <= NT; nt += 4) {
      int d2 = moesz_k_cl8_rows(&m, 0, R, x7, C, nt, z2, R, 0, s8s, s8b, 0, 1);
      int d5 = moesz_k_cl8_rows(&m, 0, R, x7, C, nt, z5, R, 0, s8s, s8b, 0, 2);
      ok = d2 && d2 == d5 && !memcmp(z2, z5, sizeof(float) * (size_t)(nt * R));
    }
    moesz_cl_free(&m);
    free(buf);
  }
  free(s8s);
  return ok;
#else
  return 0;
#endif
}

/* The AVX512_BF16 kernel against the scalar sum of the same products (x
 * rounded to BF16): 7 rows x 1..7 tokens over 150 columns (a column tail,
 * NaN beyond the row's end). */
static int bf16_check(void) {
#if MOESZ_X86
  enum { R = 7, C = 150, LD = 160, N = 7 };
  uint16_t wb[R * LD], xb[N * LD];
  float x[N * C], y[N * R], ref[N * R];
  for (int i = 0; i < R * LD; i++)
    wb[i] = i % LD < C ? moesz_f32_to_bf16(ldexpf((float)((i * 37) % 101 - 50) / 50.0f, i / LD - 3)) : 0x7fc0;
  for (int i = 0; i < N * C; i++) x[i] = (float)((i * 53) % 97 - 48) / 48.0f + 1e-3f;
  size_t ldb = moesz_kx_bf16_ld(C);
  if (ldb > LD) return 0;
  moesz_kx_x_to_bf16(x, C, N, C, xb, ldb);
  for (int n = 1; n <= N; n++) {
    for (int t = 0; t < n; t++)
      for (int r = 0; r < R; r++) {
        float s = 0;
        for (int k = 0; k < C; k++) s += moesz_bf16_to_f32(wb[r * LD + k]) * moesz_bf16_to_f32(xb[(size_t)t * ldb + k]);
        ref[t * R + r] = s;
      }
    moesz_kx_bf16_rows(wb, LD, C, R, xb, ldb, n, y, R, 0);
    if (!close_enough(y, ref, n * R)) return 0;
  }
  return 1;
#else
  return 0;
#endif
}

/* The AVX-512 VBMI compute-layout kernel (simd 3) against the AVX2 one,
 * 1..4 tokens, exact x: rows of every width 1..11 (row scales 2^-8..2^2 of
 * 0.02 at eb 1e-3; row 7 a different scale each 64 columns, row 8 at 0.02:
 * rows of one usual width), 11 groups (the last one of 20 columns). */
static int vbmi_check(void) {
#if MOESZ_X86
  enum { R = 9, C = 660, N = 4 };
  float *w = malloc(sizeof(float) * R * C), *x = malloc(sizeof(float) * N * C), y1[N * R], y3[N * R];
  size_t sb = moesz_k_cl_scratch_bytes(C);
  void *scr = aligned_alloc(64, (sb + 63) / 64 * 64), *buf = NULL;
  size_t len;
  moesz_cl m;
  int ok = w && x && scr;
  for (int i = 0; ok && i < R * C; i++) {
    int r = i / C, c = i % C, e = r < 7 ? r - 8 + 3 * (r > 3) : r == 7 ? (c / 64) % 11 - 8 : 0;
    w[i] = ldexpf(0.02f * (float)((i * 37) % 101 - 50) / 25.0f, e);
  }
  for (int i = 0; ok && i < N * C; i++) x[i] = (float)((i * 53) % 97 - 48) / 48.0f * (i % 7 ? 1.0f : 1e-3f);
  ok = ok && moesz_cl_encode(w, MOESZ_DT_F32, R, C, MOESZ_EB_ABS, 1e-3, 1, &buf, &len, NULL, NULL) == MOESZ_OK;
  if (ok) {
    int parsed = moesz_cl_parse(buf, len, &m, NULL) == MOESZ_OK;
    ok = parsed;
    for (int nt = 1; ok && nt <= N; nt++) {
      moesz_k_cl_rows(&m, 0, R, x, C, nt, y1, R, 0, 1, 0, scr, 0);
      ok = moesz_k_cl_rows(&m, 0, R, x, C, nt, y3, R, 0, 3, 0, scr, 0) && close_enough(y3, y1, nt * R);
    }
    if (parsed) moesz_cl_free(&m);
  }
  free(buf); free(w); free(x); free(scr);
  return ok;
#else
  return 0;
#endif
}

static int vbmi_agrees(void) {
  static _Atomic int slot;
  return moesz_cpu_once(&slot, vbmi_check);
}

static int avx512_agrees(void) {
  static _Atomic int slot;
  return moesz_cpu_once(&slot, avx512_check);
}

static int bf16_agrees(void) {
  static _Atomic int slot;
  return moesz_cpu_once(&slot, bf16_check);
}
