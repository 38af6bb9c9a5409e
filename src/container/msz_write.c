/* container/msz_write.c - owns writing .msz containers from an open model:
 * embedded files, the dense safetensors image, one blob per routed expert
 * matrix (raw, zstd or codec, per-layer and per-tensor bounds; a part container holds one
 * layer range's experts), the JSON manifest and the header, all through a temporary file renamed on success. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <zstd.h>
#include "base/bytes.h"
#include "base/util.h"
#include "container/msz_internal.h"

static const char *EMBED_FILES[] = {"config.json", "tokenizer.json", "tokenizer_config.json",
                                    "generation_config.json", "special_tokens_map.json"};

typedef struct wctx {
  moesz_afile af;
  uint64_t pos;               /* bytes written so far */
} wctx;

static int w_put(void *ctx, const void *buf, size_t n, moesz_error *err) {
  wctx *w = ctx;
  int rc = moesz_afile_write(&w->af, buf, n, err);
  if (!rc) w->pos += n;
  return rc;
}

static int w_align(wctx *w, moesz_error *err) {
  static const uint8_t zero[MOESZ_MSZ_ALIGN] = {0};
  size_t pad = (size_t)((MOESZ_MSZ_ALIGN - w->pos % MOESZ_MSZ_ALIGN) % MOESZ_MSZ_ALIGN);
  return pad ? w_put(w, zero, pad, err) : MOESZ_OK;
}

/* A sink that writes and hashes. */
typedef struct hsink { wctx *w; XXH3_state_t *hs; } hsink;
static int hsink_put(void *ctx, const void *buf, size_t n, moesz_error *err) {
  hsink *h = ctx;
  XXH3_64bits_update(h->hs, buf, n);
  return w_put(h->w, buf, n, err);
}


static void hex64(char out[17], uint64_t v) { snprintf(out, 17, "%016llx", (unsigned long long)v); }

/* Writes one blob at an aligned offset and fills the record's common JSON keys. */
static int put_blob(wctx *w, cJSON *o, const char *name, const char *method, const void *data, size_t len,
                    moesz_error *err) {
  int rc = w_align(w, err);
  if (rc) return rc;
  uint64_t off = w->pos;
  if ((rc = w_put(w, data, len, err))) return rc;
  char h[17];
  hex64(h, XXH3_64bits(data, len));
  cJSON_AddStringToObject(o, "name", name);
  cJSON_AddStringToObject(o, "method", method);
  cJSON_AddNumberToObject(o, "off", (double)off);
  cJSON_AddNumberToObject(o, "len", (double)len);
  cJSON_AddStringToObject(o, "xxh64", h);
  return MOESZ_OK;
}

static int put_blob_fn(void *w, void *o, const char *name, const char *method, const void *data, size_t len, moesz_error *err) {
  return put_blob(w, o, name, method, data, len, err);
}

/* Index of the tensor whose data holds p, or -1. */
static long tensor_holding(const moesz_st *st, const void *p) {
  for (size_t i = 0; i < moesz_st_count(st); i++) {
    const moesz_tensor *t = moesz_st_at(st, i);
    const char *b = t->data;
    if ((const char *)p >= b && (const char *)p < b + t->nbytes) return (long)i;
  }
  return -1;
}

/* The caller's progress callback (opts.on_progress), if any; non-zero from it cancels the write. */
static int progress_cb(const moesz_msz_opts *o, int done, int total, moesz_error *err) {
  if (!o->on_progress || !o->on_progress(o->progress_ctx, (uint64_t)done, (uint64_t)total)) return MOESZ_OK;
  return moesz_error_set(err, MOESZ_E_ARG, "cancelled by the progress callback after %d of %d matrices", done, total);
}

int moesz_msz_write(const moesz_model *m, const char *path, const moesz_msz_opts *o, moesz_msz_summary *sum,
                    moesz_error *err) {
  const moesz_config *cfg = &m->cfg;
  moesz_msz_summary s;
  memset(&s, 0, sizeof s);
  double t0 = moesz_time_now();
  size_t nt = moesz_st_count(m->st);
  uint8_t *is_src = calloc(nt ? nt : 1, 1);
  cJSON *man = cJSON_CreateObject();
  cJSON *files = cJSON_AddArrayToObject(man, "files");
  cJSON *srcs = cJSON_AddArrayToObject(man, "sources");
  cJSON *exps = cJSON_AddArrayToObject(man, "experts"), *rmj = NULL;
  cJSON_AddStringToObject(man, "format", "moesz");
  cJSON_AddNumberToObject(man, "version", MOESZ_MSZ_VERSION);
  uint8_t *buf = NULL;
  moesz_codec_ctx *cx = NULL;   /* one codec context (pool, buffers) for every matrix */
  size_t bufcap = 0;
  char *mtxt = NULL;
  moesz_stw *dw = NULL;
  msz_rules *rules = NULL;
  wctx w;
  memset(&w, 0, sizeof w);
  int rc = MOESZ_OK, opened = 0;
  if (!is_src || !man) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto fail; }
  /* never over an input file (weights, config, tokenizer) or a folder */
  if ((rc = moesz_output_check_model(path, 0, m->path, "output", err))) goto fail;
  if (moesz_path_is_dir(path)) { rc = moesz_error_set(err, MOESZ_E_ARG, "output %s is a folder; name a file", path); goto fail; }
  if ((rc = moesz_afile_open(&w.af, path, err))) goto fail;
  opened = 1;
  uint8_t hdr[MOESZ_MSZ_HEADER] = {0};
  if ((rc = w_put(&w, hdr, sizeof hdr, err))) goto fail;

  /* 1. embedded files */
  for (size_t i = 0; i < sizeof EMBED_FILES / sizeof *EMBED_FILES; i++) {
    char p[4096], *txt;
    size_t len;
    if (moesz_path_join(p, sizeof p, m->path, EMBED_FILES[i])) continue;
    int r2 = moesz_file_read_all(p, 256u << 20, &txt, &len, err);
    if (r2 == MOESZ_E_NOTFOUND && i > 0) continue;
    if (r2) { rc = r2; goto fail; }
    cJSON *fo = cJSON_CreateObject();
    cJSON_AddItemToArray(files, fo);
    rc = put_blob(&w, fo, EMBED_FILES[i], "raw", txt, len, err);
    free(txt);
    if (rc) goto fail;
    s.file_bytes += len;
  }

  /* 2. which tensors hold routed experts */
  int nmat = 0, switch_ffn = cfg->arch == MOESZ_ARCH_SWITCH;
  for (int L = 0; L < cfg->n_layers; L++) {
    if (!cfg->is_moe[L]) continue;
    for (int e = 0; e < cfg->n_experts; e++)
      for (int mat = MOESZ_MAT_GATE; mat <= MOESZ_MAT_DOWN; mat++) {
        if (mat == MOESZ_MAT_UP && switch_ffn) continue;   /* Switch experts: wi (gate), wo (down) */
        moesz_matview v;
        if ((rc = moesz_model_expert(m, L, e, 0, (moesz_mat)mat, &v, err))) goto fail;
        long ti = tensor_holding(m->st, v.data);
        if (ti < 0) { rc = moesz_error_set(err, MOESZ_E_INTERNAL, "expert view outside every tensor"); goto fail; }
        is_src[ti] = 1;   /* every MoE layer's: a part's dense image is the whole run's */
        nmat += !o->part || (L >= o->part_first && L <= o->part_last);
      }
  }

  /* 3. dense tensors as one safetensors image */
  if ((rc = moesz_stw_create("(embedded)", &dw, err))) goto fail;
  for (size_t i = 0; i < nt; i++) {
    const moesz_tensor *t = moesz_st_at(m->st, i);
    if (is_src[i]) {
      cJSON *so = cJSON_CreateObject();
      cJSON_AddItemToArray(srcs, so);
      cJSON_AddStringToObject(so, "name", t->name);
      cJSON_AddStringToObject(so, "dtype", moesz_dtype_name(t->dtype));
      cJSON *sh = cJSON_AddArrayToObject(so, "shape");
      for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
      continue;
    }
    if ((rc = moesz_stw_add(dw, t->name, t->dtype, t->ndim, t->shape, t->data, err))) goto fail;
    s.dense_bytes += t->nbytes;
  }
  if ((rc = w_align(&w, err))) goto fail;
  {
    hsink hsk = {&w, XXH3_createState()};
    if (!hsk.hs) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto fail; }
    XXH3_64bits_reset(hsk.hs);
    uint64_t off = w.pos;
    rc = moesz_stw_emit(dw, hsink_put, &hsk, err);
    uint64_t h = XXH3_64bits_digest(hsk.hs);
    XXH3_freeState(hsk.hs);
    if (rc) goto fail;
    char hx[17];
    hex64(hx, h);
    cJSON *d = cJSON_AddObjectToObject(man, "dense");
    cJSON_AddStringToObject(d, "name", "@dense");
    cJSON_AddStringToObject(d, "method", "raw");
    cJSON_AddNumberToObject(d, "off", (double)off);
    cJSON_AddNumberToObject(d, "len", (double)(w.pos - off));
    cJSON_AddStringToObject(d, "xxh64", hx);
  }

  /* 4. expert blobs (a part: those of its layers only) */
  int first = o->part ? o->part_first : 0, last = o->part ? o->part_last : cfg->n_layers - 1, nmoe = 0;
  if (first < 0 || last >= cfg->n_layers || first > last) {
    rc = moesz_error_set(err, MOESZ_E_ARG, "part layers %d-%d outside 0-%d", first, last, cfg->n_layers - 1);
    goto fail;
  }
  for (int L = first; L <= last; L++) nmoe += cfg->is_moe[L];
  if (o->part && !nmoe) { rc = moesz_error_set(err, MOESZ_E_ARG, "layers %d-%d hold no MoE layer", first, last); goto fail; }
  if ((rc = msz_rules_compile(o, &rules, err))) goto fail;
  moesz_progress prog;
  if (o->method == MOESZ_MSZ_CODEC && (rc = moesz_codec_ctx_create(o->threads, &cx, err))) goto fail;
  moesz_progress_begin(&prog, "compress", nmat, o->progress);
  int done = 0;
  for (int L = first; L <= last; L++) {
    if (!cfg->is_moe[L]) continue;
    double leb = o->eb;
    moesz_msz_method lmethod = o->method;
    if (o->layer_eb && o->layer_eb[L] > 0) leb = o->layer_eb[L];
    if (o->layer_eb && o->layer_eb[L] < 0 && (lmethod == MOESZ_MSZ_CODEC || lmethod == MOESZ_MSZ_COMPUTE))
      lmethod = MOESZ_MSZ_ZSTD;
    if (o->resmoe && o->resmoe_layers && o->resmoe_layers[L] && !(o->layer_eb && o->layer_eb[L] < 0)) {
      if (!rmj) {
        cJSON *sec = cJSON_AddObjectToObject(man, "resmoe");
        cJSON_AddNumberToObject(sec, "version", 1);
        rmj = cJSON_AddArrayToObject(sec, "layers");
      }
      if ((rc = msz_resmoe_write_layer(m, L, leb, o, put_blob_fn, &w, exps, rmj, &s, err))) goto fail;
      moesz_progress_step(&prog, done += 3 * cfg->n_experts);
      if ((rc = progress_cb(o, done, nmat, err))) goto fail;
      continue;
    }
    for (int e = 0; e < cfg->n_experts; e++)
      for (int mat = MOESZ_MAT_GATE; mat <= MOESZ_MAT_DOWN; mat++) {
        if (mat == MOESZ_MAT_UP && switch_ffn) continue;   /* Switch experts: wi (gate), wo (down) */
        moesz_matview v;
        if ((rc = moesz_model_expert(m, L, e, 0, (moesz_mat)mat, &v, err))) goto fail;
        long ti = tensor_holding(m->st, v.data);
        const moesz_tensor *t = moesz_st_at(m->st, (size_t)ti);
        size_t es = moesz_dtype_size(v.dtype), n = (size_t)v.rows * (size_t)v.cols, raw = n * es;
        size_t need = raw + ZSTD_compressBound(raw);
        if (need > bufcap) {
          uint8_t *nb = realloc(buf, need);
          if (!nb) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory for expert buffers"); goto fail; }
          buf = nb;
          bufcap = need;
        }
        moesz_matview_gather(&v, buf);
        char name[600];
        snprintf(name, sizeof name, "%s#%d.%s", t->name, e, mat == MOESZ_MAT_GATE ? "gate" : mat == MOESZ_MAT_UP ? "up" : "down");
        double eb = leb, teb = msz_rules_eb(rules, name);   /* --tensor-eb overrides the layer's bound */
        moesz_msz_method method = lmethod;
        if (teb > 0) eb = teb;
        if (teb < 0 && (method == MOESZ_MSZ_CODEC || method == MOESZ_MSZ_COMPUTE)) method = MOESZ_MSZ_ZSTD;
        cJSON *xo = cJSON_CreateObject();
        cJSON_AddItemToArray(exps, xo);
        const void *blob = buf;
        size_t blen = raw;
        void *cblob = NULL;
        const char *mname = "raw";
        double eb_abs = 0;
        if (method == MOESZ_MSZ_ZSTD) {
          size_t z = ZSTD_compress(buf + raw, bufcap - raw, buf, raw, 3);
          if (ZSTD_isError(z)) { rc = moesz_error_set(err, MOESZ_E_INTERNAL, "zstd: %s", ZSTD_getErrorName(z)); goto fail; }
          if (z < raw) { blob = buf + raw; blen = z; mname = "zstd"; }
        } else if (method == MOESZ_MSZ_CODEC) {
          uint64_t verb = 0;
          double ratio = 0;
          if ((rc = msz_codec_encode(cx, buf, v.dtype, n, o, eb, &cblob, &blen, &eb_abs, &verb, &ratio, err))) goto fail;
          blob = cblob;
          mname = "codec";
          s.verbatim_values += verb;
          if (ratio > s.max_err_over_bound) s.max_err_over_bound = ratio;
        } else if (method == MOESZ_MSZ_COMPUTE) {
          uint64_t esc = 0;
          double ratio = 0;
          if ((rc = msz_cl_encode(buf, v.dtype, v.rows, v.cols, o, eb, &cblob, &blen, &eb_abs, &esc, &ratio, err))) goto fail;
          blob = cblob;
          mname = "compute";
          s.verbatim_values += esc;
          if (ratio > s.max_err_over_bound) s.max_err_over_bound = ratio;
        }
        rc = put_blob(&w, xo, name, mname, blob, blen, err);
        free(cblob);
        if (rc) goto fail;
        cJSON_AddStringToObject(xo, "dtype", moesz_dtype_name(v.dtype));
        cJSON *sh = cJSON_AddArrayToObject(xo, "shape");
        cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)v.rows));
        cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)v.cols));
        cJSON_AddNumberToObject(xo, "eb", eb_abs);
        cJSON_AddNumberToObject(xo, "layer", L);
        cJSON_AddNumberToObject(xo, "expert", e);
        cJSON_AddNumberToObject(xo, "shared", 0);
        cJSON_AddNumberToObject(xo, "mat", mat);
        cJSON_AddStringToObject(xo, "tensor", t->name);
        cJSON_AddNumberToObject(xo, "view_off", (double)(((const uint8_t *)v.data - (const uint8_t *)t->data) / (ptrdiff_t)es));
        cJSON_AddNumberToObject(xo, "view_ld", (double)v.ld);
        cJSON_AddNumberToObject(xo, "view_t", v.transposed);
        s.expert_raw_bytes += raw;
        s.expert_stored_bytes += blen;
        moesz_progress_step(&prog, ++done);
        if ((rc = progress_cb(o, done, nmat, err))) goto fail;
      }
  }
  moesz_progress_end(&prog);
  if ((rc = msz_rules_check_hits(rules, err))) goto fail;

  /* 5. manifest, then the header */
  if (o->part) {
    cJSON *po = cJSON_AddObjectToObject(man, "part"), *pl = cJSON_AddArrayToObject(po, "layers");
    cJSON_AddItemToArray(pl, cJSON_CreateNumber(first));
    cJSON_AddItemToArray(pl, cJSON_CreateNumber(last));
  }
  if ((rc = w_align(&w, err))) goto fail;
  if (rmj) cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(man, "version"), MOESZ_MSZ_VERSION_RESMOE);
  if (!(mtxt = cJSON_PrintUnformatted(man))) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto fail; }
  uint64_t moff = w.pos, mlen = strlen(mtxt);
  if ((rc = w_put(&w, mtxt, mlen, err))) goto fail;
  memcpy(hdr, MOESZ_MSZ_MAGIC, 8);
  moesz_wr32le(hdr + 8, rmj ? MOESZ_MSZ_VERSION_RESMOE : MOESZ_MSZ_VERSION);
  moesz_wr64le(hdr + 16, moff);
  moesz_wr64le(hdr + 24, mlen);
  moesz_wr64le(hdr + 32, XXH3_64bits(mtxt, mlen));
  moesz_wr64le(hdr + 40, w.pos);
  if (fseek(w.af.f, 0, SEEK_SET) != 0 || fwrite(hdr, 1, sizeof hdr, w.af.f) != sizeof hdr) {
    rc = moesz_error_set(err, MOESZ_E_IO, "%s: cannot write the header", w.af.tmp);
    goto fail;
  }
  s.total_bytes = w.pos;
  opened = 0;
  if ((rc = moesz_afile_commit(&w.af, err))) goto fail;
  s.seconds = moesz_time_now() - t0;
  if (sum) *sum = s;
  rc = MOESZ_OK;
fail:
  if (opened) moesz_afile_abort(&w.af);
  moesz_stw_abort(dw);
  msz_rules_free(rules);
  cJSON_Delete(man);
  free(mtxt);
  free(buf);
  moesz_codec_ctx_free(cx);
  free(is_src);
  return rc;
}
