/* infer/provider_msz.c - owns serving a model from a .msz container: the
 * dense weights stay mapped in the container, shared experts and dense MLPs
 * are read in place, routed experts come through the expert cache
 * (src/runtime) under its byte budget, read from the file by its store
 * (pread / O_DIRECT behind the link model; the mapping only when asked),
 * with the router's choices passed on for next-layer prefetch, a layer's
 * missing experts loaded at once on its own threads (get_many, with
 * miss_threads > 1), and the engine's expert group sized so
 * pinned experts fit the budget; gpt-oss
 * MXFP4 experts a container keeps in its dense image are dequantised from
 * the mapping on get() (provider_oss.c), outside the cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/pool.h"
#include "moesz/infer.h"
#include "moesz/runtime.h"

typedef struct msz_served {
  moesz_msz *c;
  moesz_cache *k;
  moesz_model *dense;            /* config + dense tensors of the container */
  moesz_expert_provider inplace; /* shared experts / dense MLPs, zero-copy */
  moesz_expert_provider mx;      /* gpt-oss MXFP4 experts kept in the dense image (ctx NULL: none) */
  moesz_pool *pool;              /* loads several missing experts of a layer at once (NULL: one thread) */
  uint8_t *states;               /* [n_experts] get_many: residency of the layer's experts */
  int32_t *miss;                 /* [n_experts] get_many: the experts to load */
  uint8_t *held;                 /* [n_experts] get_many: held by this call */
  int *rc;                       /* [n_experts] get_many: each load's status */
  moesz_error *errs;             /* [n_experts] get_many: each load's error */
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

typedef struct {
  msz_served *s;
  int layer;
  moesz_expert_mats *out;
} many_ctx;

static void many_task(void *vctx, size_t i, int tid) {
  (void)tid;
  many_ctx *m = vctx;
  int x = m->s->miss[i];
  m->s->rc[i] = served_get(m->s, m->layer, x, 0, &m->out[x], &m->s->errs[i]);
}

/* get() of a layer's routed experts: the resident ones first (pinned, so the
 * loads cannot evict them), then the missing ones, at once on the pool when
 * there are two or more (a batched step's layer often misses several). */
static int served_get_many(void *ctx, int layer, const int32_t *ex, int n, moesz_expert_mats *out,
                           moesz_error *err) {
  msz_served *s = ctx;
  int nm = 0, rc = MOESZ_OK;
  moesz_cache_layer_stats ls;
  int par = s->pool && n > 1 && routed(s, layer, ex[0], 0) &&
            moesz_cache_layer_stats_get(s->k, layer, &ls, s->states) == MOESZ_OK;
  for (int i = 0; i < n; i++) {
    memset(&out[ex[i]], 0, sizeof out[ex[i]]);
    s->held[ex[i]] = 0;
  }
  for (int i = 0; i < n && !rc; i++) {
    if (par && s->states[ex[i]] != MOESZ_EXPERT_RESIDENT) { s->miss[nm++] = ex[i]; continue; }
    rc = served_get(s, layer, ex[i], 0, &out[ex[i]], err);
    s->held[ex[i]] = !rc;
  }
  if (!rc && nm) {
    many_ctx m = {s, layer, out};
    moesz_pool_run(nm > 1 ? s->pool : NULL, (size_t)nm, many_task, &m);
    for (int i = 0; i < nm; i++) {
      s->held[s->miss[i]] = !s->rc[i];
      if (s->rc[i] && !rc) {
        rc = s->rc[i];
        if (err) *err = s->errs[i];
      }
    }
  }
  if (rc)   /* all or nothing */
    for (int i = 0; i < n; i++)
      if (s->held[ex[i]]) served_release(s, layer, ex[i], 0);
  return rc;
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
  moesz_pool_destroy(s->pool);
  free(s->states); free(s->miss); free(s->held); free(s->rc); free(s->errs);
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
  /* the cache and the mapping take calls from several threads; gpt-oss's
   * MXFP4 provider holds per-call buffers and does not */
  p.concurrent = !s->mx.ctx;
  /* with several threads, a layer's missing experts load at once (under a budget, and without
   * one: a cold prompt verifies and parses its experts on first use) */
  if (s->k && cop.miss_threads > 1) {
    int E = s->dense->cfg.n_experts;
    s->states = calloc((size_t)E, sizeof *s->states);
    s->miss = calloc((size_t)E, sizeof *s->miss);
    s->held = calloc((size_t)E, sizeof *s->held);
    s->rc = calloc((size_t)E, sizeof *s->rc);
    s->errs = calloc((size_t)E, sizeof *s->errs);
    s->pool = moesz_pool_create(cop.miss_threads);
    if (!s->states || !s->miss || !s->held || !s->rc || !s->errs || !s->pool) {
      served_destroy(s);
      return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
    }
    p.get_many = served_get_many;
  }
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
