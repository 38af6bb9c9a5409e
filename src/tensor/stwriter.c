/* tensor/stwriter.c - owns writing safetensors files: header JSON with
 * escaped names, padded with spaces so the data starts 8-byte aligned,
 * optional __metadata__, written to a temporary file and renamed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "moesz/tensor.h"

typedef struct stw_entry {
  char *name;
  moesz_dtype dtype;
  int ndim;
  int64_t shape[MOESZ_MAX_DIMS];
  size_t nbytes;
  const void *data;
  void *owned;            /* copy made by moesz_stw_add_copy, else NULL */
} stw_entry;

struct moesz_stw {
  char path[4096];
  stw_entry *e;           /* [n] in insertion order = data order */
  size_t n, cap;
  char **mk, **mv;        /* [nmeta] metadata pairs */
  size_t nmeta;
};

typedef moesz_buf sbuf;
static void sb_put(sbuf *b, const char *s, size_t n) { moesz_buf_put(b, s, n); }
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_json_str(sbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') { char t[2] = {'\\', (char)c}; sb_put(b, t, 2); }
    else if (c < 0x20) { char t[8]; snprintf(t, sizeof t, "\\u%04x", c); sb_str(b, t); }
    else sb_put(b, (const char *)&c, 1);
  }
  sb_put(b, "\"", 1);
}

int moesz_stw_create(const char *path, moesz_stw **out, moesz_error *err) {
  *out = NULL;
  moesz_stw *w = calloc(1, sizeof *w);
  if (!w) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  if (snprintf(w->path, sizeof w->path, "%s", path) >= (int)sizeof w->path) {
    free(w);
    return moesz_error_set(err, MOESZ_E_ARG, "%s: path too long", path);
  }
  *out = w;
  return MOESZ_OK;
}

static int add(moesz_stw *w, const char *name, moesz_dtype dtype, int ndim, const int64_t *shape,
               const void *data, int copy, moesz_error *err) {
  if (!name || !*name || !strcmp(name, "__metadata__"))
    return moesz_error_set(err, MOESZ_E_ARG, "invalid tensor name");
  if (ndim < 0 || ndim > MOESZ_MAX_DIMS || !moesz_dtype_size(dtype))
    return moesz_error_set(err, MOESZ_E_ARG, "tensor '%s': bad dtype or rank", name);
  for (size_t i = 0; i < w->n; i++)
    if (!strcmp(w->e[i].name, name)) return moesz_error_set(err, MOESZ_E_ARG, "tensor '%s' added twice", name);
  size_t numel = 1, nbytes;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0 || !moesz_mul_ok(numel, (size_t)shape[i], &numel))
      return moesz_error_set(err, MOESZ_E_ARG, "tensor '%s': bad shape", name);
  }
  if (!moesz_mul_ok(numel, moesz_dtype_size(dtype), &nbytes))
    return moesz_error_set(err, MOESZ_E_ARG, "tensor '%s': size overflows", name);
  if (w->n == w->cap) {
    size_t nc = w->cap ? 2 * w->cap : 64;
    stw_entry *ne = realloc(w->e, nc * sizeof *ne);
    if (!ne) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
    w->e = ne;
    w->cap = nc;
  }
  stw_entry *e = &w->e[w->n];
  memset(e, 0, sizeof *e);
  e->name = strdup(name);
  if (!e->name) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  e->dtype = dtype;
  e->ndim = ndim;
  for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
  e->nbytes = nbytes;
  e->data = data;
  if (copy && nbytes) {
    e->owned = malloc(nbytes);
    if (!e->owned) { free(e->name); return moesz_error_set(err, MOESZ_E_NOMEM, "tensor '%s': out of memory", name); }
    memcpy(e->owned, data, nbytes);
    e->data = e->owned;
  }
  w->n++;
  return MOESZ_OK;
}

int moesz_stw_add(moesz_stw *w, const char *name, moesz_dtype dtype, int ndim, const int64_t *shape,
                  const void *data, moesz_error *err) {
  return add(w, name, dtype, ndim, shape, data, 0, err);
}

int moesz_stw_add_copy(moesz_stw *w, const char *name, moesz_dtype dtype, int ndim,
                       const int64_t *shape, const void *data, moesz_error *err) {
  return add(w, name, dtype, ndim, shape, data, 1, err);
}

int moesz_stw_meta(moesz_stw *w, const char *key, const char *value, moesz_error *err) {
  char **k = realloc(w->mk, (w->nmeta + 1) * sizeof *k);
  if (k) w->mk = k;
  char **v = realloc(w->mv, (w->nmeta + 1) * sizeof *v);
  if (v) w->mv = v;
  if (!k || !v) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  w->mk[w->nmeta] = strdup(key);
  w->mv[w->nmeta] = strdup(value);
  if (!w->mk[w->nmeta] || !w->mv[w->nmeta]) {
    free(w->mk[w->nmeta]);
    free(w->mv[w->nmeta]);
    return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  }
  w->nmeta++;
  return MOESZ_OK;
}

void moesz_stw_abort(moesz_stw *w) {
  if (!w) return;
  for (size_t i = 0; i < w->n; i++) { free(w->e[i].name); free(w->e[i].owned); }
  for (size_t i = 0; i < w->nmeta; i++) { free(w->mk[i]); free(w->mv[i]); }
  free(w->mk);
  free(w->mv);
  free(w->e);
  free(w);
}

/* Builds the header (JSON padded so 8 + len is a multiple of 8). */
static int build_header(const moesz_stw *w, sbuf *b, moesz_error *err) {
  char num[64];
  sb_str(b, "{");
  int first = 1;
  if (w->nmeta) {
    sb_str(b, "\"__metadata__\":{");
    for (size_t i = 0; i < w->nmeta; i++) {
      if (i) sb_str(b, ",");
      sb_json_str(b, w->mk[i]);
      sb_str(b, ":");
      sb_json_str(b, w->mv[i]);
    }
    sb_str(b, "}");
    first = 0;
  }
  size_t off = 0;
  for (size_t i = 0; i < w->n; i++) {
    const stw_entry *e = &w->e[i];
    if (!first) sb_str(b, ",");
    first = 0;
    sb_json_str(b, e->name);
    sb_str(b, ":{\"dtype\":\"");
    sb_str(b, moesz_dtype_name(e->dtype));
    sb_str(b, "\",\"shape\":[");
    for (int d = 0; d < e->ndim; d++) {
      snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)e->shape[d]);
      sb_str(b, num);
    }
    snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", off, off + e->nbytes);
    sb_str(b, num);
    off += e->nbytes;
  }
  sb_str(b, "}");
  while (!b->oom && (8 + b->n) % 8) sb_put(b, " ", 1);
  if (b->oom) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory building the header");
  if (b->n > MOESZ_ST_MAX_HEADER)
    return moesz_error_set(err, MOESZ_E_ARG, "header of %zu bytes exceeds the 100 MB limit", b->n);
  return MOESZ_OK;
}

uint64_t moesz_stw_data_bytes(const moesz_stw *w) {
  uint64_t total = 0;
  for (size_t i = 0; i < w->n; i++) total += w->e[i].nbytes;
  return total;
}

uint64_t moesz_stw_size(const moesz_stw *w, moesz_error *err) {
  sbuf b = {0};
  uint64_t total = 0;
  if (build_header(w, &b, err) == MOESZ_OK) {
    total = 8 + b.n;
    for (size_t i = 0; i < w->n; i++) total += w->e[i].nbytes;
  }
  free(b.p);
  return total;
}

int moesz_stw_emit(const moesz_stw *w, moesz_stw_sink sink, void *ctx, moesz_error *err) {
  sbuf b = {0};
  int rc = build_header(w, &b, err);
  if (!rc) {
    uint8_t len8[8];
    uint64_t n = b.n;
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)(n >> (8 * i));
    rc = sink(ctx, len8, 8, err);
    if (!rc) rc = sink(ctx, b.p, b.n, err);
    for (size_t i = 0; !rc && i < w->n; i++) rc = sink(ctx, w->e[i].data, w->e[i].nbytes, err);
  }
  free(b.p);
  return rc;
}

static int afile_sink(void *ctx, const void *buf, size_t n, moesz_error *err) {
  return moesz_afile_write(ctx, buf, n, err);
}

int moesz_stw_commit(moesz_stw *w, moesz_error *err) {
  moesz_afile af;
  int rc = moesz_afile_open(&af, w->path, err);
  if (!rc) {
    rc = moesz_stw_emit(w, afile_sink, &af, err);
    if (rc) moesz_afile_abort(&af);
    else rc = moesz_afile_commit(&af, err);
  }
  moesz_stw_abort(w);
  return rc;
}
