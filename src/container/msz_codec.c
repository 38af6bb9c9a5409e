/* container/msz_codec.c - the container's binding to the error-bounded
 * codec (src/codec): encoding an expert matrix with the run's bound and
 * decoding a codec blob into the requested dtype. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "moesz/codec.h"
#include "container/msz_internal.h"

int msz_codec_encode(const void *src, moesz_dtype dtype, size_t n, const moesz_msz_opts *o, double eb,
                     void **blob, size_t *len, double *eb_abs, uint64_t *verbatim, double *max_err_ratio,
                     moesz_error *err) {
  moesz_codec_params p = {.mode = (moesz_eb_mode)o->eb_mode, .eb = eb, .pipeline = (moesz_pipeline)o->pipeline,
                          .out_dtype = MOESZ_DT_COUNT, .threads = o->threads, .chunk = 0};
  moesz_codec_info info;
  int rc = moesz_codec_compress(src, dtype, n, &p, blob, len, &info, err);
  if (rc) return rc;
  *eb_abs = info.eb;
  *verbatim = info.verbatim;
  /* verify what a reader will get: decode and measure the worst error */
  float *a = malloc(n * sizeof *a + 4), *b = malloc(n * sizeof *b + 4);
  void *d = malloc(n * moesz_dtype_size(dtype) + 4);
  if (!a || !b || !d) { free(a); free(b); free(d); free(*blob); *blob = NULL; return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); }
  rc = moesz_codec_decompress(*blob, *len, dtype, d, n, o->threads, err);
  double worst = 0;
  if (!rc) {
    moesz_to_f32(dtype, src, a, n);
    moesz_to_f32(dtype, d, b, n);
    for (size_t i = 0; i < n; i++) {
      if (!isfinite(a[i])) continue;
      double e = fabs((double)a[i] - (double)b[i]);
      if (e > worst) worst = e;
    }
    if (info.eb > 0 && worst > info.eb) rc = moesz_error_set(err, MOESZ_E_INTERNAL, "codec: bound violated (%g > %g)", worst, info.eb);
  }
  free(a); free(b); free(d);
  if (rc) { free(*blob); *blob = NULL; return rc; }
  *max_err_ratio = info.eb > 0 ? worst / info.eb : 0;
  return MOESZ_OK;
}

int msz_codec_decode(const moesz_msz_rec *r, const void *blob, moesz_dtype out, void *dst, size_t n,
                     moesz_error *err) {
  moesz_codec_info info;
  int rc = moesz_codec_info_read(blob, r->len, &info, err);
  if (rc) return moesz_error_wrap(err, rc, "blob %s", r->name);
  if (info.count != n || info.in_dtype != r->dtype)
    return moesz_error_set(err, MOESZ_E_FORMAT, "blob %s: codec stream disagrees with the manifest", r->name);
  rc = moesz_codec_decompress(blob, r->len, out, dst, n, 1, err);
  if (rc) return moesz_error_wrap(err, rc, "blob %s", r->name);
  return MOESZ_OK;
}

int moesz_msz_codec_options(const char *pipeline, const char *eb_mode, moesz_msz_opts *o) {
  if (!strcmp(pipeline, "entropy")) o->pipeline = MOESZ_PIPE_ENTROPY;
  else if (!strcmp(pipeline, "fast")) o->pipeline = MOESZ_PIPE_FAST;
  else return -1;
  if (!strcmp(eb_mode, "abs")) o->eb_mode = MOESZ_EB_ABS;
  else if (!strcmp(eb_mode, "rel")) o->eb_mode = MOESZ_EB_REL;
  else if (!strcmp(eb_mode, "std")) o->eb_mode = MOESZ_EB_STD;
  else return -1;
  return 0;
}
