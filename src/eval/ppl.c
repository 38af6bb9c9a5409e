/* eval/ppl.c - owns perplexity, KL and top-1 agreement over sliding windows
 * (the Hugging Face perplexity guide's scheme, token-weighted), and the
 * log-likelihood of a continuation. Log-softmax in double. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "moesz/eval.h"

size_t moesz_ppl_windows(size_t n, size_t ctx, size_t stride, moesz_window *out, size_t cap) {
  size_t k = 0, prev_end = 0;
  if (n < 2 || ctx < 2 || stride < 1 || stride > ctx) return 0;
  for (size_t begin = 0; begin < n; begin += stride) {
    size_t end = begin + ctx < n ? begin + ctx : n;
    size_t from = prev_end > begin + 1 ? prev_end : begin + 1;
    if (from < end) {
      if (k < cap) { out[k].begin = begin; out[k].end = end; out[k].score_from = from; }
      k++;
    }
    prev_end = end;
    if (end == n) break;
  }
  return k;
}

/* log-sum-exp of x[0..V) in double */
static double lse(const float *x, int V, int *arg) {
  float m = x[0];
  int a = 0;
  for (int i = 1; i < V; i++) if (x[i] > m) { m = x[i]; a = i; }
  double s = 0;
  for (int i = 0; i < V; i++) s += exp((double)x[i] - m);
  if (arg) *arg = a;
  return m + log(s);
}

static int ppl_run(moesz_engine *e, moesz_engine *ref, const int32_t *ids, size_t n, size_t ctx, size_t stride,
                   int progress, int decode, moesz_ppl_result *out, moesz_error *err) {
  memset(out, 0, sizeof *out);
  if (ctx < 2 || stride < 1 || stride > ctx) return moesz_error_set(err, MOESZ_E_ARG, "ppl: need ctx >= 2 and 1 <= stride <= ctx");
  if (n < 2) return moesz_error_set(err, MOESZ_E_ARG, "ppl: need at least 2 tokens (got %zu)", n);
  if ((int)ctx > moesz_engine_max_ctx(e) || (ref && (int)ctx > moesz_engine_max_ctx(ref)))
    return moesz_error_set(err, MOESZ_E_ARG, "ppl: --ctx %zu exceeds the engine's context (%d)", ctx, moesz_engine_max_ctx(e));
  int V = moesz_engine_vocab(e);
  if (ref && moesz_engine_vocab(ref) != V) return moesz_error_set(err, MOESZ_E_ARG, "ppl: the reference has vocabulary %d, the model %d", moesz_engine_vocab(ref), V);
  for (size_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= V) return moesz_error_set(err, MOESZ_E_RANGE, "ppl: token %zu has id %d outside the vocabulary (%d)", i, ids[i], V);
  size_t nw = moesz_ppl_windows(n, ctx, stride, NULL, 0);
  moesz_window *w = malloc((nw + 1) * sizeof *w);
  float *lg = malloc(ctx * (size_t)V * sizeof *lg), *lr = ref ? malloc(ctx * (size_t)V * sizeof *lr) : NULL;
  if (!w || !lg || (ref && !lr)) { free(w); free(lg); free(lr); return moesz_error_set(err, MOESZ_E_NOMEM, "ppl: out of memory"); }
  moesz_ppl_windows(n, ctx, stride, w, nw);
  double t0 = moesz_time_now(), kl = 0, ref_nll = 0;
  size_t agree = 0;
  int rc = MOESZ_OK;
  moesz_progress pr;
  moesz_progress_begin(&pr, "ppl", (double)nw, progress);
  for (size_t k = 0; k < nw && !rc; k++) {
    size_t len = w[k].end - w[k].begin;
    moesz_engine_reset(e);
    if (!decode) rc = moesz_engine_forward(e, ids + w[k].begin, len, 1, lg, err);
    for (size_t t = 0; decode && t < len && !rc; t++)
      rc = moesz_engine_forward(e, ids + w[k].begin + t, 1, 1, lg + t * (size_t)V, err);
    if (rc) break;
    if (ref) {
      moesz_engine_reset(ref);
      if ((rc = moesz_engine_forward(ref, ids + w[k].begin, len, 1, lr, err))) break;
    }
    for (size_t t = w[k].score_from; t < w[k].end; t++) {
      const float *x = lg + (t - 1 - w[k].begin) * (size_t)V;
      int am;
      double z = lse(x, V, &am);
      out->nll += z - x[ids[t]];
      if (ref) {
        const float *y = lr + (t - 1 - w[k].begin) * (size_t)V;
        int ar;
        double zr = lse(y, V, &ar), s = 0;
        for (int i = 0; i < V; i++) {
          double lp = y[i] - zr;
          s += exp(lp) * (lp - (x[i] - z));
        }
        kl += s;
        ref_nll += zr - y[ids[t]];
        agree += am == ar;
      }
      out->tokens++;
    }
    moesz_progress_step(&pr, (double)k + 1);
  }
  moesz_progress_end(&pr);
  free(w); free(lg); free(lr);
  if (rc) return rc;
  out->ppl = exp(out->nll / (double)out->tokens);
  if (ref) {
    out->kl = kl / (double)out->tokens;
    out->top1 = (double)agree / (double)out->tokens;
    out->ref_ppl = exp(ref_nll / (double)out->tokens);
  }
  out->seconds = moesz_time_now() - t0;
  return MOESZ_OK;
}

int moesz_eval_ppl(moesz_engine *e, moesz_engine *ref, const int32_t *ids, size_t n, size_t ctx, size_t stride,
                   int progress, moesz_ppl_result *out, moesz_error *err) {
  return ppl_run(e, ref, ids, n, ctx, stride, progress, 0, out, err);
}

int moesz_eval_ppl_decode(moesz_engine *e, moesz_engine *ref, const int32_t *ids, size_t n, size_t ctx,
                          size_t stride, int progress, moesz_ppl_result *out, moesz_error *err) {
  return ppl_run(e, ref, ids, n, ctx, stride, progress, 1, out, err);
}

int moesz_eval_loglik(moesz_engine *e, const int32_t *ctx, size_t n_ctx, const int32_t *cont, size_t n_cont,
                      double *ll, int *greedy, moesz_error *err) {
  *ll = 0;
  if (greedy) *greedy = 1;
  if (!n_ctx || !n_cont) return moesz_error_set(err, MOESZ_E_ARG, "loglik: empty context or continuation");
  int V = moesz_engine_vocab(e);
  for (size_t j = 0; j < n_cont; j++)
    if (cont[j] < 0 || cont[j] >= V) return moesz_error_set(err, MOESZ_E_RANGE, "loglik: id %d outside the vocabulary", cont[j]);
  size_t total = n_ctx + n_cont - 1, max = (size_t)moesz_engine_max_ctx(e);
  /* keep the most recent tokens when the pair is longer than the context (as the harness does) */
  size_t drop = total > max ? total - max : 0;
  if (drop >= n_ctx) return moesz_error_set(err, MOESZ_E_RANGE, "loglik: continuation of %zu tokens does not fit the context", n_cont);
  int32_t *in = malloc((total - drop) * sizeof *in);
  float *lg = malloc((total - drop) * (size_t)V * sizeof *lg);
  if (!in || !lg) { free(in); free(lg); return moesz_error_set(err, MOESZ_E_NOMEM, "loglik: out of memory"); }
  memcpy(in, ctx + drop, (n_ctx - drop) * sizeof *in);
  memcpy(in + n_ctx - drop, cont, (n_cont - 1) * sizeof *in);
  moesz_engine_reset(e);
  int rc = moesz_engine_forward(e, in, total - drop, 1, lg, err);
  for (size_t j = 0; !rc && j < n_cont; j++) {
    const float *x = lg + (n_ctx - drop - 1 + j) * (size_t)V;
    int am;
    double z = lse(x, V, &am);
    *ll += x[cont[j]] - z;
    if (greedy && am != cont[j]) *greedy = 0;
  }
  free(in);
  free(lg);
  return rc;
}
