/* bench/engine_step.c - the engine's batched decode step without the server:
 * SEQS sequences (1..8) each decode STEPS greedy tokens, one token each per
 * moesz_engine_step, every expert resident (the model's own files); prints
 * tokens per second, the best of REPS runs. Compares one sequence with
 * several (what continuous batching gains per token) and thread counts.
 *
 *   engine_step [MODEL_DIR] SEQS STEPS THREADS REPS
 * Output: "SEQS seqs, THREADS threads: TOK_S tok/s". */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "moesz/infer.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: engine_step MODEL_DIR SEQS STEPS THREADS REPS\n");
    return 2;
  }
  int ns = atoi(argv[2]), steps = atoi(argv[3]), threads = atoi(argv[4]), reps = atoi(argv[5]);
  if (ns < 1 || ns > 8 || steps < 1 || threads < 1 || reps < 1) {
    fprintf(stderr, "engine_step: SEQS 1..8, STEPS, THREADS and REPS >= 1\n");
    return 2;
  }
  moesz_engine *e;
  moesz_engine_opts eo = {.threads = threads};
  moesz_error err = {0};
  if (moesz_engine_open(argv[1], &eo, &e, &err)) {
    fprintf(stderr, "engine_step: %s\n", err.msg);
    return 1;
  }
  int V = moesz_engine_vocab(e), rc = 0;
  moesz_seq *s[8] = {0};
  float *lg = malloc(sizeof(float) * (size_t)V * (size_t)ns);
  int32_t next[8];
  moesz_step_item it[8];
  if (!lg) rc = 1;
  for (int i = 0; i < ns && !rc; i++)
    if (moesz_seq_create(e, steps + 1, &s[i], &err)) rc = 1;
  double best = 1e30;
  for (int r = 0; r < reps && !rc; r++) {
    for (int i = 0; i < ns; i++) {
      moesz_seq_reset(s[i]);
      next[i] = 1 + 37 * i;   /* a different first token per sequence */
    }
    double t0 = now();
    for (int k = 0; k < steps && !rc; k++) {
      for (int i = 0; i < ns; i++) it[i] = (moesz_step_item){s[i], &next[i], 1, 0, lg + (size_t)i * (size_t)V};
      if (moesz_engine_step(e, it, ns, &err)) rc = 1;
      for (int i = 0; i < ns && !rc; i++) next[i] = moesz_argmax(lg + (size_t)i * (size_t)V, V);
    }
    double t = now() - t0;
    if (t < best) best = t;
  }
  if (rc) fprintf(stderr, "engine_step: %s\n", err.msg[0] ? err.msg : "out of memory");
  else printf("%d seqs, %d threads: %.1f tok/s\n", ns, threads, (double)ns * steps / best);
  for (int i = 0; i < ns; i++) moesz_seq_free(s[i]);
  free(lg);
  moesz_engine_close(e);
  return rc;
}
