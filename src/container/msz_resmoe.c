/* container/msz_resmoe.c - owns ResMoE layers in the .msz container: writing
 * a layer (gather the experts as n x D rows, src/resmoe encodes the
 * barycenter and residuals, one blob each, expert records that point at
 * their residual), the manifest's "resmoe" section (parse and cross-check
 * against the expert records), and decoding a RESMOE record (barycenter +
 * residual, then the record's matrix). Format: docs/CONTAINER.md. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "moesz/codec.h"
#include "container/msz_internal.h"

#define RESMOE_SECTION_VERSION 1

/* ------------------------------------------------------------- reading */

const moesz_msz_resmoe_layer *moesz_msz_resmoe(const moesz_msz *c, int layer) {
  for (size_t i = 0; i < c->nrm; i++)
    if (c->rm[i].layer == layer) return &c->rm[i];
  return NULL;
}

void msz_resmoe_free(moesz_msz *c) {
  for (size_t i = 0; i < c->nrm; i++) {
    moesz_msz_resmoe_layer *l = &c->rm[i];
    free((char *)l->bary.name);
    for (int k = 0; l->res && k < l->E; k++) free((char *)l->res[k].name);
    free(l->res);
    free(l->thr);
    free(l->max_err);
  }
  free(c->rm);
  c->rm = NULL;
  c->nrm = 0;
}

static int num(const cJSON *o, const char *k, double lo, double hi, double *out) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsNumber(j) || !(j->valuedouble >= lo && j->valuedouble <= hi)) return 0;
  *out = j->valuedouble;
  return 1;
}
static int inum(const cJSON *o, const char *k, int lo, int hi, int *out) {
  double v;
  if (!num(o, k, lo, hi, &v) || v != floor(v)) return 0;
  *out = (int)v;
  return 1;
}

static int parse_layer(moesz_msz *c, const cJSON *o, moesz_msz_resmoe_layer *l, moesz_error *err) {
  const moesz_config *cfg = &c->cfg;
  const cJSON *jr = cJSON_GetObjectItemCaseSensitive(o, "residual");
  const char *res = cJSON_IsString(jr) ? jr->valuestring : "";
  l->layer = -1;
  if (!inum(o, "layer", 0, cfg->n_layers - 1, &l->layer) || !cfg->is_moe[l->layer])
    return moesz_error_set(err, MOESZ_E_FORMAT, "resmoe: bad layer");
  int L = l->layer;
  if (!strcmp(res, "prune")) l->residual = MOESZ_RESIDUAL_PRUNE;
  else if (!strcmp(res, "svd")) l->residual = MOESZ_RESIDUAL_SVD;
  else return moesz_error_set(err, MOESZ_E_FORMAT, "resmoe layer %d: unknown residual '%s'", L, res);
  if (!num(o, "keep", 0, 1, &l->keep) || !(l->keep > 0))
    return moesz_error_set(err, MOESZ_E_FORMAT, "resmoe layer %d: keep outside (0, 1]", L);
  if (!inum(o, "rows", 1, 1 << 24, &l->n) || !inum(o, "d", 1, 1 << 24, &l->d) || !inum(o, "cols", 1, 3 << 24, &l->D) ||
      l->D != 3 * l->d)
    return moesz_error_set(err, MOESZ_E_FORMAT, "resmoe layer %d: bad rows / cols / d", L);
  const cJSON *jb = cJSON_GetObjectItemCaseSensitive(o, "bary");
  int rc = cJSON_IsObject(jb) ? msz_parse_rec(c, jb, &l->bary, 1, err)
                              : moesz_error_set(err, MOESZ_E_FORMAT, "resmoe layer %d: no barycenter", L);
  if (rc) return rc;
  if (l->bary.method != MOESZ_MSZ_CODEC || l->bary.dtype != MOESZ_DT_F32 || l->bary.ndim != 2 ||
      l->bary.shape[0] != l->n || l->bary.shape[1] != l->D)
    return moesz_error_set(err, MOESZ_E_FORMAT, "resmoe layer %d: the barycenter must be a codec blob of F32 [%d, %d]", L, l->n, l->D);
  const cJSON *je = cJSON_GetObjectItemCaseSensitive(o, "experts");
  if (!cJSON_IsArray(je) || cJSON_GetArraySize(je) != cfg->n_experts)
    return moesz_error_set(err, MOESZ_E_FORMAT, "resmoe layer %d: needs %d residuals", L, cfg->n_experts);
  l->res = calloc((size_t)cfg->n_experts, sizeof *l->res);
  l->thr = calloc((size_t)cfg->n_experts, sizeof *l->thr);
  l->max_err = calloc((size_t)cfg->n_experts, sizeof *l->max_err);
  if (!l->res || !l->thr || !l->max_err) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  for (const cJSON *x = je->child; x; x = x->next) {
    int k = l->E;
    rc = msz_parse_rec(c, x, &l->res[k], 1, err);
    l->E++;
    if (rc) return rc;
    const moesz_msz_rec *r = &l->res[k];
    if (r->method != MOESZ_MSZ_RESMOE || r->dtype != MOESZ_DT_F32 || r->ndim != 2 || r->shape[0] != l->n || r->shape[1] != l->D)
      return moesz_error_set(err, MOESZ_E_FORMAT, "resmoe layer %d: residual %d must be a resmoe blob of F32 [%d, %d]", L, k, l->n, l->D);
    if (!num(x, "thr", 0, INFINITY, &l->thr[k]) || !num(x, "max_err", 0, INFINITY, &l->max_err[k]))
      return moesz_error_set(err, MOESZ_E_FORMAT, "resmoe layer %d: residual %d needs thr and max_err", L, k);
  }
  return MOESZ_OK;
}

int msz_resmoe_parse(moesz_msz *c, const void *root_json, moesz_error *err) {
  const cJSON *sec = cJSON_GetObjectItemCaseSensitive((const cJSON *)root_json, "resmoe");
  if (!sec) {
    if (c->version >= MOESZ_MSZ_VERSION_RESMOE)
      return moesz_error_set(err, MOESZ_E_FORMAT, "manifest: version %u container without a resmoe section", c->version);
  } else {
    double v;
    if (c->version < MOESZ_MSZ_VERSION_RESMOE)
      return moesz_error_set(err, MOESZ_E_FORMAT, "manifest: resmoe section in a version %u container", c->version);
    if (!num(sec, "version", 0, 1e9, &v) || v != RESMOE_SECTION_VERSION)
      return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "manifest: resmoe section version (this build reads %d)", RESMOE_SECTION_VERSION);
    const cJSON *jl = cJSON_GetObjectItemCaseSensitive(sec, "layers");
    int nl = cJSON_IsArray(jl) ? cJSON_GetArraySize(jl) : -1;
    if (nl < 1 || nl > c->cfg.n_layers) return moesz_error_set(err, MOESZ_E_FORMAT, "manifest: resmoe section needs 1-%d layers", c->cfg.n_layers);
    if (!(c->rm = calloc((size_t)nl, sizeof *c->rm))) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
    for (const cJSON *o = jl->child; o; o = o->next) {
      int rc = parse_layer(c, o, &c->rm[c->nrm], err);
      c->nrm++;
      if (rc) return rc;
      for (size_t i = 0; i + 1 < c->nrm; i++)
        if (c->rm[i].layer == c->rm[c->nrm - 1].layer)
          return moesz_error_set(err, MOESZ_E_FORMAT, "manifest: two resmoe records for layer %d", c->rm[i].layer);
    }
  }
  /* every RESMOE expert record points at its layer's residual; every expert of a ResMoE layer is RESMOE */
  for (size_t i = 0; i < c->nex; i++) {
    const moesz_msz_rec *r = &c->ex[i].rec;
    const moesz_msz_resmoe_layer *l = moesz_msz_resmoe(c, r->layer);
    if (!l && r->method != MOESZ_MSZ_RESMOE) continue;
    if (!l || r->method != MOESZ_MSZ_RESMOE || r->shared || r->expert >= l->E)
      return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: resmoe method and resmoe layers disagree", r->name);
    const moesz_msz_rec *q = &l->res[r->expert];
    int64_t rows = r->mat == MOESZ_MAT_DOWN ? l->d : l->n, cols = r->mat == MOESZ_MAT_DOWN ? l->n : l->d;
    if (q->off != r->off || q->len != r->len || q->xxh64 != r->xxh64 || r->shape[0] != rows || r->shape[1] != cols)
      return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: disagrees with its layer's residual or shape", r->name);
  }
  /* stream headers (read in place; checksums are verified on every read) agree with the section */
  for (size_t i = 0; i < c->nrm; i++) {
    const moesz_msz_resmoe_layer *l = &c->rm[i];
    moesz_codec_info ci;
    int rc = moesz_codec_info_read((const uint8_t *)c->map + l->bary.off, l->bary.len, &ci, err);
    if (rc) return moesz_error_wrap(err, rc, "resmoe layer %d barycenter", l->layer);
    if (ci.count != (size_t)l->n * (size_t)l->D || ci.in_dtype != MOESZ_DT_F32 || ci.eb != l->bary.eb)
      return moesz_error_set(err, MOESZ_E_FORMAT, "resmoe layer %d: the barycenter stream disagrees with the manifest", l->layer);
    for (int e = 0; e < l->E; e++) {
      moesz_residual_info ri;
      if ((rc = moesz_resmoe_residual_info((const uint8_t *)c->map + l->res[e].off, l->res[e].len, &ri, err)))
        return moesz_error_wrap(err, rc, "resmoe layer %d residual %d", l->layer, e);
      if (ri.rows != (uint32_t)l->n || ri.cols != (uint32_t)l->D || ri.kind != l->residual)
        return moesz_error_set(err, MOESZ_E_FORMAT, "resmoe layer %d residual %d: its header disagrees with the layer", l->layer, e);
    }
  }
  for (size_t i = 0; i < c->nrm; i++)
    for (int e = 0; e < c->rm[i].E; e++)
      for (int mat = MOESZ_MAT_GATE; mat <= MOESZ_MAT_DOWN; mat++)
        if (!moesz_msz_expert(c, c->rm[i].layer, e, 0, (moesz_mat)mat))
          return moesz_error_set(err, MOESZ_E_FORMAT, "resmoe layer %d: expert %d matrix %d has no record", c->rm[i].layer, e, mat);
  return MOESZ_OK;
}

int moesz_msz_resmoe_split(const float *X, int n, int d, moesz_mat mat, moesz_dtype dtype, void *dst, moesz_error *err) {
  size_t D = 3 * (size_t)d, cnt = (size_t)n * (size_t)d;
  float *tmp = dtype == MOESZ_DT_F32 ? dst : malloc(cnt * sizeof *tmp);
  if (!tmp) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  if (mat == MOESZ_MAT_DOWN) {
    for (int j = 0; j < d; j++)
      for (int i = 0; i < n; i++) tmp[(size_t)j * (size_t)n + (size_t)i] = X[(size_t)i * D + 2 * (size_t)d + (size_t)j];
  } else {
    size_t c0 = mat == MOESZ_MAT_UP ? (size_t)d : 0;
    for (int i = 0; i < n; i++) memcpy(tmp + (size_t)i * (size_t)d, X + (size_t)i * D + c0, (size_t)d * sizeof *tmp);
  }
  int rc = MOESZ_OK;
  if (tmp != dst) {
    if (moesz_from_f32(dtype, tmp, dst, cnt)) rc = moesz_error_set(err, MOESZ_E_UNSUPPORTED, "cannot convert to %s", moesz_dtype_name(dtype));
    free(tmp);
  }
  return rc;
}

int moesz_msz_resmoe_expert(const moesz_msz *c, int layer, int expert, float *X, moesz_error *err) {
  const moesz_msz_resmoe_layer *l = moesz_msz_resmoe(c, layer);
  if (!l || expert < 0 || expert >= l->E)
    return moesz_error_set(err, MOESZ_E_NOTFOUND, "container has no ResMoE layer %d expert %d", layer, expert);
  const void *b, *r;
  size_t m = (size_t)l->n * (size_t)l->D;
  int rc = moesz_msz_blob(c, &l->bary, &b, err);
  if (!rc) rc = msz_codec_decode(&l->bary, b, MOESZ_DT_F32, X, m, NULL, err);
  if (!rc) rc = moesz_msz_blob(c, &l->res[expert], &r, err);
  if (!rc && (rc = moesz_resmoe_residual_add(r, l->res[expert].len, l->n, l->D, X, err)))
    moesz_error_wrap(err, rc, "blob %s", l->res[expert].name);
  return rc;
}

int msz_resmoe_read(const moesz_msz *c, const moesz_msz_rec *r, moesz_dtype out, void *dst, moesz_error *err) {
  const moesz_msz_resmoe_layer *l = moesz_msz_resmoe(c, r->layer);
  if (!l) return moesz_error_set(err, MOESZ_E_FORMAT, "blob %s: not in a ResMoE layer", r->name);
  float *X = malloc((size_t)l->n * (size_t)l->D * sizeof *X);
  if (!X) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory for a %d x %d expert", l->n, l->D);
  int rc = moesz_msz_resmoe_expert(c, r->layer, r->expert, X, err);
  if (!rc) rc = moesz_msz_resmoe_split(X, l->n, l->d, r->mat, out, dst, err);
  free(X);
  return rc;
}

/* ------------------------------------------------------------- writing */

static long tensor_holding(const moesz_st *st, const void *p) {
  for (size_t i = 0; i < moesz_st_count(st); i++) {
    const moesz_tensor *t = moesz_st_at(st, i);
    if ((const char *)p >= (const char *)t->data && (const char *)p < (const char *)t->data + t->nbytes) return (long)i;
  }
  return -1;
}

static const char *MATN[] = {"", "gate", "up", "down"};

int msz_resmoe_write_layer(const moesz_model *m, int L, double eb, const moesz_msz_opts *o, msz_put_fn put, void *w,
                           void *experts_json, void *resmoe_json, moesz_msz_summary *s, moesz_error *err) {
  const moesz_config *cfg = &m->cfg;
  int E = cfg->n_experts;
  moesz_matview v[3];
  int rc = moesz_model_expert(m, L, 0, 0, MOESZ_MAT_GATE, &v[0], err);
  if (rc) return rc;
  int n = (int)v[0].rows, d = (int)v[0].cols, D = 3 * d;
  size_t md = (size_t)n * (size_t)d;
  float **X = calloc((size_t)E, sizeof *X), *tmp = malloc(md * sizeof *tmp);
  moesz_resmoe_stored st;
  memset(&st, 0, sizeof st);
  if (!X || !tmp) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto done; }
  for (int e = 0; e < E && !rc; e++) {
    if (!(X[e] = malloc(md * 3 * sizeof **X))) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); break; }
    for (int k = 0; k < 3 && !rc; k++) {
      if ((rc = moesz_model_expert(m, L, e, 0, (moesz_mat)(MOESZ_MAT_GATE + k), &v[k], err))) break;
      int64_t wr = k == 2 ? d : n, wc = k == 2 ? n : d;
      if (v[k].rows != wr || v[k].cols != wc) {
        rc = moesz_error_set(err, MOESZ_E_UNSUPPORTED, "resmoe: layer %d expert %d %s is %lldx%lld, expected %lldx%lld", L, e, MATN[k + 1],
                             (long long)v[k].rows, (long long)v[k].cols, (long long)wr, (long long)wc);
        break;
      }
      if ((rc = moesz_matview_to_f32(&v[k], tmp, err))) break;
      for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
          X[e][(size_t)i * (size_t)D + (size_t)(k * d + j)] = k == 2 ? tmp[(size_t)j * (size_t)n + (size_t)i] : tmp[(size_t)i * (size_t)d + (size_t)j];
    }
  }
  if (rc) goto done;
  moesz_codec_params cp = {.mode = (moesz_eb_mode)o->eb_mode, .eb = eb, .pipeline = (moesz_pipeline)o->pipeline,
                           .out_dtype = MOESZ_DT_F32, .threads = o->threads};
  if ((rc = moesz_resmoe_encode(X, E, n, D, o->resmoe, &cp, &st, err))) { moesz_error_wrap(err, rc, "layer %d", L); goto done; }
  cJSON *lo = cJSON_CreateObject(), *bo = cJSON_CreateObject(), *ro;
  cJSON_AddItemToArray(resmoe_json, lo);
  cJSON_AddNumberToObject(lo, "layer", L);
  cJSON_AddStringToObject(lo, "residual", st.kind == MOESZ_RESIDUAL_SVD ? "svd" : "prune");
  static const char *BASE[] = {"barycenter", "zero", "zero", "mean"};
  cJSON_AddStringToObject(lo, "base", BASE[o->resmoe->method]);
  cJSON_AddNumberToObject(lo, "keep", o->resmoe->keep);
  cJSON_AddNumberToObject(lo, "rows", n);
  cJSON_AddNumberToObject(lo, "cols", D);
  cJSON_AddNumberToObject(lo, "d", d);
  if (st.kind == MOESZ_RESIDUAL_SVD) cJSON_AddNumberToObject(lo, "rank", st.rank);
  cJSON_AddNumberToObject(lo, "iterations", st.rep.iters);
  cJSON_AddItemToObject(lo, "bary", bo);
  char name[600];
  snprintf(name, sizeof name, "@resmoe.%d.bary", L);
  if ((rc = put(w, bo, name, "codec", st.bary, st.bary_len, err))) goto done;
  cJSON_AddStringToObject(bo, "dtype", "F32");
  cJSON *sh = cJSON_AddArrayToObject(bo, "shape");
  cJSON_AddItemToArray(sh, cJSON_CreateNumber(n));
  cJSON_AddItemToArray(sh, cJSON_CreateNumber(D));
  cJSON_AddNumberToObject(bo, "eb", st.bary_eb);
  cJSON *ja = cJSON_AddArrayToObject(lo, "experts");
  s->resmoe_layers++;
  s->resmoe_bary_bytes += st.bary_len;
  s->expert_stored_bytes += st.bary_len;
  for (int e = 0; e < E && !rc; e++) {
    ro = cJSON_CreateObject();
    cJSON_AddItemToArray(ja, ro);
    snprintf(name, sizeof name, "@resmoe.%d.%d", L, e);
    if ((rc = put(w, ro, name, "resmoe", st.res[e], st.res_len[e], err))) break;
    cJSON_AddStringToObject(ro, "dtype", "F32");
    sh = cJSON_AddArrayToObject(ro, "shape");
    cJSON_AddItemToArray(sh, cJSON_CreateNumber(n));
    cJSON_AddItemToArray(sh, cJSON_CreateNumber(D));
    cJSON_AddNumberToObject(ro, "eb", st.res_eb[e]);
    cJSON_AddNumberToObject(ro, "thr", st.thr[e]);
    cJSON_AddNumberToObject(ro, "max_err", st.max_err[e]);
    cJSON_AddNumberToObject(ro, "kept", (double)st.kept[e]);
    s->resmoe_residual_bytes += st.res_len[e];
    s->expert_stored_bytes += st.res_len[e];
    if (st.max_err[e] > s->resmoe_max_err) s->resmoe_max_err = st.max_err[e];
    /* the expert's three matrix records share its residual blob (same range and checksum) */
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(ro, "off"), *jn = cJSON_GetObjectItemCaseSensitive(ro, "len");
    const cJSON *jh = cJSON_GetObjectItemCaseSensitive(ro, "xxh64");
    for (int k = 0; k < 3 && !rc; k++) {
      if ((rc = moesz_model_expert(m, L, e, 0, (moesz_mat)(MOESZ_MAT_GATE + k), &v[k], err))) break;
      long ti = tensor_holding(m->st, v[k].data);
      if (ti < 0) { rc = moesz_error_set(err, MOESZ_E_INTERNAL, "expert view outside every tensor"); break; }
      const moesz_tensor *t = moesz_st_at(m->st, (size_t)ti);
      size_t es = moesz_dtype_size(v[k].dtype);
      cJSON *xo = cJSON_CreateObject();
      cJSON_AddItemToArray(experts_json, xo);
      snprintf(name, sizeof name, "%s#%d.%s", t->name, e, MATN[k + 1]);
      cJSON_AddStringToObject(xo, "name", name);
      cJSON_AddStringToObject(xo, "method", "resmoe");
      cJSON_AddNumberToObject(xo, "off", jo->valuedouble);
      cJSON_AddNumberToObject(xo, "len", jn->valuedouble);
      cJSON_AddStringToObject(xo, "xxh64", jh->valuestring);
      cJSON_AddStringToObject(xo, "dtype", moesz_dtype_name(v[k].dtype));
      sh = cJSON_AddArrayToObject(xo, "shape");
      cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)v[k].rows));
      cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)v[k].cols));
      cJSON_AddNumberToObject(xo, "eb", st.res_eb[e]);
      cJSON_AddNumberToObject(xo, "layer", L);
      cJSON_AddNumberToObject(xo, "expert", e);
      cJSON_AddNumberToObject(xo, "shared", 0);
      cJSON_AddNumberToObject(xo, "mat", k + 1);
      cJSON_AddStringToObject(xo, "tensor", t->name);
      cJSON_AddNumberToObject(xo, "view_off", (double)(((const uint8_t *)v[k].data - (const uint8_t *)t->data) / (ptrdiff_t)es));
      cJSON_AddNumberToObject(xo, "view_ld", (double)v[k].ld);
      cJSON_AddNumberToObject(xo, "view_t", v[k].transposed);
      s->expert_raw_bytes += (uint64_t)v[k].rows * (uint64_t)v[k].cols * es;
    }
  }
done:
  moesz_resmoe_stored_free(&st);
  for (int e = 0; X && e < E; e++) free(X[e]);
  free(X);
  free(tmp);
  return rc;
}
