/* bench/resmoe_speed.c - how long ResMoE's barycenter takes: the exact
 * assignment solver on dense n x n similarity costs (n = 256 .. 2048, and a
 * power-law fit to extrapolate to Mixtral's n = 14336), and full barycenter
 * iterations on an OLMoE-shaped layer (64 experts, n = 1024, D = 3 x 2048)
 * with the solver's share of the time. Random Gaussian weights.
 * `mixtral` runs one Mixtral-shaped layer instead (8 experts, n = 14336,
 * D = 3 x 4096; about 9 GB of memory and a long run on 2 cores).
 *
 *   build/bench/resmoe_speed [iterations=1] [experts=64]
 *   build/bench/resmoe_speed mixtral [iterations=1] */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "moesz/resmoe.h"

static uint64_t s = 0x9e3779b97f4a7c15ull;
static double g(void) {
  s ^= s << 13; s ^= s >> 7; s ^= s << 17;
  double u = ((double)(s >> 11) + 0.5) * 0x1p-53;
  s ^= s << 13; s ^= s >> 7; s ^= s << 17;
  double v = ((double)(s >> 11) + 0.5) * 0x1p-53;
  return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

/* One layer of E experts, each n x D, through moesz_resmoe_layer. */
static int layer(int E, int n, int D, int iters) {
  float **X = malloc(sizeof *X * (size_t)E);
  if (!X) return 1;
  for (int e = 0; e < E; e++) {
    X[e] = malloc(sizeof **X * (size_t)n * D);
    if (!X[e]) { fprintf(stderr, "out of memory\n"); return 1; }
    for (size_t i = 0; i < (size_t)n * D; i++) X[e][i] = (float)(0.02 * g());
  }
  moesz_resmoe_opts o = {.method = MOESZ_RESMOE, .keep = 0.25, .max_iter = iters};
  moesz_resmoe_report r;
  moesz_error err = {0};
  if (moesz_resmoe_layer(X, E, n, D, 2, &o, &r, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
  printf("  %d iteration(s) + residuals: %.1f s, of which LAP %.1f s (%.0f%%); objective %.4g\n", r.iters, r.seconds,
         r.lap_seconds, 100 * r.lap_seconds / r.seconds, r.objective[r.iters - 1]);
  free(r.rel_err);
  for (int e = 0; e < E; e++) free(X[e]);
  free(X);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "mixtral")) {
    int iters = argc > 2 ? atoi(argv[2]) : 1;
    printf("Mixtral-shaped layer: 8 experts, n = 14336, D = 12288, %d iteration(s)\n", iters);
    fflush(stdout);
    return layer(8, 14336, 3 * 4096, iters);
  }
  int iters = argc > 1 ? atoi(argv[1]) : 1, E = argc > 2 ? atoi(argv[2]) : 64;
  printf("LAP on n x n costs -<b_j, x_i> (rows of 2 random Gaussian n x 512 matrices)\n");
  double ln[8], lt[8];
  int k = 0;
  for (int n = 256; n <= 2048; n *= 2, k++) {
    int D = 512;
    float *a = malloc(sizeof *a * (size_t)n * D), *b = malloc(sizeof *b * (size_t)n * D), *c = malloc(sizeof *c * (size_t)n * n);
    double *cost = malloc(sizeof *cost * (size_t)n * n);
    int *asg = malloc(sizeof *asg * (size_t)n);
    for (size_t i = 0; i < (size_t)n * D; i++) { a[i] = (float)g(); b[i] = (float)g(); }
    double t0 = moesz_time_now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, D, 1, a, D, b, D, 0, c, n);
    double t1 = moesz_time_now();
    for (size_t i = 0; i < (size_t)n * n; i++) cost[i] = -(double)c[i];
    moesz_lap_solve(cost, n, asg, NULL, NULL, NULL);
    double t2 = moesz_time_now();
    ln[k] = log((double)n);
    lt[k] = log(t2 - t1);
    printf("  n = %5d: sgemm %.3f s, LAP %.3f s\n", n, t1 - t0, t2 - t1);
    free(a); free(b); free(c); free(cost); free(asg);
  }
  double mx = 0, my = 0, sxx = 0, sxy = 0;
  for (int i = 0; i < k; i++) { mx += ln[i] / k; my += lt[i] / k; }
  for (int i = 0; i < k; i++) { sxx += (ln[i] - mx) * (ln[i] - mx); sxy += (ln[i] - mx) * (lt[i] - my); }
  double p = sxy / sxx, t14336 = exp(my + p * (log(14336.0) - mx));
  printf("  fit: time ~ n^%.2f; extrapolated LAP at n = 14336: %.0f s per solve\n", p, t14336);
  printf("  Mixtral layer (8 experts) per barycenter iteration: about %.1f h of LAP\n\n", 8 * t14336 / 3600);
  int n = 1024, D = 3 * 2048;
  printf("OLMoE-shaped layer: %d experts, n = %d, D = %d, %d iteration(s)\n", E, n, D, iters);
  return layer(E, n, D, iters);
}
