/* eval/task.c - owns multiple-choice and cloze scoring as
 * lm-evaluation-harness (0.4.x) does it: the pair (context, target_delimiter
 * + continuation) is tokenized as whole = enc(context + continuation),
 * ctx = enc(context), cont = whole[len(ctx):] (all trailing whitespace of the
 * context moves to the continuation), BOS as the tokenizer adds it (or as
 * asked), an empty context scored after BOS (EOS without one); acc = argmax
 * of the summed log-likelihood, acc_norm = argmax of loglik / characters of
 * the choice; LAMBADA: greedy exact match and exp(-mean loglik). */
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

int moesz_bos_mode_parse(const char *s, moesz_bos_mode *out) {
  if (!strcmp(s, "auto")) *out = MOESZ_BOS_AUTO;
  else if (!strcmp(s, "yes")) *out = MOESZ_BOS_YES;
  else if (!strcmp(s, "no")) *out = MOESZ_BOS_NO;
  else return MOESZ_E_ARG;
  return MOESZ_OK;
}

/* Bytes of trailing whitespace of s[0..n) as Python's str.rstrip() strips it
 * (str.isspace: ASCII \t\n\v\f\r, \x1c-\x1f, space, and U+0085, U+00A0,
 * U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000). */
static size_t trailing_space(const char *s, size_t n) {
  size_t end = n;
  while (end > 0) {
    size_t b = end - 1;
    while (b > 0 && ((uint8_t)s[b] & 0xc0) == 0x80 && end - b < 4) b--;
    const uint8_t *p = (const uint8_t *)s + b;
    uint32_t cp;
    size_t len = end - b;
    if (len == 1 && p[0] < 0x80) cp = p[0];
    else if (len == 2 && (p[0] & 0xe0) == 0xc0) cp = (uint32_t)(p[0] & 0x1f) << 6 | (p[1] & 0x3f);
    else if (len == 3 && (p[0] & 0xf0) == 0xe0) cp = (uint32_t)(p[0] & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
    else break;   /* 4-byte characters are never whitespace; malformed bytes end the run */
    int ws = (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 ||
             cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
             cp == 0x205f || cp == 0x3000;
    if (!ws) break;
    end = b;
  }
  return n - end;
}

/* enc(s) with BOS as the mode says. */
static int enc_bos(const moesz_tok *t, const char *s, size_t n, moesz_bos_mode bos, int32_t **ids, size_t *k,
                   moesz_error *err) {
  int rc = moesz_tok_encode(t, s, n, bos != MOESZ_BOS_NO, ids, k, err);
  int b = moesz_tok_bos(t);
  if (rc || bos != MOESZ_BOS_YES || b < 0 || (*k > 0 && (*ids)[0] == b)) return rc;
  int32_t *v = realloc(*ids, (*k + 1) * sizeof *v);
  if (!v) return moesz_error_set(err, MOESZ_E_NOMEM, "eval: out of memory");
  memmove(v + 1, v, *k * sizeof *v);
  v[0] = b;
  *ids = v;
  (*k)++;
  return MOESZ_OK;
}

int moesz_eval_encode_pair(const moesz_tok *t, const char *context, const char *continuation, moesz_bos_mode bos,
                           int32_t **ctx, size_t *n_ctx, int32_t **cont, size_t *n_cont, moesz_error *err) {
  *ctx = *cont = NULL;
  *n_ctx = *n_cont = 0;
  size_t cl = strlen(context), tl = strlen(continuation);
  size_t ctx_len = cl - trailing_space(context, cl);
  char *whole = malloc(cl + tl + 1);
  if (!whole) return moesz_error_set(err, MOESZ_E_NOMEM, "eval: out of memory");
  memcpy(whole, context, cl);
  memcpy(whole + cl, continuation, tl + 1);
  int rc;
  if (ctx_len == 0) {
    /* empty context (or whitespace only, which moves to the continuation):
     * the harness's prefix token (BOS, else EOS) is the context */
    int32_t *c = NULL;
    size_t cn = 0;
    rc = moesz_tok_encode(t, whole, cl + tl, 0, &c, &cn, err);
    free(whole);
    if (rc) return rc;
    int32_t prefix = moesz_tok_bos(t) >= 0 ? moesz_tok_bos(t) : moesz_tok_eos(t) >= 0 ? moesz_tok_eos(t) : 0;
    int split = cn > 0 && c[0] == prefix;
    *ctx = malloc(sizeof **ctx);
    *cont = malloc((cn + 1) * sizeof **cont);
    if (!*ctx || !*cont) { free(c); free(*ctx); free(*cont); *ctx = *cont = NULL; return moesz_error_set(err, MOESZ_E_NOMEM, "eval: out of memory"); }
    (*ctx)[0] = prefix;
    *n_ctx = 1;
    memcpy(*cont, c + split, (cn - (size_t)split) * sizeof **cont);
    *n_cont = cn - (size_t)split;
    free(c);
    return MOESZ_OK;
  }
  int32_t *wi = NULL, *ci = NULL;
  size_t wn = 0, cn = 0;
  rc = enc_bos(t, whole, cl + tl, bos, &wi, &wn, err);
  if (!rc) rc = enc_bos(t, context, ctx_len, bos, &ci, &cn, err);
  free(whole);
  if (!rc && wn < cn) rc = moesz_error_set(err, MOESZ_E_FORMAT, "eval: the context encodes to more tokens than context + continuation");
  if (rc) { free(wi); free(ci); return rc; }
  memmove(wi, wi + cn, (wn - cn) * sizeof *wi);
  *ctx = ci;
  *n_ctx = cn;
  *cont = wi;
  *n_cont = wn - cn;
  return MOESZ_OK;
}

/* log P(delim + cont | context) as the harness computes it. */
static int score_pair(moesz_engine *e, const moesz_tok *t, const char *context, const char *delim, const char *cont,
                      moesz_bos_mode bos, double *ll, int *greedy, moesz_error *err) {
  size_t dl = strlen(delim), tl = strlen(cont);
  char *c = malloc(dl + tl + 1);
  if (!c) return moesz_error_set(err, MOESZ_E_NOMEM, "eval: out of memory");
  memcpy(c, delim, dl);
  memcpy(c + dl, cont, tl + 1);
  int32_t *ci = NULL, *wi = NULL;
  size_t cn = 0, wn = 0;
  int rc = moesz_eval_encode_pair(t, context, c, bos, &ci, &cn, &wi, &wn, err);
  free(c);
  if (!rc && wn == 0) rc = moesz_error_set(err, MOESZ_E_FORMAT, "eval: the continuation encodes to no tokens");
  if (!rc && cn == 0) rc = moesz_error_set(err, MOESZ_E_FORMAT, "eval: the context encodes to no tokens");
  if (!rc) rc = moesz_eval_loglik(e, ci, cn, wi, wn, ll, greedy, err);
  free(wi); free(ci);
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

int moesz_eval_task(moesz_engine *e, const moesz_tok *t, const char *path, size_t limit, moesz_bos_mode bos,
                    int progress, moesz_task_result *out, moesz_error *err) {
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
      rc = score_pair(e, t, ctx->valuestring, " ", cont->valuestring, bos, &ll, &greedy, err);
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
        rc = winog ? score_pair(e, t, o->valuestring, " ", cont->valuestring, bos, &ll, NULL, err)
                   : score_pair(e, t, q->valuestring, " ", o->valuestring, bos, &ll, NULL, err);
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
