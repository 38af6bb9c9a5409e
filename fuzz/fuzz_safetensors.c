/* fuzz/fuzz_safetensors.c - libFuzzer target for the safetensors header
 * parser (moesz_st_parse): any byte string must give a clean error or a
 * tensor table whose every tensor lies inside the input. */
#include <string.h>
#include "moesz/tensor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  moesz_st *st = NULL;
  moesz_error err;
  if (moesz_st_parse(data, size, &st, &err) != MOESZ_OK) return 0;
  volatile uint8_t acc = 0;
  for (size_t i = 0; i < moesz_st_count(st); i++) {
    const moesz_tensor *t = moesz_st_at(st, i);
    const uint8_t *p = t->data;
    if (t->nbytes) acc ^= p[0] ^ p[t->nbytes - 1]; /* ASan flags an out-of-range table */
    if (moesz_st_find(st, t->name) == NULL) __builtin_trap();
  }
  (void)moesz_st_meta(st, "format");
  (void)acc;
  moesz_st_close(st);
  return 0;
}
