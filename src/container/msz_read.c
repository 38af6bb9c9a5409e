/* container/msz_read.c - owns reading .msz containers: header and manifest
 * validation (magic, version, sizes, checksum, every record's range and
 * shape), lookup of expert blobs, checksum-verified blob access and
 * decoding (raw, zstd, codec) into F32/F16/BF16. Format: docs/CONTAINER.md. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/xxh.h"
#include <zstd.h>
#include "base/bytes.h"
#include "base/util.h"
#include "container/msz_internal.h"


static int json_u64(const cJSON *o, const char *k, uint64_t *out) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsNumber(j)) return 0;
  double v = j->valuedouble;
  if (!(v >= 0) || v > 9007199254740992.0 || v != floor(v)) return 0;
  *out = (uint64_t)v;
  return 1;
}
static int json_int(const cJSON *o, const char *k, int lo, int hi, int *out) {
  uint64_t v;
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
  if (cJSON_IsNumber(j) && j->valuedouble == -1 && lo <= -1) { *out = -1; return 1; }
  if (!json_u64(o, k, &v) || (int64_t)v < lo || (int64_t)v > hi) return 0;
  *out = (int)v;
  return 1;
}
static int json_hex64(const cJSON *o, const char *k, uint64_t *out) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsString(j) || strlen(j->valuestring) != 16) return 0;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(j->valuestring, &end, 16);
  if (*end || errno) return 0;
  *out = v;
  return 1;
}

/* Parses one record's common fields: name, dtype, shape, method, off, len, xxh64. */
static int parse_rec(moesz_msz *c, const cJSON *o, moesz_msz_rec *r, int need_shape, moesz_error *err) {
  memset(r, 0, sizeof *r);
  r->layer = r->expert = -1;
  const cJSON *jn = cJSON_GetObjectItemCaseSensitive(o, "name");
  if (!cJSON_IsString(jn)) return moesz_error_set(err, MOESZ_E_FORMAT, "manifest record without a name");
  if (!(r->name = strdup(jn->valuestring))) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  const char *nm = r->name;
  if (!json_u64(o, "off", &r->off) || !json_u64(o, "len", &r->len) || !json_hex64(o, "xxh64", &r->xxh64))
    return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: needs off, len and xxh64", nm);
  if (r->off % MOESZ_MSZ_ALIGN || r->off < MOESZ_MSZ_HEADER || r->len > c->manifest_off ||
      r->off > c->manifest_off - r->len)
    return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: range [%llu, +%llu) outside the blob area", nm,
                           (unsigned long long)r->off, (unsigned long long)r->len);
  const cJSON *jm = cJSON_GetObjectItemCaseSensitive(o, "method");
  const char *m = cJSON_IsString(jm) ? jm->valuestring : "";
  if (!strcmp(m, "raw")) r->method = MOESZ_MSZ_RAW;
  else if (!strcmp(m, "zstd")) r->method = MOESZ_MSZ_ZSTD;
  else if (!strcmp(m, "codec")) r->method = MOESZ_MSZ_CODEC;
  else if (!strcmp(m, "compute")) r->method = MOESZ_MSZ_COMPUTE;
  else if (!strcmp(m, "resmoe")) r->method = MOESZ_MSZ_RESMOE;
  else return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: unknown method '%s'", nm, m);
  if (!need_shape) {
    r->raw_bytes = r->len;
    r->dtype = MOESZ_DT_U8;
    if (r->method != MOESZ_MSZ_RAW) return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: must be raw", nm);
    return MOESZ_OK;
  }
  const cJSON *jd = cJSON_GetObjectItemCaseSensitive(o, "dtype");
  if (!cJSON_IsString(jd) || moesz_dtype_parse(jd->valuestring, &r->dtype))
    return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: bad dtype", nm);
  const cJSON *js = cJSON_GetObjectItemCaseSensitive(o, "shape");
  if (!cJSON_IsArray(js) || cJSON_GetArraySize(js) != 2)
    return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: shape must be [rows, cols]", nm);
  size_t numel = 1;
  r->ndim = 2;
  int d = 0;
  for (const cJSON *e = js->child; e; e = e->next, d++) {
    double v = e->valuedouble;
    if (!cJSON_IsNumber(e) || !(v >= 1) || v > 4294967296.0 || v != floor(v))
      return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: bad shape", nm);
    r->shape[d] = (int64_t)v;
    if (__builtin_mul_overflow(numel, (size_t)v, &numel))
      return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: shape overflows", nm);
  }
  if (__builtin_mul_overflow(numel, moesz_dtype_size(r->dtype), &r->raw_bytes))
    return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: size overflows", nm);
  if (r->method == MOESZ_MSZ_RAW && r->len != r->raw_bytes)
    return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: raw blob of %llu bytes for %zu expected", nm,
                           (unsigned long long)r->len, r->raw_bytes);
  const cJSON *je = cJSON_GetObjectItemCaseSensitive(o, "eb");
  r->eb = cJSON_IsNumber(je) ? je->valuedouble : 0;
  if (!(r->eb >= 0) || !isfinite(r->eb)) return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: bad eb", nm);
  return MOESZ_OK;
}

int msz_parse_rec(moesz_msz *c, const void *json, moesz_msz_rec *r, int need_shape, moesz_error *err) {
  return parse_rec(c, json, r, need_shape, err);
}

static int parse_expert(moesz_msz *c, const cJSON *o, msz_expert *x, moesz_error *err) {
  int rc = parse_rec(c, o, &x->rec, 1, err);
  if (rc) return rc;
  const moesz_config *cfg = &c->cfg;
  const char *nm = x->rec.name;
  int mat;
  if (!json_int(o, "layer", 0, cfg->n_layers - 1, &x->rec.layer) ||
      !json_int(o, "expert", 0, cfg->n_experts > 0 ? cfg->n_experts - 1 : 0, &x->rec.expert) ||
      !json_int(o, "shared", 0, 1, &x->rec.shared) || !json_int(o, "mat", 1, 3, &mat))
    return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: bad layer/expert/shared/mat", nm);
  x->rec.mat = (moesz_mat)mat;
  const cJSON *jt = cJSON_GetObjectItemCaseSensitive(o, "tensor");
  if (!cJSON_IsString(jt)) return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: no source tensor", nm);
  x->tensor = -1;
  for (size_t i = 0; i < c->nsrc; i++)
    if (!strcmp(c->src[i].name, jt->valuestring)) x->tensor = (int)i;
  if (x->tensor < 0) return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: unknown source tensor", nm);
  uint64_t off, ld, tr;
  if (!json_u64(o, "view_off", &off) || !json_u64(o, "view_ld", &ld) || !json_u64(o, "view_t", &tr) || tr > 1)
    return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: bad view", nm);
  x->view_off = off;
  x->view_ld = ld;
  x->view_t = (int)tr;
  /* the view must lie inside its source tensor */
  const msz_src *s = &c->src[x->tensor];
  uint64_t rows = (uint64_t)x->rec.shape[0], cols = (uint64_t)x->rec.shape[1];
  uint64_t outer = tr ? cols : rows, inner = tr ? rows : cols;
  if (s->dtype != x->rec.dtype || ld < inner || ld > s->numel || outer > s->numel ||
      (outer - 1) > (s->numel - inner) / (ld ? ld : 1) || off > s->numel - ((outer - 1) * ld + inner))
    return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: view outside tensor %s", nm, s->name);
  return MOESZ_OK;
}

static int parse_manifest(moesz_msz *c, const char *txt, size_t len, moesz_error *err) {
  cJSON *root = cJSON_ParseWithLength(txt, len);
  if (!root) return moesz_error_set(err, MOESZ_E_FORMAT, "manifest is not valid JSON");
  int rc = MOESZ_OK;
  const cJSON *jf = cJSON_GetObjectItemCaseSensitive(root, "format");
  if (!cJSON_IsString(jf) || strcmp(jf->valuestring, "moesz")) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "manifest: not a moesz manifest"); goto done; }
  const cJSON *jv = cJSON_GetObjectItemCaseSensitive(root, "version");
  if (!cJSON_IsNumber(jv) || jv->valuedouble != c->version) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "manifest: version is not %u (the header's)", c->version); goto done; }
  /* files (config.json first) */
  const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files");
  int nf = cJSON_IsArray(files) ? cJSON_GetArraySize(files) : -1;
  if (nf < 1 || nf > 64) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "manifest: files must list 1-64 files"); goto done; }
  c->files = calloc((size_t)nf, sizeof *c->files);
  if (!c->files) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto done; }
  for (const cJSON *o = files->child; o; o = o->next) {
    if ((rc = parse_rec(c, o, &c->files[c->nfiles], 0, err))) { c->nfiles++; goto done; }
    const char *n = c->files[c->nfiles].name;
    c->nfiles++;
    if (!*n || strchr(n, '/') || !strcmp(n, ".") || !strcmp(n, "..")) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "manifest: bad file name '%s'", n); goto done; }
  }
  const void *cfg_data;
  size_t cfg_len;
  if ((rc = moesz_msz_file(c, "config.json", &cfg_data, &cfg_len, err))) goto done;
  if ((rc = moesz_config_parse(cfg_data, cfg_len, &c->cfg, err))) { moesz_error_wrap(err, rc, "embedded config.json"); goto done; }
  /* dense safetensors image */
  const cJSON *jd = cJSON_GetObjectItemCaseSensitive(root, "dense");
  if (!cJSON_IsObject(jd)) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "manifest: no dense record"); goto done; }
  if ((rc = parse_rec(c, jd, &c->dense_rec, 0, err))) goto done;
  const void *img;
  if ((rc = moesz_msz_blob(c, &c->dense_rec, &img, err))) goto done;
  if ((rc = moesz_st_parse(img, c->dense_rec.len, &c->dense, err))) { moesz_error_wrap(err, rc, "dense tensors"); goto done; }
  /* source tensors of expert blobs */
  const cJSON *srcs = cJSON_GetObjectItemCaseSensitive(root, "sources");
  int ns = cJSON_IsArray(srcs) ? cJSON_GetArraySize(srcs) : -1;
  if (ns < 0) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "manifest: no sources array"); goto done; }
  c->src = calloc((size_t)ns + 1, sizeof *c->src);
  if (!c->src) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto done; }
  for (const cJSON *o = srcs->child; o; o = o->next) {
    msz_src *s = &c->src[c->nsrc];
    const cJSON *jn = cJSON_GetObjectItemCaseSensitive(o, "name");
    const cJSON *jt = cJSON_GetObjectItemCaseSensitive(o, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(o, "shape");
    if (!cJSON_IsString(jn) || !cJSON_IsString(jt) || moesz_dtype_parse(jt->valuestring, &s->dtype) ||
        !cJSON_IsArray(js) || cJSON_GetArraySize(js) < 1 || cJSON_GetArraySize(js) > MOESZ_MAX_DIMS) {
      rc = moesz_error_set(err, MOESZ_E_FORMAT, "manifest: bad source tensor entry");
      goto done;
    }
    if (!(s->name = strdup(jn->valuestring))) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto done; }
    c->nsrc++;
    s->numel = 1;
    for (const cJSON *e = js->child; e; e = e->next) {
      double v = e->valuedouble;
      if (!cJSON_IsNumber(e) || !(v >= 1) || v > 4294967296.0 || v != floor(v) ||
          __builtin_mul_overflow(s->numel, (uint64_t)v, &s->numel)) {
        rc = moesz_error_set(err, MOESZ_E_FORMAT, "manifest: bad shape of source %s", s->name);
        goto done;
      }
      s->shape[s->ndim++] = (int64_t)v;
    }
  }
  /* a part of a split compression: the experts of a layer range only */
  const cJSON *jp = cJSON_GetObjectItemCaseSensitive(root, "part");
  if (jp) {
    const cJSON *jl = cJSON_GetObjectItemCaseSensitive(jp, "layers");
    int a = -1, b = -1, k = 0;
    for (const cJSON *e = cJSON_IsArray(jl) ? jl->child : NULL; e; e = e->next, k++) {
      double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
      if (!(v >= 0) || v >= c->cfg.n_layers || v != floor(v)) { k = -1; break; }
      if (k == 0) a = (int)v; else b = (int)v;
    }
    if (k != 2 || a > b) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "manifest: part.layers must be [first, last] within 0-%d", c->cfg.n_layers - 1); goto done; }
    if (!c->allow_part) {
      rc = moesz_error_set(err, MOESZ_E_UNSUPPORTED, "a part container (the experts of layers %d-%d only): join the parts "
                           "with `moesz merge` before use", a, b);
      goto done;
    }
    c->part = 1;
    c->part_first = a;
    c->part_last = b;
  }
  const cJSON *ex = cJSON_GetObjectItemCaseSensitive(root, "experts");
  int ne = cJSON_IsArray(ex) ? cJSON_GetArraySize(ex) : -1;
  if (ne < 0) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "manifest: no experts array"); goto done; }
  c->ex = calloc((size_t)ne + 1, sizeof *c->ex);
  if (!c->ex) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto done; }
  for (const cJSON *o = ex->child; o; o = o->next) {
    rc = parse_expert(c, o, &c->ex[c->nex], err);
    c->nex++;
    if (rc) goto done;
  }
  if (!(rc = msz_build_lookup(c, err))) rc = msz_check(c, err);
  if (!rc) rc = msz_resmoe_parse(c, root, err);
done:
  cJSON_Delete(root);
  return rc;
}

static int open_path(const char *path, int allow_part, moesz_msz **out, moesz_error *err) {
  *out = NULL;
  moesz_msz *c = calloc(1, sizeof *c);
  if (!c) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  c->allow_part = allow_part;
  int rc = MOESZ_OK;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    rc = moesz_error_set(err, errno == ENOENT ? MOESZ_E_NOTFOUND : MOESZ_E_IO, "%s: %s", path, strerror(errno));
    free(c);
    return rc;
  }
  struct stat sb;
  if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
    close(fd);
    free(c);
    return moesz_error_set(err, MOESZ_E_IO, "%s: not a regular file", path);
  }
  c->size = (uint64_t)sb.st_size;
  if (c->size < MOESZ_MSZ_HEADER) {
    close(fd);
    free(c);
    return moesz_error_set(err, MOESZ_E_FORMAT, "%s: %llu bytes is too short for a container", path, (unsigned long long)sb.st_size);
  }
  c->map = mmap(NULL, c->size, PROT_READ, MAP_PRIVATE, fd, 0);
  c->owns_map = 1;
  close(fd);
  if (c->map == MAP_FAILED) {
    c->map = NULL;
    moesz_msz_close(c);
    return moesz_error_set(err, MOESZ_E_IO, "%s: mmap failed", path);
  }
  rc = moesz_msz_parse(c, err);
  if (rc) {
    moesz_error_wrap(err, rc, "%s", path);
    moesz_msz_close(c);
    return rc;
  }
  if (!(c->path = strdup(path))) {
    moesz_msz_close(c);
    return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  }
  *out = c;
  return MOESZ_OK;
}

int moesz_msz_open(const char *path, moesz_msz **out, moesz_error *err) { return open_path(path, 0, out, err); }
int moesz_msz_open_part(const char *path, moesz_msz **out, moesz_error *err) { return open_path(path, 1, out, err); }

int moesz_msz_part(const moesz_msz *c, int *first, int *last) {
  if (first) *first = c->part ? c->part_first : 0;
  if (last) *last = c->part ? c->part_last : c->cfg.n_layers - 1;
  return c->part;
}

static int open_mem(const void *data, size_t len, int allow_part, moesz_msz **out, moesz_error *err) {
  *out = NULL;
  if (len < MOESZ_MSZ_HEADER) return moesz_error_set(err, MOESZ_E_FORMAT, "%zu bytes is too short for a container", len);
  moesz_msz *c = calloc(1, sizeof *c);
  if (!c) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  c->allow_part = allow_part;
  c->map = (void *)data;
  c->size = len;
  int rc = moesz_msz_parse(c, err);
  if (rc) { moesz_msz_close(c); return rc; }
  *out = c;
  return MOESZ_OK;
}
int moesz_msz_open_mem(const void *data, size_t len, moesz_msz **out, moesz_error *err) {
  return open_mem(data, len, 0, out, err);
}
int moesz_msz_open_part_mem(const void *data, size_t len, moesz_msz **out, moesz_error *err) {
  return open_mem(data, len, 1, out, err);
}

int moesz_msz_parse(moesz_msz *c, moesz_error *err) {
  const uint8_t *h = c->map;
  if (memcmp(h, MOESZ_MSZ_MAGIC, 8)) return moesz_error_set(err, MOESZ_E_FORMAT, "not a moesz container (bad magic)");
  uint32_t ver = moesz_rd32le(h + 8);
  if (ver != MOESZ_MSZ_VERSION && ver != MOESZ_MSZ_VERSION_RESMOE)
    return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "container version %u (this build reads %d-%d)", ver, MOESZ_MSZ_VERSION, MOESZ_MSZ_VERSION_RESMOE);
  c->version = ver;
  uint32_t flags = moesz_rd32le(h + 12);
  if (flags) return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "container header flags 0x%x: unknown to this build", flags);
  for (int i = 48; i < MOESZ_MSZ_HEADER; i++)
    if (h[i]) return moesz_error_set(err, MOESZ_E_FORMAT, "container header: reserved byte %d is not zero", i);
  c->manifest_off = moesz_rd64le(h + 16);
  uint64_t mlen = moesz_rd64le(h + 24), mh = moesz_rd64le(h + 32), flen = moesz_rd64le(h + 40);
  if (flen != c->size) return moesz_error_set(err, MOESZ_E_FORMAT, "header says %llu bytes, file has %llu (truncated?)",
                                              (unsigned long long)flen, (unsigned long long)c->size);
  if (c->manifest_off < MOESZ_MSZ_HEADER || c->manifest_off > c->size || mlen != c->size - c->manifest_off || mlen > (256u << 20))
    return moesz_error_set(err, MOESZ_E_FORMAT, "manifest range is outside the file");
  if (!MOESZ_CHECKSUM_OK(XXH3_64bits(h + c->manifest_off, mlen), mh)) return moesz_error_set(err, MOESZ_E_CHECKSUM, "manifest checksum mismatch");
  return parse_manifest(c, (const char *)h + c->manifest_off, mlen, err);
}

void moesz_msz_close(moesz_msz *c) {
  if (!c) return;
  for (size_t i = 0; i < c->nfiles; i++) free((char *)c->files[i].name);
  for (size_t i = 0; i < c->nex; i++) free((char *)c->ex[i].rec.name);
  for (size_t i = 0; i < c->nsrc; i++) free(c->src[i].name);
  free((char *)c->dense_rec.name);
  free(c->files);
  free(c->ex);
  free(c->src);
  free(c->lookup);
  msz_resmoe_free(c);
  free(c->path);
  moesz_st_close(c->dense);
  if (c->map && c->owns_map) munmap(c->map, c->size);
  free(c);
}

size_t moesz_msz_count(const moesz_msz *c) { return c->nex; }
const moesz_msz_rec *moesz_msz_at(const moesz_msz *c, size_t i) { return i < c->nex ? &c->ex[i].rec : NULL; }
const moesz_msz_rec *moesz_msz_find(const moesz_msz *c, const char *name) {
  for (size_t i = 0; i < c->nex; i++)
    if (!strcmp(c->ex[i].rec.name, name)) return &c->ex[i].rec;
  return NULL;
}
const moesz_config *moesz_msz_config(const moesz_msz *c) { return &c->cfg; }
const moesz_st *moesz_msz_dense(const moesz_msz *c) { return c->dense; }
uint64_t moesz_msz_file_size(const moesz_msz *c) { return c->size; }
size_t moesz_msz_file_count(const moesz_msz *c) { return c->nfiles; }
const char *moesz_msz_file_name(const moesz_msz *c, size_t i) { return i < c->nfiles ? c->files[i].name : NULL; }

int moesz_msz_file(const moesz_msz *c, const char *name, const void **data, size_t *len, moesz_error *err) {
  for (size_t i = 0; i < c->nfiles; i++) {
    if (strcmp(c->files[i].name, name)) continue;
    *len = c->files[i].len;
    return moesz_msz_blob(c, &c->files[i], data, err);
  }
  *data = NULL;
  *len = 0;
  return moesz_error_set(err, MOESZ_E_NOTFOUND, "container has no file %s", name);
}

int moesz_msz_blob(const moesz_msz *c, const moesz_msz_rec *r, const void **data, moesz_error *err) {
  const uint8_t *p = (const uint8_t *)c->map + r->off;
  if (!MOESZ_CHECKSUM_OK(XXH3_64bits(p, r->len), r->xxh64)) {
    *data = NULL;
    return moesz_error_set(err, MOESZ_E_CHECKSUM, "blob %s: checksum mismatch (corrupted container)", r->name);
  }
  *data = p;
  return MOESZ_OK;
}

const moesz_msz_rec *moesz_msz_expert(const moesz_msz *c, int layer, int expert, int shared, moesz_mat mat) {
  if (!c->lookup || layer < 0 || layer >= c->cfg.n_layers || expert < 0 || expert >= c->lookup_e ||
      shared < 0 || shared > 1 || mat < MOESZ_MAT_GATE || mat > MOESZ_MAT_DOWN)
    return NULL;
  int32_t i = c->lookup[msz_slot(c, layer, expert, shared, mat)];
  return i >= 0 ? &c->ex[i].rec : NULL;
}

int moesz_msz_read(const moesz_msz *c, const moesz_msz_rec *r, moesz_dtype out, void *dst, moesz_error *err) {
  const void *blob;
  int rc = moesz_msz_blob(c, r, &blob, err);
  if (rc) return rc;
  return moesz_msz_decode(c, r, blob, out, dst, err);
}

int moesz_msz_verify(const moesz_msz_rec *r, const void *stored, moesz_error *err) {
  if (!MOESZ_CHECKSUM_OK(XXH3_64bits(stored, r->len), r->xxh64))
    return moesz_error_set(err, MOESZ_E_CHECKSUM, "blob %s: checksum mismatch (corrupted container)", r->name);
  return MOESZ_OK;
}

int moesz_msz_decode(const moesz_msz *c, const moesz_msz_rec *r, const void *blob, moesz_dtype out, void *dst,
                     moesz_error *err) {
  return moesz_msz_decode_ctx(c, r, blob, out, dst, NULL, err);
}

int moesz_msz_decode_ctx(const moesz_msz *c, const moesz_msz_rec *r, const void *blob, moesz_dtype out, void *dst,
                         moesz_codec_ctx *x, moesz_error *err) {
  (void)c;
  int rc = MOESZ_OK;
  size_t n = r->raw_bytes / moesz_dtype_size(r->dtype);
  if (out != r->dtype && out != MOESZ_DT_F32 && out != MOESZ_DT_F16 && out != MOESZ_DT_BF16)
    return moesz_error_set(err, MOESZ_E_ARG, "blob %s: cannot decode to %s", r->name, moesz_dtype_name(out));
  if (r->method == MOESZ_MSZ_CODEC) return msz_codec_decode(r, blob, out, dst, n, x, err);
  if (r->method == MOESZ_MSZ_COMPUTE) return msz_cl_decode(r, blob, out, dst, err);
  if (r->method == MOESZ_MSZ_RESMOE) return msz_resmoe_read(c, r, out, dst, err);
  const void *raw = blob;
  void *tmp = NULL;
  if (r->method == MOESZ_MSZ_ZSTD) {
    unsigned long long fs = ZSTD_getFrameContentSize(blob, r->len);
    if (fs != r->raw_bytes) return moesz_error_set(err, MOESZ_E_FORMAT, "blob %s: zstd frame size disagrees with its shape", r->name);
    tmp = out == r->dtype ? dst : malloc(r->raw_bytes ? r->raw_bytes : 1);
    if (!tmp) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
    size_t got = ZSTD_decompress(tmp, r->raw_bytes, blob, r->len);
    if (ZSTD_isError(got) || got != r->raw_bytes) {
      if (tmp != dst) free(tmp);
      return moesz_error_set(err, MOESZ_E_FORMAT, "blob %s: zstd: %s", r->name, ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short output");
    }
    if (tmp == dst) return MOESZ_OK;
    raw = tmp;
  }
  if (out == r->dtype) memcpy(dst, raw, r->raw_bytes);
  else rc = msz_convert(r->dtype, raw, out, dst, n, err);
  free(tmp);
  return rc;
}
