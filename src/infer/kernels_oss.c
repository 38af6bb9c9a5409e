/* infer/kernels_oss.c - the kernels gpt-oss adds to the forward pass:
 * causal attention with a sliding window and per-head learned sink logits
 * (the sink joins the softmax denominator and carries no value), the clamped
 * SwiGLU over interleaved gate/up rows with bias, and YaRN RoPE frequencies
 * as transformers' _compute_yarn_parameters computes them. See kernels.h. */
#include "infer/kernels.h"
#include <math.h>
#include <string.h>

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
