/* bench/infer_kernels.c - speed of the infer linear kernels: matrix-vector
 * (decode) in GB/s of weights streamed, G weights/s and matrix-matrix
 * (prompt) in GFLOP/s, per dtype (F32, BF16, F16 and the codec's compute
 * layout (eb 1e-3 unless given), its integer path with x split exactly or rounded to 16
 * bits (fast_dot), and its float path; BF16 against x rounded to BF16 where
 * the CPU has AVX512_BF16), the best SIMD level (AVX-512 where present,
 * else AVX2) and scalar, 1..N threads. Weights N(0, 0.02^2).
 * Medians of 7 runs; the last column is the same-run speed over BF16 with the
 * same kernel and threads. Then the small-batch table: 1..16 tokens (a
 * batched decode step's rows per expert) over BF16 and F16 rows with the
 * small-batch path (kctx.sb_max 16) and the packed path (sb_max 0), best simd
 * level, max_threads threads; sb_max's default is where the packed path
 * starts to win.
 *
 *   build/bench/infer_kernels [rows cols tokens max_threads [simd-only [small-batch-only [eb]]]]
 *
 * eb: the compute layout's bound (default 1e-3; 6e-3 gives 3- and 4-bit groups).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/pool.h"
#include "base/util.h"
#include "base/cpu.h"
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

/* Largest |y - w x| / sum |w x| over nr rows of w [nr, cols] and nt tokens of
 * x [nt, cols], y [nt, ldy], against double sums. */
static double worst_rel(const float *w, int nr, int cols, const float *x, int nt, const float *y, int ldy) {
  double worst = 0;
  for (int t = 0; t < nt; t++)
    for (int r = 0; r < nr; r++) {
      double s = 0, mag = 0;
      for (int c = 0; c < cols; c++) {
        double p = (double)w[(size_t)r * cols + c] * x[(size_t)t * cols + c];
        s += p;
        mag += fabs(p);
      }
      worst = fmax(worst, fabs(y[(size_t)t * ldy + r] - s) / (mag + 1e-30));
    }
  return worst;
}

int main(int argc, char **argv) {
  int rows = argc > 1 ? atoi(argv[1]) : 8192, cols = argc > 2 ? atoi(argv[2]) : 2048;
  int ntok = argc > 3 ? atoi(argv[3]) : 64, maxthr = argc > 4 ? atoi(argv[4]) : 2;
  int simd_only = argc > 5 && atoi(argv[5]) != 0, sb_only = argc > 6 && atoi(argv[6]) != 0;
  if (ntok < 16) ntok = 16;   /* the small-batch table goes to 16 tokens */
  double eb = argc > 7 ? atof(argv[7]) : 1e-3;
  if (!(eb > 0)) { fprintf(stderr, "eb must be > 0\n"); return 1; }
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
  if (moesz_cl_encode(wb, MOESZ_DT_BF16, rows, cols, MOESZ_EB_ABS, eb, 1, &clbuf, &cllen, &cli, &err) ||
      moesz_cl_parse(clbuf, cllen, &cl, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
  int nr = rows < 256 ? rows : 256;   /* rows checked against a double product */
  float *wdec = malloc((size_t)nr * (size_t)cols * sizeof(float)), *wbdec = malloc((size_t)nr * (size_t)cols * sizeof(float));
  moesz_k_cl_unpack(&cl, 0, nr, wdec, 0);
  moesz_bf16_to_f32_n(wb, wbdec, (size_t)nr * (size_t)cols);
  for (size_t i = 0; i < (size_t)cols * ntok; i++) x[i] = (float)((i * 2654435761u) % 1001) * 0.002f - 1.0f;
  printf("# matrix %d x %d, prompt batch %d tokens; AVX2 %d, AVX-512 F+BW+VNNI %d, AVX512_BF16 %d; compute layout at eb %g: "
         "%.3f bits/weight\n", rows, cols, ntok, moesz_k_cpu_simd(), moesz_cpu_avx512_vnni(), moesz_cpu_avx512_bf16(), eb,
         cli.bits_per_value);
  printf("| dtype | kernel | threads | decode GB/s | G weights/s | decode ms | prompt GFLOP/s | decode vs BF16 | prompt vs BF16 |\n"
         "|---|---|---|---|---|---|---|---|---|\n");
  const void *data[8] = {wf, wb, wh, &cl, &cl, &cl, &cl, wb};
  moesz_dtype dts[8] = {MOESZ_DT_F32, MOESZ_DT_BF16, MOESZ_DT_F16, MOESZ_VIEW_CL, MOESZ_VIEW_CL, MOESZ_VIEW_CL,
                        MOESZ_VIEW_CL, MOESZ_DT_BF16};
  static const char *names[8] = {"F32", "BF16", "F16", "compute (int16 path)", "compute (float path)",
                                 "compute (int16 path, AVX2 only)", "compute (int16 path, 16-bit x: fast_dot)",
                                 "BF16, x rounded to BF16 (AVX512_BF16: fast_dot)"};
  double bf1[2][17], bfn[2][17];
  int order[8] = {1, 7, 3, 6, 5, 4, 0, 2};
  for (int oi = 0; oi < (sb_only ? 0 : 8); oi++)
    for (int simd = 1; simd >= simd_only; simd--)
      for (int th = 1; th <= maxthr && th <= 16; th++) {
        moesz_pool *pool = th > 1 ? moesz_pool_create(th) : NULL;
        moesz_kctx kc;
        int d = order[oi];
        if (moesz_kctx_init(&kc, pool, simd ? d == 5 ? 1 : -1 : 0, moesz_k_scratch_need((size_t)cols, 16))) return 1;
        kc.no_int = d == 4;
        kc.cl_act = d == 6;
        kc.bf16x = d == 7;
        if (d == 7 && !kc.dpbf16) { moesz_kctx_free(&kc); moesz_pool_destroy(pool); continue; }   /* no AVX512_BF16 */
        /* x in [-1, 1] rounded to 16 bits a group: each term off by <= |w| / 65534 */
        moesz_matview v = {data[d], dts[d], rows, cols, cols, 0};
        moesz_kjob j1 = {v, x, (size_t)cols, y, (size_t)rows, 1, 0};
        moesz_kjob jn = {v, x, (size_t)cols, y, (size_t)rows, ntok, 0};
        run(&kc, &j1, 2);
        if (d >= 3) {
          /* the result against a double product with the reference weights (first nr rows): the decoded
           * codes, or for d 7 the BF16 weights, x being rounded to BF16 (each term off by <= 2^-9 of |w x|) */
          const float *wref = d == 7 ? wbdec : wdec;
          double tol = d == 7 ? 1.0 / 256 : d == 6 ? 1e-4 : 1e-5;
          double worst = worst_rel(wref, nr, cols, x, 1, y, rows);
          if (worst > tol) { fprintf(stderr, "%s result off: %.3g relative\n", names[d], worst); return 1; }
          /* and the fused multi-token path (3 tokens) */
          if (d != 7 && ntok >= 3) {
            moesz_kjob j3 = {v, x, (size_t)cols, y, (size_t)rows, 3, 0};
            moesz_k_linear(&kc, &j3, 1);
            worst = worst_rel(wref, nr, cols, x, 3, y, rows);
            if (worst > tol) { fprintf(stderr, "%s 3-token result off: %.3g relative\n", names[d], worst); return 1; }
          }
        }
        double t1 = run(&kc, &j1, 7);
        double tn = simd || ntok <= 8 ? run(&kc, &jn, 3) : 0;
        if (d == 5 && !moesz_cpu_avx512_vnni()) { moesz_kctx_free(&kc); moesz_pool_destroy(pool); continue; }
        double bytes = d >= 3 && d != 7 ? (double)cllen : (double)n * (double)moesz_dtype_size(dts[d]);
        if (d == 1) { bf1[simd][th] = t1; bfn[simd][th] = tn; }
        printf("| %s | %s | %d | %.2f | %.2f | %.3f | %.2f | %.2fx | %.2fx |\n", names[d],
               kc.simd >= 2 ? "avx512" : kc.simd ? "avx2" : "scalar", th, bytes / t1 / 1e9, (double)n / t1 / 1e9,
               t1 * 1e3, tn > 0 ? 2.0 * (double)n * ntok / tn / 1e9 : 0.0, bf1[simd][th] / t1,
               tn > 0 && bfn[simd][th] > 0 ? bfn[simd][th] / tn : 0.0);
        fflush(stdout);
        moesz_kctx_free(&kc);
        moesz_pool_destroy(pool);
      }
  /* small batches: the small-batch path against the packed one */
  printf("\n# small batch: %d x %d, %d threads, best simd level\n", rows, cols, maxthr);
  printf("| dtype | tokens | small-batch ms | packed ms | packed / small-batch | small-batch / (tokens x one-token) |\n"
         "|---|---|---|---|---|---|\n");
  {
    moesz_pool *pool = maxthr > 1 ? moesz_pool_create(maxthr) : NULL;
    moesz_kctx kc;
    if (moesz_kctx_init(&kc, pool, -1, moesz_k_scratch_need((size_t)cols, 16))) return 1;
    static const int ns[] = {1, 2, 3, 4, 5, 6, 8, 10, 12, 16};
    for (int d = 0; d < 2; d++) {
      moesz_matview v = {d ? (const void *)wh : (const void *)wb, d ? MOESZ_DT_F16 : MOESZ_DT_BF16, rows, cols,
                         cols, 0};
      double one = 0;
      for (size_t i = 0; i < sizeof ns / sizeof *ns; i++) {
        moesz_kjob j = {v, x, (size_t)cols, y, (size_t)rows, ns[i], 0};
        kc.sb_max = 16;
        run(&kc, &j, 2);
        double tsb = run(&kc, &j, 7);
        kc.sb_max = 0;
        run(&kc, &j, 2);
        double tpk = run(&kc, &j, 7);
        if (ns[i] == 1) one = tsb;
        printf("| %s | %d | %.4f | %.4f | %.2fx | %.2f |\n", d ? "F16" : "BF16", ns[i], tsb * 1e3, tpk * 1e3,
               tpk / tsb, tsb / (ns[i] * one));
        fflush(stdout);
      }
    }
    moesz_kctx_free(&kc);
    moesz_pool_destroy(pool);
  }
  free(wf); free(wb); free(wh); free(x); free(y); free(clbuf); moesz_cl_free(&cl); free(wdec); free(wbdec);
  return 0;
}
