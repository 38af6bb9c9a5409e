/* tests/harness_engine.h - what the engine tests share: the logits of a
 * token sequence as a prompt batch of 24 then token by token (the decode
 * path), [n, vocab]; NULL on any error; and writing a fixture as a
 * container. */
#ifndef MOESZ_TEST_HARNESS_ENGINE_H
#define MOESZ_TEST_HARNESS_ENGINE_H
#include <stdlib.h>
#include <string.h>
#include "moesz.h"

static inline float *harness_logits(moesz_engine *e, const int32_t *tok, int n) {
  int V = moesz_engine_vocab(e);
  float *lg = malloc((size_t)n * (size_t)V * sizeof *lg);
  if (!lg || moesz_engine_forward(e, tok, 24, 1, lg, NULL)) { free(lg); return NULL; }
  for (int i = 24; i < n; i++)
    if (moesz_engine_forward(e, tok + i, 1, 1, lg + (size_t)i * (size_t)V, NULL)) { free(lg); return NULL; }
  return lg;
}
/* Writes model folder dir as a container at path with method (bound 1e-3,
 * one thread); the status of the write, or -1 if dir does not open. */
static inline int harness_write_msz(const char *dir, moesz_msz_method method, const char *path) {
  moesz_model *m;
  if (moesz_model_open(dir, &m, NULL)) return -1;
  moesz_msz_opts o;
  memset(&o, 0, sizeof o);
  o.method = method;
  o.eb = 1e-3;
  o.threads = 1;
  int rc = moesz_msz_write(m, path, &o, NULL, NULL);
  moesz_model_close(m);
  return rc;
}
#endif
