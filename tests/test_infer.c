/* tests/test_infer.c - the forward pass against transformers' logits on every
 * family fixture (tools/make_fixtures.py) and on the real tiny Llama
 * stories260K and BF16/F16 copies of the OLMoE fixture
 * (tools/make_infer_fixtures.py): the 64-token sequence as one batch, token by
 * token and in uneven chunks; AVX2 and scalar kernels, 1 and 2 threads; the
 * expert provider contract; bad input (ids, context overflow, missing
 * tensors, shapes against config); the sampler. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "harness.h"
#include "harness_fixture.h"
#include "moesz/infer.h"
#include "moesz/model.h"
#include "moesz/tensor.h"

#define FIX "tests/fixtures/"

static const char *FAMILIES[] = {"llama", "mixtral", "mixtral_stacked", "qwen2_moe", "qwen3_moe",
                                 "olmoe", "deepseek", "deepseek_v3", "deepseek_v3_plain", "glm4_moe"};
#define NFAM (int)(sizeof FAMILIES / sizeof *FAMILIES)

TEST(families_match_transformers) {
  moesz_engine_opts o = {.threads = 2};
  for (int i = 0; i < NFAM; i++) {
    char d[256];
    snprintf(d, sizeof d, FIX "%s", FAMILIES[i]);
    harness_check_engine(d, &o, 1e-4, 7, 8);
  }
}

TEST(families_scalar_single_thread_grouped) {
  /* scalar kernels, one thread, experts held one at a time */
  moesz_engine_opts o = {.threads = 1, .scalar = 1, .expert_group = 1};
  for (int i = 0; i < NFAM; i++) {
    char d[256];
    snprintf(d, sizeof d, FIX "%s", FAMILIES[i]);
    harness_check_engine(d, &o, 1e-4, 7, 8);
  }
}

TEST(bf16_f16_weights) {
  moesz_engine_opts o = {.threads = 2};
  harness_check_engine(FIX "olmoe_bf16", &o, 1e-4, 7, 8);
  harness_check_engine(FIX "olmoe_f16", &o, 1e-4, 7, 8);
}

TEST(stories260K_real_llama) {
  char d[512];
  snprintf(d, sizeof d, "%s/models/stories260K-llama", harness_data_dir());
  struct stat sb;
  if (stat(d, &sb) != 0) SKIP("%s absent (set MOESZ_DATA)", d);
  moesz_error err = {0};
  moesz_engine *e = NULL;
  moesz_engine_opts o = {.threads = 2};
  int rc = moesz_engine_open(d, &o, &e, &err);
  CHECK_MSG(rc == 0, "%s", err.msg);
  if (rc) return;
  fixture f;
  CHECK(load_fixture(FIX "stories260K", 512, &f) == 0);
  CHECK_EQ_INT(moesz_engine_vocab(e), 512);
  float *lg = malloc(sizeof(float) * (size_t)f.n * 512);
  int bad = 0;
  CHECK(moesz_engine_forward(e, f.tok, (size_t)f.n, 1, lg, &err) == 0);
  double m1 = compare(&f, 0, f.n, lg, &bad);
  moesz_engine_reset(e);
  double m2 = 0;
  for (int t = 0; t < f.n; t++) {
    CHECK(moesz_engine_forward(e, &f.tok[t], 1, 0, lg, &err) == 0);
    double m = compare(&f, t, 1, lg, &bad);
    if (!(m <= m2)) m2 = m;
  }
  printf("# stories260K: max |diff| batch %.2e decode %.2e\n", m1, m2);
  CHECK_MSG(m1 <= 1e-4 && m2 <= 1e-4, "max |diff| %g / %g", m1, m2);
  CHECK_EQ_INT(bad, 0);
  free(lg);
  free(f.logits);
  moesz_engine_close(e);
}

/* ------------------------------------------------------ provider contract */

typedef struct {
  moesz_expert_provider inner;
  int gets, releases, held, max_held, routes, fail_at;
  int bad_layer;      /* layer whose experts are reported with a wrong shape (-1 none) */
  int per[64][64];    /* routed gets per (layer, expert) since the last reset */
} counting;

static int c_get(void *ctx, int layer, int expert, int shared, moesz_expert_mats *out,
                 moesz_error *err) {
  counting *c = ctx;
  if (c->fail_at >= 0 && c->gets == c->fail_at)
    return moesz_error_set(err, MOESZ_E_IO, "injected failure");
  int rc = c->inner.get(c->inner.ctx, layer, expert, shared, out, err);
  if (rc) return rc;
  if (layer == c->bad_layer) out->down.rows--;
  c->gets++;
  if (!shared && layer < 64 && expert >= 0 && expert < 64) c->per[layer][expert]++;
  if (++c->held > c->max_held) c->max_held = c->held;
  return 0;
}
static void c_release(void *ctx, int layer, int expert, int shared) {
  counting *c = ctx;
  c->releases++;
  c->held--;
  c->inner.release(c->inner.ctx, layer, expert, shared);
}
static void c_route(void *ctx, int layer, const int32_t *ex, int n, const float *h, int nt) {
  counting *c = ctx;
  (void)layer; (void)h; (void)nt;
  for (int i = 1; i < n; i++) if (ex[i] <= ex[i - 1]) c->routes = -1000;
  c->routes++;
}

TEST(provider_contract) {
  moesz_error err = {0};
  moesz_model *m = NULL;
  CHECK(moesz_model_open(FIX "olmoe", &m, &err) == 0);
  if (!m) return;
  counting c = {.fail_at = -1, .bad_layer = -1};
  CHECK(moesz_expert_provider_mmap(m, &c.inner, &err) == 0);
  moesz_expert_provider p = {&c, c_get, c_release, c_route, NULL, NULL, 0};
  moesz_engine_opts o = {.threads = 2, .expert_group = 3};
  moesz_engine *e = NULL;
  CHECK(moesz_engine_open_model(m, 0, &p, 0, &o, &e, &err) == 0);
  if (!e) { moesz_model_close(m); return; }
  fixture f;
  CHECK(load_fixture(FIX "olmoe", 256, &f) == 0);
  float *lg = malloc(sizeof(float) * (size_t)f.n * 256);
  CHECK(moesz_engine_forward(e, f.tok, (size_t)f.n, 1, lg, &err) == 0);
  int bad = 0;
  CHECK(compare(&f, 0, f.n, lg, &bad) <= 1e-4);
  CHECK_EQ_INT(bad, 0);
  CHECK(c.gets > 0);
  CHECK_EQ_INT(c.gets, c.releases);
  CHECK_EQ_INT(c.held, 0);
  CHECK(c.max_held <= 3);
  /* each routed expert computed once for the whole 64-token batch */
  int most = 0, distinct = 0;
  for (int L = 0; L < 64; L++)
    for (int x = 0; x < 64; x++) {
      if (c.per[L][x] > most) most = c.per[L][x];
      distinct += c.per[L][x] > 0;
    }
  CHECK_EQ_INT(most, 1);
  CHECK_EQ_INT(distinct, c.gets);
  CHECK_EQ_INT(c.routes, m->cfg.n_layers);   /* once per MoE layer per batch, sorted ids */
  moesz_engine_stats st;
  moesz_engine_stats_get(e, &st);
  CHECK_EQ_INT(st.expert_gets, (uint64_t)c.gets);
  CHECK_EQ_INT(st.expert_tokens, (uint64_t)f.n * m->cfg.top_k * m->cfg.n_layers);
  /* a failing get aborts the forward pass, appends nothing, releases all */
  c.fail_at = c.gets + 5;
  int pos = moesz_engine_pos(e);
  CHECK(moesz_engine_forward(e, f.tok, 4, 0, lg, &err) == MOESZ_E_IO);
  CHECK(strstr(err.msg, "injected failure") != NULL);
  CHECK_EQ_INT(moesz_engine_pos(e), pos);
  CHECK_EQ_INT(c.held, 0);
  /* a provider view whose shape contradicts the config is refused */
  c.fail_at = -1;
  c.bad_layer = 1;
  moesz_engine_reset(e);
  CHECK(moesz_engine_forward(e, f.tok, 2, 0, lg, &err) == MOESZ_E_FORMAT);
  CHECK_MSG(strstr(err.msg, "config says") != NULL, "%s", err.msg);
  CHECK_EQ_INT(c.held, 0);
  /* after errors the engine still computes the right thing */
  c.bad_layer = -1;
  moesz_engine_reset(e);
  CHECK(moesz_engine_forward(e, f.tok, (size_t)f.n, 1, lg, &err) == 0);
  bad = 0;
  CHECK(compare(&f, 0, f.n, lg, &bad) <= 1e-4);
  free(lg);
  free(f.logits);
  moesz_engine_close(e);
  moesz_model_close(m);
}

/* ------------------------------------------------------------ bad input */

TEST(bad_ids_and_context_overflow) {
  moesz_error err = {0};
  moesz_engine *e = NULL;
  moesz_engine_opts o = {.threads = 1, .max_ctx = 8};
  CHECK(moesz_engine_open(FIX "mixtral", &o, &e, &err) == 0);
  if (!e) return;
  CHECK_EQ_INT(moesz_engine_max_ctx(e), 8);
  float lg[256 * 9];
  int32_t ids[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  int32_t bad1[2] = {5, 256}, bad2[1] = {-1};
  CHECK(moesz_engine_forward(e, bad1, 2, 0, lg, &err) == MOESZ_E_RANGE);
  CHECK(strstr(err.msg, "256") && strstr(err.msg, "vocabulary"));
  CHECK(moesz_engine_forward(e, bad2, 1, 0, lg, &err) == MOESZ_E_RANGE);
  CHECK_EQ_INT(moesz_engine_pos(e), 0);
  CHECK(moesz_engine_forward(e, ids, 9, 0, lg, &err) == MOESZ_E_RANGE);
  CHECK(strstr(err.msg, "context") != NULL);
  CHECK(moesz_engine_forward(e, ids, 6, 0, lg, &err) == 0);
  CHECK(moesz_engine_forward(e, ids, 3, 0, lg, &err) == MOESZ_E_RANGE);
  CHECK(moesz_engine_forward(e, ids, 2, 1, lg, &err) == 0);
  CHECK_EQ_INT(moesz_engine_pos(e), 8);
  CHECK(moesz_engine_forward(e, ids, 1, 0, lg, &err) == MOESZ_E_RANGE);
  CHECK(moesz_engine_forward(e, ids, 0, 0, lg, &err) == MOESZ_E_ARG);
  CHECK(moesz_engine_truncate(e, 9, &err) == MOESZ_E_RANGE);
  moesz_engine_close(e);
  /* Switch is compression-only */
  CHECK(moesz_engine_open(FIX "switch", &o, &e, &err) == MOESZ_E_UNSUPPORTED);
  CHECK(moesz_engine_open("tests/fixtures/does-not-exist", &o, &e, &err) != 0);
}

/* Writes DIR/config.json (from src's, with one substring replaced) and
 * DIR/model.safetensors holding src's tensors except `drop`. */
static int make_variant(const char *src, const char *dir, const char *from, const char *to,
                        const char *drop) {
  char p[700];
  mkdir(dir, 0755);
  snprintf(p, sizeof p, "%s/config.json", src);
  FILE *f = fopen(p, "rb");
  if (!f) return -1;
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char out[1 << 16];
  char *hit = from ? strstr(buf, from) : NULL;
  if (hit) {
    size_t pre = (size_t)(hit - buf);
    snprintf(out, sizeof out, "%.*s%s%s", (int)pre, buf, to, hit + strlen(from));
  } else {
    snprintf(out, sizeof out, "%s", buf);
  }
  snprintf(p, sizeof p, "%s/config.json", dir);
  f = fopen(p, "wb");
  if (!f) return -1;
  fputs(out, f);
  fclose(f);
  moesz_st *st = NULL;
  snprintf(p, sizeof p, "%s/model.safetensors", src);
  if (moesz_st_open_file(p, &st, NULL)) return -1;
  snprintf(p, sizeof p, "%s/model.safetensors", dir);
  moesz_stw *w = NULL;
  if (moesz_stw_create(p, &w, NULL)) { moesz_st_close(st); return -1; }
  for (size_t i = 0; i < moesz_st_count(st); i++) {
    const moesz_tensor *t = moesz_st_at(st, i);
    if (drop && !strcmp(t->name, drop)) continue;
    moesz_stw_add_copy(w, t->name, t->dtype, t->ndim, t->shape, t->data, NULL);
  }
  int rc = moesz_stw_commit(w, NULL);
  moesz_st_close(st);
  return rc;
}

static void rm_variant(const char *dir) {
  char p[700];
  snprintf(p, sizeof p, "%s/config.json", dir); unlink(p);
  snprintf(p, sizeof p, "%s/model.safetensors", dir); unlink(p);
  rmdir(dir);
}

TEST(missing_tensors_and_shape_mismatch) {
  char tmpl[] = "/tmp/moesz_infer_XXXXXX";
  char *base = mkdtemp(tmpl);
  CHECK(base != NULL);
  if (!base) return;
  char dir[600];
  moesz_error err = {0};
  moesz_engine *e = NULL;
  static const struct { const char *fam, *from, *to, *drop, *want; int code; } cases[] = {
    {"mixtral", NULL, NULL, "model.layers.1.self_attn.q_proj.weight", "layer 1 q_proj", MOESZ_E_NOTFOUND},
    {"mixtral", NULL, NULL, "model.norm.weight", "final norm", MOESZ_E_NOTFOUND},
    {"mixtral", NULL, NULL, "lm_head.weight", "lm_head", MOESZ_E_NOTFOUND},
    {"qwen2_moe", NULL, NULL, "model.layers.0.self_attn.k_proj.bias", "bias", MOESZ_E_NOTFOUND},
    {"qwen3_moe", NULL, NULL, "model.layers.1.self_attn.k_norm.weight", "k_norm", MOESZ_E_NOTFOUND},
    {"qwen2_moe", NULL, NULL, "model.layers.0.mlp.shared_expert_gate.weight", "shared_expert_gate", MOESZ_E_NOTFOUND},
    {"llama", NULL, NULL, "model.layers.1.mlp.down_proj.weight", "down", 0},
    {"mixtral", "\"num_attention_heads\": 4", "\"num_attention_heads\": 2", NULL, "shape", MOESZ_E_FORMAT},
    {"llama", "\"vocab_size\": 256", "\"vocab_size\": 300", NULL, "shape", MOESZ_E_FORMAT},
    {"mixtral", "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", NULL, "gelu", MOESZ_E_UNSUPPORTED},
    {"mixtral", "\"rope_type\": \"default\"", "\"rope_type\": \"yarn\"", NULL, "yarn", MOESZ_E_UNSUPPORTED},
  };
  float lg[256];
  int32_t id = 3;
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    snprintf(dir, sizeof dir, "%s/v%zu", base, i);
    char src[256];
    snprintf(src, sizeof src, FIX "%s", cases[i].fam);
    CHECK(make_variant(src, dir, cases[i].from, cases[i].to, cases[i].drop) == 0);
    err.msg[0] = 0;
    int rc = moesz_engine_open(dir, NULL, &e, &err);
    if (rc == 0 && cases[i].code == 0) {
      /* a dense MLP matrix is reached lazily through the provider */
      rc = moesz_engine_forward(e, &id, 1, 0, lg, &err);
      moesz_engine_close(e);
      e = NULL;
      CHECK_MSG(rc == MOESZ_E_NOTFOUND, "case %zu: rc %d", i, rc);
    } else if (cases[i].code) {
      CHECK_MSG(rc == cases[i].code, "case %zu: rc %d (%s)", i, rc, err.msg);
    } else {
      CHECK_MSG(rc != 0, "case %zu: opened", i);
    }
    CHECK_MSG(strstr(err.msg, cases[i].want) != NULL, "case %zu: message '%s'", i, err.msg);
    if (e) { moesz_engine_close(e); e = NULL; }
    rm_variant(dir);
  }
  /* a sliding window shorter than the context caps the context (exact within it) */
  snprintf(dir, sizeof dir, "%s/sw", base);
  CHECK(make_variant(FIX "mixtral", dir, "\"sliding_window\": null", "\"sliding_window\": 5", NULL) == 0);
  CHECK(moesz_engine_open(dir, NULL, &e, &err) == 0);
  if (e) {
    CHECK_EQ_INT(moesz_engine_max_ctx(e), 5);
    moesz_engine_close(e);
    e = NULL;
  }
  rm_variant(dir);
  rmdir(base);
}

/* --------------------------------------------------------------- sampler */

TEST(sampler) {
  float lg[5] = {0.5f, 2.0f, 1.0f, 2.0f, -3.0f};
  moesz_sampler s;
  moesz_sampler_init(&s, 0.0f, 1.0f, 1);
  CHECK_EQ_INT(moesz_sampler_sample(&s, lg, 5), 1);      /* greedy: first of the tie */
  CHECK_EQ_INT(moesz_argmax(lg, 0), -1);
  CHECK(moesz_sampler_sample(&s, lg, 0) < 0);
  moesz_sampler_free(&s);
  /* temperature 1: empirical frequencies match softmax */
  moesz_sampler_init(&s, 1.0f, 1.0f, 42);
  int cnt[5] = {0};
  enum { N = 40000 };
  for (int i = 0; i < N; i++) {
    int32_t id = moesz_sampler_sample(&s, lg, 5);
    CHECK(id >= 0 && id < 5);
    if (id >= 0 && id < 5) cnt[id]++;
  }
  double z = 0;
  for (int i = 0; i < 5; i++) z += exp(lg[i]);
  for (int i = 0; i < 5; i++) {
    double p = exp(lg[i]) / z, sd = sqrt(p * (1 - p) / N);
    CHECK_MSG(fabs(cnt[i] / (double)N - p) < 5 * sd + 1e-4, "id %d: %g vs %g", i, cnt[i] / (double)N, p);
  }
  moesz_sampler_free(&s);
  /* same seed, same stream; different seed, different stream */
  moesz_sampler a, b, c;
  moesz_sampler_init(&a, 0.8f, 0.95f, 7);
  moesz_sampler_init(&b, 0.8f, 0.95f, 7);
  moesz_sampler_init(&c, 0.8f, 0.95f, 8);
  int same = 1, diff = 0;
  for (int i = 0; i < 200; i++) {
    int32_t x = moesz_sampler_sample(&a, lg, 5), y = moesz_sampler_sample(&b, lg, 5);
    int32_t zc = moesz_sampler_sample(&c, lg, 5);
    same &= x == y;
    diff += x != zc;
  }
  CHECK(same);
  CHECK(diff > 0);
  moesz_sampler_free(&a); moesz_sampler_free(&b); moesz_sampler_free(&c);
  /* top-p: the nucleus of mass 0.5 holds only the two tied best tokens */
  moesz_sampler_init(&s, 1.0f, 0.5f, 3);
  int only = 1, saw1 = 0, saw3 = 0;
  for (int i = 0; i < 500; i++) {
    int32_t id = moesz_sampler_sample(&s, lg, 5);
    only &= id == 1 || id == 3;
    saw1 |= id == 1;
    saw3 |= id == 3;
  }
  CHECK(only && saw1 && saw3);
  moesz_sampler_free(&s);
  /* tiny top-p: the single most likely token */
  moesz_sampler_init(&s, 5.0f, 1e-6f, 3);
  float lg2[4] = {0, 3, 1, 2};
  for (int i = 0; i < 50; i++) CHECK_EQ_INT(moesz_sampler_sample(&s, lg2, 4), 1);
  moesz_sampler_free(&s);
}

/* ------------------------------------------------------------- the CLI */

TEST(cli_run_greedy_matches_transformers) {
  const char *bin = getenv("MOESZ_BIN");
  if (!bin || !*bin) bin = "build/moesz";
  struct stat sb;
  if (stat(bin, &sb) != 0) SKIP("%s not built", bin);
  FILE *f = fopen(FIX "infer_greedy.json", "rb");
  CHECK(f != NULL);
  if (!f) return;
  static char js[1 << 16];
  size_t n = fread(js, 1, sizeof js - 1, f);
  fclose(f);
  js[n] = 0;
  cJSON *root = cJSON_Parse(js);
  CHECK(root != NULL);
  int fams = 0;
  for (cJSON *fam = root ? root->child : NULL; fam; fam = fam->next) {
    char ids[256] = "", want[512] = "", cmd[1024], out[4096];
    cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(fam, "prompt"))
      snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%d", ids[0] ? "," : "", it->valueint);
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(fam, "generated"))
      snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", want[0] ? " " : "", it->valueint);
    snprintf(cmd, sizeof cmd, "%s run " FIX "%s --prompt-ids %s --print-ids --temperature 0 "
             "--max-tokens 12 --threads 2 2>/dev/null", bin, fam->string, ids);
    int rc = harness_run_cmd(cmd, out, sizeof out);
    CHECK_EQ_INT(rc, 0);
    char *nl = strchr(out, '\n');
    if (nl) *nl = 0;
    CHECK_MSG(!strcmp(out, want), "%s: got '%s' want '%s'", fam->string, out, want);
    fams++;
  }
  CHECK(fams >= 5);
  cJSON_Delete(root);
  /* errors: clear message, non-zero exit */
  static const struct { const char *args, *msg; int code; } bad[] = {
    {"--prompt-ids 1,2,256 --print-ids", "outside the vocabulary", 1},
    {"--prompt-ids 1,-3 --print-ids", "outside the vocabulary", 1},
    {"--prompt-ids 1,2,3,4,5 --print-ids --ctx 4", "context overflow", 1},
    {"--prompt-ids 1,x --print-ids", "bad --prompt-ids", 2},
    {"--prompt-ids 1 --max-tokens -2", "bad --max-tokens", 2},
    {"--print-ids", "exactly one of", 2},
    {"--prompt-ids 1 --frobnicate", "unknown option", 2},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof cmd, "%s run " FIX "mixtral %s 2>&1", bin, bad[i].args);
    int rc = harness_run_cmd(cmd, out, sizeof out);
    CHECK_MSG(rc == bad[i].code, "'%s': exit %d", bad[i].args, rc);
    CHECK_MSG(strstr(out, bad[i].msg) != NULL, "'%s': output '%s'", bad[i].args, out);
  }
  char cmd[1024], out[8192];
  snprintf(cmd, sizeof cmd, "%s run tests/fixtures/nonexistent --prompt-ids 1 --print-ids 2>&1", bin);
  CHECK(harness_run_cmd(cmd, out, sizeof out) == 1);
  /* generation stops at a full context, with ids still printed */
  snprintf(cmd, sizeof cmd, "%s run " FIX "llama --prompt-ids 1,2 --print-ids --temperature 0 "
           "--max-tokens 100 --ctx 6 2>&1", bin);
  CHECK(harness_run_cmd(cmd, out, sizeof out) == 0);
  CHECK(strstr(out, "context full") != NULL);
}

int main(void) {
  RUN(families_match_transformers);
  RUN(families_scalar_single_thread_grouped);
  RUN(bf16_f16_weights);
  RUN(stories260K_real_llama);
  RUN(provider_contract);
  RUN(bad_ids_and_context_overflow);
  RUN(missing_tensors_and_shape_mismatch);
  RUN(sampler);
  RUN(cli_run_greedy_matches_transformers);
  return DONE();
}
