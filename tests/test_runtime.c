/* tests/test_runtime.c - serving from a .msz container through the expert
 * cache: logits identical to the engine on the original folder under every
 * policy and budget (lossless container), prefetch on and off, a layer's
 * missing experts loaded one by one and at once (miss threads), and the
 * counters add up (gets = hits + misses + waits; the budget holds unless
 * pinned experts alone exceed it). */
#include "harness.h"
#include "harness_engine.h"
#include <unistd.h>
#include "moesz.h"

static char MSZ[128];

static void check_family(const char *fam) {
  char dir[128];
  snprintf(dir, sizeof dir, "tests/fixtures/%s", fam);
  moesz_model *m;
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_model_open(dir, &m, &e), MOESZ_OK);
  if (!m) return;
  moesz_msz_opts o;
  memset(&o, 0, sizeof o);
  o.method = MOESZ_MSZ_ZSTD;
  CHECK_EQ_INT(moesz_msz_write(m, MSZ, &o, NULL, &e), MOESZ_OK);
  moesz_model_close(m);
  moesz_engine_opts eo = {.threads = 1, .max_ctx = 64};
  moesz_engine *ref;
  CHECK_EQ_INT(moesz_engine_open(dir, &eo, &ref, &e), MOESZ_OK);
  if (!ref) return;
  int V = moesz_engine_vocab(ref), N = 40;
  int32_t tok[40];
  for (int i = 0; i < N; i++) tok[i] = (int32_t)((i * 37 + 11) % V);
  float *want = harness_logits(ref, tok, N);
  CHECK(want != NULL);
  const moesz_config *cfg = moesz_engine_config(ref);
  /* one expert's decoded bytes */
  uint64_t one = (uint64_t)cfg->moe_intermediate * (uint64_t)cfg->hidden * 3 * 4;
  uint64_t budgets[] = {0, one * (uint64_t)cfg->top_k, one * (uint64_t)cfg->n_experts};
  for (int pol = 0; pol < 3; pol++)
    for (int b = 0; b < 3; b++)
      for (int pf = 0; pf < 3; pf++) {
        /* pf 2: no prefetch, 3 miss threads: under a budget a layer's missing experts load at once */
        moesz_cache_opts co = {.budget_bytes = budgets[b], .policy = (moesz_cache_policy)pol,
                               .dtype = MOESZ_DT_COUNT, .prefetch = pf == 1, .miss_threads = pf == 2 ? 3 : 0};
        moesz_engine *en;
        moesz_cache *k;
        int rc = moesz_engine_open_msz(MSZ, &co, &eo, &en, &k, &e);
        CHECK_EQ_INT(rc, MOESZ_OK);
        if (rc) { fprintf(stderr, "  %s\n", e.msg); continue; }
        float *got = harness_logits(en, tok, N);
        CHECK(got != NULL);
        if (got && want) {
          size_t diff = 0;
          for (size_t i = 0; i < (size_t)N * (size_t)V; i++) diff += got[i] != want[i];
          CHECK_MSG(diff == 0, "%s policy %d budget %d prefetch %d: %zu logits differ", fam, pol, b, pf, diff);
        }
        moesz_cache_stats s;
        moesz_cache_stats_get(k, &s);
        CHECK(s.gets > 0 && s.gets == s.hits + s.misses + s.prefetch_waits);
        CHECK(s.misses > 0 && s.bytes_read > 0 && s.bytes_decoded >= s.bytes_read / 2);
        if (budgets[b] && !s.over_budget) CHECK_MSG(s.peak_bytes <= budgets[b] + one * 2, "peak %llu", (unsigned long long)s.peak_bytes);
        if (b == 0) CHECK_EQ_INT(s.evictions, 0);
        if (b == 1) CHECK(s.evictions > 0);
        if (pf != 1) CHECK_EQ_INT(s.prefetch_issued, 0);
        free(got);
        moesz_engine_close(en);
      }
  free(want);
  moesz_engine_close(ref);
  unlink(MSZ);
}

TEST(msz_serving_matches_folder_mixtral) { check_family("mixtral"); }
TEST(msz_serving_matches_folder_qwen2_moe) { check_family("qwen2_moe"); }
TEST(msz_serving_matches_folder_deepseek) { check_family("deepseek"); }
TEST(msz_serving_matches_folder_olmoe) { check_family("olmoe"); }

TEST(cache_rejects_bad_requests) {
  moesz_model *m;
  CHECK_EQ_INT(moesz_model_open("tests/fixtures/mixtral", &m, NULL), MOESZ_OK);
  if (!m) return;
  moesz_msz_opts o;
  memset(&o, 0, sizeof o);
  CHECK_EQ_INT(moesz_msz_write(m, MSZ, &o, NULL, NULL), MOESZ_OK);
  moesz_model_close(m);
  moesz_msz *c;
  CHECK_EQ_INT(moesz_msz_open(MSZ, &c, NULL), MOESZ_OK);
  moesz_cache *k;
  CHECK_EQ_INT(moesz_cache_create(c, NULL, &k, NULL), MOESZ_OK);
  moesz_matview v[3];
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_cache_get(k, 99, 0, v, &e), MOESZ_E_RANGE);
  CHECK_EQ_INT(moesz_cache_get(k, 0, -1, v, &e), MOESZ_E_RANGE);
  CHECK_EQ_INT(moesz_cache_get(k, 0, 1, v, &e), MOESZ_OK);
  CHECK(v[0].rows == moesz_msz_config(c)->moe_intermediate && v[2].cols == moesz_msz_config(c)->moe_intermediate);
  moesz_cache_release(k, 0, 1);
  moesz_cache_policy p;
  CHECK_EQ_INT(moesz_cache_policy_parse("lfru", &p), MOESZ_OK);
  CHECK_EQ_INT(p, MOESZ_CACHE_LFRU);
  CHECK_EQ_INT(moesz_cache_policy_parse("mru", &p), MOESZ_E_ARG);
  moesz_cache_destroy(k);
  moesz_msz_close(c);
  unlink(MSZ);
}

int main(void) {
  snprintf(MSZ, sizeof MSZ, "/tmp/moesz_runtime_%ld.msz", (long)getpid());
  RUN(msz_serving_matches_folder_mixtral);
  RUN(msz_serving_matches_folder_qwen2_moe);
  RUN(msz_serving_matches_folder_deepseek);
  RUN(msz_serving_matches_folder_olmoe);
  RUN(cache_rejects_bad_requests);
  return DONE();
}
