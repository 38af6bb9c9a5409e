/* cli/compress_policy.c - `moesz compress --target-kl X --calib FILE` (and
 * --target-ppl-rise): parses the policy's options, runs moesz_policy_run
 * (src/eval/policy.c) and prints the chosen --layer-eb spec with the
 * measured KL, perplexity and bytes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "cli/cli.h"

/* The default candidate bounds (absolute; bf16 expert weights of std ~0.02-0.05). */
static const double DEFAULT_EBS[] = {5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 7e-3, 1e-2, 1.5e-2, 2e-2, 3e-2};

static int parse_list(const char *s, double **out, int *n) {
  int cap = 1;
  for (const char *p = s; *p; p++) cap += *p == ',';
  double *v = malloc((size_t)cap * sizeof *v);
  char *dup = strdup(s), *rest = dup;
  *n = 0;
  if (!v || !dup) { free(v); free(dup); return -1; }
  for (char *t; (t = strsep(&rest, ","));) {
    char *end;
    double x = strtod(t, &end);
    if (end == t || *end || !(x > 0) || !isfinite(x) || (*n && !(x > v[*n - 1]))) { free(v); free(dup); return -1; }
    v[(*n)++] = x;
  }
  free(dup);
  *out = v;
  return 0;
}

static void report(void *user, const moesz_policy_result *r) {
  const moesz_config *cfg = user;
  char spec[2048];
  if (moesz_policy_spec(r->layer_eb, cfg->n_layers, spec, sizeof spec)) snprintf(spec, sizeof spec, "(too long)");
  fprintf(stderr, "policy: try %d: budget %.6g, predicted %.6g and %.3f MB of experts -> %s; measured KL %.6g, "
          "ppl %.4f (original %.4f), experts %.3f MB\n", r->tries, r->budget, r->predicted,
          (double)r->predicted_bytes / 1e6, spec, r->kl, r->ppl, r->ref_ppl, (double)r->msz.expert_stored_bytes / 1e6);
}

int moesz_cli_compress_policy(moesz_model *m, const char *out, const moesz_msz_opts *mo, const moesz_cli_policy *a,
                              int json) {
  moesz_policy_opts po;
  memset(&po, 0, sizeof po);
  double *ebs = NULL;
  if (a->ebs) {
    if (parse_list(a->ebs, &ebs, &po.n_ebs)) {
      fprintf(stderr, "moesz compress: bad --policy-eb '%s' (bounds > 0, ascending, comma-separated)\n", a->ebs);
      return 2;
    }
  } else if (mo->eb_mode != MOESZ_EB_ABS) {
    fprintf(stderr, "moesz compress: --eb-mode rel/std with a target needs --policy-eb (the default list is absolute)\n");
    return 2;
  }
  po.metric = a->ppl ? MOESZ_POLICY_PPL : MOESZ_POLICY_KL;
  po.target = a->target;
  po.ebs = ebs ? ebs : DEFAULT_EBS;
  if (!ebs) po.n_ebs = (int)(sizeof DEFAULT_EBS / sizeof *DEFAULT_EBS);
  po.ctx = a->ctx;
  po.stride = a->ctx;
  po.tries = a->tries;
  po.threads = mo->threads;
  po.progress = mo->progress;
  po.msz = mo;
  po.report = report;
  po.user = &m->cfg;
  char dir[4096];
  if (a->dir) snprintf(dir, sizeof dir, "%s", a->dir);
  else if (snprintf(dir, sizeof dir, "%s.policy", out) >= (int)sizeof dir) {
    fprintf(stderr, "moesz compress: output name too long\n");
    free(ebs);
    return 2;
  }
  moesz_error e = {0};
  moesz_tok *t = NULL;
  int32_t *ids = NULL;
  size_t n = 0, len;
  char *txt = NULL;
  moesz_policy_result r;
  memset(&r, 0, sizeof r);
  int status = 1;
  if (moesz_cli_tok_load(m->path, &t, &e)) goto fail;
  if (moesz_file_read_all(a->calib, 1u << 30, &txt, &len, &e)) goto fail;
  if (moesz_tok_encode(t, txt, len, 0, &ids, &n, &e)) goto fail;
  if (a->limit && a->limit < n) n = a->limit;
  if (n < 2) { moesz_error_set(&e, MOESZ_E_ARG, "%s: fewer than 2 tokens", a->calib); goto fail; }
  static const char *OUTS[] = {"results.csv", "results.json", "results.md", "kl.svg", "top1.svg", "ppl.svg",
                               "kl_per_layer.svg"};
  for (size_t i = 0; i < sizeof OUTS / sizeof *OUTS; i++) {
    char p[4200];
    if (!moesz_path_join(p, sizeof p, dir, OUTS[i])) moesz_cli_output(p);
  }
  if (moesz_policy_run(m, ids, n, &po, dir, out, &r, &e)) goto fail;
  char spec[4096];
  if (moesz_policy_spec(r.layer_eb, m->cfg.n_layers, spec, sizeof spec)) {
    moesz_error_set(&e, MOESZ_E_INTERNAL, "layer spec too long");
    goto fail;
  }
  const char *mode = mo->eb_mode == MOESZ_EB_REL ? "rel" : mo->eb_mode == MOESZ_EB_STD ? "std" : "abs";
  double ratio = r.msz.expert_stored_bytes ? (double)r.msz.expert_raw_bytes / (double)r.msz.expert_stored_bytes : 0;
  if (json) {
    printf("{\"output\":\"%s\",\"layer_eb\":\"%s\",\"eb_mode\":\"%s\",\"target\":%.9g,\"metric\":\"%s\",\"tries\":%d,"
           "\"predicted\":%.9g,\"kl\":%.9g,\"top1\":%.6f,\"ppl\":%.6f,\"ref_ppl\":%.6f,\"tokens\":%zu,"
           "\"expert_raw_bytes\":%llu,\"expert_stored_bytes\":%llu,\"expert_ratio\":%.4f,\"total_bytes\":%llu,"
           "\"sweep_dir\":\"%s\"}\n", out, spec, mode, a->target, a->ppl ? "ppl-rise" : "kl", r.tries, r.predicted,
           r.kl, r.top1, r.ppl, r.ref_ppl, r.tokens, (unsigned long long)r.msz.expert_raw_bytes,
           (unsigned long long)r.msz.expert_stored_bytes, ratio, (unsigned long long)r.msz.total_bytes, dir);
  } else {
    printf("wrote %s: %.2f MB (experts %.2f MB -> %.2f MB, %.3fx) after %d tr%s\n", out, (double)r.msz.total_bytes / 1e6,
           (double)r.msz.expert_raw_bytes / 1e6, (double)r.msz.expert_stored_bytes / 1e6, ratio, r.tries,
           r.tries == 1 ? "y" : "ies");
    printf("layer bounds: --eb-mode %s --layer-eb '%s'\n", mode, spec);
    printf("measured on %zu calibration tokens: KL %.6g nats/token (target %s %g), top-1 %.2f%%, ppl %.4f "
           "(original %.4f, rise %.3f%%)\n", r.tokens, r.kl, a->ppl ? "ppl rise" : "KL", a->target, 100 * r.top1,
           r.ppl, r.ref_ppl, 100 * (r.ppl / r.ref_ppl - 1));
  }
  status = 0;
fail:
  if (status) moesz_cli_fail("compress", &e);
  free(r.layer_eb);
  free(txt);
  free(ids);
  free(ebs);
  moesz_tok_free(t);
  return status;
}
