/* bench/infer_kernels.c - speed of the infer linear kernels: matrix-vector
 * (decode) in GB/s of weights streamed and matrix-matrix (prompt) in GFLOP/s,
 * per dtype, AVX2 and scalar, 1..N threads. Medians of 7 runs.
 *
 *   build/bench/infer_kernels [rows cols tokens max_threads]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/pool.h"
#include "base/util.h"
#include "infer/kernels.h"
#include "moesz/tensor.h"

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double run(moesz_kctx *kc, moesz_kjob *j, int reps) {
  double t[16];
  for (int r = 0; r < reps; r++) {
    double t0 = moesz_time_now();
    moesz_k_linear(kc, j, 1);
    t[r] = moesz_time_now() - t0;
  }
  qsort(t, (size_t)reps, sizeof *t, cmpd);
  return t[reps / 2];
}

int main(int argc, char **argv) {
  int rows = argc > 1 ? atoi(argv[1]) : 8192, cols = argc > 2 ? atoi(argv[2]) : 2048;
  int ntok = argc > 3 ? atoi(argv[3]) : 64, maxthr = argc > 4 ? atoi(argv[4]) : 2;
  size_t n = (size_t)rows * cols;
  float *wf = malloc(n * sizeof(float));
  uint16_t *wb = malloc(n * 2), *wh = malloc(n * 2);
  float *x = malloc(sizeof(float) * (size_t)cols * ntok), *y = malloc(sizeof(float) * (size_t)rows * ntok);
  for (size_t i = 0; i < n; i++) wf[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
  moesz_f32_to_bf16_n(wf, wb, n);
  moesz_f32_to_f16_n(wf, wh, n);
  for (size_t i = 0; i < (size_t)cols * ntok; i++) x[i] = (float)(i % 7) * 0.1f;
  printf("# matrix %d x %d, prompt batch %d tokens; simd available %d\n", rows, cols, ntok,
         moesz_k_cpu_simd());
  printf("| dtype | kernel | threads | decode GB/s | decode ms | prompt GFLOP/s |\n|---|---|---|---|---|---|\n");
  const void *data[3] = {wf, wb, wh};
  moesz_dtype dts[3] = {MOESZ_DT_F32, MOESZ_DT_BF16, MOESZ_DT_F16};
  for (int d = 0; d < 3; d++)
    for (int simd = 1; simd >= 0; simd--)
      for (int th = 1; th <= maxthr; th++) {
        moesz_pool *pool = th > 1 ? moesz_pool_create(th) : NULL;
        moesz_kctx kc;
        if (moesz_kctx_init(&kc, pool, simd, moesz_k_scratch_need((size_t)cols, 16))) return 1;
        moesz_matview v = {data[d], dts[d], rows, cols, cols, 0};
        moesz_kjob j1 = {v, x, (size_t)cols, y, (size_t)rows, 1, 0};
        moesz_kjob jn = {v, x, (size_t)cols, y, (size_t)rows, ntok, 0};
        run(&kc, &j1, 2);
        double t1 = run(&kc, &j1, 7);
        double tn = simd || ntok <= 8 ? run(&kc, &jn, 3) : 0;
        printf("| %s | %s | %d | %.2f | %.3f | %.2f |\n", moesz_dtype_name(dts[d]),
               simd ? "avx2" : "scalar", th, (double)n * moesz_dtype_size(dts[d]) / t1 / 1e9,
               t1 * 1e3, tn > 0 ? 2.0 * (double)n * ntok / tn / 1e9 : 0.0);
        fflush(stdout);
        moesz_kctx_free(&kc);
        moesz_pool_destroy(pool);
      }
  free(wf); free(wb); free(wh); free(x); free(y);
  return 0;
}
