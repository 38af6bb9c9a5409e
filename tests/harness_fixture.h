/* tests/harness_fixture.h - what the forward-pass tests share: a logits
 * fixture (tokens.txt and logits.f32 [n, vocab] written by the
 * tools/make_*fixtures*.py scripts from transformers), the comparison of
 * engine logits against it (max |diff| and argmax agreement per row), and
 * the check of one engine over the fixture's sequence as one batch, token
 * by token, and in three uneven chunks followed by a truncate-and-redo of
 * the tail. */
#ifndef MOESZ_TEST_HARNESS_FIXTURE_H
#define MOESZ_TEST_HARNESS_FIXTURE_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "harness.h"
#include "moesz/infer.h"

typedef struct {
  int32_t tok[256];
  int n, vocab;
  float *logits;   /* [n, vocab] */
} fixture;

/* 0, or -1 when a file is missing or logits.f32 is not [n, vocab] exactly. */
static inline int load_fixture(const char *dir, int vocab, fixture *f) {
  char p[512];
  snprintf(p, sizeof p, "%s/tokens.txt", dir);
  FILE *fp = fopen(p, "r");
  if (!fp) return -1;
  f->n = 0;
  while (f->n < 256 && fscanf(fp, "%d", &f->tok[f->n]) == 1) f->n++;
  fclose(fp);
  f->vocab = vocab;
  snprintf(p, sizeof p, "%s/logits.f32", dir);
  fp = fopen(p, "rb");
  if (!fp) return -1;
  f->logits = malloc(sizeof(float) * (size_t)f->n * (size_t)vocab);
  size_t got = f->logits ? fread(f->logits, sizeof(float), (size_t)f->n * (size_t)vocab, fp) : 0;
  int extra = fgetc(fp) != EOF;
  fclose(fp);
  if (got != (size_t)f->n * (size_t)vocab || extra) { free(f->logits); f->logits = NULL; return -1; }
  return 0;
}

/* max |diff| over rows [r0, r0 + nr) of got against the fixture; each row
 * whose argmax disagrees adds one to *argmax_bad. NaN counts as a failure. */
static inline double compare(const fixture *f, int r0, int nr, const float *got, int *argmax_bad) {
  double m = 0;
  for (int r = 0; r < nr; r++) {
    const float *ref = f->logits + (size_t)(r0 + r) * f->vocab, *g = got + (size_t)r * f->vocab;
    for (int i = 0; i < f->vocab; i++) {
      double dd = fabs((double)ref[i] - g[i]);
      if (!(dd <= m)) m = dd;
    }
    if (moesz_argmax(ref, f->vocab) != moesz_argmax(g, f->vocab)) (*argmax_bad)++;
  }
  return m;
}

/* Opens dir under o and checks its logits against the fixture within tol
 * with every argmax equal: the whole sequence as one batch, token by token,
 * then chunks [0, c1), [c1, c2), [c2, n) followed by truncating to 20
 * tokens and running the tail again (c1 < c2 <= 20 < n). */
static inline void harness_check_engine(const char *dir, const moesz_engine_opts *o, double tol, int c1, int c2) {
  moesz_error err = {0};
  moesz_engine *e = NULL;
  int rc = moesz_engine_open(dir, o, &e, &err);
  CHECK_MSG(rc == 0, "%s: %s", dir, err.msg);
  if (rc) return;
  fixture f;
  rc = load_fixture(dir, moesz_engine_vocab(e), &f);
  CHECK_MSG(rc == 0, "%s: fixture files", dir);
  if (rc) { moesz_engine_close(e); return; }
  int V = f.vocab, bad = 0;
  float *lg = malloc(sizeof(float) * (size_t)f.n * (size_t)V);
  /* 1. the whole sequence as one batch */
  CHECK(moesz_engine_forward(e, f.tok, (size_t)f.n, 1, lg, &err) == 0);
  CHECK_EQ_INT(moesz_engine_pos(e), f.n);
  double m1 = compare(&f, 0, f.n, lg, &bad);
  CHECK_MSG(m1 <= tol && bad == 0, "%s batch: max |diff| %g, %d argmax mismatches", dir, m1, bad);
  /* 2. token by token (last-position logits) */
  moesz_engine_reset(e);
  double m2 = 0;
  bad = 0;
  for (int t = 0; t < f.n; t++) {
    CHECK(moesz_engine_forward(e, &f.tok[t], 1, 0, lg, &err) == 0);
    double m = compare(&f, t, 1, lg, &bad);
    if (!(m <= m2)) m2 = m;
  }
  CHECK_MSG(m2 <= tol && bad == 0, "%s decode: max |diff| %g, %d argmax mismatches", dir, m2, bad);
  /* 3. uneven chunks (all logits), then truncate and redo the tail */
  moesz_engine_reset(e);
  double m3 = 0;
  bad = 0;
  int cut[4] = {0, c1, c2, f.n};
  for (int c = 0; c < 3; c++) {
    int nn = cut[c + 1] - cut[c];
    CHECK(moesz_engine_forward(e, f.tok + cut[c], (size_t)nn, 1, lg, &err) == 0);
    double m = compare(&f, cut[c], nn, lg, &bad);
    if (!(m <= m3)) m3 = m;
  }
  CHECK(moesz_engine_truncate(e, 20, &err) == 0);
  CHECK(moesz_engine_forward(e, f.tok + 20, (size_t)(f.n - 20), 0, lg, &err) == 0);
  double m = compare(&f, f.n - 1, 1, lg, &bad);
  if (!(m <= m3)) m3 = m;
  CHECK_MSG(m3 <= tol && bad == 0, "%s chunks: max |diff| %g, %d argmax mismatches", dir, m3, bad);
  printf("# %-28s threads %d scalar %d group %d: max |diff| batch %.2e decode %.2e chunks %.2e\n", dir,
         o ? o->threads : 0, o ? o->scalar : 0, o ? o->expert_group : 0, m1, m2, m3);
  free(lg);
  free(f.logits);
  moesz_engine_close(e);
}
#endif
