/* bench/huf_pairs.c - the Huffman stage of codec streams with and without
 * the pair table, alternated in one process (so both see the same load on a
 * shared machine): per stream, the decode tables are built (huf_dec_init +
 * huf_dec_values [+ huf_dec_pairs]) and every coded chunk's Huffman stage
 * decoded into bf16, R times each way in alternation; the outputs are
 * compared. Streams: a container's bf16 codec blobs, or moesz codec bench's
 * synthetic 2048 x 4096 N(0, 0.02^2) array at bound EB. Prints the sums over
 * streams of the per-stream medians, their ratio, and the table builds'
 * share. With M, only the first M values of each chunk are decoded (the same
 * tables), to find the stream size from which the pair table pays.
 *
 *   build/bench/huf_pairs CONTAINER.msz|synthetic:EB [R=100] [M=all] [max_blobs]
 */
#include <math.h>
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

/* A codec stream's Huffman stage: tables built once, then every coded
 * chunk (its first M values) decoded into dst. Returns seconds (build time in
 * *tbuild), or -1 on an error. */
typedef struct { const uint8_t *code; size_t clen, m, nv; } chunk_ref;
static double run(huf_dec *d, const uint8_t *len, size_t A, double step, int pairs, const chunk_ref *ch, size_t nch,
                  uint16_t *dst, uint32_t *vpos, double *tbuild) {
  double t0 = moesz_time_now();
  if (huf_dec_init(d, len, A)) return -1;
  huf_dec_values(d, len, step, MOESZ_DT_BF16, MOESZ_DT_BF16);
  if (pairs) huf_dec_pairs(d, len);
  double t1 = moesz_time_now();
  for (size_t c = 0; c < nch; c++) {
    if (huf_decode(d, ch[c].code, ch[c].clen, ch[c].m, dst, vpos, ch[c].nv)) return -1;
    dst += ch[c].m;
  }
  double t2 = moesz_time_now();
  *tbuild = t1 - t0;
  return t2 - t0;
}

typedef struct {
  int reps;
  size_t mlim;
  huf_dec *d;
  double *ta, *tb, *ba, *bb;
  double sa, sb, sba, sbb;
  size_t nstreams, nvals;
  double rate;                    /* sum of the streams' predicted pair rates */
  double ca, cb;                  /* sums of the medians over the streams the rule gives pairs */
  size_t nchosen;
} bench;

/* Both ways on one stream s (bf16 entropy stream), alternated. 0 ok, -1 error, 1 skipped. */
static int bench_stream(bench *B, const uint8_t *s, const char *name) {
  if (s[5] != MOESZ_PIPE_ENTROPY || s[6] != MOESZ_DT_BF16) return 1;
  uint32_t tbytes = moesz_rd32le(s + 12), A = moesz_rd32le(s + 64);
  if (!tbytes) return 1;
  uint8_t len[HUF_NSYM] = {0};
  for (size_t k = 0; k < A; k++) len[k] = (uint8_t)(k % 2 ? s[64 + 4 + k / 2] >> 4 : s[64 + 4 + k / 2] & 15);
  double step = 2 * moesz_rdf64le(s + 24);
  size_t nch = moesz_rd64le(s + 48), tot = 0;
  chunk_ref *ch = malloc(sizeof *ch * nch + 1);
  if (!ch) return -1;
  size_t k = 0;
  for (size_t c = 0; c < nch; c++) {
    const uint8_t *ie = s + 64 + tbytes + 24 * c, *p = s + moesz_rd64le(ie);
    if (p[0] != 0) continue;                                  /* a raw chunk */
    uint32_t m = moesz_rd32le(p + 4), nv = moesz_rd32le(p + 8), body = moesz_rd32le(p + 12);
    ch[k].code = p + 16 + (size_t)nv * 2;
    ch[k].clen = body - (size_t)nv * 2;
    ch[k].m = B->mlim && B->mlim < m ? B->mlim : m;
    ch[k].nv = nv;
    tot += ch[k++].m;
  }
  uint16_t *o1 = malloc(2 * tot + 2), *o2 = malloc(2 * tot + 2);
  uint32_t *vpos = malloc(4 * tot + 4);
  if (!o1 || !o2 || !vpos) return -1;
  for (int r = 0; r < B->reps; r++) {
    B->ta[r] = run(B->d, len, A, step, 0, ch, k, o1, vpos, &B->ba[r]);
    B->tb[r] = run(B->d, len, A, step, 1, ch, k, o2, vpos, &B->bb[r]);
    if (B->ta[r] < 0 || B->tb[r] < 0) { fprintf(stderr, "huf_pairs: %s: decode failed\n", name); return -1; }
  }
  if (memcmp(o1, o2, 2 * tot)) { fprintf(stderr, "huf_pairs: %s: the two decoders differ\n", name); return -1; }
  size_t R = (size_t)B->reps;
  qsort(B->ta, R, sizeof *B->ta, cmpd); qsort(B->tb, R, sizeof *B->tb, cmpd);
  qsort(B->ba, R, sizeof *B->ba, cmpd); qsort(B->bb, R, sizeof *B->bb, cmpd);
  B->sa += B->ta[R / 2]; B->sb += B->tb[R / 2]; B->sba += B->ba[R / 2]; B->sbb += B->bb[R / 2];
  B->rate += huf_pair_rate(len, A);
  if (getenv("HUF_PAIRS_VERBOSE"))
    printf("stream %s: %zu values, rate %.3f, single %.2f us (build %.2f), pairs %.2f us (build %.2f)\n", name, tot,
           huf_pair_rate(len, A), B->ta[R / 2] * 1e6, B->ba[R / 2] * 1e6, B->tb[R / 2] * 1e6, B->bb[R / 2] * 1e6);
  if (huf_pairs_pay(len, A, tot)) { B->ca += B->ta[R / 2]; B->cb += B->tb[R / 2]; B->nchosen++; }
  B->nstreams++;
  B->nvals += tot;
  free(ch); free(o1); free(o2); free(vpos);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: huf_pairs CONTAINER.msz|synthetic:EB [reps=100] [values=all] [max_blobs]\n");
    return 2;
  }
  bench B = {0};
  B.reps = argc > 2 ? atoi(argv[2]) : 100;
  B.mlim = argc > 3 ? (size_t)atol(argv[3]) : 0;
  size_t maxb = argc > 4 ? (size_t)atol(argv[4]) : (size_t)-1;
  if (B.reps < 1) B.reps = 1;
  B.d = malloc(sizeof *B.d);
  size_t R = (size_t)B.reps;
  B.ta = malloc(sizeof(double) * R); B.tb = malloc(sizeof(double) * R);
  B.ba = malloc(sizeof(double) * R); B.bb = malloc(sizeof(double) * R);
  if (!B.d || !B.ta || !B.tb || !B.ba || !B.bb) return 1;
  moesz_error e = {0};
  if (!strncmp(argv[1], "synthetic:", 10)) {
    /* moesz codec bench's synthetic array: 2048 x 4096 bf16, N(0, 0.02^2) */
    size_t n = 2048 * 4096;
    uint16_t *x = malloc(2 * n);
    uint64_t st = 0x9e3779b97f4a7c15ull;
    if (!x) return 1;
    for (size_t i = 0; i < n; i += 2) {
      double u[2];
      for (int j = 0; j < 2; j++) {
        st ^= st << 13; st ^= st >> 7; st ^= st << 17;
        u[j] = ((double)(st >> 11) + 0.5) / 9007199254740992.0;
      }
      double rr = sqrt(-2 * log(u[0])) * 0.02;
      x[i] = moesz_f32_to_bf16((float)(rr * cos(6.283185307179586 * u[1])));
      x[i + 1] = moesz_f32_to_bf16((float)(rr * sin(6.283185307179586 * u[1])));
    }
    moesz_codec_params p = {.mode = MOESZ_EB_ABS, .eb = atof(argv[1] + 10), .pipeline = MOESZ_PIPE_ENTROPY,
                            .out_dtype = MOESZ_DT_COUNT, .threads = 1};
    void *s;
    size_t sl;
    if (moesz_codec_compress(x, MOESZ_DT_BF16, n, &p, &s, &sl, NULL, &e)) { fprintf(stderr, "huf_pairs: %s\n", e.msg); return 1; }
    if (bench_stream(&B, s, "synthetic")) return 1;
    free(s);
    free(x);
  } else {
    moesz_msz *c;
    if (moesz_msz_open(argv[1], &c, &e)) { fprintf(stderr, "huf_pairs: %s\n", e.msg); return 1; }
    for (size_t i = 0; i < moesz_msz_count(c) && B.nstreams < maxb; i++) {
      const moesz_msz_rec *r = moesz_msz_at(c, i);
      if (r->method != MOESZ_MSZ_CODEC) continue;
      const uint8_t *s;
      if (moesz_msz_blob(c, r, (const void **)&s, &e)) { fprintf(stderr, "huf_pairs: %s\n", e.msg); return 1; }
      if (bench_stream(&B, s, r->name) < 0) return 1;
    }
    moesz_msz_close(c);
  }
  if (!B.nstreams) { fprintf(stderr, "huf_pairs: no bf16 entropy-coded streams\n"); return 1; }
  double nb = (double)B.nstreams;
  printf("streams %zu, %zu values each (medians over %d alternated reps, summed over streams), pair rate %.3f\n",
         B.nstreams, B.nvals / B.nstreams, B.reps, B.rate / nb);
  printf("single: %.3f ms (%.2f us/stream, build %.2f us)  %.3f ns/value\n", B.sa * 1e3, B.sa * 1e6 / nb,
         B.sba * 1e6 / nb, B.sa * 1e9 / (double)B.nvals);
  printf("pairs:  %.3f ms (%.2f us/stream, build %.2f us)  %.3f ns/value\n", B.sb * 1e3, B.sb * 1e6 / nb,
         B.sbb * 1e6 / nb, B.sb * 1e9 / (double)B.nvals);
  printf("pairs / single: %.3f (decode alone %.3f)\n", B.sb / B.sa, (B.sb - B.sbb) / (B.sa - B.sba));
  /* the rule (huf_pairs_pay): the streams it gives pairs and the others */
  if (B.nchosen) printf("streams the rule gives pairs: %zu, pairs / single %.3f\n", B.nchosen, B.cb / B.ca);
  if (B.nchosen < B.nstreams)
    printf("streams the rule keeps single: %zu, pairs / single %.3f\n", B.nstreams - B.nchosen,
           (B.sb - B.cb) / (B.sa - B.ca));
  free(B.d); free(B.ta); free(B.tb); free(B.ba); free(B.bb);
  return 0;
}
