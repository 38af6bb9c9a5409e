/* tests/test_gptoss.c - gpt-oss (tools/make_fixtures_gptoss.py): the config
 * (layer types, sliding window, YaRN, swiglu alpha/limit, MXFP4), tensor
 * roles, counts, the forward pass against transformers' logits (batch, token
 * by token, uneven chunks; scalar and AVX2, one and two threads, experts one
 * at a time) on the float32 fixture and on the MXFP4 one, greedy ids against
 * transformers' generate, MXFP4 dequantisation bit for bit against
 * transformers' convert_moe_packed_tensors (every e8m0 scale included), and
 * bad input (missing sinks / biases, misshapen blocks). */
#include <stdint.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "harness.h"
#include "harness_fixture.h"
#include "infer/kernels.h"
#include "moesz/container.h"
#include "moesz/infer.h"
#include "moesz/resmoe.h"
#include "moesz/runtime.h"
#include "moesz/model.h"
#include "moesz/tensor.h"

#define FIX "tests/fixtures/"

static void *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  void *b = malloc(n > 0 ? (size_t)n : 1);
  if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
  fclose(f);
  if (b) *len = (size_t)n;
  return b;
}


TEST(config_and_roles) {
  moesz_config c;
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_config_load(FIX "gpt_oss", &c, &e), MOESZ_OK);
  CHECK_EQ_INT(c.arch, MOESZ_ARCH_GPT_OSS);
  CHECK(!strcmp(moesz_arch_name(MOESZ_ARCH_GPT_OSS), "GptOssForCausalLM"));
  CHECK_EQ_INT(c.n_layers, 4); CHECK_EQ_INT(c.n_experts, 6); CHECK_EQ_INT(c.top_k, 2);
  CHECK_EQ_INT(c.moe_intermediate, 32); CHECK_EQ_INT(c.head_dim, 16); CHECK_EQ_INT(c.n_moe_layers, 4);
  CHECK_EQ_INT(c.sliding_window, 8);
  CHECK(c.is_sliding[0] && !c.is_sliding[1] && c.is_sliding[2] && !c.is_sliding[3]);
  CHECK(c.attn_sinks && c.router_bias && c.expert_bias && c.gate_up_interleaved && c.qkv_bias);
  CHECK_NEAR(c.swiglu_alpha, 1.702, 1e-6); CHECK_NEAR(c.swiglu_limit, 1.0, 0);
  CHECK(c.yarn && !c.yarn_truncate && !c.mxfp4);
  CHECK_NEAR(c.yarn_factor, 4, 0); CHECK_EQ_INT(c.yarn_orig_max_pos, 32);
  CHECK_NEAR(c.yarn_attn_factor, 0.1 * log(4.0) + 1.0, 1e-6);
  CHECK_NEAR(c.rope_theta, 150000, 0);
  CHECK_EQ_INT(moesz_config_load(FIX "gpt_oss_mxfp4", &c, &e), MOESZ_OK);
  CHECK(c.mxfp4);
  /* defaults: layer_types alternate from sliding, YaRN as transformers' GptOssConfig writes it */
  const char *min = "{\"architectures\":[\"GptOssForCausalLM\"],\"num_hidden_layers\":3,\"hidden_size\":64,"
                    "\"vocab_size\":10,\"num_attention_heads\":4,\"max_position_embeddings\":4096,"
                    "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":32.0}}";
  CHECK_EQ_INT(moesz_config_parse(min, strlen(min), &c, &e), MOESZ_OK);
  CHECK(c.is_sliding[0] && !c.is_sliding[1] && c.is_sliding[2]);
  CHECK_EQ_INT(c.sliding_window, 128); CHECK_EQ_INT(c.n_experts, 128); CHECK_EQ_INT(c.top_k, 4);
  CHECK(c.yarn_truncate); CHECK_EQ_INT(c.yarn_orig_max_pos, 4096);
  CHECK_NEAR(c.yarn_beta_fast, 32, 0); CHECK_NEAR(c.swiglu_limit, 7, 0);
  static const char *bad[] = {
    "\"layer_types\":[\"sliding_attention\",\"full_attention\"]",            /* wrong length */
    "\"layer_types\":[\"sliding_attention\",\"local\",\"full_attention\"]",   /* unknown type */
    "\"rope_scaling\":{\"rope_type\":\"longrope\",\"factor\":2}",
    "\"rope_scaling\":{\"rope_type\":\"yarn\"}",                               /* no factor */
    "\"quantization_config\":{\"quant_method\":\"gptq\"}",
    "\"swiglu_limit\":-1",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char txt[512];
    snprintf(txt, sizeof txt, "{\"architectures\":[\"GptOssForCausalLM\"],\"num_hidden_layers\":3,"
             "\"hidden_size\":64,\"vocab_size\":10,\"num_attention_heads\":4,%s}", bad[i]);
    CHECK_MSG(moesz_config_parse(txt, strlen(txt), &c, &e) != MOESZ_OK, "accepted %s", bad[i]);
  }
  moesz_tensor_role r;
  CHECK_EQ_INT(moesz_config_load(FIX "gpt_oss", &c, &e), MOESZ_OK);
  moesz_tensor_classify(&c, "model.layers.1.self_attn.sinks", &r);
  CHECK_EQ_INT(r.role, MOESZ_ROLE_ATTN_SINKS); CHECK_EQ_INT(r.layer, 1);
  moesz_tensor_classify(&c, "model.layers.0.mlp.router.bias", &r);
  CHECK_EQ_INT(r.role, MOESZ_ROLE_ROUTER_LINEAR_BIAS);
  moesz_tensor_classify(&c, "model.layers.0.mlp.router.weight", &r);
  CHECK_EQ_INT(r.role, MOESZ_ROLE_ROUTER);
  moesz_tensor_classify(&c, "model.layers.3.mlp.experts.gate_up_proj", &r);
  CHECK(r.role == MOESZ_ROLE_EXPERT && r.mat == MOESZ_MAT_GATE_UP && r.stacked && !r.mx);
  moesz_tensor_classify(&c, "model.layers.3.mlp.experts.down_proj_bias", &r);
  CHECK(r.role == MOESZ_ROLE_EXPERT_BIAS && r.mat == MOESZ_MAT_DOWN);
  moesz_tensor_classify(&c, "model.layers.2.mlp.experts.down_proj_blocks", &r);
  CHECK(r.role == MOESZ_ROLE_EXPERT && r.mat == MOESZ_MAT_DOWN && r.mx == 1);
  moesz_tensor_classify(&c, "model.layers.2.mlp.experts.gate_up_proj_scales", &r);
  CHECK(r.role == MOESZ_ROLE_EXPERT && r.mat == MOESZ_MAT_GATE_UP && r.mx == 2);
  moesz_tensor_classify(&c, "model.layers.2.mlp.experts.gate_up_proj_zeros", &r);
  CHECK_EQ_INT(r.role, MOESZ_ROLE_OTHER);
  moesz_tensor_classify(&c, "model.layers.4.self_attn.sinks", &r);
  CHECK_EQ_INT(r.role, MOESZ_ROLE_OTHER);
}

/* counts against transformers' num_parameters (expected.json) */
static void check_counts(const char *dir) {
  char p[256];
  snprintf(p, sizeof p, "%s/expected.json", dir);
  size_t len = 0;
  char *txt = slurp(p, &len);
  CHECK(txt != NULL);
  if (!txt) return;
  cJSON *j = cJSON_ParseWithLength(txt, len);
  free(txt);
  moesz_model *m = NULL;
  moesz_error e = {0};
  CHECK_MSG(moesz_model_open(dir, &m, &e) == MOESZ_OK, "%s", e.msg);
  if (m && j) {
    moesz_counts k, kc;
    moesz_model_count(m, &k);
    moesz_config_count(&m->cfg, &kc);
    double total = cJSON_GetObjectItem(j, "params_total")->valuedouble;
    double experts = cJSON_GetObjectItem(j, "params_experts")->valuedouble;
    CHECK_EQ_INT(k.total_params, (int64_t)total);
    CHECK_EQ_INT(k.expert_params, (int64_t)experts);
    CHECK_EQ_INT(kc.total_params, (int64_t)total);
    CHECK_EQ_INT(kc.expert_params, (int64_t)experts);
    for (int r = 0; r < MOESZ_ROLE_COUNT; r++)
      CHECK_MSG(k.params[r] == kc.params[r], "%s role %s: %lld stored, %lld predicted", dir,
                moesz_role_name((moesz_role)r), (long long)k.params[r], (long long)kc.params[r]);
    CHECK(!strcmp(moesz_model_expert_layout(m), m->cfg.mxfp4 ? "mxfp4" : "stacked-transposed"));
    CHECK_EQ_INT(k.tensors[MOESZ_ROLE_OTHER], 0);
    moesz_matview v;
    if (m->cfg.mxfp4) CHECK_EQ_INT(moesz_model_expert(m, 0, 0, 0, MOESZ_MAT_GATE, &v, &e), MOESZ_E_UNSUPPORTED);
    if (!m->cfg.mxfp4) {
      /* gate / up: row halves of the interleaved gate_up, transformers' [E, d, 2n] seen transposed */
      moesz_matview u;
      CHECK_EQ_INT(moesz_model_expert(m, 1, 2, 0, MOESZ_MAT_GATE, &v, &e), MOESZ_OK);
      CHECK_EQ_INT(moesz_model_expert(m, 1, 2, 0, MOESZ_MAT_UP, &u, &e), MOESZ_OK);
      CHECK(v.rows == 32 && v.cols == 64 && v.transposed == 1 && v.ld == 64);
      CHECK((const float *)u.data == (const float *)v.data + 32);
      CHECK_EQ_INT(moesz_model_expert(m, 0, 5, 0, MOESZ_MAT_GATE_UP, &v, &e), MOESZ_OK);
      CHECK(v.rows == 64 && v.cols == 64 && v.transposed == 1 && v.ld == 64);
      CHECK_EQ_INT(moesz_model_expert(m, 0, 5, 0, MOESZ_MAT_DOWN, &v, &e), MOESZ_OK);
      CHECK(v.rows == 64 && v.cols == 32 && v.transposed == 1 && v.ld == 64);
    }
  }
  cJSON_Delete(j);
  moesz_model_close(m);
}

TEST(counts_match_transformers) {
  check_counts(FIX "gpt_oss");
  check_counts(FIX "gpt_oss_mxfp4");
}

TEST(mxfp4_dequant_matches_transformers) {
  moesz_model *m = NULL;
  moesz_error e = {0};
  CHECK_MSG(moesz_model_open(FIX "gpt_oss_mxfp4", &m, &e) == MOESZ_OK, "%s", e.msg);
  size_t len = 0;
  float *ref = slurp(FIX "gpt_oss_mxfp4/dequant.f32", &len);
  CHECK(ref != NULL);
  if (!m || !ref) { free(ref); moesz_model_close(m); return; }
  int E = 6, d = 64, n = 32;
  CHECK_EQ_INT(len, sizeof(float) * (size_t)E * (size_t)(2 * n * d + n * d));
  float *w = malloc(sizeof(float) * 2 * (size_t)n * d);
  uint16_t *wb = malloc(sizeof(uint16_t) * 2 * (size_t)n * d);
  size_t bad = 0, badb = 0;
  for (int x = 0; x < E; x++)
    for (int k = 0; k < 2; k++) {
      moesz_mxfp4_view v;
      CHECK_EQ_INT(moesz_model_expert_mxfp4(m, 0, x, k ? MOESZ_MAT_DOWN : MOESZ_MAT_GATE_UP, &v, &e), MOESZ_OK);
      size_t ng = (size_t)(v.rows * (v.cols / 32));
      moesz_mxfp4_to_f32(v.blocks, v.scales, ng, w);
      moesz_mxfp4_to_bf16(v.blocks, v.scales, ng, wb);
      /* transformers holds [in, out]: value (r, c) of the [rows, cols] matrix at [c][r] */
      const float *t = ref + (k ? (size_t)E * 2 * n * d + (size_t)x * n * d : (size_t)x * 2 * n * d);
      for (int64_t r = 0; r < v.rows; r++)
        for (int64_t c = 0; c < v.cols; c++) {
          float a = w[r * v.cols + c], b = t[c * v.rows + r];
          bad += memcmp(&a, &b, 4) != 0;
          badb += moesz_bf16_to_f32(wb[r * v.cols + c]) != b;
        }
    }
  CHECK_MSG(bad == 0 && badb == 0, "%zu f32 / %zu bf16 values differ from transformers", bad, badb);
  moesz_mxfp4_view v;
  CHECK_EQ_INT(moesz_model_expert_mxfp4(m, 0, 6, MOESZ_MAT_DOWN, &v, &e), MOESZ_E_RANGE);
  CHECK_EQ_INT(moesz_model_expert_mxfp4(m, 0, 0, MOESZ_MAT_GATE, &v, &e), MOESZ_E_ARG);
  free(w); free(wb); free(ref);
  moesz_model_close(m);
  /* every e8m0 scale 0..255 (2^-127 subnormal ... 2^127, 255 overflowing) */
  uint8_t *x = slurp(FIX "gpt_oss_mxfp4/extremes.bin", &len);
  CHECK(x && len == 256 * 16 + 256 + 256 * 32 * 4);
  if (!x) return;
  float got[256 * 32];
  moesz_mxfp4_to_f32(x, x + 4096, 256, got);
  bad = 0;
  for (int i = 0; i < 256 * 32; i++) {
    float want;
    memcpy(&want, x + 4096 + 256 + 4 * i, 4);
    bad += !(memcmp(&got[i], &want, 4) == 0 || (isnan(got[i]) && isnan(want)));
  }
  CHECK_MSG(bad == 0, "%zu extreme-scale values differ", bad);
  uint16_t gotb[256 * 32];
  moesz_mxfp4_to_bf16(x, x + 4096, 256, gotb);
  bad = 0;
  for (int i = 0; i < 256 * 32; i++) {
    float want;
    memcpy(&want, x + 4096 + 256 + 4 * i, 4);
    float gb = moesz_bf16_to_f32(gotb[i]);
    bad += !(memcmp(&gb, &want, 4) == 0 || (isnan(gb) && isnan(want)));
  }
  CHECK_MSG(bad == 0, "%zu extreme-scale values differ in BF16", bad);
  free(x);
  /* quantising the dequantised values gives the codes back (up to +-0) */
  uint8_t blk[16], sc;
  float vals[32], back[32];
  for (int i = 0; i < 32; i++) vals[i] = moesz_e2m1_to_f32((uint8_t)(i % 16)) * 0.125f;
  vals[7] = 6 * 0.125f;
  moesz_mxfp4_from_f32(vals, 1, blk, &sc);
  moesz_mxfp4_to_f32(blk, &sc, 1, back);
  for (int i = 0; i < 32; i++) CHECK_NEAR(back[i], vals[i], 0);
  CHECK_EQ_INT(sc, 127 - 3);
}

TEST(forward_matches_transformers) {
  moesz_engine_opts o2 = {.threads = 2}, o1 = {.threads = 1, .scalar = 1, .expert_group = 1};
  harness_check_engine(FIX "gpt_oss", &o2, 1e-4, 5, 13);
  harness_check_engine(FIX "gpt_oss", &o1, 1e-4, 5, 13);
}

TEST(forward_mxfp4_matches_transformers) {
  moesz_engine_opts o2 = {.threads = 2}, o1 = {.threads = 1, .scalar = 1, .expert_group = 1};
  harness_check_engine(FIX "gpt_oss_mxfp4", &o2, 1e-4, 5, 13);
  harness_check_engine(FIX "gpt_oss_mxfp4", &o1, 1e-4, 5, 13);
}

static void check_greedy(const char *dir) {
  char p[256];
  snprintf(p, sizeof p, "%s/greedy.json", dir);
  size_t len = 0;
  char *txt = slurp(p, &len);
  CHECK(txt != NULL);
  if (!txt) return;
  cJSON *j = cJSON_ParseWithLength(txt, len);
  free(txt);
  const cJSON *pr = cJSON_GetObjectItem(j, "prompt"), *gen = cJSON_GetObjectItem(j, "generated");
  int np = cJSON_GetArraySize(pr), ng = cJSON_GetArraySize(gen);
  CHECK_EQ_INT(ng, 32);
  moesz_engine *e = NULL;
  moesz_error err = {0};
  moesz_engine_opts o = {.threads = 2};
  CHECK_EQ_INT(moesz_engine_open(dir, &o, &e, &err), MOESZ_OK);
  if (!e) { cJSON_Delete(j); return; }
  int32_t ids[64];
  for (int i = 0; i < np; i++) ids[i] = cJSON_GetArrayItem(pr, i)->valueint;
  float *lg = malloc(sizeof(float) * (size_t)moesz_engine_vocab(e));
  CHECK(moesz_engine_forward(e, ids, (size_t)np, 0, lg, &err) == 0);
  int same = 0;
  for (int i = 0; i < ng; i++) {
    int32_t t = moesz_argmax(lg, moesz_engine_vocab(e));
    same += t == cJSON_GetArrayItem(gen, i)->valueint;
    CHECK(moesz_engine_forward(e, &t, 1, 0, lg, &err) == 0);
  }
  CHECK_MSG(same == ng, "%s: %d of %d greedy ids agree", dir, same, ng);
  free(lg);
  cJSON_Delete(j);
  moesz_engine_close(e);
}

TEST(greedy_matches_transformers) {
  check_greedy(FIX "gpt_oss");
  check_greedy(FIX "gpt_oss_mxfp4");
}

/* compress: lossless (zstd) and codec containers of the float32 fixture;
 * serving the lossless one gives the folder's logits bit for bit, the codec
 * one stays close; decompress gives the checkpoint back byte for byte */
TEST(container_serves_like_folder) {
  const char *dir = FIX "gpt_oss";
  char msz[64], out[64];
  snprintf(msz, sizeof msz, "/tmp/moesz-oss-%d.msz", (int)getpid());
  snprintf(out, sizeof out, "/tmp/moesz-oss-%d.dir", (int)getpid());
  moesz_error e = {0};
  moesz_engine_opts eo = {.threads = 1};
  moesz_engine *ref = NULL;
  CHECK_EQ_INT(moesz_engine_open(dir, &eo, &ref, &e), MOESZ_OK);
  if (!ref) return;
  fixture f;
  CHECK(load_fixture(dir, 256, &f) == 0);
  float *want = malloc(sizeof(float) * 64 * 256), *got = malloc(sizeof(float) * 64 * 256);
  CHECK(moesz_engine_forward(ref, f.tok, 64, 1, want, &e) == 0);
  for (int method = 0; method < 2; method++) {
    moesz_model *m = NULL;
    CHECK_EQ_INT(moesz_model_open(dir, &m, &e), MOESZ_OK);
    if (!m) break;
    moesz_msz_opts o;
    memset(&o, 0, sizeof o);
    o.method = method ? MOESZ_MSZ_CODEC : MOESZ_MSZ_ZSTD;
    o.eb = 1e-4;
    o.eb_mode = MOESZ_EB_REL;
    o.threads = 1;
    int rc = moesz_msz_write(m, msz, &o, NULL, &e);
    CHECK_MSG(rc == MOESZ_OK, "write: %s", e.msg);
    moesz_model_close(m);
    moesz_engine *en = NULL;
    moesz_cache *k = NULL;
    moesz_cache_opts co = {.budget_bytes = 6 * 3 * 32 * 64 * 4, .dtype = MOESZ_DT_COUNT};
    rc = moesz_engine_open_msz(msz, &co, &eo, &en, &k, &e);
    CHECK_MSG(rc == MOESZ_OK, "open: %s", e.msg);
    if (rc) break;
    CHECK(moesz_engine_forward(en, f.tok, 64, 1, got, &e) == 0);
    size_t diff = 0;
    double md = 0;
    int bad = 0;
    for (size_t i = 0; i < 64 * 256; i++) {
      diff += got[i] != want[i];
      if (fabs(got[i] - want[i]) > md) md = fabs(got[i] - want[i]);
    }
    double mref = compare(&f, 0, 64, got, &bad);
    if (!method) CHECK_MSG(diff == 0, "lossless container: %zu logits differ from the folder's (max %g)", diff, md);
    else CHECK_MSG(diff > 0 && bad <= 2, "codec container: %d of 64 argmax differ from transformers", bad);
    printf("# container %s: %zu of %d logits differ from the folder, max %.2e; %.2e to transformers, %d argmax differ\n",
           method ? "codec rel 1e-4" : "zstd", diff, 64 * 256, md, mref, bad);
    moesz_engine_close(en);
    if (!method) {
      moesz_msz *c = NULL;
      CHECK_EQ_INT(moesz_msz_open(msz, &c, &e), MOESZ_OK);
      if (c) CHECK_MSG(moesz_msz_export(c, out, 1, 0, &e) == MOESZ_OK, "export: %s", e.msg);
      moesz_msz_close(c);
      size_t la = 0, lb = 0;
      char pa[128];
      snprintf(pa, sizeof pa, "%s/model.safetensors", out);
      void *a = slurp(pa, &la), *b = slurp(FIX "gpt_oss/model.safetensors", &lb);
      moesz_st *sa = NULL, *sb = NULL;
      CHECK(a && b);
      if (a && b && !moesz_st_parse(a, la, &sa, &e) && !moesz_st_parse(b, lb, &sb, &e)) {
        CHECK_EQ_INT(moesz_st_count(sa), moesz_st_count(sb));
        for (size_t i = 0; i < moesz_st_count(sb); i++) {
          const moesz_tensor *tb = moesz_st_at(sb, i), *ta = moesz_st_find(sa, tb->name);
          CHECK_MSG(ta && ta->nbytes == tb->nbytes && !memcmp(ta->data, tb->data, tb->nbytes), "%s", tb->name);
        }
      }
      moesz_st_close(sa); moesz_st_close(sb);
      free(a); free(b);
      char cmd[200];
      snprintf(cmd, sizeof cmd, "rm -rf %s", out);
      CHECK(system(cmd) == 0);
    }
    unlink(msz);
  }
  free(want); free(got); free(f.logits);
  moesz_engine_close(ref);
}

/* MXFP4 experts in containers: zstd keeps the blocks and scales byte for byte
 * (served and decompressed identically to the folder); codec re-encodes
 * their exact BF16 values within the bound */
TEST(container_mxfp4_keep_and_reencode) {
  const char *dir = FIX "gpt_oss_mxfp4";
  char msz[64], out[64];
  snprintf(msz, sizeof msz, "/tmp/moesz-ossmx-%d.msz", (int)getpid());
  snprintf(out, sizeof out, "/tmp/moesz-ossmx-%d.dir", (int)getpid());
  moesz_error e = {0};
  moesz_engine_opts eo = {.threads = 1};
  moesz_engine *ref = NULL;
  CHECK_EQ_INT(moesz_engine_open(dir, &eo, &ref, &e), MOESZ_OK);
  if (!ref) return;
  fixture f;
  CHECK(load_fixture(dir, 256, &f) == 0);
  float *want = malloc(sizeof(float) * 64 * 256), *got = malloc(sizeof(float) * 64 * 256);
  CHECK(moesz_engine_forward(ref, f.tok, 64, 1, want, &e) == 0);
  moesz_model *m = NULL;
  CHECK_EQ_INT(moesz_model_open(dir, &m, &e), MOESZ_OK);
  /* 0: zstd (kept), 1: codec rel 1e-2 (the bound checked), 2: codec rel 1e-4 (served) */
  for (int method = 0; m && method < 3; method++) {
    moesz_msz_opts o;
    memset(&o, 0, sizeof o);
    o.method = method ? MOESZ_MSZ_CODEC : MOESZ_MSZ_ZSTD;
    o.eb = method == 1 ? 1e-2 : 1e-4;
    o.eb_mode = MOESZ_EB_REL;
    o.threads = 1;
    CHECK_MSG(moesz_msz_write(m, msz, &o, NULL, &e) == MOESZ_OK, "write: %s", e.msg);
    moesz_msz *c = NULL;
    CHECK_MSG(moesz_msz_open(msz, &c, &e) == MOESZ_OK, "open: %s", e.msg);
    if (!c) break;
    const moesz_st *dn = moesz_msz_dense(c);
    size_t same = 0, nmx = 0, nrec = 0;
    for (size_t i = 0; i < moesz_st_count(m->st); i++) {
      const moesz_tensor *t = moesz_st_at(m->st, i), *u = moesz_st_find(dn, t->name);
      if (!m->roles[i].mx) continue;
      nmx++;
      same += u && u->dtype == MOESZ_DT_U8 && u->nbytes == t->nbytes && !memcmp(u->data, t->data, t->nbytes);
    }
    for (int L = 0; L < 4; L++)
      for (int x = 0; x < 6; x++)
        for (int k = MOESZ_MAT_GATE; k <= MOESZ_MAT_DOWN; k++) nrec += moesz_msz_expert(c, L, x, 0, (moesz_mat)k) != NULL;
    CHECK_EQ_INT(nmx, 16);
    if (!method) {   /* kept: all 16 blocks/scales tensors byte for byte, no expert records */
      CHECK_EQ_INT(same, 16);
      CHECK_EQ_INT(nrec, 0);
    } else {         /* re-encoded: 72 BF16 records within the bound of the exact values */
      CHECK_EQ_INT(same, 0);
      CHECK_EQ_INT(nrec, 72);
      CHECK(!moesz_msz_config(c)->mxfp4);
      const moesz_msz_rec *r = moesz_msz_expert(c, 2, 3, 0, MOESZ_MAT_UP);
      CHECK(r && r->dtype == MOESZ_DT_BF16 && r->method == MOESZ_MSZ_CODEC && r->eb > 0);
      moesz_mxfp4_view v;
      if (r && moesz_model_expert_mxfp4(m, 2, 3, MOESZ_MAT_GATE_UP, &v, &e) == MOESZ_OK) {
        float *dec = malloc(sizeof(float) * 32 * 64), *ex = malloc(sizeof(float) * 64 * 64);
        CHECK(moesz_msz_read(c, r, MOESZ_DT_F32, dec, &e) == MOESZ_OK);
        moesz_mxfp4_to_f32(v.blocks, v.scales, 64 * 2, ex);
        double worst = 0;
        for (int i = 0; i < 32 * 64; i++) worst = fmax(worst, fabs(dec[i] - ex[32 * 64 + i]));   /* up = rows [32, 64) */
        CHECK_MSG(worst <= r->eb * (1 + 1e-6), "re-encoded up: max error %g over bound %g", worst, r->eb);
        if (method == 1) CHECK(worst > r->eb / 4);   /* a bound that bites */
        free(dec); free(ex);
      }
    }
    moesz_engine *en = NULL;
    int rc = moesz_engine_open_msz(msz, NULL, &eo, &en, NULL, &e);
    CHECK_MSG(rc == MOESZ_OK, "serve: %s", e.msg);
    if (en) {
      CHECK(moesz_engine_forward(en, f.tok, 64, 1, got, &e) == 0);
      size_t diff = 0;
      int bad = 0;
      for (size_t i = 0; i < 64 * 256; i++) diff += got[i] != want[i];
      double mref = compare(&f, 0, 64, got, &bad);
      if (!method) CHECK_MSG(diff == 0, "kept MXFP4: %zu logits differ from the folder's", diff);
      else if (method == 2) CHECK_MSG(bad <= 2, "re-encoded MXFP4: %d of 64 argmax differ from transformers", bad);
      printf("# MXFP4 container %s: %zu of %d logits differ from the folder; %.2e to transformers, %d argmax differ\n",
             method == 1 ? "codec rel 1e-2" : method ? "codec rel 1e-4" : "kept (zstd)", diff, 64 * 256, mref, bad);
      moesz_engine_close(en);
    }
    if (!method) {   /* decompress: the checkpoint back, blocks and scales byte for byte */
      CHECK_MSG(moesz_msz_export(c, out, 1, 0, &e) == MOESZ_OK, "export: %s", e.msg);
      moesz_model *b = NULL;
      char pa[128];
      snprintf(pa, sizeof pa, "%s", out);
      CHECK_MSG(moesz_model_open(pa, &b, &e) == MOESZ_OK, "reopen: %s", e.msg);
      for (size_t i = 0; b && i < moesz_st_count(m->st); i++) {
        const moesz_tensor *t = moesz_st_at(m->st, i), *u = moesz_st_find(b->st, t->name);
        CHECK_MSG(u && u->nbytes == t->nbytes && !memcmp(u->data, t->data, t->nbytes), "%s", t->name);
      }
      moesz_model_close(b);
      char cmd[200];
      snprintf(cmd, sizeof cmd, "rm -rf %s", out);
      CHECK(system(cmd) == 0);
    }
    moesz_msz_close(c);
    unlink(msz);
  }
  moesz_model_close(m);
  free(want); free(got); free(f.logits);
  moesz_engine_close(ref);
}

/* synth --like gpt_oss: a checkpoint of gpt-oss-20b's kind (MXFP4 experts,
 * sinks, biases, windows, YaRN) whose counts match the config's prediction
 * and which the engine runs */
TEST(synth_gpt_oss) {
  char dir[64];
  snprintf(dir, sizeof dir, "/tmp/moesz-osssyn-%d", (int)getpid());
  moesz_synth_opts so = {.like = "gpt_oss", .layers = 3, .hidden = 64, .expert_width = 32, .experts = 8,
                         .top_k = 3, .vocab = 100, .heads = 4, .kv_heads = 2, .dtype = MOESZ_DT_BF16, .seed = 5};
  moesz_error e = {0};
  CHECK_MSG(moesz_synth_write(&so, dir, &e) == MOESZ_OK, "%s", e.msg);
  moesz_model *m = NULL;
  CHECK_MSG(moesz_model_open(dir, &m, &e) == MOESZ_OK, "%s", e.msg);
  if (m) {
    CHECK(m->cfg.arch == MOESZ_ARCH_GPT_OSS && m->cfg.mxfp4 && m->cfg.yarn && m->cfg.sliding_window == 128);
    CHECK(m->cfg.is_sliding[0] && !m->cfg.is_sliding[1] && m->cfg.is_sliding[2]);
    CHECK(!strcmp(moesz_model_expert_layout(m), "mxfp4"));
    moesz_counts k, kc;
    moesz_model_count(m, &k);
    moesz_config_count(&m->cfg, &kc);
    CHECK_EQ_INT(k.total_params, kc.total_params);
    CHECK_EQ_INT(k.expert_params, 3LL * 8 * 3 * 32 * 64);
    CHECK_EQ_INT(k.tensors[MOESZ_ROLE_OTHER], 0);
    moesz_model_close(m);
  }
  moesz_engine *en = NULL;
  CHECK_MSG(moesz_engine_open(dir, NULL, &en, &e) == MOESZ_OK, "%s", e.msg);
  if (en) {
    int32_t t[5] = {1, 7, 9, 99, 3};
    float lg[100 * 5];
    CHECK(moesz_engine_forward(en, t, 5, 1, lg, &e) == MOESZ_OK);
    int finite = 1;
    for (int i = 0; i < 500; i++) finite &= isfinite(lg[i]) != 0;
    CHECK(finite);
    moesz_engine_close(en);
  }
  so.expert_width = 48;   /* down_proj's 48 columns are not whole MXFP4 groups */
  so.force = 1;
  CHECK_EQ_INT(moesz_synth_write(&so, dir, &e), MOESZ_E_ARG);
  /* synth --msz: the MXFP4 experts need the folder; refused with a clear error, nothing written */
  char mp[96];
  snprintf(mp, sizeof mp, "%s.msz", dir);
  so.expert_width = 32;
  moesz_msz_opts mo;
  memset(&mo, 0, sizeof mo);
  mo.method = MOESZ_MSZ_ZSTD;
  CHECK_EQ_INT(moesz_msz_synth_write(&so, mp, &mo, NULL, &e), MOESZ_E_UNSUPPORTED);
  CHECK(strstr(e.msg, "MXFP4") != NULL);
  CHECK(access(mp, F_OK) != 0);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
}

/* A copy of fixture src in dir without tensor drop (NULL: none), the
 * blocks of layer 0's down_proj declared [E, 5, ...] when cut. */
static int copy_without(const char *src, const char *dir, const char *drop, int cut) {
  char p[256], cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && cp %s/config.json %s/", dir, dir, src, dir);
  if (system(cmd)) return -1;
  moesz_st *st = NULL;
  if (moesz_st_open(src, &st, NULL)) return -1;
  moesz_stw *w = NULL;
  snprintf(p, sizeof p, "%s/model.safetensors", dir);
  int rc = moesz_stw_create(p, &w, NULL);
  for (size_t i = 0; !rc && i < moesz_st_count(st); i++) {
    const moesz_tensor *t = moesz_st_at(st, i);
    if (drop && !strcmp(t->name, drop)) continue;
    int64_t sh[MOESZ_MAX_DIMS];
    memcpy(sh, t->shape, sizeof sh);
    if (cut && strstr(t->name, "layers.0.mlp.experts.down_proj_blocks")) sh[1] = 5;
    rc = moesz_stw_add_copy(w, t->name, t->dtype, t->ndim, sh, t->data, NULL);
  }
  if (!rc) rc = moesz_stw_commit(w, NULL);
  else moesz_stw_abort(w);
  moesz_st_close(st);
  return rc;
}

TEST(bad_checkpoints_refused) {
  char dir[64];
  snprintf(dir, sizeof dir, "/tmp/moesz-ossbad-%d", (int)getpid());
  moesz_error e = {0};
  moesz_engine *en = NULL;
  moesz_model *m = NULL;
  struct { const char *src, *drop, *want; int cut; } cases[] = {
    {FIX "gpt_oss", "model.layers.2.self_attn.sinks", "self_attn.sinks", 0},
    {FIX "gpt_oss", "model.layers.1.mlp.router.bias", "router.bias", 0},
    {FIX "gpt_oss", "model.layers.3.mlp.experts.down_proj_bias", "down_proj_bias", 0},
    {FIX "gpt_oss_mxfp4", "model.layers.1.mlp.experts.gate_up_proj_scales", "gate_up_proj", 0},
    {FIX "gpt_oss_mxfp4", NULL, "MXFP4", 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    CHECK(copy_without(cases[i].src, dir, cases[i].drop, cases[i].cut) == 0);
    int rc = moesz_engine_open(dir, NULL, &en, &e);
    CHECK_MSG(rc != MOESZ_OK && strstr(e.msg, cases[i].want), "case %zu: rc %d, message \"%s\"", i, rc, e.msg);
    if (!rc) moesz_engine_close(en);
    en = NULL;
  }
  /* ResMoE assumes gate/up/down rows line up neuron by neuron: refused for gpt-oss */
  CHECK_EQ_INT(moesz_model_open(FIX "gpt_oss", &m, &e), MOESZ_OK);
  if (m) {
    moesz_msz_opts o;
    memset(&o, 0, sizeof o);
    moesz_resmoe_opts ro;
    memset(&ro, 0, sizeof ro);
    uint8_t all[4] = {1, 1, 1, 1};
    o.method = MOESZ_MSZ_CODEC;
    o.eb = 1e-3;
    o.resmoe = &ro;
    o.resmoe_layers = all;
    char msz[96];
    snprintf(msz, sizeof msz, "%.60s.msz", dir);
    CHECK_EQ_INT(moesz_msz_write(m, msz, &o, NULL, &e), MOESZ_E_UNSUPPORTED);
    CHECK(access(msz, F_OK) != 0);
    CHECK_EQ_INT(moesz_resmoe_model(m, dir, &ro, NULL, NULL, 0, &e), MOESZ_E_UNSUPPORTED);
    moesz_model_close(m);
    m = NULL;
  }
  /* misshapen blocks refused by the model itself */
  CHECK(copy_without(FIX "gpt_oss_mxfp4", dir, NULL, 1) == 0);
  CHECK_EQ_INT(moesz_model_open(dir, &m, &e), MOESZ_E_FORMAT);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
}

/* the MXFP4 matvec (AVX2 and scalar) and row unpacking against a double sum
 * over transformers-exact dequantised values, scales 0 (subnormal) to 229 in
 * the rows (larger ones overflow the sums) */
TEST(mxfp4_kernels) {
  size_t len = 0;
  uint8_t *x = slurp(FIX "gpt_oss_mxfp4/extremes.bin", &len);
  CHECK(x != NULL);
  if (!x) return;
  uint8_t sc[256];
  memcpy(sc, x + 4096, 256);
  for (int i = 230; i < 256; i++) sc[i] = (uint8_t)(i - 100);   /* 6 * 2^103 * 32 stays finite */
  enum { R = 8, C = 1024 };   /* 8 rows of 32 groups */
  moesz_mxfp4_view m = {x, sc, R, C};
  float w[R * C], xv[C], y0[R], y1[R], un[R * C];
  moesz_mxfp4_to_f32(x, sc, 256, w);
  for (int i = 0; i < C; i++) xv[i] = (float)((i * 37) % 29 - 14) / 7.0f;
  moesz_k_mxfp4_rows(&m, 0, R, xv, y0, 0, 0);
  moesz_k_mxfp4_rows(&m, 0, R, xv, y1, 0, 1);
  moesz_k_mxfp4_unpack(&m, 2, 5, un);
  CHECK(!memcmp(un, w + 2 * C, sizeof(float) * 3 * C));
  for (int r = 0; r < R; r++) {
    double ref = 0, mag = 0;
    for (int c = 0; c < C; c++) { ref += (double)w[r * C + c] * xv[c]; mag += fabs((double)w[r * C + c] * xv[c]); }
    CHECK_MSG(fabs(y0[r] - ref) <= 1e-5 * mag && fabs(y1[r] - ref) <= 1e-5 * mag,
              "row %d: scalar %g avx %g reference %g", r, y0[r], y1[r], ref);
  }
  free(x);
}

/* moesz inspect --stats reads MXFP4 experts through their exact values */
TEST(cli_inspect_stats_mxfp4) {
  const char *bin = getenv("MOESZ_BIN");
  if (!bin || !*bin) SKIP("MOESZ_BIN not set (make check sets it)");
  char cmd[512], out[1 << 16];
  snprintf(cmd, sizeof cmd, "%s inspect " FIX "gpt_oss_mxfp4 --stats --eb 0.01 2>&1", bin);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  CHECK_MSG(strstr(out, "experts mxfp4") && strstr(out, "smaller than 4.25-bit") && strstr(out, "3      5        up    32x64"),
            "%s", out);
}

int main(void) {
  RUN(config_and_roles);
  RUN(counts_match_transformers);
  RUN(mxfp4_dequant_matches_transformers);
  RUN(mxfp4_kernels);
  RUN(forward_matches_transformers);
  RUN(forward_mxfp4_matches_transformers);
  RUN(greedy_matches_transformers);
  RUN(container_serves_like_folder);
  RUN(container_mxfp4_keep_and_reencode);
  RUN(synth_gpt_oss);
  RUN(bad_checkpoints_refused);
  RUN(cli_inspect_stats_mxfp4);
  return DONE();
}
