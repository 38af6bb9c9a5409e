/* runtime/rt_resmoe.c - owns ResMoE layers in the expert cache: the pinned
 * barycenters (decoded once when the cache opens, counted in its budget by
 * the caller) and the restoration of an expert on a miss from its residual's
 * stored bytes (fetched by the cache through its store): add it to a copy of
 * the barycenter (sparse or low-rank, src/resmoe), split into gate | up |
 * down in the served dtype. */
#include <stdlib.h>
#include <string.h>
#include "moesz/codec.h"
#include "runtime/rt_resmoe.h"

struct moesz_runtime_resmoe {
  const moesz_msz *c;
  moesz_runtime_blob_src src;
  int n_layers;
  const moesz_msz_resmoe_layer **lay;   /* [n_layers] NULL for plain layers */
  float **bary;                         /* [n_layers] B' [n, D] F32, NULL for plain layers */
};

void moesz_runtime_resmoe_destroy(moesz_runtime_resmoe *r) {
  if (!r) return;
  for (int L = 0; r->bary && L < r->n_layers; L++) free(r->bary[L]);
  free(r->bary);
  free(r->lay);
  free(r);
}

int moesz_runtime_resmoe_has(const moesz_runtime_resmoe *r, int layer) {
  return r && layer >= 0 && layer < r->n_layers && r->bary[layer] != NULL;
}

int moesz_runtime_resmoe_create(const moesz_msz *c, const moesz_runtime_blob_src *src, moesz_runtime_resmoe **out,
                                uint64_t *pinned, uint64_t *read, moesz_error *err) {
  *out = NULL;
  *pinned = *read = 0;
  const moesz_config *cfg = moesz_msz_config(c);
  int any = 0;
  for (int L = 0; L < cfg->n_layers; L++) any |= moesz_msz_resmoe(c, L) != NULL;
  if (!any) return MOESZ_OK;
  moesz_runtime_resmoe *r = calloc(1, sizeof *r);
  if (!r) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  r->c = c;
  r->src = *src;
  r->n_layers = cfg->n_layers;
  r->lay = calloc((size_t)cfg->n_layers, sizeof *r->lay);
  r->bary = calloc((size_t)cfg->n_layers, sizeof *r->bary);
  if (!r->lay || !r->bary) { moesz_runtime_resmoe_destroy(r); return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); }
  for (int L = 0; L < cfg->n_layers; L++) {
    const moesz_msz_resmoe_layer *l = moesz_msz_resmoe(c, L);
    if (!l) continue;
    size_t m = (size_t)l->n * (size_t)l->D;
    const void *b;
    void *token = NULL;
    int rc = r->src.get(r->src.ctx, &l->bary, &b, &token, err);
    if (!rc) {
      r->lay[L] = l;
      r->bary[L] = malloc(m * sizeof **r->bary);
      if (!r->bary[L]) rc = moesz_error_set(err, MOESZ_E_NOMEM, "expert cache: out of memory for the layer %d barycenter", L);
      else rc = moesz_codec_decompress(b, l->bary.len, MOESZ_DT_F32, r->bary[L], m, 1, err);
      if (r->src.put) r->src.put(r->src.ctx, token);
    }
    if (rc) {
      moesz_error_wrap(err, rc, "layer %d barycenter", L);
      moesz_runtime_resmoe_destroy(r);
      return rc;
    }
    *pinned += m * sizeof **r->bary;
    *read += l->bary.len;
  }
  *out = r;
  return MOESZ_OK;
}

int moesz_runtime_resmoe_restore(moesz_runtime_resmoe *r, int L, int e, const void *res, moesz_dtype dt, uint8_t *buf,
                                 moesz_matview v[3], moesz_error *err) {
  if (!moesz_runtime_resmoe_has(r, L) || e < 0 || e >= r->lay[L]->E)
    return moesz_error_set(err, MOESZ_E_NOTFOUND, "expert cache: no ResMoE layer %d expert %d", L, e);
  const moesz_msz_resmoe_layer *l = r->lay[L];
  size_t m = (size_t)l->n * (size_t)l->D, md = (size_t)l->n * (size_t)l->d, es = moesz_dtype_size(dt);
  float *X = malloc(m * sizeof *X);
  if (!X) return moesz_error_set(err, MOESZ_E_NOMEM, "expert cache: out of memory (%zu bytes)", m * sizeof *X);
  memcpy(X, r->bary[L], m * sizeof *X);
  int rc = moesz_resmoe_residual_add(res, l->res[e].len, l->n, l->D, X, err);
  if (rc) moesz_error_wrap(err, rc, "blob %s", l->res[e].name);
  for (int k = 0; k < 3 && !rc; k++) {
    moesz_mat mat = (moesz_mat)(MOESZ_MAT_GATE + k);
    rc = moesz_msz_resmoe_split(X, l->n, l->d, mat, dt, buf + (size_t)k * md * es, err);
    v[k].data = buf + (size_t)k * md * es;
    v[k].dtype = dt;
    v[k].rows = mat == MOESZ_MAT_DOWN ? l->d : l->n;
    v[k].cols = mat == MOESZ_MAT_DOWN ? l->n : l->d;
    v[k].ld = v[k].cols;
    v[k].transposed = 0;
  }
  free(X);
  return rc;
}
