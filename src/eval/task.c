/* eval/task.c - owns multiple-choice and cloze scoring as
 * lm-evaluation-harness does it: the pair (context, target_delimiter +
 * continuation) is tokenized as whole = enc(context + continuation),
 * ctx = enc(context), cont = whole[len(ctx):] (trailing spaces of the
 * context move to the continuation), no BOS; acc = argmax of the summed
 * log-likelihood, acc_norm = argmax of loglik / characters of the choice;
 * LAMBADA: greedy exact match and exp(-mean loglik). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "moesz/eval.h"

static size_t utf8_chars(const char *s) {
  size_t n = 0;
  for (; *s; s++) n += ((uint8_t)*s & 0xc0) != 0x80;
  return n;
}

/* log P(delim + cont | context) as the harness computes it. */
static int score_pair(moesz_engine *e, const moesz_tok *t, const char *context, const char *delim, const char *cont,
                      double *ll, int *greedy, moesz_error *err) {
  size_t cl = strlen(context), sp = 0;
  while (sp < cl && context[cl - 1 - sp] == ' ') sp++;
  size_t ctx_len = cl - sp, dl = strlen(delim), tl = strlen(cont);
  char *whole = malloc(cl + dl + tl + 1);
  if (!whole) return moesz_error_set(err, MOESZ_E_NOMEM, "eval: out of memory");
  memcpy(whole, context, cl);
  memcpy(whole + cl, delim, dl);
  memcpy(whole + cl + dl, cont, tl + 1);
  int32_t *wi = NULL, *ci = NULL;
  size_t wn = 0, cn = 0;
  int rc = moesz_tok_encode(t, whole, cl + dl + tl, 0, &wi, &wn, err);
  if (!rc) rc = moesz_tok_encode(t, context, ctx_len, 0, &ci, &cn, err);
  if (!rc) {
    if (wn <= cn) rc = moesz_error_set(err, MOESZ_E_FORMAT, "eval: the continuation encodes to no tokens");
    else if (cn == 0) {
      /* empty context: the harness feeds the end-of-text token */
      int32_t eot = moesz_tok_eos(t) >= 0 ? moesz_tok_eos(t) : 0;
      rc = moesz_eval_loglik(e, &eot, 1, wi, wn, ll, greedy, err);
    } else rc = moesz_eval_loglik(e, ci, cn, wi + cn, wn - cn, ll, greedy, err);
  }
  free(whole); free(wi); free(ci);
  return rc;
}

static double stderr_of(const double *x, size_t n) {
  if (n < 2) return 0;
  double m = 0, s = 0;
  for (size_t i = 0; i < n; i++) m += x[i];
  m /= (double)n;
  for (size_t i = 0; i < n; i++) s += (x[i] - m) * (x[i] - m);
  return sqrt(s / (double)(n - 1)) / sqrt((double)n);
}

int moesz_eval_task(moesz_engine *e, const moesz_tok *t, const char *path, size_t limit, int progress,
                    moesz_task_result *out, moesz_error *err) {
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "r");
  if (!f) return moesz_error_set(err, MOESZ_E_NOTFOUND, "%s: cannot open", path);
  size_t cap = 0, nacc = 0, cap_acc = 1024;
  char *line = NULL;
  double *acc = malloc(cap_acc * sizeof *acc), *accn = malloc(cap_acc * sizeof *accn), llsum = 0;
  double t0 = moesz_time_now();
  int rc = MOESZ_OK;
  long lineno = 0;
  size_t total_lines = 0;
  while (getline(&line, &cap, f) > 0) total_lines++;
  rewind(f);
  if (limit && limit < total_lines) total_lines = limit;
  moesz_progress pr;
  moesz_progress_begin(&pr, "eval", (double)total_lines, progress);
  while (!rc && getline(&line, &cap, f) > 0 && (!limit || nacc < limit)) {
    lineno++;
    if (strspn(line, " \t\r\n") == strlen(line)) continue;
    cJSON *j = cJSON_Parse(line);
    if (!j || !cJSON_IsObject(j)) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "%s:%ld: not a JSON object", path, lineno); cJSON_Delete(j); break; }
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(j, "query"), *ch = cJSON_GetObjectItemCaseSensitive(j, "choices");
    const cJSON *co = cJSON_GetObjectItemCaseSensitive(j, "context_options"), *cont = cJSON_GetObjectItemCaseSensitive(j, "continuation");
    const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(j, "context"), *gold = cJSON_GetObjectItemCaseSensitive(j, "gold");
    double a = 0, an = 0;
    if (cJSON_IsString(ctx) && cJSON_IsString(cont)) {             /* cloze: LAMBADA */
      double ll;
      int greedy;
      rc = score_pair(e, t, ctx->valuestring, " ", cont->valuestring, &ll, &greedy, err);
      a = an = greedy;
      llsum += ll;
      out->cloze = 1;
    } else {
      const cJSON *opts = cJSON_IsArray(ch) ? ch : co;
      int n = cJSON_IsArray(opts) ? cJSON_GetArraySize(opts) : 0;
      int winog = opts == co;
      if (n < 2 || !cJSON_IsNumber(gold) || gold->valuedouble < 0 || gold->valuedouble >= n ||
          (!winog && !cJSON_IsString(q)) || (winog && !cJSON_IsString(cont))) {
        rc = moesz_error_set(err, MOESZ_E_FORMAT, "%s:%ld: need {query, choices, gold}, {context_options, continuation, gold} or {context, continuation}", path, lineno);
        cJSON_Delete(j);
        break;
      }
      int best = -1, bestn = -1, k = 0;
      double bl = -INFINITY, bn = -INFINITY;
      for (const cJSON *o = opts->child; o && !rc; o = o->next, k++) {
        if (!cJSON_IsString(o) || !*o->valuestring) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "%s:%ld: empty or non-string choice", path, lineno); break; }
        double ll;
        rc = winog ? score_pair(e, t, o->valuestring, " ", cont->valuestring, &ll, NULL, err)
                   : score_pair(e, t, q->valuestring, " ", o->valuestring, &ll, NULL, err);
        if (rc) break;
        double norm = ll / (double)utf8_chars(winog ? cont->valuestring : o->valuestring);
        if (ll > bl) { bl = ll; best = k; }
        if (norm > bn) { bn = norm; bestn = k; }
      }
      a = best == (int)gold->valuedouble;
      an = bestn == (int)gold->valuedouble;
    }
    cJSON_Delete(j);
    if (rc) { moesz_error_wrap(err, rc, "%s:%ld", path, lineno); break; }
    if (nacc == cap_acc) {
      cap_acc *= 2;
      double *na = realloc(acc, cap_acc * sizeof *na), *nn = na ? realloc(accn, cap_acc * sizeof *nn) : NULL;
      if (na) acc = na;
      if (nn) accn = nn;
      if (!na || !nn) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "eval: out of memory"); break; }
    }
    acc[nacc] = a;
    accn[nacc] = an;
    nacc++;
    moesz_progress_step(&pr, (double)nacc);
  }
  moesz_progress_end(&pr);
  fclose(f);
  free(line);
  if (!rc && nacc == 0) rc = moesz_error_set(err, MOESZ_E_FORMAT, "%s: no items", path);
  if (!rc) {
    out->n = nacc;
    for (size_t i = 0; i < nacc; i++) { out->acc += acc[i]; out->acc_norm += accn[i]; }
    out->acc /= (double)nacc;
    out->acc_norm /= (double)nacc;
    out->acc_stderr = stderr_of(acc, nacc);
    out->acc_norm_stderr = stderr_of(accn, nacc);
    if (out->cloze) out->ppl = exp(-llsum / (double)nacc);
    out->seconds = moesz_time_now() - t0;
  }
  free(acc);
  free(accn);
  return rc;
}
