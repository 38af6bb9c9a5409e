/* fuzz/fuzz_huf.c - libFuzzer target for the codec's Huffman stage: the
 * input gives a code (symbol counts through package-merge, or raw code
 * lengths, which may be no prefix code or an incomplete one), a value count,
 * a verbatim count and a Huffman block (sizes, escape count, four bit
 * streams, escapes - truncated, lying or random). The block is decoded by
 * the single-symbol decoder and by the pair decoder; both must give the same
 * answer (both refuse, or both decode the same values and verbatim
 * positions), and neither may read or write out of bounds.
 * Input: u8 mode | u8 nsym-1 | u16 n | u8 nv | nsym count or length bytes | block. */
#include <stdlib.h>
#include <string.h>
#include "codec/codec_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 5) return 0;
  int raw = data[0] & 1;
  size_t nsym = (size_t)data[1] + 1, n = (size_t)data[2] | (size_t)data[3] << 8, nv = data[4];
  data += 5;
  size -= 5;
  if (size < nsym || nv > n) return 0;
  uint8_t len[HUF_NSYM] = {0};
  if (raw) {
    for (size_t s = 0; s < nsym; s++) len[s] = data[s] % (HUF_MAXLEN + 1);
  } else {
    uint64_t hist[HUF_NSYM] = {0};
    for (size_t s = 0; s < nsym; s++) hist[s] = data[s] ? (uint64_t)data[s] * data[s] * data[s] : 0;
    if (huf_lengths(hist, len)) return 0;
  }
  data += nsym;
  size -= nsym;
  huf_dec *d1 = malloc(sizeof *d1), *d2 = malloc(sizeof *d2);
  uint16_t *a = malloc(2 * n + 2), *b = malloc(2 * n + 2);
  uint32_t *va = malloc(4 * nv + 4), *vb = malloc(4 * nv + 4);
  uint8_t *blk = malloc(size + 1);   /* exactly size bytes are the block */
  if (!d1 || !d2 || !a || !b || !va || !vb || !blk) abort();
  memcpy(blk, data, size);
  if (!huf_dec_init(d1, len, nsym) && !huf_dec_init(d2, len, nsym)) {
    huf_dec_values(d1, len, 0.002, MOESZ_DT_BF16, MOESZ_DT_BF16);
    huf_dec_values(d2, len, 0.002, MOESZ_DT_BF16, MOESZ_DT_BF16);
    huf_dec_pairs(d2, len);
    memset(a, 0, 2 * n + 2);
    memset(b, 0, 2 * n + 2);
    int r1 = huf_decode(d1, blk, size, n, a, va, nv), r2 = huf_decode(d2, blk, size, n, b, vb, nv);
    if (r1 != r2) abort();
    if (!r1) {
      if (memcmp(va, vb, 4 * nv)) abort();
      for (size_t k = 0; k < nv; k++) a[va[k]] = b[va[k]] = 0;   /* verbatim values: the caller's */
      if (memcmp(a, b, 2 * n)) abort();
    }
  }
  free(d1); free(d2); free(a); free(b); free(va); free(vb); free(blk);
  return 0;
}
