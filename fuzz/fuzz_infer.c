/* fuzz/fuzz_infer.c - libFuzzer target for the inference engine's handling
 * of checkpoints: binding tensors by role, shape/dtype checks against the
 * config, and a forward pass over whatever is accepted. Input: byte 0 picks
 * one of the tiny configs below, byte 1 the token ids / batch split, the rest
 * is a safetensors file (seeds: tools/make_infer_fixtures.py --fuzz-seeds).
 * Any input must be rejected with an error or run to completion. */
#include <stdlib.h>
#include <string.h>
#include "moesz/infer.h"
#include "moesz/model.h"
#include "moesz/tensor.h"

/* Keep in sync with FUZZ_CONFIGS in tools/make_infer_fixtures.py. */
static const char *CONFIGS[] = {
  "{\"architectures\":[\"MixtralForCausalLM\"],\"model_type\":\"mixtral\",\"hidden_size\":8,"
  "\"intermediate_size\":8,\"num_hidden_layers\":2,\"num_attention_heads\":2,"
  "\"num_key_value_heads\":1,\"num_local_experts\":3,\"num_experts_per_tok\":2,"
  "\"vocab_size\":16,\"max_position_embeddings\":32,\"rms_norm_eps\":1e-5,"
  "\"rope_theta\":10000.0,\"tie_word_embeddings\":false}",
  "{\"architectures\":[\"Qwen2MoeForCausalLM\"],\"model_type\":\"qwen2_moe\",\"hidden_size\":8,"
  "\"intermediate_size\":12,\"moe_intermediate_size\":8,\"shared_expert_intermediate_size\":6,"
  "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
  "\"num_experts\":3,\"num_experts_per_tok\":2,\"norm_topk_prob\":false,"
  "\"decoder_sparse_step\":1,\"mlp_only_layers\":[1],\"qkv_bias\":true,\"vocab_size\":16,"
  "\"max_position_embeddings\":32,\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,"
  "\"tie_word_embeddings\":false,\"use_sliding_window\":false}",
  "{\"architectures\":[\"OlmoeForCausalLM\"],\"model_type\":\"olmoe\",\"hidden_size\":8,"
  "\"intermediate_size\":8,\"num_hidden_layers\":2,\"num_attention_heads\":2,"
  "\"num_key_value_heads\":2,\"num_experts\":3,\"num_experts_per_tok\":2,"
  "\"norm_topk_prob\":false,\"clip_qkv\":1.5,\"vocab_size\":16,"
  "\"max_position_embeddings\":32,\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0,"
  "\"tie_word_embeddings\":false}",
  "{\"architectures\":[\"Qwen3MoeForCausalLM\"],\"model_type\":\"qwen3_moe\",\"hidden_size\":8,"
  "\"intermediate_size\":12,\"moe_intermediate_size\":8,\"num_hidden_layers\":2,"
  "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"head_dim\":6,\"num_experts\":3,"
  "\"num_experts_per_tok\":2,\"norm_topk_prob\":true,\"decoder_sparse_step\":1,"
  "\"mlp_only_layers\":[],\"vocab_size\":16,\"max_position_embeddings\":32,"
  "\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,\"tie_word_embeddings\":false}",
  "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":8,"
  "\"intermediate_size\":12,\"num_hidden_layers\":2,\"num_attention_heads\":2,"
  "\"num_key_value_heads\":1,\"vocab_size\":16,\"max_position_embeddings\":32,"
  "\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0,\"tie_word_embeddings\":true}",
};
#define NCFG (sizeof CONFIGS / sizeof *CONFIGS)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  const char *cj = CONFIGS[data[0] % NCFG];
  moesz_config cfg;
  if (moesz_config_parse(cj, strlen(cj), &cfg, NULL)) __builtin_trap(); /* fixed configs parse */
  uint8_t sel = data[1];
  moesz_st *st = NULL;
  if (moesz_st_parse(data + 2, size - 2, &st, NULL)) return 0;
  moesz_model *m = NULL;
  if (moesz_model_wrap(&cfg, st, "fuzz", &m, NULL)) return 0;   /* takes st either way */
  moesz_engine_opts o = {.threads = 1, .max_ctx = 8, .expert_group = 1 + (sel >> 7)};
  moesz_engine *e = NULL;
  if (moesz_engine_open_model(m, 1, NULL, 0, &o, &e, NULL)) { moesz_model_close(m); return 0; }
  int32_t ids[6];
  for (int i = 0; i < 6; i++) ids[i] = (int32_t)((sel * 7 + i * 5) % 17) - (i == 5);  /* 16, -1: errors */
  float *lg = malloc(sizeof(float) * 6 * (size_t)moesz_engine_vocab(e));
  if (lg) {
    size_t first = 1 + (sel & 3);
    moesz_engine_forward(e, ids, first, 1, lg, NULL);
    moesz_engine_forward(e, ids + first, 6 - first, 0, lg, NULL);
    if (moesz_engine_pos(e) > moesz_engine_max_ctx(e)) __builtin_trap();
    moesz_engine_reset(e);
    moesz_engine_forward(e, ids, 4, 0, lg, NULL);
  }
  free(lg);
  moesz_engine_close(e);
  return 0;
}
