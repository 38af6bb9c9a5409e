/* tests/test_synth.c - `moesz synth` checkpoints: every family opens, every
 * tensor is classified, stored counts equal the counts the config predicts,
 * the engine runs them, the weights have the requested spread, and the same
 * seed gives the same bytes. */
#include "harness.h"
#include <unistd.h>
#include "moesz.h"

TEST(every_family_is_well_formed) {
  const char *fam[] = {"mixtral", "olmoe", "qwen3_moe", "qwen2_moe", "deepseek", "llama", "deepseek_v3",
                       "glm4_moe"};
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

int main(void) {
  RUN(every_family_is_well_formed);
  RUN(same_seed_same_bytes_and_bad_options);
  return DONE();
}
