/* runtime/cache.c - owns the expert cache: decoded routed experts held under
 * a byte budget, pinned while the forward pass uses them, evicted by LRU, LFU
 * or LFRU; misses decode from the container on the caller's thread, prefetch
 * requests on background threads; next-layer prediction through the next
 * MoE layer's router; counters for hits, bytes and stall time.
 *
 * Locking: one mutex guards every entry's state and the counters; decoding
 * runs unlocked with the entry marked LOADING, and waiters sleep on `ready`. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "moesz/codec.h"
#include "moesz/runtime.h"
#include "runtime/rt_resmoe.h"

enum { E_EMPTY = 0, E_LOADING, E_READY };

typedef struct entry {
  int state;
  int pins;
  int prefetched;            /* decoded by prefetch, not yet requested */
  uint64_t bytes;            /* decoded size of the three matrices */
  void *data;                /* gate | up | down, contiguous (decoded, or compute-layout blobs) */
  moesz_matview v[3];
  moesz_cl cl[3];            /* parsed compute layouts (views of dtype MOESZ_VIEW_CL point here) */
  int is_cl;
  uint64_t last_use;         /* logical clock of the last request */
  double freq;               /* request count (LFRU: decayed at freq_t) */
  uint64_t freq_t;
} entry;

#define LFRU_HALF_LIFE 256.0 /* requests */
#define PF_QUEUE 1024

struct moesz_cache {
  const moesz_msz *c;
  moesz_cache_opts o;
  int n_layers, n_experts, top_k, d;
  entry *ent;                /* [n_layers * n_experts] */
  pthread_mutex_t mu;
  pthread_cond_t ready;      /* an entry left LOADING */
  pthread_cond_t work;       /* prefetch queue not empty / quit */
  uint64_t clock;
  moesz_cache_stats st;
  int32_t queue[PF_QUEUE];   /* entry indices to prefetch (ring) */
  int qhead, qlen, quit;
  pthread_t *th;             /* [nth] prefetch decoders */
  int nth;
  float **router;            /* [n_layers] router weights [n_experts, d] in f32, NULL for dense layers */
  moesz_runtime_resmoe *rm;  /* ResMoE layers: pinned barycenters (rt_resmoe.c), NULL if none */
};

static entry *at(moesz_cache *k, int L, int e) { return &k->ent[(size_t)L * (size_t)k->n_experts + (size_t)e]; }

/* What a blob becomes in the cache: a decoded dtype, or MOESZ_VIEW_CL (the
 * compute layout kept as stored; compute blobs by default). */
static moesz_dtype out_dtype(const moesz_cache *k, const moesz_msz_rec *r) {
  if (r->method == MOESZ_MSZ_RESMOE && k->o.dtype == MOESZ_VIEW_CL) return MOESZ_DT_F32;   /* ResMoE restores to F32 */
  if (k->o.dtype == MOESZ_DT_F32 || k->o.dtype == MOESZ_DT_BF16 || k->o.dtype == MOESZ_DT_F16 ||
      k->o.dtype == MOESZ_VIEW_CL)
    return k->o.dtype;
  if (r->method == MOESZ_MSZ_COMPUTE) return MOESZ_VIEW_CL;
  return (r->dtype == MOESZ_DT_BF16 || r->dtype == MOESZ_DT_F16) ? r->dtype : MOESZ_DT_F32;
}

/* Bytes a blob takes in the cache. */
static uint64_t held_bytes(const moesz_cache *k, const moesz_msz_rec *r) {
  moesz_dtype dt = out_dtype(k, r);
  if (dt == MOESZ_VIEW_CL) return (r->len + 63) / 64 * 64 + moesz_cl_parse_bytes(r->shape[0]);
  return r->raw_bytes / moesz_dtype_size(r->dtype) * moesz_dtype_size(dt);
}

static void free_entry_data(entry *x) {
  if (x->is_cl)
    for (int m = 0; m < 3; m++) moesz_cl_free(&x->cl[m]);
  x->is_cl = 0;
  free(x->data);
  x->data = NULL;
}

/* A compute-layout blob copied to dst (64-byte aligned) and parsed into cl. */
static int hold_cl(moesz_cache *k, const moesz_msz_rec *r, uint8_t *dst, moesz_cl *cl, moesz_error *err) {
  if (r->method != MOESZ_MSZ_COMPUTE)
    return moesz_error_set(err, MOESZ_E_UNSUPPORTED,
                           "blob %s: the compute layout needs a container written with --codec compute", r->name);
  const void *blob;
  int rc = moesz_msz_blob(k->c, r, &blob, err);
  if (rc) return rc;
  memcpy(dst, blob, r->len);
  if ((rc = moesz_cl_parse(dst, r->len, cl, err))) return moesz_error_wrap(err, rc, "blob %s", r->name);
  if (cl->rows != r->shape[0] || cl->cols != r->shape[1]) {
    moesz_cl_free(cl);
    return moesz_error_set(err, MOESZ_E_FORMAT, "blob %s: compute layout disagrees with the manifest", r->name);
  }
  return MOESZ_OK;
}

/* Score: lower = evicted first. */
static double score(const moesz_cache *k, const entry *x) {
  switch (k->o.policy) {
    case MOESZ_CACHE_LFU: return x->freq * 1e12 + (double)x->last_use;
    case MOESZ_CACHE_LFRU: return x->freq * exp2(-(double)(k->clock - x->freq_t) / LFRU_HALF_LIFE) * 1e6 + (double)x->last_use * 1e-6;
    default: return (double)x->last_use;
  }
}

static void drop(moesz_cache *k, entry *x) {
  free_entry_data(x);
  x->state = E_EMPTY;
  k->st.resident_bytes -= x->bytes;
  k->st.evictions++;
  if (x->prefetched) k->st.prefetch_wasted++;
  x->prefetched = 0;
}

/* Evicts unpinned ready entries until need more bytes fit (mutex held). */
static void make_room(moesz_cache *k, uint64_t need) {
  if (!k->o.budget_bytes) return;
  size_t n = (size_t)k->n_layers * (size_t)k->n_experts;
  while (k->st.resident_bytes + need > k->o.budget_bytes) {
    entry *victim = NULL;
    double best = 0;
    for (size_t i = 0; i < n; i++) {
      entry *x = &k->ent[i];
      if (x->state != E_READY || x->pins) continue;
      double s = score(k, x);
      if (!victim || s < best) { victim = x; best = s; }
    }
    if (!victim) { k->st.over_budget++; return; }
    drop(k, victim);
  }
}

/* The stored bytes of a blob, checksum-verified: how the cache fetches blob bytes. */
static int blob_get(void *ctx, const moesz_msz_rec *r, const void **data, moesz_error *err) {
  return moesz_msz_blob(((moesz_cache *)ctx)->c, r, data, err);
}

/* Decodes entry (L, e) into a new buffer; called without the mutex. */
static int decode(moesz_cache *k, int L, int e, entry *x, uint64_t *read, moesz_error *err) {
  if (moesz_runtime_resmoe_has(k->rm, L))
    return moesz_runtime_resmoe_expert(k->rm, L, e, out_dtype(k, moesz_msz_expert(k->c, L, e, 0, MOESZ_MAT_GATE)), &x->data,
                                       x->v, &x->bytes, read, err);
  const moesz_msz_rec *r[3];
  size_t sz[3], total = 0;
  for (int m = 0; m < 3; m++) {
    r[m] = moesz_msz_expert(k->c, L, e, 0, (moesz_mat)(MOESZ_MAT_GATE + m));
    if (!r[m]) return moesz_error_set(err, MOESZ_E_NOTFOUND, "container has no layer %d expert %d matrix %d", L, e, m);
    sz[m] = held_bytes(k, r[m]);
    total += sz[m];
  }
  uint8_t *buf = aligned_alloc(64, (total + 63) / 64 * 64 + 64);
  if (!buf) return moesz_error_set(err, MOESZ_E_NOMEM, "expert cache: out of memory (%zu bytes)", total);
  size_t off = 0;
  *read = 0;
  x->is_cl = 0;
  for (int m = 0; m < 3; m++) {
    moesz_dtype dt = out_dtype(k, r[m]);
    int rc = dt == MOESZ_VIEW_CL ? hold_cl(k, r[m], buf + off, &x->cl[m], err)
                                 : moesz_msz_read(k->c, r[m], dt, buf + off, err);
    if (rc) {
      for (int j = 0; j < m; j++)
        if (out_dtype(k, r[j]) == MOESZ_VIEW_CL) moesz_cl_free(&x->cl[j]);
      free(buf);
      return rc;
    }
    x->v[m].data = dt == MOESZ_VIEW_CL ? (const void *)&x->cl[m] : (const void *)(buf + off);
    if (dt == MOESZ_VIEW_CL) x->is_cl = 1;
    x->v[m].dtype = dt;
    x->v[m].rows = r[m]->shape[0];
    x->v[m].cols = r[m]->shape[1];
    x->v[m].ld = r[m]->shape[1];
    x->v[m].transposed = 0;
    off += sz[m];
    *read += r[m]->len;
  }
  x->data = buf;
  x->bytes = total;
  return MOESZ_OK;
}

/* Size an entry will take once decoded (for make_room before decoding). */
static uint64_t entry_bytes(moesz_cache *k, int L, int e) {
  uint64_t total = 0;
  for (int m = 0; m < 3; m++) {
    const moesz_msz_rec *r = moesz_msz_expert(k->c, L, e, 0, (moesz_mat)(MOESZ_MAT_GATE + m));
    if (r) total += held_bytes(k, r);
  }
  return total;
}

/* Loads an EMPTY entry (mutex held on entry and exit, released while decoding). */
static int load(moesz_cache *k, int L, int e, entry *x, int prefetch, moesz_error *err) {
  make_room(k, entry_bytes(k, L, e));
  x->state = E_LOADING;
  pthread_mutex_unlock(&k->mu);
  double t0 = moesz_time_now();
  uint64_t read = 0;
  int rc = decode(k, L, e, x, &read, err);
  double dt = moesz_time_now() - t0;
  pthread_mutex_lock(&k->mu);
  k->st.decode_seconds += dt;
  if (rc) {
    x->state = E_EMPTY;
  } else {
    x->state = E_READY;
    x->prefetched = prefetch;
    if (prefetch) {
      /* a prefetched expert is about to be used: stamp it as recent so the
       * policy does not evict it first (it has never been requested) */
      x->last_use = k->clock;
      if (x->freq < 1) { x->freq = 1; x->freq_t = k->clock; }
    }
    k->st.bytes_read += read;
    k->st.bytes_decoded += x->bytes;
    k->st.resident_bytes += x->bytes;
    if (k->st.resident_bytes > k->st.peak_bytes) k->st.peak_bytes = k->st.resident_bytes;
  }
  pthread_cond_broadcast(&k->ready);
  return rc;
}

int moesz_cache_get(moesz_cache *k, int L, int e, moesz_matview mats[3], moesz_error *err) {
  if (L < 0 || L >= k->n_layers || e < 0 || e >= k->n_experts)
    return moesz_error_set(err, MOESZ_E_RANGE, "expert cache: layer %d expert %d out of range", L, e);
  pthread_mutex_lock(&k->mu);
  entry *x = at(k, L, e);
  k->st.gets++;
  k->clock++;
  x->last_use = k->clock;
  if (k->o.policy == MOESZ_CACHE_LFRU)
    x->freq = x->freq * exp2(-(double)(k->clock - x->freq_t) / LFRU_HALF_LIFE);
  x->freq += 1;
  x->freq_t = k->clock;
  int rc = MOESZ_OK;
  double t0 = moesz_time_now();
  if (x->state == E_READY) {
    k->st.hits++;
  } else if (x->state == E_LOADING) {
    while (x->state == E_LOADING) pthread_cond_wait(&k->ready, &k->mu);
    /* ready now, unless the load failed or the entry was evicted meanwhile */
    if (x->state == E_READY) k->st.prefetch_waits++;
    else { k->st.misses++; rc = load(k, L, e, x, 0, err); }
    k->st.stall_seconds += moesz_time_now() - t0;
  } else {
    k->st.misses++;
    rc = load(k, L, e, x, 0, err);
    k->st.stall_seconds += moesz_time_now() - t0;
  }
  if (!rc) {
    if (x->prefetched) { k->st.prefetch_used++; x->prefetched = 0; }
    x->pins++;
    memcpy(mats, x->v, sizeof x->v);
  }
  pthread_mutex_unlock(&k->mu);
  return rc;
}

void moesz_cache_release(moesz_cache *k, int L, int e) {
  if (L < 0 || L >= k->n_layers || e < 0 || e >= k->n_experts) return;
  pthread_mutex_lock(&k->mu);
  entry *x = at(k, L, e);
  if (x->pins > 0) x->pins--;
  pthread_mutex_unlock(&k->mu);
}

static void *prefetch_main(void *arg) {
  moesz_cache *k = arg;
  pthread_mutex_lock(&k->mu);
  for (;;) {
    while (!k->quit && k->qlen == 0) pthread_cond_wait(&k->work, &k->mu);
    if (k->quit) break;
    int32_t i = k->queue[k->qhead];
    k->qhead = (k->qhead + 1) % PF_QUEUE;
    k->qlen--;
    entry *x = &k->ent[i];
    if (x->state != E_EMPTY) continue;
    moesz_error err;
    load(k, i / k->n_experts, i % k->n_experts, x, 1, &err);
  }
  pthread_mutex_unlock(&k->mu);
  return NULL;
}

void moesz_cache_prefetch(moesz_cache *k, int L, const int32_t *experts, int n) {
  if (!k->nth || L < 0 || L >= k->n_layers) return;
  pthread_mutex_lock(&k->mu);
  for (int j = 0; j < n; j++) {
    if (experts[j] < 0 || experts[j] >= k->n_experts) continue;
    int32_t i = L * k->n_experts + experts[j];
    if (k->ent[i].state != E_EMPTY || k->qlen == PF_QUEUE) continue;
    int dup = 0;
    for (int q = 0; q < k->qlen && !dup; q++) dup = k->queue[(k->qhead + q) % PF_QUEUE] == i;
    if (dup) continue;
    k->queue[(k->qhead + k->qlen) % PF_QUEUE] = i;
    k->qlen++;
    k->st.prefetch_issued++;
  }
  pthread_cond_broadcast(&k->work);
  pthread_mutex_unlock(&k->mu);
}

void moesz_cache_observe(moesz_cache *k, int L, const int32_t *experts, int n_experts,
                         const float *hidden, int n_tokens) {
  (void)experts; (void)n_experts;
  if (!k->nth || !hidden || n_tokens <= 0) return;
  int next = -1;
  for (int j = L + 1; j < k->n_layers; j++)
    if (k->router[j]) { next = j; break; }
  if (next < 0) return;
  /* Route the current MoE input through the next MoE layer's router: the
   * union of each token's top-k (the last 16 tokens of a long batch). */
  const float *R = k->router[next];
  int E = k->n_experts, K = k->top_k, d = k->d;
  int t0 = n_tokens > 16 ? n_tokens - 16 : 0;
  uint8_t *want = calloc((size_t)E, 1);
  float *lg = malloc((size_t)E * sizeof *lg);
  if (!want || !lg) { free(want); free(lg); return; }
  for (int t = t0; t < n_tokens; t++) {
    const float *h = hidden + (size_t)t * (size_t)d;
    for (int e = 0; e < E; e++) {
      const float *w = R + (size_t)e * (size_t)d;
      float s = 0;
      for (int i = 0; i < d; i++) s += w[i] * h[i];
      lg[e] = s;
    }
    for (int kk = 0; kk < K; kk++) {
      int best = -1;
      for (int e = 0; e < E; e++)
        if (!want[e] && (best < 0 || lg[e] > lg[best])) best = e;
      if (best < 0) break;
      want[best] = 1;
      lg[best] = -INFINITY;
    }
  }
  int32_t *list = malloc((size_t)E * sizeof *list);
  int n = 0;
  for (int e = 0; list && e < E; e++)
    if (want[e]) list[n++] = e;
  if (list) moesz_cache_prefetch(k, next, list, n);
  free(list);
  free(want);
  free(lg);
}

int moesz_cache_create(const moesz_msz *c, const moesz_cache_opts *o, moesz_cache **out, moesz_error *err) {
  *out = NULL;
  const moesz_config *cfg = moesz_msz_config(c);
  if (cfg->n_experts <= 0) return moesz_error_set(err, MOESZ_E_ARG, "expert cache: the model has no routed experts");
  moesz_cache *k = calloc(1, sizeof *k);
  if (!k) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  k->c = c;
  if (o) k->o = *o;
  else k->o.dtype = MOESZ_DT_COUNT;
  k->n_layers = cfg->n_layers;
  k->n_experts = cfg->n_experts;
  k->top_k = cfg->top_k > 0 ? cfg->top_k : 1;
  k->d = cfg->hidden;
  pthread_mutex_init(&k->mu, NULL);
  pthread_cond_init(&k->ready, NULL);
  pthread_cond_init(&k->work, NULL);
  k->ent = calloc((size_t)k->n_layers * (size_t)k->n_experts, sizeof *k->ent);
  k->router = calloc((size_t)k->n_layers, sizeof *k->router);
  if (!k->ent || !k->router) { moesz_cache_destroy(k); return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); }
  moesz_runtime_blob_src src = {blob_get, NULL, k};
  uint64_t pinned, rd;
  int rc = moesz_runtime_resmoe_create(c, &src, &k->rm, &pinned, &rd, err);
  if (rc) { moesz_cache_destroy(k); return rc; }
  k->st.pinned_bytes = k->st.resident_bytes = k->st.peak_bytes = pinned;   /* barycenters count in the budget */
  k->st.bytes_read = rd;
  if (k->o.prefetch) {
    const moesz_st *st = moesz_msz_dense(c);
    for (size_t i = 0; i < moesz_st_count(st); i++) {
      const moesz_tensor *t = moesz_st_at(st, i);
      moesz_tensor_role r;
      moesz_tensor_classify(cfg, t->name, &r);
      if (r.role != MOESZ_ROLE_ROUTER || r.layer < 0 || r.layer >= k->n_layers || t->ndim != 2 ||
          t->shape[0] != k->n_experts || t->shape[1] != k->d)
        continue;
      k->router[r.layer] = malloc(t->numel * sizeof(float));
      if (!k->router[r.layer] || moesz_to_f32(t->dtype, t->data, k->router[r.layer], t->numel)) {
        moesz_cache_destroy(k);
        return moesz_error_set(err, MOESZ_E_NOMEM, "expert cache: router weights");
      }
    }
    int nth = k->o.prefetch_threads > 0 ? k->o.prefetch_threads : 1;
    k->th = calloc((size_t)nth, sizeof *k->th);
    for (int i = 0; k->th && i < nth; i++)
      if (pthread_create(&k->th[i], NULL, prefetch_main, k) == 0) k->nth++;
  }
  *out = k;
  return MOESZ_OK;
}

void moesz_cache_destroy(moesz_cache *k) {
  if (!k) return;
  pthread_mutex_lock(&k->mu);
  k->quit = 1;
  pthread_cond_broadcast(&k->work);
  pthread_mutex_unlock(&k->mu);
  for (int i = 0; i < k->nth; i++) pthread_join(k->th[i], NULL);
  free(k->th);
  moesz_runtime_resmoe_destroy(k->rm);
  if (k->ent)
    for (size_t i = 0; i < (size_t)k->n_layers * (size_t)k->n_experts; i++) free_entry_data(&k->ent[i]);
  if (k->router)
    for (int L = 0; L < k->n_layers; L++) free(k->router[L]);
  free(k->router);
  free(k->ent);
  pthread_mutex_destroy(&k->mu);
  pthread_cond_destroy(&k->ready);
  pthread_cond_destroy(&k->work);
  free(k);
}

void moesz_cache_stats_get(moesz_cache *k, moesz_cache_stats *out) {
  pthread_mutex_lock(&k->mu);
  *out = k->st;
  pthread_mutex_unlock(&k->mu);
}

static const char *POLICY[] = {"lru", "lfu", "lfru"};
const char *moesz_cache_policy_name(moesz_cache_policy p) { return (unsigned)p < 3 ? POLICY[p] : "?"; }
int moesz_cache_policy_parse(const char *s, moesz_cache_policy *out) {
  for (int i = 0; i < 3; i++)
    if (!strcmp(s, POLICY[i])) { *out = (moesz_cache_policy)i; return MOESZ_OK; }
  return MOESZ_E_ARG;
}
