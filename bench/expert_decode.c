/* bench/expert_decode.c - the expert half of a decoded token in isolation: a
 * MoE layer's k routed experts of E (gate and up in one parallel region, SiLU,
 * down in another, as the engine's moe_block runs one token), with the
 * experts' weights from memory (E experts spread over more bytes than the
 * caches hold; each repetition routes to k others), through moesz_k_linear
 * on the thread pool. Per weight format: BF16 (the baseline), the compute
 * layout at a bound with x split exactly, rounded to 16 bits (fast_dot 1) and
 * with 2- and 4-bit groups against 8-bit x (fast_dot 2). Prints the median time of a
 * layer, G weights/s and GB/s of weights read, GFLOP/s, and the same-run speed-up over
 * BF16. Weights N(0, 0.02^2). With tokens > 1, each routed expert multiplies
 * that many tokens (a prompt's share of an expert: 64 tokens, top-8 of 64
 * experts give 8 on average), through the packed, fused or 8-bit tile path as
 * the engine's prompt does.
 *
 *   build/bench/expert_decode [hidden inter E k threads eb reps tokens]
 *       (default 2048 1024 32 8 2 4e-3 60 1: OLMoE's expert shape, one token)
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

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void) {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}

typedef struct {
  moesz_matview m[3];   /* gate [inter, hidden], up [inter, hidden], down [hidden, inter] */
  size_t bytes;
} expert;

/* One layer's k experts for n tokens each: y = down(silu(gate x) * up x) per expert. */
static double layer(moesz_kctx *kc, expert *ex, const int *pick, int k, int n, const float *x, float *hg, float *hu,
                    float *yd, int hidden, int inter) {
  moesz_kjob j[64];
  size_t hi = (size_t)n * (size_t)inter, hh = (size_t)n * (size_t)hidden;
  double t0 = moesz_time_now();
  for (int a = 0; a < k; a++) {
    j[2 * a] = (moesz_kjob){ex[pick[a]].m[0], x, (size_t)hidden, hg + a * hi, (size_t)inter, n, 0};
    j[2 * a + 1] = (moesz_kjob){ex[pick[a]].m[1], x, (size_t)hidden, hu + a * hi, (size_t)inter, n, 0};
  }
  if (moesz_k_linear(kc, j, 2 * k)) return -1;
  moesz_k_silu_mul(hg, hu, (size_t)k * hi);
  for (int a = 0; a < k; a++)
    j[a] = (moesz_kjob){ex[pick[a]].m[2], hg + a * hi, (size_t)inter, yd + a * hh, (size_t)hidden, n, 0};
  if (moesz_k_linear(kc, j, k)) return -1;
  return moesz_time_now() - t0;
}

int main(int argc, char **argv) {
  int hidden = argc > 1 ? atoi(argv[1]) : 2048, inter = argc > 2 ? atoi(argv[2]) : 1024;
  int E = argc > 3 ? atoi(argv[3]) : 32, k = argc > 4 ? atoi(argv[4]) : 8, th = argc > 5 ? atoi(argv[5]) : 2;
  double eb = argc > 6 ? atof(argv[6]) : 4e-3;
  int reps = argc > 7 ? atoi(argv[7]) : 60, n = argc > 8 ? atoi(argv[8]) : 1;
  if (hidden < 64 || inter < 64 || hidden > 65536 || inter > 65536 || E < 1 || k < 1 || k > 32 || k > E ||
      th < 1 || th > 64 || !(eb > 0) || reps < 3 || reps > 10000 || n < 1 || n > 256) {
    fprintf(stderr, "usage: expert_decode [hidden inter E k threads eb reps tokens]\n");
    return 2;
  }
  size_t nw = (size_t)hidden * (size_t)inter;
  float *w = malloc(nw * sizeof(float));
  float *x = malloc((size_t)n * hidden * sizeof(float)), *hg = malloc((size_t)k * n * inter * sizeof(float));
  float *hu = malloc((size_t)k * n * inter * sizeof(float)), *yd = malloc((size_t)k * n * hidden * sizeof(float));
  expert *bf = calloc((size_t)E, sizeof *bf), *cl = calloc((size_t)E, sizeof *cl);
  void **bufs = calloc((size_t)E * 3, sizeof *bufs);
  moesz_cl *cls = calloc((size_t)E * 3, sizeof *cls);
  if (!w || !x || !hg || !hu || !yd || !bf || !cl || !bufs || !cls) { fprintf(stderr, "out of memory\n"); return 1; }
  for (int i = 0; i < n * hidden; i++) x[i] = (float)(urand() * 2 - 1);
  size_t bf_bytes = 0, cl_bytes = 0;
  for (int e = 0; e < E; e++)
    for (int t = 0; t < 3; t++) {
      int rows = t < 2 ? inter : hidden, cols = t < 2 ? hidden : inter;
      for (size_t i = 0; i < nw; i++)
        w[i] = (float)(0.02 * sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand()));
      uint16_t *b = malloc(nw * 2);
      if (!b) { fprintf(stderr, "out of memory\n"); return 1; }
      moesz_f32_to_bf16_n(w, b, nw);
      bf[e].m[t] = (moesz_matview){b, MOESZ_DT_BF16, rows, cols, cols, 0};
      bf_bytes += nw * 2;
      size_t len;
      moesz_error err;
      moesz_cl *m = &cls[e * 3 + t];
      if (moesz_cl_encode(w, MOESZ_DT_F32, rows, cols, MOESZ_EB_ABS, eb, 1, &bufs[e * 3 + t], &len, NULL, &err) ||
          moesz_cl_parse(bufs[e * 3 + t], len, m, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
      }
      cl[e].m[t] = (moesz_matview){m, MOESZ_VIEW_CL, rows, cols, cols, 0};
      cl_bytes += len;
    }
  moesz_pool *pool = th > 1 ? moesz_pool_create(th) : NULL;
  moesz_kctx kc;
  if (moesz_kctx_init(&kc, pool, -1, moesz_k_scratch_need((size_t)(hidden > inter ? hidden : inter), 16))) return 1;
  printf("# %d of %d experts of %d x %d (gate, up, down), %d token(s) each, %d threads, simd %d; BF16 %.2f GB, compute "
         "layout at eb %g %.3f bits/weight, %.2f GB; medians of %d layers\n",
         k, E, inter, hidden, n, th, kc.simd, (double)bf_bytes / 1e9, eb, 8.0 * (double)cl_bytes / (3.0 * E * (double)nw),
         (double)cl_bytes / 1e9, reps);
  printf("| format | ms per layer | G weights/s | GB/s of weights | GFLOP/s | vs BF16 |\n|---|---|---|---|---|---|\n");
  const char *names[4] = {"BF16", "compute, x split exactly", "compute, 16-bit x (--fast-dot)",
                          "compute, 8-bit x for 2- and 4-bit groups (--fast-dot=8)"};
  double *t = malloc((size_t)reps * sizeof(double)), base = 0;
  int *pick = malloc((size_t)reps * (size_t)k * sizeof(int));
  for (int r = 0; r < reps; r++)   /* k distinct experts per layer, the same picks for every format */
    for (int a = 0; a < k; a++) {
      int v, dup;
      do {
        v = (int)(urand() * E);
        dup = 0;
        for (int b = 0; b < a; b++) dup |= pick[r * k + b] == v;
      } while (dup);
      pick[r * k + a] = v;
    }
  for (int f = 0; f < 4; f++) {
    kc.cl_act = f ? f - 1 : 0;
    for (int r = 0; r < reps; r++) {
      t[r] = layer(&kc, f ? cl : bf, pick + (size_t)r * k, k, n, x, hg, hu, yd, hidden, inter);
      if (t[r] < 0) { fprintf(stderr, "linear failed\n"); return 1; }
    }
    qsort(t, (size_t)reps, sizeof *t, cmpd);
    double med = t[reps / 2], wts = 3.0 * k * (double)nw;
    double bytes = f ? wts * (double)cl_bytes / (3.0 * E * (double)nw) : wts * 2;
    if (!f) base = med;
    printf("| %s | %.3f | %.2f | %.2f | %.1f | %.2fx |\n", names[f], med * 1e3, wts / med / 1e9, bytes / med / 1e9,
           2.0 * wts * n / med / 1e9, base / med);
  }
  moesz_kctx_free(&kc);
  if (pool) moesz_pool_destroy(pool);
  for (int i = 0; i < E * 3; i++) { moesz_cl_free(&cls[i]); free(bufs[i]); }
  for (int e = 0; e < E; e++)
    for (int q = 0; q < 3; q++) free((void *)bf[e].m[q].data);
  free(bf); free(cl); free(bufs); free(cls); free(w); free(x); free(hg); free(hu); free(yd); free(t); free(pick);
  return 0;
}
