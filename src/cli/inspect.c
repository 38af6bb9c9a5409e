/* cli/inspect.c - `moesz inspect MODEL_DIR [--json] [--stats] [--eb EB]`:
 * family, layer table, parameter and byte counts by role and, with --stats,
 * per-expert-matrix statistics and the order-0 code entropy at --eb.
 * Argument parsing and printing only; the numbers come from src/model. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/util.h"
#include "cli/cli.h"
#include "moesz/model.h"

static const char *USAGE =
    "usage: moesz inspect MODEL_DIR [--json] [--stats] [--eb EB]\n\n"
    "Prints a model folder's architecture (config.json + safetensors): family, layer\n"
    "table (dense/MoE, experts, top-k, shared experts), parameter and byte counts by\n"
    "role (routed experts vs the rest). A folder with only config.json is described\n"
    "from the configuration (counts as a complete checkpoint would have them).\n\n"
    "  --json     machine-readable output (one JSON object on stdout)\n"
    "  --stats    per expert matrix: mean, std, min, max and the order-0 entropy of\n"
    "             q = round(x / (2 EB)) in bits per value (the rate an error-bounded\n"
    "             quantizer + ideal entropy coder reaches); dense MLPs of dense layers too\n"
    "  --eb EB    absolute error bound for --stats (default 1e-3)\n"
    "  -h, --help this text\n";

static const char *MATS[] = {"none", "gate", "up", "down", "gate_up"};

typedef struct stat_row {
  int layer, expert, shared, dense;
  moesz_mat mat;
  moesz_matview v;
  moesz_matstats s;
} stat_row;

/* Every expert matrix (routed, shared, dense MLP) in layer order. */
static int collect_stats(const moesz_model *m, double eb, int progress, stat_row **out, size_t *nout,
                         moesz_error *err) {
  const moesz_config *c = &m->cfg;
  size_t cap = 64, n = 0;
  stat_row *rows = malloc(cap * sizeof *rows);
  if (!rows) return moesz_error_set(err, MOESZ_E_NOMEM, "stats");
  int mats[3] = {MOESZ_MAT_GATE, MOESZ_MAT_UP, MOESZ_MAT_DOWN};
  double total = 0;
  for (int L = 0; L < c->n_layers; L++) total += c->is_moe[L] ? c->n_experts + (c->n_shared > 0) : 1;
  moesz_progress pr;
  moesz_progress_begin(&pr, "stats", total, progress);
  double done = 0;
  for (int L = 0; L < c->n_layers; L++) {
    int ne = c->is_moe[L] ? c->n_experts + (c->n_shared > 0) : 1;
    for (int k = 0; k < ne; k++) {
      int shared = c->is_moe[L] && k == c->n_experts, e = shared ? 0 : k;
      for (int mi = 0; mi < 3; mi++) {
        stat_row r = {L, e, shared, !c->is_moe[L], (moesz_mat)mats[mi], {0}, {0}};
        int rc = moesz_model_expert(m, L, e, shared, r.mat, &r.v, NULL);
        if (rc == MOESZ_E_NOTFOUND) continue; /* Switch has no up; dense layers of odd shape */
        float *deq = NULL;   /* gpt-oss MXFP4: the matrix (a row half of gate_up, or down) dequantised */
        moesz_mxfp4_view mx;
        if (rc == MOESZ_E_UNSUPPORTED && !shared &&
            !moesz_model_expert_mxfp4(m, L, e, r.mat == MOESZ_MAT_DOWN ? MOESZ_MAT_DOWN : MOESZ_MAT_GATE_UP, &mx, NULL)) {
          int64_t nr = r.mat == MOESZ_MAT_DOWN ? mx.rows : mx.rows / 2, r0 = r.mat == MOESZ_MAT_UP ? nr : 0, g = mx.cols / 32;
          if (!(deq = malloc(sizeof(float) * (size_t)(nr * mx.cols)))) { free(rows); return moesz_error_set(err, MOESZ_E_NOMEM, "stats"); }
          moesz_mxfp4_to_f32(mx.blocks + (size_t)(r0 * g * 16), mx.scales + (size_t)(r0 * g), (size_t)(nr * g), deq);
          moesz_matview dv = {deq, MOESZ_DT_F32, nr, mx.cols, mx.cols, 0};
          r.v = dv;
          rc = MOESZ_OK;
        }
        if (rc) { free(rows); return moesz_model_expert(m, L, e, shared, r.mat, &r.v, err); }
        rc = moesz_matview_stats(&r.v, eb, &r.s, err);
        free(deq);
        r.v.data = NULL;
        if (rc) {
          free(rows);
          return moesz_error_wrap(err, rc, "layer %d expert %d %s", L, e, MATS[r.mat]);
        }
        if (n == cap) {
          stat_row *g = realloc(rows, 2 * cap * sizeof *rows);
          if (!g) { free(rows); return moesz_error_set(err, MOESZ_E_NOMEM, "stats"); }
          rows = g;
          cap *= 2;
        }
        rows[n++] = r;
      }
      moesz_progress_step(&pr, ++done);
    }
  }
  moesz_progress_end(&pr);
  *out = rows;
  *nout = n;
  return MOESZ_OK;
}

/* Value-weighted mean entropy over routed expert matrices (what the codec compresses). */
static double mean_expert_entropy(const stat_row *r, size_t n, int64_t *values) {
  double h = 0;
  int64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (r[i].dense || r[i].shared) continue;
    h += r[i].s.entropy_bits * (double)(r[i].s.n - r[i].s.nonfinite);
    v += r[i].s.n - r[i].s.nonfinite;
  }
  *values = v;
  return v ? h / (double)v : 0;
}

static const char *layer_kind(const moesz_config *c, int L) {
  if (c->arch == MOESZ_ARCH_SWITCH) return L < c->n_enc_layers ? (c->is_moe[L] ? "enc-moe" : "enc-dense")
                                                                : (c->is_moe[L] ? "dec-moe" : "dec-dense");
  return c->is_moe[L] ? "moe" : "dense";
}

static double dtype_bits_of_experts(const moesz_model *m) {
  for (size_t i = 0; i < moesz_st_count(m->st); i++) {
    if (m->roles[i].mx) return 4.25;   /* MXFP4: 4 bits + an 8-bit scale per 32 values */
    if (m->roles[i].role == MOESZ_ROLE_EXPERT || m->roles[i].role == MOESZ_ROLE_DENSE_MLP)
      return (double)moesz_dtype_size(moesz_st_at(m->st, i)->dtype) * 8;
  }
  return 32;
}

/* A count, or "-" when there is no checkpoint to count it in. */
static void num_or_dash(char *buf, size_t cap, const moesz_model *m, int64_t v) {
  if (m) snprintf(buf, cap, "%lld", (long long)v);
  else snprintf(buf, cap, "-");
}

static void print_text(const char *path, const moesz_config *c, const moesz_model *m, const moesz_counts *k,
                       const stat_row *rows, size_t nrows, int stats, double eb) {
  printf("model        %s%s\n", path, m ? "" : "  (config.json only: no weights; counts from the config)");
  printf("family       %s (model_type %s)\n", c->arch_name, c->model_type);
  printf("layers       %d (%d MoE, %d dense)%s\n", c->n_layers, c->n_moe_layers, c->n_layers - c->n_moe_layers,
         c->n_enc_layers ? " (encoder + decoder blocks)" : "");
  printf("hidden       %d, heads %d (kv %d) x %d, vocab %d, norm eps %g, rope theta %g\n", c->hidden,
         c->n_heads, c->n_kv_heads, c->head_dim, c->vocab, (double)c->norm_eps, (double)c->rope_theta);
  if (c->n_moe_layers)
    printf("experts      %d routed (width %d), top-%d, norm_topk_prob %d; shared %d (width %d%s)\n",
           c->n_experts, c->moe_intermediate, c->top_k, c->norm_topk_prob, c->n_shared,
           c->shared_intermediate, c->has_shared_gate ? ", sigmoid gate" : "");
  if (c->n_layers > c->n_moe_layers) printf("dense MLP    width %d\n", c->intermediate);
  printf("quirks       tie_embeddings %d, qkv_bias %d, qk_norm %s, clip_qkv %g\n", c->tie_embeddings,
         c->qkv_bias, c->qk_norm == 1 ? "per-head" : c->qk_norm == 2 ? "whole" : "none",
         (double)c->clip_qkv);
  if (m) printf("tensors      %zu (experts %s)\n", moesz_st_count(m->st), moesz_model_expert_layout(m));
  printf("\n");

  printf("%-6s %-10s %8s %6s %7s\n", "layer", "type", "experts", "top-k", "shared");
  for (int L = 0; L < c->n_layers; L++) {
    if (c->is_moe[L]) printf("%-6d %-10s %8d %6d %7d\n", L, layer_kind(c, L), c->n_experts, c->top_k, c->n_shared);
    else printf("%-6d %-10s %8s %6s %7s\n", L, layer_kind(c, L), "-", "-", "-");
  }
  printf("\n%-16s %8s %14s %14s\n", "role", "tensors", "params", "bytes");
  for (int r = 0; r < MOESZ_ROLE_COUNT; r++) {
    if (!k->tensors[r] && !k->params[r]) continue;
    char nt[24], nb[24];
    num_or_dash(nt, sizeof nt, m, k->tensors[r]);
    num_or_dash(nb, sizeof nb, m, k->bytes[r]);
    printf("%-16s %8s %14lld %14s\n", moesz_role_name((moesz_role)r), nt, (long long)k->params[r], nb);
  }
  double tp = k->total_params ? (double)k->total_params : 1;
  char b1[24], b2[24], b3[24];
  num_or_dash(b1, sizeof b1, m, k->total_bytes);
  num_or_dash(b2, sizeof b2, m, k->expert_bytes);
  num_or_dash(b3, sizeof b3, m, k->other_bytes);
  printf("\n%-16s %8s %14lld %14s\n", "total", "", (long long)k->total_params, b1);
  printf("%-16s %8s %14lld %14s  (%.1f%% of parameters)\n", "routed experts", "",
         (long long)k->expert_params, b2, 100.0 * (double)k->expert_params / tp);
  printf("%-16s %8s %14lld %14s\n", "everything else", "", (long long)k->other_params, b3);
  if (m) {
    moesz_counts want;
    moesz_config_count(c, &want);
    if (want.total_params == k->total_params) printf("(the config implies the same %lld parameters)\n",
                                                     (long long)want.total_params);
    else printf("note: the config implies %lld parameters; the checkpoint stores %lld\n",
                (long long)want.total_params, (long long)k->total_params);
  }
  if (!stats) return;
  printf("\nper-matrix statistics (entropy H of round(x / (2 eb)), eb = %g):\n", eb);
  printf("%-6s %-8s %-5s %-13s %12s %12s %12s %12s %8s\n", "layer", "expert", "mat", "shape", "mean", "std",
         "min", "max", "H bits");
  for (size_t i = 0; i < nrows; i++) {
    const stat_row *r = &rows[i];
    char ex[16], shape[32];
    if (r->dense) snprintf(ex, sizeof ex, "dense");
    else if (r->shared) snprintf(ex, sizeof ex, "shared");
    else snprintf(ex, sizeof ex, "%d", r->expert);
    snprintf(shape, sizeof shape, "%lldx%lld", (long long)r->v.rows, (long long)r->v.cols);
    printf("%-6d %-8s %-5s %-13s %12.4g %12.4g %12.4g %12.4g %8.3f\n", r->layer, ex, MATS[r->mat], shape,
           r->s.mean, r->s.std, r->s.min, r->s.max, r->s.entropy_bits);
  }
  int64_t v;
  double h = mean_expert_entropy(rows, nrows, &v);
  if (v) {
    double bits = dtype_bits_of_experts(m);
    printf("\nrouted experts: mean H = %.3f bits/value over %lld values; rate limit %.2fx smaller than %g-bit\n",
           h, (long long)v, h > 0 ? bits / h : 0.0, bits);
  }
}

static void print_json(const char *path, const moesz_config *c, const moesz_model *m, const moesz_counts *k,
                       const stat_row *rows, size_t nrows, int stats, double eb) {
  cJSON *j = cJSON_CreateObject(), *cf = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "path", path);
  cJSON_AddBoolToObject(j, "weights", m != NULL);
  if (m) cJSON_AddNumberToObject(j, "tensors", (double)moesz_st_count(m->st));
  if (m) cJSON_AddStringToObject(j, "expert_layout", moesz_model_expert_layout(m));
  cJSON_AddStringToObject(j, "architecture", c->arch_name);
  cJSON_AddStringToObject(j, "model_type", c->model_type);
  cJSON_AddItemToObject(j, "config", cf);
  cJSON_AddNumberToObject(cf, "n_layers", c->n_layers);
  cJSON_AddNumberToObject(cf, "n_moe_layers", c->n_moe_layers);
  cJSON_AddNumberToObject(cf, "n_enc_layers", c->n_enc_layers);
  cJSON_AddNumberToObject(cf, "hidden", c->hidden);
  cJSON_AddNumberToObject(cf, "intermediate", c->intermediate);
  cJSON_AddNumberToObject(cf, "moe_intermediate", c->moe_intermediate);
  cJSON_AddNumberToObject(cf, "n_experts", c->n_experts);
  cJSON_AddNumberToObject(cf, "top_k", c->top_k);
  cJSON_AddNumberToObject(cf, "n_shared", c->n_shared);
  cJSON_AddNumberToObject(cf, "shared_intermediate", c->shared_intermediate);
  cJSON_AddBoolToObject(cf, "shared_gate", c->has_shared_gate);
  cJSON_AddBoolToObject(cf, "norm_topk_prob", c->norm_topk_prob);
  cJSON_AddNumberToObject(cf, "n_heads", c->n_heads);
  cJSON_AddNumberToObject(cf, "n_kv_heads", c->n_kv_heads);
  cJSON_AddNumberToObject(cf, "head_dim", c->head_dim);
  cJSON_AddNumberToObject(cf, "vocab", c->vocab);
  cJSON_AddNumberToObject(cf, "max_pos", c->max_pos);
  cJSON_AddNumberToObject(cf, "norm_eps", c->norm_eps);
  cJSON_AddNumberToObject(cf, "rope_theta", c->rope_theta);
  cJSON_AddBoolToObject(cf, "tie_embeddings", c->tie_embeddings);
  cJSON_AddBoolToObject(cf, "qkv_bias", c->qkv_bias);
  cJSON_AddNumberToObject(cf, "qk_norm", c->qk_norm);
  cJSON_AddNumberToObject(cf, "clip_qkv", c->clip_qkv);
  cJSON_AddNumberToObject(cf, "first_k_dense", c->first_k_dense);
  cJSON_AddNumberToObject(cf, "bos_id", c->bos_id);
  cJSON_AddNumberToObject(cf, "eos_id", c->eos_id);
  cJSON *layers = cJSON_AddArrayToObject(j, "layers");
  for (int L = 0; L < c->n_layers; L++) {
    cJSON *l = cJSON_CreateObject();
    cJSON_AddNumberToObject(l, "layer", L);
    cJSON_AddStringToObject(l, "type", layer_kind(c, L));
    cJSON_AddBoolToObject(l, "moe", c->is_moe[L]);
    cJSON_AddNumberToObject(l, "experts", c->is_moe[L] ? c->n_experts : 0);
    cJSON_AddNumberToObject(l, "top_k", c->is_moe[L] ? c->top_k : 0);
    cJSON_AddNumberToObject(l, "shared", c->is_moe[L] ? c->n_shared : 0);
    cJSON_AddItemToArray(layers, l);
  }
  cJSON *p = cJSON_AddObjectToObject(j, "params"), *b = cJSON_AddObjectToObject(j, "bytes");
  cJSON_AddNumberToObject(p, "total", (double)k->total_params);
  cJSON_AddNumberToObject(p, "experts", (double)k->expert_params);
  cJSON_AddNumberToObject(p, "other", (double)k->other_params);
  cJSON_AddNumberToObject(b, "total", (double)k->total_bytes);
  cJSON_AddNumberToObject(b, "experts", (double)k->expert_bytes);
  cJSON_AddNumberToObject(b, "other", (double)k->other_bytes);
  cJSON *roles = cJSON_AddArrayToObject(j, "roles");
  for (int r = 0; r < MOESZ_ROLE_COUNT; r++) {
    if (!k->tensors[r] && !k->params[r]) continue;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "role", moesz_role_name((moesz_role)r));
    cJSON_AddNumberToObject(o, "tensors", (double)k->tensors[r]);
    cJSON_AddNumberToObject(o, "params", (double)k->params[r]);
    cJSON_AddNumberToObject(o, "bytes", (double)k->bytes[r]);
    cJSON_AddItemToArray(roles, o);
  }
  if (stats) {
    cJSON_AddNumberToObject(j, "eb", eb);
    cJSON *st = cJSON_AddArrayToObject(j, "stats");
    for (size_t i = 0; i < nrows; i++) {
      const stat_row *r = &rows[i];
      cJSON *o = cJSON_CreateObject();
      cJSON_AddNumberToObject(o, "layer", r->layer);
      cJSON_AddNumberToObject(o, "expert", r->expert);
      cJSON_AddBoolToObject(o, "shared", r->shared);
      cJSON_AddBoolToObject(o, "dense", r->dense);
      cJSON_AddStringToObject(o, "mat", MATS[r->mat]);
      cJSON_AddNumberToObject(o, "rows", (double)r->v.rows);
      cJSON_AddNumberToObject(o, "cols", (double)r->v.cols);
      cJSON_AddNumberToObject(o, "mean", r->s.mean);
      cJSON_AddNumberToObject(o, "std", r->s.std);
      cJSON_AddNumberToObject(o, "min", r->s.min);
      cJSON_AddNumberToObject(o, "max", r->s.max);
      cJSON_AddNumberToObject(o, "nonfinite", (double)r->s.nonfinite);
      cJSON_AddNumberToObject(o, "entropy_bits", r->s.entropy_bits);
      cJSON_AddNumberToObject(o, "distinct_q", (double)r->s.distinct_q);
      cJSON_AddItemToArray(st, o);
    }
    int64_t v;
    cJSON_AddNumberToObject(j, "expert_mean_entropy_bits", mean_expert_entropy(rows, nrows, &v));
  }
  char *s = cJSON_PrintUnformatted(j);
  if (s) puts(s);
  free(s);
  cJSON_Delete(j);
}

/* 1 unless DIR is a folder without any .safetensors file or shard index
 * (a file path, or a missing folder, is left to the library to judge). */
static int has_weights(const char *dir) {
  if (!moesz_path_is_dir(dir)) return 1;
  DIR *d = opendir(dir);
  if (!d) return 1;
  struct dirent *ent;
  int found = 0;
  while (!found && (ent = readdir(d))) {
    size_t n = strlen(ent->d_name);
    found = (n > 12 && !strcmp(ent->d_name + n - 12, ".safetensors")) ||
            !strcmp(ent->d_name, "model.safetensors.index.json");
  }
  closedir(d);
  return found;
}

int moesz_cli_inspect(int argc, char **argv) {
  if (moesz_cli_wants_help(argc, argv)) { fputs(USAGE, stdout); return 0; }
  const char *dir = NULL;
  int json = 0, stats = 0;
  double eb = 1e-3;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) json = 1;
    else if (!strcmp(argv[i], "--stats")) stats = 1;
    else if (!strcmp(argv[i], "--eb")) {
      char *end;
      if (i + 1 >= argc) { fprintf(stderr, "moesz inspect: --eb needs a value\n"); return 2; }
      errno = 0;
      eb = strtod(argv[++i], &end);
      if (*end || end == argv[i] || errno || !(eb > 0) || !isfinite(eb)) {
        fprintf(stderr, "moesz inspect: --eb '%s' is not a positive number\n", argv[i]);
        return 2;
      }
    } else if (argv[i][0] == '-' && argv[i][1]) {
      fprintf(stderr, "moesz inspect: unknown option '%s'\n\n%s", argv[i], USAGE);
      return 2;
    } else if (!dir) dir = argv[i];
    else { fprintf(stderr, "moesz inspect: more than one MODEL_DIR given\n"); return 2; }
  }
  if (!dir) { fprintf(stderr, "moesz inspect: no MODEL_DIR given\n\n%s", USAGE); return 2; }
  if (moesz_engine_is_msz(dir)) return moesz_cli_inspect_msz(dir, json);
  moesz_model *m = NULL;
  moesz_error e = {0};
  moesz_counts k;
  moesz_config cfg;
  if (!has_weights(dir)) {
    /* a folder with only config.json: describe the configuration */
    if (moesz_config_load(dir, &cfg, &e)) return moesz_cli_fail("inspect", &e);
    if (stats) {
      fprintf(stderr, "moesz inspect: %s has no .safetensors files; --stats needs weights\n", dir);
      return 1;
    }
    moesz_config_count(&cfg, &k);
    if (json) print_json(dir, &cfg, NULL, &k, NULL, 0, 0, eb);
    else print_text(dir, &cfg, NULL, &k, NULL, 0, 0, eb);
    return fflush(stdout) == 0 ? 0 : 1;
  }
  if (moesz_model_open(dir, &m, &e)) return moesz_cli_fail("inspect", &e);
  moesz_model_count(m, &k);
  stat_row *rows = NULL;
  size_t nrows = 0;
  if (stats && collect_stats(m, eb, isatty(2), &rows, &nrows, &e)) {
    moesz_model_close(m);
    return moesz_cli_fail("inspect", &e);
  }
  if (json) print_json(m->path, &m->cfg, m, &k, rows, nrows, stats, eb);
  else print_text(m->path, &m->cfg, m, &k, rows, nrows, stats, eb);
  free(rows);
  moesz_model_close(m);
  return fflush(stdout) == 0 ? 0 : 1;
}
