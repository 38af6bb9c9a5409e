/* resmoe/transform.c - owns ResMoE as a model-to-model transform: gathers
 * each chosen MoE layer's experts as n x D rows ([gate | up | down^T]; Switch
 * [wi | wo^T]), runs the layer, writes the restored experts back in place of
 * the originals (same names, shapes, dtypes; every other tensor copied bit
 * for bit), copies the config and tokenizer files, and writes the report. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "base/util.h"
#include "moesz/resmoe.h"

static long tensor_of(const moesz_st *st, const void *p) {
  for (size_t i = 0; i < moesz_st_count(st); i++) {
    const moesz_tensor *t = moesz_st_at(st, i);
    if ((const char *)p >= (const char *)t->data && (const char *)p < (const char *)t->data + t->nbytes) return (long)i;
  }
  return -1;
}

static float view_get(const moesz_matview *v, int64_t r, int64_t c) {
  size_t idx = v->transposed ? (size_t)(c * v->ld + r) : (size_t)(r * v->ld + c);
  float f;
  moesz_to_f32(v->dtype, (const char *)v->data + idx * moesz_dtype_size(v->dtype), &f, 1);
  return f;
}

static void view_put(const moesz_matview *v, uint8_t *base, const moesz_tensor *t, int64_t r, int64_t c, float f) {
  size_t es = moesz_dtype_size(v->dtype);
  size_t off = (size_t)((const uint8_t *)v->data - (const uint8_t *)t->data) / es;
  size_t idx = off + (v->transposed ? (size_t)(c * v->ld + r) : (size_t)(r * v->ld + c));
  moesz_from_f32(v->dtype, &f, base + idx * es, 1);
}

static int copy_file(const char *from_dir, const char *to_dir, const char *name, moesz_error *err) {
  char a[4096], b[4096], *txt;
  size_t len;
  if (moesz_path_join(a, sizeof a, from_dir, name) || moesz_path_join(b, sizeof b, to_dir, name)) return MOESZ_OK;
  if (moesz_file_read_all(a, 512u << 20, &txt, &len, NULL)) return MOESZ_OK;   /* optional files */
  moesz_afile af;
  int rc = moesz_afile_open(&af, b, err);
  if (!rc) rc = moesz_afile_write(&af, txt, len, err);
  if (!rc) rc = moesz_afile_commit(&af, err);
  else moesz_afile_abort(&af);
  free(txt);
  return rc;
}

int moesz_resmoe_model(const moesz_model *m, const char *out_dir, const moesz_resmoe_opts *o, const uint8_t *layers,
                       const char *report_path, int progress, moesz_error *err) {
  const moesz_config *c = &m->cfg;
  if (c->n_experts < 2) return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "resmoe: %s has no routed experts (%s is not a MoE model)", m->path, c->arch_name);
  if (c->gate_up_interleaved)   /* gpt-oss: gate/up rows interleave, and the experts carry biases */
    return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "resmoe: %s: gpt-oss experts (interleaved gate/up with biases) "
                           "are not supported", m->path);
  int mats[3] = {MOESZ_MAT_GATE, MOESZ_MAT_UP, MOESZ_MAT_DOWN}, nm = c->arch == MOESZ_ARCH_SWITCH ? 2 : 3;
  if (nm == 2) mats[1] = MOESZ_MAT_DOWN;
  int rc = moesz_output_check_model(out_dir, 1, m->path, "output", err);
  if (!rc && report_path) rc = moesz_output_check_model(report_path, 0, m->path, "--report", err);
  if (rc) return rc;
  moesz_adir od;
  if ((rc = moesz_adir_open(&od, out_dir, o->force, err))) return rc;
  out_dir = od.tmp;
  size_t nt = moesz_st_count(m->st);
  uint8_t **buf = calloc(nt + 1, sizeof *buf);
  cJSON *rep = cJSON_CreateObject(), *jl = cJSON_AddArrayToObject(rep, "layers");
  cJSON_AddStringToObject(rep, "model", m->path);
  static const char *MN[] = {"resmoe", "prune", "svd", "mean-residual"};
  cJSON_AddStringToObject(rep, "method", MN[o->method]);
  cJSON_AddStringToObject(rep, "residual", o->residual == MOESZ_RESIDUAL_SVD ? "svd" : "prune");
  cJSON_AddNumberToObject(rep, "keep", o->keep);
  for (size_t i = 0; i < nt && !rc; i++) {
    const moesz_tensor *t = moesz_st_at(m->st, i);
    buf[i] = malloc(t->nbytes ? t->nbytes : 1);
    if (!buf[i]) rc = moesz_error_set(err, MOESZ_E_NOMEM, "resmoe: out of memory copying %s", t->name);
    else memcpy(buf[i], t->data, t->nbytes);
  }
  int nlay = 0;
  for (int L = 0; L < c->n_layers; L++) nlay += c->is_moe[L] && layers[L];
  moesz_progress pr;
  moesz_progress_begin(&pr, "resmoe", nlay, progress);
  uint64_t tot_orig = 0, tot_stored = 0;
  int done = 0;
  for (int L = 0; L < c->n_layers && !rc; L++) {
    if (!c->is_moe[L] || !layers[L]) continue;
    moesz_matview v[3];
    if ((rc = moesz_model_expert(m, L, 0, 0, MOESZ_MAT_GATE, &v[0], err))) break;
    int64_t n = v[0].rows, d = v[0].cols;
    int D = (int)(d * nm);
    int E = c->n_experts;
    float **X = calloc((size_t)E, sizeof *X);
    if (!X) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "resmoe: out of memory"); break; }
    size_t es = 0;
    for (int e = 0; e < E && !rc; e++) {
      X[e] = malloc((size_t)n * (size_t)D * sizeof **X);
      if (!X[e]) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "resmoe: out of memory"); break; }
      for (int k = 0; k < nm && !rc; k++) {
        if ((rc = moesz_model_expert(m, L, e, 0, (moesz_mat)mats[k], &v[k], err))) break;
        int down = mats[k] == MOESZ_MAT_DOWN;
        if ((down ? v[k].cols : v[k].rows) != n || (down ? v[k].rows : v[k].cols) != d) {
          rc = moesz_error_set(err, MOESZ_E_UNSUPPORTED, "resmoe: layer %d expert %d has a different shape from expert 0", L, e);
          break;
        }
        es = moesz_dtype_size(v[k].dtype);
        for (int64_t i = 0; i < n; i++)
          for (int64_t j = 0; j < d; j++)
            X[e][(size_t)i * (size_t)D + (size_t)(k * d + j)] = down ? view_get(&v[k], j, i) : view_get(&v[k], i, j);
      }
    }
    moesz_resmoe_report r;
    if (!rc) rc = moesz_resmoe_layer(X, E, (int)n, D, es, o, &r, err);
    for (int e = 0; e < E && !rc; e++)
      for (int k = 0; k < nm; k++) {
        moesz_model_expert(m, L, e, 0, (moesz_mat)mats[k], &v[k], NULL);
        long ti = tensor_of(m->st, v[k].data);
        const moesz_tensor *t = moesz_st_at(m->st, (size_t)ti);
        int down = mats[k] == MOESZ_MAT_DOWN;
        for (int64_t i = 0; i < n; i++)
          for (int64_t j = 0; j < d; j++) {
            float f = X[e][(size_t)i * (size_t)D + (size_t)(k * d + j)];
            if (down) view_put(&v[k], buf[ti], t, j, i, f);
            else view_put(&v[k], buf[ti], t, i, j, f);
          }
      }
    for (int e = 0; e < E; e++) free(X[e]);
    free(X);
    if (rc) break;
    cJSON *lo = cJSON_CreateObject();
    cJSON_AddItemToArray(jl, lo);
    cJSON_AddNumberToObject(lo, "layer", L);
    cJSON_AddNumberToObject(lo, "iterations", r.iters);
    cJSON *ob = cJSON_AddArrayToObject(lo, "objective");
    for (int i = 0; i < r.iters; i++) cJSON_AddItemToArray(ob, cJSON_CreateNumber(r.objective[i]));
    cJSON *re = cJSON_AddArrayToObject(lo, "rel_frobenius_error");
    double mean = 0;
    for (int e = 0; e < E; e++) { cJSON_AddItemToArray(re, cJSON_CreateNumber(r.rel_err[e])); mean += r.rel_err[e] / E; }
    cJSON_AddNumberToObject(lo, "mean_rel_error", mean);
    cJSON_AddNumberToObject(lo, "original_params", (double)r.original_params);
    cJSON_AddNumberToObject(lo, "stored_params", (double)r.stored_params);
    cJSON_AddNumberToObject(lo, "original_bytes", (double)r.original_bytes);
    cJSON_AddNumberToObject(lo, "stored_bytes", (double)r.stored_bytes);
    cJSON_AddNumberToObject(lo, "seconds", r.seconds);
    cJSON_AddNumberToObject(lo, "lap_seconds", r.lap_seconds);
    tot_orig += r.original_bytes;
    tot_stored += r.stored_bytes;
    free(r.rel_err);
    moesz_progress_step(&pr, ++done);
  }
  moesz_progress_end(&pr);
  cJSON_AddNumberToObject(rep, "original_bytes", (double)tot_orig);
  cJSON_AddNumberToObject(rep, "stored_bytes", (double)tot_stored);
  /* write the model */
  char p[4096];
  if (!rc && moesz_path_join(p, sizeof p, out_dir, "model.safetensors")) rc = moesz_error_set(err, MOESZ_E_ARG, "path too long");
  if (!rc) {
    moesz_stw *w;
    rc = moesz_stw_create(p, &w, err);
    for (size_t i = 0; i < nt && !rc; i++) {
      const moesz_tensor *t = moesz_st_at(m->st, i);
      rc = moesz_stw_add(w, t->name, t->dtype, t->ndim, t->shape, buf[i], err);
    }
    if (!rc) rc = moesz_stw_meta(w, "format", "pt", err);
    if (!rc) rc = moesz_stw_commit(w, err);
    else moesz_stw_abort(w);
  }
  static const char *FILES[] = {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json"};
  for (size_t i = 0; !rc && i < sizeof FILES / sizeof *FILES; i++) rc = copy_file(m->path, out_dir, FILES[i], err);
  if (!rc) rc = moesz_adir_commit(&od, err);
  else moesz_adir_abort(&od);
  if (!rc && report_path) {
    char *txt = cJSON_Print(rep);
    moesz_afile af;
    rc = txt ? moesz_afile_open(&af, report_path, err) : moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
    if (!rc) rc = moesz_afile_write(&af, txt, strlen(txt), err);
    if (!rc) rc = moesz_afile_commit(&af, err);
    free(txt);
  }
  for (size_t i = 0; i < nt; i++) free(buf[i]);
  free(buf);
  cJSON_Delete(rep);
  return rc;
}
