/* container/msz_codec.c - the container's binding to the error-bounded
 * codec (src/codec): encoding an expert matrix with the run's bound and
 * decoding a codec blob into the requested dtype. */
#include <string.h>
#include "container/msz_internal.h"

int msz_codec_encode(const void *src, moesz_dtype dtype, size_t n, const moesz_msz_opts *o, double eb,
                     void **blob, size_t *len, double *eb_abs, uint64_t *verbatim, double *max_err_ratio,
                     moesz_error *err) {
  (void)src; (void)dtype; (void)n; (void)o; (void)eb; (void)verbatim; (void)max_err_ratio;
  *blob = NULL;
  *len = 0;
  *eb_abs = 0;
  return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "the error-bounded codec is not in this build");
}

int msz_codec_decode(const moesz_msz_rec *r, const void *blob, moesz_dtype out, void *dst, size_t n,
                     moesz_error *err) {
  (void)blob; (void)out; (void)dst; (void)n;
  return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "blob %s: the error-bounded codec is not in this build", r->name);
}

int moesz_msz_codec_options(const char *pipeline, const char *eb_mode, moesz_msz_opts *o) {
  if (!strcmp(pipeline, "entropy")) o->pipeline = 0;
  else if (!strcmp(pipeline, "fast")) o->pipeline = 1;
  else return -1;
  if (!strcmp(eb_mode, "abs")) o->eb_mode = 0;
  else if (!strcmp(eb_mode, "rel")) o->eb_mode = 1;
  else if (!strcmp(eb_mode, "std")) o->eb_mode = 2;
  else return -1;
  return 0;
}
