/* infer/provider_oss.c - owns the expert provider of gpt-oss checkpoints
 * read from a folder: gate and up as the two row halves [0, n) / [n, 2n) of
 * the interleaved gate_up [2n, d], and down [d, n], held from get() to
 * release(): unquantized stacked experts copied out of transformers' [E, in,
 * out] layout into row-major buffers of their dtype; MXFP4 experts (blocks +
 * e8m0 scales, as published) as MOESZ_VIEW_MXFP4 views of the mapped blocks,
 * which the kernels multiply without dequantising. */
#include <stdlib.h>
#include <string.h>
#include "moesz/infer.h"
#include "moesz/tensor.h"

typedef struct oss_prov {
  const moesz_model *m;
  int n_experts;
  uint16_t **held;   /* [n_experts] gate_up [2n * d] then down [d * n] (BF16, or the checkpoint's dtype), or NULL */
  int *held_layer;   /* [n_experts] */
  void **spare;      /* [n_experts] released buffers kept for the next get() (no page faults per token) */
  moesz_mxfp4_view *mxv;   /* [n_experts][3] MXFP4 gate / up / down views handed out by get() */
  int nspare;
  size_t bufsize;    /* bytes of one buffer */
} oss_prov;

static void *take_buf(oss_prov *p) { return p->nspare ? p->spare[--p->nspare] : malloc(p->bufsize); }
static void give_buf(oss_prov *p, void *b) {
  if (p->nspare < p->n_experts) p->spare[p->nspare++] = b;
  else free(b);
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
  if (gu_mx || dn_mx) {   /* MXFP4: views of the blocks and scales, multiplied where they lie */
    if (!gu_mx || !dn_mx)
      return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "gpt-oss: layer %d mixes MXFP4 and unquantized experts", layer);
    moesz_mxfp4_view *mv = p->mxv + (size_t)expert * 3;
    moesz_matview *dst[3] = {&o->gate, &o->up, &o->down};
    moesz_model_expert_mxfp4(p->m, layer, expert, MOESZ_MAT_GATE_UP, &mv[0], NULL);
    moesz_model_expert_mxfp4(p->m, layer, expert, MOESZ_MAT_DOWN, &mv[2], NULL);
    int64_t half = mv[0].rows / 2, g = mv[0].cols / 32;
    mv[0].rows = half;   /* gate / up: the row halves of the interleaved gate_up */
    mv[1] = mv[0];
    mv[1].blocks += (size_t)(half * g * 16);
    mv[1].scales += (size_t)(half * g);
    for (int k = 0; k < 3; k++) {
      dst[k]->data = &mv[k];
      dst[k]->dtype = MOESZ_VIEW_MXFP4;
      dst[k]->rows = mv[k].rows;
      dst[k]->cols = mv[k].cols;
      dst[k]->ld = mv[k].cols;
      dst[k]->transposed = 0;
    }
    return MOESZ_OK;
  }
  /* unquantized: transformers' [E, in, out] layout copied into row-major
   * buffers, so the kernels multiply as they do a container's decoded experts */
  moesz_matview v[3];
  for (int k = 0; k < 3 && !rc; k++) rc = moesz_model_expert(p->m, layer, expert, 0, (moesz_mat)(MOESZ_MAT_GATE + k), &v[k], err);
  if (rc) return rc;
  if (p->held[expert])
    return moesz_error_set(err, MOESZ_E_ARG, "gpt-oss: layer %d expert %d got twice", layer, expert);
  size_t es = moesz_dtype_size(v[0].dtype), per = (size_t)v[0].rows * (size_t)v[0].cols;
  char *buf = es * 3 * per <= p->bufsize ? take_buf(p) : NULL;
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
  give_buf(p, p->held[expert]);
  p->held[expert] = NULL;
}

static void oss_destroy(void *ctx) {
  oss_prov *p = ctx;
  if (!p) return;
  for (int e = 0; e < p->n_experts; e++) free(p->held[e]);
  for (int i = 0; i < p->nspare; i++) free(p->spare[i]);
  free(p->spare);
  free(p->mxv);
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
  if (p) {
    p->held = calloc((size_t)E, sizeof *p->held);
    p->held_layer = calloc((size_t)E, sizeof *p->held_layer);
    p->spare = calloc((size_t)E, sizeof *p->spare);
    p->mxv = calloc((size_t)E * 3, sizeof *p->mxv);
  }
  if (!p || !p->held || !p->held_layer || !p->spare || !p->mxv) {
    oss_destroy(p);
    return moesz_error_set(err, MOESZ_E_NOMEM, "expert provider");
  }
  p->m = m;
  p->n_experts = E;
  /* the largest expert: gate_up + down in F32 (unquantized F32 checkpoints) */
  p->bufsize = 3 * (size_t)m->cfg.moe_intermediate * (size_t)m->cfg.hidden * sizeof(float);
  out->ctx = p;
  out->get = oss_get;
  out->release = oss_release;
  out->destroy = oss_destroy;
  return MOESZ_OK;
}
