/* fuzz/seeds_codec.c - writes the seed corpora of fuzz_codec (small streams of
 * both pipelines over bf16 values that exercise every symbol kind: plain,
 * nudged, escaped, verbatim; several chunks; one long enough for the
 * Huffman pair decoder) and of fuzz_clayout (compute
 * layouts with several widths, escapes, NaN and a partial last group).
 * `make fuzz-seeds`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "moesz.h"

static int put(const char *dir, const char *name, const void *p, size_t n) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(p, 1, n, f) != n) { perror(path); if (f) fclose(f); return 1; }
  return fclose(f) != 0;
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "fuzz/corpus/fuzz_codec";
  enum { N = 700 };
  float f[N];
  uint16_t h[N];
  for (int i = 0; i < N; i++) f[i] = (float)(0.02 * sin(i * 0.7) * cos(i * 0.013) * 3);
  f[3] = NAN; f[4] = -0.0f; f[5] = 40.0f; f[6] = 0.09f;     /* verbatim, escape, nudge candidates */
  moesz_f32_to_bf16_n(f, h, N);
  struct { const char *name; moesz_pipeline p; double eb; } s[] = {
      {"entropy.bin", MOESZ_PIPE_ENTROPY, 1e-3}, {"entropy_fine.bin", MOESZ_PIPE_ENTROPY, 2e-4},
      {"fast.bin", MOESZ_PIPE_FAST, 1e-3}};
  int bad = 0;
  for (int k = 0; k < 3; k++) {
    moesz_codec_params p = {.eb = s[k].eb, .pipeline = s[k].p, .out_dtype = MOESZ_DT_COUNT, .threads = 1, .chunk = 256};
    void *out;
    size_t len;
    moesz_error e = {0};
    if (moesz_codec_compress(h, MOESZ_DT_BF16, N, &p, &out, &len, NULL, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    bad |= put(dir, s[k].name, out, len);
    free(out);
  }
  /* a stream long enough, and coarse enough, for the Huffman pair decoder
   * (16384 values, two chunks, short codes), with a verbatim and an escape */
  {
    enum { M = 16384 };
    float *g = malloc(sizeof *g * M);
    uint16_t *q = malloc(sizeof *q * M);
    if (!g || !q) return 1;
    for (int i = 0; i < M; i++) g[i] = (float)(0.02 * sin(i * 0.7) * cos(i * 0.013) * 3);
    g[3] = NAN; g[5] = 40.0f;
    moesz_f32_to_bf16_n(g, q, M);
    moesz_codec_params p = {.eb = 5e-3, .pipeline = MOESZ_PIPE_ENTROPY, .out_dtype = MOESZ_DT_COUNT, .threads = 1, .chunk = 8192};
    void *out;
    size_t len;
    moesz_error e = {0};
    if (moesz_codec_compress(q, MOESZ_DT_BF16, M, &p, &out, &len, NULL, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    bad |= put(dir, "entropy_pairs.bin", out, len);
    free(out); free(g); free(q);
  }
  /* compute layouts: [10, 70] with row scales over two decades, [3, 64], and [3, 64] on the half grid */
  const char *cdir = argc > 2 ? argv[2] : "fuzz/corpus/fuzz_clayout";
  for (int k = 0; k < 3; k++) {
    int rows = k ? 3 : 10, cols = k ? 64 : 70;
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < cols; c++) f[r * cols + c] = (float)(0.02 * pow(10.0, r / 5.0 - 1) * sin((r * cols + c) * 0.7));
    f[5] = NAN;
    f[9] = 3.0f;
    void *out;
    size_t len;
    moesz_error e = {0};
    if (moesz_cl_encode_ex(f, MOESZ_DT_F32, rows, cols, MOESZ_EB_ABS, 1e-3, k == 2 ? MOESZ_CL_GRID_HALF : MOESZ_CL_GRID_ZERO,
                           1, &out, &len, NULL, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    bad |= put(cdir, k == 2 ? "cl_half.bin" : k ? "cl_small.bin" : "cl_widths.bin", out, len);
    free(out);
  }
  return bad;
}
