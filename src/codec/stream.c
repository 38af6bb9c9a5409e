/* codec/stream.c - owns the stream format and the API: header (64 bytes),
 * the Huffman code lengths shared by all chunks (entropy pipeline), the chunk
 * index with an XXH3 checksum per chunk, independent chunks compressed and
 * decompressed in parallel; reusable contexts (pool, chunk buffers, Huffman
 * tables); bound modes; validation of hostile streams.
 * Byte-by-byte format: docs/CODEC.md. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "base/xxh.h"
#include "base/bytes.h"
#include "base/pool.h"
#include "base/util.h"
#include "codec/codec_internal.h"

#define HDR 64
#define MAGIC "MSZC"
#define VERSION 2                    /* 2: nudged codes (odd symbols) */
#define IDX_ENTRY 24                 /* u64 offset, u64 length, u64 xxh3 */
#define CHUNK_HDR 16                 /* u8 mode, u8[3] 0, u32 n, u32 n_verbatim, u32 payload bytes */
#define DEFAULT_CHUNK 65536
enum { MODE_CODED = 0, MODE_RAW = 1 };


const char *moesz_pipeline_name(moesz_pipeline p) { return p == MOESZ_PIPE_FAST ? "fast" : "entropy"; }
const char *moesz_eb_mode_name(moesz_eb_mode m) { return m == MOESZ_EB_REL ? "rel" : m == MOESZ_EB_STD ? "std" : "abs"; }

static int dtype_ok(moesz_dtype t) { return t == MOESZ_DT_F32 || t == MOESZ_DT_F16 || t == MOESZ_DT_BF16; }

/* Entropy table: u32 A (symbols listed) + A code lengths, 4 bits each, padded to 8 bytes. */
static size_t table_bytes_for(moesz_pipeline p, size_t A) { return p == MOESZ_PIPE_ENTROPY ? (4 + (A + 1) / 2 + 7) / 8 * 8 : 0; }
static size_t table_bytes(moesz_pipeline p) { return table_bytes_for(p, HUF_NSYM); }

/* Bytes per nudged-code position in a fast chunk. */
static size_t nudge_pos_bytes(size_t chunk) { return chunk <= 65536 ? 2 : 4; }

static size_t chunk_bound(size_t m, moesz_dtype dt, moesz_pipeline p) {
  size_t es = moesz_dtype_size(dt);
  size_t coded = p == MOESZ_PIPE_ENTROPY ? huf_enc_bound(m) : pack_bound(m);
  size_t verb = m * (4 + es);
  size_t raw = m * es;
  return CHUNK_HDR + 4 + (coded + verb > raw ? coded + verb : raw) + 8;   /* 4: fast's nudge count */
}

size_t moesz_codec_bound(size_t n, moesz_dtype dtype) {
  /* every chunk falls back to raw when coding does not pay: at most the input plus framing */
  size_t nch = (n + 255) / 256;   /* the smallest chunk size gives the most chunks */
  return HDR + table_bytes(MOESZ_PIPE_ENTROPY) + nch * (IDX_ENTRY + CHUNK_HDR) + n * moesz_dtype_size(dtype);
}

/* -------------------------------------------------------------- context */

/* What a run of calls reuses (as zstd's CCtx/DCtx): the worker pool, one
 * output buffer and one code array per chunk slot, the Huffman tables. */
struct moesz_codec_ctx {
  moesz_pool *pool;             /* NULL: one thread */
  int threads;
  size_t nslots;
  uint8_t **buf;                /* [nslots] encoded-chunk buffers, capacity bcap */
  size_t *bcap;
  uint32_t **codes;             /* [nslots] code arrays, capacity ccap values */
  size_t *ccap;
  huf_enc *he;
  huf_dec *hd;
};

int moesz_codec_ctx_create(int threads, moesz_codec_ctx **out, moesz_error *err) {
  *out = NULL;
  moesz_codec_ctx *x = calloc(1, sizeof *x);
  if (!x) return moesz_error_set(err, MOESZ_E_NOMEM, "codec: out of memory");
  x->threads = threads > 1 ? threads : 1;
  if (x->threads > 1 && !(x->pool = moesz_pool_create(x->threads))) {
    free(x);
    return moesz_error_set(err, MOESZ_E_NOMEM, "codec: cannot start %d threads", threads);
  }
  if (!(x->he = malloc(sizeof *x->he)) || !(x->hd = malloc(sizeof *x->hd))) {
    moesz_codec_ctx_free(x);
    return moesz_error_set(err, MOESZ_E_NOMEM, "codec: out of memory");
  }
  *out = x;
  return MOESZ_OK;
}

void moesz_codec_ctx_free(moesz_codec_ctx *x) {
  if (!x) return;
  for (size_t i = 0; i < x->nslots; i++) { free(x->buf[i]); free(x->codes[i]); }
  free(x->buf); free(x->bcap); free(x->codes); free(x->ccap);
  free(x->he); free(x->hd);
  moesz_pool_destroy(x->pool);
  free(x);
}

/* At least n chunk slots (serial; before a pool run). 0 ok, -1 out of memory. */
static int ctx_slots(moesz_codec_ctx *x, size_t n) {
  if (n <= x->nslots) return 0;
  uint8_t **b = realloc(x->buf, n * sizeof *b);
  if (b) x->buf = b;
  size_t *bc = realloc(x->bcap, n * sizeof *bc);
  if (bc) x->bcap = bc;
  uint32_t **c = realloc(x->codes, n * sizeof *c);
  if (c) x->codes = c;
  size_t *cc = realloc(x->ccap, n * sizeof *cc);
  if (cc) x->ccap = cc;
  if (!b || !bc || !c || !cc) return -1;
  for (size_t i = x->nslots; i < n; i++) { x->buf[i] = NULL; x->bcap[i] = 0; x->codes[i] = NULL; x->ccap[i] = 0; }
  x->nslots = n;
  return 0;
}

/* Slot i's buffer / code array with room for cap bytes / m codes (one worker per slot). */
static uint8_t *ctx_buf(moesz_codec_ctx *x, size_t i, size_t cap) {
  if (x->bcap[i] < cap) {
    free(x->buf[i]);
    x->buf[i] = malloc(cap);
    x->bcap[i] = x->buf[i] ? cap : 0;
  }
  return x->buf[i];
}
static uint32_t *ctx_codes(moesz_codec_ctx *x, size_t i, size_t m) {
  if (x->ccap[i] < m + 1) {
    free(x->codes[i]);
    x->codes[i] = malloc((m + 1) * 4);
    x->ccap[i] = x->codes[i] ? m + 1 : 0;
  }
  return x->codes[i];
}

/* -------------------------------------------------------------- encoder */

typedef struct enc_job {
  const void *src;
  moesz_dtype in, out;
  size_t n, chunk, nch;
  double step, eb;
  moesz_pipeline pipe;
  uint64_t (*hist)[HUF_NSYM];   /* [nch] per-chunk histograms (entropy, pass 1) */
  size_t *nverb;                /* [nch] verbatim counts of pass 1 */
  huf_enc *he;
  moesz_codec_ctx *x;           /* owns the chunk buffers and code arrays */
  uint8_t **cbuf;               /* [nch] encoded chunks */
  size_t *clen;
  uint64_t *cverb;
  atomic_int fail;              /* set by any worker that runs out of memory */
} enc_job;

static void pass_hist(void *ctx, size_t c, int tid) {
  (void)tid;
  enc_job *j = ctx;
  size_t off = c * j->chunk, m = j->n - off < j->chunk ? j->n - off : j->chunk;
  uint32_t *codes = ctx_codes(j->x, c, m);
  if (!codes) { atomic_store(&j->fail, 1); return; }
  memset(j->hist[c], 0, sizeof(uint64_t) * HUF_NSYM);
  j->nverb[c] = codec_quantize((const char *)j->src + off * moesz_dtype_size(j->in), j->in, j->out, m, j->step, j->eb, codes,
                               j->hist[c]);
}

static void pass_encode(void *ctx, size_t c, int tid) {
  (void)tid;
  enc_job *j = ctx;
  size_t es = moesz_dtype_size(j->in);
  size_t off = c * j->chunk, m = j->n - off < j->chunk ? j->n - off : j->chunk;
  const uint8_t *src = (const uint8_t *)j->src + off * es;
  size_t cap = chunk_bound(m, j->in, j->pipe);
  uint8_t *out = ctx_buf(j->x, c, cap);
  uint32_t *codes = ctx_codes(j->x, c, m);   /* pass 1's codes when it ran */
  if (!out || !codes) { atomic_store(&j->fail, 1); return; }
  size_t nv = 0, len;
  if (j->eb > 0) nv = j->hist ? j->nverb[c] : codec_quantize(src, j->in, j->out, m, j->step, j->eb, codes, NULL);
  if (j->eb > 0 && nv < m) {
    size_t pos = CHUNK_HDR;
    if (j->pipe == MOESZ_PIPE_FAST) {
      /* nudged codes: u32 count, then their positions (u16 when the chunk size
       * allows); the flag leaves the code so the block widths stay small */
      size_t pw = nudge_pos_bytes(j->chunk), at = pos, nn = 0;
      pos += 4;
      for (size_t i = 0; i < m; i++)
        if (codes[i] != CODE_VERB && (codes[i] & CODE_NUDGE)) {
          for (size_t b = 0; b < pw; b++) out[pos++] = (uint8_t)(i >> (8 * b));   /* little-endian */
          codes[i] &= ~CODE_NUDGE;
          nn++;
        }
      moesz_wr32le(out + at, (uint32_t)nn);
    }
    /* verbatim values: (fast: u32 positions, then) their original bits in order */
    if (j->pipe == MOESZ_PIPE_FAST && nv)
      for (size_t i = 0; i < m; i++)
        if (codes[i] == CODE_VERB) { moesz_wr32le(out + pos, (uint32_t)i); pos += 4; }
    for (size_t i = 0; nv && i < m; i++)
      if (codes[i] == CODE_VERB) {
        memcpy(out + pos, src + i * es, es);
        pos += es;
        if (j->pipe == MOESZ_PIPE_FAST) codes[i] = 0;
      }
    size_t body = j->pipe == MOESZ_PIPE_ENTROPY ? huf_encode(j->he, codes, m, out + pos) : pack_encode(codes, m, out + pos);
    len = pos + body;
    out[0] = MODE_CODED;
  } else {
    len = CHUNK_HDR + m * es + 1;   /* forces the raw path below */
  }
  if (len >= CHUNK_HDR + m * es) {  /* lossless fallback: smaller (or eb == 0) */
    memcpy(out + CHUNK_HDR, src, m * es);
    len = CHUNK_HDR + m * es;
    out[0] = MODE_RAW;
    nv = 0;
  }
  out[1] = out[2] = out[3] = 0;
  moesz_wr32le(out + 4, (uint32_t)m);
  moesz_wr32le(out + 8, (uint32_t)nv);
  moesz_wr32le(out + 12, (uint32_t)(len - CHUNK_HDR));
  j->cbuf[c] = out;
  j->clen[c] = len;
  j->cverb[c] = nv;
}

/* Rewrites chunk c as a raw chunk (its buffer has room: chunk_bound). */
static void chunk_to_raw(enc_job *j, size_t c) {
  size_t es = moesz_dtype_size(j->in);
  size_t off = c * j->chunk, m = j->n - off < j->chunk ? j->n - off : j->chunk;
  uint8_t *o = j->cbuf[c];
  memcpy(o + CHUNK_HDR, (const uint8_t *)j->src + off * es, m * es);
  o[0] = MODE_RAW;
  o[1] = o[2] = o[3] = 0;
  moesz_wr32le(o + 4, (uint32_t)m);
  moesz_wr32le(o + 8, 0);
  moesz_wr32le(o + 12, (uint32_t)(m * es));
  j->clen[c] = CHUNK_HDR + m * es;
  j->cverb[c] = 0;
}

double codec_eb_absolute(const void *src, moesz_dtype dt, size_t n, moesz_eb_mode mode, double eb) {
  if (mode == MOESZ_EB_ABS || eb == 0) return eb;
  double mn = INFINITY, mx = -INFINITY, s = 0, s2 = 0;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    float f;
    moesz_to_f32(dt, (const char *)src + i * moesz_dtype_size(dt), &f, 1);
    if (!isfinite(f)) continue;
    if (f < mn) mn = f;
    if (f > mx) mx = f;
    s += f;
    k++;
  }
  if (!k) return eb;
  if (mode == MOESZ_EB_REL) return eb * (mx - mn);
  double mean = s / (double)k;
  for (size_t i = 0; i < n; i++) {
    float f;
    moesz_to_f32(dt, (const char *)src + i * moesz_dtype_size(dt), &f, 1);
    if (isfinite(f)) s2 += ((double)f - mean) * ((double)f - mean);
  }
  return eb * sqrt(s2 / (double)k);
}

int moesz_codec_compress(const void *src, moesz_dtype dtype, size_t n, const moesz_codec_params *p, void **out,
                         size_t *out_len, moesz_codec_info *info, moesz_error *err) {
  *out = NULL;
  *out_len = 0;
  moesz_codec_ctx *x;
  int rc = moesz_codec_ctx_create(p ? p->threads : 1, &x, err);
  if (rc) return rc;
  rc = moesz_codec_compress_ctx(x, src, dtype, n, p, out, out_len, info, err);
  moesz_codec_ctx_free(x);
  return rc;
}

int moesz_codec_compress_ctx(moesz_codec_ctx *x, const void *src, moesz_dtype dtype, size_t n,
                             const moesz_codec_params *p, void **out, size_t *out_len, moesz_codec_info *info,
                             moesz_error *err) {
  *out = NULL;
  *out_len = 0;
  if (!p || (!src && n)) return moesz_error_set(err, MOESZ_E_ARG, "codec: NULL argument");
  if (!dtype_ok(dtype)) return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "codec: input dtype %s (F32, F16, BF16 only)", moesz_dtype_name(dtype));
  moesz_dtype outdt = p->out_dtype == MOESZ_DT_COUNT ? dtype : p->out_dtype;
  if (!dtype_ok(outdt)) return moesz_error_set(err, MOESZ_E_ARG, "codec: delivered dtype must be F32, F16 or BF16");
  if (!(p->eb >= 0) || !isfinite(p->eb)) return moesz_error_set(err, MOESZ_E_ARG, "codec: error bound must be a finite number >= 0");
  if (p->pipeline != MOESZ_PIPE_ENTROPY && p->pipeline != MOESZ_PIPE_FAST) return moesz_error_set(err, MOESZ_E_ARG, "codec: unknown pipeline");
  if (p->mode < MOESZ_EB_ABS || p->mode > MOESZ_EB_STD) return moesz_error_set(err, MOESZ_E_ARG, "codec: unknown error-bound mode");
  size_t chunk = p->chunk ? p->chunk : DEFAULT_CHUNK;
  if (chunk < 256 || chunk > (1u << 24) || chunk % 256) return moesz_error_set(err, MOESZ_E_ARG, "codec: chunk must be a multiple of 256 in [256, 2^24]");
  enc_job j;
  memset(&j, 0, sizeof j);
  atomic_init(&j.fail, 0);
  j.src = src; j.in = dtype; j.out = outdt; j.n = n; j.chunk = chunk; j.pipe = p->pipeline;
  j.nch = (n + chunk - 1) / chunk;
  j.eb = codec_eb_absolute(src, dtype, n, p->mode, p->eb);
  if (!(j.eb >= 0) || !isfinite(j.eb)) j.eb = 0;
  j.step = 2 * j.eb;
  if (j.eb > 0 && !(j.step > 0 && isfinite(j.step))) j.eb = 0, j.step = 0;  /* underflow/overflow: lossless */
  if (outdt != dtype && outdt != MOESZ_DT_F32) {
    /* the bound is promised in outdt: every value needs an outdt value within eb */
    double x = 0, y = 0;
    size_t bad = codec_first_undeliverable(src, dtype, outdt, n, j.eb, &x, &y);
    if (bad < n)
      return moesz_error_set(err, MOESZ_E_RANGE,
                             "codec: value %.9g (index %zu) has no %s value within the bound %g (nearest %.9g); "
                             "use a larger bound or deliver %s or F32", x, bad, moesz_dtype_name(outdt), j.eb, y,
                             moesz_dtype_name(dtype));
  }
  moesz_pool *pool = j.nch > 1 ? x->pool : NULL;
  j.x = x;
  j.cbuf = calloc(j.nch + 1, sizeof *j.cbuf);
  j.clen = calloc(j.nch + 1, sizeof *j.clen);
  j.cverb = calloc(j.nch + 1, sizeof *j.cverb);
  uint8_t lens[HUF_NSYM];
  memset(lens, 0, sizeof lens);
  int rc = MOESZ_OK;
  if (!j.cbuf || !j.clen || !j.cverb || ctx_slots(x, j.nch)) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "codec: out of memory"); goto done; }
  if (j.pipe == MOESZ_PIPE_ENTROPY && j.eb > 0) {
    j.hist = calloc(j.nch + 1, sizeof *j.hist);
    j.he = x->he;
    j.nverb = calloc(j.nch + 1, sizeof *j.nverb);
    if (!j.hist || !j.nverb) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "codec: out of memory"); goto done; }
    moesz_pool_run(pool, j.nch, pass_hist, &j);
    if (atomic_load(&j.fail)) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "codec: out of memory"); goto done; }
    uint64_t tot[HUF_NSYM];
    memset(tot, 0, sizeof tot);
    for (size_t c = 0; c < j.nch; c++)
      for (int s = 0; s < HUF_NSYM; s++) tot[s] += j.hist[c][s];
    if (huf_lengths(tot, lens)) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "codec: out of memory"); goto done; }
    huf_enc_init(j.he, lens);
  }
  moesz_pool_run(pool, j.nch, pass_encode, &j);
  if (atomic_load(&j.fail)) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "codec: out of memory"); goto done; }
  size_t A = 0;
  for (size_t i = 0; i < HUF_NSYM; i++) if (lens[i]) A = i + 1;
  size_t tb = table_bytes_for(j.pipe, A), total = HDR + tb + j.nch * IDX_ENTRY;
  if (tb) {
    /* lossless fallback for the whole stream: when the code table and the
     * coded chunks together outweigh raw chunks (tiny arrays), store every
     * chunk raw and no table */
    size_t coded = 0, raw = 0;
    for (size_t c = 0; c < j.nch; c++) {
      coded += j.clen[c];
      raw += CHUNK_HDR + (n - c * chunk < chunk ? n - c * chunk : chunk) * moesz_dtype_size(dtype);
    }
    if (raw <= tb + coded) {
      for (size_t c = 0; c < j.nch; c++) chunk_to_raw(&j, c);
      total -= tb;
      tb = 0;
      A = 0;
    }
  }
  uint64_t verb = 0;
  for (size_t c = 0; c < j.nch; c++) { total += j.clen[c]; verb += j.cverb[c]; }
  uint8_t *s = malloc(total);
  if (!s) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "codec: out of memory (%zu bytes)", total); goto done; }
  memset(s, 0, HDR + tb);
  memcpy(s, MAGIC, 4);
  s[4] = VERSION;
  s[5] = (uint8_t)j.pipe;
  s[6] = (uint8_t)dtype;
  s[7] = (uint8_t)outdt;
  s[8] = (uint8_t)p->mode;
  moesz_wr32le(s + 12, (uint32_t)tb);
  moesz_wr64le(s + 16, n);
  moesz_wrf64le(s + 24, j.eb);
  moesz_wrf64le(s + 32, p->eb);
  moesz_wr32le(s + 40, (uint32_t)chunk);
  moesz_wr64le(s + 48, j.nch);
  if (tb) {
    moesz_wr32le(s + HDR, (uint32_t)A);
    for (size_t i = 0; 2 * i < A; i++) s[HDR + 4 + i] = (uint8_t)(lens[2 * i] | (2 * i + 1 < A ? lens[2 * i + 1] : 0) << 4);
  }
  size_t pos = HDR + tb + j.nch * IDX_ENTRY;
  for (size_t c = 0; c < j.nch; c++) {
    uint8_t *e = s + HDR + tb + c * IDX_ENTRY;
    moesz_wr64le(e, pos);
    moesz_wr64le(e + 8, j.clen[c]);
    moesz_wr64le(e + 16, XXH3_64bits(j.cbuf[c], j.clen[c]));
    memcpy(s + pos, j.cbuf[c], j.clen[c]);
    pos += j.clen[c];
  }
  moesz_wr64le(s + 56, XXH3_64bits(s, 56) ^ XXH3_64bits(s + HDR, tb + j.nch * IDX_ENTRY));
  *out = s;
  *out_len = total;
  if (info) {
    info->in_dtype = dtype; info->out_dtype = outdt; info->pipeline = j.pipe; info->count = n; info->eb = j.eb;
    info->chunk = chunk; info->nchunks = j.nch; info->verbatim = verb; info->stream_bytes = total;
  }
done:
  free(j.cbuf); free(j.clen); free(j.cverb); free(j.hist); free(j.nverb);
  return rc;
}

/* -------------------------------------------------------------- decoder */

typedef struct parsed {
  moesz_codec_info info;
  const uint8_t *s;
  size_t len, tb;
  size_t nsym;                  /* symbols the table lists (lens[s] = 0 from there on) */
  uint8_t lens[HUF_NSYM];
} parsed;

static int parse(const void *stream, size_t len, parsed *ps, moesz_error *err) {
  const uint8_t *s = stream;
  memset(ps, 0, sizeof *ps);
  if (!s || len < HDR) return moesz_error_set(err, MOESZ_E_FORMAT, "codec: stream of %zu bytes is shorter than its header", len);
  if (memcmp(s, MAGIC, 4)) return moesz_error_set(err, MOESZ_E_FORMAT, "codec: bad magic");
  if (s[4] != VERSION) return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "codec: stream version %u", s[4]);
  if (s[5] > 1 || !dtype_ok((moesz_dtype)s[6]) || !dtype_ok((moesz_dtype)s[7]) || s[8] > 2)
    return moesz_error_set(err, MOESZ_E_FORMAT, "codec: bad pipeline, dtype or mode in header");
  if (s[9] | s[10] | s[11] | s[44] | s[45] | s[46] | s[47])
    return moesz_error_set(err, MOESZ_E_FORMAT, "codec: reserved header bytes are not zero (unknown flags)");
  moesz_codec_info *in = &ps->info;
  in->pipeline = (moesz_pipeline)s[5];
  in->in_dtype = (moesz_dtype)s[6];
  in->out_dtype = (moesz_dtype)s[7];
  size_t tb = moesz_rd32le(s + 12);
  in->count = moesz_rd64le(s + 16);
  in->eb = moesz_rdf64le(s + 24);
  in->chunk = moesz_rd32le(s + 40);
  in->nchunks = moesz_rd64le(s + 48);
  if (in->pipeline == MOESZ_PIPE_ENTROPY && tb) {        /* tb 0: no table, every chunk raw */
    if (tb < 8 || HDR + tb > len) return moesz_error_set(err, MOESZ_E_FORMAT, "codec: bad table size");
    uint32_t A = moesz_rd32le(s + HDR);
    if (A > HUF_NSYM || tb != table_bytes_for(in->pipeline, A)) return moesz_error_set(err, MOESZ_E_FORMAT, "codec: bad table size");
  } else if (tb) return moesz_error_set(err, MOESZ_E_FORMAT, "codec: bad table size");
  if (in->chunk < 256 || in->chunk > (1u << 24) || in->chunk % 256) return moesz_error_set(err, MOESZ_E_FORMAT, "codec: bad chunk size");
  if (!(in->eb >= 0) || !isfinite(in->eb) || in->count > (1ull << 48)) return moesz_error_set(err, MOESZ_E_FORMAT, "codec: bad bound or count");
  if (in->nchunks != (in->count + in->chunk - 1) / in->chunk) return moesz_error_set(err, MOESZ_E_FORMAT, "codec: chunk count does not match the value count");
  if (HDR + tb > len || in->nchunks > (len - HDR - tb) / IDX_ENTRY) return moesz_error_set(err, MOESZ_E_FORMAT, "codec: index runs past the stream");
  size_t idx_end = HDR + tb + in->nchunks * IDX_ENTRY;
  if (!MOESZ_CHECKSUM_OK(XXH3_64bits(s, 56) ^ XXH3_64bits(s + HDR, idx_end - HDR), moesz_rd64le(s + 56)))
    return moesz_error_set(err, MOESZ_E_CHECKSUM, "codec: header checksum mismatch");
  for (size_t c = 0; c < in->nchunks; c++) {
    const uint8_t *e = s + HDR + tb + c * IDX_ENTRY;
    uint64_t off = moesz_rd64le(e), l = moesz_rd64le(e + 8);
    if (off < idx_end || off > len || l > len - off || l < CHUNK_HDR)
      return moesz_error_set(err, MOESZ_E_FORMAT, "codec: chunk %zu lies outside the stream", c);
  }
  if (tb) {
    uint32_t A = moesz_rd32le(s + HDR);
    for (size_t i = 0; i < A; i++) ps->lens[i] = (uint8_t)(i % 2 ? s[HDR + 4 + i / 2] >> 4 : s[HDR + 4 + i / 2] & 15);
    ps->nsym = A;
  }
  in->stream_bytes = len;
  ps->s = s;
  ps->len = len;
  ps->tb = tb;
  return MOESZ_OK;
}

int moesz_codec_info_read(const void *stream, size_t len, moesz_codec_info *info, moesz_error *err) {
  parsed ps;
  int rc = parse(stream, len, &ps, err);
  if (!rc && info) *info = ps.info;
  return rc;
}

typedef struct dec_job {
  const parsed *ps;
  const huf_dec *hd;
  moesz_dtype dt;
  void *dst;
  atomic_int rc;                /* first failure (a moesz_status), 0 while none */
  size_t bad_chunk;             /* its chunk: written only by the worker that set rc */
} dec_job;

/* Decodes chunk c into dst (values c * chunk ..). Returns a moesz_status. */
static int decode_chunk(const parsed *ps, const huf_dec *hd, size_t c, moesz_dtype dt, void *dst) {
  const moesz_codec_info *in = &ps->info;
  const uint8_t *e = ps->s + HDR + ps->tb + c * IDX_ENTRY;
  uint64_t off = moesz_rd64le(e), l = moesz_rd64le(e + 8);
  const uint8_t *ch = ps->s + off;
  if (!MOESZ_CHECKSUM_OK(XXH3_64bits(ch, l), moesz_rd64le(e + 16))) return MOESZ_E_CHECKSUM;
  size_t m = in->count - c * in->chunk < in->chunk ? in->count - c * in->chunk : in->chunk;
  size_t es = moesz_dtype_size(in->in_dtype);
  uint32_t n = moesz_rd32le(ch + 4), nv = moesz_rd32le(ch + 8), body = moesz_rd32le(ch + 12);
  if (n != m || body != l - CHUNK_HDR || (ch[0] != MODE_CODED && ch[0] != MODE_RAW) || (ch[1] | ch[2] | ch[3]))
    return MOESZ_E_FORMAT;
  const uint8_t *p = ch + CHUNK_HDR;
  if (ch[0] == MODE_RAW) {
    if (body != m * es || nv) return MOESZ_E_FORMAT;
    if (dt == in->in_dtype) memcpy(dst, p, m * es);
    else for (size_t i = 0; i < m; i++) codec_put_value(p, in->in_dtype, i, dst, dt, i);
    return MOESZ_OK;
  }
  int fast = in->pipeline == MOESZ_PIPE_FAST;
  uint32_t nn = 0;
  size_t pw = nudge_pos_bytes(in->chunk);
  const uint8_t *npos = NULL;
  if (fast) {
    /* nudged codes: count and ascending positions in the chunk */
    if (body < 4) return MOESZ_E_FORMAT;
    nn = moesz_rd32le(p);
    if (nn > m || (size_t)nn * pw > body - 4) return MOESZ_E_FORMAT;
    npos = p + 4;
    for (uint32_t k = 0, prev = 0; k < nn; k++) {
      uint32_t i = codec_pos_at(npos, k, pw);
      if (i >= m || (k && i <= prev)) return MOESZ_E_FORMAT;
      prev = i;
    }
    p += 4 + (size_t)nn * pw;
    body -= (uint32_t)(4 + (size_t)nn * pw);
  }
  size_t vbytes = (size_t)nv * (es + (fast ? 4 : 0));
  if (in->eb <= 0 || nv > m || vbytes > body) return MOESZ_E_FORMAT;
  const uint8_t *vidx = p, *vval = p + (fast ? 4 * (size_t)nv : 0), *code = p + vbytes;
  size_t clen = body - vbytes;
  uint32_t *vpos = fast ? NULL : malloc((size_t)nv * 4 + 4);
  if (!fast && !vpos) return MOESZ_E_NOMEM;
  int bad = !fast ? (hd ? huf_decode(hd, code, clen, m, dst, vpos, nv) : -1)
                  : pack_decode(code, clen, m, 2 * in->eb, dt, in->out_dtype, npos, nn, pw, dst);
  uint32_t prev = 0;
  for (uint32_t k = 0; fast && !bad && k < nv; k++) {
    uint32_t i = moesz_rd32le(vidx + 4 * (size_t)k);
    if (i >= m || (k && i <= prev)) bad = 1;
    prev = i;
  }
  if (bad) { free(vpos); return MOESZ_E_FORMAT; }
  for (uint32_t k = 0; k < nv; k++)
    codec_put_value(vval, in->in_dtype, k, dst, dt, fast ? moesz_rd32le(vidx + 4 * (size_t)k) : vpos[k]);
  free(vpos);
  return MOESZ_OK;
}

static void dec_task(void *ctx, size_t c, int tid) {
  (void)tid;
  dec_job *j = ctx;
  if (atomic_load_explicit(&j->rc, memory_order_relaxed)) return;   /* another chunk failed: stop early */
  size_t eo = moesz_dtype_size(j->dt);
  int rc = decode_chunk(j->ps, j->hd, c, j->dt, (char *)j->dst + c * j->ps->info.chunk * eo);
  int none = 0;
  if (rc && atomic_compare_exchange_strong(&j->rc, &none, rc)) j->bad_chunk = c;
}

static int chunk_error(int rc, size_t c, moesz_error *err) {
  if (rc == MOESZ_E_CHECKSUM) return moesz_error_set(err, rc, "codec: chunk %zu checksum mismatch (corrupted stream)", c);
  if (rc == MOESZ_E_NOMEM) return moesz_error_set(err, rc, "codec: out of memory");
  return moesz_error_set(err, rc, "codec: chunk %zu is malformed", c);
}

/* The Huffman decoder of a stream in hd (caller's storage) for decoding n
 * of its values (the pair table when it pays for them); *out = hd, or NULL
 * for the fast pipeline. */
static int make_dec(const parsed *ps, moesz_dtype dt, size_t n, huf_dec *hd, huf_dec **out, moesz_error *err) {
  *out = NULL;
  if (ps->info.pipeline != MOESZ_PIPE_ENTROPY) return MOESZ_OK;
  if (huf_dec_init(hd, ps->lens, ps->nsym))
    return moesz_error_set(err, MOESZ_E_FORMAT, "codec: the Huffman code lengths are not a prefix code");
  huf_dec_values(hd, ps->lens, 2 * ps->info.eb, dt, ps->info.out_dtype);
  if (hd->vs == 2 && huf_pairs_pay(ps->lens, ps->nsym, n)) huf_dec_pairs(hd, ps->lens);
  *out = hd;
  return MOESZ_OK;
}

int moesz_codec_decompress(const void *stream, size_t len, moesz_dtype dtype, void *dst, size_t n, int threads,
                           moesz_error *err) {
  moesz_codec_ctx *x;
  int rc = moesz_codec_ctx_create(threads, &x, err);
  if (rc) return rc;
  rc = moesz_codec_decompress_ctx(x, stream, len, dtype, dst, n, err);
  moesz_codec_ctx_free(x);
  return rc;
}

int moesz_codec_decompress_ctx(moesz_codec_ctx *x, const void *stream, size_t len, moesz_dtype dtype, void *dst,
                               size_t n, moesz_error *err) {
  parsed ps;
  int rc = parse(stream, len, &ps, err);
  if (rc) return rc;
  if (!dtype_ok(dtype)) return moesz_error_set(err, MOESZ_E_ARG, "codec: cannot decode to %s", moesz_dtype_name(dtype));
  if (n != ps.info.count) return moesz_error_set(err, MOESZ_E_ARG, "codec: stream holds %zu values, caller expects %zu", ps.info.count, n);
  huf_dec *hd;
  if ((rc = make_dec(&ps, dtype, n, x->hd, &hd, err))) return rc;
  dec_job j = {.ps = &ps, .hd = hd, .dt = dtype, .dst = dst};
  moesz_pool_run(ps.info.nchunks > 1 ? x->pool : NULL, ps.info.nchunks, dec_task, &j);
  int jrc = atomic_load(&j.rc);
  return jrc ? chunk_error(jrc, j.bad_chunk, err) : MOESZ_OK;
}

int moesz_codec_decompress_chunk(const void *stream, size_t len, size_t i, moesz_dtype dtype, void *dst, size_t cap,
                                 size_t *n_out, moesz_error *err) {
  parsed ps;
  int rc = parse(stream, len, &ps, err);
  if (rc) return rc;
  if (i >= ps.info.nchunks) return moesz_error_set(err, MOESZ_E_RANGE, "codec: chunk %zu of %zu", i, ps.info.nchunks);
  if (!dtype_ok(dtype)) return moesz_error_set(err, MOESZ_E_ARG, "codec: cannot decode to %s", moesz_dtype_name(dtype));
  size_t m = ps.info.count - i * ps.info.chunk < ps.info.chunk ? ps.info.count - i * ps.info.chunk : ps.info.chunk;
  if (cap < m) return moesz_error_set(err, MOESZ_E_ARG, "codec: chunk holds %zu values, room for %zu", m, cap);
  huf_dec *store = malloc(sizeof *store), *hd;
  if (!store) return moesz_error_set(err, MOESZ_E_NOMEM, "codec: out of memory");
  if ((rc = make_dec(&ps, dtype, m, store, &hd, err))) { free(store); return rc; }
  rc = decode_chunk(&ps, hd, i, dtype, dst);
  free(store);
  if (rc) return chunk_error(rc, i, err);
  if (n_out) *n_out = m;
  return MOESZ_OK;
}
