/* infer/kernels_oss.c - the kernels gpt-oss adds to the forward pass:
 * causal attention with a sliding window and per-head learned sink logits
 * (the sink joins the softmax denominator and carries no value), the clamped
 * SwiGLU over interleaved gate/up rows with bias, YaRN RoPE frequencies
 * as transformers' _compute_yarn_parameters computes them, and matrix-vector
 * products straight from MXFP4 blocks (AVX2 and scalar) with the row
 * unpacking the batched path multiplies. See kernels.h. */
#include "infer/kernels.h"
#include <math.h>
#include <string.h>
#include "moesz/tensor.h"

/* ------------------------------------------------------------ attention */

typedef struct {
  moesz_kctx *c;
  const float *q, *kc, *vc, *sinks;
  size_t ldq, ldo;
  float *out;
  int pos0, n, nh, nkv, hd, window;
  float scale;
} atts_ctx;

static float dot8(const float *a, const float *b, int n) {
  float s[8] = {0};
  int k = 0;
  for (; k + 8 <= n; k += 8)
    for (int i = 0; i < 8; i++) s[i] += a[k + i] * b[k + i];
  float r = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  for (; k < n; k++) r += a[k] * b[k];
  return r;
}

static void atts_task(void *vctx, size_t ti, int tid) {
  atts_ctx *A = vctx;
  int t = (int)(ti / (size_t)A->nh), h = (int)(ti % (size_t)A->nh);
  int g = h / (A->nh / A->nkv), hd = A->hd, p = A->pos0 + t;
  int j0 = A->window > 0 && p - A->window + 1 > 0 ? p - A->window + 1 : 0;
  size_t kvw = (size_t)A->nkv * (size_t)hd;
  const float *q = A->q + (size_t)t * A->ldq + (size_t)h * hd;
  float *o = A->out + (size_t)t * A->ldo + (size_t)h * hd;
  float *s = A->c->scratch[tid];
  float m = A->sinks ? A->sinks[h] : -INFINITY;
  for (int j = j0; j <= p; j++) {
    s[j - j0] = dot8(q, A->kc + (size_t)j * kvw + (size_t)g * hd, hd) * A->scale;
    if (s[j - j0] > m) m = s[j - j0];
  }
  double sum = A->sinks ? exp((double)(A->sinks[h] - m)) : 0.0;
  for (int j = 0; j <= p - j0; j++) {
    s[j] = expf(s[j] - m);
    sum += s[j];
  }
  float inv = (float)(1.0 / sum);
  memset(o, 0, (size_t)hd * sizeof(float));
  for (int j = j0; j <= p; j++) {
    const float *v = A->vc + (size_t)j * kvw + (size_t)g * hd;
    float w = s[j - j0] * inv;
    for (int i = 0; i < hd; i++) o[i] += w * v[i];
  }
}

void moesz_k_attention_sinks(moesz_kctx *c, const float *q, size_t ldq, const float *kc, const float *vc,
                             int pos0, int n, int nh, int nkv, int hd, float scale, int window,
                             const float *sinks, float *out, size_t ldo) {
  atts_ctx A = {c, q, kc, vc, sinks, ldq, ldo, out, pos0, n, nh, nkv, hd, window, scale};
  moesz_pool_run(c->pool, (size_t)n * (size_t)nh, atts_task, &A);
}

/* ------------------------------------------------------- clamped SwiGLU */

void moesz_k_swiglu_oss(const float *gu, size_t ldgu, const float *bias, int n, int width, float alpha,
                        float limit, float *h, size_t ldh) {
  for (int t = 0; t < n; t++) {
    const float *r = gu + (size_t)t * ldgu;
    float *o = h + (size_t)t * ldh;
    for (int i = 0; i < width; i++) {
      float g = r[2 * i], u = r[2 * i + 1];
      if (bias) { g += bias[2 * i]; u += bias[2 * i + 1]; }
      if (g > limit) g = limit;
      if (u > limit) u = limit;
      if (u < -limit) u = -limit;
      float glu = g * (1.0f / (1.0f + expf(-(g * alpha))));
      o[i] = (u + 1.0f) * glu;
    }
  }
}

/* ----------------------------------------------------------------- YaRN */

static double corr_dim(double rot, int dim, double base, double maxpos) {
  return (dim * log(maxpos / (rot * 2 * M_PI))) / (2 * log(base));
}

void moesz_k_yarn_inv_freq(int dim, float base, float factor, float beta_fast, float beta_slow, int orig_max_pos,
                           int truncate, float *inv_freq) {
  double lo = corr_dim(beta_fast, dim, base, orig_max_pos), hi = corr_dim(beta_slow, dim, base, orig_max_pos);
  if (truncate) { lo = floor(lo); hi = ceil(hi); }
  if (lo < 0) lo = 0;
  if (hi > dim - 1) hi = dim - 1;
  if (lo == hi) hi += 0.001;
  float flo = (float)lo, span = (float)(hi - lo);
  for (int i = 0; i < dim / 2; i++) {
    /* float32 as torch: pos_freqs = base ** (arange(0, dim, 2) / dim) */
    float pf = powf(base, (float)(2 * i) / (float)dim);
    float extra = 1.0f / pf, inter = 1.0f / (factor * pf);
    float ramp = ((float)i - flo) / span;
    ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
    float ef = 1.0f - ramp;   /* extrapolation factor */
    inv_freq[i] = inter * (1.0f - ef) + extra * ef;
  }
}

/* ---------------------------------------------------------------- MXFP4 */

/* 2^(s - 127) for s < 255 as a float (2^-127 is subnormal, exact); the
 * scale 255 (2^128) goes through ldexpf. */
static float mx_scale(uint8_t s) {
  if (s == 0) return 0x1p-127f;
  uint32_t u = (uint32_t)s << 23;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static float mx_group_dot_scalar(const uint8_t *b, const float *x) {
  float s0 = 0, s1 = 0;
  for (int i = 0; i < 16; i++) {
    s0 += moesz_e2m1_to_f32(b[i] & 15) * x[2 * i];
    s1 += moesz_e2m1_to_f32(b[i] >> 4) * x[2 * i + 1];
  }
  return s0 + s1;
}

static float mx_apply(float dot, uint8_t s) { return s == 255 ? ldexpf(dot, 128) : dot * mx_scale(s); }

#if defined(__x86_64__)
#include <immintrin.h>
#include "infer/simd.h"
#define TGT_OSS __attribute__((target("avx2,fma")))
/* 2 * e2m1 as int8: 0, 1, 2, 3, 4, 6, 8, 12 and their negatives (the 0.5 goes into the scale) */
TGT_OSS static float mx_row_avx(const uint8_t *blk, const uint8_t *sc, int64_t g, const float *x) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12,
                                       0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
  const __m128i m4 = _mm_set1_epi8(15);
  __m256 acc = _mm256_setzero_ps();
  float tail = 0;
  for (int64_t k = 0; k < g; k++) {
    __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(blk + k * 16));
    __m128i lo = _mm_and_si128(b, m4), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m4);
    __m256i idx = _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));  /* elements 0..31 */
    __m256i v = _mm256_shuffle_epi8(lut, idx);
    const float *xx = x + k * 32;
    __m128i v0 = _mm256_castsi256_si128(v), v1 = _mm256_extracti128_si256(v, 1);
    __m256 d = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v0)), _mm256_loadu_ps(xx));
    d = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v0, 8))), _mm256_loadu_ps(xx + 8), d);
    d = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v1)), _mm256_loadu_ps(xx + 16), d);
    d = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v1, 8))), _mm256_loadu_ps(xx + 24), d);
    if (sc[k] == 0 || sc[k] == 255) { tail += mx_apply(0.5f * moesz_hsum8(d), sc[k]); continue; }
    acc = _mm256_fmadd_ps(d, _mm256_set1_ps(0.5f * mx_scale(sc[k])), acc);
  }
  return moesz_hsum8(acc) + tail;
}
#endif

void moesz_k_mxfp4_rows(const moesz_mxfp4_view *m, int64_t r0, int64_t r1, const float *x, float *y, int acc, int simd) {
  int64_t g = m->cols / 32;
  for (int64_t r = r0; r < r1; r++) {
    const uint8_t *blk = m->blocks + (size_t)(r * g * 16), *sc = m->scales + (size_t)(r * g);
    float s = 0;
#if defined(__x86_64__)
    if (simd) s = mx_row_avx(blk, sc, g, x);
    else
#endif
    {
      (void)simd;
      for (int64_t k = 0; k < g; k++) s += mx_apply(mx_group_dot_scalar(blk + k * 16, x + k * 32), sc[k]);
    }
    y[r - r0] = acc ? y[r - r0] + s : s;
  }
}

void moesz_k_mxfp4_unpack(const moesz_mxfp4_view *m, int64_t r0, int64_t r1, float *dst) {
  int64_t g = m->cols / 32;
  moesz_mxfp4_to_f32(m->blocks + (size_t)(r0 * g * 16), m->scales + (size_t)(r0 * g), (size_t)((r1 - r0) * g), dst);
}
