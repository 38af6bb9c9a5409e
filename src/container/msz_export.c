/* container/msz_export.c - owns turning a container back into a Hugging Face
 * model folder: embedded files copied out, dense tensors copied, expert
 * source tensors reassembled from their decoded blobs in the original dtype
 * (F32 where compute-layout blobs slice them), written as model.safetensors;
 * the whole folder is written beside the target and renamed into place at
 * the end (base/util.h moesz_adir); one source tensor reassembled in memory
 * (moesz_msz_source_read, for bindings that load a state dict). */
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "container/msz_internal.h"

/* Scatters a decoded contiguous [rows, cols] matrix into its source view. */
static void scatter(const msz_expert *x, const uint8_t *src, uint8_t *dst, size_t es) {
  int64_t rows = x->rec.shape[0], cols = x->rec.shape[1];
  for (int64_t r = 0; r < rows; r++) {
    if (!x->view_t) {
      memcpy(dst + (x->view_off + (uint64_t)r * x->view_ld) * es, src + (size_t)r * (size_t)cols * es, (size_t)cols * es);
    } else {
      for (int64_t c = 0; c < cols; c++)
        memcpy(dst + (x->view_off + (uint64_t)c * x->view_ld + (uint64_t)r) * es, src + ((size_t)r * (size_t)cols + (size_t)c) * es, es);
    }
  }
}

/* The dtype export writes source tensor i in: its own, or F32 where compute-layout blobs slice it. */
static moesz_dtype source_dtype(const moesz_msz *c, size_t i) {
  for (size_t k = 0; k < c->nex; k++)
    if ((size_t)c->ex[k].tensor == i && c->ex[k].rec.method == MOESZ_MSZ_COMPUTE) return MOESZ_DT_F32;
  return c->src[i].dtype;
}

size_t moesz_msz_source_count(const moesz_msz *c) { return c->nsrc; }

int moesz_msz_source(const moesz_msz *c, size_t i, moesz_tensor *out, moesz_error *err) {
  if (i >= c->nsrc) return moesz_error_set(err, MOESZ_E_RANGE, "source tensor %zu of %zu", i, c->nsrc);
  const msz_src *s = &c->src[i];
  memset(out, 0, sizeof *out);
  out->name = s->name;
  out->dtype = source_dtype(c, i);
  out->ndim = s->ndim;
  memcpy(out->shape, s->shape, sizeof out->shape);
  out->numel = (size_t)s->numel;
  out->nbytes = out->numel * moesz_dtype_size(out->dtype);
  out->shard = -1;
  return MOESZ_OK;
}

int moesz_msz_source_read(const moesz_msz *c, size_t i, moesz_dtype out_dtype, void *dst, moesz_error *err) {
  if (i >= c->nsrc) return moesz_error_set(err, MOESZ_E_RANGE, "source tensor %zu of %zu", i, c->nsrc);
  moesz_dtype dt = out_dtype == MOESZ_DT_COUNT ? source_dtype(c, i) : out_dtype;
  if (dt != MOESZ_DT_F32 && dt != MOESZ_DT_F16 && dt != MOESZ_DT_BF16 && dt != c->src[i].dtype)
    return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "%s: cannot decode to %s", c->src[i].name, moesz_dtype_name(dt));
  size_t es = moesz_dtype_size(dt);
  uint8_t *tmp = NULL;
  size_t tmpcap = 0;
  int rc = MOESZ_OK, found = 0;
  for (size_t k = 0; k < c->nex && !rc; k++) {
    const msz_expert *x = &c->ex[k];
    if ((size_t)x->tensor != i) continue;
    found++;
    size_t need = x->rec.raw_bytes / moesz_dtype_size(x->rec.dtype) * es;
    if (need > tmpcap) {
      uint8_t *nt = realloc(tmp, need);
      if (!nt) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); break; }
      tmp = nt;
      tmpcap = need;
    }
    if ((rc = moesz_msz_read(c, &x->rec, dt, tmp, err))) break;
    scatter(x, tmp, dst, es);
  }
  free(tmp);
  if (!rc && !found) rc = moesz_error_set(err, MOESZ_E_INTERNAL, "%s: no expert blob slices it", c->src[i].name);
  return rc;
}

static int export_into(const moesz_msz *c, const char *dir, int progress, moesz_error *err) {
  char p[4096];
  int rc = MOESZ_OK;
  for (size_t i = 0; i < c->nfiles; i++) {
    const void *data;
    size_t len;
    if ((rc = moesz_msz_file(c, c->files[i].name, &data, &len, err))) return rc;
    if (moesz_path_join(p, sizeof p, dir, c->files[i].name)) return moesz_error_set(err, MOESZ_E_ARG, "path too long");
    moesz_afile af;
    if ((rc = moesz_afile_open(&af, p, err))) return rc;
    if ((rc = moesz_afile_write(&af, data, len, err))) { moesz_afile_abort(&af); return rc; }
    if ((rc = moesz_afile_commit(&af, err))) return rc;
  }
  if (moesz_path_join(p, sizeof p, dir, "model.safetensors")) return moesz_error_set(err, MOESZ_E_ARG, "path too long");
  moesz_stw *w;
  if ((rc = moesz_stw_create(p, &w, err))) return rc;
  uint8_t **bufs = calloc(c->nsrc + 1, sizeof *bufs);
  uint8_t *tmp = NULL;
  size_t tmpcap = 0;
  if (!bufs) { moesz_stw_abort(w); return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); }
  for (size_t i = 0; i < moesz_st_count(c->dense) && !rc; i++) {
    const moesz_tensor *t = moesz_st_at(c->dense, i);
    rc = moesz_stw_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, err);
  }
  /* a source tensor sliced by compute-layout blobs is written as F32: their
   * bound holds in F32, not after rounding back to a 16-bit dtype */
  moesz_dtype *odt = calloc(c->nsrc + 1, sizeof *odt);
  if (!odt) rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  for (size_t i = 0; i < c->nsrc && !rc; i++) odt[i] = c->src[i].dtype;
  for (size_t i = 0; i < c->nex && !rc; i++)
    if (c->ex[i].rec.method == MOESZ_MSZ_COMPUTE) odt[c->ex[i].tensor] = MOESZ_DT_F32;
  for (size_t i = 0; i < c->nsrc && !rc; i++) {
    const msz_src *s = &c->src[i];
    bufs[i] = calloc(s->numel ? s->numel : 1, moesz_dtype_size(odt[i]));
    if (!bufs[i]) rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory for %s", s->name);
  }
  moesz_progress pr;
  moesz_progress_begin(&pr, "decompress", (double)c->nex, progress);
  for (size_t i = 0; i < c->nex && !rc; i++) {
    const msz_expert *x = &c->ex[i];
    moesz_dtype dt = odt[x->tensor];
    size_t need = x->rec.raw_bytes / moesz_dtype_size(x->rec.dtype) * moesz_dtype_size(dt);
    if (need > tmpcap) {
      uint8_t *nt = realloc(tmp, need);
      if (!nt) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); break; }
      tmp = nt;
      tmpcap = need;
    }
    if ((rc = moesz_msz_read(c, &x->rec, dt, tmp, err))) break;
    scatter(x, tmp, bufs[x->tensor], moesz_dtype_size(dt));
    moesz_progress_step(&pr, (double)i + 1);
  }
  moesz_progress_end(&pr);
  for (size_t i = 0; i < c->nsrc && !rc; i++)
    rc = moesz_stw_add(w, c->src[i].name, odt[i], c->src[i].ndim, c->src[i].shape, bufs[i], err);
  if (!rc) rc = moesz_stw_meta(w, "format", "pt", err);
  if (!rc) rc = moesz_stw_commit(w, err);
  else moesz_stw_abort(w);
  for (size_t i = 0; i < c->nsrc; i++) free(bufs[i]);
  free(bufs);
  free(odt);
  free(tmp);
  return rc;
}

int moesz_msz_export(const moesz_msz *c, const char *dir, int force, int progress, moesz_error *err) {
  moesz_adir d;
  const char *in = c->path;
  int rc = in ? moesz_output_check(dir, 1, &in, 1, "output", err) : MOESZ_OK;
  if (!rc) rc = moesz_adir_open(&d, dir, force, err);
  if (rc) return rc;
  if ((rc = export_into(c, d.tmp, progress, err))) {
    moesz_adir_abort(&d);
    return rc;
  }
  return moesz_adir_commit(&d, err);
}
