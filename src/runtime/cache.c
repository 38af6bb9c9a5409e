/* runtime/cache.c - owns the expert cache: decoded routed experts held under
 * a byte budget, pinned while the forward pass uses them, evicted by LRU, LFU
 * or LFRU; misses load on the caller's thread, prefetch requests on
 * background threads; next-layer prediction through the next MoE layer's
 * router, backing off a layer whose predictions mostly go unused; counters for hits, bytes and stall time (split into link, decode
 * and waiting on prefetch).
 *
 * A load is two steps kept apart: fetch_blobs() gets an expert's stored bytes
 * from the store (src/runtime/store.c: pread / O_DIRECT behind the link
 * model, or the container's mapping), and decode_entry() turns those bytes
 * into the entry's matrices. A new blob kind or cache dtype changes only
 * decode_entry() (and entry_bytes()). Compute-layout blobs read in place
 * (store in mmap mode) are parsed where they lie: the entry then owns no
 * buffer (in_place()).
 *
 * Budget: an entry's decoded bytes count from the moment its load is
 * admitted (before reading), so loads in flight and prefetched experts are
 * inside resident_bytes, which never exceeds the budget unless pinned
 * experts alone fill it (counted in over_budget). A prefetch that does not
 * fit after evicting unpinned experts is dropped (prefetch_refused); a
 * request that does not fit waits for loads in flight to land, then evicts.
 *
 * Locking: one mutex guards every entry's state and the counters; reading
 * and decoding run unlocked with the entry marked LOADING, and waiters sleep
 * on `ready`. Demand loads may run on several threads at once (a provider
 * getting a layer's experts together): one at a time decodes through
 * miss_ctx, the others on their own thread. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <cjson/cJSON.h>
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
#define SLAB_MMAP (256u << 10) /* entry buffers this large come straight from mmap */
#define PF_MIN_ACC 0.5f        /* a layer whose predictions are used less often than this is not prefetched... */
#define PF_PROBE 8             /* ...but for one prediction in this many, which keeps measuring it */
#define PF_ALPHA 0.125f        /* weight of the newest outcome in a layer's running accuracy */

struct moesz_cache {
  const moesz_msz *c;
  moesz_cache_opts o;
  moesz_store *store;        /* the slow tier (owned) */
  moesz_codec_ctx *miss_ctx; /* misses decode codec streams through it (miss_threads; the forward pass's thread) */
  int miss_busy;             /* a demand load holds miss_ctx (others, loading at the same time, go without) */
  int n_layers, n_experts, top_k, d;
  entry *ent;                /* [n_layers * n_experts] */
  pthread_mutex_t mu;
  pthread_cond_t ready;      /* an entry left LOADING */
  pthread_cond_t work;       /* prefetch queue not empty / quit */
  uint64_t clock;
  int loading;               /* entries LOADING */
  moesz_cache_stats st;
  int32_t queue[PF_QUEUE];   /* entry indices to prefetch (ring) */
  int qhead, qlen, quit;
  pthread_t *th;             /* [nth] prefetch decoders */
  int nth;
  float **router;            /* [n_layers] router weights [n_experts, d] in f32, NULL for dense layers */
  char budget_note[256];     /* how --mem auto chose the budget */
  moesz_runtime_resmoe *rm;  /* ResMoE layers: pinned barycenters (rt_resmoe.c), NULL if none */
  moesz_cache_layer_stats *lst; /* [n_layers] the counters per layer */
  struct { float acc; uint32_t seen; } *pf; /* [n_layers] running share of prefetches used (1 at start),
                                             * predictions seen while below PF_MIN_ACC */
};

static entry *at(moesz_cache *k, int L, int e) { return &k->ent[(size_t)L * (size_t)k->n_experts + (size_t)e]; }

/* A prefetched expert of layer L was used (1) or evicted unused (0). */
static void pf_outcome(moesz_cache *k, int L, int used) { k->pf[L].acc += PF_ALPHA * ((float)used - k->pf[L].acc); }

/* Entry buffers: large ones are mapped and unmapped, so resident memory
 * follows the budget exactly (no allocator arenas holding freed experts).
 * A mapping's length is rounded up to a granule of 1/128 to 1/256 of it, so
 * experts of nearly the same size (compute layouts differ by a few KB) share
 * one length and an evicted expert's mapping is handed to the next load
 * (drop()) instead of being unmapped and faulted in again. */
static size_t slab_len(size_t n) {
  if (n < SLAB_MMAP) return n;
  size_t g = 64u << 10;
  while (g < n / 256) g *= 2;
  return (n + g - 1) / g * g;
}
static void *slab_alloc(size_t n) {
  if (n < SLAB_MMAP) return aligned_alloc(64, (n + 63) / 64 * 64 + 64);   /* compute layouts need 64 */
  void *p = mmap(NULL, slab_len(n), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}
static void slab_free(void *p, size_t n) {
  if (!p) return;
  if (n < SLAB_MMAP) free(p);
  else munmap(p, slab_len(n));
}

/* What a blob becomes in the cache: a decoded dtype, or MOESZ_VIEW_CL (the
 * compute layout kept as stored; compute blobs by default). */
static moesz_dtype dtype_for(moesz_dtype want, const moesz_msz_rec *r) {
  if (r->method == MOESZ_MSZ_RESMOE && want == MOESZ_VIEW_CL) return MOESZ_DT_F32;   /* ResMoE restores to F32 */
  if (want == MOESZ_DT_F32 || want == MOESZ_DT_BF16 || want == MOESZ_DT_F16 || want == MOESZ_VIEW_CL) return want;
  if (r->method == MOESZ_MSZ_COMPUTE) return MOESZ_VIEW_CL;
  return (r->dtype == MOESZ_DT_BF16 || r->dtype == MOESZ_DT_F16) ? r->dtype : MOESZ_DT_F32;
}
static moesz_dtype out_dtype(const moesz_cache *k, const moesz_msz_rec *r) { return dtype_for(k->o.dtype, r); }

/* Bytes a blob takes in the cache (64-byte aligned slots). */
static uint64_t held_bytes(moesz_dtype want, const moesz_msz_rec *r) {
  moesz_dtype dt = dtype_for(want, r);
  if (dt == MOESZ_VIEW_CL) return (r->len + 63) / 64 * 64 + moesz_cl_parse_bytes(r->shape[0]);
  return r->raw_bytes / moesz_dtype_size(r->dtype) * moesz_dtype_size(dt);
}

/* Bytes expert (L, e) of c takes in the cache for dtype want (0 if absent);
 * its stored bytes in *stored. */
static uint64_t expert_size(const moesz_msz *c, moesz_dtype want, int L, int e, uint64_t *stored) {
  uint64_t total = 0;
  if (stored) *stored = 0;
  for (int m = 0; m < 3; m++) {
    const moesz_msz_rec *r = moesz_msz_expert(c, L, e, 0, (moesz_mat)(MOESZ_MAT_GATE + m));
    if (!r) return 0;
    total += held_bytes(want, r);
    if (stored) *stored += r->len;
  }
  return total;
}

static void free_entry_data(entry *x) {
  if (x->is_cl)
    for (int m = 0; m < 3; m++) moesz_cl_free(&x->cl[m]);
  x->is_cl = 0;
  slab_free(x->data, x->bytes);
  x->data = NULL;
}

/* A compute-layout blob (its stored bytes, verified by the store) parsed
 * into cl: copied to dst (64-byte aligned) first, or, with dst NULL, in place
 * (the store's mapping, which outlives the entry). */
static int hold_cl(const moesz_msz_rec *r, const void *blob, uint8_t *dst, moesz_cl *cl, moesz_error *err) {
  if (r->method != MOESZ_MSZ_COMPUTE)
    return moesz_error_set(err, MOESZ_E_UNSUPPORTED,
                           "blob %s: the compute layout needs a container written with --codec compute", r->name);
  if (!dst && (uintptr_t)blob % 64)
    return moesz_error_set(err, MOESZ_E_FORMAT, "blob %s: not 64-byte aligned in the container", r->name);
  if (dst) memcpy(dst, blob, r->len);
  int rc = moesz_cl_parse_ex(dst ? (const void *)dst : blob, r->len, MOESZ_CL_VERIFIED, cl, err);
  if (rc) return moesz_error_wrap(err, rc, "blob %s", r->name);
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

/* Evicts x (mutex held); hands its buffer to *reuse when *reuse is empty
 * and the buffer has the length a reuse_bytes one would get, else frees it. */
static void drop(moesz_cache *k, entry *x, void **reuse, uint64_t reuse_bytes) {
  if (x->is_cl)
    for (int m = 0; m < 3; m++) moesz_cl_free(&x->cl[m]);
  x->is_cl = 0;
  if (reuse && !*reuse && slab_len(x->bytes) == slab_len(reuse_bytes)) *reuse = x->data;
  else slab_free(x->data, x->bytes);
  x->data = NULL;
  x->state = E_EMPTY;
  k->st.resident_bytes -= x->bytes;
  k->st.evictions++;
  if (x->prefetched) {
    k->st.prefetch_wasted++;
    pf_outcome(k, (int)((size_t)(x - k->ent) / (size_t)k->n_experts), 0);
  }
  x->prefetched = 0;
}

/* Makes room for need bytes (mutex held; may wait on `ready`). Evicts
 * unpinned ready entries by policy; a request that still does not fit
 * waits for loads in flight (other than its own) and tries again, and goes
 * over the budget (counted) only when nothing else can give way; a
 * prefetch gives up instead. Returns 0 when the load may go ahead. */
static int make_room(moesz_cache *k, uint64_t need, int prefetch, void **reuse, double *waited) {
  if (!k->o.budget_bytes) return 0;
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
    if (victim) { drop(k, victim, reuse, need); continue; }
    if (prefetch) { k->st.prefetch_refused++; return -1; }
    if (k->loading > 1) {
      double w0 = moesz_time_now();
      pthread_cond_wait(&k->ready, &k->mu);
      *waited += moesz_time_now() - w0;
      continue;
    }
    k->st.over_budget++;
    return 0;
  }
  return 0;
}

/* One blob's stored bytes from the store (ResMoE barycenters, pinned at create). */
static int blob_get(void *ctx, const moesz_msz_rec *r, const void **data, void **token, moesz_error *err) {
  moesz_cache *k = ctx;
  return moesz_store_fetch(k->store, &r, 1, data, (moesz_store_buf **)token, NULL, err);
}
static void blob_put(void *ctx, void *token) { moesz_store_release(((moesz_cache *)ctx)->store, token); }

/* Decoded bytes of expert (L, e) in the cache's dtype; 0 if absent. */
static uint64_t entry_bytes(moesz_cache *k, int L, int e) { return expert_size(k->c, k->o.dtype, L, e, NULL); }

/* I/O: the stored bytes of expert (L, e)'s three blobs, from the store. */
static int fetch_blobs(moesz_cache *k, int L, int e, const moesz_msz_rec *r[3], const void *data[3],
                       moesz_store_buf **buf, moesz_store_io *io, moesz_error *err) {
  for (int m = 0; m < 3; m++) {
    r[m] = moesz_msz_expert(k->c, L, e, 0, (moesz_mat)(MOESZ_MAT_GATE + m));
    if (!r[m]) return moesz_error_set(err, MOESZ_E_NOTFOUND, "container has no layer %d expert %d matrix %d", L, e, m);
  }
  /* a ResMoE expert's three matrices share one residual blob: fetched once */
  return moesz_store_fetch(k->store, r, r[0]->method == MOESZ_MSZ_RESMOE ? 1 : 3, data, buf, io, err);
}

/* Bytes to entry: decodes the three blobs (verified stored bytes) into buf
 * (entry_bytes() long), or keeps compute-layout blobs as they are (copied
 * into buf, or in place when buf is NULL: see in_place()), and sets x's
 * views. The one place that knows blob kinds and cache dtypes. */
static int decode_entry(moesz_cache *k, const moesz_msz_rec *const r[3], const void *const data[3], uint8_t *buf,
                        entry *x, moesz_codec_ctx *cx, moesz_error *err) {
  size_t off = 0;
  x->is_cl = 0;
  if (r[0]->method == MOESZ_MSZ_RESMOE)
    return moesz_runtime_resmoe_restore(k->rm, r[0]->layer, r[0]->expert, data[0], out_dtype(k, r[0]), buf, x->v, err);
  for (int m = 0; m < 3; m++) {
    moesz_dtype dt = out_dtype(k, r[m]);
    int rc = dt == MOESZ_VIEW_CL ? hold_cl(r[m], data[m], buf ? buf + off : NULL, &x->cl[m], err)
                                 : moesz_msz_decode_ctx(k->c, r[m], data[m], dt, buf + off, cx, err);
    if (!rc && dt == MOESZ_DT_F16 && r[m]->dtype != MOESZ_DT_F16) {
      /* F16 holds |x| <= 65504: a weight beyond it would become Inf */
      const uint16_t *h = (const uint16_t *)(const void *)(buf + off);
      size_t nh = held_bytes(k->o.dtype, r[m]) / 2;
      for (size_t i = 0; i < nh; i++)
        if ((h[i] & 0x7fff) == 0x7c00) {
          rc = moesz_error_set(err, MOESZ_E_RANGE, "expert cache: layer %d expert %d %s holds a value beyond "
                               "F16's range (|x| > 65504); decode to bf16 or f32 instead", r[m]->layer,
                               r[m]->expert, r[m]->name);
          break;
        }
    }
    if (rc) {
      for (int j = 0; j < m; j++)
        if (out_dtype(k, r[j]) == MOESZ_VIEW_CL) moesz_cl_free(&x->cl[j]);
      return rc;
    }
    x->v[m].data = dt == MOESZ_VIEW_CL ? (const void *)&x->cl[m] : (const void *)(buf + off);
    if (dt == MOESZ_VIEW_CL) x->is_cl = 1;
    x->v[m].dtype = dt;
    x->v[m].rows = r[m]->shape[0];
    x->v[m].cols = r[m]->shape[1];
    x->v[m].ld = r[m]->shape[1];
    x->v[m].transposed = 0;
    off += held_bytes(k->o.dtype, r[m]);
  }
  return MOESZ_OK;
}

/* 1 when expert (L, e) is held without a copy: its three blobs stay compute
 * layouts and the store reads in place from the container's mapping (the
 * entry then owns no buffer; its bytes are the mapped pages it uses, counted
 * against the budget like a copy). */
static int in_place(moesz_cache *k, int L, int e) {
  if (!moesz_store_in_place(k->store)) return 0;
  for (int m = 0; m < 3; m++) {
    const moesz_msz_rec *r = moesz_msz_expert(k->c, L, e, 0, (moesz_mat)(MOESZ_MAT_GATE + m));
    if (!r || out_dtype(k, r) != MOESZ_VIEW_CL) return 0;
  }
  return 1;
}

enum { LOAD_DEMAND = 0, LOAD_PREFETCH, LOAD_PRELOAD };

/* Loads entry (L, e), which the caller found EMPTY (mutex held on entry and
 * exit, released while reading and decoding). kind: LOAD_DEMAND on the
 * forward pass's thread (its time is stall time), LOAD_PREFETCH on a
 * prefetch thread, LOAD_PRELOAD for a warm start (the caller checked that it
 * fits). Returns MOESZ_OK, an error, or 1 when a prefetch was refused for
 * lack of room. */
static int load(moesz_cache *k, int L, int e, entry *x, int kind, moesz_error *err) {
  int prefetch = kind == LOAD_PREFETCH;
  uint64_t need = entry_bytes(k, L, e);
  if (!need) return moesz_error_set(err, MOESZ_E_NOTFOUND, "container has no layer %d expert %d", L, e);
  x->state = E_LOADING;
  k->loading++;
  void *buf = NULL;
  double waited = 0;
  int refused = make_room(k, need, prefetch, &buf, &waited);
  if (kind == LOAD_DEMAND) k->st.stall_prefetch_seconds += waited;   /* waiting for loads in flight to land */
  if (refused) {
    slab_free(buf, need);
    x->state = E_EMPTY;
    k->loading--;
    pthread_cond_broadcast(&k->ready);
    return 1;
  }
  k->st.resident_bytes += need;    /* admitted: counts from now on */
  if (k->st.resident_bytes > k->st.peak_bytes) k->st.peak_bytes = k->st.resident_bytes;
  /* a miss decodes on the caller and the cores its forward pass leaves idle
   * meanwhile (miss_ctx); demand loads running at once take turns with it */
  moesz_codec_ctx *cx = NULL;
  if (kind == LOAD_DEMAND && k->miss_ctx && !k->miss_busy) {
    cx = k->miss_ctx;
    k->miss_busy = 1;
  }
  pthread_mutex_unlock(&k->mu);

  int rc = MOESZ_OK;
  if (in_place(k, L, e)) {
    slab_free(buf, need);   /* a buffer handed over by an eviction is not needed */
    buf = NULL;
  } else if (!buf && !(buf = slab_alloc(need)))
    rc = moesz_error_set(err, MOESZ_E_NOMEM, "expert cache: out of memory (%llu bytes)", (unsigned long long)need);
  const moesz_msz_rec *r[3] = {0};
  const void *data[3] = {0};
  moesz_store_buf *sb = NULL;
  moesz_store_io io = {0};
  if (!rc) rc = fetch_blobs(k, L, e, r, data, &sb, &io, err);
  double t0 = moesz_time_now();
  if (!rc) rc = decode_entry(k, r, data, buf, x, cx, err);
  double dt = moesz_time_now() - t0;
  moesz_store_release(k->store, sb);
  if (rc) { slab_free(buf, need); buf = NULL; }

  pthread_mutex_lock(&k->mu);
  if (cx) k->miss_busy = 0;
  k->loading--;
  k->st.decode_seconds += dt;
  k->st.link_wait_seconds += io.link_wait_seconds;
  k->st.read_seconds += io.read_seconds;
  if (kind == LOAD_DEMAND) {
    k->st.stall_link_seconds += io.link_wait_seconds + io.read_seconds;
    k->st.stall_decode_seconds += dt;
  }
  if (rc) {
    x->state = E_EMPTY;
    k->st.resident_bytes -= need;
    if (prefetch) k->st.prefetch_failed++;
  } else {
    x->state = E_READY;
    x->data = buf;
    x->bytes = need;
    x->prefetched = prefetch;
    if (prefetch) {
      /* a prefetched expert is about to be used: stamp it as recent so the
       * policy does not evict it first (it has never been requested) */
      x->last_use = k->clock;
      if (x->freq < 1) { x->freq = 1; x->freq_t = k->clock; }
    }
    k->st.bytes_read += io.bytes;
    k->st.bytes_decoded += need;
    k->lst[L].bytes_read += io.bytes;
    k->lst[L].bytes_decoded += need;
    if (kind == LOAD_PRELOAD) k->st.preloaded++;
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
  }
  if (x->state != E_READY) {
    int waited = 0;
    /* wait out a prefetch in flight; load if it failed or was evicted */
    while (x->state != E_READY) {
      if (x->state == E_LOADING) {
        double w0 = moesz_time_now();
        pthread_cond_wait(&k->ready, &k->mu);
        k->st.stall_prefetch_seconds += moesz_time_now() - w0;
        waited = 1;
        continue;
      }
      rc = load(k, L, e, x, LOAD_DEMAND, err);
      if (rc) break;
      waited = 0;
    }
    if (!rc && waited) { k->st.prefetch_waits++; k->lst[L].prefetch_waits++; }
    else { k->st.misses++; k->lst[L].misses++; }
    k->st.stall_seconds += moesz_time_now() - t0;
    k->lst[L].stall_seconds += moesz_time_now() - t0;
  } else {
    k->lst[L].hits++;
  }
  k->lst[L].gets++;
  if (!rc) {
    if (x->prefetched) { k->st.prefetch_used++; x->prefetched = 0; pf_outcome(k, L, 1); }
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
    moesz_error err = {0};
    if (load(k, i / k->n_experts, i % k->n_experts, x, LOAD_PREFETCH, &err)) {
      /* counted by load(); the first message is kept for the stats, not dropped */
      if (!k->st.prefetch_error[0])
        snprintf(k->st.prefetch_error, sizeof k->st.prefetch_error, "layer %d expert %d: %.150s", i / k->n_experts,
                 i % k->n_experts, err.msg);
    }
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
    k->lst[L].prefetch_issued++;
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
  /* a layer whose predictions mostly go unused costs link bytes that demand
   * loads need: predict it only now and then, to keep measuring */
  pthread_mutex_lock(&k->mu);
  int skip = k->pf[next].acc < PF_MIN_ACC && k->pf[next].seen++ % PF_PROBE != 0;
  pthread_mutex_unlock(&k->mu);
  if (skip) return;
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
  if (k->o.miss_threads > 1) {
    int rc = moesz_codec_ctx_create(k->o.miss_threads, &k->miss_ctx, err);
    if (rc) { free(k); return rc; }
  }
  k->n_layers = cfg->n_layers;
  k->n_experts = cfg->n_experts;
  k->top_k = cfg->top_k > 0 ? cfg->top_k : 1;
  k->d = cfg->hidden;
  pthread_mutex_init(&k->mu, NULL);
  pthread_cond_init(&k->ready, NULL);
  pthread_cond_init(&k->work, NULL);
  k->ent = calloc((size_t)k->n_layers * (size_t)k->n_experts, sizeof *k->ent);
  k->lst = calloc((size_t)k->n_layers, sizeof *k->lst);
  k->pf = calloc((size_t)k->n_layers, sizeof *k->pf);
  for (int L = 0; k->pf && L < k->n_layers; L++) k->pf[L].acc = 1;
  k->router = calloc((size_t)k->n_layers, sizeof *k->router);
  if (!k->ent || !k->lst || !k->pf || !k->router) { moesz_cache_destroy(k); return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); }
  if (k->o.budget_auto) {
    uint64_t avail;
    moesz_budget_auto ba;
    int rc = moesz_mem_available(NULL, &avail, err);
    if (!rc) rc = moesz_cache_budget_auto(c, &k->o, avail, &ba, err);
    if (rc) { moesz_cache_destroy(k); return moesz_error_wrap(err, rc, "--mem auto"); }
    k->o.budget_bytes = ba.budget;
    snprintf(k->budget_note, sizeof k->budget_note,
             "budget %.1f MB = available %.1f MB - dense %.1f MB - I/O buffers %.1f MB - routers %.1f MB - "
             "reserve %.1f MB%s", (double)ba.budget / 1e6, (double)ba.available / 1e6, (double)ba.dense_bytes / 1e6,
             (double)ba.io_bytes / 1e6, (double)ba.router_bytes / 1e6, (double)ba.reserve_bytes / 1e6,
             ba.clamped > 0 ? ", capped at every expert" : ba.clamped < 0 ? ", raised to one expert" : "");
  }
  k->st.budget_bytes = k->o.budget_bytes;
  int rc = moesz_store_open(c, &k->o.store, &k->store, err);
  if (rc) { moesz_cache_destroy(k); return moesz_error_wrap(err, rc, "expert store"); }
  k->o.store.path = NULL;         /* the caller's string is not kept */
  moesz_runtime_blob_src src = {blob_get, blob_put, k};
  uint64_t pinned, rd;
  if ((rc = moesz_runtime_resmoe_create(c, &src, &k->rm, &pinned, &rd, err))) { moesz_cache_destroy(k); return rc; }
  k->st.pinned_bytes = k->st.resident_bytes = k->st.peak_bytes = pinned;   /* barycenters count in the budget */
  k->st.bytes_read += rd;
  for (int L = 0; L < k->n_layers; L++)
    for (int e = 0; e < k->n_experts; e++) {
      uint64_t b = entry_bytes(k, L, e);
      if (b > k->st.expert_bytes) k->st.expert_bytes = b;
    }
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
  moesz_codec_ctx_free(k->miss_ctx);
  moesz_runtime_resmoe_destroy(k->rm);
  if (k->ent)
    for (size_t i = 0; i < (size_t)k->n_layers * (size_t)k->n_experts; i++) free_entry_data(&k->ent[i]);
  moesz_store_close(k->store);
  if (k->router)
    for (int L = 0; L < k->n_layers; L++) free(k->router[L]);
  free(k->router);
  free(k->ent);
  free(k->lst);
  free(k->pf);
  pthread_mutex_destroy(&k->mu);
  pthread_cond_destroy(&k->ready);
  pthread_cond_destroy(&k->work);
  free(k);
}

void moesz_cache_stats_get(moesz_cache *k, moesz_cache_stats *out) {
  pthread_mutex_lock(&k->mu);
  *out = k->st;
  pthread_mutex_unlock(&k->mu);
  moesz_store_stats_get(k->store, &out->store);
}

moesz_store *moesz_cache_store(moesz_cache *k) { return k->store; }
const char *moesz_cache_budget_note(moesz_cache *k) { return k->budget_note; }

int moesz_cache_budget_auto(const moesz_msz *c, const moesz_cache_opts *o, uint64_t available,
                            moesz_budget_auto *out, moesz_error *err) {
  memset(out, 0, sizeof *out);
  out->available = available;
  const moesz_config *cfg = moesz_msz_config(c);
  moesz_dtype want = o ? o->dtype : MOESZ_DT_COUNT;
  uint64_t stored_max = 0;
  for (int L = 0; L < cfg->n_layers; L++)
    for (int e = 0; e < cfg->n_experts; e++) {
      uint64_t st, b = expert_size(c, want, L, e, &st);
      out->experts_total += b;
      if (b > out->expert_bytes) out->expert_bytes = b;
      if (st > stored_max) stored_max = st;
    }
  if (!out->expert_bytes) return moesz_error_set(err, MOESZ_E_ARG, "the model has no routed experts");
  const moesz_st *dst = moesz_msz_dense(c);
  for (size_t i = 0; i < moesz_st_count(dst); i++) {
    const moesz_tensor *t = moesz_st_at(dst, i);
    out->dense_bytes += t->nbytes;
    moesz_tensor_role r;
    moesz_tensor_classify(cfg, t->name, &r);
    if (o && o->prefetch && r.role == MOESZ_ROLE_ROUTER) out->router_bytes += t->numel * sizeof(float);
  }
  out->io_bytes = 2 * stored_max;
  out->reserve_bytes = available / 8 > (512ull << 20) ? available / 8 : (512ull << 20);
  uint64_t use = out->dense_bytes + out->io_bytes + out->router_bytes + out->reserve_bytes;
  out->budget = available > use ? available - use : 0;
  if (out->budget > out->experts_total) { out->budget = out->experts_total; out->clamped = 1; }
  if (out->budget < out->expert_bytes) { out->budget = out->expert_bytes; out->clamped = -1; }
  return MOESZ_OK;
}

int moesz_mem_available(const char *meminfo, uint64_t *out, moesz_error *err) {
  const char *path = meminfo ? meminfo : "/proc/meminfo";
  FILE *f = fopen(path, "r");
  if (!f) return moesz_error_set(err, MOESZ_E_IO, "%s: cannot read (%s)", path, strerror(errno));
  char line[256];
  unsigned long long kb = 0;
  int found = 0;
  while (!found && fgets(line, sizeof line, f)) {
    char unit[8] = "";
    if (!strncmp(line, "MemAvailable:", 13) && sscanf(line + 13, "%llu %7s", &kb, unit) == 2 && !strcmp(unit, "kB") &&
        kb < (1ull << 44))
      found = 1;
  }
  fclose(f);
  if (!found) return moesz_error_set(err, MOESZ_E_FORMAT, "%s: no MemAvailable line in kB", path);
  *out = (uint64_t)kb * 1024;
  return MOESZ_OK;
}

static const char *POLICY[] = {"lru", "lfu", "lfru"};
const char *moesz_cache_policy_name(moesz_cache_policy p) { return (unsigned)p < 3 ? POLICY[p] : "?"; }
int moesz_cache_policy_parse(const char *s, moesz_cache_policy *out) {
  for (int i = 0; i < 3; i++)
    if (!strcmp(s, POLICY[i])) { *out = (moesz_cache_policy)i; return MOESZ_OK; }
  return MOESZ_E_ARG;
}

/* ------------------------------------------------------------ warm starts */

#define STATE_MAX (64u << 20)

int moesz_cache_state_parse(const char *text, size_t len, int layers, int experts, double *freq,
                            moesz_error *err) {
  if (len > STATE_MAX) return moesz_error_set(err, MOESZ_E_FORMAT, "cache state: %zu bytes is too large", len);
  cJSON *root = cJSON_ParseWithLength(text, len);
  if (!root) return moesz_error_set(err, MOESZ_E_FORMAT, "cache state: not valid JSON");
  int rc = MOESZ_OK;
  const cJSON *jf = cJSON_GetObjectItemCaseSensitive(root, "format");
  const cJSON *jv = cJSON_GetObjectItemCaseSensitive(root, "version");
  const cJSON *jl = cJSON_GetObjectItemCaseSensitive(root, "layers");
  const cJSON *je = cJSON_GetObjectItemCaseSensitive(root, "experts");
  const cJSON *ja = cJSON_GetObjectItemCaseSensitive(root, "freq");
  if (!cJSON_IsString(jf) || strcmp(jf->valuestring, "moesz-cache-state"))
    rc = moesz_error_set(err, MOESZ_E_FORMAT, "cache state: not a moesz cache state");
  else if (!cJSON_IsNumber(jv) || jv->valuedouble != 1)
    rc = moesz_error_set(err, MOESZ_E_FORMAT, "cache state: unsupported version");
  else if (!cJSON_IsNumber(jl) || !cJSON_IsNumber(je) || jl->valuedouble != layers || je->valuedouble != experts)
    rc = moesz_error_set(err, MOESZ_E_FORMAT, "cache state: for a model of %g layers x %g experts, this one has %d x %d",
                         cJSON_IsNumber(jl) ? jl->valuedouble : -1, cJSON_IsNumber(je) ? je->valuedouble : -1, layers, experts);
  else if (!cJSON_IsArray(ja) || (size_t)cJSON_GetArraySize(ja) != (size_t)layers * (size_t)experts)
    rc = moesz_error_set(err, MOESZ_E_FORMAT, "cache state: freq must hold %d values", layers * experts);
  else {
    size_t i = 0;
    for (const cJSON *v = ja->child; v; v = v->next, i++) {
      if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || !isfinite(v->valuedouble)) {
        rc = moesz_error_set(err, MOESZ_E_FORMAT, "cache state: freq[%zu] is not a finite number >= 0", i);
        break;
      }
      freq[i] = v->valuedouble;
    }
  }
  cJSON_Delete(root);
  return rc;
}

int moesz_cache_state_save(moesz_cache *k, const char *path, moesz_error *err) {
  size_t n = (size_t)k->n_layers * (size_t)k->n_experts;
  moesz_buf b = {0};
  char tmp[64], head[160];
  snprintf(head, sizeof head, "{\"format\":\"moesz-cache-state\",\"version\":1,\"layers\":%d,\"experts\":%d,\"freq\":[",
           k->n_layers, k->n_experts);
  moesz_buf_put(&b, head, strlen(head));
  pthread_mutex_lock(&k->mu);
  for (size_t i = 0; i < n; i++) {
    const entry *x = &k->ent[i];
    double f = x->freq;
    if (k->o.policy == MOESZ_CACHE_LFRU) f *= exp2(-(double)(k->clock - x->freq_t) / LFRU_HALF_LIFE);
    int m = snprintf(tmp, sizeof tmp, "%s%.6g", i ? "," : "", f);
    moesz_buf_put(&b, tmp, (size_t)m);
  }
  pthread_mutex_unlock(&k->mu);
  moesz_buf_put(&b, "]}\n", 3);
  if (b.oom) { free(b.p); return moesz_error_set(err, MOESZ_E_NOMEM, "cache state: out of memory"); }
  moesz_afile a;
  int rc = moesz_afile_open(&a, path, err);
  if (!rc) rc = moesz_afile_write(&a, b.p, b.n, err);
  if (!rc) rc = moesz_afile_commit(&a, err);
  else moesz_afile_abort(&a);
  free(b.p);
  return rc;
}

int moesz_cache_state_load(moesz_cache *k, const char *path, int *loaded, uint64_t *bytes, moesz_error *err) {
  if (loaded) *loaded = 0;
  if (bytes) *bytes = 0;
  char *text;
  size_t len;
  int rc = moesz_file_read_all(path, STATE_MAX, &text, &len, err);
  if (rc) return rc;
  size_t n = (size_t)k->n_layers * (size_t)k->n_experts;
  double *freq = malloc(n * sizeof *freq);
  int32_t *ord = malloc(n * sizeof *ord);
  if (!freq || !ord) rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  if (!rc) rc = moesz_cache_state_parse(text, len, k->n_layers, k->n_experts, freq, err);
  free(text);
  if (rc) { free(freq); free(ord); return moesz_error_wrap(err, rc, "%s", path); }
  /* hottest first (insertion order on ties) */
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (freq[i] > 0) ord[m++] = (int32_t)i;
  for (size_t i = 1; i < m; i++)
    for (size_t j = i; j > 0 && freq[ord[j]] > freq[ord[j - 1]]; j--) { int32_t t = ord[j]; ord[j] = ord[j - 1]; ord[j - 1] = t; }
  pthread_mutex_lock(&k->mu);
  for (size_t i = 0; i < n; i++) { k->ent[i].freq = freq[i]; k->ent[i].freq_t = k->clock; }
  for (size_t j = 0; j < m && !rc; j++) {
    int L = ord[j] / k->n_experts, e = ord[j] % k->n_experts;
    entry *x = &k->ent[ord[j]];
    uint64_t need = entry_bytes(k, L, e);
    if (!need || x->state != E_EMPTY) continue;
    if (k->o.budget_bytes && k->st.resident_bytes + need > k->o.budget_bytes) break;
    rc = load(k, L, e, x, LOAD_PRELOAD, err);
    if (!rc) {
      if (loaded) (*loaded)++;
      if (bytes) *bytes += need;
    }
  }
  pthread_mutex_unlock(&k->mu);
  free(freq);
  free(ord);
  return rc;
}

int moesz_cache_layers(const moesz_cache *k) { return k->n_layers; }
int moesz_cache_experts(const moesz_cache *k) { return k->n_experts; }

int moesz_cache_layer_stats_get(moesz_cache *k, int layer, moesz_cache_layer_stats *out, uint8_t *states) {
  if (layer < 0 || layer >= k->n_layers) return MOESZ_E_RANGE;
  pthread_mutex_lock(&k->mu);
  *out = k->lst[layer];
  for (int e = 0; states && e < k->n_experts; e++) {
    const entry *x = at(k, layer, e);
    states[e] = x->state == E_READY ? MOESZ_EXPERT_RESIDENT : x->state == E_LOADING ? MOESZ_EXPERT_LOADING
                                                                                    : MOESZ_EXPERT_STORED;
  }
  pthread_mutex_unlock(&k->mu);
  return MOESZ_OK;
}
