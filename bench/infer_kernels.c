/* bench/infer_kernels.c - speed of the infer linear kernels: matrix-vector
 * (decode) in GB/s of weights streamed, G weights/s and matrix-matrix
 * (prompt) in GFLOP/s, per dtype (F32, BF16, F16 and the codec's compute
 * layout at eb 1e-3), AVX2 and scalar, 1..N threads. Weights N(0, 0.02^2).
 * Medians of 7 runs; the last column is the same-run speed over BF16 with the
 * same kernel and threads.
 *
 *   build/bench/infer_kernels [rows cols tokens max_threads]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/pool.h"
#include "base/util.h"
#include "infer/kernels.h"
#include "moesz/codec.h"
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
  uint64_t st = 0x2545f4914f6cdd1dull;
  for (size_t i = 0; i < n; i++) {
    double u[2];
    for (int k = 0; k < 2; k++) { st ^= st << 13; st ^= st >> 7; st ^= st << 17; u[k] = ((double)(st >> 11) + 0.5) / 9007199254740992.0; }
    wf[i] = (float)(0.02 * sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]));
  }
  moesz_f32_to_bf16_n(wf, wb, n);
  moesz_f32_to_f16_n(wf, wh, n);
  void *clbuf;
  size_t cllen;
  moesz_cl_info cli;
  moesz_cl cl;
  moesz_error err;
  if (moesz_cl_encode(wb, MOESZ_DT_BF16, rows, cols, MOESZ_EB_ABS, 1e-3, &clbuf, &cllen, &cli, &err) ||
      moesz_cl_parse(clbuf, cllen, &cl, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
  for (size_t i = 0; i < (size_t)cols * ntok; i++) x[i] = (float)(i % 7) * 0.1f;
  printf("# matrix %d x %d, prompt batch %d tokens; simd available %d; compute layout %.3f bits/weight\n", rows,
         cols, ntok, moesz_k_cpu_simd(), cli.bits_per_value);
  printf("| dtype | kernel | threads | decode GB/s | G weights/s | decode ms | prompt GFLOP/s | decode vs BF16 | prompt vs BF16 |\n"
         "|---|---|---|---|---|---|---|---|---|\n");
  const void *data[4] = {wf, wb, wh, &cl};
  moesz_dtype dts[4] = {MOESZ_DT_F32, MOESZ_DT_BF16, MOESZ_DT_F16, MOESZ_VIEW_CL};
  double bf1[2][17], bfn[2][17];
  int order[4] = {1, 0, 2, 3};
  for (int oi = 0; oi < 4; oi++)
    for (int simd = 1; simd >= 0; simd--)
      for (int th = 1; th <= maxthr && th <= 16; th++) {
        moesz_pool *pool = th > 1 ? moesz_pool_create(th) : NULL;
        moesz_kctx kc;
        if (moesz_kctx_init(&kc, pool, simd, moesz_k_scratch_need((size_t)cols, 16))) return 1;
        int d = order[oi];
        moesz_matview v = {data[d], dts[d], rows, cols, cols, 0};
        moesz_kjob j1 = {v, x, (size_t)cols, y, (size_t)rows, 1, 0};
        moesz_kjob jn = {v, x, (size_t)cols, y, (size_t)rows, ntok, 0};
        run(&kc, &j1, 2);
        double t1 = run(&kc, &j1, 7);
        double tn = simd || ntok <= 8 ? run(&kc, &jn, 3) : 0;
        double bytes = d == 3 ? (double)cllen : (double)n * (double)moesz_dtype_size(dts[d]);
        if (d == 1) { bf1[simd][th] = t1; bfn[simd][th] = tn; }
        printf("| %s | %s | %d | %.2f | %.2f | %.3f | %.2f | %.2fx | %.2fx |\n", d == 3 ? "compute" : moesz_dtype_name(dts[d]),
               simd ? "avx2" : "scalar", th, bytes / t1 / 1e9, (double)n / t1 / 1e9,
               t1 * 1e3, tn > 0 ? 2.0 * (double)n * ntok / tn / 1e9 : 0.0, bf1[simd][th] / t1,
               tn > 0 && bfn[simd][th] > 0 ? bfn[simd][th] / tn : 0.0);
        fflush(stdout);
        moesz_kctx_free(&kc);
        moesz_pool_destroy(pool);
      }
  free(wf); free(wb); free(wh); free(x); free(y); free(clbuf); moesz_cl_free(&cl);
  return 0;
}
