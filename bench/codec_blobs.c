/* bench/codec_blobs.c - per-blob decode time of a container's codec blobs
 * (what the expert cache pays per matrix it loads): every MOESZ_MSZ_CODEC
 * blob of a .msz is decoded R times through one single-threaded codec
 * context into its original dtype (or F32 with "f32"), and the median time of
 * each blob is taken. Prints the median and the sum over blobs of those
 * medians, in us, ns per value, and GB/s of decoded output. Checksums are
 * verified once, outside the timed loop. With R = 1 and few blobs it is also
 * the workload to count instructions on (valgrind --tool=callgrind).
 *
 *   build/bench/codec_blobs CONTAINER.msz [R=200] [f32] [max_blobs]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "moesz/codec.h"
#include "moesz/container.h"

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: codec_blobs CONTAINER.msz [reps=200] [f32] [max_blobs]\n");
    return 2;
  }
  int reps = argc > 2 ? atoi(argv[2]) : 200;
  int f32 = argc > 3 && !strcmp(argv[3], "f32");
  size_t maxb = argc > 4 ? (size_t)atol(argv[4]) : (size_t)-1;
  if (reps < 1) reps = 1;
  moesz_error e = {0};
  moesz_msz *c;
  if (moesz_msz_open(argv[1], &c, &e)) { fprintf(stderr, "codec_blobs: %s\n", e.msg); return 1; }
  moesz_codec_ctx *x;
  if (moesz_codec_ctx_create(1, &x, &e)) { fprintf(stderr, "codec_blobs: %s\n", e.msg); return 1; }
  size_t nb = 0, nvals = 0, cap = 0;
  double *med = malloc(sizeof *med * moesz_msz_count(c) + 8), *t = malloc(sizeof *t * (size_t)reps);
  void *dst = NULL;
  if (!med || !t) return 1;
  for (size_t i = 0; i < moesz_msz_count(c) && nb < maxb; i++) {
    const moesz_msz_rec *r = moesz_msz_at(c, i);
    if (r->method != MOESZ_MSZ_CODEC) continue;
    moesz_dtype dt = f32 ? MOESZ_DT_F32 : r->dtype;
    size_t n = r->raw_bytes / moesz_dtype_size(r->dtype), need = n * moesz_dtype_size(dt);
    if (need > cap) { free(dst); dst = malloc(need); cap = need; if (!dst) return 1; }
    const void *blob;
    if (moesz_msz_blob(c, r, &blob, &e)) { fprintf(stderr, "codec_blobs: %s\n", e.msg); return 1; }
    for (int k = 0; k < reps; k++) {
      double t0 = moesz_time_now();
      if (moesz_msz_decode_ctx(c, r, blob, dt, dst, x, &e)) { fprintf(stderr, "codec_blobs: %s\n", e.msg); return 1; }
      t[k] = moesz_time_now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmpd);
    med[nb++] = t[reps / 2];
    nvals += n;
  }
  if (!nb) { fprintf(stderr, "codec_blobs: no codec blobs in %s\n", argv[1]); return 1; }
  double sum = 0;
  for (size_t i = 0; i < nb; i++) sum += med[i];
  qsort(med, nb, sizeof *med, cmpd);
  size_t es = f32 ? 4 : 2;
  printf("blobs %zu  values %zu  reps %d  out %s\n", nb, nvals, reps, f32 ? "f32" : "original");
  printf("per blob: median %.2f us (min %.2f, max %.2f)  sum of medians %.3f ms  %.3f ns/value  %.3f GB/s\n",
         med[nb / 2] * 1e6, med[0] * 1e6, med[nb - 1] * 1e6, sum * 1e3, sum * 1e9 / (double)nvals,
         (double)nvals * (double)es / sum / 1e9);
  free(dst); free(med); free(t);
  moesz_codec_ctx_free(x);
  moesz_msz_close(c);
  return 0;
}
