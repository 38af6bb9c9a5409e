/* tests/test_model.c - src/model against the fixtures tools/make_fixtures.py
 * wrote with transformers: config parsing of every family, classification of
 * every tensor name, parameter counts == what transformers reports
 * (expected.json), expert views in the per-expert, stacked and transposed
 * stacked layouts (bit-identical to each other), matrix statistics == numpy,
 * bad configs and bad checkpoints, and `moesz inspect` end to end. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/util.h"
#include "harness.h"
#include "moesz/model.h"

#define FIX "tests/fixtures/"
static const char *FAMILIES[] = {"mixtral", "mixtral_stacked", "qwen2_moe", "qwen3_moe",
                                 "qwen3_moe_bf16", "olmoe", "deepseek", "llama", "switch"};
#define NFAM (sizeof FAMILIES / sizeof FAMILIES[0])

static cJSON *load_expected(const char *fam) {
  char path[256], *text = NULL;
  size_t len;
  snprintf(path, sizeof path, FIX "%s/expected.json", fam);
  if (moesz_file_read_all(path, 1 << 20, &text, &len, NULL)) return NULL;
  cJSON *j = cJSON_ParseWithLength(text, len);
  free(text);
  return j;
}

static double jnum(const cJSON *j, const char *k) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, k);
  return it && cJSON_IsNumber(it) ? it->valuedouble : -1e300;
}

static char g_tmp[256];
static const char *tmpdir(void) {
  if (!g_tmp[0]) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/moesz_model_%ld", (long)getpid());
    mkdir(g_tmp, 0700);
  }
  return g_tmp;
}

static void rm_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char p[512];
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (moesz_path_is_dir(p)) rm_tree(p);
    else unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

static int write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  fputs(text, f);
  return fclose(f);
}

static int copy_file(const char *src, const char *dst) {
  char *t = NULL;
  size_t n;
  if (moesz_file_read_all(src, 1 << 24, &t, &n, NULL)) return -1;
  FILE *f = fopen(dst, "wb");
  int rc = f && fwrite(t, 1, n, f) == n ? 0 : -1;
  if (f) fclose(f);
  free(t);
  return rc;
}

/* ---- config parsing -------------------------------------------------------- */

TEST(config_families) {
  moesz_config c;
  moesz_error e = {0};
  for (size_t f = 0; f < NFAM; f++) {
    char dir[256];
    snprintf(dir, sizeof dir, FIX "%s", FAMILIES[f]);
    int rc = moesz_config_load(dir, &c, &e);
    CHECK_MSG(rc == MOESZ_OK, "%s: %s", FAMILIES[f], e.msg);
    if (rc) continue;
    cJSON *x = load_expected(FAMILIES[f]);
    CHECK(x != NULL);
    if (!x) continue;
    CHECK_MSG(!strcmp(c.arch_name, cJSON_GetObjectItem(x, "architecture")->valuestring), "%s %s",
              FAMILIES[f], c.arch_name);
    const cJSON *im = cJSON_GetObjectItem(x, "is_moe");
    CHECK_EQ_INT(cJSON_GetArraySize(im), c.n_layers);
    int nm = 0;
    for (int i = 0; i < c.n_layers && i < cJSON_GetArraySize(im); i++) {
      CHECK_MSG(c.is_moe[i] == cJSON_IsTrue(cJSON_GetArrayItem(im, i)), "%s layer %d", FAMILIES[f], i);
      nm += c.is_moe[i];
    }
    CHECK_EQ_INT(c.n_moe_layers, nm);
    CHECK_EQ_INT(c.vocab, (int)jnum(x, "vocab"));
    cJSON_Delete(x);
  }
  /* family quirks, as make_fixtures.py configured them */
  CHECK_EQ_INT(moesz_config_load(FIX "mixtral", &c, NULL), MOESZ_OK);
  CHECK_EQ_INT(c.arch, MOESZ_ARCH_MIXTRAL);
  CHECK_EQ_INT(c.n_heads, 4); CHECK_EQ_INT(c.n_kv_heads, 2); CHECK_EQ_INT(c.head_dim, 8);
  CHECK_EQ_INT(c.n_experts, 6); CHECK_EQ_INT(c.top_k, 2); CHECK_EQ_INT(c.moe_intermediate, 24);
  CHECK_EQ_INT(c.norm_topk_prob, 1); CHECK_NEAR(c.rope_theta, 1e6, 0); CHECK_NEAR(c.norm_eps, 1e-5, 1e-12);
  CHECK_EQ_INT(c.tie_embeddings, 0); CHECK_EQ_INT(c.bos_id, 1); CHECK_EQ_INT(c.eos_id, 2);
  CHECK_EQ_INT(c.max_pos, 128);

  CHECK_EQ_INT(moesz_config_load(FIX "qwen2_moe", &c, NULL), MOESZ_OK);
  CHECK_EQ_INT(c.arch, MOESZ_ARCH_QWEN2_MOE);
  CHECK_EQ_INT(c.n_shared, 1); CHECK_EQ_INT(c.has_shared_gate, 1); CHECK_EQ_INT(c.shared_intermediate, 24);
  CHECK_EQ_INT(c.moe_intermediate, 16); CHECK_EQ_INT(c.intermediate, 40); CHECK_EQ_INT(c.norm_topk_prob, 0);
  CHECK_EQ_INT(c.qkv_bias, 1); CHECK_EQ_INT(c.n_experts, 4); CHECK_EQ_INT(c.top_k, 2);
  CHECK_EQ_INT(c.is_moe[0], 1); CHECK_EQ_INT(c.is_moe[1], 0); CHECK_EQ_INT(c.is_moe[2], 1);
  CHECK_NEAR(c.rope_theta, 10000, 0); CHECK_NEAR(c.norm_eps, 1e-6, 1e-13);

  CHECK_EQ_INT(moesz_config_load(FIX "qwen3_moe", &c, NULL), MOESZ_OK);
  CHECK_EQ_INT(c.head_dim, 16); CHECK_EQ_INT(c.qk_norm, 1); CHECK_EQ_INT(c.norm_topk_prob, 1);
  CHECK_EQ_INT(c.n_experts, 6); CHECK_EQ_INT(c.top_k, 3); CHECK_EQ_INT(c.qkv_bias, 0);

  CHECK_EQ_INT(moesz_config_load(FIX "olmoe", &c, NULL), MOESZ_OK);
  CHECK_EQ_INT(c.qk_norm, 2); CHECK_NEAR(c.clip_qkv, 1.5, 0); CHECK_EQ_INT(c.n_experts, 8);
  CHECK_EQ_INT(c.moe_intermediate, 16); CHECK_EQ_INT(c.norm_topk_prob, 0); CHECK_EQ_INT(c.n_kv_heads, 4);

  CHECK_EQ_INT(moesz_config_load(FIX "deepseek", &c, NULL), MOESZ_OK);
  CHECK_EQ_INT(c.arch, MOESZ_ARCH_DEEPSEEK); CHECK_EQ_INT(c.first_k_dense, 1); CHECK_EQ_INT(c.n_shared, 2);
  CHECK_EQ_INT(c.shared_intermediate, 32); CHECK_EQ_INT(c.norm_topk_prob, 0); CHECK_EQ_INT(c.has_shared_gate, 0);
  CHECK_EQ_INT(c.is_moe[0], 0); CHECK_EQ_INT(c.is_moe[1], 1); CHECK_EQ_INT(c.intermediate, 48);

  CHECK_EQ_INT(moesz_config_load(FIX "llama", &c, NULL), MOESZ_OK);
  CHECK_EQ_INT(c.tie_embeddings, 1); CHECK_EQ_INT(c.n_experts, 0); CHECK_EQ_INT(c.n_moe_layers, 0);
  CHECK_EQ_INT(c.intermediate, 64); CHECK_NEAR(c.rope_theta, 10000, 0);

  CHECK_EQ_INT(moesz_config_load(FIX "switch", &c, NULL), MOESZ_OK);
  CHECK_EQ_INT(c.n_layers, 4); CHECK_EQ_INT(c.n_enc_layers, 2); CHECK_EQ_INT(c.top_k, 1);
  CHECK_EQ_INT(c.tie_embeddings, 1); CHECK_EQ_INT(c.head_dim, 8); CHECK_EQ_INT(c.moe_intermediate, 24);
}

/* Defaults when keys are absent, transformers 4.x spellings. */
TEST(config_defaults) {
  moesz_config c;
  moesz_error e = {0};
  const char *mix = "{\"architectures\":[\"MixtralForCausalLM\"],\"num_hidden_layers\":2,"
                    "\"hidden_size\":64,\"intermediate_size\":96,\"vocab_size\":100,"
                    "\"num_attention_heads\":8,\"eos_token_id\":[5,6]}";
  CHECK_EQ_INT(moesz_config_parse(mix, strlen(mix), &c, &e), MOESZ_OK);
  CHECK_EQ_INT(c.n_kv_heads, 8); CHECK_EQ_INT(c.n_experts, 8); CHECK_EQ_INT(c.top_k, 2);
  CHECK_NEAR(c.rope_theta, 1e6, 0); CHECK_EQ_INT(c.eos_id, 5); CHECK_EQ_INT(c.bos_id, -1);
  CHECK_EQ_INT(c.head_dim, 8);
  const char *q = "{\"model_type\":\"qwen3_moe\",\"num_hidden_layers\":4,\"hidden_size\":64,"
                  "\"vocab_size\":100,\"num_attention_heads\":4,\"rope_theta\":1000000,"
                  "\"decoder_sparse_step\":2,\"mlp_only_layers\":[3],\"num_experts\":16,"
                  "\"head_dim\":null}";
  CHECK_EQ_INT(moesz_config_parse(q, strlen(q), &c, &e), MOESZ_OK);
  CHECK_EQ_INT(c.arch, MOESZ_ARCH_QWEN3_MOE); CHECK_EQ_INT(c.top_k, 8); CHECK_EQ_INT(c.moe_intermediate, 768);
  CHECK_EQ_INT(c.head_dim, 16); CHECK_NEAR(c.rope_theta, 1e6, 0);
  CHECK_EQ_INT(c.is_moe[0], 0); CHECK_EQ_INT(c.is_moe[1], 1); CHECK_EQ_INT(c.is_moe[2], 0);
  CHECK_EQ_INT(c.is_moe[3], 0);
  const char *ds = "{\"architectures\":[\"DeepseekForCausalLM\"],\"num_hidden_layers\":5,"
                   "\"hidden_size\":64,\"vocab_size\":100,\"num_attention_heads\":4,"
                   "\"n_routed_experts\":8,\"num_experts_per_tok\":2,\"first_k_dense_replace\":1,"
                   "\"moe_layer_freq\":2,\"n_shared_experts\":2,\"moe_intermediate_size\":10}";
  CHECK_EQ_INT(moesz_config_parse(ds, strlen(ds), &c, &e), MOESZ_OK);
  CHECK_EQ_INT(c.is_moe[0], 0); CHECK_EQ_INT(c.is_moe[1], 0); CHECK_EQ_INT(c.is_moe[2], 1);
  CHECK_EQ_INT(c.is_moe[3], 0); CHECK_EQ_INT(c.is_moe[4], 1); CHECK_EQ_INT(c.shared_intermediate, 20);
}

TEST(config_bad) {
  static const struct { const char *json; int code; const char *needle; } B[] = {
    {"{\"architectures\":[\"GPT2LMHeadModel\"],\"model_type\":\"gpt2\"}", MOESZ_E_UNSUPPORTED, "GPT2LMHeadModel"},
    {"{\"model_type\":\"bert\"}", MOESZ_E_UNSUPPORTED, "bert"},
    {"{}", MOESZ_E_FORMAT, "architectures"},
    {"[1,2]", MOESZ_E_FORMAT, "object"},
    {"{\"architectures\":[\"LlamaForCausalLM\"]", MOESZ_E_FORMAT, "JSON"},
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":2,\"vocab_size\":10,"
     "\"num_attention_heads\":2,\"intermediate_size\":4}", MOESZ_E_FORMAT, "hidden_size"},
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":2,\"hidden_size\":-8,"
     "\"vocab_size\":10,\"num_attention_heads\":2,\"intermediate_size\":4}", MOESZ_E_FORMAT, "hidden_size"},
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":2,\"hidden_size\":1e999,"
     "\"vocab_size\":10,\"num_attention_heads\":2,\"intermediate_size\":4}", MOESZ_E_FORMAT, "hidden_size"},
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":2,\"hidden_size\":NaN,"
     "\"vocab_size\":10,\"num_attention_heads\":2,\"intermediate_size\":4}", MOESZ_E_FORMAT, "\"hidden_size\":NaN"},
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":1000,\"hidden_size\":8,"
     "\"vocab_size\":10,\"num_attention_heads\":2,\"intermediate_size\":4}", MOESZ_E_FORMAT, "num_hidden_layers"},
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":2,\"hidden_size\":8,"
     "\"vocab_size\":10,\"num_attention_heads\":2,\"intermediate_size\":4e12}", MOESZ_E_FORMAT, "intermediate_size"},
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":2.5,\"hidden_size\":8,"
     "\"vocab_size\":10,\"num_attention_heads\":2,\"intermediate_size\":4}", MOESZ_E_FORMAT, "num_hidden_layers"},
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":\"2\",\"hidden_size\":8,"
     "\"vocab_size\":10,\"num_attention_heads\":2,\"intermediate_size\":4}", MOESZ_E_FORMAT, "num_hidden_layers"},
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":2,\"hidden_size\":8,"
     "\"vocab_size\":10,\"num_attention_heads\":3,\"intermediate_size\":4}", MOESZ_E_FORMAT, "num_attention_heads"},
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":2,\"hidden_size\":8,"
     "\"vocab_size\":10,\"num_attention_heads\":4,\"num_key_value_heads\":3,\"intermediate_size\":4}",
     MOESZ_E_FORMAT, "num_key_value_heads"},
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":2,\"hidden_size\":8,"
     "\"vocab_size\":10,\"num_attention_heads\":2,\"intermediate_size\":4,\"rms_norm_eps\":-1}",
     MOESZ_E_FORMAT, "rms_norm_eps"},
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":2,\"hidden_size\":8,"
     "\"vocab_size\":10,\"num_attention_heads\":2,\"intermediate_size\":4,"
     "\"rope_parameters\":{\"rope_theta\":-5}}", MOESZ_E_FORMAT, "rope_theta"},
    {"{\"architectures\":[\"MixtralForCausalLM\"],\"num_hidden_layers\":2,\"hidden_size\":8,"
     "\"vocab_size\":10,\"num_attention_heads\":2,\"intermediate_size\":4,\"num_local_experts\":2,"
     "\"num_experts_per_tok\":3}", MOESZ_E_FORMAT, "num_experts_per_tok"},
    {"{\"architectures\":[\"Qwen2MoeForCausalLM\"],\"num_hidden_layers\":2,\"hidden_size\":8,"
     "\"vocab_size\":10,\"num_attention_heads\":2,\"mlp_only_layers\":[5]}", MOESZ_E_FORMAT, "mlp_only_layers"},
    {"{\"architectures\":[\"Qwen2MoeForCausalLM\"],\"num_hidden_layers\":2,\"hidden_size\":8,"
     "\"vocab_size\":10,\"num_attention_heads\":2,\"norm_topk_prob\":\"yes\"}", MOESZ_E_FORMAT, "norm_topk_prob"},
    {"{\"architectures\":[\"DeepseekForCausalLM\"],\"num_hidden_layers\":2,\"hidden_size\":8,"
     "\"vocab_size\":10,\"num_attention_heads\":2,\"scoring_func\":\"sigmoid\"}", MOESZ_E_UNSUPPORTED, "sigmoid"},
    {"{\"architectures\":[\"SwitchTransformersForConditionalGeneration\"],\"num_layers\":200,"
     "\"num_decoder_layers\":200}", MOESZ_E_FORMAT, "num_decoder_layers"},
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":2,\"hidden_size\":8,"
     "\"vocab_size\":10,\"num_attention_heads\":2,\"intermediate_size\":4,\"eos_token_id\":-3}",
     MOESZ_E_FORMAT, "eos_token_id"},
    {"{\"architectures\":\"LlamaForCausalLM\"}", MOESZ_E_FORMAT, "architectures"},
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":2,\"hidden_size\":8,"
     "\"vocab_size\":10,\"num_attention_heads\":2,\"intermediate_size\":4} {}", MOESZ_E_FORMAT, "trailing"},
  };
  for (size_t i = 0; i < sizeof B / sizeof B[0]; i++) {
    moesz_config c;
    moesz_error e = {0};
    int rc = moesz_config_parse(B[i].json, strlen(B[i].json), &c, &e);
    CHECK_MSG(rc == B[i].code, "case %zu: rc %d (%s)", i, rc, e.msg);
    CHECK_MSG(strstr(e.msg, B[i].needle) != NULL, "case %zu: message \"%s\" lacks \"%s\"", i, e.msg,
              B[i].needle);
  }
  moesz_error e = {0};
  moesz_config c;
  CHECK_EQ_INT(moesz_config_load("/nonexistent/moesz", &c, &e), MOESZ_E_NOTFOUND);
  CHECK(strstr(e.msg, "/nonexistent/moesz") != NULL);
}

/* ---- classification and counts ----------------------------------------------- */

TEST(classify_every_tensor) {
  for (size_t f = 0; f < NFAM; f++) {
    char dir[256];
    snprintf(dir, sizeof dir, FIX "%s", FAMILIES[f]);
    moesz_model *m;
    moesz_error e = {0};
    int rc = moesz_model_open(dir, &m, &e);
    CHECK_MSG(rc == MOESZ_OK, "%s: %s", FAMILIES[f], e.msg);
    if (rc) continue;
    const moesz_config *c = &m->cfg;
    size_t n = moesz_st_count(m->st);
    int64_t per_role[MOESZ_ROLE_COUNT] = {0}, stacked = 0;
    for (size_t i = 0; i < n; i++) {
      const moesz_tensor_role *r = &m->roles[i];
      CHECK_MSG(r->role != MOESZ_ROLE_OTHER, "%s: %s unclassified", FAMILIES[f], moesz_st_at(m->st, i)->name);
      per_role[r->role]++;
      stacked += r->stacked;
      if (r->role == MOESZ_ROLE_EXPERT) {
        CHECK(r->layer >= 0 && c->is_moe[r->layer]);
        CHECK(r->stacked ? r->expert == -1 : (r->expert >= 0 && r->expert < c->n_experts));
      }
    }
    int nmat = c->arch == MOESZ_ARCH_SWITCH ? 2 : 3;
    if (!strcmp(FAMILIES[f], "mixtral_stacked")) {
      CHECK_EQ_INT(per_role[MOESZ_ROLE_EXPERT], 2 * c->n_moe_layers);
      CHECK_EQ_INT(stacked, 2 * c->n_moe_layers);
    } else {
      CHECK_EQ_INT(per_role[MOESZ_ROLE_EXPERT], (int64_t)nmat * c->n_experts * c->n_moe_layers);
      CHECK_EQ_INT(stacked, 0);
    }
    CHECK_EQ_INT(per_role[MOESZ_ROLE_ROUTER], c->n_moe_layers);
    if (c->arch != MOESZ_ARCH_SWITCH) {
      CHECK_EQ_INT(per_role[MOESZ_ROLE_ATTN_Q], c->n_layers);
      CHECK_EQ_INT(per_role[MOESZ_ROLE_ATTN_NORM], c->n_layers);
      CHECK_EQ_INT(per_role[MOESZ_ROLE_FFN_NORM], c->n_layers);
      CHECK_EQ_INT(per_role[MOESZ_ROLE_DENSE_MLP], 3 * (c->n_layers - c->n_moe_layers));
      CHECK_EQ_INT(per_role[MOESZ_ROLE_LM_HEAD], c->tie_embeddings ? 0 : 1);
      CHECK_EQ_INT(per_role[MOESZ_ROLE_Q_NORM], c->qk_norm ? c->n_layers : 0);
      CHECK_EQ_INT(per_role[MOESZ_ROLE_ATTN_Q_BIAS], c->qkv_bias ? c->n_layers : 0);
    } else {
      CHECK_EQ_INT(per_role[MOESZ_ROLE_ATTN_Q], 6);  /* 4 self + 2 cross */
      CHECK_EQ_INT(per_role[MOESZ_ROLE_ATTN_REL_BIAS], 2);
      CHECK_EQ_INT(per_role[MOESZ_ROLE_CROSS_ATTN_NORM], 2);
    }
    CHECK_EQ_INT(per_role[MOESZ_ROLE_SHARED_EXPERT], c->n_shared ? 3 * c->n_moe_layers : 0);
    CHECK_EQ_INT(per_role[MOESZ_ROLE_SHARED_GATE], c->has_shared_gate ? c->n_moe_layers : 0);
    cJSON *x = load_expected(FAMILIES[f]);
    CHECK_EQ_INT((int64_t)n, (int64_t)jnum(x, "n_tensors"));
    moesz_counts k;
    moesz_model_count(m, &k);
    CHECK_EQ_INT(k.total_params, (int64_t)jnum(x, "params_total"));
    CHECK_EQ_INT(k.expert_params, (int64_t)jnum(x, "params_experts"));
    CHECK_EQ_INT(k.other_params, (int64_t)jnum(x, "params_other"));
    const cJSON *dt = cJSON_GetObjectItem(x, "dtype");
    int bf16 = dt && cJSON_IsString(dt) && !strcmp(dt->valuestring, "BF16");
    CHECK_EQ_INT(k.total_bytes, (bf16 ? 2 : 4) * k.total_params);
    int64_t sum = 0;
    for (int r = 0; r < MOESZ_ROLE_COUNT; r++) sum += k.params[r];
    CHECK_EQ_INT(sum, k.total_params);
    cJSON_Delete(x);
    moesz_model_close(m);
  }
}

TEST(classify_names) {
  moesz_config c;
  CHECK_EQ_INT(moesz_config_load(FIX "mixtral", &c, NULL), MOESZ_OK);
  static const struct { const char *name; moesz_role role; int layer, expert; moesz_mat mat; int stacked; } N[] = {
    {"model.layers.1.block_sparse_moe.experts.5.w2.weight", MOESZ_ROLE_EXPERT, 1, 5, MOESZ_MAT_DOWN, 0},
    {"model.layers.0.block_sparse_moe.experts.0.w3.weight", MOESZ_ROLE_EXPERT, 0, 0, MOESZ_MAT_UP, 0},
    {"model.layers.0.mlp.experts.gate_up_proj", MOESZ_ROLE_EXPERT, 0, -1, MOESZ_MAT_GATE_UP, 1},
    {"model.layers.1.mlp.experts.down_proj.weight", MOESZ_ROLE_EXPERT, 1, -1, MOESZ_MAT_DOWN, 1},
    {"model.layers.1.mlp.gate.weight", MOESZ_ROLE_ROUTER, 1, -1, MOESZ_MAT_NONE, 0},
    {"model.layers.1.block_sparse_moe.gate.weight", MOESZ_ROLE_ROUTER, 1, -1, MOESZ_MAT_NONE, 0},
    {"model.layers.2.block_sparse_moe.gate.weight", MOESZ_ROLE_OTHER, -1, -1, MOESZ_MAT_NONE, 0},
    {"model.layers.0.block_sparse_moe.experts.6.w1.weight", MOESZ_ROLE_OTHER, -1, -1, MOESZ_MAT_NONE, 0},
    {"model.layers.0.block_sparse_moe.experts.01.w1.weight", MOESZ_ROLE_OTHER, -1, -1, MOESZ_MAT_NONE, 0},
    {"model.layers.0.block_sparse_moe.experts.0.gate_proj.weight", MOESZ_ROLE_OTHER, -1, -1, MOESZ_MAT_NONE, 0},
    {"model.layers.0.self_attn.q_proj.bias", MOESZ_ROLE_OTHER, -1, -1, MOESZ_MAT_NONE, 0},
    {"model.layers.0.self_attn.o_proj.weight", MOESZ_ROLE_ATTN_O, 0, -1, MOESZ_MAT_NONE, 0},
    {"model.layers.-1.input_layernorm.weight", MOESZ_ROLE_OTHER, -1, -1, MOESZ_MAT_NONE, 0},
    {"model.layers.99999999999.input_layernorm.weight", MOESZ_ROLE_OTHER, -1, -1, MOESZ_MAT_NONE, 0},
    {"model.embed_tokens.weight", MOESZ_ROLE_EMBED, -1, -1, MOESZ_MAT_NONE, 0},
    {"lm_head.weight", MOESZ_ROLE_LM_HEAD, -1, -1, MOESZ_MAT_NONE, 0},
    {"", MOESZ_ROLE_OTHER, -1, -1, MOESZ_MAT_NONE, 0},
    {"model.layers.", MOESZ_ROLE_OTHER, -1, -1, MOESZ_MAT_NONE, 0},
  };
  for (size_t i = 0; i < sizeof N / sizeof N[0]; i++) {
    moesz_tensor_role r;
    moesz_tensor_classify(&c, N[i].name, &r);
    CHECK_MSG(r.role == N[i].role && r.layer == N[i].layer && r.expert == N[i].expert &&
              r.mat == N[i].mat && r.stacked == N[i].stacked,
              "%s -> %s L%d E%d mat %d stacked %d", N[i].name, moesz_role_name(r.role), r.layer,
              r.expert, (int)r.mat, r.stacked);
  }
  CHECK(!strcmp(moesz_role_name(MOESZ_ROLE_SHARED_GATE), "shared_gate"));
  CHECK(!strcmp(moesz_role_name(MOESZ_ROLE_CROSS_ATTN_NORM), "cross_attn_norm"));
  CHECK(!strcmp(moesz_arch_name(MOESZ_ARCH_DEEPSEEK), "DeepseekForCausalLM"));
}

TEST(tensor_by_role) {
  moesz_model *m = NULL;
  moesz_error e = {0};
  CHECK_MSG(moesz_model_open(FIX "llama", &m, &e) == MOESZ_OK, "%s", e.msg);
  if (m) {
    const moesz_tensor *t = moesz_model_tensor(m, MOESZ_ROLE_LM_HEAD, -1);
    CHECK(t && !strcmp(t->name, "model.embed_tokens.weight")); /* tied */
    CHECK(!strcmp(moesz_model_expert_layout(m), "none"));
    t = moesz_model_tensor(m, MOESZ_ROLE_ATTN_K, 1);
    CHECK(t && !strcmp(t->name, "model.layers.1.self_attn.k_proj.weight"));
    CHECK(moesz_model_tensor(m, MOESZ_ROLE_ROUTER, 0) == NULL);
    CHECK(moesz_model_tensor(m, MOESZ_ROLE_ATTN_K, 2) == NULL);
    CHECK(moesz_model_tensor(m, MOESZ_ROLE_ATTN_K, -2) == NULL);
    CHECK(moesz_model_tensor(m, MOESZ_ROLE_COUNT, 0) == NULL);
    moesz_model_close(m);
  }
  CHECK_MSG(moesz_model_open(FIX "qwen2_moe", &m, &e) == MOESZ_OK, "%s", e.msg);
  if (m) {
    const moesz_tensor *t = moesz_model_tensor(m, MOESZ_ROLE_LM_HEAD, -1);
    CHECK(t && !strcmp(t->name, "lm_head.weight"));
    t = moesz_model_tensor(m, MOESZ_ROLE_SHARED_GATE, 2);
    CHECK(t && !strcmp(t->name, "model.layers.2.mlp.shared_expert_gate.weight"));
    t = moesz_model_tensor(m, MOESZ_ROLE_ATTN_V_BIAS, 0);
    CHECK(t && !strcmp(t->name, "model.layers.0.self_attn.v_proj.bias"));
    CHECK(moesz_model_tensor(m, MOESZ_ROLE_ROUTER, 1) == NULL); /* dense layer */
    t = moesz_model_tensor(m, MOESZ_ROLE_FINAL_NORM, -1);
    CHECK(t && !strcmp(t->name, "model.norm.weight"));
    moesz_model_close(m);
  }
  CHECK_MSG(moesz_model_open(FIX "olmoe", &m, &e) == MOESZ_OK, "%s", e.msg);
  if (m) {
    const moesz_tensor *t = moesz_model_tensor(m, MOESZ_ROLE_Q_NORM, 1);
    CHECK(t && t->shape[0] == 32);  /* whole projection */
    moesz_model_close(m);
  }
  CHECK_MSG(moesz_model_open(FIX "switch", &m, &e) == MOESZ_OK, "%s", e.msg);
  if (m) {
    const moesz_tensor *t = moesz_model_tensor(m, MOESZ_ROLE_ATTN_Q, 2);
    CHECK(t && !strcmp(t->name, "decoder.block.0.layer.0.SelfAttention.q.weight"));
    moesz_model_close(m);
  }
}

/* ---- expert views ------------------------------------------------------------ */

static int views_equal(const moesz_matview *a, const moesz_matview *b) {
  if (a->rows != b->rows || a->cols != b->cols) return 0;
  size_t n = (size_t)(a->rows * a->cols);
  float *x = malloc(n * 4), *y = malloc(n * 4);
  int ok = x && y && !moesz_matview_to_f32(a, x, NULL) && !moesz_matview_to_f32(b, y, NULL) &&
           !memcmp(x, y, n * 4);
  free(x);
  free(y);
  return ok;
}

/* Every (layer, expert, matrix) of two models must give identical values. */
static void compare_models(const moesz_model *a, const moesz_model *b) {
  const moesz_config *c = &a->cfg;
  int checked = 0;
  for (int L = 0; L < c->n_layers; L++)
    for (int e = 0; e < (c->is_moe[L] ? c->n_experts : 1); e++)
      for (int mt = MOESZ_MAT_GATE; mt <= MOESZ_MAT_DOWN; mt++) {
        moesz_matview va, vb;
        moesz_error ea = {0}, eb = {0};
        int ra = moesz_model_expert(a, L, e, 0, (moesz_mat)mt, &va, &ea);
        int rb = moesz_model_expert(b, L, e, 0, (moesz_mat)mt, &vb, &eb);
        CHECK_MSG(ra == MOESZ_OK && rb == MOESZ_OK, "L%d E%d M%d: %s / %s", L, e, mt, ea.msg, eb.msg);
        if (ra || rb) continue;
        int64_t want_r = mt == MOESZ_MAT_DOWN ? c->hidden : c->moe_intermediate;
        CHECK_EQ_INT(va.rows, want_r);
        CHECK_MSG(views_equal(&va, &vb), "L%d E%d M%d differ", L, e, mt);
        checked++;
      }
  CHECK_EQ_INT(checked, 3 * c->n_experts * c->n_layers);
}

TEST(expert_views_legacy_vs_stacked) {
  moesz_model *a = NULL, *b = NULL;
  moesz_error e = {0};
  CHECK_MSG(moesz_model_open(FIX "mixtral", &a, &e) == MOESZ_OK, "%s", e.msg);
  CHECK_MSG(moesz_model_open(FIX "mixtral_stacked", &b, &e) == MOESZ_OK, "%s", e.msg);
  if (!a || !b) { moesz_model_close(a); moesz_model_close(b); return; }
  /* per-expert view == the tensor's own data */
  moesz_matview v;
  CHECK_EQ_INT(moesz_model_expert(a, 1, 4, 0, MOESZ_MAT_DOWN, &v, NULL), MOESZ_OK);
  const moesz_tensor *t = moesz_st_find(a->st, "model.layers.1.block_sparse_moe.experts.4.w2.weight");
  CHECK(t && v.data == t->data && v.rows == 32 && v.cols == 24 && v.ld == 24 && !v.transposed);
  /* stacked: expert 4 gate is rows [0, 24) of gate_up_proj[4], up rows [24, 48) */
  const moesz_tensor *gu = moesz_st_find(b->st, "model.layers.1.mlp.experts.gate_up_proj");
  CHECK(gu && gu->ndim == 3 && gu->shape[0] == 6 && gu->shape[1] == 48 && gu->shape[2] == 32);
  CHECK_EQ_INT(moesz_model_expert(b, 1, 4, 0, MOESZ_MAT_UP, &v, NULL), MOESZ_OK);
  if (gu) CHECK(v.data == (const char *)gu->data + (4 * 48 * 32 + 24 * 32) * 4 && v.ld == 32);
  CHECK_EQ_INT(moesz_model_expert(b, 1, 4, 0, MOESZ_MAT_GATE_UP, &v, NULL), MOESZ_OK);
  CHECK(v.rows == 48 && v.cols == 32);
  CHECK_EQ_INT(moesz_model_expert(a, 1, 4, 0, MOESZ_MAT_GATE_UP, &v, NULL), MOESZ_E_NOTFOUND);
  compare_models(a, b);
  CHECK(!strcmp(moesz_model_expert_layout(a), "per-expert"));
  CHECK(!strcmp(moesz_model_expert_layout(b), "stacked"));
  /* errors */
  CHECK_EQ_INT(moesz_model_expert(a, 2, 0, 0, MOESZ_MAT_GATE, &v, &e), MOESZ_E_RANGE);
  CHECK_EQ_INT(moesz_model_expert(a, 0, 6, 0, MOESZ_MAT_GATE, &v, &e), MOESZ_E_RANGE);
  CHECK_EQ_INT(moesz_model_expert(a, 0, 0, 1, MOESZ_MAT_GATE, &v, &e), MOESZ_E_NOTFOUND);
  CHECK_EQ_INT(moesz_model_expert(a, 0, 0, 0, MOESZ_MAT_NONE, &v, &e), MOESZ_E_ARG);
  moesz_model_close(a);
  moesz_model_close(b);
}

/* Writes mixtral's experts as transposed stacked tensors ([E, d, 2n] and
 * [E, n, d], the layout some Hub checkpoints use) with the library's writer
 * and checks every view against the per-expert original. */
TEST(expert_views_transposed_stacked) {
  moesz_model *a = NULL;
  moesz_error e = {0};
  CHECK_MSG(moesz_model_open(FIX "mixtral", &a, &e) == MOESZ_OK, "%s", e.msg);
  if (!a) return;
  const moesz_config *c = &a->cfg;
  char dir[300], path[400];
  snprintf(dir, sizeof dir, "%s/tstack", tmpdir());
  mkdir(dir, 0700);
  snprintf(path, sizeof path, "%s/config.json", dir);
  CHECK_EQ_INT(copy_file(FIX "mixtral/config.json", path), 0);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  moesz_stw *w;
  CHECK_EQ_INT(moesz_stw_create(path, &w, &e), MOESZ_OK);
  int64_t E = c->n_experts, n = c->moe_intermediate, d = c->hidden;
  for (size_t i = 0; i < moesz_st_count(a->st); i++) {
    const moesz_tensor *t = moesz_st_at(a->st, i);
    if (a->roles[i].role == MOESZ_ROLE_EXPERT) continue;
    CHECK_EQ_INT(moesz_stw_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &e), MOESZ_OK);
  }
  float *gu = malloc((size_t)(E * d * 2 * n) * 4), *dn = malloc((size_t)(E * n * d) * 4);
  float *tmp = malloc((size_t)(2 * n * d) * 4);
  for (int L = 0; L < c->n_layers; L++) {
    for (int x = 0; x < E; x++) {
      moesz_matview v;
      for (int k = 0; k < 2; k++) { /* gate rows then up rows: element (r, col) -> [x][col][k*n + r] */
        moesz_model_expert(a, L, x, 0, k ? MOESZ_MAT_UP : MOESZ_MAT_GATE, &v, NULL);
        moesz_matview_to_f32(&v, tmp, NULL);
        for (int64_t r = 0; r < n; r++)
          for (int64_t col = 0; col < d; col++)
            gu[(x * d + col) * 2 * n + k * n + r] = tmp[r * d + col];
      }
      moesz_model_expert(a, L, x, 0, MOESZ_MAT_DOWN, &v, NULL); /* [d, n] -> [x][col n][row d] */
      moesz_matview_to_f32(&v, tmp, NULL);
      for (int64_t r = 0; r < d; r++)
        for (int64_t col = 0; col < n; col++) dn[(x * n + col) * d + r] = tmp[r * n + col];
    }
    char name[128];
    int64_t s1[3] = {E, d, 2 * n}, s2[3] = {E, n, d};
    snprintf(name, sizeof name, "model.layers.%d.mlp.experts.gate_up_proj", L);
    CHECK_EQ_INT(moesz_stw_add_copy(w, name, MOESZ_DT_F32, 3, s1, gu, &e), MOESZ_OK);
    snprintf(name, sizeof name, "model.layers.%d.mlp.experts.down_proj", L);
    CHECK_EQ_INT(moesz_stw_add_copy(w, name, MOESZ_DT_F32, 3, s2, dn, &e), MOESZ_OK);
  }
  free(gu);
  free(dn);
  free(tmp);
  CHECK_MSG(moesz_stw_commit(w, &e) == MOESZ_OK, "%s", e.msg);
  moesz_model *b = NULL;
  CHECK_MSG(moesz_model_open(dir, &b, &e) == MOESZ_OK, "%s", e.msg);
  if (b) {
    moesz_matview v;
    CHECK_EQ_INT(moesz_model_expert(b, 0, 3, 0, MOESZ_MAT_UP, &v, NULL), MOESZ_OK);
    CHECK(v.transposed == 1 && v.ld == 2 * n && v.rows == n && v.cols == d);
    CHECK(!strcmp(moesz_model_expert_layout(b), "stacked-transposed"));
    compare_models(a, b);
    moesz_matstats sa, sb;
    moesz_matview va;
    moesz_model_expert(a, 1, 2, 0, MOESZ_MAT_DOWN, &va, NULL);
    moesz_model_expert(b, 1, 2, 0, MOESZ_MAT_DOWN, &v, NULL);
    CHECK_EQ_INT(moesz_matview_stats(&va, 0.01, &sa, NULL), MOESZ_OK);
    CHECK_EQ_INT(moesz_matview_stats(&v, 0.01, &sb, NULL), MOESZ_OK);
    CHECK_NEAR(sa.entropy_bits, sb.entropy_bits, 1e-12);
    CHECK_NEAR(sa.std, sb.std, 1e-12);
    moesz_model_close(b);
  }
  moesz_model_close(a);
  rm_tree(dir);
}

/* qwen3_moe re-written as two shards + model.safetensors.index.json (layer 0
 * in one file, the rest in the other): same roles, counts and views. */
TEST(sharded_checkpoint) {
  moesz_model *a = NULL, *b = NULL;
  moesz_error e = {0};
  CHECK_MSG(moesz_model_open(FIX "qwen3_moe", &a, &e) == MOESZ_OK, "%s", e.msg);
  if (!a) return;
  char dir[300], path[400];
  snprintf(dir, sizeof dir, "%s/sharded", tmpdir());
  mkdir(dir, 0700);
  snprintf(path, sizeof path, "%s/config.json", dir);
  CHECK_EQ_INT(copy_file(FIX "qwen3_moe/config.json", path), 0);
  moesz_stw *w[2];
  static const char *SH[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
  for (int k = 0; k < 2; k++) {
    snprintf(path, sizeof path, "%s/%s", dir, SH[k]);
    CHECK_EQ_INT(moesz_stw_create(path, &w[k], &e), MOESZ_OK);
  }
  cJSON *idx = cJSON_CreateObject(), *map = cJSON_AddObjectToObject(idx, "weight_map");
  for (size_t i = 0; i < moesz_st_count(a->st); i++) {
    const moesz_tensor *t = moesz_st_at(a->st, i);
    int k = a->roles[i].layer == 0 ? 0 : 1;
    CHECK_EQ_INT(moesz_stw_add(w[k], t->name, t->dtype, t->ndim, t->shape, t->data, &e), MOESZ_OK);
    cJSON_AddStringToObject(map, t->name, SH[k]);
  }
  for (int k = 0; k < 2; k++) CHECK_MSG(moesz_stw_commit(w[k], &e) == MOESZ_OK, "%s", e.msg);
  char *txt = cJSON_PrintUnformatted(idx);
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
  CHECK_EQ_INT(write_text(path, txt), 0);
  free(txt);
  cJSON_Delete(idx);
  CHECK_MSG(moesz_model_open(dir, &b, &e) == MOESZ_OK, "%s", e.msg);
  if (b) {
    moesz_counts ka, kb;
    moesz_model_count(a, &ka);
    moesz_model_count(b, &kb);
    CHECK_EQ_INT(ka.total_params, kb.total_params);
    CHECK_EQ_INT(ka.expert_params, kb.expert_params);
    compare_models(a, b);
    moesz_matview v;
    CHECK_EQ_INT(moesz_model_expert(b, 1, 5, 0, MOESZ_MAT_DOWN, &v, &e), MOESZ_OK);
    const moesz_tensor *t = moesz_st_find(b->st, "model.layers.1.mlp.experts.5.down_proj.weight");
    CHECK(t && t->shard == 1 && v.data == t->data);
    moesz_model_close(b);
  }
  moesz_model_close(a);
  rm_tree(dir);
}

TEST(shared_and_dense_views) {
  moesz_model *m = NULL;
  moesz_error e = {0};
  CHECK_MSG(moesz_model_open(FIX "deepseek", &m, &e) == MOESZ_OK, "%s", e.msg);
  if (m) {
    moesz_matview v;
    CHECK_EQ_INT(moesz_model_expert(m, 1, 0, 1, MOESZ_MAT_GATE, &v, &e), MOESZ_OK);
    CHECK(v.rows == 32 && v.cols == 32);               /* 2 shared x 16 */
    CHECK_EQ_INT(moesz_model_expert(m, 0, 0, 0, MOESZ_MAT_DOWN, &v, &e), MOESZ_OK);
    CHECK(v.rows == 32 && v.cols == 48);               /* dense layer 0 */
    const moesz_tensor *t = moesz_st_find(m->st, "model.layers.0.mlp.down_proj.weight");
    CHECK(t && v.data == t->data);
    CHECK_EQ_INT(moesz_model_expert(m, 0, 0, 1, MOESZ_MAT_DOWN, &v, &e), MOESZ_E_NOTFOUND);
    CHECK_EQ_INT(moesz_model_expert(m, 0, 1, 0, MOESZ_MAT_DOWN, &v, &e), MOESZ_E_RANGE);
    moesz_model_close(m);
  }
  CHECK_MSG(moesz_model_open(FIX "qwen2_moe", &m, &e) == MOESZ_OK, "%s", e.msg);
  if (m) {
    moesz_matview v;
    CHECK_EQ_INT(moesz_model_expert(m, 2, 0, 1, MOESZ_MAT_UP, &v, &e), MOESZ_OK);
    CHECK(v.rows == 24 && v.cols == 32);
    CHECK_EQ_INT(moesz_model_expert(m, 1, 0, 0, MOESZ_MAT_GATE, &v, &e), MOESZ_OK); /* mlp_only layer */
    CHECK(v.rows == 40 && v.cols == 32);
    moesz_model_close(m);
  }
  CHECK_MSG(moesz_model_open(FIX "switch", &m, &e) == MOESZ_OK, "%s", e.msg);
  if (m) {
    moesz_matview v;
    CHECK_EQ_INT(moesz_model_expert(m, 3, 3, 0, MOESZ_MAT_DOWN, &v, &e), MOESZ_OK);
    const moesz_tensor *t = moesz_st_find(m->st, "decoder.block.1.layer.2.mlp.experts.expert_3.wo.weight");
    CHECK(t && v.data == t->data && v.rows == 32 && v.cols == 24);
    CHECK_EQ_INT(moesz_model_expert(m, 3, 3, 0, MOESZ_MAT_UP, &v, &e), MOESZ_E_NOTFOUND);
    moesz_model_close(m);
  }
}

/* ---- statistics vs numpy -------------------------------------------------------- */

TEST(stats_vs_numpy) {
  static const char *FAM[] = {"mixtral", "mixtral_stacked", "qwen2_moe", "qwen3_moe", "qwen3_moe_bf16",
                              "olmoe", "deepseek", "llama"};
  static const char *MAT[] = {"gate", "up", "down"};
  for (size_t f = 0; f < sizeof FAM / sizeof FAM[0]; f++) {
    char dir[256];
    snprintf(dir, sizeof dir, FIX "%s", FAM[f]);
    moesz_model *m = NULL;
    if (moesz_model_open(dir, &m, NULL)) { CHECK(0); continue; }
    cJSON *x = load_expected(FAM[f]);
    const cJSON *st = cJSON_GetObjectItem(x, "stats"), *it;
    int seen = 0;
    cJSON_ArrayForEach(it, st) {
      int L, E;
      char mat[16];
      if (sscanf(it->string, "%d.%d.%15s", &L, &E, mat) != 3) { CHECK(0); continue; }
      int mi = !strcmp(mat, "gate") ? 0 : !strcmp(mat, "up") ? 1 : 2;
      CHECK(!strcmp(mat, MAT[mi]));
      moesz_matview v;
      moesz_matstats s;
      CHECK_EQ_INT(moesz_model_expert(m, L, E, 0, (moesz_mat)(MOESZ_MAT_GATE + mi), &v, NULL), MOESZ_OK);
      CHECK_EQ_INT(moesz_matview_stats(&v, jnum(it, "eb"), &s, NULL), MOESZ_OK);
      CHECK_NEAR(s.mean, jnum(it, "mean"), 1e-9);
      CHECK_NEAR(s.std, jnum(it, "std"), 1e-9);
      CHECK_NEAR(s.min, jnum(it, "min"), 0);
      CHECK_NEAR(s.max, jnum(it, "max"), 0);
      CHECK_NEAR(s.entropy_bits, jnum(it, "entropy_bits"), 1e-9);
      CHECK_EQ_INT(s.distinct_q, (int64_t)jnum(it, "distinct"));
      CHECK_EQ_INT(s.n, v.rows * v.cols);
      seen++;
    }
    CHECK_EQ_INT(seen, 3);
    cJSON_Delete(x);
    moesz_model_close(m);
  }
}

TEST(stats_synthetic) {
  /* four codes equally often -> 2 bits; NaN/Inf excluded; bf16 view */
  float a[8] = {0.0f, 0.02f, 0.04f, 0.06f, 0.0f, 0.02f, 0.04f, 0.06f};
  moesz_matview v = {a, MOESZ_DT_F32, 2, 4, 4, 0};
  moesz_matstats s;
  CHECK_EQ_INT(moesz_matview_stats(&v, 0.01, &s, NULL), MOESZ_OK);
  CHECK_NEAR(s.entropy_bits, 2.0, 1e-12);
  CHECK_EQ_INT(s.distinct_q, 4);
  CHECK_NEAR(s.mean, 0.03, 1e-8);
  CHECK_EQ_INT(moesz_matview_stats(&v, 0.0, &s, NULL), MOESZ_OK);
  CHECK_NEAR(s.entropy_bits, 0, 0);
  CHECK_EQ_INT(moesz_matview_stats(&v, -1.0, &s, NULL), MOESZ_E_ARG);
  a[3] = NAN;
  a[5] = INFINITY;
  CHECK_EQ_INT(moesz_matview_stats(&v, 0.01, &s, NULL), MOESZ_OK);
  CHECK_EQ_INT(s.nonfinite, 2);
  CHECK_NEAR(s.max, 0.06f, 0);
  /* huge code range (tiny eb) goes through the sorting path */
  float b[4] = {-1e30f, 1e30f, 1.0f, 1.0f};
  moesz_matview vb = {b, MOESZ_DT_F32, 1, 4, 4, 0};
  CHECK_EQ_INT(moesz_matview_stats(&vb, 1e-6, &s, NULL), MOESZ_OK);
  CHECK_NEAR(s.entropy_bits, 1.5, 1e-12);
  uint16_t h[2] = {0x3f80, 0xbf80}; /* bf16 1, -1 */
  moesz_matview vh = {h, MOESZ_DT_BF16, 1, 2, 2, 0};
  CHECK_EQ_INT(moesz_matview_stats(&vh, 0.5, &s, NULL), MOESZ_OK);
  CHECK_NEAR(s.std, 1.0, 0);
  CHECK_NEAR(s.entropy_bits, 1.0, 0);
}

/* The rate fact the codec design rests on: Gaussian weights, sigma 0.02,
 * eb 1e-3 -> H = log2(sigma / (2 eb)) + 0.5 log2(2 pi e) = 5.369 bits; one
 * more bit per halving of eb. Stored as bf16 like real checkpoints. */
TEST(stats_gaussian_rate) {
  const size_t n = 1 << 18;
  uint16_t *w = malloc(n * sizeof *w);
  float *f = malloc(n * sizeof *f);
  if (!w || !f) { free(w); free(f); CHECK(0); return; }
  uint64_t st = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < n; i += 2) {
    double u[2];
    for (int k = 0; k < 2; k++) {
      st ^= st << 13; st ^= st >> 7; st ^= st << 17;
      u[k] = ((double)(st >> 11) + 0.5) / 9007199254740992.0;
    }
    double r = sqrt(-2 * log(u[0])), t = 6.283185307179586 * u[1];
    f[i] = (float)(0.02 * r * cos(t));
    f[i + 1] = (float)(0.02 * r * sin(t));
  }
  moesz_f32_to_bf16_n(f, w, n);
  moesz_matview v = {w, MOESZ_DT_BF16, 512, 512, 512, 0};
  moesz_matstats s1, s2;
  CHECK_EQ_INT(moesz_matview_stats(&v, 1e-3, &s1, NULL), MOESZ_OK);
  CHECK_EQ_INT(moesz_matview_stats(&v, 5e-4, &s2, NULL), MOESZ_OK);
  double want = log2(0.02 / 2e-3) + 0.5 * log2(2 * M_PI * M_E);
  CHECK_NEAR(s1.entropy_bits, want, 0.02);
  CHECK_NEAR(s2.entropy_bits - s1.entropy_bits, 1.0, 0.02);
  CHECK_NEAR(s1.std, 0.02, 2e-4);
  free(w);
  free(f);
}

/* ---- bad checkpoints ---------------------------------------------------------- */

/* mixtral with one tensor left out / replaced by a misshapen one. */
static int open_mutated(const char *drop, int reshape, moesz_error *e) {
  moesz_model *a = NULL;
  if (moesz_model_open(FIX "mixtral", &a, NULL)) return 999;
  char dir[300], path[400];
  snprintf(dir, sizeof dir, "%s/mut", tmpdir());
  mkdir(dir, 0700);
  snprintf(path, sizeof path, "%s/config.json", dir);
  copy_file(FIX "mixtral/config.json", path);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  moesz_stw *w;
  moesz_stw_create(path, &w, NULL);
  for (size_t i = 0; i < moesz_st_count(a->st); i++) {
    const moesz_tensor *t = moesz_st_at(a->st, i);
    if (!strcmp(t->name, drop)) {
      if (!reshape) continue;
      int64_t s[2] = {t->shape[1], t->shape[0]};
      moesz_stw_add(w, t->name, t->dtype, 2, s, t->data, NULL);
      continue;
    }
    moesz_stw_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, NULL);
  }
  moesz_stw_commit(w, NULL);
  moesz_model_close(a);
  moesz_model *b = NULL;
  int rc = moesz_model_open(dir, &b, e);
  moesz_model_close(b);
  rm_tree(dir);
  return rc;
}

TEST(bad_checkpoints) {
  moesz_error e = {0};
  CHECK_EQ_INT(open_mutated("model.layers.1.block_sparse_moe.experts.3.w3.weight", 0, &e), MOESZ_E_FORMAT);
  CHECK_MSG(strstr(e.msg, "layer 1 expert 3: up") != NULL, "%s", e.msg);
  CHECK_EQ_INT(open_mutated("model.layers.0.block_sparse_moe.experts.2.w1.weight", 1, &e), MOESZ_E_FORMAT);
  CHECK_MSG(strstr(e.msg, "experts.2.w1.weight") && strstr(e.msg, "shape"), "%s", e.msg);
  moesz_model *m = NULL;
  CHECK(moesz_model_open("/nonexistent/model", &m, &e) != MOESZ_OK && m == NULL);
  /* a folder with a config but no weights */
  char dir[300], path[400];
  snprintf(dir, sizeof dir, "%s/noweights", tmpdir());
  mkdir(dir, 0700);
  snprintf(path, sizeof path, "%s/config.json", dir);
  copy_file(FIX "llama/config.json", path);
  CHECK(moesz_model_open(dir, &m, &e) != MOESZ_OK && m == NULL);
  CHECK(e.msg[0] != 0);
  /* an unsupported architecture */
  write_text(path, "{\"architectures\":[\"FalconForCausalLM\"]}");
  CHECK_EQ_INT(moesz_model_open(dir, &m, &e), MOESZ_E_UNSUPPORTED);
  CHECK(strstr(e.msg, "FalconForCausalLM") != NULL);
  rm_tree(dir);
}

/* ---- moesz inspect end to end ------------------------------------------------------ */

TEST(inspect_cli) {
  const char *bin = getenv("MOESZ_BIN");
  if (!bin || access(bin, X_OK)) SKIP("MOESZ_BIN not set (make check sets it)");
  static char out[1 << 20];
  char cmd[1024];
  for (size_t f = 0; f < NFAM; f++) {
    snprintf(cmd, sizeof cmd, "%s inspect " FIX "%s --json --stats --eb 0.01", bin, FAMILIES[f]);
    CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
    cJSON *j = cJSON_Parse(out), *x = load_expected(FAMILIES[f]);
    CHECK_MSG(j != NULL, "%s: output is not JSON", FAMILIES[f]);
    if (j && x) {
      const cJSON *p = cJSON_GetObjectItem(j, "params");
      CHECK_EQ_INT((int64_t)jnum(p, "total"), (int64_t)jnum(x, "params_total"));
      CHECK_EQ_INT((int64_t)jnum(p, "experts"), (int64_t)jnum(x, "params_experts"));
      CHECK_EQ_INT((int64_t)jnum(p, "other"), (int64_t)jnum(x, "params_other"));
      const cJSON *layers = cJSON_GetObjectItem(j, "layers");
      CHECK_EQ_INT(cJSON_GetArraySize(layers), cJSON_GetArraySize(cJSON_GetObjectItem(x, "is_moe")));
      const cJSON *st = cJSON_GetObjectItem(j, "stats");
      CHECK(cJSON_IsArray(st));
      /* the stats entry for the matrix numpy measured */
      const cJSON *want = cJSON_GetObjectItem(x, "stats"), *w;
      if (want && want->child) {
        w = want->child;
        int L, E;
        char mat[16];
        sscanf(w->string, "%d.%d.%15s", &L, &E, mat);
        int found = 0;
        const cJSON *s;
        cJSON_ArrayForEach(s, st) {
          if ((int)jnum(s, "layer") == L && (int)jnum(s, "expert") == E &&
              !strcmp(cJSON_GetObjectItem(s, "mat")->valuestring, mat) &&
              !cJSON_IsTrue(cJSON_GetObjectItem(s, "shared"))) {
            found = 1;
            CHECK_NEAR(jnum(s, "entropy_bits"), jnum(w, "entropy_bits"), 1e-6);
            CHECK_NEAR(jnum(s, "std"), jnum(w, "std"), 1e-6);
          }
        }
        CHECK_MSG(found, "%s: no stats for %s", FAMILIES[f], w->string);
      }
    }
    cJSON_Delete(j);
    cJSON_Delete(x);
  }
  /* a config-only folder: counts from the config (transformers' numbers) */
  snprintf(cmd, sizeof cmd, "%s inspect " FIX "configs/mixtral-8x7b --json", bin);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  cJSON *j = cJSON_Parse(out);
  CHECK(j && cJSON_IsFalse(cJSON_GetObjectItem(j, "weights")));
  if (j) CHECK_EQ_INT((int64_t)jnum(cJSON_GetObjectItem(j, "params"), "total"), 46702792704LL);
  cJSON_Delete(j);
  snprintf(cmd, sizeof cmd, "%s inspect " FIX "configs/mixtral-8x7b --stats 2>&1", bin);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 1);
  CHECK(strstr(out, "needs weights") != NULL);
  snprintf(cmd, sizeof cmd, "%s inspect " FIX "qwen2_moe", bin);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  CHECK(strstr(out, "Qwen2MoeForCausalLM") && strstr(out, "47072"));
  snprintf(cmd, sizeof cmd, "%s inspect --help", bin);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  CHECK(strstr(out, "--stats") != NULL);
  snprintf(cmd, sizeof cmd, "%s inspect /nonexistent/model 2>&1", bin);
  int rc = harness_run_cmd(cmd, out, sizeof out);
  CHECK(rc != 0 && strstr(out, "/nonexistent/model"));
  snprintf(cmd, sizeof cmd, "%s inspect 2>&1", bin);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 2);
  snprintf(cmd, sizeof cmd, "%s inspect " FIX "mixtral --eb -1 2>&1", bin);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 2);
  snprintf(cmd, sizeof cmd, "%s inspect " FIX "mixtral --bogus 2>&1", bin);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 2);
}

/* Counts predicted from the config alone == counts of the stored tensors,
 * role by role, on every fixture. */
TEST(config_count_matches_checkpoint) {
  for (size_t f = 0; f < NFAM; f++) {
    char dir[256];
    snprintf(dir, sizeof dir, FIX "%s", FAMILIES[f]);
    moesz_model *m = NULL;
    if (moesz_model_open(dir, &m, NULL)) { CHECK(0); continue; }
    moesz_counts a, b;
    moesz_model_count(m, &a);
    moesz_config_count(&m->cfg, &b);
    for (int r = 0; r < MOESZ_ROLE_COUNT; r++)
      CHECK_MSG(a.params[r] == b.params[r], "%s %s: stored %lld, from config %lld", FAMILIES[f],
                moesz_role_name((moesz_role)r), (long long)a.params[r], (long long)b.params[r]);
    CHECK_EQ_INT(a.total_params, b.total_params);
    CHECK_EQ_INT(a.expert_params, b.expert_params);
    moesz_model_close(m);
  }
}

/* Configs with the shapes of published checkpoints: the counts transformers
 * reports for them (meta-device instantiation; DeepSeekMoE-16B by module
 * shapes, 16.4 B published). */
TEST(real_configs) {
  static const char *NAMES[] = {"mixtral-8x7b", "olmoe-1b-7b", "qwen3-30b-a3b", "qwen1.5-moe-a2.7b",
                                "switch-base-8", "deepseek-moe-16b"};
  char *text = NULL;
  size_t len;
  CHECK_EQ_INT(moesz_file_read_all(FIX "configs/expected.json", 1 << 20, &text, &len, NULL), MOESZ_OK);
  cJSON *x = text ? cJSON_Parse(text) : NULL;
  free(text);
  CHECK(x != NULL);
  if (!x) return;
  for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
    char dir[256];
    snprintf(dir, sizeof dir, FIX "configs/%s", NAMES[i]);
    moesz_config c;
    moesz_error e = {0};
    CHECK_MSG(moesz_config_load(dir, &c, &e) == MOESZ_OK, "%s: %s", NAMES[i], e.msg);
    moesz_counts k;
    moesz_config_count(&c, &k);
    const cJSON *w = cJSON_GetObjectItem(x, NAMES[i]);
    CHECK_MSG(k.total_params == (int64_t)jnum(w, "params_total"), "%s: %lld vs %.0f", NAMES[i],
              (long long)k.total_params, jnum(w, "params_total"));
    CHECK_EQ_INT(k.expert_params, (int64_t)jnum(w, "params_experts"));
  }
  moesz_config c;
  CHECK_EQ_INT(moesz_config_load(FIX "configs/qwen3-30b-a3b", &c, NULL), MOESZ_OK);
  CHECK_EQ_INT(c.n_layers, 48); CHECK_EQ_INT(c.n_experts, 128); CHECK_EQ_INT(c.top_k, 8);
  CHECK_EQ_INT(c.moe_intermediate, 768); CHECK_EQ_INT(c.head_dim, 128); CHECK_EQ_INT(c.norm_topk_prob, 1);
  CHECK_EQ_INT(moesz_config_load(FIX "configs/deepseek-moe-16b", &c, NULL), MOESZ_OK);
  CHECK_EQ_INT(c.n_moe_layers, 27); CHECK_EQ_INT(c.n_experts, 64); CHECK_EQ_INT(c.n_shared, 2);
  CHECK_EQ_INT(c.top_k, 6); CHECK_EQ_INT(c.moe_intermediate, 1408);
  CHECK_EQ_INT(moesz_config_load(FIX "configs/switch-base-8", &c, NULL), MOESZ_OK);
  CHECK_EQ_INT(c.n_layers, 24); CHECK_EQ_INT(c.n_moe_layers, 12); CHECK_EQ_INT(c.is_moe[1], 1);
  CHECK_EQ_INT(c.is_moe[12], 0); CHECK_EQ_INT(c.is_moe[13], 1);
  cJSON_Delete(x);
}

/* The real trained Llama in shared data; 292800 is transformers' num_parameters(). */
TEST(shared_data_llama) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s/models/stories260K-llama", harness_data_dir());
  if (!moesz_path_is_dir(dir)) SKIP("%s absent (set MOESZ_DATA)", dir);
  moesz_model *m = NULL;
  moesz_error e = {0};
  CHECK_MSG(moesz_model_open(dir, &m, &e) == MOESZ_OK, "%s", e.msg);
  if (!m) return;
  moesz_counts k;
  moesz_model_count(m, &k);
  CHECK_EQ_INT(k.total_params, 292800);
  CHECK_EQ_INT(k.expert_params, 0);
  CHECK_EQ_INT(k.tensors[MOESZ_ROLE_OTHER], 0);
  CHECK_EQ_INT(m->cfg.n_layers, 5);
  CHECK_EQ_INT(m->cfg.head_dim, 8);
  moesz_matview v;
  CHECK_EQ_INT(moesz_model_expert(m, 4, 0, 0, MOESZ_MAT_UP, &v, &e), MOESZ_OK);
  CHECK(v.rows == 172 && v.cols == 64);
  moesz_model_close(m);
}

int main(void) {
  RUN(config_families);
  RUN(config_defaults);
  RUN(config_bad);
  RUN(classify_every_tensor);
  RUN(classify_names);
  RUN(tensor_by_role);
  RUN(expert_views_legacy_vs_stacked);
  RUN(expert_views_transposed_stacked);
  RUN(sharded_checkpoint);
  RUN(shared_and_dense_views);
  RUN(stats_vs_numpy);
  RUN(stats_synthetic);
  RUN(stats_gaussian_rate);
  RUN(bad_checkpoints);
  RUN(inspect_cli);
  RUN(config_count_matches_checkpoint);
  RUN(real_configs);
  RUN(shared_data_llama);
  rmdir(tmpdir());
  return DONE();
}
