/* bench/bench_stats.c - speed of moesz_matview_stats (what `moesz inspect
 * --stats` spends its time in) on one Mixtral-8x7B-sized expert matrix
 * (14336 x 4096 bf16, Gaussian sigma 0.02), against the bf16 -> f32
 * conversion of the same matrix and a memcpy of it in the same run.
 * Usage: bench_stats [REPS=5]; prints medians in seconds and GB/s of bf16 input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "moesz/model.h"
#include "moesz/tensor.h"

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 5;
  if (reps < 1 || reps > 100) reps = 5;
  const int64_t rows = 14336, cols = 4096;
  size_t n = (size_t)(rows * cols);
  uint16_t *w = malloc(n * 2), *cp = malloc(n * 2);
  float *f = malloc((size_t)cols * 4 * 2);
  if (!w || !cp || !f) return 1;
  uint64_t s = 88172645463325252ull;
  for (size_t i = 0; i < n; i += 2) {
    double u[2];
    for (int k = 0; k < 2; k++) {
      s ^= s << 13; s ^= s >> 7; s ^= s << 17;
      u[k] = ((double)(s >> 11) + 0.5) / 9007199254740992.0;
    }
    double r = sqrt(-2 * log(u[0]));
    float g[2] = {(float)(0.02 * r * cos(6.283185307179586 * u[1])),
                  (float)(0.02 * r * sin(6.283185307179586 * u[1]))};
    moesz_f32_to_bf16_n(g, w + i, 2);
  }
  moesz_matview v = {w, MOESZ_DT_BF16, rows, cols, cols, 0};
  double ts[100], tc[100], tm[100];
  moesz_matstats st;
  for (int r = 0; r < reps; r++) {
    double t0 = moesz_time_now();
    memcpy(cp, w, n * 2);
    double t1 = moesz_time_now();
    for (int64_t i = 0; i < rows; i++) moesz_bf16_to_f32_n(w + i * cols, f, (size_t)cols);
    double t2 = moesz_time_now();
    if (moesz_matview_stats(&v, 1e-3, &st, NULL)) return 1;
    double t3 = moesz_time_now();
    tm[r] = t1 - t0; tc[r] = t2 - t1; ts[r] = t3 - t2;
  }
  qsort(tm, (size_t)reps, sizeof *tm, cmpd);
  qsort(tc, (size_t)reps, sizeof *tc, cmpd);
  qsort(ts, (size_t)reps, sizeof *ts, cmpd);
  double gb = (double)n * 2 / 1e9, m = tm[reps / 2], c = tc[reps / 2], t = ts[reps / 2];
  printf("matrix 14336x4096 bf16 (%.3f GB), %d reps, medians\n", gb, reps);
  printf("memcpy            %.4f s  %6.2f GB/s\n", m, gb / m);
  printf("bf16->f32 rows    %.4f s  %6.2f GB/s\n", c, gb / c);
  printf("matview_stats     %.4f s  %6.2f GB/s  (%.1fx the conversion)\n", t, gb / t, t / c);
  printf("H = %.4f bits/value at eb 1e-3 (Gaussian theory 5.369), std %.5f\n", st.entropy_bits, st.std);
  free(w); free(cp); free(f);
  return 0;
}
