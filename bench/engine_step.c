/* bench/engine_step.c - the engine's batched decode step without the server:
 * SEQS sequences (1..8) each decode STEPS tokens sampled at temperature 0.8
 * (a seed per sequence and rep, as bench/serve_client's requests), one token
 * each per step; prints tokens per second, the best of REPS runs. Compares one
 * sequence with several (what continuous batching gains per token), thread
 * counts and, with GROUPS = 2, every step split in two halves stepped at the
 * same time by two sibling engines of one thread each
 * (moesz_engine_open_sibling), which wait for each other at the end of the
 * step (`moesz serve --workers 2` instead runs its workers' steps
 * independently; bench/results/serve.md "Workers").
 *
 *   engine_step MODEL SEQS STEPS THREADS REPS [MEM_BYTES [GROUPS]]
 * MODEL: a model folder (every expert resident) or a .msz container, served
 * under an expert cache of MEM_BYTES (0 = unlimited; LFRU, buffered reads,
 * as bench/serve_batch.sh runs the server). The cache carries over from rep
 * to rep (the first rep warms it).
 * Output: "SEQS seqs, THREADS threads, GROUPS groups: TOK_S tok/s, B expert
 * bytes read per token" (B of the best rep; 0 without a budget). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "base/pool.h"
#include "moesz/infer.h"
#include "moesz/runtime.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct {
  moesz_engine *g[2];     /* the engine of each group */
  moesz_step_item *it;    /* [ns] */
  int split;              /* items [0, split) to group 0, the rest to group 1 */
  int ns;
  int rc[2];
  moesz_error err[2];
} groups_ctx;

static void group_task(void *vctx, size_t i, int tid) {
  (void)tid;
  groups_ctx *G = vctx;
  int a = i ? G->split : 0, b = i ? G->ns : G->split;
  G->rc[i] = b > a ? moesz_engine_step(G->g[i], G->it + a, b - a, &G->err[i]) : 0;
}

int main(int argc, char **argv) {
  if (argc < 6 || argc > 8) {
    fprintf(stderr, "usage: engine_step MODEL SEQS STEPS THREADS REPS [MEM_BYTES [GROUPS]]\n");
    return 2;
  }
  int ns = atoi(argv[2]), steps = atoi(argv[3]), threads = atoi(argv[4]), reps = atoi(argv[5]);
  long long mem = argc > 6 ? atoll(argv[6]) : 0;
  int groups = argc > 7 ? atoi(argv[7]) : 1;
  if (ns < 1 || ns > 8 || steps < 1 || threads < 1 || reps < 1 || mem < 0 || groups < 1 || groups > 2) {
    fprintf(stderr, "engine_step: SEQS 1..8, STEPS, THREADS and REPS >= 1, MEM_BYTES >= 0, GROUPS 1..2\n");
    return 2;
  }
  moesz_engine *e, *sib[2] = {0};
  moesz_cache *cache = NULL;
  moesz_engine_opts eo = {.threads = threads};
  moesz_error err = {0};
  int rc;
  if (moesz_engine_is_msz(argv[1])) {
    moesz_cache_opts co = {.budget_bytes = (uint64_t)mem, .policy = MOESZ_CACHE_LFRU, .dtype = MOESZ_DT_COUNT,
                           .miss_threads = threads};
    co.store.mode = mem ? MOESZ_STORE_BUFFERED : MOESZ_STORE_MMAP;
    rc = moesz_engine_open_msz(argv[1], &co, &eo, &e, &cache, &err);
  } else {
    rc = moesz_engine_open(argv[1], &eo, &e, &err);
  }
  if (rc) {
    fprintf(stderr, "engine_step: %s\n", err.msg);
    return 1;
  }
  moesz_pool *gp = NULL;
  if (groups == 2) {
    for (int i = 0; i < 2 && !rc; i++) rc = moesz_engine_open_sibling(e, 1, &sib[i], &err);
    if (!rc && !(gp = moesz_pool_create(2))) rc = 1;
    if (rc) {
      fprintf(stderr, "engine_step: %s\n", err.msg[0] ? err.msg : "out of memory");
      for (int i = 0; i < 2; i++) moesz_engine_close(sib[i]);
      moesz_engine_close(e);
      return 1;
    }
  }
  int V = moesz_engine_vocab(e);
  moesz_seq *s[8] = {0};
  float *lg = malloc(sizeof(float) * (size_t)V * (size_t)ns);
  int32_t next[8];
  moesz_step_item it[8];
  moesz_sampler sm[8];
  if (!lg) rc = 1;
  for (int i = 0; i < ns && !rc; i++)
    if (moesz_seq_create(e, steps + 1, &s[i], &err)) rc = 1;
  groups_ctx G = {.g = {sib[0], sib[1]}, .it = it, .split = (ns + 1) / 2, .ns = ns};
  double best = 1e30, best_bpt = 0;
  for (int r = 0; r < reps && !rc; r++) {
    moesz_cache_stats c0 = {0}, c1 = {0};
    if (cache) moesz_cache_stats_get(cache, &c0);
    for (int i = 0; i < ns; i++) {
      moesz_seq_reset(s[i]);
      next[i] = 1 + 37 * i;   /* a different first token per sequence */
      moesz_sampler_init(&sm[i], 0.8f, 1.0f, (uint64_t)(1000 * r + i + 1));
    }
    double t0 = now();
    for (int k = 0; k < steps && !rc; k++) {
      for (int i = 0; i < ns; i++) it[i] = (moesz_step_item){s[i], &next[i], 1, 0, lg + (size_t)i * (size_t)V};
      if (groups == 2 && ns > 1) {
        moesz_pool_run(gp, 2, group_task, &G);
        for (int g = 0; g < 2 && !rc; g++)
          if (G.rc[g]) { rc = 1; err = G.err[g]; }
      } else if (moesz_engine_step(e, it, ns, &err)) rc = 1;
      for (int i = 0; i < ns && !rc; i++)
        if ((next[i] = moesz_sampler_sample(&sm[i], lg + (size_t)i * (size_t)V, V)) < 0) rc = 1;
    }
    double t = now() - t0;
    if (cache) moesz_cache_stats_get(cache, &c1);
    if (t < best) {
      best = t;
      best_bpt = (double)(c1.bytes_read - c0.bytes_read) / ((double)ns * steps);
    }
    for (int i = 0; i < ns; i++) moesz_sampler_free(&sm[i]);
  }
  if (rc) fprintf(stderr, "engine_step: %s\n", err.msg[0] ? err.msg : "out of memory");
  else printf("%d seqs, %d threads, %d groups: %.1f tok/s, %.0f expert bytes read per token\n", ns, threads, groups,
              (double)ns * steps / best, best_bpt);
  for (int i = 0; i < ns; i++) moesz_seq_free(s[i]);
  free(lg);
  moesz_pool_destroy(gp);
  for (int i = 0; i < 2; i++) moesz_engine_close(sib[i]);
  moesz_engine_close(e);
  return rc;
}
