/* container/msz_util.c - lookup table from (layer, expert, shared, matrix)
 * to expert blobs, and dtype conversion of decoded blobs. */
#include <stdlib.h>
#include <string.h>
#include "container/msz_internal.h"

int msz_build_lookup(moesz_msz *c, moesz_error *err) {
  int E = 1;
  for (size_t i = 0; i < c->nex; i++)
    if (c->ex[i].rec.expert + 1 > E) E = c->ex[i].rec.expert + 1;
  c->lookup_e = E;
  size_t n = (size_t)c->cfg.n_layers * (size_t)E * 6;
  c->lookup = malloc((n ? n : 1) * sizeof *c->lookup);
  if (!c->lookup) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) c->lookup[i] = -1;
  for (size_t i = 0; i < c->nex; i++) {
    const moesz_msz_rec *r = &c->ex[i].rec;
    size_t s = msz_slot(c, r->layer, r->expert, r->shared, r->mat);
    if (c->lookup[s] >= 0)
      return moesz_error_set(err, MOESZ_E_FORMAT, "manifest: two blobs for layer %d expert %d matrix %d",
                             r->layer, r->expert, (int)r->mat);
    c->lookup[s] = (int32_t)i;
  }
  return MOESZ_OK;
}

int msz_convert(moesz_dtype from, const void *src, moesz_dtype to, void *dst, size_t n, moesz_error *err) {
  if (from == to) { memcpy(dst, src, n * moesz_dtype_size(from)); return MOESZ_OK; }
  if (to == MOESZ_DT_F32) {
    if (moesz_to_f32(from, src, dst, n)) return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "cannot convert %s", moesz_dtype_name(from));
    return MOESZ_OK;
  }
  float *tmp = malloc((n ? n : 1) * sizeof *tmp);
  if (!tmp) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  int rc = moesz_to_f32(from, src, tmp, n);
  if (!rc) rc = moesz_from_f32(to, tmp, dst, n);
  free(tmp);
  if (rc) return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "cannot convert %s to %s", moesz_dtype_name(from), moesz_dtype_name(to));
  return MOESZ_OK;
}

const msz_expert *msz_expert_of(const moesz_msz *c, const moesz_msz_rec *r) {
  if (r < &c->ex[0].rec || r >= &c->ex[c->nex].rec) return NULL;
  return (const msz_expert *)(const void *)r;   /* rec is the first member of msz_expert */
}
