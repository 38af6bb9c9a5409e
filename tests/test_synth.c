/* tests/test_synth.c - `moesz synth` checkpoints: every family opens, every
 * tensor is classified, stored counts equal the counts the config predicts,
 * the engine runs them, the weights have the requested spread, and the same
 * seed gives the same bytes; a container written straight from the plan
 * (moesz_msz_synth_write) equals the folder then moesz_msz_write, byte for
 * byte, for every method, and serves; the streaming writer refuses misuse. */
#include "harness.h"
#include <unistd.h>
#include "moesz.h"

TEST(every_family_is_well_formed) {
  const char *fam[] = {"mixtral", "olmoe", "qwen3_moe", "qwen2_moe", "deepseek", "llama", "deepseek_v3",
                       "glm4_moe", "gpt_oss"};
  for (size_t i = 0; i < sizeof fam / sizeof *fam; i++) {
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/moesz_synth_%ld_%s", (long)getpid(), fam[i]);
    moesz_synth_opts o = {.like = fam[i], .layers = 2, .hidden = 64, .expert_width = 32, .vocab = 96,
                          .heads = 4, .kv_heads = 2, .experts = 4, .dtype = MOESZ_DT_F32, .seed = 7};
    moesz_error e = {0};
    CHECK_EQ_INT(moesz_synth_write(&o, dir, &e), MOESZ_OK);
    moesz_model *m;
    CHECK_EQ_INT(moesz_model_open(dir, &m, &e), MOESZ_OK);
    if (!m) { fprintf(stderr, "  %s: %s\n", fam[i], e.msg); continue; }
    int other = 0;
    for (size_t t = 0; t < moesz_st_count(m->st); t++) other += m->roles[t].role == MOESZ_ROLE_OTHER;
    CHECK_MSG(other == 0, "%s: %d unclassified tensors", fam[i], other);
    moesz_counts got, want;
    moesz_model_count(m, &got);
    moesz_config_count(&m->cfg, &want);
    CHECK_MSG(got.total_params == want.total_params && got.expert_params == want.expert_params,
              "%s: %lld/%lld params", fam[i], (long long)got.total_params, (long long)want.total_params);
    const moesz_tensor *emb = moesz_st_find(m->st, "model.embed_tokens.weight");
    if (emb) {
      const float *x = emb->data;
      double s = 0, s2 = 0;
      for (size_t k = 0; k < emb->numel; k++) { s += x[k]; s2 += (double)x[k] * x[k]; }
      double sd = sqrt(s2 / (double)emb->numel - (s / (double)emb->numel) * (s / (double)emb->numel));
      CHECK_NEAR(sd, 0.02, 0.002);
    }
    moesz_model_close(m);
    moesz_engine *en;
    moesz_engine_opts eo = {.threads = 1, .max_ctx = 16};
    CHECK_EQ_INT(moesz_engine_open(dir, &eo, &en, &e), MOESZ_OK);
    if (en) {
      float lg[96];
      int32_t tok[3] = {1, 5, 9};
      CHECK_EQ_INT(moesz_engine_forward(en, tok, 3, 0, lg, &e), MOESZ_OK);
      CHECK(isfinite(lg[0]) && isfinite(lg[95]));
      moesz_engine_close(en);
    }
    char p[256];
    snprintf(p, sizeof p, "rm -rf %s", dir);
    CHECK_EQ_INT(system(p), 0);
  }
}

TEST(same_seed_same_bytes_and_bad_options) {
  char a[128], b[128];
  snprintf(a, sizeof a, "/tmp/moesz_synth_%ld_a", (long)getpid());
  snprintf(b, sizeof b, "/tmp/moesz_synth_%ld_b", (long)getpid());
  moesz_synth_opts o = {.like = "olmoe", .layers = 1, .hidden = 32, .expert_width = 16, .vocab = 64,
                        .heads = 2, .kv_heads = 2, .experts = 4, .dtype = MOESZ_DT_BF16, .seed = 3};
  CHECK_EQ_INT(moesz_synth_write(&o, a, NULL), MOESZ_OK);
  CHECK_EQ_INT(moesz_synth_write(&o, b, NULL), MOESZ_OK);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "cmp -s %s/model.safetensors %s/model.safetensors", a, b);
  CHECK_EQ_INT(system(cmd), 0);
  o.seed = 4;
  moesz_error e = {0};
  /* an existing model folder is refused, then replaced with force */
  CHECK_EQ_INT(moesz_synth_write(&o, b, &e), MOESZ_E_ARG);
  CHECK(strstr(e.msg, "not empty") != NULL);
  CHECK_EQ_INT(system(cmd), 0);
  o.force = 1;
  CHECK_EQ_INT(moesz_synth_write(&o, b, NULL), MOESZ_OK);
  CHECK(system(cmd) != 0);
  o.like = "gpt2";
  CHECK_EQ_INT(moesz_synth_write(&o, b, &e), MOESZ_E_ARG);
  CHECK(strstr(e.msg, "gpt2") != NULL);
  o.like = "olmoe";
  o.heads = 3;
  o.kv_heads = 2;
  CHECK_EQ_INT(moesz_synth_write(&o, b, &e), MOESZ_E_ARG);
  snprintf(cmd, sizeof cmd, "rm -rf %s %s", a, b);
  CHECK_EQ_INT(system(cmd), 0);
}

/* Writes family like with method m to a folder then compresses it, and straight; returns 1 if the files are equal. */
static int direct_equals_folder(const char *like, moesz_msz_method m, int pipeline, moesz_dtype dt, const char *tag) {
  char dir[128], a[160], b[160], cmd[600];
  snprintf(dir, sizeof dir, "/tmp/moesz_synthmsz_%ld_%s", (long)getpid(), tag);
  snprintf(a, sizeof a, "%s.folder.msz", dir);
  snprintf(b, sizeof b, "%s.direct.msz", dir);
  moesz_synth_opts o = {.like = like, .layers = 2, .hidden = 64, .expert_width = 48, .vocab = 96,
                        .heads = 4, .kv_heads = 2, .experts = 4, .dtype = dt, .seed = 11};
  moesz_msz_opts mo = {.method = m, .pipeline = pipeline, .eb = 1e-3, .threads = 2};
  moesz_error e = {0};
  moesz_model *md = NULL;
  moesz_msz_summary s1, s2;
  int ok = moesz_synth_write(&o, dir, &e) == MOESZ_OK && moesz_model_open(dir, &md, &e) == MOESZ_OK &&
           moesz_msz_write(md, a, &mo, &s1, &e) == MOESZ_OK;
  moesz_model_close(md);
  CHECK_MSG(ok, "%s: folder path: %s", tag, e.msg);
  CHECK_EQ_INT(moesz_msz_synth_write(&o, b, &mo, &s2, &e), MOESZ_OK);
  snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
  int same = system(cmd) == 0;
  CHECK_MSG(same, "%s: containers differ", tag);
  CHECK_EQ_INT(s1.expert_raw_bytes, s2.expert_raw_bytes);
  CHECK_EQ_INT(s1.expert_stored_bytes, s2.expert_stored_bytes);
  CHECK_EQ_INT(s1.dense_bytes, s2.dense_bytes);
  CHECK(s2.dense_bytes > 0 && s2.expert_raw_bytes > 0);
  /* the direct container serves */
  moesz_engine *en = NULL;
  moesz_engine_opts eo = {.threads = 1, .max_ctx = 16};
  CHECK_EQ_INT(moesz_engine_open(b, &eo, &en, &e), MOESZ_OK);
  if (en) {
    float lg[96];
    int32_t tok[3] = {1, 5, 9};
    CHECK_EQ_INT(moesz_engine_forward(en, tok, 3, 0, lg, &e), MOESZ_OK);
    CHECK(isfinite(lg[0]) && isfinite(lg[95]));
    moesz_engine_close(en);
  }
  snprintf(cmd, sizeof cmd, "rm -rf %s %s %s", dir, a, b);
  CHECK_EQ_INT(system(cmd), 0);
  return same;
}

TEST(direct_container_equals_folder_then_compress) {
  CHECK(direct_equals_folder("mixtral", MOESZ_MSZ_COMPUTE, 0, MOESZ_DT_BF16, "mix_compute"));
  CHECK(direct_equals_folder("mixtral", MOESZ_MSZ_CODEC, MOESZ_PIPE_ENTROPY, MOESZ_DT_BF16, "mix_entropy"));
  CHECK(direct_equals_folder("mixtral", MOESZ_MSZ_ZSTD, 0, MOESZ_DT_BF16, "mix_zstd"));
  CHECK(direct_equals_folder("mixtral", MOESZ_MSZ_RAW, 0, MOESZ_DT_F32, "mix_raw_f32"));
  /* shared experts and a dense first layer stay in the dense image */
  CHECK(direct_equals_folder("qwen2_moe", MOESZ_MSZ_CODEC, MOESZ_PIPE_FAST, MOESZ_DT_BF16, "q2_fast"));
  CHECK(direct_equals_folder("deepseek", MOESZ_MSZ_COMPUTE, 0, MOESZ_DT_BF16, "ds_compute"));
}

TEST(streaming_writer_refuses_misuse) {
  char p[160];
  snprintf(p, sizeof p, "/tmp/moesz_synthmsz_%ld_bad.msz", (long)getpid());
  moesz_msz_opts mo = {.method = MOESZ_MSZ_RAW};
  moesz_error e = {0};
  moesz_msz_writer *w = NULL;
  CHECK_EQ_INT(moesz_msz_writer_open("/tmp", &mo, 1, &w, &e), MOESZ_E_ARG);   /* a folder */
  CHECK(w == NULL);
  CHECK_EQ_INT(moesz_msz_writer_open(p, &mo, 1, &w, &e), MOESZ_OK);
  uint16_t x[4] = {0};
  moesz_msz_expert_in in = {.layer = 0, .expert = 0, .mat = MOESZ_MAT_GATE, .tensor = "t", .dtype = MOESZ_DT_BF16,
                            .rows = 2, .cols = 2, .data = x, .view_ld = 2};
  CHECK_EQ_INT(moesz_msz_writer_expert(w, &in, &e), MOESZ_E_ARG);          /* before the dense image */
  CHECK(strstr(e.msg, "dense") != NULL);
  moesz_stw *dw = NULL;
  CHECK_EQ_INT(moesz_stw_create("(embedded)", &dw, &e), MOESZ_OK);
  int64_t sh[1] = {4};
  CHECK_EQ_INT(moesz_stw_add(dw, "n", MOESZ_DT_BF16, 1, sh, x, &e), MOESZ_OK);
  CHECK_EQ_INT(moesz_msz_writer_dense(w, dw, &e), MOESZ_OK);
  CHECK_EQ_INT(moesz_msz_writer_dense(w, dw, &e), MOESZ_E_ARG);            /* twice */
  CHECK_EQ_INT(moesz_msz_writer_file(w, "config.json", "{}", 2, &e), MOESZ_E_ARG);   /* a file after it */
  in.mat = MOESZ_MAT_GATE_UP;
  CHECK_EQ_INT(moesz_msz_writer_expert(w, &in, &e), MOESZ_E_ARG);
  moesz_stw_abort(dw);
  moesz_msz_writer_abort(w);
  CHECK(access(p, F_OK) != 0);                                               /* nothing left behind */
  /* a commit without a dense image fails and leaves nothing */
  CHECK_EQ_INT(moesz_msz_writer_open(p, &mo, 0, &w, &e), MOESZ_OK);
  CHECK_EQ_INT(moesz_msz_writer_commit(w, NULL, &e), MOESZ_E_ARG);
  CHECK(access(p, F_OK) != 0);
  /* parts and ResMoE need the folder */
  moesz_synth_opts o = {.like = "olmoe", .layers = 1, .hidden = 32, .expert_width = 16, .vocab = 64,
                        .heads = 2, .kv_heads = 2, .experts = 4, .dtype = MOESZ_DT_BF16};
  mo.part = 1;
  CHECK_EQ_INT(moesz_msz_synth_write(&o, p, &mo, NULL, &e), MOESZ_E_ARG);
  CHECK(access(p, F_OK) != 0);
}

int main(void) {
  RUN(every_family_is_well_formed);
  RUN(same_seed_same_bytes_and_bad_options);
  RUN(direct_container_equals_folder_then_compress);
  RUN(streaming_writer_refuses_misuse);
  return DONE();
}
