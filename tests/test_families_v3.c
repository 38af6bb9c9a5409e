/* tests/test_families_v3.c - DeepSeek-V3 (multi-head latent attention) and
 * GLM-4.5 (tools/make_fixtures.py, transformers as the oracle): config keys
 * and their refusals, tensor roles, parameter counts against the stored
 * tensors, the sigmoid group router on hand-worked cases, the latent cache
 * size, greedy ids identical to transformers for 32 tokens from the folder
 * and from a lossless container, and container logits bit-identical to the
 * folder's (prompt batch and decode). Logits against transformers, batch /
 * token by token / chunks, run in test_infer.c with the other families. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include "harness.h"
#include "harness_engine.h"
#include "infer/mla.h"
#include "moesz.h"

#define FIX "tests/fixtures/"
static const char *FAMS[] = {"deepseek_v3", "deepseek_v3_plain", "glm4_moe"};
#define NF (int)(sizeof FAMS / sizeof *FAMS)
static char TMP[64];

static const char *bin(void) {
  const char *b = getenv("MOESZ_BIN");
  return b && *b ? b : "build/moesz";
}

static cJSON *load_json(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  return cJSON_Parse(buf);
}

static int parse(const char *json, moesz_config *c, moesz_error *e) {
  return moesz_config_parse(json, strlen(json), c, e);
}

TEST(config_keys) {
  moesz_config c;
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_config_load(FIX "deepseek_v3", &c, &e), 0);
  CHECK_EQ_INT(c.arch, MOESZ_ARCH_DEEPSEEK_V3);
  CHECK_EQ_INT(c.q_lora_rank, 16);
  CHECK_EQ_INT(c.kv_lora_rank, 12);
  CHECK_EQ_INT(c.qk_nope_dim, 8);
  CHECK_EQ_INT(c.qk_rope_dim, 4);
  CHECK_EQ_INT(c.v_head_dim, 6);
  CHECK_EQ_INT(c.head_dim, 12);
  CHECK_EQ_INT(c.rope_interleave, 1);
  CHECK_EQ_INT(c.score_sigmoid, 1);
  CHECK_EQ_INT(c.n_group, 4);
  CHECK_EQ_INT(c.topk_group, 2);
  CHECK_NEAR(c.routed_scale, 2.5, 0);
  CHECK_EQ_INT(c.yarn, 1);
  CHECK_NEAR(c.yarn_factor, 4.0, 0);
  CHECK_NEAR(c.yarn_mscale_all_dim, 0.8, 1e-7);
  CHECK_EQ_INT(c.yarn_orig_max_pos, 32);
  CHECK_EQ_INT(c.is_moe[0], 0);
  CHECK_EQ_INT(c.is_moe[1], 1);
  CHECK_EQ_INT(c.shared_intermediate, 12);
  CHECK_EQ_INT(moesz_config_load(FIX "deepseek_v3_plain", &c, &e), 0);
  CHECK_EQ_INT(c.q_lora_rank, 0);
  CHECK_EQ_INT(c.rope_interleave, 0);
  CHECK_EQ_INT(c.yarn, 0);
  CHECK_EQ_INT(c.norm_topk_prob, 0);
  CHECK_EQ_INT(c.shared_intermediate, 16);
  CHECK_EQ_INT(moesz_config_load(FIX "glm4_moe", &c, &e), 0);
  CHECK_EQ_INT(c.arch, MOESZ_ARCH_GLM4_MOE);
  CHECK_EQ_INT(c.head_dim, 16);
  CHECK_EQ_INT(c.rotary_dim, 8);
  CHECK_EQ_INT(c.qk_norm, 1);
  CHECK_EQ_INT(c.qkv_bias, 1);
  CHECK_EQ_INT(c.n_group, 2);
  CHECK_EQ_INT(c.topk_group, 1);
  CHECK_EQ_INT(c.kv_lora_rank, 0);
  /* transformers' defaults when keys are absent */
  CHECK_EQ_INT(parse("{\"architectures\":[\"DeepseekV3ForCausalLM\"],\"num_hidden_layers\":4,"
                     "\"hidden_size\":64,\"vocab_size\":10,\"num_attention_heads\":2}", &c, &e), 0);
  CHECK_EQ_INT(c.kv_lora_rank, 512);
  CHECK_EQ_INT(c.q_lora_rank, 1536);
  CHECK_EQ_INT(c.n_experts, 256);
  CHECK_EQ_INT(c.first_k_dense, 3);
  CHECK_EQ_INT(c.is_moe[2] + 2 * c.is_moe[3], 2);
  CHECK_EQ_INT(c.n_group * 100 + c.topk_group, 804);
  /* the Hub's DeepSeek-V3 config.json form: rope_scaling with "type" */
  CHECK_EQ_INT(parse("{\"architectures\":[\"DeepseekV3ForCausalLM\"],\"num_hidden_layers\":4,"
                     "\"hidden_size\":64,\"vocab_size\":10,\"num_attention_heads\":2,\"max_position_embeddings\":"
                     "163840,\"rope_scaling\":{\"beta_fast\":32,\"beta_slow\":1,\"factor\":40,\"mscale\":1.0,"
                     "\"mscale_all_dim\":1.0,\"original_max_position_embeddings\":4096,\"type\":\"yarn\"}}",
                     &c, &e), 0);
  CHECK_EQ_INT(c.yarn, 1);
  CHECK_NEAR(c.yarn_factor, 40, 0);
  CHECK_EQ_INT(c.yarn_orig_max_pos, 4096);
  CHECK_EQ_INT(c.yarn_truncate, 1);
  CHECK_NEAR(c.yarn_mscale, 1.0, 0);
  CHECK_EQ_INT(parse("{\"architectures\":[\"Glm4MoeForCausalLM\"],\"num_hidden_layers\":2,"
                     "\"hidden_size\":64,\"vocab_size\":10,\"num_attention_heads\":2}", &c, &e), 0);
  CHECK_EQ_INT(c.rotary_dim, 16);       /* 0.5 of head_dim 32 */
  CHECK_EQ_INT(c.qk_norm, 0);
  CHECK_NEAR(c.routed_scale, 1.0, 0);
}

TEST(config_refusals) {
  static const struct { const char *extra, *msg; int code; } bad[] = {
    {"\"n_routed_experts\":8,\"n_group\":3", "groups", MOESZ_E_FORMAT},
    {"\"n_routed_experts\":8,\"n_group\":2,\"topk_group\":3", "topk_group", MOESZ_E_FORMAT},
    {"\"n_routed_experts\":8,\"n_group\":8,\"topk_group\":2", "fewer than 2", MOESZ_E_FORMAT},
    {"\"n_routed_experts\":8,\"n_group\":4,\"topk_group\":1,\"num_experts_per_tok\":3", "hold fewer",
     MOESZ_E_FORMAT},
    {"\"n_routed_experts\":8,\"num_experts_per_tok\":2,\"n_group\":1,\"topk_group\":1,"
     "\"scoring_func\":\"softmax\"", "sigmoid", MOESZ_E_UNSUPPORTED},
    {"\"attention_bias\":true", "attention_bias", MOESZ_E_UNSUPPORTED},
    {"\"qk_rope_head_dim\":5", "odd", MOESZ_E_FORMAT},
    {"\"rope_scaling\":{\"type\":\"yarn\",\"beta_fast\":32}", "factor", MOESZ_E_FORMAT},
    {"\"rope_scaling\":{\"type\":\"yarn\",\"factor\":-1}", "factor", MOESZ_E_FORMAT},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char js[512];
    snprintf(js, sizeof js, "{\"architectures\":[\"DeepseekV3ForCausalLM\"],\"num_hidden_layers\":2,"
             "\"hidden_size\":64,\"vocab_size\":10,\"num_attention_heads\":2,%s}", bad[i].extra);
    moesz_config c;
    moesz_error e = {0};
    int rc = parse(js, &c, &e);
    CHECK_MSG(rc == bad[i].code, "%s: rc %d", bad[i].extra, rc);
    CHECK_MSG(strstr(e.msg, bad[i].msg) != NULL, "%s: '%s'", bad[i].extra, e.msg);
  }
  moesz_config c;
  moesz_error e = {0};
  CHECK_EQ_INT(parse("{\"architectures\":[\"Glm4MoeForCausalLM\"],\"num_hidden_layers\":2,\"hidden_size\":64,"
                     "\"vocab_size\":10,\"num_attention_heads\":2,\"partial_rotary_factor\":0.02}", &c, &e),
               MOESZ_E_FORMAT);
  CHECK(strstr(e.msg, "rotary") != NULL);
}

TEST(roles_and_counts) {
  for (int i = 0; i < NF; i++) {
    char d[128];
    snprintf(d, sizeof d, FIX "%s", FAMS[i]);
    moesz_model *m = NULL;
    moesz_error e = {0};
    int rc = moesz_model_open(d, &m, &e);
    CHECK_MSG(rc == 0, "%s: %s", d, e.msg);
    if (rc) continue;
    int64_t other = 0, n = (int64_t)moesz_st_count(m->st), by[MOESZ_ROLE_COUNT] = {0};
    for (int64_t t = 0; t < n; t++) {
      by[m->roles[t].role]++;
      if (m->roles[t].role == MOESZ_ROLE_OTHER) {
        other++;
        fprintf(stderr, "  %s: unclassified %s\n", d, moesz_st_at(m->st, (size_t)t)->name);
      }
    }
    CHECK_EQ_INT(other, 0);
    int nl = m->cfg.n_layers, moe = m->cfg.n_moe_layers;
    CHECK_EQ_INT(by[MOESZ_ROLE_ROUTER_BIAS], moe);
    CHECK_EQ_INT(by[MOESZ_ROLE_SHARED_EXPERT], 3 * moe);
    CHECK_EQ_INT(by[MOESZ_ROLE_DENSE_MLP], 3 * (nl - moe));
    if (m->cfg.kv_lora_rank > 0) {
      int ql = m->cfg.q_lora_rank > 0;
      CHECK_EQ_INT(by[MOESZ_ROLE_ATTN_LATENT], nl * (2 + 2 * ql));
      CHECK_EQ_INT(by[MOESZ_ROLE_LATENT_NORM], nl * (1 + ql));
      CHECK_EQ_INT(by[MOESZ_ROLE_ATTN_Q], ql ? 0 : nl);
      CHECK_EQ_INT(by[MOESZ_ROLE_ATTN_K], 0);
    } else {
      CHECK_EQ_INT(by[MOESZ_ROLE_Q_NORM], nl);
      CHECK_EQ_INT(by[MOESZ_ROLE_ATTN_Q_BIAS], nl);
      CHECK_EQ_INT(by[MOESZ_ROLE_ATTN_O_BIAS], 0);
    }
    /* counts from the config == counts of the stored tensors == the oracle's */
    moesz_counts a, b;
    moesz_model_count(m, &a);
    moesz_config_count(&m->cfg, &b);
    CHECK_EQ_INT(a.total_params, b.total_params);
    CHECK_EQ_INT(a.expert_params, b.expert_params);
    for (int r = 0; r < MOESZ_ROLE_COUNT; r++) CHECK_MSG(a.params[r] == b.params[r], "%s role %s", d, moesz_role_name(r));
    char p[160];
    snprintf(p, sizeof p, "%s/expected.json", d);
    cJSON *x = load_json(p);
    CHECK(x != NULL);
    if (x) {
      CHECK_EQ_INT(a.total_params, (int64_t)cJSON_GetObjectItem(x, "params_stored")->valuedouble);
      CHECK_EQ_INT(a.expert_params, (int64_t)cJSON_GetObjectItem(x, "params_experts")->valuedouble);
      cJSON_Delete(x);
    }
    moesz_model_close(m);
  }
}

TEST(sigmoid_group_router) {
  /* 8 experts in 4 groups of 2; the biased choice differs from the raw
   * scores, and group masking drops expert 0 although its score is high */
  float lg[8] = {2.0f, -1.0f, 0.5f, 0.4f, 1.0f, 3.0f, 0.0f, 0.1f};
  float bias[8] = {0, 0, 0.3f, 0.3f, 0, 0, -0.5f, 0};
  float tmp[24], w[4], s[8];
  int32_t idx[4];
  for (int i = 0; i < 8; i++) s[i] = 1.0f / (1.0f + expf(-lg[i]));
  /* group scores (sum of the two best s + bias): g0 1.15, g1 1.82, g2 1.68, g3 0.53: keep g1, g2 */
  CHECK(s[2] + s[3] + 0.6f > s[4] + s[5] && s[4] + s[5] > s[0] + s[1]);
  CHECK(s[0] > s[4]);                     /* expert 0 would be chosen without the groups */
  moesz_route_sigmoid_groups(lg, bias, 8, 4, 2, 4, 1, 2.5f, idx, w, tmp);
  /* choice scores in g1, g2: s5 0.95, s2 + 0.3 0.92, s3 + 0.3 0.90, s4 0.73 */
  CHECK_EQ_INT(idx[0], 5);
  CHECK_EQ_INT(idx[1], 2);
  CHECK_EQ_INT(idx[2], 3);
  CHECK_EQ_INT(idx[3], 4);
  float sum = s[5] + s[2] + s[3] + s[4];
  CHECK_NEAR(w[0], 2.5f * s[5] / sum, 1e-6);
  CHECK_NEAR(w[1], 2.5f * s[2] / sum, 1e-6);   /* weights are the unbiased scores */
  /* one group, no renormalisation, scale 1: plain top-k of s + bias */
  moesz_route_sigmoid_groups(lg, bias, 8, 1, 1, 2, 0, 1.0f, idx, w, tmp);
  CHECK_EQ_INT(idx[0], 5);
  CHECK_EQ_INT(idx[1], 2);
  CHECK_NEAR(w[1], s[2], 1e-7);
  /* ties: the lower index first (groups and experts) */
  float z[4] = {0, 0, 0, 0};
  moesz_route_sigmoid_groups(z, NULL, 4, 2, 1, 2, 1, 1.0f, idx, w, tmp);
  CHECK_EQ_INT(idx[0], 0);
  CHECK_EQ_INT(idx[1], 1);
  CHECK_NEAR(w[0], 0.5, 1e-7);
}

TEST(latent_cache_bytes) {
  moesz_config c;
  moesz_error e = {0};
  /* DeepSeek-V3's published shape: 512 + 64 floats vs 128 heads x (128 + 64 + 128) */
  CHECK_EQ_INT(parse("{\"architectures\":[\"DeepseekV3ForCausalLM\"],\"num_hidden_layers\":61,"
                     "\"hidden_size\":7168,\"vocab_size\":129280,\"num_attention_heads\":128}", &c, &e), 0);
  CHECK_EQ_INT(moesz_mla_cache_bytes(&c), 576 * 4);
  CHECK_EQ_INT(moesz_mla_expanded_bytes(&c), 128 * 320 * 4);
}

/* greedy ids of `moesz run` on src (a folder or container) */
static void run_greedy(const char *src, const cJSON *gr, const char *what) {
  char ids[256] = "", want[1024] = "", cmd[1024];
  static char out[8192];
  const cJSON *it;
  int ngen = 0;
  cJSON_ArrayForEach(it, cJSON_GetObjectItem(gr, "prompt"))
    snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%d", ids[0] ? "," : "", it->valueint);
  cJSON_ArrayForEach(it, cJSON_GetObjectItem(gr, "generated")) {
    snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", want[0] ? " " : "", it->valueint);
    ngen++;
  }
  CHECK_MSG(ngen >= 8, "%s: only %d greedy ids in the fixture", what, ngen);
  snprintf(cmd, sizeof cmd, "%s run %s --prompt-ids %s --print-ids --temperature 0 --max-tokens 32 "
           "--threads 2 2>/dev/null", bin(), src, ids);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  char *nl = strchr(out, '\n');
  if (nl) *nl = 0;
  CHECK_MSG(!strcmp(out, want), "%s: got '%s' want '%s'", what, out, want);
}

TEST(greedy_and_lossless_container) {
  if (access(bin(), X_OK) != 0) SKIP("%s not built", bin());
  for (int i = 0; i < NF; i++) {
    char d[128], p[160], msz[160];
    snprintf(d, sizeof d, FIX "%s", FAMS[i]);
    snprintf(p, sizeof p, "%s/expected.json", d);
    snprintf(msz, sizeof msz, "%s/%s.msz", TMP, FAMS[i]);
    cJSON *x = load_json(p);
    CHECK(x != NULL);
    if (!x) continue;
    CHECK_EQ_INT(harness_write_msz(d, MOESZ_MSZ_ZSTD, msz), MOESZ_OK);
    run_greedy(d, cJSON_GetObjectItem(x, "greedy"), d);
    run_greedy(msz, cJSON_GetObjectItem(x, "greedy"), msz);
    cJSON_Delete(x);
    /* logits from the container == the folder's, bit for bit (prompt of 24, then decode) */
    moesz_engine_opts eo = {.threads = 2, .max_ctx = 64};
    moesz_engine *a = NULL, *b = NULL;
    moesz_error e = {0};
    CHECK_EQ_INT(moesz_engine_open(d, &eo, &a, &e), 0);
    CHECK_EQ_INT(moesz_engine_open(msz, &eo, &b, &e), 0);
    if (!a || !b) { moesz_engine_close(a); moesz_engine_close(b); continue; }
    int V = moesz_engine_vocab(a), N = 48;
    int32_t tok[48];
    for (int t = 0; t < N; t++) tok[t] = (int32_t)((t * 37 + 11) % V);
    float *la = harness_logits(a, tok, N), *lb = harness_logits(b, tok, N);
    CHECK(la && lb);
    if (la && lb) {
      size_t diff = 0;
      for (size_t k = 0; k < (size_t)N * (size_t)V; k++) diff += la[k] != lb[k];
      CHECK_MSG(diff == 0, "%s: %zu logits differ between folder and container", d, diff);
    }
    free(la); free(lb);
    moesz_engine_close(a);
    moesz_engine_close(b);
    unlink(msz);
  }
}

TEST(missing_mla_tensor_is_named) {
  /* a copy of the fixture without one layer's kv_b_proj: a clear error naming it */
  moesz_st *st = NULL;
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_st_open(FIX "deepseek_v3/model.safetensors", &st, &e), 0);
  if (!st) return;
  char out[160];
  snprintf(out, sizeof out, "%s/broken", TMP);
  mkdir(out, 0755);
  char path[200];
  snprintf(path, sizeof path, "%s/model.safetensors", out);
  moesz_stw *w = NULL;
  CHECK_EQ_INT(moesz_stw_create(path, &w, &e), 0);
  for (size_t i = 0; w && i < moesz_st_count(st); i++) {
    const moesz_tensor *t = moesz_st_at(st, i);
    if (!strcmp(t->name, "model.layers.1.self_attn.kv_b_proj.weight")) continue;
    CHECK_EQ_INT(moesz_stw_add_copy(w, t->name, t->dtype, t->ndim, t->shape, t->data, &e), 0);
  }
  if (w) CHECK_EQ_INT(moesz_stw_commit(w, &e), 0);
  moesz_st_close(st);
  char cmd[512], o2[256];
  snprintf(cmd, sizeof cmd, "cp " FIX "deepseek_v3/config.json %s/", out);
  CHECK_EQ_INT(harness_run_cmd(cmd, o2, sizeof o2), 0);
  moesz_engine *en = NULL;
  CHECK(moesz_engine_open(out, NULL, &en, &e) == MOESZ_E_NOTFOUND);
  CHECK_MSG(strstr(e.msg, "model.layers.1.self_attn.kv_b_proj.weight") != NULL, "'%s'", e.msg);
  moesz_engine_close(en);
  snprintf(cmd, sizeof cmd, "rm -rf %s", out);
  harness_run_cmd(cmd, o2, sizeof o2);
}

int main(void) {
  snprintf(TMP, sizeof TMP, "/tmp/moesz_v3_XXXXXX");
  if (!mkdtemp(TMP)) return 1;
  RUN(config_keys);
  RUN(config_refusals);
  RUN(roles_and_counts);
  RUN(sigmoid_group_router);
  RUN(latent_cache_bytes);
  RUN(greedy_and_lossless_container);
  RUN(missing_mla_tensor_is_named);
  rmdir(TMP);
  return DONE();
}
