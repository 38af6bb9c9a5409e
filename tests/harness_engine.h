/* tests/harness_engine.h - what the engine tests share: the logits of a
 * token sequence as a prompt batch of 24 then token by token (the decode
 * path), [n, vocab]; NULL on any error. */
#ifndef MOESZ_TEST_HARNESS_ENGINE_H
#define MOESZ_TEST_HARNESS_ENGINE_H
#include <stdlib.h>
#include "moesz.h"

static inline float *harness_logits(moesz_engine *e, const int32_t *tok, int n) {
  int V = moesz_engine_vocab(e);
  float *lg = malloc((size_t)n * (size_t)V * sizeof *lg);
  if (!lg || moesz_engine_forward(e, tok, 24, 1, lg, NULL)) { free(lg); return NULL; }
  for (int i = 24; i < n; i++)
    if (moesz_engine_forward(e, tok + i, 1, 1, lg + (size_t)i * (size_t)V, NULL)) { free(lg); return NULL; }
  return lg;
}
#endif
