/* fuzz/fuzz_container.c - libFuzzer target for the .msz reader: opens the
 * input as a container and, if it validates, decodes every blob. */
#include <stdlib.h>
#include "moesz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  moesz_msz *c;
  if (moesz_msz_open_mem(data, size, &c, NULL)) return 0;
  for (size_t i = 0; i < moesz_msz_count(c); i++) {
    const moesz_msz_rec *r = moesz_msz_at(c, i);
    if (r->raw_bytes > (64u << 20)) continue;
    void *dst = malloc(r->raw_bytes / moesz_dtype_size(r->dtype) * 4 + 4);
    if (dst) moesz_msz_read(c, r, MOESZ_DT_F32, dst, NULL);
    free(dst);
  }
  moesz_msz_close(c);
  return 0;
}
