/* fuzz/fuzz_model.c - libFuzzer target for the model index and expert views:
 * input byte 0 picks one of five tiny configurations (Mixtral, Qwen2-MoE with
 * a dense layer, DeepSeek with shared experts, Switch, gpt-oss with MXFP4 or
 * stacked experts), the rest is a
 * safetensors file. When moesz_st_parse and moesz_model_wrap accept it, every
 * expert view is read whole (to f32 and through the statistics), every role
 * looked up and the counts taken: shape checks must keep all of it inside
 * the input. Seeds: tools/make_fuzz_seeds.py. */
#include <stdlib.h>
#include <string.h>
#include "moesz/model.h"
#include "moesz/tensor.h"

static const char *CONFIGS[] = {
  "{\"architectures\":[\"MixtralForCausalLM\"],\"num_hidden_layers\":2,\"hidden_size\":4,"
  "\"intermediate_size\":2,\"vocab_size\":4,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
  "\"num_local_experts\":2,\"num_experts_per_tok\":1}",
  "{\"architectures\":[\"Qwen2MoeForCausalLM\"],\"num_hidden_layers\":2,\"hidden_size\":4,"
  "\"intermediate_size\":3,\"moe_intermediate_size\":2,\"shared_expert_intermediate_size\":2,"
  "\"vocab_size\":4,\"num_attention_heads\":2,\"num_experts\":2,\"num_experts_per_tok\":1,"
  "\"mlp_only_layers\":[1]}",
  "{\"architectures\":[\"DeepseekForCausalLM\"],\"num_hidden_layers\":2,\"hidden_size\":4,"
  "\"intermediate_size\":3,\"moe_intermediate_size\":2,\"vocab_size\":4,\"num_attention_heads\":2,"
  "\"n_routed_experts\":2,\"num_experts_per_tok\":1,\"n_shared_experts\":1,\"first_k_dense_replace\":1}",
  "{\"architectures\":[\"SwitchTransformersForConditionalGeneration\"],\"num_layers\":1,"
  "\"num_decoder_layers\":1,\"d_model\":4,\"d_ff\":2,\"d_kv\":2,\"num_heads\":2,\"vocab_size\":4,"
  "\"num_experts\":2,\"relative_attention_num_buckets\":2}",
  "{\"architectures\":[\"GptOssForCausalLM\"],\"num_hidden_layers\":1,\"hidden_size\":32,"
  "\"intermediate_size\":32,\"vocab_size\":4,\"num_attention_heads\":2,\"head_dim\":16,"
  "\"num_local_experts\":2,\"num_experts_per_tok\":1}",
};
#define NCFG (int)(sizeof CONFIGS / sizeof *CONFIGS)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const char *cj = CONFIGS[data[0] % NCFG];
  moesz_config cfg;
  if (moesz_config_parse(cj, strlen(cj), &cfg, NULL) != MOESZ_OK) __builtin_trap();
  moesz_st *st = NULL;
  if (moesz_st_parse(data + 1, size - 1, &st, NULL) != MOESZ_OK) return 0;
  moesz_model *m = NULL;
  if (moesz_model_wrap(&cfg, st, "fuzz", &m, NULL) != MOESZ_OK) return 0;
  static float buf[4096];
  for (int L = 0; L < cfg.n_layers; L++)
    for (int e = -1; e <= cfg.n_experts; e++)
      for (int sh = 0; sh < 2; sh++)
        for (int mt = MOESZ_MAT_NONE; mt <= MOESZ_MAT_GATE_UP + 1; mt++) {
          moesz_matview v;
          if (moesz_model_expert(m, L, e, sh, (moesz_mat)mt, &v, NULL) != MOESZ_OK) continue;
          if (v.rows * v.cols > 4096) __builtin_trap(); /* shapes were checked against the config */
          if (moesz_dtype_is_float(v.dtype)) moesz_matview_to_f32(&v, buf, NULL);
          moesz_matstats s;
          moesz_matview_stats(&v, 0.01, &s, NULL);
        }
  for (int L = -1; L <= cfg.n_layers; L++)   /* gpt-oss MXFP4 blocks + scales, dequantised whole */
    for (int e = -1; e <= cfg.n_experts; e++)
      for (int mt = MOESZ_MAT_GATE; mt <= MOESZ_MAT_GATE_UP; mt++) {
        moesz_mxfp4_view x;
        if (moesz_model_expert_mxfp4(m, L, e, (moesz_mat)mt, &x, NULL) != MOESZ_OK) continue;
        if (x.rows * x.cols > 4096 || x.cols % 32) __builtin_trap();
        moesz_mxfp4_to_f32(x.blocks, x.scales, (size_t)(x.rows * (x.cols / 32)), buf);
      }
  for (int r = 0; r <= MOESZ_ROLE_COUNT; r++)
    for (int L = -2; L <= cfg.n_layers; L++) (void)moesz_model_tensor(m, (moesz_role)r, L);
  moesz_counts k;
  moesz_model_count(m, &k);
  moesz_model_close(m);
  return 0;
}
