/* fuzz/fuzz_codec.c - libFuzzer target for the codec's decoder: arbitrary
 * bytes as a stream, decoded whole (every dtype) and chunk by chunk. */
#include <stdlib.h>
#include "moesz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  moesz_codec_info info;
  if (moesz_codec_info_read(data, size, &info, NULL)) return 0;
  if (info.count > (1u << 22)) return 0;
  void *dst = malloc(info.count * 4 + 4);
  if (!dst) return 0;
  moesz_codec_decompress(data, size, MOESZ_DT_BF16, dst, info.count, 1, NULL);
  moesz_codec_decompress(data, size, MOESZ_DT_F32, dst, info.count, 1, NULL);
  size_t n;
  for (size_t c = 0; c < info.nchunks && c < 4; c++)
    moesz_codec_decompress_chunk(data, size, c, MOESZ_DT_F16, dst, info.count, &n, NULL);
  free(dst);
  return 0;
}
