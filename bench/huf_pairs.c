/* bench/huf_pairs.c - the Huffman stage of a container's codec blobs, with
 * and without the pair table, alternated in one process (so both see the same
 * load on a shared machine): per blob, the decode tables are built
 * (huf_dec_init + huf_dec_values [+ huf_dec_pairs]) and the first chunk's
 * Huffman stage decoded into bf16, R times each way in alternation. Prints
 * the sums over blobs of the per-blob medians, their ratio, and the share
 * of the table builds. With M, only the first M values of each chunk are
 * decoded (the same tables), to find the stream size from which the pair
 * table pays.
 *
 *   build/bench/huf_pairs CONTAINER.msz [R=100] [M=all] [max_blobs]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/bytes.h"
#include "base/util.h"
#include "codec/codec_internal.h"
#include "moesz/container.h"

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* One build + decode; returns seconds, or -1 on a decode error. */
static double run(huf_dec *d, const uint8_t *len, size_t A, double step, int pairs, const uint8_t *code, size_t clen,
                  size_t m, void *dst, uint32_t *vpos, size_t nv, double *tbuild) {
  double t0 = moesz_time_now();
  if (huf_dec_init(d, len, A)) return -1;
  huf_dec_values(d, len, step, MOESZ_DT_BF16, MOESZ_DT_BF16);
  if (pairs) huf_dec_pairs(d, len);
  double t1 = moesz_time_now();
  if (huf_decode(d, code, clen, m, dst, vpos, nv)) return -1;
  double t2 = moesz_time_now();
  *tbuild = t1 - t0;
  return t2 - t0;
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: huf_pairs CONTAINER.msz [reps=100] [values=all] [max_blobs]\n"); return 2; }
  int reps = argc > 2 ? atoi(argv[2]) : 100;
  size_t mlim = argc > 3 ? (size_t)atol(argv[3]) : 0;
  size_t maxb = argc > 4 ? (size_t)atol(argv[4]) : (size_t)-1;
  if (reps < 1) reps = 1;
  moesz_error e = {0};
  moesz_msz *c;
  if (moesz_msz_open(argv[1], &c, &e)) { fprintf(stderr, "huf_pairs: %s\n", e.msg); return 1; }
  huf_dec *d = malloc(sizeof *d);
  double *ta = malloc(sizeof(double) * (size_t)reps), *tb = malloc(sizeof(double) * (size_t)reps);
  double *ba = malloc(sizeof(double) * (size_t)reps), *bb = malloc(sizeof(double) * (size_t)reps);
  uint16_t *out1 = NULL, *out2 = NULL;
  uint32_t *vpos = NULL;
  size_t cap = 0, nb = 0, nvals = 0;
  double sa = 0, sb = 0, sba = 0, sbb = 0;
  if (!d || !ta || !tb || !ba || !bb) return 1;
  for (size_t i = 0; i < moesz_msz_count(c) && nb < maxb; i++) {
    const moesz_msz_rec *r = moesz_msz_at(c, i);
    if (r->method != MOESZ_MSZ_CODEC) continue;
    const uint8_t *s;
    if (moesz_msz_blob(c, r, (const void **)&s, &e)) { fprintf(stderr, "huf_pairs: %s\n", e.msg); return 1; }
    /* the stream's header, table and first chunk (docs/CODEC.md) */
    if (s[5] != MOESZ_PIPE_ENTROPY) continue;
    uint32_t tbytes = moesz_rd32le(s + 12), A = moesz_rd32le(s + 64);
    if (!tbytes) continue;
    uint8_t len[HUF_NSYM] = {0};
    for (size_t k = 0; k < A; k++) len[k] = (uint8_t)(k % 2 ? s[64 + 4 + k / 2] >> 4 : s[64 + 4 + k / 2] & 15);
    double step = 2 * moesz_rdf64le(s + 24);
    const uint8_t *ie = s + 64 + tbytes;
    const uint8_t *ch = s + moesz_rd64le(ie);
    if (ch[0] != 0) continue;                                  /* a raw chunk */
    uint32_t m = moesz_rd32le(ch + 4), nv = moesz_rd32le(ch + 8), body = moesz_rd32le(ch + 12);
    size_t es = moesz_dtype_size((moesz_dtype)s[6]);
    const uint8_t *code = ch + 16 + (size_t)nv * es;
    size_t clen = body - (size_t)nv * es;
    size_t mm = mlim && mlim < m ? mlim : m;
    if (mm > cap) {
      free(out1); free(out2); free(vpos);
      out1 = malloc(2 * mm); out2 = malloc(2 * mm); vpos = malloc(4 * mm + 4);
      cap = mm;
      if (!out1 || !out2 || !vpos) return 1;
    }
    for (int k = 0; k < reps; k++) {
      ta[k] = run(d, len, A, step, 0, code, clen, mm, out1, vpos, nv, &ba[k]);
      tb[k] = run(d, len, A, step, 1, code, clen, mm, out2, vpos, nv, &bb[k]);
      if (ta[k] < 0 || tb[k] < 0) { fprintf(stderr, "huf_pairs: %s: decode failed\n", r->name); return 1; }
    }
    if (memcmp(out1, out2, 2 * mm)) { fprintf(stderr, "huf_pairs: %s: the two decoders differ\n", r->name); return 1; }
    qsort(ta, (size_t)reps, sizeof *ta, cmpd); qsort(tb, (size_t)reps, sizeof *tb, cmpd);
    qsort(ba, (size_t)reps, sizeof *ba, cmpd); qsort(bb, (size_t)reps, sizeof *bb, cmpd);
    sa += ta[reps / 2]; sb += tb[reps / 2]; sba += ba[reps / 2]; sbb += bb[reps / 2];
    nb++;
    nvals += mm;
  }
  if (!nb) { fprintf(stderr, "huf_pairs: no entropy-coded blobs\n"); return 1; }
  printf("blobs %zu, %zu values each (median over %d alternated reps, summed over blobs)\n", nb, nvals / nb, reps);
  printf("single: %.3f ms (%.2f us/blob, build %.2f us)  %.3f ns/value\n", sa * 1e3, sa * 1e6 / (double)nb,
         sba * 1e6 / (double)nb, sa * 1e9 / (double)nvals);
  printf("pairs:  %.3f ms (%.2f us/blob, build %.2f us)  %.3f ns/value\n", sb * 1e3, sb * 1e6 / (double)nb,
         sbb * 1e6 / (double)nb, sb * 1e9 / (double)nvals);
  printf("pairs / single: %.3f\n", sb / sa);
  free(d); free(ta); free(tb); free(ba); free(bb); free(out1); free(out2); free(vpos);
  moesz_msz_close(c);
  return 0;
}
