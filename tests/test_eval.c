/* tests/test_eval.c - perplexity, KL(ref || model), top-1 agreement and
 * continuation log-likelihoods against transformers (tests/fixtures/eval,
 * made by tools/make_eval_fixtures.py); the sliding-window schedule; task
 * files in every format, scored on a fixture model; malformed task files. */
#include "harness.h"
#include "harness_tok.h"
#include <cjson/cJSON.h>
#include <unistd.h>
#include "moesz.h"
#include "base/util.h"

static cJSON *expected(void) {
  char *txt;
  size_t len;
  if (moesz_file_read_all("tests/fixtures/eval/expected.json", 1 << 22, &txt, &len, NULL)) return NULL;
  cJSON *j = cJSON_Parse(txt);
  free(txt);
  return j;
}

static double num(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k)->valuedouble; }

TEST(windows_follow_the_hf_guide) {
  moesz_window w[64];
  /* n = 10, ctx 4, stride 2: windows [0,4) [2,6) [4,8) [6,10); scored 1..3, 4..5, 6..7, 8..9 */
  size_t k = moesz_ppl_windows(10, 4, 2, w, 64);
  CHECK_EQ_INT(k, 4);
  size_t covered = 0;
  for (size_t i = 0; i < k; i++) {
    CHECK(w[i].end - w[i].begin <= 4 && w[i].score_from >= w[i].begin + 1);
    if (i) CHECK_EQ_INT(w[i].score_from, w[i - 1].end);
    covered += w[i].end - w[i].score_from;
  }
  CHECK_EQ_INT(covered, 9);                    /* every token but the first scored once */
  CHECK_EQ_INT(moesz_ppl_windows(10, 4, 4, w, 64), 3);
  CHECK_EQ_INT(moesz_ppl_windows(10, 16, 8, w, 64), 1);
  CHECK_EQ_INT(moesz_ppl_windows(1, 4, 2, w, 64), 0);
  CHECK_EQ_INT(moesz_ppl_windows(10, 4, 5, w, 64), 0);   /* stride > ctx rejected */
  /* stride 1 with ctx 2: each window scores exactly one new token */
  k = moesz_ppl_windows(6, 2, 1, w, 64);
  CHECK_EQ_INT(k, 5);
}

TEST(ppl_kl_top1_match_transformers) {
  cJSON *ex = expected();
  CHECK(ex != NULL);
  if (!ex) return;
  const cJSON *toks = cJSON_GetObjectItemCaseSensitive(ex, "tokens");
  int n = cJSON_GetArraySize(toks);
  int32_t ids[256];
  int k = 0;
  for (const cJSON *t = toks->child; t && k < 256; t = t->next) ids[k++] = (int32_t)t->valuedouble;
  const cJSON *cases = cJSON_GetObjectItemCaseSensitive(ex, "cases");
  for (const cJSON *c = cases->child; c; c = c->next) {
    char mp[128], rp[128];
    snprintf(mp, sizeof mp, "tests/fixtures/%s", cJSON_GetObjectItemCaseSensitive(c, "model")->valuestring);
    snprintf(rp, sizeof rp, "tests/fixtures/%s", cJSON_GetObjectItemCaseSensitive(c, "ref")->valuestring);
    moesz_engine_opts o = {.threads = 1, .max_ctx = 64};
    moesz_engine *m, *r;
    moesz_error e = {0};
    CHECK_EQ_INT(moesz_engine_open(mp, &o, &m, &e), MOESZ_OK);
    CHECK_EQ_INT(moesz_engine_open(rp, &o, &r, &e), MOESZ_OK);
    moesz_ppl_result res;
    CHECK_EQ_INT(moesz_eval_ppl(m, r, ids, (size_t)n, (size_t)num(c, "ctx"), (size_t)num(c, "stride"), 0, &res, &e), MOESZ_OK);
    CHECK_EQ_INT(res.tokens, (long long)num(c, "tokens"));
    CHECK_MSG(fabs(res.ppl / num(c, "ppl") - 1) <= 1e-4, "%s ctx %g: ppl %.6f vs %.6f", mp, num(c, "ctx"), res.ppl, num(c, "ppl"));
    CHECK_MSG(fabs(res.kl - num(c, "kl")) <= 1e-4 * (1 + num(c, "kl")), "kl %.8f vs %.8f", res.kl, num(c, "kl"));
    CHECK_NEAR(res.top1, num(c, "top1"), 1e-9);
    /* the model a token at a time (decode kernels): the same scores up to rounding */
    moesz_ppl_result rd;
    CHECK_EQ_INT(moesz_eval_ppl_decode(m, r, ids, (size_t)n, (size_t)num(c, "ctx"), (size_t)num(c, "stride"), 0, &rd, &e),
                 MOESZ_OK);
    CHECK_EQ_INT(rd.tokens, res.tokens);
    CHECK_MSG(fabs(rd.ppl / num(c, "ppl") - 1) <= 1e-4, "decode: ppl %.6f vs %.6f", rd.ppl, num(c, "ppl"));
    CHECK_MSG(fabs(rd.kl - num(c, "kl")) <= 1e-4 * (1 + num(c, "kl")), "decode: kl %.8f vs %.8f", rd.kl, num(c, "kl"));
    moesz_engine_close(m);
    moesz_engine_close(r);
  }
  const cJSON *ll = cJSON_GetObjectItemCaseSensitive(ex, "loglik");
  int32_t ctx[64], cont[64];
  int nc = 0, nn = 0;
  for (const cJSON *t = cJSON_GetObjectItemCaseSensitive(ll, "ctx")->child; t; t = t->next) ctx[nc++] = (int32_t)t->valuedouble;
  for (const cJSON *t = cJSON_GetObjectItemCaseSensitive(ll, "cont")->child; t; t = t->next) cont[nn++] = (int32_t)t->valuedouble;
  moesz_engine_opts o = {.threads = 1, .max_ctx = 64};
  moesz_engine *m;
  CHECK_EQ_INT(moesz_engine_open("tests/fixtures/mixtral", &o, &m, NULL), MOESZ_OK);
  double v;
  int greedy;
  CHECK_EQ_INT(moesz_eval_loglik(m, ctx, (size_t)nc, cont, (size_t)nn, &v, &greedy, NULL), MOESZ_OK);
  CHECK_NEAR(v, num(ll, "ll"), 1e-3);
  CHECK_EQ_INT(greedy, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ll, "greedy")));
  moesz_error e = {0};
  int32_t bad = 100000;
  CHECK_EQ_INT(moesz_eval_loglik(m, ctx, (size_t)nc, &bad, 1, &v, NULL, &e), MOESZ_E_RANGE);
  moesz_ppl_result res;
  CHECK_EQ_INT(moesz_eval_ppl(m, NULL, ctx, 1, 16, 8, 0, &res, &e), MOESZ_E_ARG);
  CHECK_EQ_INT(moesz_eval_ppl(m, NULL, ctx, 10, 16, 17, 0, &res, &e), MOESZ_E_ARG);
  moesz_engine_close(m);
  cJSON_Delete(ex);
}

/* A tiny byte-level tokenizer whose ids fit the fixtures' vocabulary (256):
 * each byte is its own token (GPT-2 byte map), no merges. */
static moesz_tok *tiny_tok(void) {
  cJSON *root = cJSON_CreateObject();
  harness_byte_model(root);
  cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer"), *dec = cJSON_AddObjectToObject(root, "decoder");
  cJSON_AddStringToObject(pre, "type", "ByteLevel");
  cJSON_AddStringToObject(dec, "type", "ByteLevel");
  char *json = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  moesz_tok *t = NULL;
  moesz_error e = {0};
  if (moesz_tok_load_json(json, strlen(json), &t, &e)) fprintf(stderr, "  tiny tokenizer: %s\n", e.msg);
  free(json);
  return t;
}

TEST(model_against_itself_has_zero_kl) {
  moesz_engine_opts o = {.threads = 1, .max_ctx = 64};
  moesz_engine *m, *r;
  CHECK_EQ_INT(moesz_engine_open("tests/fixtures/olmoe", &o, &m, NULL), MOESZ_OK);
  CHECK_EQ_INT(moesz_engine_open("tests/fixtures/olmoe", &o, &r, NULL), MOESZ_OK);
  int32_t ids[40];
  for (int i = 0; i < 40; i++) ids[i] = (i * 31 + 7) % 256;
  moesz_ppl_result res;
  CHECK_EQ_INT(moesz_eval_ppl(m, r, ids, 40, 16, 8, 0, &res, NULL), MOESZ_OK);
  CHECK(fabs(res.kl) < 1e-9 && res.top1 == 1.0 && fabs(res.ppl - res.ref_ppl) < 1e-9);
  moesz_engine_close(m);
  moesz_engine_close(r);
}

TEST(task_formats_score_and_bad_files_fail) {
  moesz_tok *t = tiny_tok();
  CHECK(t != NULL);
  if (!t) return;
  moesz_engine_opts o = {.threads = 1, .max_ctx = 128};
  moesz_engine *m;
  CHECK_EQ_INT(moesz_engine_open("tests/fixtures/mixtral", &o, &m, NULL), MOESZ_OK);
  char path[128];
  snprintf(path, sizeof path, "/tmp/moesz_eval_%ld.jsonl", (long)getpid());
  const char *good[] = {
    "{\"query\": \"Question: which?\", \"choices\": [\"alpha\", \"beta gamma\", \"delta\"], \"gold\": 1}\n"
    "{\"query\": \"The sky is\", \"choices\": [\"blue.\", \"green.\"], \"gold\": 0}\n",
    "{\"context_options\": [\"Anna beat Bob so Anna\", \"Anna beat Bob so Bob\"], \"continuation\": \"lost.\", \"gold\": 1}\n",
    "{\"context\": \"one two three four\", \"continuation\": \"five\"}\n{\"context\": \"a b c\", \"continuation\": \"d\"}\n",
  };
  for (int i = 0; i < 3; i++) {
    FILE *f = fopen(path, "w");
    fputs(good[i], f);
    fclose(f);
    moesz_task_result r;
    moesz_error e = {0};
    CHECK_EQ_INT(moesz_eval_task(m, t, path, 0, MOESZ_BOS_AUTO, 0, &r, &e), MOESZ_OK);
    CHECK(r.n >= 1 && r.acc >= 0 && r.acc <= 1 && r.cloze == (i == 2));
    if (i == 2) CHECK(r.ppl > 1);
  }
  const char *bad[] = {"not json\n", "{\"query\": \"q\", \"choices\": [\"a\"], \"gold\": 0}\n",
                       "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 5}\n",
                       "{\"query\": \"q\", \"choices\": [\"a\", \"\"], \"gold\": 0}\n", "\n\n"};
  for (int i = 0; i < 5; i++) {
    FILE *f = fopen(path, "w");
    fputs(bad[i], f);
    fclose(f);
    moesz_task_result r;
    moesz_error e = {0};
    CHECK_MSG(moesz_eval_task(m, t, path, 0, MOESZ_BOS_AUTO, 0, &r, &e) == MOESZ_E_FORMAT, "accepted bad file %d", i);
    if (i == 0) CHECK(strstr(e.msg, ":1") != NULL);        /* names the line */
  }
  unlink(path);
  moesz_engine_close(m);
  moesz_tok_free(t);
}

int main(void) {
  RUN(windows_follow_the_hf_guide);
  RUN(ppl_kl_top1_match_transformers);
  RUN(model_against_itself_has_zero_kl);
  RUN(task_formats_score_and_bad_files_fail);
  return DONE();
}
