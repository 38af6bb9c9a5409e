/* infer/provider_oss.c - owns the expert provider of gpt-oss checkpoints
 * read from a folder: gate and up as the two row halves [0, n) / [n, 2n) of
 * the interleaved gate_up [2n, d], and down [d, n], held from get() to
 * release() in row-major buffers: unquantized stacked experts copied out of
 * transformers' [E, in, out] layout in their dtype, MXFP4 experts (blocks +
 * e8m0 scales, as published) dequantised exactly into BF16. */
#include <stdlib.h>
#include <string.h>
#include "moesz/infer.h"
#include "moesz/tensor.h"

typedef struct oss_prov {
  const moesz_model *m;
  int n_experts;
  uint16_t **held;   /* [n_experts] gate_up [2n * d] then down [d * n] (BF16, or the checkpoint's dtype), or NULL */
  int *held_layer;   /* [n_experts] */
} oss_prov;

static int dequant(const moesz_model *m, int L, int e, moesz_mat mat, uint16_t *dst, moesz_matview *v,
                   moesz_error *err) {
  moesz_mxfp4_view mx;
  int rc = moesz_model_expert_mxfp4(m, L, e, mat, &mx, err);
  if (rc) return rc;
  moesz_mxfp4_to_bf16(mx.blocks, mx.scales, (size_t)(mx.rows * (mx.cols / 32)), dst);
  v->data = dst;
  v->dtype = MOESZ_DT_BF16;
  v->rows = mx.rows;
  v->cols = mx.cols;
  v->ld = mx.cols;
  v->transposed = 0;
  return MOESZ_OK;
}

/* gate / up as the two row halves of a contiguous gate_up (as a container
 * serves them, so both paths multiply the same way) */
static void halves(moesz_expert_mats *o) {
  moesz_matview g = o->gate_up;
  size_t es = moesz_dtype_size(g.dtype);
  g.rows /= 2;
  o->gate = g;
  o->up = g;
  o->up.data = (const char *)g.data + (size_t)g.rows * (size_t)g.ld * es;
  memset(&o->gate_up, 0, sizeof o->gate_up);
}

static int oss_get(void *ctx, int layer, int expert, int shared, moesz_expert_mats *o, moesz_error *err) {
  oss_prov *p = ctx;
  const moesz_config *c = &p->m->cfg;
  memset(o, 0, sizeof *o);
  if (shared || layer < 0 || layer >= c->n_layers || !c->is_moe[layer] || expert < 0 || expert >= p->n_experts)
    return moesz_error_set(err, MOESZ_E_RANGE, "gpt-oss: layer %d %sexpert %d does not exist", layer,
                           shared ? "shared " : "", expert);
  moesz_mxfp4_view mx;
  int gu_mx = moesz_model_expert_mxfp4(p->m, layer, expert, MOESZ_MAT_GATE_UP, &mx, NULL) == MOESZ_OK;
  int dn_mx = moesz_model_expert_mxfp4(p->m, layer, expert, MOESZ_MAT_DOWN, &mx, NULL) == MOESZ_OK;
  int rc = MOESZ_OK;
  if (gu_mx || dn_mx) {
    if (p->held[expert])
      return moesz_error_set(err, MOESZ_E_ARG, "gpt-oss: layer %d expert %d got twice", layer, expert);
    size_t d = (size_t)c->hidden, n = (size_t)c->moe_intermediate;
    uint16_t *buf = malloc(sizeof(uint16_t) * 3 * n * d);
    if (!buf) return moesz_error_set(err, MOESZ_E_NOMEM, "gpt-oss: layer %d expert %d buffer", layer, expert);
    p->held[expert] = buf;
    p->held_layer[expert] = layer;
    rc = gu_mx ? dequant(p->m, layer, expert, MOESZ_MAT_GATE_UP, buf, &o->gate_up, err)
               : moesz_model_expert(p->m, layer, expert, 0, MOESZ_MAT_GATE_UP, &o->gate_up, err);
    if (!rc) halves(o);
    if (!rc)
      rc = dn_mx ? dequant(p->m, layer, expert, MOESZ_MAT_DOWN, buf + 2 * n * d, &o->down, err)
                 : moesz_model_expert(p->m, layer, expert, 0, MOESZ_MAT_DOWN, &o->down, err);
    if (rc) { free(buf); p->held[expert] = NULL; }
    return rc;
  }
  /* unquantized: transformers' [E, in, out] layout copied into row-major
   * buffers, so the kernels multiply as they do a container's decoded experts */
  moesz_matview v[3];
  for (int k = 0; k < 3 && !rc; k++) rc = moesz_model_expert(p->m, layer, expert, 0, (moesz_mat)(MOESZ_MAT_GATE + k), &v[k], err);
  if (rc) return rc;
  if (p->held[expert])
    return moesz_error_set(err, MOESZ_E_ARG, "gpt-oss: layer %d expert %d got twice", layer, expert);
  size_t es = moesz_dtype_size(v[0].dtype), per = (size_t)v[0].rows * (size_t)v[0].cols;
  char *buf = malloc(es * 3 * per);
  if (!buf) return moesz_error_set(err, MOESZ_E_NOMEM, "gpt-oss: layer %d expert %d buffer", layer, expert);
  p->held[expert] = (uint16_t *)(void *)buf;
  p->held_layer[expert] = layer;
  moesz_matview *dst[3] = {&o->gate, &o->up, &o->down};
  for (int k = 0; k < 3; k++) {
    moesz_matview_gather(&v[k], buf + (size_t)k * per * es);
    *dst[k] = v[k];
    dst[k]->data = buf + (size_t)k * per * es;
    dst[k]->ld = v[k].cols;
    dst[k]->transposed = 0;
  }
  return MOESZ_OK;
}

static void oss_release(void *ctx, int layer, int expert, int shared) {
  oss_prov *p = ctx;
  if (shared || expert < 0 || expert >= p->n_experts || !p->held[expert] || p->held_layer[expert] != layer) return;
  free(p->held[expert]);
  p->held[expert] = NULL;
}

static void oss_destroy(void *ctx) {
  oss_prov *p = ctx;
  if (!p) return;
  for (int e = 0; e < p->n_experts; e++) free(p->held[e]);
  free(p->held);
  free(p->held_layer);
  free(p);
}

int moesz_expert_provider_gptoss(const moesz_model *m, moesz_expert_provider *out, moesz_error *err) {
  if (!m || !out) return moesz_error_set(err, MOESZ_E_ARG, "expert provider: NULL argument");
  memset(out, 0, sizeof *out);
  if (m->cfg.arch != MOESZ_ARCH_GPT_OSS)
    return moesz_error_set(err, MOESZ_E_ARG, "expert provider: %s is not gpt-oss", m->cfg.arch_name);
  oss_prov *p = calloc(1, sizeof *p);
  int E = m->cfg.n_experts > 0 ? m->cfg.n_experts : 1;
  if (p) { p->held = calloc((size_t)E, sizeof *p->held); p->held_layer = calloc((size_t)E, sizeof *p->held_layer); }
  if (!p || !p->held || !p->held_layer) {
    oss_destroy(p);
    return moesz_error_set(err, MOESZ_E_NOMEM, "expert provider");
  }
  p->m = m;
  p->n_experts = E;
  out->ctx = p;
  out->get = oss_get;
  out->release = oss_release;
  out->destroy = oss_destroy;
  return MOESZ_OK;
}
