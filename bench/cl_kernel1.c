/* bench/cl_kernel1.c - the compute layout's one-token kernel on one thread
 * with the matrix in cache: the group widths the encoder chose at a bound
 * (histogram), the best of N calls in G weights/s and ns per group of 64, for
 * x split exactly (mode 0), rounded to 16 bits (1: fast_dot), the float
 * path (2) or 2- and 4-bit groups against x rounded to 8 bits (3: fast_dot = 2). Weights N(0, 0.02^2), x in [-1, 1]. Run under
 * `valgrind --tool=callgrind` with reps 1 and 21 for instructions per group
 * (the difference over 20 calls).
 *
 * simd: 1 the AVX2 kernels, 3 AVX-512 VBMI + VNNI (modes 0 and 1; default: the
 * best this CPU has, as moesz_kctx_init chooses). grid: 0 as the encoder
 * chooses, 1 the zero grid, 2 the half grid (moesz_cl_encode_ex).
 *
 *   build/bench/cl_kernel1 [rows cols eb reps mode simd grid]   (default 256 2048 1e-3 400 0 best 0)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "base/pool.h"
#include "base/util.h"
#include "infer/kernels.h"
#include "moesz/codec.h"

int main(int argc, char **argv) {
  int rows = argc > 1 ? atoi(argv[1]) : 256, cols = argc > 2 ? atoi(argv[2]) : 2048;
  double eb = argc > 3 ? atof(argv[3]) : 1e-3;
  int reps = argc > 4 ? atoi(argv[4]) : 400, mode = argc > 5 ? atoi(argv[5]) : 0, simd = argc > 6 ? atoi(argv[6]) : -1;
  int grid = argc > 7 ? atoi(argv[7]) : MOESZ_CL_GRID_AUTO;
  if (rows < 1 || cols < 1 || cols > 65536 || !(eb > 0) || reps < 1 || mode < 0 || mode > 3 || grid < 0 || grid > 2) {
    fprintf(stderr, "usage: cl_kernel1 [rows cols eb reps mode(0 exact, 1 fast_dot, 2 float, 3 8-bit x) simd "
                    "grid(0 auto, 1 zero, 2 half)]\n");
    return 2;
  }
  size_t n = (size_t)rows * (size_t)cols;
  float *w = malloc(n * 4), *x = malloc((size_t)cols * 4), *y = malloc((size_t)rows * 4);
  void *scr = aligned_alloc(64, (moesz_k_cl_scratch_bytes(cols) + 63) / 64 * 64);
  if (!w || !x || !y || !scr) { fprintf(stderr, "out of memory\n"); return 1; }
  uint64_t st = 0x2545f4914f6cdd1dull;
  for (size_t i = 0; i < n; i++) {
    double u[2];
    for (int k = 0; k < 2; k++) { st ^= st << 13; st ^= st >> 7; st ^= st << 17; u[k] = ((double)(st >> 11) + 0.5) / 9007199254740992.0; }
    w[i] = (float)(0.02 * sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]));
  }
  for (int i = 0; i < cols; i++) x[i] = (float)((i * 2654435761u) % 1001) * 0.002f - 1.0f;
  void *buf;
  size_t len;
  moesz_cl_info info;
  moesz_cl m;
  moesz_error err;
  if (moesz_cl_encode_ex(w, MOESZ_DT_F32, rows, cols, MOESZ_EB_ABS, eb, grid, 1, &buf, &len, &info, &err) ||
      moesz_cl_parse(buf, len, &m, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
  uint64_t tot = 0;
  for (int b = 0; b <= MOESZ_CL_MAXW; b++) tot += info.groups_by_width[b];
  printf("# %d x %d at eb %g, %s grid: %.3f bits/weight, %llu escapes; groups by width:", rows, cols, eb,
         info.half ? "half" : "zero", info.bits_per_value, (unsigned long long)info.escapes);
  for (int b = 0; b <= MOESZ_CL_MAXW; b++)
    if (info.groups_by_width[b]) printf(" %d: %.1f%%", b, 100.0 * (double)info.groups_by_width[b] / (double)tot);
  printf("\n");
  if (simd < 0 || simd > 3) {   /* the best this CPU has */
    moesz_pool *pool = moesz_pool_create(1);
    moesz_kctx kc;
    if (!pool || moesz_kctx_init(&kc, pool, -1, 1 << 16)) { fprintf(stderr, "kernel context failed\n"); return 1; }
    simd = kc.simd;
    moesz_kctx_free(&kc);
    moesz_pool_destroy(pool);
  }
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    double t0 = moesz_time_now();
    moesz_k_cl_rows(&m, 0, rows, x, (size_t)cols, 1, y, (size_t)rows, 0, simd, mode == 3 ? 2 : mode == 1, mode == 2 ? NULL : scr, 0);
    double t = moesz_time_now() - t0;
    if (t < best) best = t;
  }
  printf("mode %d (%s), simd %d: %.2f G weights/s, %.2f ns/group (y[0] = %.7g)\n", mode,
         mode == 0 ? "exact" : mode == 1 ? "fast_dot" : mode == 2 ? "float" : "8-bit x", simd, (double)n / best / 1e9,
         best * 1e9 / ((double)rows * (double)m.ngroups), y[0]);
  moesz_cl_free(&m);
  free(buf); free(w); free(x); free(y); free(scr);
  return 0;
}
