/* infer/provider_msz.c - owns serving a model from a .msz container: the
 * dense weights stay mapped in the container, shared experts and dense MLPs
 * are read in place, routed experts come through the expert cache
 * (src/runtime) under its byte budget, read from the file by its store
 * (pread / O_DIRECT behind the link model; the mapping only when asked),
 * with the router's choices passed on for next-layer prefetch, and the
 * engine's expert group sized so pinned experts fit the budget; gpt-oss
 * MXFP4 experts a container keeps in its dense image are dequantised from
 * the mapping on get() (provider_oss.c), outside the cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "moesz/infer.h"
#include "moesz/runtime.h"

typedef struct msz_served {
  moesz_msz *c;
  moesz_cache *k;
  moesz_model *dense;            /* config + dense tensors of the container */
  moesz_expert_provider inplace; /* shared experts / dense MLPs, zero-copy */
  moesz_expert_provider mx;      /* gpt-oss MXFP4 experts kept in the dense image (ctx NULL: none) */
} msz_served;

/* gpt-oss layer whose MXFP4 experts the container keeps in its dense image */
static int mx_kept(const msz_served *s, int layer) {
  moesz_mxfp4_view v;
  return s->mx.ctx && moesz_model_expert_mxfp4(s->dense, layer, 0, MOESZ_MAT_GATE_UP, &v, NULL) == MOESZ_OK;
}

static int routed(const msz_served *s, int layer, int expert, int shared) {
  return !shared && expert >= 0 && layer >= 0 && layer < s->dense->cfg.n_layers && s->dense->cfg.is_moe[layer] &&
         !mx_kept(s, layer);
}

static int served_get(void *ctx, int layer, int expert, int shared, moesz_expert_mats *out, moesz_error *err) {
  msz_served *s = ctx;
  if (!shared && mx_kept(s, layer)) return s->mx.get(s->mx.ctx, layer, expert, shared, out, err);
  if (!routed(s, layer, expert, shared)) return s->inplace.get(s->inplace.ctx, layer, expert, shared, out, err);
  moesz_matview v[3];
  int rc = moesz_cache_get(s->k, layer, expert, v, err);
  if (rc) return rc;
  out->gate = v[0];
  out->up = v[1];
  out->down = v[2];
  return MOESZ_OK;
}

static void served_release(void *ctx, int layer, int expert, int shared) {
  msz_served *s = ctx;
  if (!shared && mx_kept(s, layer)) {
    s->mx.release(s->mx.ctx, layer, expert, shared);
    return;
  }
  if (!routed(s, layer, expert, shared)) {
    if (s->inplace.release) s->inplace.release(s->inplace.ctx, layer, expert, shared);
    return;
  }
  moesz_cache_release(s->k, layer, expert);
}

static void served_route(void *ctx, int layer, const int32_t *experts, int n, const float *hidden, int n_tokens) {
  msz_served *s = ctx;
  if (mx_kept(s, layer)) return;
  moesz_cache_observe(s->k, layer, experts, n, hidden, n_tokens);
}

static void served_destroy(void *ctx) {
  msz_served *s = ctx;
  if (!s) return;
  if (s->inplace.destroy) s->inplace.destroy(s->inplace.ctx);
  if (s->mx.destroy) s->mx.destroy(s->mx.ctx);
  moesz_cache_destroy(s->k);
  moesz_model_close(s->dense);
  moesz_msz_close(s->c);
  free(s);
}

int moesz_engine_is_msz(const char *path) {
  FILE *f = fopen(path, "rb");
  char magic[8] = {0};
  int yes = f && fread(magic, 1, 8, f) == 8 && !memcmp(magic, MOESZ_MSZ_MAGIC, 8);
  if (f) fclose(f);
  return yes;
}

int moesz_engine_open_msz(const char *path, const moesz_cache_opts *co, const moesz_engine_opts *o,
                          moesz_engine **out, moesz_cache **cache, moesz_error *err) {
  *out = NULL;
  if (cache) *cache = NULL;
  msz_served *s = calloc(1, sizeof *s);
  if (!s) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  int rc = moesz_msz_open(path, &s->c, err);
  if (!rc) rc = moesz_model_wrap_dense(moesz_msz_config(s->c), (moesz_st *)moesz_msz_dense(s->c), path, &s->dense, err);
  if (!rc) rc = moesz_expert_provider_mmap(s->dense, &s->inplace, err);
  /* the storage tier reads blobs from the file unless the in-memory path is asked for */
  moesz_cache_opts cop = {.dtype = MOESZ_DT_COUNT, .store.mode = MOESZ_STORE_MMAP};   /* no budget: in memory */
  if (co) cop = *co;
  if (cop.store.mode != MOESZ_STORE_MMAP && !cop.store.path) cop.store.path = path;
  /* gpt-oss MXFP4 experts kept as they are: dequantised from the mapping on get() */
  int kept = 0, any_rec = 0;
  for (int L = 0; !rc && L < s->dense->cfg.n_layers; L++) {
    moesz_mxfp4_view v;
    if (!s->dense->cfg.is_moe[L]) continue;
    if (moesz_model_expert_mxfp4(s->dense, L, 0, MOESZ_MAT_GATE_UP, &v, NULL) == MOESZ_OK) kept = 1;
    else any_rec = 1;
  }
  if (!rc && kept) rc = moesz_expert_provider_gptoss(s->dense, &s->mx, err);
  if (!rc && s->dense->cfg.n_experts > 0 && (any_rec || !kept)) rc = moesz_cache_create(s->c, &cop, &s->k, err);
  if (rc) { served_destroy(s); return rc; }
  moesz_expert_provider p;
  memset(&p, 0, sizeof p);
  p.ctx = s;
  p.get = served_get;
  p.release = served_release;
  p.route = s->k ? served_route : NULL;
  p.destroy = served_destroy;
  /* under a budget, hold at most as many routed experts at once as fit in
   * it, so a prompt batch that routes to every expert of a layer streams
   * them through the budget instead of pinning them all */
  moesz_engine_opts eo = {0};
  if (o) eo = *o;
  moesz_cache_stats cs = {0};
  if (s->k) moesz_cache_stats_get(s->k, &cs);
  if (s->k && cs.budget_bytes && eo.expert_group <= 0) {
    uint64_t g = cs.expert_bytes ? cs.budget_bytes / cs.expert_bytes : 1;
    eo.expert_group = g < 1 ? 1 : g > (uint64_t)s->dense->cfg.n_experts ? s->dense->cfg.n_experts : (int)g;
  }
  rc = moesz_engine_open_model(s->dense, 0, &p, 1, &eo, out, err);
  if (rc) { served_destroy(s); return rc; }
  if (cache) *cache = s->k;
  return MOESZ_OK;
}
