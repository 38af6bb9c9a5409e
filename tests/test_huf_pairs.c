/* tests/test_huf_pairs.c - the Huffman stage's pair decoder (one lookup, up
 * to two 16-bit values) against the encoder's input and against the
 * single-symbol decoder: short and long codes, escapes, verbatims and nudged
 * codes mixed, every code at HUF_MAXLEN bits, a one-symbol code, more rare
 * symbols than the pair decoder notes (the single decoder takes over),
 * streams of every length near the loop limits, the pair table entry by
 * entry, corrupted and truncated streams (both decoders give the same
 * answer), the choice by stream size and predicted pair rate, and the codec
 * API end to end (BF16 through pairs against F32 through single symbols). */
#include "harness.h"
#include "moesz.h"
#include "codec/codec_internal.h"

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static double urand(void) {
  rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
  return ((double)(rng_state >> 11) + 0.5) * 0x1p-53;
}

#define STEP 0.002

/* Code arrays of the kinds below, n values. */
enum { K_MIXED, K_MAXLEN, K_ONE, K_MANY_RARE, K_SKEWED, K_FEWRARE };
static void make_codes(int kind, uint32_t *codes, size_t n) {
  for (size_t i = 0; i < n; i++) {
    double u = urand();
    uint32_t z;
    if (kind == K_ONE) z = 6;                                           /* one symbol */
    else if (kind == K_MAXLEN) {                                        /* 4096 equally likely symbols */
      uint32_t s = (uint32_t)(urand() * HUF_NSYM);
      z = s == HUF_VERB ? CODE_VERB : s == HUF_ESC ? 5000 + (uint32_t)(urand() * 1000) : huf_code(s);
    } else if (kind == K_MANY_RARE && u < 0.05) z = u < 0.025 ? CODE_VERB : 3000 + (uint32_t)(u * 1e5);
    else if (kind == K_MIXED && u < 0.004) z = CODE_VERB;               /* verbatim */
    else if (kind == K_MIXED && u < 0.008) z = (2047 + (uint32_t)(urand() * 5000)) | (u < 0.006 ? CODE_NUDGE : 0);
    else if (kind == K_FEWRARE && u < 0.0002) z = CODE_VERB;            /* few enough for the pair decoder */
    else if (kind == K_FEWRARE && u < 0.0004) z = (2047 + (uint32_t)(urand() * 5000)) | (u < 0.0003 ? CODE_NUDGE : 0);
    else {
      /* geometric-like zigzag codes: a few very likely (short codes) and a long tail (long codes) */
      double g = kind == K_SKEWED ? 0.75 : 0.3;
      uint32_t c = 0;
      while (urand() > g && c < 2000) c++;
      z = c | (urand() < 0.03 ? CODE_NUDGE : 0);
    }
    codes[i] = z;
  }
}

/* The symbols' lengths for codes (package-merge, as the encoder). */
static void lengths_of(const uint32_t *codes, size_t n, uint8_t *len, size_t *nsym) {
  uint64_t *hist = calloc(HUF_NSYM, sizeof *hist);
  for (size_t i = 0; i < n; i++) hist[huf_sym(codes[i])]++;
  if (!n) hist[2] = 1;
  huf_lengths(hist, len);
  *nsym = 0;
  for (size_t s = 0; s < HUF_NSYM; s++)
    if (len[s]) *nsym = s + 1;
  free(hist);
}

/* Decodes buf both ways into a and b (bf16), checks each against codes and
 * the two against each other. Returns the number of mismatching values. */
static size_t check_both(const uint8_t *len, size_t nsym, const uint8_t *buf, size_t blen, const uint32_t *codes,
                         size_t n) {
  huf_dec *d1 = malloc(sizeof *d1), *d2 = malloc(sizeof *d2);
  uint16_t *a = malloc(2 * n + 2), *b = malloc(2 * n + 2);
  size_t nv = 0, bad = 0;
  for (size_t i = 0; i < n; i++) nv += codes[i] == CODE_VERB;
  uint32_t *va = malloc(4 * nv + 4), *vb = malloc(4 * nv + 4);
  CHECK_EQ_INT(huf_dec_init(d1, len, nsym), 0);
  huf_dec_values(d1, len, STEP, MOESZ_DT_BF16, MOESZ_DT_BF16);
  CHECK_EQ_INT(huf_dec_init(d2, len, nsym), 0);
  huf_dec_values(d2, len, STEP, MOESZ_DT_BF16, MOESZ_DT_BF16);
  huf_dec_pairs(d2, len);
  CHECK_EQ_INT(d1->pair, 0);
  CHECK_EQ_INT(d2->pair, 1);
  CHECK_EQ_INT(huf_decode(d1, buf, blen, n, a, va, nv), 0);
  CHECK_EQ_INT(huf_decode(d2, buf, blen, n, b, vb, nv), 0);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (codes[i] == CODE_VERB) {   /* positions in value order, the value left to the caller */
      bad += k >= nv || va[k] != i || vb[k] != i;
      k++;
      continue;
    }
    uint16_t want;
    codec_dequantize_nudged(&codes[i], 1, STEP, MOESZ_DT_BF16, MOESZ_DT_BF16, &want);
    bad += a[i] != want || b[i] != want;
  }
  free(d1); free(d2); free(a); free(b); free(va); free(vb);
  return bad;
}

/* n codes of the given kind, their code lengths (nsym symbols) and their
 * encoded block (*blen bytes, returned; free it and *codes). */
static uint8_t *encode_kind(int kind, size_t n, uint32_t **codes, uint8_t len[HUF_NSYM], size_t *nsym, size_t *blen) {
  *codes = malloc(4 * n + 4);
  make_codes(kind, *codes, n);
  lengths_of(*codes, n, len, nsym);
  huf_enc *he = malloc(sizeof *he);
  huf_enc_init(he, len);
  uint8_t *buf = malloc(huf_enc_bound(n));
  *blen = huf_encode(he, *codes, n, buf);
  free(he);
  return buf;
}

static size_t round_trip(int kind, size_t n, int *used_pairs) {
  uint32_t *codes;
  uint8_t len[HUF_NSYM];
  size_t nsym, blen;
  uint8_t *buf = encode_kind(kind, n, &codes, len, &nsym, &blen);
  size_t nesc = 0, nv = 0;
  for (size_t i = 0; i < n; i++) { nv += codes[i] == CODE_VERB; nesc += huf_sym(codes[i]) == HUF_ESC; }
  if (used_pairs) *used_pairs = nv + nesc <= HUF_PAIR_RARE;
  size_t bad = check_both(len, nsym, buf, blen, codes, n);
  free(codes); free(buf);
  return bad;
}

TEST(pair_decoder_matches_encoder_input) {
  static const size_t sizes[] = {0, 1, 2, 3, 4, 5, 7, 8, 31, 32, 33, 35, 63, 64, 65, 100, 127, 1000, 4099, 65536};
  int pair_runs = 0;
  for (int kind = K_MIXED; kind <= K_FEWRARE; kind++)
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
      size_t n = sizes[t];
      if (kind == K_MAXLEN && n < 1000) continue;
      int pairs = 0;
      size_t bad = round_trip(kind, n, &pairs);
      CHECK_MSG(!bad, "kind %d, %zu values: %zu values differ", kind, n, bad);
      pair_runs += pairs && n >= 65536;
    }
  CHECK(pair_runs >= 2);   /* long streams through the pair decoder's main loop, rare symbols included */
}

/* Every code 12 bits long, and a single symbol (one 1-bit code, half of the
 * table without a code): the lengths are what the test says they are. */
TEST(pair_decoder_maxlen_codes_and_single_symbol) {
  size_t n = 200000;
  uint32_t *codes = malloc(4 * n);
  uint8_t len[HUF_NSYM];
  size_t nsym;
  make_codes(K_MAXLEN, codes, n);
  lengths_of(codes, n, len, &nsym);
  int all12 = nsym == HUF_NSYM;
  for (size_t s = 0; s < HUF_NSYM; s++) all12 &= len[s] == HUF_MAXLEN;
  CHECK(all12);
  CHECK(huf_pair_rate(len, nsym) == 0);
  free(codes);
  CHECK_EQ_INT(round_trip(K_MAXLEN, n, NULL), 0);
  n = 5000;
  codes = malloc(4 * n);
  make_codes(K_ONE, codes, n);
  lengths_of(codes, n, len, &nsym);
  CHECK_EQ_INT(nsym, huf_sym(6) + 1);
  CHECK_EQ_INT(len[huf_sym(6)], 1);
  free(codes);
  CHECK_EQ_INT(round_trip(K_ONE, n, NULL), 0);
}

/* More verbatim and escaped values than the pair decoder notes per block:
 * the single decoder decodes the block, with the same result. */
TEST(pair_decoder_many_rare_symbols) {
  int pairs = 1;
  CHECK_EQ_INT(round_trip(K_MANY_RARE, 20000, &pairs), 0);
  CHECK(!pairs);
  /* exactly at the limit the pair decoder runs */
  size_t n = 4000;
  uint32_t *codes = malloc(4 * n);
  for (size_t i = 0; i < n; i++) codes[i] = (uint32_t)(i % 7);
  for (size_t k = 0; k < HUF_PAIR_RARE; k++) codes[(k * 61 + 5) % n] = k % 2 ? CODE_VERB : 4000 + (uint32_t)k;
  uint8_t len[HUF_NSYM];
  size_t nsym;
  lengths_of(codes, n, len, &nsym);
  huf_enc *he = malloc(sizeof *he);
  huf_enc_init(he, len);
  uint8_t *buf = malloc(huf_enc_bound(n));
  size_t blen = huf_encode(he, codes, n, buf);
  CHECK_EQ_INT(check_both(len, nsym, buf, blen, codes, n), 0);
  free(codes); free(he); free(buf);
}

/* The pair table, entry by entry, from the single-symbol table: the first
 * code in the index's low bits, and a second when both end within it. */
TEST(pair_table_entries) {
  huf_dec *d = malloc(sizeof *d);
  for (int kind = K_MIXED; kind <= K_FEWRARE; kind++) {
    size_t n = 30000, nsym;
    uint32_t *codes = malloc(4 * n);
    uint8_t len[HUF_NSYM];
    make_codes(kind, codes, n);
    lengths_of(codes, n, len, &nsym);
    CHECK_EQ_INT(huf_dec_init(d, len, nsym), 0);
    huf_dec_values(d, len, STEP, MOESZ_DT_BF16, MOESZ_DT_BF16);
    memset(d->pm, 0x5a, sizeof d->pm);   /* stale entries of another stream must not survive */
    huf_dec_pairs(d, len);
    int bad = 0, two = 0;
    for (unsigned x = 0; x < (1u << HUF_PAIRBITS); x++) {
      unsigned e1 = d->e[x], l1 = e1 & 15, s1 = e1 >> 4;
      unsigned m = 0;
      uint32_t v = 0;
      if (l1 && l1 <= HUF_PAIRBITS && s1 >= 2) {
        uint16_t h1, h2;
        memcpy(&h1, d->v + 2 * s1, 2);
        unsigned e2 = d->e[x >> l1], l2 = e2 & 15, s2 = e2 >> 4;
        if (l2 && l1 + l2 <= HUF_PAIRBITS && s2 >= 2) {
          memcpy(&h2, d->v + 2 * s2, 2);
          m = (l1 + l2) | 2u << 6;
          v = h1 | (uint32_t)h2 << 16;
          two++;
        } else {
          m = l1 | 1u << 6;
          v = h1;
        }
      }
      bad += d->pm[x] != m || (m && (d->pv[x] & (m >> 6 == 2 ? 0xffffffffu : 0xffffu)) != v);
    }
    CHECK_MSG(!bad, "kind %d: %d entries differ", kind, bad);
    if (kind == K_SKEWED) CHECK(two > 0);
    free(codes);
  }
  free(d);
}

/* Corrupted, truncated and lying streams: the two decoders agree (both
 * refuse, or both decode the same values), and nothing reads out of bounds
 * (SAN=1). */
TEST(pair_decoder_agrees_on_corrupted_streams) {
  size_t n = 3000;
  uint32_t *codes;
  uint8_t len[HUF_NSYM];
  size_t nsym, blen, nv = 0;
  uint8_t *buf = encode_kind(K_MIXED, n, &codes, len, &nsym, &blen);
  for (size_t i = 0; i < n; i++) nv += codes[i] == CODE_VERB;
  huf_dec *d1 = malloc(sizeof *d1), *d2 = malloc(sizeof *d2);
  huf_dec_init(d1, len, nsym);
  huf_dec_values(d1, len, STEP, MOESZ_DT_BF16, MOESZ_DT_BF16);
  huf_dec_init(d2, len, nsym);
  huf_dec_values(d2, len, STEP, MOESZ_DT_BF16, MOESZ_DT_BF16);
  huf_dec_pairs(d2, len);
  uint16_t *a = malloc(2 * n), *b = malloc(2 * n);
  uint32_t *va = malloc(4 * n + 4), *vb = malloc(4 * n + 4);
  int disagree = 0, ok = 0, refused = 0;
  for (int t = 0; t < 400; t++) {
    uint8_t *c = malloc(blen);
    memcpy(c, buf, blen);
    size_t cl = blen, cn = n, cv = nv;
    int how = t % 5;
    if (how == 0) cl = (size_t)(urand() * (double)blen);                 /* truncated */
    else if (how == 1) c[20 + (size_t)(urand() * (double)(blen - 20))] ^= (uint8_t)(1 + urand() * 255);
    else if (how == 2) c[(size_t)(urand() * 20)] ^= (uint8_t)(1 << (int)(urand() * 8));   /* sizes / escape count */
    else if (how == 3) cv = nv + (t % 3) - 1;                            /* verbatim count off by one */
    else cn = n - (size_t)(urand() * 40);                                /* fewer values than coded */
    if (cv > n) cv = 0;
    uint8_t *exact = malloc(cl + 1);   /* exactly cl bytes, so ASan sees any over-read */
    memcpy(exact, c, cl);
    int r1 = huf_decode(d1, exact, cl, cn, a, va, cv), r2 = huf_decode(d2, exact, cl, cn, b, vb, cv);
    if (r1 != r2) disagree++;
    else if (r1 == 0) {
      ok++;
      int same = !memcmp(va, vb, 4 * cv);
      for (size_t k = 0; same && k < cv; k++) a[va[k]] = b[va[k]] = 0;   /* the caller's to fill */
      disagree += !same || memcmp(a, b, 2 * cn) != 0;
    } else refused++;
    free(c); free(exact);
  }
  CHECK_MSG(!disagree, "%d of 400 corrupted streams decoded differently", disagree);
  CHECK(ok > 0 && refused > 0);
  free(codes); free(buf); free(d1); free(d2); free(a); free(b); free(va); free(vb);
}

/* The choice: pairs for long streams of short codes, not for short streams
 * or long codes. */
TEST(pair_choice_by_size_and_rate) {
  uint8_t len[HUF_NSYM] = {0};
  /* 4 codes of 2 bits: every lookup delivers two values */
  len[2] = len[3] = len[4] = len[5] = 2;
  CHECK_NEAR(huf_pair_rate(len, 6), 1.0, 1e-12);
  CHECK(huf_pairs_pay(len, 6, 1u << 20));
  CHECK(!huf_pairs_pay(len, 6, 1000));
  /* 64 codes of 6 bits: pairs fit exactly in 12 bits */
  memset(len, 0, sizeof len);
  for (int s = 2; s < 66; s++) len[s] = 6;
  CHECK_NEAR(huf_pair_rate(len, 66), 1.0, 1e-12);
  /* 128 codes of 7 bits: no pair fits */
  memset(len, 0, sizeof len);
  for (int s = 2; s < 130; s++) len[s] = 7;
  CHECK_NEAR(huf_pair_rate(len, 130), 0.0, 1e-12);
  CHECK(!huf_pairs_pay(len, 130, 1ull << 40));
  /* verbatim and escape symbols never pair */
  memset(len, 0, sizeof len);
  len[0] = len[1] = 1;
  CHECK_NEAR(huf_pair_rate(len, 2), 0.0, 1e-12);
}

/* Through the API: a BF16 stream decoded to BF16 (pair decoder, when it
 * pays) equals the same stream decoded to F32 (single decoder: 32-bit
 * values), rounded to BF16 - the stream was checked in BF16, so F32 delivers
 * its BF16 values widened. Verbatim (NaN, -0) and escaped (outliers) values
 * included, 2 chunks. */
TEST(pair_decoder_through_the_codec_api) {
  size_t n = 2 * 65536;
  float *f = malloc(4 * n), *g = malloc(4 * n);
  uint16_t *x = malloc(2 * n), *y = malloc(2 * n), *z = malloc(2 * n);
  for (size_t i = 0; i < n; i++) {
    double u = urand();
    f[i] = (float)(0.02 * sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand()));
    if (u < 1e-4) f[i] = NAN;
    else if (u < 2e-4) f[i] = -0.0f;
    else if (u < 4e-4) f[i] = (float)(u * 1e5);
  }
  moesz_f32_to_bf16_n(f, x, n);
  for (int t = 0; t < 2; t++) {
    moesz_codec_params p = {.mode = MOESZ_EB_ABS, .eb = t ? 1e-3 : 5e-3, .pipeline = MOESZ_PIPE_ENTROPY,
                            .out_dtype = MOESZ_DT_COUNT, .threads = 1};
    void *s;
    size_t sl;
    moesz_codec_info info;
    moesz_error e;
    CHECK_EQ_INT(moesz_codec_compress(x, MOESZ_DT_BF16, n, &p, &s, &sl, &info, &e), MOESZ_OK);
    CHECK(info.verbatim > 0);
    CHECK_EQ_INT(moesz_codec_decompress(s, sl, MOESZ_DT_BF16, y, n, 1, &e), MOESZ_OK);
    CHECK_EQ_INT(moesz_codec_decompress(s, sl, MOESZ_DT_F32, g, n, 2, &e), MOESZ_OK);
    moesz_f32_to_bf16_n(g, z, n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += y[i] != z[i] && !(isnan(f[i]) && isnan(g[i]));
    CHECK_MSG(!bad, "eb %g: %zu values differ", p.eb, bad);
    /* and chunk by chunk */
    size_t got = 0;
    CHECK_EQ_INT(moesz_codec_decompress_chunk(s, sl, 1, MOESZ_DT_BF16, z, n, &got, &e), MOESZ_OK);
    CHECK(got == 65536 && !memcmp(z, y + 65536, 2 * got));
    free(s);
  }
  free(f); free(g); free(x); free(y); free(z);
}

int main(void) {
  RUN(pair_decoder_matches_encoder_input);
  RUN(pair_decoder_maxlen_codes_and_single_symbol);
  RUN(pair_decoder_many_rare_symbols);
  RUN(pair_table_entries);
  RUN(pair_decoder_agrees_on_corrupted_streams);
  RUN(pair_choice_by_size_and_rate);
  RUN(pair_decoder_through_the_codec_api);
  return DONE();
}
