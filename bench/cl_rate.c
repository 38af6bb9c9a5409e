/* bench/cl_rate.c - bits per weight of the compute layout against the order-0
 * entropy of the codes (H_q) and the codec's entropy and fast streams, on
 * N(0, 0.02^2) and Student-t (nu = 3, scaled to std 0.02) BF16 matrices of
 * 2048 x 4096 at four bounds, and on every routed expert matrix of a model
 * folder (all matrices pooled). The layout as the encoder chooses its grid,
 * and on the zero grid alone (the half grid's gain). Rates only:
 * deterministic, no timing.
 *
 *   build/bench/cl_rate [MODEL_DIR [EB]]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "moesz.h"

static uint64_t st = 0x853c49e6748fea9bull;
static double urand(void) {
  st ^= st << 13; st ^= st >> 7; st ^= st << 17;
  return ((double)(st >> 11) + 0.5) / 9007199254740992.0;
}
static double gauss(void) { return sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand()); }
static double student3(void) { /* t with 3 degrees of freedom, unit variance */
  double z = gauss(), c = 0;
  for (int i = 0; i < 3; i++) { double g = gauss(); c += g * g; }
  return z / sqrt(c / 3) / sqrt(3.0);
}

/* Order-0 entropy of round(x / 2eb) over finite values. */
static double entropy(const uint16_t *h, size_t n, double eb) {
  size_t cap = 1 << 20;
  uint64_t *cnt = calloc(cap, sizeof *cnt);
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    double x = moesz_bf16_to_f32(h[i]);
    if (!isfinite(x)) continue;
    long q = lround(x / (2 * eb));
    cnt[(size_t)(q + (long)cap / 2) & (cap - 1)]++;
    m++;
  }
  double H = 0;
  for (size_t i = 0; i < cap; i++)
    if (cnt[i]) { double p = (double)cnt[i] / (double)m; H -= p * log2(p); }
  free(cnt);
  return H;
}

/* Bits per value of the codec's pipeline over the concatenated matrices. */
static double stream_bits(const uint16_t *h, size_t n, double eb, moesz_pipeline pipe) {
  moesz_codec_params p = {.eb = eb, .pipeline = pipe, .out_dtype = MOESZ_DT_COUNT, .threads = 2};
  void *out;
  size_t len;
  if (moesz_codec_compress(h, MOESZ_DT_BF16, n, &p, &out, &len, NULL, NULL)) return NAN;
  free(out);
  return 8.0 * (double)len / (double)n;
}

static void row(const char *name, const uint16_t *h, int64_t rows, int64_t cols, double eb) {
  size_t n = (size_t)rows * (size_t)cols;
  void *out;
  size_t len;
  moesz_cl_info info, zero;
  if (moesz_cl_encode_ex(h, MOESZ_DT_BF16, rows, cols, MOESZ_EB_ABS, eb, MOESZ_CL_GRID_ZERO, 2, &out, &len, &zero, NULL)) return;
  free(out);
  if (moesz_cl_encode(h, MOESZ_DT_BF16, rows, cols, MOESZ_EB_ABS, eb, 2, &out, &len, &info, NULL)) return;
  free(out);
  double H = entropy(h, n, eb), e = stream_bits(h, n, eb, MOESZ_PIPE_ENTROPY), f = stream_bits(h, n, eb, MOESZ_PIPE_FAST);
  printf("| %s | %g | %.3f | %.3f (+%.3f) | %.3f (+%.3f) | %.3f (+%.3f) | %.3f (+%.3f), %s grid | %+.3f | %.3f%% |\n", name,
         eb, H, e, e - H, f, f - H, zero.bits_per_value, zero.bits_per_value - H, info.bits_per_value,
         info.bits_per_value - H, info.half ? "half" : "zero", info.bits_per_value - e, 100.0 * (double)info.escapes / (double)n);
}

int main(int argc, char **argv) {
  printf("| weights | eb | H_q bits | entropy stream | fast stream | compute layout, zero grid | compute layout | compute - entropy | escapes |\n"
         "|---|---|---|---|---|---|---|---|---|\n");
  int64_t rows = 2048, cols = 4096;
  size_t n = (size_t)rows * (size_t)cols;
  uint16_t *h = malloc(n * 2);
  static const double ebs[] = {2e-4, 1e-3, 5e-3, 1.6e-2};
  for (int dist = 0; dist < 2; dist++) {
    for (size_t i = 0; i < n; i++) h[i] = moesz_f32_to_bf16((float)(0.02 * (dist ? student3() : gauss())));
    for (int k = 0; k < 4; k++) row(dist ? "Student-t(3), std 0.02" : "N(0, 0.02^2)", h, rows, cols, ebs[k]);
  }
  free(h);
  if (argc > 1) {
    /* every routed expert matrix of a model, one layout per matrix, the sums pooled */
    double eb = argc > 2 ? atof(argv[2]) : 1e-3;
    moesz_model *m;
    moesz_error e = {0};
    if (moesz_model_open(argv[1], &m, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    const moesz_config *c = &m->cfg;
    size_t total = 0, clbytes = 0, zbytes = 0, esc = 0, nhalf = 0, nmat = 0;
    uint16_t *all = NULL;
    for (int L = 0; L < c->n_layers; L++)
      for (int x = 0; c->is_moe[L] && x < c->n_experts; x++)
        for (int mat = MOESZ_MAT_GATE; mat <= MOESZ_MAT_DOWN; mat++) {
          moesz_matview v;
          if (moesz_model_expert(m, L, x, 0, (moesz_mat)mat, &v, &e) || v.dtype != MOESZ_DT_BF16 || v.transposed) continue;
          size_t k = (size_t)v.rows * (size_t)v.cols;
          uint16_t *g = malloc(k * 2);
          for (int64_t r = 0; r < v.rows; r++) memcpy(g + (size_t)r * (size_t)v.cols, (const uint16_t *)v.data + (size_t)r * (size_t)v.ld, (size_t)v.cols * 2);
          void *out;
          size_t len;
          moesz_cl_info info;
          if (!moesz_cl_encode(g, MOESZ_DT_BF16, v.rows, v.cols, MOESZ_EB_ABS, eb, 1, &out, &len, &info, NULL)) {
            clbytes += len;
            esc += info.escapes;
            nhalf += (size_t)info.half;
            nmat++;
            free(out);
          }
          if (!moesz_cl_encode_ex(g, MOESZ_DT_BF16, v.rows, v.cols, MOESZ_EB_ABS, eb, MOESZ_CL_GRID_ZERO, 1, &out, &len, NULL, NULL)) {
            zbytes += len;
            free(out);
          }
          all = realloc(all, (total + k) * 2);
          memcpy(all + total, g, k * 2);
          total += k;
          free(g);
        }
    if (total) {
      double H = entropy(all, total, eb), es = stream_bits(all, total, eb, MOESZ_PIPE_ENTROPY);
      double fs = stream_bits(all, total, eb, MOESZ_PIPE_FAST), cb = 8.0 * (double)clbytes / (double)total;
      double zb = 8.0 * (double)zbytes / (double)total;
      printf("| %s experts (one layout per matrix) | %g | %.3f | %.3f (+%.3f) | %.3f (+%.3f) | %.3f (+%.3f) | %.3f (+%.3f), "
             "half grid in %zu of %zu | %+.3f | %.3f%% |\n",
             argv[1], eb, H, es, es - H, fs, fs - H, zb, zb - H, cb, cb - H, nhalf, nmat, cb - es,
             100.0 * (double)esc / (double)total);
    }
    free(all);
    moesz_model_close(m);
  }
  return 0;
}
