/* tests/harness_tok.h - what the tokenizer-using tests share: the "model"
 * object of a byte-level BPE tokenizer.json (each byte its own token through
 * the GPT-2 byte map, ids 0..255, no merges), added to root. */
#ifndef MOESZ_TEST_HARNESS_TOK_H
#define MOESZ_TEST_HARNESS_TOK_H
#include <cjson/cJSON.h>

static inline void harness_byte_model(cJSON *root) {
  cJSON *model = cJSON_AddObjectToObject(root, "model");
  cJSON_AddStringToObject(model, "type", "BPE");
  cJSON_AddArrayToObject(model, "merges");
  cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
  for (int b = 0, extra = 0; b < 256; b++) {
    int keep = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    unsigned cp = keep ? (unsigned)b : 256u + (unsigned)extra++;
    char u[4] = {0};
    if (cp < 0x80) u[0] = (char)cp;
    else { u[0] = (char)(0xc0 | cp >> 6); u[1] = (char)(0x80 | (cp & 63)); }
    cJSON_AddNumberToObject(vocab, u, b);
  }
}
#endif
