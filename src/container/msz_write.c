/* container/msz_write.c - owns writing .msz containers from an open model:
 * embedded files, the dense safetensors image, one blob per routed expert
 * matrix (raw, zstd or codec, per-layer and per-tensor bounds; a part container holds one
 * layer range's experts; gpt-oss MXFP4 experts kept in the dense image or re-encoded from their exact BF16
 * values), the JSON manifest and the header, all through a temporary file renamed on success.
 * The writer is streaming (moesz_msz_writer_*): files, sources and the dense image first, then one expert
 * matrix at a time, so a caller never holds more than one; moesz_msz_write drives it from an open model. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/xxh.h"
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

/* gpt-oss MXFP4 experts (docs/CONTAINER.md "MXFP4 experts"). 1 if layer L of
 * m stores its experts as MXFP4 blocks + scales. */
static int mx_layer(const moesz_model *m, int L) {
  moesz_mxfp4_view v;
  return m->cfg.arch == MOESZ_ARCH_GPT_OSS && m->cfg.is_moe[L] &&
         moesz_model_expert_mxfp4(m, L, 0, MOESZ_MAT_GATE_UP, &v, NULL) == MOESZ_OK &&
         moesz_model_expert_mxfp4(m, L, 0, MOESZ_MAT_DOWN, &v, NULL) == MOESZ_OK;
}

/* The name transformers gives the unquantized tensor of a gpt-oss MXFP4
 * *_blocks / *_scales tensor (the suffix dropped), or 0 if t is not one. */
static int mx_plain_name(const moesz_tensor *t, char *out, size_t cap) {
  size_t n = strlen(t->name);
  for (int k = 0; k < 2; k++) {
    const char *suf = k ? "_scales" : "_blocks";
    size_t ls = strlen(suf);
    if (n > ls && !strcmp(t->name + n - ls, suf) && n - ls < cap) {
      memcpy(out, t->name, n - ls);
      out[n - ls] = 0;
      return 1;
    }
  }
  return 0;
}

/* Re-encoded MXFP4 expert (L, e) matrix mat (gate / up: row halves of
 * gate_up, down) dequantised exactly into BF16 [rows, cols] at dst. */
static int mx_dequant(const moesz_model *m, int L, int e, int mat, uint16_t *dst, int64_t *rows, int64_t *cols,
                      moesz_error *err) {
  moesz_mxfp4_view v;
  int rc = moesz_model_expert_mxfp4(m, L, e, mat == MOESZ_MAT_DOWN ? MOESZ_MAT_DOWN : MOESZ_MAT_GATE_UP, &v, err);
  if (rc) return rc;
  int64_t r0 = 0, nr = v.rows, g = v.cols / 32;
  if (mat != MOESZ_MAT_DOWN) { nr = v.rows / 2; r0 = mat == MOESZ_MAT_UP ? nr : 0; }
  moesz_mxfp4_to_bf16(v.blocks + (size_t)(r0 * g * 16), v.scales + (size_t)(r0 * g), (size_t)(nr * g), dst);
  *rows = nr;
  *cols = v.cols;
  return MOESZ_OK;
}

/* config.json without its quantization_config (a container whose MXFP4
 * experts were re-encoded holds them as BF16), malloc'd. */
static int drop_quant_config(const char *txt, size_t len, char **out, size_t *olen, moesz_error *err) {
  cJSON *j = cJSON_ParseWithLength(txt, len);
  if (!j) return moesz_error_set(err, MOESZ_E_FORMAT, "config.json: not valid JSON");
  cJSON_DeleteItemFromObjectCaseSensitive(j, "quantization_config");
  *out = cJSON_Print(j);
  cJSON_Delete(j);
  if (!*out) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  *olen = strlen(*out);
  return MOESZ_OK;
}

/* The caller's progress callback (opts.on_progress), if any; non-zero from it cancels the write. */
static int progress_cb(const moesz_msz_opts *o, int done, int total, moesz_error *err) {
  if (!o->on_progress || !o->on_progress(o->progress_ctx, (uint64_t)done, (uint64_t)total)) return MOESZ_OK;
  return moesz_error_set(err, MOESZ_E_ARG, "cancelled by the progress callback after %d of %d matrices", done, total);
}

/* The streaming writer (moesz_msz_writer_*): the output file, the manifest
 * being built and one scratch buffer; moesz_msz_write drives it from an open
 * model, msz_synth.c from a synth plan. */
struct moesz_msz_writer {
  wctx w;
  int opened;                 /* the temporary file is open */
  int dense_done;             /* the dense image is written (files before, experts after) */
  moesz_msz_opts o;
  cJSON *man, *files, *srcs, *exps, *rmj;
  msz_rules *rules;
  moesz_codec_ctx *cx;        /* one codec context (pool, buffers) for every matrix */
  uint8_t *zbuf;              /* zstd output scratch */
  size_t zcap;
  moesz_progress prog;
  int done;                   /* expert matrices written (progress) */
  int nmat;                   /* expert matrices expected (progress callback) */
  moesz_msz_summary s;
  double t0;
};

int moesz_msz_writer_open(const char *path, const moesz_msz_opts *o, int n_mats, moesz_msz_writer **out,
                          moesz_error *err) {
  *out = NULL;
  if (moesz_path_is_dir(path)) return moesz_error_set(err, MOESZ_E_ARG, "output %s is a folder; name a file", path);
  moesz_msz_writer *x = calloc(1, sizeof *x);
  if (!x) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  x->o = *o;
  x->t0 = moesz_time_now();
  int rc = MOESZ_OK;
  x->man = cJSON_CreateObject();
  if (!x->man) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto fail; }
  x->files = cJSON_AddArrayToObject(x->man, "files");
  x->srcs = cJSON_AddArrayToObject(x->man, "sources");
  x->exps = cJSON_AddArrayToObject(x->man, "experts");
  cJSON_AddStringToObject(x->man, "format", "moesz");
  cJSON_AddNumberToObject(x->man, "version", MOESZ_MSZ_VERSION);
  if (!x->files || !x->srcs || !x->exps) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto fail; }
  if ((rc = msz_rules_compile(o, &x->rules, err))) goto fail;
  if (o->method == MOESZ_MSZ_CODEC && (rc = moesz_codec_ctx_create(o->threads, &x->cx, err))) goto fail;
  if ((rc = moesz_afile_open(&x->w.af, path, err))) goto fail;
  x->opened = 1;
  uint8_t hdr[MOESZ_MSZ_HEADER] = {0};
  if ((rc = w_put(&x->w, hdr, sizeof hdr, err))) goto fail;
  moesz_progress_begin(&x->prog, "compress", n_mats, o->progress);
  x->nmat = n_mats;
  *out = x;
  return MOESZ_OK;
fail:
  moesz_msz_writer_abort(x);
  return rc;
}

void moesz_msz_writer_abort(moesz_msz_writer *x) {
  if (!x) return;
  if (x->opened) moesz_afile_abort(&x->w.af);
  msz_rules_free(x->rules);
  cJSON_Delete(x->man);
  free(x->zbuf);
  moesz_codec_ctx_free(x->cx);
  free(x);
}

int moesz_msz_writer_file(moesz_msz_writer *x, const char *name, const void *data, size_t len, moesz_error *err) {
  if (x->dense_done) return moesz_error_set(err, MOESZ_E_ARG, "writer: file %s after the dense image", name);
  cJSON *fo = cJSON_CreateObject();
  if (!fo) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  cJSON_AddItemToArray(x->files, fo);
  int rc = put_blob(&x->w, fo, name, "raw", data, len, err);
  if (!rc) x->s.file_bytes += len;
  return rc;
}

int moesz_msz_writer_source(moesz_msz_writer *x, const char *name, moesz_dtype dtype, int ndim, const int64_t *shape,
                            moesz_error *err) {
  cJSON *so = cJSON_CreateObject();
  if (!so) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  cJSON_AddItemToArray(x->srcs, so);
  cJSON_AddStringToObject(so, "name", name);
  cJSON_AddStringToObject(so, "dtype", moesz_dtype_name(dtype));
  cJSON *sh = cJSON_AddArrayToObject(so, "shape");
  for (int d = 0; d < ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)shape[d]));
  return MOESZ_OK;
}

int moesz_msz_writer_dense(moesz_msz_writer *x, const moesz_stw *dense, moesz_error *err) {
  if (x->dense_done) return moesz_error_set(err, MOESZ_E_ARG, "writer: a second dense image");
  int rc = w_align(&x->w, err);
  if (rc) return rc;
  hsink hsk = {&x->w, XXH3_createState()};
  if (!hsk.hs) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  XXH3_64bits_reset(hsk.hs);
  uint64_t off = x->w.pos;
  rc = moesz_stw_emit(dense, hsink_put, &hsk, err);
  uint64_t h = XXH3_64bits_digest(hsk.hs);
  XXH3_freeState(hsk.hs);
  if (rc) return rc;
  char hx[17];
  hex64(hx, h);
  cJSON *d = cJSON_AddObjectToObject(x->man, "dense");
  cJSON_AddStringToObject(d, "name", "@dense");
  cJSON_AddStringToObject(d, "method", "raw");
  cJSON_AddNumberToObject(d, "off", (double)off);
  cJSON_AddNumberToObject(d, "len", (double)(x->w.pos - off));
  cJSON_AddStringToObject(d, "xxh64", hx);
  x->s.dense_bytes = moesz_stw_data_bytes(dense);
  x->dense_done = 1;
  return MOESZ_OK;
}

/* The method and bound of one matrix: the run's, the layer's (--layer-eb), then the tensor rule's. */
static moesz_msz_method expert_method(moesz_msz_writer *x, int layer, const char *name, double *eb) {
  const moesz_msz_opts *o = &x->o;
  moesz_msz_method method = o->method;
  *eb = o->eb;
  if (o->layer_eb && o->layer_eb[layer] > 0) *eb = o->layer_eb[layer];
  if (o->layer_eb && o->layer_eb[layer] < 0 && (method == MOESZ_MSZ_CODEC || method == MOESZ_MSZ_COMPUTE))
    method = MOESZ_MSZ_ZSTD;
  double teb = msz_rules_eb(x->rules, name);   /* --tensor-eb overrides the layer's bound */
  if (teb > 0) *eb = teb;
  if (teb < 0 && (method == MOESZ_MSZ_CODEC || method == MOESZ_MSZ_COMPUTE)) method = MOESZ_MSZ_ZSTD;
  return method;
}

int moesz_msz_writer_expert(moesz_msz_writer *x, const moesz_msz_expert_in *in, moesz_error *err) {
  if (!x->dense_done) return moesz_error_set(err, MOESZ_E_ARG, "writer: expert before the dense image");
  if (in->layer < 0 || in->layer >= MOESZ_MAX_LAYERS || in->mat < MOESZ_MAT_GATE || in->mat > MOESZ_MAT_DOWN ||
      in->rows < 1 || in->cols < 1 || !moesz_dtype_size(in->dtype))
    return moesz_error_set(err, MOESZ_E_ARG, "writer: bad expert matrix %s", in->tensor);
  size_t es = moesz_dtype_size(in->dtype), n = (size_t)in->rows * (size_t)in->cols, raw = n * es;
  char name[600];
  snprintf(name, sizeof name, "%s#%d.%s", in->tensor, in->expert,
           in->mat == MOESZ_MAT_GATE ? "gate" : in->mat == MOESZ_MAT_UP ? "up" : "down");
  double eb;
  moesz_msz_method method = expert_method(x, in->layer, name, &eb);
  cJSON *xo = cJSON_CreateObject();
  if (!xo) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  cJSON_AddItemToArray(x->exps, xo);
  const void *blob = in->data;
  size_t blen = raw;
  void *cblob = NULL;
  const char *mname = "raw";
  double eb_abs = 0;
  int rc = MOESZ_OK;
  if (method == MOESZ_MSZ_ZSTD) {
    size_t need = ZSTD_compressBound(raw);
    if (need > x->zcap) {
      uint8_t *nb = realloc(x->zbuf, need);
      if (!nb) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory for expert buffers");
      x->zbuf = nb;
      x->zcap = need;
    }
    size_t z = ZSTD_compress(x->zbuf, x->zcap, in->data, raw, 3);
    if (ZSTD_isError(z)) return moesz_error_set(err, MOESZ_E_INTERNAL, "zstd: %s", ZSTD_getErrorName(z));
    if (z < raw) { blob = x->zbuf; blen = z; mname = "zstd"; }
  } else if (method == MOESZ_MSZ_CODEC) {
    uint64_t verb = 0;
    double ratio = 0;
    if (!x->cx && (rc = moesz_codec_ctx_create(x->o.threads, &x->cx, err))) return rc;
    if ((rc = msz_codec_encode(x->cx, in->data, in->dtype, n, &x->o, eb, &cblob, &blen, &eb_abs, &verb, &ratio, err)))
      return rc;
    blob = cblob;
    mname = "codec";
    x->s.verbatim_values += verb;
    if (ratio > x->s.max_err_over_bound) x->s.max_err_over_bound = ratio;
  } else if (method == MOESZ_MSZ_COMPUTE) {
    uint64_t esc = 0;
    double ratio = 0;
    int half = 0;
    if ((rc = msz_cl_encode(in->data, in->dtype, in->rows, in->cols, &x->o, eb, &cblob, &blen, &eb_abs, &esc, &ratio, &half,
                            err)))
      return rc;
    x->s.compute_matrices++;
    x->s.compute_half_grid += (uint64_t)half;
    blob = cblob;
    mname = "compute";
    x->s.verbatim_values += esc;
    if (ratio > x->s.max_err_over_bound) x->s.max_err_over_bound = ratio;
  }
  rc = put_blob(&x->w, xo, name, mname, blob, blen, err);
  free(cblob);
  if (rc) return rc;
  cJSON_AddStringToObject(xo, "dtype", moesz_dtype_name(in->dtype));
  cJSON *sh = cJSON_AddArrayToObject(xo, "shape");
  cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)in->rows));
  cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)in->cols));
  cJSON_AddNumberToObject(xo, "eb", eb_abs);
  cJSON_AddNumberToObject(xo, "layer", in->layer);
  cJSON_AddNumberToObject(xo, "expert", in->expert);
  cJSON_AddNumberToObject(xo, "shared", 0);
  cJSON_AddNumberToObject(xo, "mat", in->mat);
  cJSON_AddStringToObject(xo, "tensor", in->tensor);
  cJSON_AddNumberToObject(xo, "view_off", (double)in->view_off);
  cJSON_AddNumberToObject(xo, "view_ld", (double)in->view_ld);
  cJSON_AddNumberToObject(xo, "view_t", in->view_t);
  x->s.expert_raw_bytes += raw;
  x->s.expert_stored_bytes += blen;
  moesz_progress_step(&x->prog, ++x->done);
  return progress_cb(&x->o, x->done, x->nmat, err);
}

int moesz_msz_writer_commit(moesz_msz_writer *x, moesz_msz_summary *sum, moesz_error *err) {
  char *mtxt = NULL;
  int rc = MOESZ_OK;
  if (!x->dense_done) { rc = moesz_error_set(err, MOESZ_E_ARG, "writer: no dense image"); goto out; }
  moesz_progress_end(&x->prog);
  if ((rc = msz_rules_check_hits(x->rules, err))) goto out;
  if (x->o.part) {
    cJSON *po = cJSON_AddObjectToObject(x->man, "part"), *pl = cJSON_AddArrayToObject(po, "layers");
    cJSON_AddItemToArray(pl, cJSON_CreateNumber(x->o.part_first));
    cJSON_AddItemToArray(pl, cJSON_CreateNumber(x->o.part_last));
  }
  if ((rc = w_align(&x->w, err))) goto out;
  if (x->rmj) cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(x->man, "version"), MOESZ_MSZ_VERSION_RESMOE);
  if (!(mtxt = cJSON_PrintUnformatted(x->man))) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto out; }
  uint64_t moff = x->w.pos, mlen = strlen(mtxt);
  if ((rc = w_put(&x->w, mtxt, mlen, err))) goto out;
  uint8_t hdr[MOESZ_MSZ_HEADER] = {0};
  memcpy(hdr, MOESZ_MSZ_MAGIC, 8);
  moesz_wr32le(hdr + 8, x->rmj ? MOESZ_MSZ_VERSION_RESMOE : MOESZ_MSZ_VERSION);
  moesz_wr64le(hdr + 16, moff);
  moesz_wr64le(hdr + 24, mlen);
  moesz_wr64le(hdr + 32, XXH3_64bits(mtxt, mlen));
  moesz_wr64le(hdr + 40, x->w.pos);
  if (fseek(x->w.af.f, 0, SEEK_SET) != 0 || fwrite(hdr, 1, sizeof hdr, x->w.af.f) != sizeof hdr) {
    rc = moesz_error_set(err, MOESZ_E_IO, "%s: cannot write the header", x->w.af.tmp);
    goto out;
  }
  x->s.total_bytes = x->w.pos;
  x->opened = 0;
  if ((rc = moesz_afile_commit(&x->w.af, err))) goto out;
  x->s.seconds = moesz_time_now() - x->t0;
  if (sum) *sum = x->s;
out:
  free(mtxt);
  moesz_msz_writer_abort(x);
  return rc;
}

int moesz_msz_write(const moesz_model *m, const char *path, const moesz_msz_opts *o, moesz_msz_summary *sum,
                    moesz_error *err) {
  const moesz_config *cfg = &m->cfg;
  size_t nt = moesz_st_count(m->st);
  uint8_t *is_src = calloc(nt ? nt : 1, 1);
  uint8_t *buf = NULL;
  size_t bufcap = 0;
  moesz_stw *dw = NULL;
  moesz_msz_writer *x = NULL;
  int rc = MOESZ_OK, switch_ffn = cfg->arch == MOESZ_ARCH_SWITCH;
  if (!is_src) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto fail; }
  /* never over an input file (weights, config, tokenizer) or a folder */
  if ((rc = moesz_output_check_model(path, 0, m->path, "output", err))) goto fail;

  /* which tensors hold routed experts; the layers written (a part: its range) */
  int nmat = 0;
  int first = o->part ? o->part_first : 0, last = o->part ? o->part_last : cfg->n_layers - 1, nmoe = 0;
  /* MXFP4 experts: kept as they are (lossless methods: the blocks and scales
   * go into the dense image byte for byte) or re-encoded (codec / compute:
   * records of their exact BF16 values, whose sources are the unquantized
   * tensors transformers would hold) */
  int mx_any = 0, mx_keep = o->method == MOESZ_MSZ_RAW || o->method == MOESZ_MSZ_ZSTD;
  for (int L = 0; L < cfg->n_layers; L++) mx_any |= mx_layer(m, L);
  if (mx_any && (o->resmoe || o->part)) {
    rc = moesz_error_set(err, MOESZ_E_UNSUPPORTED, "MXFP4 experts: %s not supported",
                         o->resmoe ? "ResMoE" : "part containers are");
    goto fail;
  }
  if (cfg->gate_up_interleaved && o->resmoe) {   /* its neuron alignment assumes gate/up/down rows line up */
    rc = moesz_error_set(err, MOESZ_E_UNSUPPORTED, "ResMoE: gpt-oss experts (interleaved gate/up with biases) are "
                         "not supported");
    goto fail;
  }
  for (int L = 0; L < cfg->n_layers; L++) {
    if (!cfg->is_moe[L]) continue;
    if (mx_layer(m, L)) {   /* kept: dense; re-encoded: dropped, records have virtual sources */
      nmat += mx_keep ? 0 : 3 * cfg->n_experts;
      continue;
    }
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
  if (first < 0 || last >= cfg->n_layers || first > last) {
    rc = moesz_error_set(err, MOESZ_E_ARG, "part layers %d-%d outside 0-%d", first, last, cfg->n_layers - 1);
    goto fail;
  }
  for (int L = first; L <= last; L++) nmoe += cfg->is_moe[L];
  if (o->part && !nmoe) { rc = moesz_error_set(err, MOESZ_E_ARG, "layers %d-%d hold no MoE layer", first, last); goto fail; }
  if ((rc = moesz_msz_writer_open(path, o, nmat, &x, err))) goto fail;

  /* 1. embedded files */
  for (size_t i = 0; i < sizeof EMBED_FILES / sizeof *EMBED_FILES; i++) {
    char p[4096], *txt;
    size_t len;
    if (moesz_path_join(p, sizeof p, m->path, EMBED_FILES[i])) continue;
    int r2 = moesz_file_read_all(p, 256u << 20, &txt, &len, err);
    if (r2 == MOESZ_E_NOTFOUND && i > 0) continue;
    if (r2) { rc = r2; goto fail; }
    if (i == 0 && mx_any && !mx_keep) {
      char *t2 = NULL;
      size_t l2 = 0;
      r2 = drop_quant_config(txt, len, &t2, &l2, err);
      free(txt);
      if (r2) { rc = r2; goto fail; }
      txt = t2;
      len = l2;
    }
    rc = moesz_msz_writer_file(x, EMBED_FILES[i], txt, len, err);
    free(txt);
    if (rc) goto fail;
  }

  /* 2. the expert sources, 3. dense tensors as one safetensors image */
  if ((rc = moesz_stw_create("(embedded)", &dw, err))) goto fail;
  for (size_t i = 0; i < nt; i++) {
    const moesz_tensor *t = moesz_st_at(m->st, i);
    char plain[512];
    if (mx_any && !mx_keep && m->roles[i].role == MOESZ_ROLE_EXPERT && m->roles[i].mx &&
        mx_plain_name(t, plain, sizeof plain)) {
      if (m->roles[i].mx == 2) continue;   /* one virtual source per blocks/scales pair */
      /* the tensor transformers holds: gate_up_proj [E, d, 2n] / down_proj [E, n, d], BF16 */
      int64_t E = cfg->n_experts, d = cfg->hidden, n = cfg->moe_intermediate;
      int gu = m->roles[i].mat == MOESZ_MAT_GATE_UP;
      int64_t shape[3] = {E, gu ? d : n, gu ? 2 * n : d};
      if ((rc = moesz_msz_writer_source(x, plain, MOESZ_DT_BF16, 3, shape, err))) goto fail;
      continue;
    }
    if (is_src[i]) {
      if ((rc = moesz_msz_writer_source(x, t->name, t->dtype, t->ndim, t->shape, err))) goto fail;
      continue;
    }
    if ((rc = moesz_stw_add(dw, t->name, t->dtype, t->ndim, t->shape, t->data, err))) goto fail;
  }
  if ((rc = moesz_msz_writer_dense(x, dw, err))) goto fail;

  /* 4. expert blobs (a part: those of its layers only) */
  for (int L = first; L <= last; L++) {
    if (!cfg->is_moe[L]) continue;
    if (o->resmoe && o->resmoe_layers && o->resmoe_layers[L] && !(o->layer_eb && o->layer_eb[L] < 0)) {
      double leb = o->layer_eb && o->layer_eb[L] > 0 ? o->layer_eb[L] : o->eb;
      if (!x->rmj) {
        cJSON *sec = cJSON_AddObjectToObject(x->man, "resmoe");
        cJSON_AddNumberToObject(sec, "version", 1);
        x->rmj = cJSON_AddArrayToObject(sec, "layers");
      }
      if ((rc = msz_resmoe_write_layer(m, L, leb, o, put_blob_fn, &x->w, x->exps, x->rmj, &x->s, err))) goto fail;
      moesz_progress_step(&x->prog, x->done += 3 * cfg->n_experts);
      if ((rc = progress_cb(o, x->done, x->nmat, err))) goto fail;
      continue;
    }
    int mxl = mx_layer(m, L);
    if (mxl && mx_keep) continue;   /* MXFP4 kept in the dense image */
    for (int e = 0; e < cfg->n_experts; e++)
      for (int mat = MOESZ_MAT_GATE; mat <= MOESZ_MAT_DOWN; mat++) {
        if (mat == MOESZ_MAT_UP && switch_ffn) continue;   /* Switch experts: wi (gate), wo (down) */
        if (mxl) {   /* the exact BF16 values, viewed in the virtual source as transformers lays it out */
          int64_t rows = mat == MOESZ_MAT_DOWN ? cfg->hidden : cfg->moe_intermediate;
          int64_t cols = mat == MOESZ_MAT_DOWN ? cfg->moe_intermediate : cfg->hidden;
          size_t need = (size_t)(rows * cols) * 2;
          if (need > bufcap) {
            uint8_t *nb = realloc(buf, need);
            if (!nb) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory for expert buffers"); goto fail; }
            buf = nb;
            bufcap = need;
          }
          if ((rc = mx_dequant(m, L, e, mat, (uint16_t *)(void *)buf, &rows, &cols, err))) goto fail;
          char tname[512];
          snprintf(tname, sizeof tname, "model.layers.%d.mlp.experts.%s", L,
                   mat == MOESZ_MAT_DOWN ? "down_proj" : "gate_up_proj");
          int64_t full = mat == MOESZ_MAT_DOWN ? rows : 2 * rows;   /* [E, cols, full] stored, (r, c) at c * full + r */
          moesz_msz_expert_in in = {
            .layer = L, .expert = e, .mat = (moesz_mat)mat, .tensor = tname, .dtype = MOESZ_DT_BF16, .rows = rows,
            .cols = cols, .data = buf,
            .view_off = (uint64_t)((int64_t)e * full * cols + (mat == MOESZ_MAT_UP ? rows : 0)),
            .view_ld = (uint64_t)full, .view_t = 1};
          if ((rc = moesz_msz_writer_expert(x, &in, err))) goto fail;
          continue;
        }
        moesz_matview v;
        if ((rc = moesz_model_expert(m, L, e, 0, (moesz_mat)mat, &v, err))) goto fail;
        long ti = tensor_holding(m->st, v.data);
        const moesz_tensor *t = moesz_st_at(m->st, (size_t)ti);
        size_t es = moesz_dtype_size(v.dtype), raw = (size_t)v.rows * (size_t)v.cols * es;
        if (raw > bufcap) {
          uint8_t *nb = realloc(buf, raw);
          if (!nb) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory for expert buffers"); goto fail; }
          buf = nb;
          bufcap = raw;
        }
        moesz_matview_gather(&v, buf);
        moesz_msz_expert_in in = {
          .layer = L, .expert = e, .mat = (moesz_mat)mat, .tensor = t->name, .dtype = v.dtype, .rows = v.rows,
          .cols = v.cols, .data = buf,
          .view_off = (uint64_t)(((const uint8_t *)v.data - (const uint8_t *)t->data) / (ptrdiff_t)es),
          .view_ld = (uint64_t)v.ld, .view_t = v.transposed};
        if ((rc = moesz_msz_writer_expert(x, &in, err))) goto fail;
      }
  }

  /* 5. manifest, then the header */
  rc = moesz_msz_writer_commit(x, sum, err);
  x = NULL;
fail:
  moesz_msz_writer_abort(x);
  moesz_stw_abort(dw);
  free(buf);
  free(is_src);
  return rc;
}
