/* tests/test_bundled.c - the bundled models end to end: the tokenizer and the
 * engine reproduce transformers' greedy continuations recorded in each model
 * card (models/moesz-mix-tiny/card.json and models/moesz-qwen3-deep/card.json,
 * made by tools/model_card.py), from the folder and from a codec-compressed
 * container at a tight bound. */
#include "harness.h"
#include <cjson/cJSON.h>
#include <unistd.h>
#include "moesz.h"
#include "base/util.h"


static int greedy(moesz_engine *e, const int32_t *p, size_t n, int32_t *out, int k) {
  int V = moesz_engine_vocab(e);
  float *lg = malloc(sizeof *lg * (size_t)V);
  moesz_engine_reset(e);
  int rc = moesz_engine_forward(e, p, n, 0, lg, NULL);
  for (int i = 0; !rc && i < k; i++) {
    out[i] = moesz_argmax(lg, V);
    if (i + 1 < k) rc = moesz_engine_forward(e, &out[i], 1, 0, lg, NULL);
  }
  free(lg);
  return rc;
}

static void check_model(const char *model) {
  char path[256];
  char *txt;
  size_t len;
  snprintf(path, sizeof path, "%s/card.json", model);
  CHECK_EQ_INT(moesz_file_read_all(path, 1 << 20, &txt, &len, NULL), MOESZ_OK);
  cJSON *card = cJSON_Parse(txt);
  free(txt);
  moesz_tok *t;
  CHECK_EQ_INT(moesz_tok_load(model, &t, NULL), MOESZ_OK);
  moesz_engine_opts o = {.threads = 2, .max_ctx = 128};
  moesz_engine *e;
  CHECK_EQ_INT(moesz_engine_open(model, &o, &e, NULL), MOESZ_OK);
  /* the same model served from a container at eb = 1e-4 (below bf16's resolution for most weights) */
  char msz[128];
  snprintf(msz, sizeof msz, "/tmp/moesz_bundled_%ld.msz", (long)getpid());
  moesz_model *m;
  CHECK_EQ_INT(moesz_model_open(model, &m, NULL), MOESZ_OK);
  moesz_msz_opts mo = {.method = MOESZ_MSZ_CODEC, .eb = 1e-4, .threads = 1};
  CHECK_EQ_INT(moesz_msz_write(m, msz, &mo, NULL, NULL), MOESZ_OK);
  moesz_model_close(m);
  moesz_engine *c;
  CHECK_EQ_INT(moesz_engine_open(msz, &o, &c, NULL), MOESZ_OK);
  int checked = 0;
  const cJSON *ex = cJSON_GetObjectItemCaseSensitive(card, "examples");
  for (const cJSON *x = ex ? ex->child : NULL; x && t && e && c; x = x->next) {
    const char *prompt = cJSON_GetObjectItemCaseSensitive(x, "prompt")->valuestring;
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(x, "ids");
    int32_t want[64], got[64], gotc[64];
    int n = 0;
    for (const cJSON *i = ids->child; i && n < 64; i = i->next) want[n++] = (int32_t)i->valuedouble;
    int32_t *p;
    size_t np;
    CHECK_EQ_INT(moesz_tok_encode(t, prompt, strlen(prompt), 1, &p, &np, NULL), MOESZ_OK);
    CHECK(np > 0 && p[0] == moesz_tok_bos(t));
    CHECK_EQ_INT(greedy(e, p, np, got, n), MOESZ_OK);
    CHECK_MSG(!memcmp(got, want, sizeof *got * (size_t)n), "prompt %s: continuation differs from transformers", prompt);
    CHECK_EQ_INT(greedy(c, p, np, gotc, n), MOESZ_OK);
    int same = 0;
    while (same < n && gotc[same] == want[same]) same++;
    CHECK_MSG(same >= 8, "prompt %s: compressed model agrees for only %d tokens", prompt, same);
    char *dec;
    size_t dl;
    CHECK_EQ_INT(moesz_tok_decode(t, got, (size_t)n, 0, &dec, &dl, NULL), MOESZ_OK);
    CHECK(!strcmp(dec, cJSON_GetObjectItemCaseSensitive(x, "continuation")->valuestring));
    free(dec);
    free(p);
    checked++;
  }
  CHECK(checked >= 3);
  moesz_engine_close(c);
  moesz_engine_close(e);
  moesz_tok_free(t);
  cJSON_Delete(card);
  unlink(msz);
}

TEST(greedy_continuations_match_transformers) { check_model("models/moesz-mix-tiny"); }

/* the second, deeper model (Qwen3-MoE layout: per-head q/k norm, renormalised top-k) */
TEST(deep_model_matches_transformers) {
  if (access("models/moesz-qwen3-deep/card.json", R_OK)) SKIP("models/moesz-qwen3-deep absent");
  check_model("models/moesz-qwen3-deep");
}

int main(void) {
  RUN(greedy_continuations_match_transformers);
  RUN(deep_model_matches_transformers);
  return DONE();
}
