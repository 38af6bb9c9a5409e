/* fuzz/fuzz_cache_state.c - libFuzzer target for the cache-state parser
 * (--cache-state FILE): arbitrary bytes against a 4-layer, 8-expert model. */
#include <stdlib.h>
#include "moesz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  double freq[32];
  moesz_cache_state_parse((const char *)data, size, 4, 8, freq, NULL);
  return 0;
}
