/* eval/policy.c - owns the bound policy: per-layer bounds chosen from the
 * layers' measured sensitivities under a KL or perplexity target (the plan:
 * greedy marginal bytes per unit of cost over a table of sweep cells), the
 * --layer-eb spec that writes the plan, and the run that measures (through
 * the sweep's per-layer codec cells), plans, writes the container, verifies
 * it end to end and tightens the budget on a miss. docs/EVAL.md "Bound
 * policy". */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/util.h"
#include "moesz/eval.h"

/* ------------------------------------------------------------------ plan */

int moesz_policy_plan(const moesz_policy_table *t, double budget, int *choice, double *pred_cost,
                      uint64_t *pred_bytes, moesz_error *err) {
  int nl = t->n_layers, ne = t->n_ebs;
  if (nl < 1 || ne < 1 || !(budget >= 0) || !isfinite(budget))
    return moesz_error_set(err, MOESZ_E_ARG, "policy: need layers, bounds and a budget >= 0");
  size_t cells;
  if (!moesz_mul_ok((size_t)nl, (size_t)ne, &cells)) return moesz_error_set(err, MOESZ_E_NOMEM, "policy: table too large");
  for (int j = 1; j < ne; j++)
    if (!(t->ebs[j] > t->ebs[j - 1])) return moesz_error_set(err, MOESZ_E_ARG, "policy: candidate bounds not ascending");
  double *c = malloc(cells * sizeof *c);
  if (!c) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  for (int i = 0; i < nl; i++) {
    double run = 0;   /* running maximum: a larger bound never costs less than a smaller one */
    for (int j = 0; j < ne; j++) {
      double v = t->cost[(size_t)i * ne + j];
      if (isnan(v)) { free(c); return moesz_error_set(err, MOESZ_E_ARG, "policy: layer %d bound %g: cost is NaN", i, t->ebs[j]); }
      if (v > run) run = v;
      c[(size_t)i * ne + j] = run;
    }
  }
  double total = 0;
  for (int i = 0; i < nl; i++) { choice[i] = 0; total += c[(size_t)i * ne]; }
  if (total > budget) {
    free(c);
    return moesz_error_set(err, MOESZ_E_RANGE, "policy: the smallest bound (%g) in every layer already predicts %.6g, "
                           "above the budget %.6g: give smaller candidate bounds", t->ebs[0], total, budget);
  }
  for (;;) {
    int bi = -1, bj = -1;
    double best = -1;
    uint64_t best_save = 0;
    for (int i = 0; i < nl; i++) {
      size_t k0 = (size_t)i * ne + (size_t)choice[i];
      for (int j = choice[i] + 1; j < ne; j++) {
        size_t k = (size_t)i * ne + j;
        if (t->bytes[k] >= t->bytes[k0]) continue;
        double add = c[k] - c[k0];
        if (total + add > budget) continue;
        uint64_t save = t->bytes[k0] - t->bytes[k];
        double r = add > 0 ? (double)save / add : INFINITY;
        /* most bytes per unit cost; among free moves (or ties) the larger saving */
        if (r > best || (r == best && save > best_save)) { best = r; best_save = save; bi = i; bj = j; }
      }
    }
    if (bi < 0) break;
    total += c[(size_t)bi * ne + bj] - c[(size_t)bi * ne + choice[bi]];
    choice[bi] = bj;
  }
  double pc = 0;
  uint64_t pb = 0;
  for (int i = 0; i < nl; i++) {
    pc += c[(size_t)i * ne + choice[i]];
    pb += t->bytes[(size_t)i * ne + choice[i]];
  }
  free(c);
  if (pred_cost) *pred_cost = pc;
  if (pred_bytes) *pred_bytes = pb;
  return MOESZ_OK;
}

/* ------------------------------------------------------------------ spec */

/* The shortest %g form of v that strtod reads back as v. */
static void fmt_exact(double v, char *out, size_t cap) {
  for (int p = 1; p <= 17; p++) {
    snprintf(out, cap, "%.*g", p, v);
    if (strtod(out, NULL) == v) return;
  }
}

int moesz_policy_spec(const double *layer_eb, int n_layers, char *out, size_t cap) {
  size_t k = 0;
  if (!cap) return -1;
  out[0] = 0;
  for (int a = 0; a < n_layers;) {
    if (!(layer_eb[a] > 0)) { a++; continue; }
    int b = a;
    while (b + 1 < n_layers && layer_eb[b + 1] == layer_eb[a]) b++;
    char num[40], item[96];
    fmt_exact(layer_eb[a], num, sizeof num);
    int w = a == b ? snprintf(item, sizeof item, "%s%d:%s", k ? "," : "", a, num)
                   : snprintf(item, sizeof item, "%s%d-%d:%s", k ? "," : "", a, b, num);
    if (w < 0 || k + (size_t)w >= cap) return -1;
    memcpy(out + k, item, (size_t)w + 1);
    k += (size_t)w;
    a = b + 1;
  }
  return 0;
}

/* ------------------------------------------------------------------- run */

/* The sweep rows for layer L (group "L<L>", codec, mode, eb ~ ebs[j], tokens) into the table. */
static int fill_table(const moesz_sweep_row *rows, size_t nrows, const int *layers, int nl, const moesz_policy_opts *o,
                      size_t tokens, double *cost, uint64_t *bytes, moesz_error *err) {
  for (int i = 0; i < nl; i++)
    for (int j = 0; j < o->n_ebs; j++) {
      char name[48];
      snprintf(name, sizeof name, "L%d", layers[i]);
      const moesz_sweep_row *hit = NULL;
      for (size_t r = 0; r < nrows; r++) {
        const moesz_sweep_row *x = &rows[r];
        if (x->err == MOESZ_SWEEP_CODEC && x->eb_mode == o->msz->eb_mode && x->tokens == tokens &&
            x->first == layers[i] && x->last == layers[i] && !strcmp(x->group, name) &&
            fabs(x->eb - o->ebs[j]) <= 1e-8 * o->ebs[j])
          hit = x;
      }
      if (!hit) return moesz_error_set(err, MOESZ_E_INTERNAL, "policy: sweep cell %s eb %g missing", name, o->ebs[j]);
      double v = o->metric == MOESZ_POLICY_KL ? hit->kl : log(hit->ppl / hit->ref_ppl);
      cost[(size_t)i * o->n_ebs + j] = v;
      bytes[(size_t)i * o->n_ebs + j] = hit->stored_bytes;
    }
  return MOESZ_OK;
}

int moesz_policy_run(moesz_model *m, const int32_t *ids, size_t n, const moesz_policy_opts *o, const char *sweep_dir,
                     const char *out, moesz_policy_result *res, moesz_error *err) {
  const moesz_config *cfg = &m->cfg;
  memset(res, 0, sizeof *res);
  if (!(o->target > 0) || !isfinite(o->target) || o->n_ebs < 1 || o->tries < 1 || !o->msz ||
      (o->msz->method != MOESZ_MSZ_CODEC && o->msz->method != MOESZ_MSZ_COMPUTE) || o->msz->layer_eb || o->msz->tensor_eb || o->msz->part || o->msz->resmoe)
    return moesz_error_set(err, MOESZ_E_ARG, "policy: need a target > 0, candidate bounds, tries >= 1 and plain "
                           "codec container options (no layer or tensor bounds, part or ResMoE of their own)");
  for (int j = 0; j < o->n_ebs; j++)
    if (!(o->ebs[j] > 0) || !isfinite(o->ebs[j]) || (j && !(o->ebs[j] > o->ebs[j - 1])))
      return moesz_error_set(err, MOESZ_E_ARG, "policy: candidate bounds must be > 0 and ascending");
  if (moesz_output_check_model(out, 0, m->path, "output", err)) return MOESZ_E_ARG;

  /* 1. per-layer sensitivity: the sweep's codec cells, one MoE layer at a time */
  moesz_sweep_group *groups = NULL;
  int ng = 0, rc;
  if ((rc = moesz_sweep_groups(cfg, NULL, 1, &groups, &ng, err))) return rc;
  moesz_sweep_err kind = MOESZ_SWEEP_CODEC;
  moesz_sweep_opts so = {.groups = groups, .n_groups = ng, .ebs = o->ebs, .n_ebs = o->n_ebs,
                         .eb_mode = o->msz->eb_mode, .errs = &kind, .n_errs = 1, .seeds = 1, .ctx = o->ctx,
                         .stride = o->stride, .threads = o->threads, .progress = o->progress};
  rc = moesz_sweep_run(m, ids, n, &so, sweep_dir, NULL, err);
  int *layers = NULL, *choice = NULL;
  double *cost = NULL;
  uint64_t *bytes = NULL;
  moesz_sweep_row *rows = NULL;
  size_t nrows = 0, len;
  char *txt = NULL, path[4096];
  moesz_engine *ref = NULL;
  if (rc) goto done;
  if ((rc = moesz_path_join(path, sizeof path, sweep_dir, "results.csv"))) { moesz_error_set(err, rc, "folder name too long"); goto done; }
  if ((rc = moesz_file_read_all(path, 1u << 28, &txt, &len, err))) goto done;
  if ((rc = moesz_sweep_csv_parse(txt, len, &rows, &nrows, err))) goto done;
  size_t nw = moesz_ppl_windows(n, o->ctx, o->stride, NULL, 0), tokens = 0;
  moesz_window *win = malloc((nw + 1) * sizeof *win);
  layers = malloc((size_t)ng * sizeof *layers);
  choice = malloc((size_t)ng * sizeof *choice);
  cost = malloc((size_t)ng * (size_t)o->n_ebs * sizeof *cost);
  bytes = malloc((size_t)ng * (size_t)o->n_ebs * sizeof *bytes);
  res->layer_eb = calloc((size_t)cfg->n_layers, sizeof *res->layer_eb);
  if (!win || !layers || !choice || !cost || !bytes || !res->layer_eb) {
    free(win);
    rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
    goto done;
  }
  moesz_ppl_windows(n, o->ctx, o->stride, win, nw);
  for (size_t k = 0; k < nw; k++) tokens += win[k].end - win[k].score_from;
  free(win);
  for (int i = 0; i < ng; i++) layers[i] = groups[i].first;
  if ((rc = fill_table(rows, nrows, layers, ng, o, tokens, cost, bytes, err))) goto done;

  /* 2. plan, write, verify; a miss tightens the budget */
  moesz_engine_opts eo = {.threads = o->threads, .max_ctx = (int)o->ctx};
  if ((rc = moesz_engine_open_model(m, 0, NULL, 0, &eo, &ref, err))) goto done;
  moesz_policy_table tab = {.n_layers = ng, .n_ebs = o->n_ebs, .ebs = o->ebs, .cost = cost, .bytes = bytes};
  double goal = o->metric == MOESZ_POLICY_KL ? o->target : log1p(o->target);
  double budget = goal, prev_pred = -1;
  int met = 0, wrote = 0;
  for (int t = 0; t < o->tries && !met; t++) {
    double pred;
    uint64_t pbytes;
    if ((rc = moesz_policy_plan(&tab, budget, choice, &pred, &pbytes, err))) break;
    /* a tightened budget that leaves the plan as it was is lowered to just below its prediction */
    if (t && pred >= prev_pred) {
      budget = prev_pred * (1 - 1e-9) - 1e-15;
      if (budget < 0 || (rc = moesz_policy_plan(&tab, budget, choice, &pred, &pbytes, err))) {
        if (!rc) rc = moesz_error_set(err, MOESZ_E_RANGE, "policy: no tighter plan left");
        break;
      }
    }
    prev_pred = pred;
    for (int i = 0; i < ng; i++) res->layer_eb[layers[i]] = o->ebs[choice[i]];
    moesz_msz_opts mo = *o->msz;
    mo.layer_eb = res->layer_eb;
    mo.progress = 0;
    if ((rc = moesz_msz_write(m, out, &mo, &res->msz, err))) break;
    wrote = 1;
    moesz_engine *c = NULL;
    moesz_ppl_result pr;
    if ((rc = moesz_engine_open(out, &eo, &c, err))) break;
    rc = moesz_eval_ppl(c, ref, ids, n, o->ctx, o->stride, 0, &pr, err);
    moesz_engine_close(c);
    if (rc) break;
    res->tries = t + 1;
    res->budget = budget;
    res->predicted = pred;
    res->predicted_bytes = pbytes;
    res->kl = pr.kl;
    res->top1 = pr.top1;
    res->ppl = pr.ppl;
    res->ref_ppl = pr.ref_ppl;
    res->tokens = pr.tokens;
    double got = o->metric == MOESZ_POLICY_KL ? pr.kl : log(pr.ppl / pr.ref_ppl);
    met = got <= goal;
    if (o->report) o->report(o->user, res);
    /* the measured / predicted ratio scales the next budget, with a margin */
    if (!met) budget = got > 0 && pred > 0 ? budget * (goal / got) * 0.95 : budget * 0.5;
  }
  if (!rc && !met) rc = moesz_error_set(err, MOESZ_E_RANGE, "policy: %d tries, none within the target %g (last: "
                                        "%s %.6g)", res->tries, o->target, o->metric == MOESZ_POLICY_KL ? "KL" :
                                        "ppl rise", o->metric == MOESZ_POLICY_KL ? res->kl : res->ppl / res->ref_ppl - 1);
  if (rc && wrote) unlink(out);
done:
  moesz_engine_close(ref);
  free(groups);
  free(layers);
  free(choice);
  free(cost);
  free(bytes);
  free(rows);
  free(txt);
  return rc;
}
