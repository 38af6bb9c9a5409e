/* eval/sweep.c - owns the layer-sensitivity sweep: layer groups from a spec,
 * the perturbing expert provider (a group's routed expert matrices replaced
 * by F32 copies with Gaussian or uniform noise or the codec's round trip,
 * every other expert served from the model's mapping), the cell loop scored
 * with moesz_eval_ppl against the unperturbed model (and, with task files,
 * moesz_eval_task on both), and results.csv / tasks.csv: read back to skip
 * cells already done, rewritten atomically after each cell.
 * docs/EVAL.md "Sweep". */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "base/util.h"
#include "moesz/codec.h"
#include "moesz/eval.h"

static const char *ERR_NAMES[] = {"codec", "gaussian", "uniform"};
static const char *MODE_NAMES[] = {"abs", "rel", "std"};
static const char *CSV_HEADER = "group,first,last,error,eb_mode,eb,seed,tokens,kl,top1,ppl,ref_ppl,raw_bytes,"
                                "stored_bytes,ratio,seconds";

const char *moesz_sweep_err_name(moesz_sweep_err e) { return (unsigned)e < 3 ? ERR_NAMES[e] : "?"; }

int moesz_sweep_err_parse(const char *s, moesz_sweep_err *out) {
  for (int i = 0; i < 3; i++)
    if (!strcmp(s, ERR_NAMES[i])) { *out = (moesz_sweep_err)i; return 0; }
  return -1;
}

/* ------------------------------------------------------------- groups */

static int name_ok(const char *s) {
  if (!*s || strlen(s) >= 48) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
          *s == '-' || *s == '.'))
      return 0;
  return 1;
}

/* "A-B", "A" or "A-" within [0, nl). */
static int parse_range(const char *s, int nl, int *a, int *b) {
  char *end;
  errno = 0;
  long x = strtol(s, &end, 10), y = x;
  if (end == s || errno) return -1;
  if (*end == '-') {
    const char *t = end + 1;
    if (!*t) y = nl - 1;
    else {
      y = strtol(t, &end, 10);
      if (end == t || *end) return -1;
    }
  } else if (*end) return -1;
  if (x < 0 || y >= nl || x > y) return -1;
  *a = (int)x;
  *b = (int)y;
  return 0;
}

static int has_moe(const moesz_config *cfg, int a, int b) {
  for (int L = a; L <= b; L++)
    if (cfg->is_moe[L]) return 1;
  return 0;
}

int moesz_sweep_groups(const moesz_config *cfg, const char *spec, int per_layer, moesz_sweep_group **out, int *n,
                       moesz_error *err) {
  *out = NULL;
  *n = 0;
  int nl = cfg->n_layers, cap = 8 + nl, k = 0;
  moesz_sweep_group *g = calloc((size_t)cap, sizeof *g);
  char *dup = spec ? strdup(spec) : NULL;
  int rc = MOESZ_OK;
  if (!g || (spec && !dup)) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto done; }
  if (spec && !strcmp(spec, "auto")) {
    int a = nl / 3, b = 2 * nl / 3;
    const char *nm[] = {"shallow", "middle", "deep", "all"};
    int lo[] = {0, a, b, 0}, hi[] = {a - 1, b - 1, nl - 1, nl - 1};
    for (int i = 0; i < 4; i++) {
      if (lo[i] > hi[i] || !has_moe(cfg, lo[i], hi[i])) continue;   /* fewer than 3 layers, or no MoE layer */
      snprintf(g[k].name, sizeof g[k].name, "%s", nm[i]);
      g[k].first = lo[i];
      g[k++].last = hi[i];
    }
  } else if (spec) {
    char *rest = dup;
    for (char *tok; (tok = strsep(&rest, ","));) {
      if (k >= cap - nl) { rc = moesz_error_set(err, MOESZ_E_ARG, "--groups: at most %d groups", cap - nl); goto done; }
      char *eq = strchr(tok, '='), *range = eq ? eq + 1 : tok;
      if (eq) *eq = 0;
      if (parse_range(range, nl, &g[k].first, &g[k].last)) {
        rc = moesz_error_set(err, MOESZ_E_ARG, "--groups: bad layer range '%s' (A-B, A or A- within 0-%d)", range, nl - 1);
        goto done;
      }
      snprintf(g[k].name, sizeof g[k].name, "%s", eq ? tok : range);
      if (!name_ok(g[k].name)) { rc = moesz_error_set(err, MOESZ_E_ARG, "--groups: bad group name '%s' (letters, digits, _ - .)", tok); goto done; }
      if (!has_moe(cfg, g[k].first, g[k].last)) { rc = moesz_error_set(err, MOESZ_E_ARG, "--groups: %s holds no MoE layer", g[k].name); goto done; }
      k++;
    }
  }
  if (per_layer)
    for (int L = 0; L < nl; L++) {
      if (!cfg->is_moe[L]) continue;
      snprintf(g[k].name, sizeof g[k].name, "L%d", L);
      g[k].first = g[k].last = L;
      k++;
    }
  for (int i = 0; i < k && !rc; i++)
    for (int j = 0; j < i; j++)
      if (!strcmp(g[i].name, g[j].name)) { rc = moesz_error_set(err, MOESZ_E_ARG, "--groups: group %s given twice", g[i].name); break; }
  if (!rc && !k) rc = moesz_error_set(err, MOESZ_E_ARG, "no layer group (the model has no MoE layer?)");
done:
  free(dup);
  if (rc) { free(g); return rc; }
  *out = g;
  *n = k;
  return MOESZ_OK;
}

/* ------------------------------------------------------- perturbation */

/* splitmix64: a counter-based stream, so each matrix's noise depends only on
 * (seed, layer, expert, matrix) and not on the order cells run in. */
static uint64_t mix64(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double unif01(uint64_t *s) { return ((double)(mix64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

typedef struct sweep_state {
  const moesz_model *m;
  moesz_expert_provider base;        /* the model's mmap provider */
  int first, last;                   /* the current group's layers */
  int n_experts;
  float **w;                         /* [n_layers][n_experts][3] perturbed [rows, cols] F32 or NULL */
  int64_t (*shape)[2];               /* [same] rows, cols */
} sweep_state;

static size_t slot(const sweep_state *s, int L, int e, int mat) {
  return ((size_t)L * (size_t)s->n_experts + (size_t)e) * 3 + (size_t)(mat - 1);
}

static int pert_get(void *ctx, int layer, int expert, int shared, moesz_expert_mats *o, moesz_error *err) {
  sweep_state *s = ctx;
  if (shared || layer < s->first || layer > s->last || !s->m->cfg.is_moe[layer] || !s->w[slot(s, layer, expert, 1)])
    return s->base.get(s->base.ctx, layer, expert, shared, o, err);
  moesz_matview *v[3] = {&o->gate, &o->up, &o->down};
  for (int mat = 1; mat <= 3; mat++) {
    size_t i = slot(s, layer, expert, mat);
    *v[mat - 1] = (moesz_matview){.data = s->w[i], .dtype = MOESZ_DT_F32, .rows = s->shape[i][0],
                                  .cols = s->shape[i][1], .ld = s->shape[i][1], .transposed = 0};
  }
  return MOESZ_OK;
}
static void pert_release(void *ctx, int layer, int expert, int shared) {
  (void)ctx; (void)layer; (void)expert; (void)shared;
}

static void drop_weights(sweep_state *s) {
  size_t n = (size_t)s->m->cfg.n_layers * (size_t)s->n_experts * 3;
  for (size_t i = 0; i < n; i++) { free(s->w[i]); s->w[i] = NULL; }
}

/* The bound's scale for a matrix: 1 (abs), max - min (rel), std (std) of its finite values. */
static double eb_scale(const float *x, size_t n, int mode) {
  if (mode == MOESZ_EB_ABS) return 1;
  double lo = INFINITY, hi = -INFINITY, sum = 0, sq = 0;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(x[i])) continue;
    double v = x[i];
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
    sum += v;
    k++;
  }
  if (!k) return 0;
  if (mode == MOESZ_EB_REL) return hi - lo;
  double mean = sum / (double)k;
  for (size_t i = 0; i < n; i++)
    if (isfinite(x[i])) sq += ((double)x[i] - mean) * ((double)x[i] - mean);
  return sqrt(sq / (double)k);
}

/* Fills s->w for the cell's group; raw / stored bytes of the group's matrices. */
static int perturb(sweep_state *s, const moesz_sweep_group *g, moesz_sweep_err kind, int mode, double eb, int seed,
                   int threads, uint64_t *raw_bytes, uint64_t *stored_bytes, moesz_error *err) {
  const moesz_config *cfg = &s->m->cfg;
  uint8_t *buf = NULL;
  size_t cap = 0;
  int rc = MOESZ_OK;
  *raw_bytes = *stored_bytes = 0;
  s->first = g->first;
  s->last = g->last;
  for (int L = g->first; L <= g->last && !rc; L++) {
    if (!cfg->is_moe[L]) continue;
    for (int e = 0; e < cfg->n_experts && !rc; e++)
      for (int mat = MOESZ_MAT_GATE; mat <= MOESZ_MAT_DOWN && !rc; mat++) {
        moesz_matview v;
        if ((rc = moesz_model_expert(s->m, L, e, 0, (moesz_mat)mat, &v, err))) break;
        size_t n = (size_t)v.rows * (size_t)v.cols, es = moesz_dtype_size(v.dtype);
        if (n * es > cap) {
          uint8_t *nb = realloc(buf, n * es);
          if (!nb) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "sweep: out of memory"); break; }
          buf = nb;
          cap = n * es;
        }
        size_t i = slot(s, L, e, mat);
        float *w = s->w[i] = malloc(n * sizeof *w);
        if (!w) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "sweep: out of memory"); break; }
        s->shape[i][0] = v.rows;
        s->shape[i][1] = v.cols;
        moesz_matview_gather(&v, buf);
        *raw_bytes += n * es;
        if (kind == MOESZ_SWEEP_CODEC) {
          /* what a container serves: the codec stream decoded to the original dtype */
          moesz_codec_params p = {.mode = (moesz_eb_mode)mode, .eb = eb, .pipeline = MOESZ_PIPE_ENTROPY,
                                  .out_dtype = MOESZ_DT_COUNT, .threads = threads, .chunk = 0};
          void *z = NULL;
          size_t zlen = 0;
          moesz_codec_info info;
          rc = moesz_codec_compress(buf, v.dtype, n, &p, &z, &zlen, &info, err);
          if (!rc) rc = moesz_codec_decompress(z, zlen, v.dtype, buf, n, threads, err);
          free(z);
          if (rc) break;
          *stored_bytes += zlen;
          if (moesz_to_f32(v.dtype, buf, w, n)) { rc = moesz_error_set(err, MOESZ_E_UNSUPPORTED, "sweep: dtype %s", moesz_dtype_name(v.dtype)); break; }
        } else {
          if (moesz_to_f32(v.dtype, buf, w, n)) { rc = moesz_error_set(err, MOESZ_E_UNSUPPORTED, "sweep: dtype %s", moesz_dtype_name(v.dtype)); break; }
          double a = eb * eb_scale(w, n, mode);
          uint64_t st = ((uint64_t)(unsigned)seed << 40) ^ ((uint64_t)(unsigned)L << 24) ^ ((uint64_t)(unsigned)e << 2) ^ (uint64_t)mat;
          mix64(&st);
          if (kind == MOESZ_SWEEP_GAUSSIAN) {
            for (size_t j = 0; j < n; j += 2) {   /* Box-Muller: two normals per pair of uniforms */
              double u1 = unif01(&st), u2 = unif01(&st), r = sqrt(-2 * log(u1));
              w[j] = (float)(w[j] + a * r * cos(2 * M_PI * u2));
              if (j + 1 < n) w[j + 1] = (float)(w[j + 1] + a * r * sin(2 * M_PI * u2));
            }
          } else {
            for (size_t j = 0; j < n; j++) w[j] = (float)(w[j] + a * (2 * unif01(&st) - 1));
          }
        }
      }
  }
  free(buf);
  if (rc) drop_weights(s);
  return rc;
}

/* ------------------------------------------------------------ results.csv */

static void row_key(const moesz_sweep_row *r, char *out, size_t cap) {
  snprintf(out, cap, "%s|%d|%d|%s|%s|%.9g|%d|%zu", r->group, r->first, r->last, moesz_sweep_err_name(r->err),
           MODE_NAMES[r->eb_mode], r->eb, r->seed, r->tokens);
}

static void row_csv(moesz_buf *b, const moesz_sweep_row *r) {
  char line[1024];
  double ratio = r->stored_bytes ? (double)r->raw_bytes / (double)r->stored_bytes : 0;
  int k = snprintf(line, sizeof line, "%s,%d,%d,%s,%s,%.9g,%d,%zu,%.9g,%.9g,%.9g,%.9g,%llu,%llu,%.6f,%.3f\n", r->group,
                   r->first, r->last, moesz_sweep_err_name(r->err), MODE_NAMES[r->eb_mode], r->eb, r->seed, r->tokens,
                   r->kl, r->top1, r->ppl, r->ref_ppl, (unsigned long long)r->raw_bytes,
                   (unsigned long long)r->stored_bytes, ratio, r->seconds);
  moesz_buf_put(b, line, (size_t)k);
}

/* Parses results.csv (text) into rows; a header other than ours or a malformed line is an error. */
static int csv_parse(char *txt, const char *path, moesz_sweep_row **rows, size_t *n, moesz_error *err) {
  size_t cap = 16, k = 0, lineno = 1;
  *rows = NULL;
  *n = 0;
  moesz_sweep_row *r = malloc(cap * sizeof *r);
  if (!r) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  char *rest = txt, *line = strsep(&rest, "\n");
  if (!line || strcmp(line, CSV_HEADER)) {
    free(r);
    return moesz_error_set(err, MOESZ_E_FORMAT, "%s: not a sweep results file (its header is not '%s'); move it "
                           "away or choose another -o", path, CSV_HEADER);
  }
  while ((line = strsep(&rest, "\n"))) {
    lineno++;
    if (!*line) continue;
    if (k == cap) {
      moesz_sweep_row *nr = realloc(r, 2 * cap * sizeof *r);
      if (!nr) { free(r); return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); }
      r = nr;
      cap *= 2;
    }
    moesz_sweep_row *x = &r[k];
    memset(x, 0, sizeof *x);
    char *f[16], *p = line;
    int nf = 0;
    for (char *t; nf < 16 && (t = strsep(&p, ","));) f[nf++] = t;
    int ok = nf == 16 && !p && name_ok(f[0]) && !moesz_sweep_err_parse(f[3], &x->err);
    if (ok) {
      snprintf(x->group, sizeof x->group, "%s", f[0]);
      x->eb_mode = -1;
      for (int i = 0; i < 3; i++)
        if (!strcmp(f[4], MODE_NAMES[i])) x->eb_mode = i;
      char *end;
      unsigned long long rb, sb;
      x->first = (int)strtol(f[1], &end, 10); ok &= !*end && end != f[1];
      x->last = (int)strtol(f[2], &end, 10); ok &= !*end && end != f[2];
      x->eb = strtod(f[5], &end); ok &= !*end && end != f[5];
      x->seed = (int)strtol(f[6], &end, 10); ok &= !*end && end != f[6];
      x->tokens = (size_t)strtoull(f[7], &end, 10); ok &= !*end && end != f[7];
      x->kl = strtod(f[8], &end); ok &= !*end && end != f[8];
      x->top1 = strtod(f[9], &end); ok &= !*end && end != f[9];
      x->ppl = strtod(f[10], &end); ok &= !*end && end != f[10];
      x->ref_ppl = strtod(f[11], &end); ok &= !*end && end != f[11];
      rb = strtoull(f[12], &end, 10); ok &= !*end && end != f[12];
      sb = strtoull(f[13], &end, 10); ok &= !*end && end != f[13];
      x->seconds = strtod(f[15], &end); ok &= !*end && end != f[15];
      x->raw_bytes = rb;
      x->stored_bytes = sb;
      ok &= x->eb_mode >= 0 && x->first >= 0 && x->first <= x->last && x->eb > 0 && x->seed >= 0;
    }
    if (!ok) {
      free(r);
      return moesz_error_set(err, MOESZ_E_FORMAT, "%s line %zu: not a sweep result row", path, lineno);
    }
    k++;
  }
  *rows = r;
  *n = k;
  return MOESZ_OK;
}

int moesz_sweep_csv_parse(const char *text, size_t len, moesz_sweep_row **rows, size_t *n, moesz_error *err) {
  *rows = NULL;
  *n = 0;
  if (memchr(text, 0, len)) return moesz_error_set(err, MOESZ_E_FORMAT, "results.csv: holds a NUL byte");
  char *t = malloc(len + 1);
  if (!t) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  memcpy(t, text, len);
  t[len] = 0;
  int rc = csv_parse(t, "results.csv", rows, n, err);
  free(t);
  return rc;
}

static int csv_write(const char *dir, const moesz_sweep_row *rows, size_t n, moesz_error *err) {
  char path[4096];
  int rc = moesz_path_join(path, sizeof path, dir, "results.csv");
  if (rc) return moesz_error_set(err, rc, "output folder name too long");
  moesz_buf b = {0};
  moesz_buf_put(&b, CSV_HEADER, strlen(CSV_HEADER));
  moesz_buf_put(&b, "\n", 1);
  for (size_t i = 0; i < n; i++) row_csv(&b, &rows[i]);
  moesz_afile af;
  if (b.oom) rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  else if (!(rc = moesz_afile_open(&af, path, err))) {
    rc = moesz_afile_write(&af, b.p, b.n, err);
    if (rc) moesz_afile_abort(&af);
    else rc = moesz_afile_commit(&af, err);
  }
  free(b.p);
  return rc;
}

/* ------------------------------------------------------------- tasks.csv */

static const char *TASK_HEADER = "group,first,last,error,eb_mode,eb,seed,tokens,task,items,acc,acc_norm,ref_acc,"
                                 "ref_acc_norm";

/* "name" of ".../name.jsonl" into out (letters, digits, _ - . only); -1 if it is not such a name. */
static int task_name(const char *path, char *out, size_t cap) {
  const char *b = strrchr(path, '/');
  b = b ? b + 1 : path;
  size_t n = strlen(b);
  if (n > 6 && !strcmp(b + n - 6, ".jsonl")) n -= 6;
  if (!n || n >= cap || n >= 64) return -1;
  memcpy(out, b, n);
  out[n] = 0;
  return name_ok(out) ? 0 : -1;
}

static void task_key(const moesz_sweep_task_row *r, char *out, size_t cap) {
  snprintf(out, cap, "%s|%d|%d|%s|%s|%.9g|%d|%zu|%s|%zu", r->group, r->first, r->last, moesz_sweep_err_name(r->err),
           MODE_NAMES[r->eb_mode], r->eb, r->seed, r->tokens, r->task, r->items);
}

static int task_csv_parse(char *txt, const char *path, moesz_sweep_task_row **rows, size_t *n, moesz_error *err) {
  size_t cap = 16, k = 0, lineno = 1;
  *rows = NULL;
  *n = 0;
  moesz_sweep_task_row *r = malloc(cap * sizeof *r);
  if (!r) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  char *rest = txt, *line = strsep(&rest, "\n");
  if (!line || strcmp(line, TASK_HEADER)) {
    free(r);
    return moesz_error_set(err, MOESZ_E_FORMAT, "%s: not a sweep tasks file (its header is not '%s'); move it "
                           "away or choose another -o", path, TASK_HEADER);
  }
  while ((line = strsep(&rest, "\n"))) {
    lineno++;
    if (!*line) continue;
    if (k == cap) {
      moesz_sweep_task_row *nr = realloc(r, 2 * cap * sizeof *r);
      if (!nr) { free(r); return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); }
      r = nr;
      cap *= 2;
    }
    moesz_sweep_task_row *x = &r[k];
    memset(x, 0, sizeof *x);
    char *f[14], *p = line;
    int nf = 0;
    for (char *t; nf < 14 && (t = strsep(&p, ","));) f[nf++] = t;
    int ok = nf == 14 && !p && name_ok(f[0]) && !moesz_sweep_err_parse(f[3], &x->err) && name_ok(f[8]) &&
             strlen(f[8]) < sizeof x->task;
    if (ok) {
      snprintf(x->group, sizeof x->group, "%s", f[0]);
      snprintf(x->task, sizeof x->task, "%s", f[8]);
      x->eb_mode = -1;
      for (int i = 0; i < 3; i++)
        if (!strcmp(f[4], MODE_NAMES[i])) x->eb_mode = i;
      char *end;
      double *d[] = {&x->acc, &x->acc_norm, &x->ref_acc, &x->ref_acc_norm};
      x->first = (int)strtol(f[1], &end, 10); ok &= !*end && end != f[1];
      x->last = (int)strtol(f[2], &end, 10); ok &= !*end && end != f[2];
      x->eb = strtod(f[5], &end); ok &= !*end && end != f[5];
      x->seed = (int)strtol(f[6], &end, 10); ok &= !*end && end != f[6];
      x->tokens = (size_t)strtoull(f[7], &end, 10); ok &= !*end && end != f[7];
      x->items = (size_t)strtoull(f[9], &end, 10); ok &= !*end && end != f[9];
      for (int i = 0; i < 4; i++) {
        *d[i] = strtod(f[10 + i], &end);
        ok &= !*end && end != f[10 + i] && *d[i] >= 0 && *d[i] <= 1;
      }
      ok &= x->eb_mode >= 0 && x->first >= 0 && x->first <= x->last && x->eb > 0 && x->seed >= 0 && x->items > 0;
    }
    if (!ok) {
      free(r);
      return moesz_error_set(err, MOESZ_E_FORMAT, "%s line %zu: not a sweep task row", path, lineno);
    }
    k++;
  }
  *rows = r;
  *n = k;
  return MOESZ_OK;
}

int moesz_sweep_tasks_csv_parse(const char *text, size_t len, moesz_sweep_task_row **rows, size_t *n,
                                moesz_error *err) {
  *rows = NULL;
  *n = 0;
  if (memchr(text, 0, len)) return moesz_error_set(err, MOESZ_E_FORMAT, "tasks.csv: holds a NUL byte");
  char *t = malloc(len + 1);
  if (!t) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  memcpy(t, text, len);
  t[len] = 0;
  int rc = task_csv_parse(t, "tasks.csv", rows, n, err);
  free(t);
  return rc;
}

static int put_atomic(const char *dir, const char *name, const moesz_buf *b, moesz_error *err) {
  char path[4096];
  int rc = moesz_path_join(path, sizeof path, dir, name);
  if (rc) return moesz_error_set(err, rc, "output folder name too long");
  if (b->oom) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  moesz_afile af;
  if ((rc = moesz_afile_open(&af, path, err))) return rc;
  if ((rc = moesz_afile_write(&af, b->p, b->n, err))) { moesz_afile_abort(&af); return rc; }
  return moesz_afile_commit(&af, err);
}

/* tasks.csv, and tasks.md: one line per row, the unperturbed accuracy beside. */
static int task_write(const char *dir, const moesz_sweep_task_row *rows, size_t n, moesz_error *err) {
  moesz_buf b = {0}, m = {0};
  char line[1024];
  moesz_buf_put(&b, TASK_HEADER, strlen(TASK_HEADER));
  moesz_buf_put(&b, "\n", 1);
  const char *hd = "# Task accuracy per sweep cell\n\nOnly the group's routed experts are perturbed; accuracy as "
                   "lm-evaluation-harness scores it (docs/EVAL.md \"Tasks\"), the unperturbed model's on the same "
                   "items in brackets.\n\n| group | layers | error | eb | seed | task | items | acc | acc_norm |\n"
                   "|---|---|---|---|---|---|---|---|---|\n";
  moesz_buf_put(&m, hd, strlen(hd));
  for (size_t i = 0; i < n; i++) {
    const moesz_sweep_task_row *r = &rows[i];
    int k = snprintf(line, sizeof line, "%s,%d,%d,%s,%s,%.9g,%d,%zu,%s,%zu,%.9g,%.9g,%.9g,%.9g\n", r->group, r->first,
                     r->last, moesz_sweep_err_name(r->err), MODE_NAMES[r->eb_mode], r->eb, r->seed, r->tokens, r->task,
                     r->items, r->acc, r->acc_norm, r->ref_acc, r->ref_acc_norm);
    moesz_buf_put(&b, line, (size_t)k);
    k = snprintf(line, sizeof line, "| %s | %d-%d | %s | %g (%s) | %d | %s | %zu | %.4f (%.4f) | %.4f (%.4f) |\n",
                 r->group, r->first, r->last, moesz_sweep_err_name(r->err), r->eb, MODE_NAMES[r->eb_mode], r->seed,
                 r->task, r->items, r->acc, r->ref_acc, r->acc_norm, r->ref_acc_norm);
    moesz_buf_put(&m, line, (size_t)k);
  }
  int rc = put_atomic(dir, "tasks.csv", &b, err);
  if (!rc) rc = put_atomic(dir, "tasks.md", &m, err);
  free(b.p);
  free(m.p);
  return rc;
}

/* ------------------------------------------------------------ the sweep */

int moesz_sweep_run(moesz_model *m, const int32_t *ids, size_t n, const moesz_sweep_opts *o, const char *dir,
                    moesz_sweep_summary *sum, moesz_error *err) {
  moesz_sweep_summary S = {0};
  const moesz_config *cfg = &m->cfg;
  if (!o->n_groups || !o->n_ebs || !o->n_errs || o->seeds < 1 || o->eb_mode < 0 || o->eb_mode > 2)
    return moesz_error_set(err, MOESZ_E_ARG, "sweep: need groups, bounds, error kinds and seeds >= 1");
  for (int i = 0; i < o->n_ebs; i++)
    if (!(o->ebs[i] > 0) || !isfinite(o->ebs[i])) return moesz_error_set(err, MOESZ_E_ARG, "sweep: bound %g is not > 0", o->ebs[i]);
  for (int i = 0; i < o->n_groups; i++)
    if (!name_ok(o->groups[i].name) || o->groups[i].first < 0 || o->groups[i].last >= cfg->n_layers ||
        o->groups[i].first > o->groups[i].last)
      return moesz_error_set(err, MOESZ_E_ARG, "sweep: bad group %d", i);
  if (o->n_tasks < 0 || o->n_tasks > 16 || (o->n_tasks > 0 && (!o->tasks || !o->tok)))
    return moesz_error_set(err, MOESZ_E_ARG, "sweep: at most 16 tasks, with their files and the tokenizer");
  char (*tnames)[64] = NULL;
  if (o->n_tasks) {
    if (!(tnames = calloc((size_t)o->n_tasks, sizeof *tnames))) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
    for (int i = 0; i < o->n_tasks; i++) {
      int bad = task_name(o->tasks[i], tnames[i], sizeof tnames[i]);
      for (int j = 0; j < i && !bad; j++) bad = !strcmp(tnames[i], tnames[j]) ? 2 : 0;
      if (bad) {
        free(tnames);
        return moesz_error_set(err, MOESZ_E_ARG, bad == 2 ? "sweep: task %s given twice" :
                               "sweep: task file name '%s' (the name, less .jsonl, must be letters, digits, _ - .)",
                               o->tasks[i]);
      }
    }
  }
  moesz_task_result *tref = NULL;
  moesz_sweep_task_row *trows = NULL;
  size_t ntrows = 0;
  if (mkdir(dir, 0777) && errno != EEXIST) { free(tnames); return moesz_error_set(err, MOESZ_E_IO, "%s: %s", dir, strerror(errno)); }
  if (!moesz_path_is_dir(dir)) { free(tnames); return moesz_error_set(err, MOESZ_E_ARG, "%s is not a folder", dir); }
  if (moesz_output_check_model(dir, 1, m->path, "output folder", err)) { free(tnames); return MOESZ_E_ARG; }

  /* scored tokens (part of a cell's key) */
  size_t nw = moesz_ppl_windows(n, o->ctx, o->stride, NULL, 0), tokens = 0;
  moesz_window *win = malloc((nw + 1) * sizeof *win);
  if (!win) { free(tnames); return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); }
  moesz_ppl_windows(n, o->ctx, o->stride, win, nw);
  for (size_t k = 0; k < nw; k++) tokens += win[k].end - win[k].score_from;
  free(win);

  /* rows already done */
  char path[4096], *txt = NULL;
  size_t len, nrows = 0, cap;
  moesz_sweep_row *rows = NULL;
  int rc = moesz_path_join(path, sizeof path, dir, "results.csv");
  if (rc) { free(tnames); return moesz_error_set(err, rc, "output folder name too long"); }
  rc = moesz_file_read_all(path, 1u << 28, &txt, &len, err);
  if (rc == MOESZ_E_NOTFOUND) rc = MOESZ_OK;
  else if (!rc && memchr(txt, 0, len)) rc = moesz_error_set(err, MOESZ_E_FORMAT, "%s: holds a NUL byte", path);
  else if (!rc) rc = csv_parse(txt, path, &rows, &nrows, err);
  free(txt);
  txt = NULL;
  if (!rc && o->n_tasks) {
    if ((rc = moesz_path_join(path, sizeof path, dir, "tasks.csv"))) rc = moesz_error_set(err, rc, "output folder name too long");
    else if ((rc = moesz_file_read_all(path, 1u << 28, &txt, &len, err)) == MOESZ_E_NOTFOUND) rc = MOESZ_OK;
    else if (!rc && memchr(txt, 0, len)) rc = moesz_error_set(err, MOESZ_E_FORMAT, "%s: holds a NUL byte", path);
    else if (!rc) rc = task_csv_parse(txt, path, &trows, &ntrows, err);
    free(txt);
  }
  if (rc) { free(rows); free(tnames); return rc; }
  int ncell = 0;
  for (int e = 0; e < o->n_errs; e++) ncell += o->n_groups * o->n_ebs * (o->errs[e] == MOESZ_SWEEP_CODEC ? 1 : o->seeds);
  cap = nrows + (size_t)ncell + 1;
  moesz_sweep_row *nr = realloc(rows, cap * sizeof *rows);
  if (!nr) { free(rows); free(trows); free(tnames); return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); }
  rows = nr;
  size_t tcap = ntrows + (size_t)ncell * (size_t)o->n_tasks + 1;
  moesz_sweep_task_row *ntr = realloc(trows, tcap * sizeof *trows);
  tref = calloc((size_t)o->n_tasks + 1, sizeof *tref);
  if (!ntr || !tref) { free(ntr ? ntr : trows); free(rows); free(tref); free(tnames); return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); }
  trows = ntr;

  sweep_state st = {.m = m, .n_experts = cfg->n_experts > 0 ? cfg->n_experts : 1, .first = 1, .last = 0};
  size_t nslot = (size_t)cfg->n_layers * (size_t)st.n_experts * 3;
  st.w = calloc(nslot, sizeof *st.w);
  st.shape = calloc(nslot, sizeof *st.shape);
  moesz_engine *ref = NULL, *pe = NULL;
  moesz_engine_opts eo = {.threads = o->threads, .max_ctx = (int)o->ctx};
  if (!st.w || !st.shape) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto done; }
  moesz_expert_provider_mmap(m, &st.base, NULL);
  moesz_expert_provider prov = {.ctx = &st, .get = pert_get, .release = pert_release};
  if ((rc = moesz_engine_open_model(m, 0, NULL, 0, &eo, &ref, err))) goto done;
  if ((rc = moesz_engine_open_model(m, 0, &prov, 0, &eo, &pe, err))) goto done;
  /* the unperturbed model's accuracy: the baseline of every task row (and its item count, part of the key) */
  for (int ti = 0; ti < o->n_tasks && !rc; ti++)
    if ((rc = moesz_eval_task(ref, o->tok, o->tasks[ti], o->task_limit, MOESZ_BOS_AUTO, 0, &tref[ti], err)))
      moesz_error_wrap(err, rc, "sweep: task %s on the original model", o->tasks[ti]);
  if (rc) goto done;

  /* count what is left, for the progress line's ETA */
  int left = 0;
  char key[256], k2[256];
  for (int pass = 0; pass < 2 && !rc; pass++) {
    moesz_progress pr;
    memset(&pr, 0, sizeof pr);
    if (pass) moesz_progress_begin(&pr, "sweep", left > 0 ? left : 1, o->progress);
    int done_cells = 0;
    for (int gi = 0; gi < o->n_groups && !rc; gi++)
      for (int ei = 0; ei < o->n_errs && !rc; ei++)
        for (int bi = 0; bi < o->n_ebs && !rc; bi++)
          for (int seed = 0; seed < (o->errs[ei] == MOESZ_SWEEP_CODEC ? 1 : o->seeds) && !rc; seed++) {
            moesz_sweep_row r;
            memset(&r, 0, sizeof r);
            snprintf(r.group, sizeof r.group, "%s", o->groups[gi].name);
            r.first = o->groups[gi].first;
            r.last = o->groups[gi].last;
            r.err = o->errs[ei];
            r.eb_mode = o->eb_mode;
            r.eb = o->ebs[bi];
            r.seed = seed;
            r.tokens = tokens;
            row_key(&r, key, sizeof key);
            int have = 0, need_task = 0;
            for (size_t i = 0; i < nrows && !have; i++) {
              row_key(&rows[i], k2, sizeof k2);
              have = !strcmp(key, k2);
            }
            /* the cell's task rows: tr[ti] filled as the row it should be, missing[ti] if not in tasks.csv */
            moesz_sweep_task_row tr[16];
            int missing[16];
            for (int ti = 0; ti < o->n_tasks && ti < 16; ti++) {
              moesz_sweep_task_row *x = &tr[ti];
              memset(x, 0, sizeof *x);
              memcpy(x->group, r.group, sizeof x->group);
              x->first = r.first; x->last = r.last; x->err = r.err; x->eb_mode = r.eb_mode; x->eb = r.eb;
              x->seed = seed; x->tokens = tokens; x->items = tref[ti].n;
              snprintf(x->task, sizeof x->task, "%s", tnames[ti]);
              x->ref_acc = tref[ti].acc;
              x->ref_acc_norm = tref[ti].cloze ? 0 : tref[ti].acc_norm;
              task_key(x, key, sizeof key);
              missing[ti] = 1;
              for (size_t i = 0; i < ntrows && missing[ti]; i++) {
                task_key(&trows[i], k2, sizeof k2);
                missing[ti] = strcmp(key, k2) != 0;
              }
              need_task |= missing[ti];
            }
            row_key(&r, key, sizeof key);
            int skip = have && !need_task;
            if (!pass) { S.cells++; S.skipped += skip; left += !skip; continue; }
            if (skip) continue;
            double t0 = moesz_time_now();
            if ((rc = perturb(&st, &o->groups[gi], r.err, r.eb_mode, r.eb, seed, o->threads > 0 ? o->threads : 1,
                              &r.raw_bytes, &r.stored_bytes, err))) {
              moesz_error_wrap(err, rc, "sweep cell %s", key);
              break;
            }
            for (int ti = 0; ti < o->n_tasks && !rc; ti++) {
              if (!missing[ti]) continue;
              moesz_task_result res;
              if ((rc = moesz_eval_task(pe, o->tok, o->tasks[ti], o->task_limit, MOESZ_BOS_AUTO, 0, &res, err))) {
                moesz_error_wrap(err, rc, "sweep cell %s task %s", key, tnames[ti]);
                break;
              }
              tr[ti].acc = res.acc;
              tr[ti].acc_norm = res.cloze ? 0 : res.acc_norm;
              trows[ntrows++] = tr[ti];
            }
            if (rc) { drop_weights(&st); break; }
            if (have) {
              drop_weights(&st);
              S.ran++;
              if ((rc = task_write(dir, trows, ntrows, err))) break;
              moesz_progress_step(&pr, ++done_cells);
              continue;
            }
            moesz_ppl_result pr2;
            rc = moesz_eval_ppl(pe, ref, ids, n, o->ctx, o->stride, 0, &pr2, err);
            drop_weights(&st);
            if (rc) { moesz_error_wrap(err, rc, "sweep cell %s", key); break; }
            r.kl = pr2.kl;
            r.top1 = pr2.top1;
            r.ppl = pr2.ppl;
            r.ref_ppl = pr2.ref_ppl;
            r.tokens = pr2.tokens;
            r.seconds = moesz_time_now() - t0;
            rows[nrows++] = r;
            S.ran++;
            if ((rc = csv_write(dir, rows, nrows, err))) break;
            if (o->n_tasks && (rc = task_write(dir, trows, ntrows, err))) break;
            moesz_progress_step(&pr, ++done_cells);
          }
    if (pass) moesz_progress_end(&pr);
  }
  if (!rc) rc = moesz_sweep_report(rows, nrows, dir, err);
done:
  moesz_engine_close(pe);
  moesz_engine_close(ref);
  if (st.w) drop_weights(&st);
  free(st.w);
  free(st.shape);
  free(rows);
  free(trows);
  free(tref);
  free(tnames);
  if (sum) *sum = S;
  return rc;
}
