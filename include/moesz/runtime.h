/* moesz/runtime.h - serving experts under a memory budget: the expert cache
 * (fast tier: decoded experts, byte budget, LRU / LFU / LFRU eviction, pinned
 * while in use), fed from the .msz container (slow tier: compressed blobs),
 * with next-layer prediction and background prefetch, and honest counters.
 * Owned by src/runtime. */
#ifndef MOESZ_RUNTIME_H
#define MOESZ_RUNTIME_H
#include "moesz/base.h"
#include "moesz/container.h"

typedef enum moesz_cache_policy {
  MOESZ_CACHE_LRU = 0,   /* evict the least recently used */
  MOESZ_CACHE_LFU,       /* evict the least frequently used (ties: least recent) */
  MOESZ_CACHE_LFRU       /* frequency with decay: score = uses / 2^(age / half_life) */
} moesz_cache_policy;

typedef struct moesz_cache_opts {
  uint64_t budget_bytes;      /* decoded experts resident at once; 0 = unlimited */
  moesz_cache_policy policy;
  moesz_dtype dtype;          /* decoded dtype: F32, BF16, F16, MOESZ_VIEW_CL (the compute layout, from
                                 compute blobs: kernels multiply from it), or MOESZ_DT_COUNT = as
                                 stored (compute blobs stay in the compute layout) */
  int prefetch;               /* 1: predict the next MoE layer's experts and decode them ahead */
  int prefetch_threads;       /* background decoders (default 1) */
} moesz_cache_opts;

typedef struct moesz_cache_stats {
  uint64_t gets;              /* expert requests by the forward pass */
  uint64_t hits;              /* found decoded (incl. prefetched) */
  uint64_t misses;            /* decoded on demand (the forward pass waited) */
  uint64_t prefetch_issued;   /* experts queued for prefetch */
  uint64_t prefetch_used;     /* prefetched experts later requested while resident */
  uint64_t prefetch_wasted;   /* prefetched experts evicted unused */
  uint64_t prefetch_waits;    /* requests that waited for an in-flight prefetch */
  uint64_t evictions;
  uint64_t over_budget;       /* times pinned experts alone exceeded the budget */
  uint64_t bytes_read;        /* compressed bytes read from the container */
  uint64_t bytes_decoded;     /* decoded bytes produced */
  uint64_t resident_bytes, peak_bytes;
  uint64_t pinned_bytes;      /* ResMoE barycenters: decoded at open, never evicted, part of resident */
  double stall_seconds;       /* time the forward pass waited for experts */
  double decode_seconds;      /* total decode time (any thread) */
} moesz_cache_stats;

typedef struct moesz_cache moesz_cache;

/* c and the model must outlive the cache. */
int moesz_cache_create(const moesz_msz *c, const moesz_cache_opts *o, moesz_cache **out, moesz_error *err);
void moesz_cache_destroy(moesz_cache *k);
/* Pins routed expert (layer, expert) and returns its gate, up, down views
 * (logical orientation, row-major, decoded dtype). */
int moesz_cache_get(moesz_cache *k, int layer, int expert, moesz_matview mats[3], moesz_error *err);
void moesz_cache_release(moesz_cache *k, int layer, int expert);
/* Tells the cache what layer L routed (for frequency statistics) and its MoE
 * input hidden [n_tokens, d]; with prefetch on, predicts the next MoE layer's
 * experts through that layer's router and queues them for decoding. */
void moesz_cache_observe(moesz_cache *k, int layer, const int32_t *experts, int n_experts,
                         const float *hidden, int n_tokens);
/* Queues experts of layer for background decoding (no-op without prefetch threads). */
void moesz_cache_prefetch(moesz_cache *k, int layer, const int32_t *experts, int n);
void moesz_cache_stats_get(moesz_cache *k, moesz_cache_stats *out);
const char *moesz_cache_policy_name(moesz_cache_policy p);
int moesz_cache_policy_parse(const char *s, moesz_cache_policy *out);
#endif
