/* fuzz/fuzz_config.c - libFuzzer target for config.json parsing
 * (moesz_config_parse) and, when a config parses, the tensor naming rules
 * (moesz_tensor_classify). Input: config text, optionally a NUL byte and
 * tensor names, one a line. */
#include <stdlib.h>
#include <string.h>
#include "moesz/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  moesz_config cfg;
  moesz_error err;
  const uint8_t *nul = memchr(data, 0, size);
  size_t clen = nul ? (size_t)(nul - data) : size;
  if (moesz_config_parse((const char *)data, clen, &cfg, &err) != MOESZ_OK) return 0;
  if (!nul) return 0;
  data = nul + 1;
  size -= clen + 1;
  if (cfg.n_layers < 1 || cfg.n_layers > MOESZ_MAX_LAYERS) __builtin_trap();
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = 0;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    moesz_tensor_role r;
    moesz_tensor_classify(&cfg, line, &r);
    if (r.role >= MOESZ_ROLE_COUNT || r.layer >= cfg.n_layers) __builtin_trap();
    if (r.role == MOESZ_ROLE_EXPERT && !r.stacked && r.expert >= cfg.n_experts) __builtin_trap();
  }
  free(text);
  return 0;
}
