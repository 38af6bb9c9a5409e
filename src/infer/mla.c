/* infer/mla.c - owns DeepSeek-V3 multi-head latent attention: the weights of
 * every layer bound by name (q_a_proj + q_a_layernorm + q_b_proj or q_proj,
 * kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj, o_proj), the cache of the
 * compressed latent (kv_lora_rank normed latent + qk_rope_head_dim rotated
 * key part per token and layer, never expanded K/V), decoupled RoPE (pairs or
 * rotate-half, YaRN frequencies and attention factor) and the absorbed
 * attention: the key up-projection is folded into the query (q_nope W_UK per
 * head) and the value up-projection applied after the weighted sum of
 * latents. See infer/mla.h and docs/INFERENCE.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "infer/mla.h"

typedef struct mla_layer {
  moesz_matview q_a, q_b, q;    /* [ql, d], [nh*qk, ql] or q_proj [nh*qk, d] */
  float *q_a_norm;              /* [ql] */
  moesz_matview kv_a;           /* [kvl + r, d] */
  float *kv_a_norm;             /* [kvl] */
  moesz_matview kv_b;           /* [nh*(nope + vd), kvl] */
  void *uk_t;                   /* [nh][kvl][nope] W_UK transposed per head, kv_b's dtype */
  moesz_matview o;              /* [d, nh*vd] */
} mla_layer;

struct moesz_mla {
  int nl, d, nh, ql, kvl, nope, r, vd, qk, max_ctx, bmax, interleave;
  float eps;
  float scale;                  /* softmax scale: qk^-1/2 (times YaRN mscale^2) */
  float rope_mul;               /* YaRN attention factor on cos and sin (1 otherwise) */
  float *inv_freq;              /* [r/2] */
  mla_layer *L;                 /* [nl] */
  float *cache;                 /* [nl][max_ctx][kvl + r] */
  float *qa;                    /* [bmax, ql] */
  float *q;                     /* [bmax, nh*qk] */
  float *kva;                   /* [bmax, kvl + r] */
  float *qlat;                  /* [bmax, nh*(kvl + r)] absorbed query */
  float *olat;                  /* [bmax, nh*(kvl + r)] weighted latent sum per head */
  float *o;                     /* [bmax, nh*vd] */
  moesz_kjob *jobs;             /* [nh] */
};

uint64_t moesz_mla_cache_bytes(const moesz_config *c) {
  return (uint64_t)(c->kv_lora_rank + c->qk_rope_dim) * sizeof(float);
}
uint64_t moesz_mla_expanded_bytes(const moesz_config *c) {
  return (uint64_t)c->n_heads * (uint64_t)(c->qk_nope_dim + c->qk_rope_dim + c->v_head_dim) * sizeof(float);
}
int moesz_mla_max_cols(const moesz_mla *m) {
  int c = m->d;
  if (m->ql > c) c = m->ql;
  if (m->kvl > c) c = m->kvl;
  if (m->nope > c) c = m->nope;
  if (m->nh * m->vd > c) c = m->nh * m->vd;
  return c;
}

void moesz_mla_close(moesz_mla *m) {
  if (!m) return;
  if (m->L)
    for (int i = 0; i < m->nl; i++) {
      free(m->L[i].q_a_norm);
      free(m->L[i].kv_a_norm);
      free(m->L[i].uk_t);
    }
  free(m->L);
  free(m->inv_freq);
  free(m->cache);
  free(m->qa); free(m->q); free(m->kva); free(m->qlat); free(m->olat); free(m->o);
  free(m->jobs);
  free(m);
}

static int find(const moesz_st *st, int L, const char *what, const moesz_tensor **t, moesz_error *err) {
  char name[160];
  snprintf(name, sizeof name, "model.layers.%d.self_attn.%s", L, what);
  *t = moesz_st_find(st, name);
  if (!*t) return moesz_error_set(err, MOESZ_E_NOTFOUND, "missing tensor: %s", name);
  return MOESZ_OK;
}

static int bind_m(const moesz_st *st, int L, const char *what, int64_t rows, int64_t cols,
                  moesz_matview *v, moesz_error *err) {
  const moesz_tensor *t;
  int rc = find(st, L, what, &t, err);
  if (rc) return rc;
  if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)
    return moesz_error_set(err, MOESZ_E_FORMAT,
                           "tensor %s: shape contradicts the config (expected [%lld, %lld])",
                           t->name, (long long)rows, (long long)cols);
  if (t->dtype != MOESZ_DT_F32 && t->dtype != MOESZ_DT_BF16 && t->dtype != MOESZ_DT_F16)
    return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "tensor %s: dtype %s not supported for compute",
                           t->name, moesz_dtype_name(t->dtype));
  v->data = t->data; v->dtype = t->dtype; v->rows = rows; v->cols = cols; v->ld = cols;
  v->transposed = 0;
  return MOESZ_OK;
}

static int bind_v(const moesz_st *st, int L, const char *what, int64_t n, float **out, moesz_error *err) {
  const moesz_tensor *t;
  int rc = find(st, L, what, &t, err);
  if (rc) return rc;
  if (t->ndim != 1 || t->shape[0] != n)
    return moesz_error_set(err, MOESZ_E_FORMAT, "tensor %s: shape contradicts the config (expected [%lld])",
                           t->name, (long long)n);
  *out = malloc(sizeof(float) * (size_t)n);
  if (!*out) return moesz_error_set(err, MOESZ_E_NOMEM, "tensor %s", t->name);
  if (moesz_to_f32(t->dtype, t->data, *out, (size_t)n))
    return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "tensor %s: dtype %s not supported", t->name,
                           moesz_dtype_name(t->dtype));
  return MOESZ_OK;
}

/* W_UK of every head, transposed to [kvl, nope] rows, in kv_b's own dtype. */
static int make_uk_t(moesz_mla *m, mla_layer *l, moesz_error *err) {
  size_t es = moesz_dtype_size(l->kv_b.dtype), kvl = (size_t)m->kvl, nope = (size_t)m->nope;
  size_t per = (size_t)(m->nope + m->vd);
  l->uk_t = malloc((size_t)m->nh * kvl * (nope ? nope : 1) * es);
  if (!l->uk_t) return moesz_error_set(err, MOESZ_E_NOMEM, "MLA absorbed key projection");
  const char *src = l->kv_b.data;
  char *dst = l->uk_t;
  for (size_t h = 0; h < (size_t)m->nh; h++)
    for (size_t j = 0; j < kvl; j++)
      for (size_t i = 0; i < nope; i++)
        memcpy(dst + ((h * kvl + j) * nope + i) * es, src + ((h * per + i) * kvl + j) * es, es);
  return MOESZ_OK;
}

static double yarn_mscale(double scale, double mscale) {
  return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

/* RoPE frequencies over the r rotated dims: plain, or YaRN as transformers'
 * _compute_yarn_parameters (the kernel the gpt-oss path uses too; the cos/sin
 * multiplier yarn_attn_factor is resolved by the config parser). */
static void set_freqs(moesz_mla *m, const moesz_config *c) {
  float base = c->rope_theta > 0 ? c->rope_theta : 10000.0f;
  int dim = m->r;
  m->rope_mul = 1.0f;
  if (!c->yarn) {
    for (int i = 0; i < dim / 2; i++) m->inv_freq[i] = 1.0f / powf(base, (float)(2 * i) / (float)dim);
    return;
  }
  m->rope_mul = c->yarn_attn_factor;
  moesz_k_yarn_inv_freq(dim, base, c->yarn_factor, c->yarn_beta_fast, c->yarn_beta_slow, c->yarn_orig_max_pos,
                        c->yarn_truncate, m->inv_freq);
}

int moesz_mla_open(const moesz_config *c, const moesz_st *st, int max_ctx, int bmax, moesz_mla **out,
                   moesz_error *err) {
  *out = NULL;
  if (c->kv_lora_rank <= 0 || c->qk_rope_dim < 2 || c->qk_rope_dim % 2 || c->v_head_dim <= 0 ||
      c->qk_nope_dim < 0 || c->n_heads <= 0 || max_ctx <= 0 || bmax <= 0)
    return moesz_error_set(err, MOESZ_E_FORMAT, "MLA config not usable (kv_lora_rank %d, rope %d, "
                           "nope %d, v %d)", c->kv_lora_rank, c->qk_rope_dim, c->qk_nope_dim, c->v_head_dim);
  moesz_mla *m = calloc(1, sizeof *m);
  if (!m) return moesz_error_set(err, MOESZ_E_NOMEM, "MLA");
  m->nl = c->n_layers; m->d = c->hidden; m->nh = c->n_heads; m->ql = c->q_lora_rank;
  m->kvl = c->kv_lora_rank; m->nope = c->qk_nope_dim; m->r = c->qk_rope_dim; m->vd = c->v_head_dim;
  m->qk = m->nope + m->r; m->max_ctx = max_ctx; m->bmax = bmax; m->interleave = c->rope_interleave;
  m->eps = c->norm_eps;
  m->scale = (float)(1.0 / sqrt((double)m->qk));
  if (c->yarn && c->yarn_mscale_all_dim > 0) {
    double ms = yarn_mscale(c->yarn_factor, c->yarn_mscale_all_dim);
    m->scale = (float)(m->scale * ms * ms);
  }
  int rc = MOESZ_OK;
  size_t lat = (size_t)(m->kvl + m->r), nh = (size_t)m->nh, B = (size_t)bmax;
  m->L = calloc((size_t)m->nl, sizeof *m->L);
  m->inv_freq = calloc((size_t)m->r / 2, sizeof(float));
  m->cache = calloc((size_t)m->nl * (size_t)max_ctx * lat, sizeof(float));
  m->qa = calloc(B * (size_t)(m->ql > 0 ? m->ql : 1), sizeof(float));
  m->q = calloc(B * nh * (size_t)m->qk, sizeof(float));
  m->kva = calloc(B * lat, sizeof(float));
  m->qlat = calloc(B * nh * lat, sizeof(float));
  m->olat = calloc(B * nh * lat, sizeof(float));
  m->o = calloc(B * nh * (size_t)m->vd, sizeof(float));
  m->jobs = calloc(nh, sizeof *m->jobs);
  if (!m->L || !m->inv_freq || !m->cache || !m->qa || !m->q || !m->kva || !m->qlat || !m->olat || !m->o ||
      !m->jobs) {
    rc = moesz_error_set(err, MOESZ_E_NOMEM, "MLA buffers and latent cache");
    goto fail;
  }
  set_freqs(m, c);
  int64_t d = m->d, qw = (int64_t)m->nh * m->qk;
  for (int L = 0; L < m->nl && !rc; L++) {
    mla_layer *l = &m->L[L];
    if (m->ql > 0) {
      if (!rc) rc = bind_m(st, L, "q_a_proj.weight", m->ql, d, &l->q_a, err);
      if (!rc) rc = bind_v(st, L, "q_a_layernorm.weight", m->ql, &l->q_a_norm, err);
      if (!rc) rc = bind_m(st, L, "q_b_proj.weight", qw, m->ql, &l->q_b, err);
    } else if (!rc) {
      rc = bind_m(st, L, "q_proj.weight", qw, d, &l->q, err);
    }
    if (!rc) rc = bind_m(st, L, "kv_a_proj_with_mqa.weight", (int64_t)lat, d, &l->kv_a, err);
    if (!rc) rc = bind_v(st, L, "kv_a_layernorm.weight", m->kvl, &l->kv_a_norm, err);
    if (!rc)
      rc = bind_m(st, L, "kv_b_proj.weight", (int64_t)m->nh * (m->nope + m->vd), m->kvl, &l->kv_b, err);
    if (!rc) rc = bind_m(st, L, "o_proj.weight", d, (int64_t)m->nh * m->vd, &l->o, err);
    if (!rc && m->nope > 0) rc = make_uk_t(m, l, err);
  }
  if (rc) goto fail;
  *out = m;
  return MOESZ_OK;
fail:
  moesz_mla_close(m);
  return rc;
}

/* RoPE on the r dims at v: pairs (2i, 2i+1) when interleaved (transformers'
 * rope_interleave permutes to halves first; q.k is the same), else halves. */
static void rope(const moesz_mla *m, float *v, int pos) {
  int half = m->r / 2;
  for (int i = 0; i < half; i++) {
    float f = (float)pos * m->inv_freq[i];
    float cs = cosf(f) * m->rope_mul, sn = sinf(f) * m->rope_mul;
    int a = m->interleave ? 2 * i : i, b = m->interleave ? 2 * i + 1 : i + half;
    float x = v[a], y = v[b];
    v[a] = x * cs - y * sn;
    v[b] = y * cs + x * sn;
  }
}

static moesz_kjob mkjob(const moesz_matview *w, const float *x, size_t ldx, float *y, size_t ldy, int n,
                        int acc) {
  moesz_kjob j = {*w, x, ldx, y, ldy, n, acc};
  return j;
}

int moesz_mla_forward(moesz_mla *m, moesz_kctx *kc, int L, const float *xn, int n, int pos0, float *x,
                      moesz_error *err) {
  return moesz_mla_forward_at(m, kc, L, xn, n, pos0, m->cache, m->max_ctx, x, err);
}

int moesz_mla_forward_at(moesz_mla *m, moesz_kctx *kc, int L, const float *xn, int n, int pos0,
                         float *cache_all, int ctx, float *x, moesz_error *err) {
  if (L < 0 || L >= m->nl || n <= 0 || n > m->bmax || pos0 < 0 || ctx <= 0 || ctx > m->max_ctx ||
      pos0 + n > ctx || !cache_all)
    return moesz_error_set(err, MOESZ_E_RANGE, "MLA: layer %d, %d tokens at %d out of range", L, n, pos0);
  mla_layer *l = &m->L[L];
  size_t d = (size_t)m->d, lat = (size_t)(m->kvl + m->r), nh = (size_t)m->nh, qk = (size_t)m->qk;
  size_t qw = nh * qk, lw = nh * lat, ow = nh * (size_t)m->vd;
  float *cache = cache_all + (size_t)L * (size_t)ctx * lat;
  float *crow = cache + (size_t)pos0 * lat;
  int rc;
  /* queries and the latent of the new tokens (straight into the cache) */
  moesz_kjob j[2];
  int nj = 0;
  if (m->ql > 0) j[nj++] = mkjob(&l->q_a, xn, d, m->qa, (size_t)m->ql, n, 0);
  else j[nj++] = mkjob(&l->q, xn, d, m->q, qw, n, 0);
  j[nj++] = mkjob(&l->kv_a, xn, d, crow, lat, n, 0);
  if ((rc = moesz_k_linear(kc, j, nj))) return moesz_error_set(err, rc, "layer %d: MLA q/kv_a", L);
  if (m->ql > 0) {
    moesz_k_rmsnorm(m->qa, (size_t)m->ql, m->qa, (size_t)m->ql, l->q_a_norm, n, m->ql, m->eps);
    j[0] = mkjob(&l->q_b, m->qa, (size_t)m->ql, m->q, qw, n, 0);
    if ((rc = moesz_k_linear(kc, j, 1))) return moesz_error_set(err, rc, "layer %d: MLA q_b_proj", L);
  }
  moesz_k_rmsnorm(crow, lat, crow, lat, l->kv_a_norm, n, m->kvl, m->eps);
  for (int t = 0; t < n; t++) rope(m, crow + (size_t)t * lat + m->kvl, pos0 + t);
  /* absorbed query per head: [q_nope W_UK (kvl) | rope(q_rope) (r)] */
  for (int h = 0; h < m->nh && m->nope > 0; h++) {
    moesz_matview uk = {(const char *)l->uk_t + (size_t)h * (size_t)m->kvl * (size_t)m->nope *
                        moesz_dtype_size(l->kv_b.dtype), l->kv_b.dtype, m->kvl, m->nope, m->nope, 0};
    m->jobs[h] = mkjob(&uk, m->q + (size_t)h * qk, qw, m->qlat + (size_t)h * lat, lw, n, 0);
  }
  if (m->nope > 0 && (rc = moesz_k_linear(kc, m->jobs, m->nh)))
    return moesz_error_set(err, rc, "layer %d: MLA absorbed query", L);
  for (int t = 0; t < n; t++)
    for (size_t h = 0; h < nh; h++) {
      float *dst = m->qlat + (size_t)t * lw + h * lat;
      if (m->nope == 0) memset(dst, 0, sizeof(float) * (size_t)m->kvl);
      memcpy(dst + m->kvl, m->q + (size_t)t * qw + h * qk + m->nope, sizeof(float) * (size_t)m->r);
      rope(m, dst + m->kvl, pos0 + t);
    }
  /* attention over the latent rows: one shared "KV head" of width kvl + r */
  moesz_k_attention(kc, m->qlat, lw, cache, cache, pos0, n, m->nh, 1, (int)lat, m->scale, m->olat, lw);
  /* values: W_UV per head on the weighted latent, then o_proj into the residual */
  for (int h = 0; h < m->nh; h++) {
    size_t row0 = (size_t)h * (size_t)(m->nope + m->vd) + (size_t)m->nope;
    moesz_matview uv = {(const char *)l->kv_b.data + row0 * (size_t)m->kvl * moesz_dtype_size(l->kv_b.dtype),
                        l->kv_b.dtype, m->vd, m->kvl, m->kvl, 0};
    m->jobs[h] = mkjob(&uv, m->olat + (size_t)h * lat, lw, m->o + (size_t)h * (size_t)m->vd, ow, n, 0);
  }
  if ((rc = moesz_k_linear(kc, m->jobs, m->nh))) return moesz_error_set(err, rc, "layer %d: MLA values", L);
  j[0] = mkjob(&l->o, m->o, ow, x, d, n, 1);
  if ((rc = moesz_k_linear(kc, j, 1))) return moesz_error_set(err, rc, "layer %d: MLA o_proj", L);
  return MOESZ_OK;
}
