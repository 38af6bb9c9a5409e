/* tests/test_store.c - the storage tier behind the expert cache: logits
 * served through pread / O_DIRECT identical to the in-memory path and the
 * original folder; the budget is never exceeded with prefetch on (the
 * bundled model's reproduction included) and a prompt streams its experts
 * through it; prefetch backs off a layer whose predictions go unused; peak RSS stays within dense + budget + I/O buffers + slack
 * while the mapping path does not; link pacing within 5% on a read loop;
 * short reads, corrupted blobs and bad link options give clear errors. */
#include "harness.h"
#include "harness_engine.h"
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#include "moesz.h"
#include "base/util.h"

static char TMP[128];   /* per-run scratch prefix */

static const char *bin(void) {
  const char *b = getenv("MOESZ_BIN");
  return b && *b ? b : "build/moesz";
}


/* The storage tier (O_DIRECT, buffered, paced by a link) gives the same
 * logits as the mapping, bit for bit, for a lossless and a lossy container;
 * and the lossless ones equal the folder's. The budget holds throughout. */
static void check_paths(const char *fam) {
  char dir[128], msz[192];
  snprintf(dir, sizeof dir, "tests/fixtures/%s", fam);
  moesz_engine_opts eo = {.threads = 1, .max_ctx = 64};
  moesz_engine *ref;
  CHECK_EQ_INT(moesz_engine_open(dir, &eo, &ref, NULL), MOESZ_OK);
  if (!ref) return;
  int V = moesz_engine_vocab(ref), N = 36;
  int32_t tok[36];
  for (int i = 0; i < N; i++) tok[i] = (int32_t)((i * 29 + 5) % V);
  float *folder = harness_logits(ref, tok, N);
  moesz_msz_method methods[] = {MOESZ_MSZ_ZSTD, MOESZ_MSZ_CODEC};
  for (int mi = 0; mi < 2; mi++) {
    snprintf(msz, sizeof msz, "%s_%s.msz", TMP, fam);
    CHECK_EQ_INT(harness_write_msz(dir, methods[mi], msz), MOESZ_OK);
    /* one expert's decoded bytes (as stored) */
    uint64_t one = 0;
    moesz_msz *c;
    CHECK_EQ_INT(moesz_msz_open(msz, &c, NULL), MOESZ_OK);
    if (!c) continue;
    for (int m = 1; m <= 3; m++) one += moesz_msz_expert(c, 0, 0, 0, (moesz_mat)m)->raw_bytes;
    moesz_msz_close(c);
    float *mapped = NULL;
    struct { moesz_store_mode mode; double gbps, lat; uint64_t budget; int pf; } cfgs[] = {
      {MOESZ_STORE_MMAP, 0, 0, 0, 0},
      {MOESZ_STORE_DIRECT, 0, 0, one * 3, 1},
      {MOESZ_STORE_BUFFERED, 0, 0, one * 2, 1},
      {MOESZ_STORE_DIRECT, 0.01, 5, one, 1},
      {MOESZ_STORE_MMAP, 0.01, 0, one * 5 / 2, 1},
    };
    for (size_t c = 0; c < sizeof cfgs / sizeof *cfgs; c++) {
      moesz_cache_opts co = {.budget_bytes = cfgs[c].budget, .policy = MOESZ_CACHE_LFRU, .dtype = MOESZ_DT_COUNT,
                             .prefetch = cfgs[c].pf};
      co.store.mode = cfgs[c].mode;
      co.store.link_gbps = cfgs[c].gbps;
      co.store.link_latency_us = cfgs[c].lat;
      moesz_engine *en;
      moesz_cache *k;
      moesz_error e = {0};
      int rc = moesz_engine_open_msz(msz, &co, &eo, &en, &k, &e);
      CHECK_MSG(rc == MOESZ_OK, "%s", e.msg);
      if (rc) continue;
      float *got = harness_logits(en, tok, N);
      CHECK(got != NULL);
      if (got && c == 0) mapped = got;
      if (got && mapped && c > 0) {
        size_t diff = 0;
        for (size_t i = 0; i < (size_t)N * (size_t)V; i++) diff += got[i] != mapped[i];
        CHECK_MSG(diff == 0, "%s method %d config %zu: %zu logits differ from the in-memory path", fam, mi, c, diff);
      }
      if (got && folder && mi == 0) {
        size_t diff = 0;
        for (size_t i = 0; i < (size_t)N * (size_t)V; i++) diff += got[i] != folder[i];
        CHECK_MSG(diff == 0, "%s config %zu: %zu logits differ from the folder", fam, c, diff);
      }
      moesz_cache_stats s;
      moesz_cache_stats_get(k, &s);
      CHECK(s.gets == s.hits + s.misses + s.prefetch_waits);
      CHECK_EQ_INT(s.expert_bytes, one);
      if (cfgs[c].budget) {
        CHECK_EQ_INT(s.over_budget, 0);
        CHECK_MSG(s.peak_bytes <= cfgs[c].budget, "%s config %zu: peak %llu > budget %llu", fam, c,
                  (unsigned long long)s.peak_bytes, (unsigned long long)cfgs[c].budget);
      }
      CHECK(s.bytes_read > 0 && s.store.bytes >= s.bytes_read);
      if (cfgs[c].mode != MOESZ_STORE_MMAP) CHECK(s.store.bytes_io >= s.store.bytes && s.store.buffer_bytes > 0);
      else CHECK_EQ_INT(s.store.buffer_bytes, 0);
      /* reads from memory are faster than a 10 MB/s link: they wait on it */
      if (cfgs[c].gbps > 0 && cfgs[c].mode == MOESZ_STORE_MMAP) CHECK(s.link_wait_seconds > 0);
      if (cfgs[c].gbps == 0) CHECK(s.link_wait_seconds == 0);
      CHECK(s.stall_link_seconds + s.stall_decode_seconds + s.stall_prefetch_seconds <= s.stall_seconds + 1e-6);
      if (got != mapped) free(got);
      moesz_engine_close(en);
    }
    free(mapped);
    unlink(msz);
  }
  free(folder);
  moesz_engine_close(ref);
}

TEST(store_logits_match_mixtral) { check_paths("mixtral"); }
TEST(store_logits_match_olmoe) { check_paths("olmoe"); }
TEST(store_logits_match_qwen2_moe) { check_paths("qwen2_moe"); }

/* Budgets from one expert up, every policy, prefetch on: the peak never
 * passes the budget and nothing goes over it, for a 24-token prompt batch
 * (every expert of a layer routed) and token-by-token decoding. */
TEST(budget_never_exceeded_with_prefetch) {
  char msz[192];
  snprintf(msz, sizeof msz, "%s_budget.msz", TMP);
  CHECK_EQ_INT(harness_write_msz("tests/fixtures/mixtral", MOESZ_MSZ_CODEC, msz), MOESZ_OK);
  moesz_engine_opts eo = {.threads = 1, .max_ctx = 64};
  int32_t tok[40];
  for (int i = 0; i < 40; i++) tok[i] = (int32_t)((i * 37 + 11) % 200);
  for (int pol = 0; pol < 3; pol++)
    for (int nb = 1; nb <= 5; nb++) {
      moesz_cache_opts co = {.policy = (moesz_cache_policy)pol, .dtype = MOESZ_DT_COUNT, .prefetch = 1,
                             .prefetch_threads = nb % 2 + 1};
      moesz_engine *en;
      moesz_cache *k;
      moesz_error e = {0};
      /* the expert size first (unlimited cache), then the budget */
      CHECK_EQ_INT(moesz_engine_open_msz(msz, &co, &eo, &en, &k, &e), MOESZ_OK);
      if (!en) continue;
      moesz_cache_stats s;
      moesz_cache_stats_get(k, &s);
      moesz_engine_close(en);
      co.budget_bytes = s.expert_bytes * (uint64_t)nb + s.expert_bytes / 3;
      CHECK_EQ_INT(moesz_engine_open_msz(msz, &co, &eo, &en, &k, &e), MOESZ_OK);
      if (!en) continue;
      float *lg = harness_logits(en, tok, 40);
      CHECK(lg != NULL);
      free(lg);
      moesz_cache_stats_get(k, &s);
      CHECK_MSG(s.peak_bytes <= co.budget_bytes && s.over_budget == 0,
                "policy %d, %d experts: peak %llu budget %llu over %llu", pol, nb, (unsigned long long)s.peak_bytes,
                (unsigned long long)co.budget_bytes, (unsigned long long)s.over_budget);
      CHECK(s.prefetch_issued > 0 && s.evictions > 0);
      CHECK(s.resident_bytes <= co.budget_bytes);
      moesz_engine_close(en);
    }
  unlink(msz);
}

/* Waits (up to 5 s) until the prefetches queued since *before are done with:
 * loaded (decoded bytes; the fixture's experts are all one size), refused or
 * failed. Nothing else loads meanwhile, so none is skipped. A queued prefetch
 * is not LOADING until the prefetch thread takes it, so waiting for no
 * LOADING entry alone can return before it starts. */
static void wait_prefetched(moesz_cache *k, const moesz_cache_stats *before) {
  for (int spin = 0; spin < 5000; spin++) {
    moesz_cache_stats s;
    moesz_cache_stats_get(k, &s);
    uint64_t done = (s.bytes_decoded - before->bytes_decoded) / (s.expert_bytes ? s.expert_bytes : 1) +
                    (s.prefetch_refused - before->prefetch_refused) + (s.prefetch_failed - before->prefetch_failed);
    if (done >= s.prefetch_issued - before->prefetch_issued) return;
    usleep(1000);
  }
}

/* Next-layer prediction that is mostly wrong stops costing bytes: when the
 * experts a layer's predictions brought in keep being evicted unused, the
 * cache predicts that layer only now and then (PF_PROBE), and still does. */
TEST(prefetch_backs_off_when_predictions_go_unused) {
  char msz[192];
  snprintf(msz, sizeof msz, "%s_backoff.msz", TMP);
  CHECK_EQ_INT(harness_write_msz("tests/fixtures/mixtral", MOESZ_MSZ_CODEC, msz), MOESZ_OK);
  moesz_msz *c = NULL;
  CHECK_EQ_INT(moesz_msz_open(msz, &c, NULL), MOESZ_OK);
  if (!c) return;
  moesz_cache *k = NULL;
  moesz_cache_opts co = {.policy = MOESZ_CACHE_LRU, .dtype = MOESZ_DT_COUNT, .prefetch = 1, .prefetch_threads = 1};
  CHECK_EQ_INT(moesz_cache_create(c, &co, &k, NULL), MOESZ_OK);
  if (!k) { moesz_msz_close(c); return; }
  moesz_cache_stats s;
  moesz_cache_stats_get(k, &s);
  moesz_cache_destroy(k);
  co.budget_bytes = s.expert_bytes * 2;   /* the two predicted experts, or two others */
  CHECK_EQ_INT(moesz_cache_create(c, &co, &k, NULL), MOESZ_OK);
  if (!k) { moesz_msz_close(c); return; }
  float h[32];
  for (int i = 0; i < 32; i++) h[i] = (float)((i * 7) % 5) - 2.0f;
  uint64_t issued_first = 0;
  int E = moesz_cache_experts(k);
  for (int it = 0; it < 64; it++) {
    moesz_cache_stats before;
    moesz_cache_stats_get(k, &before);
    moesz_cache_observe(k, 0, NULL, 0, h, 1);   /* predicts two experts of layer 1 */
    wait_prefetched(k, &before);
    uint8_t st[64];
    moesz_cache_layer_stats ls;
    moesz_cache_layer_stats_get(k, 1, &ls, st);
    /* use two experts the prediction did not bring in: they evict it */
    int used = 0;
    for (int e = 0; e < E && used < 2; e++) {
      if (st[e] == MOESZ_EXPERT_RESIDENT) continue;
      moesz_matview mv[3];
      CHECK_EQ_INT(moesz_cache_get(k, 1, e, mv, NULL), MOESZ_OK);
      moesz_cache_release(k, 1, e);
      used++;
    }
    if (it == 31) { moesz_cache_stats_get(k, &s); issued_first = s.prefetch_issued; }
  }
  moesz_cache_stats_get(k, &s);
  printf("# prefetch back-off: %llu issued in the first 32 rounds, %llu in the last 32 (up to 2 a round without the back-off), "
         "%llu wasted, %llu used\n", (unsigned long long)issued_first,
         (unsigned long long)(s.prefetch_issued - issued_first), (unsigned long long)s.prefetch_wasted,
         (unsigned long long)s.prefetch_used);
  CHECK_MSG(issued_first >= 4 && issued_first <= 20, "first 32 rounds: %llu issued", (unsigned long long)issued_first);
  uint64_t late = s.prefetch_issued - issued_first;
  CHECK_MSG(late >= 2 && late <= 12, "last 32 rounds: %llu issued (probing 1 in 8)", (unsigned long long)late);
  CHECK(s.prefetch_used == 0 && s.prefetch_wasted >= 4);
  moesz_cache_destroy(k);
  moesz_msz_close(c);
  unlink(msz);
}

static long long json_num(const char *js, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(js, pat);
  return p ? atoll(p + strlen(pat)) : -1;
}

/* The reproduction on the bundled model: moesz run ... --mem 2MiB
 * (and 4MiB) --prefetch under each policy reported peak_bytes above
 * budget_bytes with over_budget 0. */
TEST(bundled_prefetch_stays_in_budget) {
  struct stat sb;
  if (stat(bin(), &sb) || stat("models/moesz-mix-tiny/config.json", &sb)) SKIP("moesz or the bundled model missing");
  char msz[192], cmd[1024];
  static char out[1 << 14];
  snprintf(msz, sizeof msz, "%s_demo.msz", TMP);
  snprintf(cmd, sizeof cmd, "%s compress models/moesz-mix-tiny -o %s --method sz --eb 1e-3 --quiet 2>&1", bin(), msz);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  const char *pols[] = {"lru", "lfu", "lfru"}, *mems[] = {"2MiB", "4MiB"};
  for (int p = 0; p < 3; p++)
    for (int m = 0; m < 2; m++) {
      snprintf(cmd, sizeof cmd, "%s run %s --prompt \"Once upon a time\" --max-tokens 60 --temperature 0 --mem %s "
               "--cache %s --prefetch --stats json 2>&1 >/dev/null", bin(), msz, mems[m], pols[p]);
      CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
      long long peak = json_num(out, "peak_bytes"), budget = json_num(out, "budget_bytes");
      CHECK_MSG(budget > 0 && peak > 0 && peak <= budget, "%s %s: peak %lld budget %lld", pols[p], mems[m], peak, budget);
      CHECK_EQ_INT(json_num(out, "over_budget"), 0);
      CHECK(json_num(out, "misses") > 0);
    }
  unlink(msz);
}

/* Peak RSS (VmHWM) of `moesz run` on a model whose experts are 12x the
 * budget stays within dense + budget + I/O buffers + KV cache + 24 MiB
 * (program, libraries, engine scratch); served from the mapping instead,
 * the same run goes past that bound (the test can tell them apart). */
TEST(peak_rss_within_dense_budget_buffers) {
#if defined(__SANITIZE_ADDRESS__)
  SKIP("RSS is not meaningful under AddressSanitizer");
#endif
  struct stat sb;
  if (stat(bin(), &sb)) SKIP("moesz not built");
  char dir[192], msz[192], cmd[1024];
  static char out[1 << 14];
  snprintf(dir, sizeof dir, "%s_rss", TMP);
  snprintf(msz, sizeof msz, "%s_rss.msz", TMP);
  moesz_synth_opts so = {.like = "olmoe", .layers = 2, .hidden = 256, .expert_width = 512, .vocab = 1024,
                         .heads = 4, .kv_heads = 4, .dtype = MOESZ_DT_BF16, .std = 0.02, .seed = 3};
  CHECK_EQ_INT(moesz_synth_write(&so, dir, NULL), MOESZ_OK);
  CHECK_EQ_INT(harness_write_msz(dir, MOESZ_MSZ_RAW, msz), MOESZ_OK);
  char ids[512] = "";
  for (int i = 0; i < 16; i++) snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%d", i ? "," : "", (i * 37 + 11) % 1000 + 3);
  const uint64_t budget = 8u << 20, slack = 24u << 20;
  const char *modes[] = {"direct", "buffered", "mmap"};
  for (int m = 0; m < 3; m++) {
    snprintf(cmd, sizeof cmd, "%s run %s --prompt-ids %s --print-ids --temperature 0 --ignore-eos --max-tokens 40 "
             "--threads 1 --ctx 128 --mem %llu --prefetch --store %s --stats json 2>&1 >/dev/null", bin(), msz, ids,
             (unsigned long long)budget, modes[m]);
    CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
    long long rss = json_num(out, "peak_rss_bytes"), dense = json_num(out, "dense_bytes"),
              io = json_num(out, "io_buffer_bytes"), moved = json_num(out, "bytes_read");
    /* KV cache: 2 layers x 128 positions x 256 (k) + 256 (v) floats */
    long long kv = 2LL * 128 * 512 * 4;
    long long bound = dense + (long long)budget + io + kv + (long long)slack;
    CHECK(rss > 0 && dense > 0 && moved > 12LL * (long long)budget);
    if (m < 2) CHECK_MSG(rss <= bound, "%s: peak RSS %lld > %lld (dense %lld, I/O buffers %lld)", modes[m], rss, bound, dense, io);
    else CHECK_MSG(rss > bound, "mmap: peak RSS %lld within %lld: the test cannot tell the paths apart", rss, bound);
  }
  snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir, msz);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
}

/* Readers of the link pacing test: whole experts, round and round, until
 * `until` bytes went through; `inside` sums the time spent inside fetches
 * (what the link model controls, without the reader's own gaps). */
typedef struct {
  moesz_store *s;
  moesz_msz *c;
  int first;              /* expert index to start at */
  uint64_t until, bytes;
  double inside;
  int fails;
} link_reader;

static void *link_read_loop(void *arg) {
  link_reader *a = arg;
  const moesz_config *cfg = moesz_msz_config(a->c);
  for (int it = a->first; a->bytes < a->until; it++) {
    int L = it % cfg->n_layers, x = (it / cfg->n_layers) % cfg->n_experts;
    const moesz_msz_rec *r[3];
    const void *d[3];
    for (int m = 0; m < 3; m++) r[m] = moesz_msz_expert(a->c, L, x, 0, (moesz_mat)(MOESZ_MAT_GATE + m));
    moesz_store_buf *b;
    moesz_store_io io;
    double t0 = moesz_time_now();
    if (moesz_store_fetch(a->s, r, 3, d, &b, &io, NULL)) { a->fails++; break; }
    a->inside += moesz_time_now() - t0;
    moesz_store_release(a->s, b);
    a->bytes += io.bytes;
  }
  return NULL;
}

/* 1 when the same read loop (bytes of experts) without a link model takes
 * at least half of link_s in mode: the device, not the link, sets the pace
 * right now. */
static int device_busy(moesz_msz *c, const char *path, moesz_store_mode mode, uint64_t bytes, double link_s) {
  moesz_store_opts so = {.path = path, .mode = mode};
  moesz_store *s;
  if (moesz_store_open(c, &so, &s, NULL)) return 0;
  link_reader rd = {.s = s, .c = c, .until = bytes};
  link_read_loop(&rd);
  moesz_store_close(s);
  printf("# %s without a link: %.4f s for the loop's %llu bytes (link time %.4f s)\n", moesz_store_mode_name(mode),
         rd.inside, (unsigned long long)bytes, link_s);
  return !rd.fails && rd.inside >= 0.5 * link_s;
}

/* The link model paces a read loop within 5% of bytes / speed (+ latency
 * per request), in each store mode: one reader, timed inside its fetches.
 * Two readers sharing the link together never beat its speed; where the
 * device alone is slower than half the link (a busy disk), the row is
 * reported and not judged. */
TEST(link_pacing_accuracy) {
  struct stat sb;
  if (stat("models/moesz-mix-tiny/config.json", &sb)) SKIP("the bundled model is missing");
  char msz[192];
  snprintf(msz, sizeof msz, "%s_link.msz", TMP);
  /* the bundled model: experts of 192 KiB, milliseconds of link time each */
  CHECK_EQ_INT(harness_write_msz("models/moesz-mix-tiny", MOESZ_MSZ_RAW, msz), MOESZ_OK);
  moesz_msz *c;
  CHECK_EQ_INT(moesz_msz_open(msz, &c, NULL), MOESZ_OK);
  if (!c) return;
  struct { moesz_store_mode mode; double gbps, lat_us; int readers; } runs[] = {
    {MOESZ_STORE_MMAP, 0.1, 0, 1}, {MOESZ_STORE_BUFFERED, 0.15, 0, 1}, {MOESZ_STORE_DIRECT, 0.05, 0, 1},
    {MOESZ_STORE_BUFFERED, 0.2, 2000, 1}, {MOESZ_STORE_BUFFERED, 0.2, 0, 2},
  };
  for (size_t q = 0; q < sizeof runs / sizeof *runs; q++) {
    /* the machine is shared: a slow attempt (reader descheduled) is tried
     * again, up to 5 times; no attempt may be faster than the model */
    double best = 1e9, got = 0, want = 0;
    for (int attempt = 0; attempt < 5 && best > 0.05; attempt++) {
      moesz_store_opts so = {.path = msz, .mode = runs[q].mode, .link_gbps = runs[q].gbps,
                             .link_latency_us = runs[q].lat_us};
      moesz_store *s;
      moesz_error e = {0};
      CHECK_EQ_INT(moesz_store_open(c, &so, &s, &e), MOESZ_OK);
      if (!s) break;
      /* about a quarter of a second of link time */
      uint64_t total = (uint64_t)(0.25 * runs[q].gbps * 1e9);
      if (runs[q].lat_us > 0) total /= 2;
      link_reader rd[2];
      pthread_t th[2];
      double t0 = moesz_time_now();
      for (int i = 0; i < runs[q].readers; i++) {
        rd[i] = (link_reader){.s = s, .c = c, .first = i * 13, .until = total / (uint64_t)runs[q].readers};
        CHECK(pthread_create(&th[i], NULL, link_read_loop, &rd[i]) == 0);
      }
      uint64_t bytes = 0;
      for (int i = 0; i < runs[q].readers; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(rd[i].fails, 0);
        bytes += rd[i].bytes;
      }
      double wall = moesz_time_now() - t0;
      moesz_store_stats st;
      moesz_store_stats_get(s, &st);
      want = (double)bytes / (runs[q].gbps * 1e9) + runs[q].lat_us * 1e-6 * (double)st.reads;
      got = runs[q].readers == 1 ? rd[0].inside : wall;
      CHECK_MSG(wall >= 0.99 * want - 0.002, "%s: %.4f s, faster than the modelled %.4f s",
                moesz_store_mode_name(runs[q].mode), wall, want);
      CHECK(st.bytes == bytes && st.link_wait_seconds > 0.3 * want);
      if (fabs(got - want) / want < best) best = fabs(got - want) / want;
      moesz_store_close(s);
    }
    if (runs[q].readers == 1 && best > 0.05 &&
        device_busy(c, msz, runs[q].mode, (uint64_t)(0.25 * runs[q].gbps * 1e9) / (runs[q].lat_us > 0 ? 2 : 1), want)) {
      /* the device alone took half the modelled link time or more (a disk
       * busy with other work): the link is not what sets the pace here */
      printf("# %s at %g GB/s: %.4f s for %.4f s modelled, but the device itself is that slow now; not judged\n",
             moesz_store_mode_name(runs[q].mode), runs[q].gbps, got, want);
      continue;
    }
    if (runs[q].readers == 1)
      CHECK_MSG(best <= 0.05, "%s at %g GB/s + %g us: %.4f s for %.4f s modelled (best of 5: %.1f%% off)",
                moesz_store_mode_name(runs[q].mode), runs[q].gbps, runs[q].lat_us, got, want, 100 * best);
  }
  moesz_msz_close(c);
  unlink(msz);
}

/* A container that shrinks while served, and a corrupted blob: clear
 * errors, no expert handed out, and the rest still served. */
TEST(store_faults_clear_errors) {
  char msz[192];
  snprintf(msz, sizeof msz, "%s_fault.msz", TMP);
  CHECK_EQ_INT(harness_write_msz("tests/fixtures/mixtral", MOESZ_MSZ_ZSTD, msz), MOESZ_OK);
  moesz_store_mode modes[] = {MOESZ_STORE_DIRECT, MOESZ_STORE_BUFFERED};
  for (int mi = 0; mi < 2; mi++) {
    moesz_msz *c;
    CHECK_EQ_INT(moesz_msz_open(msz, &c, NULL), MOESZ_OK);
    if (!c) return;
    const moesz_config *cfg = moesz_msz_config(c);
    moesz_cache_opts co = {.dtype = MOESZ_DT_COUNT};
    co.store.path = msz;
    co.store.mode = modes[mi];
    moesz_cache *k;
    moesz_error e = {0};
    CHECK_EQ_INT(moesz_cache_create(c, &co, &k, &e), MOESZ_OK);
    if (!k) { moesz_msz_close(c); return; }
    /* the last expert blob in the file, and one in the middle */
    const moesz_msz_rec *last = NULL, *mid = moesz_msz_expert(c, 0, 1, 0, MOESZ_MAT_UP);
    int lastL = 0, lastE = 0;
    for (int L = 0; L < cfg->n_layers; L++)
      for (int x = 0; x < cfg->n_experts; x++)
        for (int m = 1; m <= 3; m++) {
          const moesz_msz_rec *r = moesz_msz_expert(c, L, x, 0, (moesz_mat)m);
          if (r && (!last || r->off > last->off)) { last = r; lastL = L; lastE = x; }
        }
    CHECK(last && mid);
    if (!last || !mid) { moesz_cache_destroy(k); moesz_msz_close(c); return; }
    /* corrupt one byte of a blob in the file (not through the mapping's pages we use) */
    int fd = open(msz, O_RDWR);
    CHECK(fd >= 0);
    uint8_t byte;
    CHECK(pread(fd, &byte, 1, (off_t)(mid->off + mid->len / 2)) == 1);
    byte ^= 0x5a;
    CHECK(pwrite(fd, &byte, 1, (off_t)(mid->off + mid->len / 2)) == 1);
    moesz_matview v[3];
    int rc = moesz_cache_get(k, 0, 1, v, &e);
    CHECK_EQ_INT(rc, MOESZ_E_CHECKSUM);
    CHECK_MSG(strstr(e.msg, mid->name) != NULL, "%s", e.msg);
    CHECK_EQ_INT(moesz_cache_get(k, 0, 1, v, &e), MOESZ_E_CHECKSUM);   /* nothing cached */
    byte ^= 0x5a;
    CHECK(pwrite(fd, &byte, 1, (off_t)(mid->off + mid->len / 2)) == 1);
    CHECK_EQ_INT(moesz_cache_get(k, 0, 1, v, &e), MOESZ_OK);
    moesz_cache_release(k, 0, 1);
    /* the file shrinks: the last blob's tail is gone */
    CHECK(ftruncate(fd, (off_t)(last->off + last->len / 2)) == 0);
    close(fd);
    memset(&e, 0, sizeof e);
    rc = moesz_cache_get(k, lastL, lastE, v, &e);
    CHECK_EQ_INT(rc, MOESZ_E_IO);
    CHECK_MSG(strstr(e.msg, "short read") != NULL, "%s", e.msg);
    CHECK_EQ_INT(moesz_cache_get(k, lastL, lastE, v, &e), MOESZ_E_IO);
    CHECK_EQ_INT(moesz_cache_get(k, 0, 0, v, &e), MOESZ_OK);
    moesz_cache_release(k, 0, 0);
    moesz_cache_stats s;
    moesz_cache_stats_get(k, &s);
    CHECK_EQ_INT(s.resident_bytes, s.expert_bytes * 2);   /* (0,1) and (0,0); failed loads hold nothing */
    moesz_cache_destroy(k);
    moesz_msz_close(c);
    CHECK_EQ_INT(harness_write_msz("tests/fixtures/mixtral", MOESZ_MSZ_ZSTD, msz), MOESZ_OK);
  }
  unlink(msz);
}

/* O_DIRECT: in use, or refused with a note; buffered never notes. Link
 * options out of range are refused by the library and the CLI. */
TEST(store_modes_and_link_options) {
  char msz[192];
  snprintf(msz, sizeof msz, "%s_modes.msz", TMP);
  CHECK_EQ_INT(harness_write_msz("tests/fixtures/mixtral", MOESZ_MSZ_RAW, msz), MOESZ_OK);
  moesz_msz *c;
  CHECK_EQ_INT(moesz_msz_open(msz, &c, NULL), MOESZ_OK);
  if (!c) return;
  moesz_store_opts so = {.path = msz, .mode = MOESZ_STORE_DIRECT};
  moesz_store *s;
  CHECK_EQ_INT(moesz_store_open(c, &so, &s, NULL), MOESZ_OK);
  if (s) {
    const moesz_msz_rec *r[1] = {moesz_msz_expert(c, 1, 2, 0, MOESZ_MAT_DOWN)};
    const void *d[1];
    moesz_store_buf *b;
    CHECK_EQ_INT(moesz_store_fetch(s, r, 1, d, &b, NULL, NULL), MOESZ_OK);
    moesz_store_release(s, b);
    moesz_store_stats st;
    moesz_store_stats_get(s, &st);
    CHECK_MSG(st.direct ? !*moesz_store_note(s) && st.block >= 512 && st.bytes_io % st.block == 0 : *moesz_store_note(s) != 0,
              "direct %d block %zu note '%s'", st.direct, st.block, moesz_store_note(s));
    moesz_store_close(s);
  }
  so.mode = MOESZ_STORE_BUFFERED;
  CHECK_EQ_INT(moesz_store_open(c, &so, &s, NULL), MOESZ_OK);
  if (s) {
    moesz_store_stats st;
    moesz_store_stats_get(s, &st);
    CHECK(!st.direct && !*moesz_store_note(s));
    moesz_store_close(s);
  }
  double bad[][2] = {{-1, 0}, {1e9, 0}, {0.0001, 0}, {NAN, 0}, {INFINITY, 0}, {1, -1}, {1, 1e12}, {1, NAN}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    moesz_store_opts b = {.path = msz, .link_gbps = bad[i][0], .link_latency_us = bad[i][1]};
    moesz_error e = {0};
    s = NULL;
    CHECK_EQ_INT(moesz_store_open(c, &b, &s, &e), MOESZ_E_ARG);
    CHECK(s == NULL && strstr(e.msg, "link") != NULL);
  }
  so.path = "/nonexistent/x.msz";
  so.mode = MOESZ_STORE_DIRECT;
  CHECK_EQ_INT(moesz_store_open(c, &so, &s, NULL), MOESZ_E_NOTFOUND);
  moesz_msz_close(c);
  struct stat sb;
  if (!stat(bin(), &sb)) {
    static const struct { const char *args, *msg; } cli[] = {
      {"--link-gbps 0", "must be > 0"}, {"--link-gbps -2", "must be > 0"}, {"--link-gbps 1e6", "outside"},
      {"--link-gbps fast", "bad --link-gbps"}, {"--link-latency-us -5", "outside"},
      {"--link-latency-us 1e9", "outside"}, {"--store tape", "bad --store"},
    };
    for (size_t i = 0; i < sizeof cli / sizeof *cli; i++) {
      char cmd[1024], out[8192];
      snprintf(cmd, sizeof cmd, "%s run %s --prompt-ids 1,2 --print-ids --max-tokens 2 %s 2>&1", bin(), msz, cli[i].args);
      CHECK_MSG(harness_run_cmd(cmd, out, sizeof out) == 2, "'%s'", cli[i].args);
      CHECK_MSG(strstr(out, cli[i].msg) != NULL, "'%s': %s", cli[i].args, out);
    }
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof cmd, "%s run %s --prompt-ids 1,2 --print-ids --max-tokens 2 --mem 1MiB --link-gbps 2 "
             "--link-latency-us 10 --stats text 2>&1", bin(), msz);
    CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
    CHECK_MSG(strstr(out, "link wait") && strstr(out, "stall"), "%s", out);
  }
  unlink(msz);
}

/* --mem auto: the documented rule, its clamps, MemAvailable parsing, and
 * the CLI printing what it chose. */
TEST(mem_auto_rule) {
  char msz[192], mi[192];
  snprintf(msz, sizeof msz, "%s_auto.msz", TMP);
  snprintf(mi, sizeof mi, "%s_meminfo", TMP);
  CHECK_EQ_INT(harness_write_msz("tests/fixtures/mixtral", MOESZ_MSZ_ZSTD, msz), MOESZ_OK);
  moesz_msz *c;
  CHECK_EQ_INT(moesz_msz_open(msz, &c, NULL), MOESZ_OK);
  if (!c) return;
  const moesz_config *cfg = moesz_msz_config(c);
  moesz_cache_opts o = {.dtype = MOESZ_DT_F32, .prefetch = 1};
  moesz_budget_auto a;
  uint64_t G = 1ull << 30;
  CHECK_EQ_INT(moesz_cache_budget_auto(c, &o, 64 * G, &a, NULL), MOESZ_OK);
  uint64_t one = (uint64_t)cfg->moe_intermediate * (uint64_t)cfg->hidden * 3 * 4;   /* f32 */
  CHECK_EQ_INT(a.expert_bytes, one);
  CHECK_EQ_INT(a.experts_total, one * (uint64_t)cfg->n_experts * (uint64_t)cfg->n_layers);
  CHECK(a.clamped == 1 && a.budget == a.experts_total);              /* plenty: every expert */
  CHECK_EQ_INT(a.reserve_bytes, 8 * G);
  CHECK(a.dense_bytes > 0 && a.io_bytes > 0 && a.router_bytes == (uint64_t)cfg->n_layers * cfg->n_experts * cfg->hidden * 4);
  CHECK_EQ_INT(moesz_cache_budget_auto(c, &o, 100u << 20, &a, NULL), MOESZ_OK);
  CHECK(a.clamped == -1 && a.budget == one && a.reserve_bytes == 512u << 20);   /* too little: one expert */
  /* in between, the formula exactly: make the experts look big by asking for
   * a budget between one expert and all of them */
  uint64_t avail = (512u << 20) + 0;
  CHECK_EQ_INT(moesz_cache_budget_auto(c, &o, avail, &a, NULL), MOESZ_OK);
  uint64_t use = a.dense_bytes + a.io_bytes + a.router_bytes + a.reserve_bytes;
  uint64_t want = avail > use ? avail - use : 0;
  if (want > a.experts_total) want = a.experts_total;
  if (want < a.expert_bytes) want = a.expert_bytes;
  CHECK_EQ_INT(a.budget, want);
  avail = (512u << 20) + use - a.reserve_bytes + one * 5;
  CHECK_EQ_INT(moesz_cache_budget_auto(c, &o, avail, &a, NULL), MOESZ_OK);
  CHECK_EQ_INT(a.clamped, 0);
  CHECK_EQ_INT(a.budget, one * 5);
  moesz_msz_close(c);
  /* MemAvailable */
  FILE *f = fopen(mi, "w");
  CHECK(f != NULL);
  if (f) { fputs("MemTotal:  4096 kB\nMemFree: 10 kB\nMemAvailable:    2048 kB\n", f); fclose(f); }
  uint64_t m = 0;
  CHECK_EQ_INT(moesz_mem_available(mi, &m, NULL), MOESZ_OK);
  CHECK_EQ_INT(m, 2048 * 1024);
  f = fopen(mi, "w");
  if (f) { fputs("MemTotal:  4096 kB\nMemAvailable: lots\n", f); fclose(f); }
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_mem_available(mi, &m, &e), MOESZ_E_FORMAT);
  CHECK(strstr(e.msg, "MemAvailable") != NULL);
  unlink(mi);
  CHECK_EQ_INT(moesz_mem_available(mi, &m, NULL), MOESZ_E_IO);
  CHECK_EQ_INT(moesz_mem_available(NULL, &m, NULL), MOESZ_OK);
  CHECK(m > (16u << 20));
  struct stat sb;
  if (!stat(bin(), &sb)) {
    char cmd[1024];
    static char out[1 << 14];
    snprintf(cmd, sizeof cmd, "%s run %s --prompt-ids 1,2,3 --print-ids --max-tokens 4 --mem auto --stats json 2>&1", bin(), msz);
    CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
    CHECK_MSG(strstr(out, "--mem auto: budget") != NULL, "%s", out);
    CHECK(json_num(out, "budget_bytes") > 0);
  }
  unlink(msz);
}

/* --cache-state: frequencies saved at exit, the hottest experts preloaded
 * within the budget at the next start (an unlimited cache then misses
 * nothing), logits unchanged; malformed states refused. */
TEST(cache_state_warm_start) {
  char msz[192], st[192];
  snprintf(msz, sizeof msz, "%s_state.msz", TMP);
  snprintf(st, sizeof st, "%s_state.json", TMP);
  CHECK_EQ_INT(harness_write_msz("tests/fixtures/mixtral", MOESZ_MSZ_ZSTD, msz), MOESZ_OK);
  moesz_engine_opts eo = {.threads = 1, .max_ctx = 64};
  int32_t tok[36];
  for (int i = 0; i < 36; i++) tok[i] = (int32_t)((i * 41 + 7) % 200);
  float *want = NULL;
  uint64_t cold_misses = 0, one = 0;
  for (int b = 0; b < 2; b++)
    for (int run = 0; run < 2; run++) {
      moesz_cache_opts co = {.policy = MOESZ_CACHE_LFRU, .dtype = MOESZ_DT_COUNT};
      moesz_engine *en;
      moesz_cache *k;
      moesz_error e = {0};
      CHECK_EQ_INT(moesz_engine_open_msz(msz, &co, &eo, &en, &k, &e), MOESZ_OK);
      if (!en) return;
      moesz_cache_stats s;
      moesz_cache_stats_get(k, &s);
      one = s.expert_bytes;
      moesz_engine_close(en);
      co.budget_bytes = b ? one * 5 : 0;
      CHECK_EQ_INT(moesz_engine_open_msz(msz, &co, &eo, &en, &k, &e), MOESZ_OK);
      if (!en) return;
      int n = 0;
      uint64_t bytes = 0;
      if (run == 1) {
        CHECK_EQ_INT(moesz_cache_state_load(k, st, &n, &bytes, &e), MOESZ_OK);
        moesz_cache_stats_get(k, &s);
        CHECK(n > 0 && (uint64_t)n == s.preloaded && bytes == (uint64_t)n * one);
        if (b) CHECK(s.resident_bytes <= co.budget_bytes && n == 5);
        CHECK_EQ_INT(s.gets, 0);
      }
      float *lg = harness_logits(en, tok, 36);
      CHECK(lg != NULL);
      int V = moesz_engine_vocab(en);
      if (lg && !want) want = lg;
      else if (lg) {
        size_t diff = 0;
        for (size_t i = 0; i < 36 * (size_t)V; i++) diff += lg[i] != want[i];
        CHECK_MSG(diff == 0, "budget %d run %d: %zu logits differ", b, run, diff);
        free(lg);
      }
      moesz_cache_stats_get(k, &s);
      if (run == 0) {
        cold_misses = s.misses;
        CHECK_EQ_INT(moesz_cache_state_save(k, st, &e), MOESZ_OK);
      } else if (!b) {
        CHECK_MSG(s.misses == 0 && cold_misses > 0, "warm misses %llu (cold %llu)", (unsigned long long)s.misses,
                  (unsigned long long)cold_misses);
      } else {
        CHECK(s.peak_bytes <= co.budget_bytes && s.misses <= cold_misses);
      }
      moesz_engine_close(en);
    }
  free(want);
  /* malformed states */
  double f[64];
  static const char *bad[] = {
    "", "{", "[]", "{\"format\":\"x\",\"version\":1,\"layers\":4,\"experts\":8,\"freq\":[]}",
    "{\"format\":\"moesz-cache-state\",\"version\":2,\"layers\":4,\"experts\":8,\"freq\":[]}",
    "{\"format\":\"moesz-cache-state\",\"version\":1,\"layers\":3,\"experts\":8,\"freq\":[]}",
    "{\"format\":\"moesz-cache-state\",\"version\":1,\"layers\":4,\"experts\":8,\"freq\":[1,2,3]}",
    "{\"format\":\"moesz-cache-state\",\"version\":1,\"layers\":4,\"experts\":8}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    moesz_error e = {0};
    CHECK_EQ_INT(moesz_cache_state_parse(bad[i], strlen(bad[i]), 4, 8, f, &e), MOESZ_E_FORMAT);
    CHECK(strstr(e.msg, "cache state") != NULL);
  }
  char good[2048] = "{\"format\":\"moesz-cache-state\",\"version\":1,\"layers\":4,\"experts\":8,\"freq\":[";
  for (int i = 0; i < 32; i++) snprintf(good + strlen(good), sizeof good - strlen(good), "%s%d", i ? "," : "", i);
  strcat(good, "]}");
  CHECK_EQ_INT(moesz_cache_state_parse(good, strlen(good), 4, 8, f, NULL), MOESZ_OK);
  CHECK(f[0] == 0 && f[31] == 31);
  char *neg = strstr(good, ",5,");
  if (neg) { memcpy(neg, ",-", 2); CHECK_EQ_INT(moesz_cache_state_parse(good, strlen(good), 4, 8, f, NULL), MOESZ_E_FORMAT); }
  struct stat sb;
  if (!stat(bin(), &sb)) {
    char cmd[1024];
    static char out[1 << 14];
    FILE *fp = fopen(st, "w");
    if (fp) { fputs("{\"format\":\"moesz-cache-state\",\"version\":1,\"layers\":99}", fp); fclose(fp); }
    snprintf(cmd, sizeof cmd, "%s run %s --prompt-ids 1,2,3 --print-ids --max-tokens 2 --cache-state %s 2>&1", bin(), msz, st);
    CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 1);
    CHECK_MSG(strstr(out, "cache state") && strstr(out, st), "%s", out);
    unlink(st);
    snprintf(cmd, sizeof cmd, "%s run %s --prompt-ids 1,2,3 --print-ids --max-tokens 2 --mem 1MiB --cache-state %s 2>&1 && "
             "%s run %s --prompt-ids 1,2,3 --print-ids --max-tokens 2 --mem 1MiB --cache-state %s 2>&1", bin(), msz, st,
             bin(), msz, st);
    CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
    CHECK_MSG(strstr(out, "saved to") && strstr(out, "preloaded"), "%s", out);
  }
  unlink(st);
  unlink(msz);
}

int main(void) {
  snprintf(TMP, sizeof TMP, "/tmp/moesz_store_%ld", (long)getpid());
  RUN(store_logits_match_mixtral);
  RUN(store_logits_match_olmoe);
  RUN(store_logits_match_qwen2_moe);
  RUN(budget_never_exceeded_with_prefetch);
  RUN(prefetch_backs_off_when_predictions_go_unused);
  RUN(bundled_prefetch_stays_in_budget);
  RUN(peak_rss_within_dense_budget_buffers);
  RUN(link_pacing_accuracy);
  RUN(store_faults_clear_errors);
  RUN(store_modes_and_link_options);
  RUN(mem_auto_rule);
  RUN(cache_state_warm_start);
  return DONE();
}
