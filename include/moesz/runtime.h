/* moesz/runtime.h - serving experts under a memory budget: the expert cache
 * (fast tier: decoded experts, byte budget, LRU / LFU / LFRU eviction, pinned
 * while in use), fed from the store (slow tier: the .msz container's blobs
 * read with pread / O_DIRECT into pooled buffers behind a link model), with
 * next-layer prediction and background prefetch, and honest counters.
 * Owned by src/runtime. */
#ifndef MOESZ_RUNTIME_H
#define MOESZ_RUNTIME_H
#include "moesz/base.h"
#include "moesz/container.h"

/* ------------------------------------------------------------ the store */

/* The slow tier: where expert blobs' stored bytes come from. Reads go
 * through a link model (bandwidth and latency) so any machine can reproduce
 * a given PCIe, NVMe or network link. Owned by src/runtime/store.c. */
typedef enum moesz_store_mode {
  MOESZ_STORE_DIRECT = 0,   /* pread with O_DIRECT where the file system allows it, else buffered (noted) */
  MOESZ_STORE_BUFFERED,     /* pread through the page cache */
  MOESZ_STORE_MMAP          /* in place from the container's mapping (the in-memory path) */
} moesz_store_mode;

typedef struct moesz_store_opts {
  const char *path;         /* the container's file (pread modes); NULL = MOESZ_STORE_MMAP */
  moesz_store_mode mode;
  double link_gbps;         /* link bandwidth in GB/s (1e9 bytes/s); 0 = unthrottled */
  double link_latency_us;   /* added to every read request; 0 = none */
} moesz_store_opts;

/* Bounds checked by moesz_store_open (and the CLI). */
#define MOESZ_LINK_GBPS_MIN 0.001       /* 1 MB/s */
#define MOESZ_LINK_GBPS_MAX 10000.0     /* 10 TB/s */
#define MOESZ_LINK_LATENCY_US_MAX 1e7   /* 10 s */
#define MOESZ_STORE_MAX_BLOBS 8         /* blobs one fetch may ask for */

typedef struct moesz_store_io {     /* what one fetch cost */
  double link_wait_seconds;         /* slept in the link model */
  double read_seconds;              /* inside pread (or the in-place access) + checksums */
  uint64_t bytes;                   /* stored bytes delivered */
} moesz_store_io;

typedef struct moesz_store_stats {
  uint64_t fetches;                 /* fetch calls */
  uint64_t reads;                   /* read requests (one per contiguous run of blobs) */
  uint64_t bytes;                   /* stored bytes delivered (what crossed the link) */
  uint64_t bytes_io;                /* bytes read from the file, block padding included */
  uint64_t buffer_bytes;            /* I/O buffers allocated (pooled, kept until close) */
  double link_wait_seconds;         /* all threads: time slept in the link model */
  double read_seconds;              /* all threads: time inside pread + checksums */
  int direct;                       /* 1: O_DIRECT reads in use */
  size_t block;                     /* O_DIRECT offset/size alignment in bytes (1 = none) */
} moesz_store_stats;

typedef struct moesz_store moesz_store;
typedef struct moesz_store_buf moesz_store_buf;

/* c must outlive the store. MOESZ_E_ARG for a link speed outside
 * [MOESZ_LINK_GBPS_MIN, MOESZ_LINK_GBPS_MAX] (0 = unthrottled), a negative or
 * absurd latency, or a pread mode without a path. */
int moesz_store_open(const moesz_msz *c, const moesz_store_opts *o, moesz_store **out, moesz_error *err);
void moesz_store_close(moesz_store *s);
/* Reads the stored bytes of n <= MOESZ_STORE_MAX_BLOBS blobs (one expert's
 * matrices): one read request per contiguous run of them in the file, paced
 * by the link; every blob's checksum is verified. data[i] points into a
 * pooled buffer (or the mapping) valid until moesz_store_release(s, *buf).
 * Short reads (a file that shrank), I/O errors and checksum mismatches fail
 * with MOESZ_E_IO / MOESZ_E_CHECKSUM naming the blob; nothing is returned
 * then (*buf = NULL). io (optional) receives this fetch's costs. Safe to
 * call from several threads. */
int moesz_store_fetch(moesz_store *s, const moesz_msz_rec *const *r, int n, const void **data,
                      moesz_store_buf **buf, moesz_store_io *io, moesz_error *err);
void moesz_store_release(moesz_store *s, moesz_store_buf *buf);
/* 1 when fetches return pointers into the container's mapping (mmap mode):
 * the bytes stay valid while the container is open, after the release. */
int moesz_store_in_place(const moesz_store *s);
void moesz_store_stats_get(moesz_store *s, moesz_store_stats *out);
/* Why O_DIRECT is not in use when it was asked for ("" otherwise); read it
 * when no fetch is in flight (a fetch may set it on its first read). */
const char *moesz_store_note(moesz_store *s);
const char *moesz_store_mode_name(moesz_store_mode m);
int moesz_store_mode_parse(const char *s, moesz_store_mode *out);
/* Checks link options (the rules of moesz_store_open); MOESZ_E_ARG with a message. */
int moesz_store_check_link(double gbps, double latency_us, moesz_error *err);

/* ------------------------------------------------------------ the cache */

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
  int miss_threads;           /* threads a miss decodes a codec stream on (the forward pass waits for it,
                                 so its idle cores help); 0 = 1 */
  int budget_auto;            /* 1: budget_bytes is chosen by moesz_cache_budget_auto from
                                 /proc/meminfo at create (the rule: see there) */
  moesz_store_opts store;     /* where blobs are read from (zero = the container's mapping, no link model) */
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
  uint64_t over_budget;       /* loads that went over the budget (pinned experts alone filled it) */
  uint64_t preloaded;         /* experts loaded from a cache state at start (not in gets/misses) */
  uint64_t prefetch_refused;  /* prefetches dropped: no room without going over the budget */
  uint64_t prefetch_failed;   /* prefetches that failed (read or decode error; the expert stays absent,
                                 a later request loads it again and reports the error) */
  uint64_t bytes_read;        /* stored (compressed) bytes read from the container */
  uint64_t bytes_decoded;     /* decoded bytes produced */
  uint64_t resident_bytes;    /* decoded experts held + loads in flight (reserved before reading) */
  uint64_t peak_bytes;        /* the most resident_bytes at once */
  uint64_t pinned_bytes;      /* ResMoE barycenters: decoded at open, never evicted, part of resident */
  uint64_t expert_bytes;      /* decoded bytes of the largest routed expert */
  uint64_t budget_bytes;      /* the budget in force (0 = unlimited; chosen at create with budget_auto) */
  double stall_seconds;       /* time the forward pass waited for experts, split into: */
  double stall_link_seconds;  /*   its own misses' reads: link model wait + pread */
  double stall_decode_seconds;/*   its own misses' decoding */
  double stall_prefetch_seconds; /* waiting for prefetches in flight */
  double decode_seconds;      /* total decode time (any thread) */
  char prefetch_error[200];   /* the first such failure's message, "" if none */
  double link_wait_seconds;   /* total time slept in the link model (any thread) */
  double read_seconds;        /* total time inside pread + checksums (any thread) */
  moesz_store_stats store;    /* the slow tier's counters */
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
/* The counters of one layer (their sums over layers are the cache's gets,
 * hits, misses, prefetch_waits, bytes_read, bytes_decoded, prefetch_issued
 * and stall_seconds), and where each of its experts is now. */
typedef struct moesz_cache_layer_stats {
  uint64_t gets, hits, misses, prefetch_waits, prefetch_issued;
  uint64_t bytes_read, bytes_decoded;
  double stall_seconds;
} moesz_cache_layer_stats;
enum { MOESZ_EXPERT_STORED = 0, MOESZ_EXPERT_LOADING = 1, MOESZ_EXPERT_RESIDENT = 2 };
int moesz_cache_layers(const moesz_cache *k);
int moesz_cache_experts(const moesz_cache *k);
/* Fills out and, if states is not NULL, states[moesz_cache_experts(k)] with
 * MOESZ_EXPERT_*; MOESZ_E_RANGE for a layer outside the model. Safe to call
 * from any thread while the cache serves. */
int moesz_cache_layer_stats_get(moesz_cache *k, int layer, moesz_cache_layer_stats *out, uint8_t *states);
/* --mem auto. The budget from available memory:
 *   budget = available - dense - I/O buffers - routers - reserve,
 *   reserve = max(512 MiB, available / 8) (KV cache, activations, program, other processes),
 *   I/O buffers = 2 x the largest expert's stored bytes (the forward pass and one prefetcher),
 *   routers = their f32 copies when prefetch is on,
 * clamped to [one expert, every routed expert] (decoded sizes in the cache's dtype). */
typedef struct moesz_budget_auto {
  uint64_t available;         /* input: bytes of memory available (MemAvailable) */
  uint64_t dense_bytes, io_bytes, router_bytes, reserve_bytes;
  uint64_t expert_bytes;      /* largest expert, decoded */
  uint64_t experts_total;     /* every routed expert, decoded */
  uint64_t budget;            /* the result */
  int clamped;                /* -1: raised to one expert; 1: capped at every expert; 0: neither */
} moesz_budget_auto;
int moesz_cache_budget_auto(const moesz_msz *c, const moesz_cache_opts *o, uint64_t available,
                            moesz_budget_auto *out, moesz_error *err);
/* MemAvailable of a /proc/meminfo-format file (NULL: /proc/meminfo), in bytes. */
int moesz_mem_available(const char *meminfo, uint64_t *out, moesz_error *err);
/* How create chose the budget ("" without budget_auto). */
const char *moesz_cache_budget_note(moesz_cache *k);
/* Warm starts (--cache-state FILE). The state is the cache's request
 * frequency per expert (LFRU: decayed to the time of saving), as JSON:
 * {"format":"moesz-cache-state","version":1,"layers":L,"experts":E,
 *  "freq":[L*E numbers >= 0, layer-major]}.
 * parse checks format, version, the model's shape and every value, and
 * fills freq [layers * experts]; MOESZ_E_FORMAT on anything else. */
int moesz_cache_state_parse(const char *text, size_t len, int layers, int experts, double *freq,
                            moesz_error *err);
/* Writes the state to path (temporary file + rename). */
int moesz_cache_state_save(moesz_cache *k, const char *path, moesz_error *err);
/* Reads a state (at most 64 MiB), takes its frequencies, and loads the
 * hottest experts on the calling thread, hottest first, while they fit in
 * the budget (never evicting; unlimited budget: every expert with a
 * frequency > 0). *loaded / *bytes (optional) receive what was loaded. */
int moesz_cache_state_load(moesz_cache *k, const char *path, int *loaded, uint64_t *bytes, moesz_error *err);
/* The store the cache reads from (owned by the cache), for its note. */
moesz_store *moesz_cache_store(moesz_cache *k);
const char *moesz_cache_policy_name(moesz_cache_policy p);
int moesz_cache_policy_parse(const char *s, moesz_cache_policy *out);
#endif
