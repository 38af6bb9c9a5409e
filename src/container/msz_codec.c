/* container/msz_codec.c - the container's binding to the error-bounded
 * codec (src/codec): encoding an expert matrix with the run's bound (codec
 * stream or compute layout) and decoding such a blob into the requested
 * dtype; every encoding is decoded once and its worst error checked. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "moesz/codec.h"
#include "container/msz_internal.h"

int msz_codec_encode(moesz_codec_ctx *x, const void *src, moesz_dtype dtype, size_t n, const moesz_msz_opts *o,
                     double eb, void **blob, size_t *len, double *eb_abs, uint64_t *verbatim, double *max_err_ratio,
                     moesz_error *err) {
  moesz_codec_params p = {.mode = (moesz_eb_mode)o->eb_mode, .eb = eb, .pipeline = (moesz_pipeline)o->pipeline,
                          .out_dtype = MOESZ_DT_COUNT, .threads = o->threads, .chunk = 0};
  moesz_codec_info info;
  int rc = moesz_codec_compress_ctx(x, src, dtype, n, &p, blob, len, &info, err);
  if (rc) return rc;
  *eb_abs = info.eb;
  *verbatim = info.verbatim;
  /* verify what a reader will get: decode and measure the worst error */
  float *a = malloc(n * sizeof *a + 4), *b = malloc(n * sizeof *b + 4);
  void *d = malloc(n * moesz_dtype_size(dtype) + 4);
  if (!a || !b || !d) { free(a); free(b); free(d); free(*blob); *blob = NULL; return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); }
  rc = moesz_codec_decompress_ctx(x, *blob, *len, dtype, d, n, err);
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
                     moesz_codec_ctx *x, moesz_error *err) {
  moesz_codec_info info;
  int rc = moesz_codec_info_read(blob, r->len, &info, err);
  if (rc) return moesz_error_wrap(err, rc, "blob %s", r->name);
  if (info.count != n || info.in_dtype != r->dtype)
    return moesz_error_set(err, MOESZ_E_FORMAT, "blob %s: codec stream disagrees with the manifest", r->name);
  rc = x ? moesz_codec_decompress_ctx(x, blob, r->len, out, dst, n, err)
         : moesz_codec_decompress(blob, r->len, out, dst, n, 1, err);
  if (rc) return moesz_error_wrap(err, rc, "blob %s", r->name);
  return MOESZ_OK;
}

/* Worst |b - a| over finite a (values as dtype), or -1 if a non-finite value changed. */
static double worst_err(moesz_dtype dt, const void *src, const float *b, size_t n, float *a) {
  moesz_to_f32(dt, src, a, n);
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(a[i])) {
      if (isnan(a[i]) ? !isnan(b[i]) : a[i] != b[i]) return -1;
      continue;
    }
    double e = fabs((double)a[i] - (double)b[i]);
    if (e > worst) worst = e;
  }
  return worst;
}

int msz_cl_encode(const void *src, moesz_dtype dtype, int64_t rows, int64_t cols, const moesz_msz_opts *o, double eb,
                  void **blob, size_t *len, double *eb_abs, uint64_t *escapes, double *max_err_ratio, int *half,
                  moesz_error *err) {
  moesz_cl_info info;
  int rc = moesz_cl_encode(src, dtype, rows, cols, (moesz_eb_mode)o->eb_mode, eb, o->threads, blob, len, &info, err);
  if (rc) return rc;
  size_t n = (size_t)rows * (size_t)cols;
  moesz_cl m;
  float *a = malloc(n * sizeof *a + 4), *b = malloc(n * sizeof *b + 4);
  if (!a || !b) rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  if (!rc) rc = moesz_cl_parse(*blob, *len, &m, err);
  double worst = 0;
  if (!rc) {
    moesz_cl_decode(&m, b);
    worst = worst_err(dtype, src, b, n, a);
    moesz_cl_free(&m);
    if (worst < 0 || worst > info.eb)
      rc = moesz_error_set(err, MOESZ_E_INTERNAL, "compute layout: bound violated (%g > %g)", worst, info.eb);
  }
  free(a); free(b);
  if (rc) { free(*blob); *blob = NULL; return rc; }
  *eb_abs = info.eb;
  *escapes = info.escapes;
  *half = info.half;
  *max_err_ratio = info.eb > 0 ? worst / info.eb : 0;
  return MOESZ_OK;
}

int msz_cl_parse(const moesz_msz_rec *r, const void *blob, moesz_cl *m, moesz_error *err) {
  int rc = moesz_cl_parse(blob, r->len, m, err);
  if (rc) return moesz_error_wrap(err, rc, "blob %s", r->name);
  if (m->rows != r->shape[0] || m->cols != r->shape[1] || m->eb != r->eb) {
    moesz_cl_free(m);
    return moesz_error_set(err, MOESZ_E_FORMAT, "blob %s: compute layout disagrees with the manifest", r->name);
  }
  return MOESZ_OK;
}

int msz_cl_decode(const moesz_msz_rec *r, const void *blob, moesz_dtype out, void *dst, moesz_error *err) {
  if (out != MOESZ_DT_F32)
    return moesz_error_set(err, MOESZ_E_UNSUPPORTED,
                           "blob %s: a compute-layout blob keeps its bound in F32 only (asked for %s)", r->name,
                           moesz_dtype_name(out));
  moesz_cl m;
  int rc = msz_cl_parse(r, blob, &m, err);
  if (rc) return rc;
  moesz_cl_decode(&m, dst);
  moesz_cl_free(&m);
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
