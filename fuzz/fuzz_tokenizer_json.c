/* fuzz/fuzz_tokenizer_json.c - libFuzzer target for the tokenizer.json
 * loader: arbitrary bytes as tokenizer.json; when one loads, encode and
 * decode a short string with it. */
#include <stdlib.h>
#include "moesz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  moesz_tok *t;
  if (moesz_tok_load_json((const char *)data, size, &t, NULL)) return 0;
  int32_t *ids;
  size_t n;
  if (!moesz_tok_encode(t, "hello world \xe2\x96\x81 <s> 12", 22, 1, &ids, &n, NULL)) {
    char *out;
    size_t len;
    if (!moesz_tok_decode(t, ids, n, 0, &out, &len, NULL)) free(out);
    free(ids);
  }
  moesz_tok_free(t);
  return 0;
}
