/* codec/clayout.c - owns the compute layout: a matrix of integer codes that
 * kernels multiply from directly (weight = q * step, or q * step + step / 2
 * on the half grid, exact in f32), with a
 * width per group of 64 codes and a per-row escape list; its encoder (strict
 * bound checked per value), its validating parser and its reference decoder
 * to f32. The multiply kernels are in src/infer/kernels_cl.c. Format and the
 * proof of the bound: docs/CODEC.md "Compute layout". */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/xxh.h"
#include "base/pool.h"
#include "base/util.h"
#include "codec/codec_internal.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the compute layout's arrays are read in place: little-endian hosts only"
#endif

#define CL_MAGIC "MOESZCL1"
#define CL_VERSION 1
#define CL_HDR 64
#define CL_PAD 16                 /* readable bytes after the last group (16-byte loads) */
#define CL_ESC_BITS 64            /* cost of an escape: u32 position + f32 value */
#define CL_QMAX 16383             /* |q| < 2^14: q * step exact in f32 */
#define CL_QMAX_HALF 8191         /* half grid: -2^13 <= q < 2^13, |2q + 1| < 2^14 */
#define CL_FLAG_HALF 1u           /* header flags: the half grid */
#define CL_ESC_MARK INT16_MIN     /* code array: this value is an escape */
#define G MOESZ_CL_GROUP

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static size_t al64(size_t x) { return (x + 63) / 64 * 64; }

/* Section offsets of a layout with these counts; 0 on overflow. */
typedef struct cl_geom { size_t wid, eidx, eval, data, total; } cl_geom;
static int geom(uint64_t rows, uint64_t wstride, uint64_t n_esc, uint64_t data_bytes, cl_geom *g) {
  size_t a, b;
  g->wid = CL_HDR;
  if (!moesz_mul_ok(rows, wstride, &b)) return 0;
  g->eidx = al64(g->wid + b);
  if (!moesz_mul_ok(n_esc, 4, &a)) return 0;
  g->eval = al64(g->eidx + a);
  g->data = al64(g->eval + a);
  if (data_bytes > SIZE_MAX - g->data - CL_PAD) return 0;
  g->total = g->data + data_bytes + CL_PAD;
  return g->data >= g->eval;   /* no wrap-around above */
}

/* Bits a two's-complement code needs (0 for q = 0: a width-0 group holds only zeros). */
static int need_bits(int q) {
  if (q == 0) return 0;
  unsigned m = q > 0 ? (unsigned)q : (unsigned)(-(q + 1));
  return m ? 33 - __builtin_clz(m) : 1;
}

/* The largest bound <= eb with at most 10 significant bits (so step = 2 eb'
 * times a 14-bit code is exact in f32). */
static double round_bound(double eb) {
  int e;
  double m = frexp(eb, &e);
  return ldexp(floor(m * 1024.0) / 1024.0, e);
}

/* XXH3-64 of the layout but its checksum field (header bytes 56..63). */
static uint64_t cl_checksum(const uint8_t *buf, size_t len) {
  return XXH3_64bits_withSeed(buf + CL_HDR, len - CL_HDR, XXH3_64bits(buf, 56));
}

int moesz_cl_is(const void *buf, size_t len) { return buf && len >= CL_HDR && !memcmp(buf, CL_MAGIC, 8); }

/* Shared state of one encode: pass 1 (codes, widths, per-row counts) and
 * pass 2 (packing at the rows' offsets) run over blocks of rows on a pool. */
#define ROWS_PER_TASK 32
typedef struct enc_job {
  const void *src;
  moesz_dtype dt;
  int64_t rows, cols, ng, wstride;
  double step, eb;              /* grid step and bound eb' (exact doubles) */
  int half;                     /* the half grid: weight (2q + 1) eb' */
  int16_t *q;                   /* [rows, cols] codes, CL_ESC_MARK = escape */
  uint8_t *wid;                 /* [rows, wstride] */
  uint32_t *nesc, *dbytes;      /* [rows] escapes and code bytes per row */
  uint64_t *eoff, *doff;        /* [rows] where row r's escapes / codes start */
  uint64_t (*wcount)[MOESZ_CL_MAXW + 1]; /* [tasks] groups by width */
  uint64_t *cost, *alt_cost;    /* [tasks] bits of the groups on this grid and (if not NULL) on the other */
  uint32_t *eidx;               /* output sections */
  float *eval;
  uint8_t *data;
  float **rowbuf;               /* [threads][cols] */
} enc_job;

/* The code of x on the job's grid, or CL_ESC_MARK. Zero grid: q = round(x /
 * step), weight q * step; half grid: q = floor(x / step), weight (2q + 1) eb'
 * (x / step is exact enough: x and q * step are f32 values, so either x is
 * on the grid point or the quotient is at least 2^-24 q away from it). The
 * weight is checked against x exactly in double either way. */
static int16_t enc_code(const enc_job *j, int half, float x) {
  if (!isfinite(x)) return CL_ESC_MARK;
  if (half) {
    double qd = floor((double)x / j->step);
    if (qd >= -CL_QMAX_HALF - 1 && qd <= CL_QMAX_HALF && fabs((2 * qd + 1) * j->eb - (double)x) <= j->eb) return (int16_t)qd;
    return CL_ESC_MARK;
  }
  double qd = nearbyint((double)x / j->step);
  if (fabs(qd) <= CL_QMAX && fabs(qd * j->step - (double)x) <= j->eb) return (int16_t)qd;
  return CL_ESC_MARK;
}

/* The width minimising 64 b + CL_ESC_BITS (values needing more than b bits)
 * for a group whose codes need hist[k] bits (hist[16]: escapes), and its cost. */
static int group_width(const uint32_t hist[17], uint64_t *cost) {
  uint64_t best = UINT64_MAX;
  int bw = 0;
  uint32_t above = 0;
  for (int k = 1; k <= 16; k++) above += hist[k];
  for (int b = 0; b <= MOESZ_CL_MAXW; b++) {
    if (b > 0) above -= hist[b];
    uint64_t c = (uint64_t)G * (uint64_t)b + (uint64_t)CL_ESC_BITS * above;
    if (c < best) { best = c; bw = b; }
  }
  *cost = best;
  return bw;
}

static void enc_pass1(void *ctx, size_t task, int tid) {
  enc_job *j = ctx;
  int64_t r0 = (int64_t)task * ROWS_PER_TASK, r1 = r0 + ROWS_PER_TASK < j->rows ? r0 + ROWS_PER_TASK : j->rows;
  size_t es = moesz_dtype_size(j->dt);
  float *x = j->rowbuf[tid];
  uint64_t cost = 0, alt = 0;
  for (int64_t r = r0; r < r1; r++) {
    int16_t *qr = j->q + (size_t)r * (size_t)j->cols;
    moesz_to_f32(j->dt, (const char *)j->src + (size_t)r * (size_t)j->cols * es, x, (size_t)j->cols);
    for (int64_t c = 0; c < j->cols; c++) qr[c] = enc_code(j, j->half, x[c]);
    uint32_t ne_row = 0, db_row = 0;
    for (int64_t g = 0; g < j->ng; g++) {
      uint32_t hist[17] = {0};
      int64_t c1 = (g + 1) * G < j->cols ? (g + 1) * G : j->cols;
      for (int64_t c = g * G; c < c1; c++) hist[qr[c] == CL_ESC_MARK ? 16 : need_bits(qr[c])]++;
      uint64_t gc;
      int bw = group_width(hist, &gc);
      cost += gc;
      if (j->alt_cost) {   /* the other grid's cost of the same group */
        uint32_t ha[17] = {0};
        for (int64_t c = g * G; c < c1; c++) {
          int16_t q = enc_code(j, !j->half, x[c]);
          ha[q == CL_ESC_MARK ? 16 : need_bits(q)]++;
        }
        uint64_t ac;
        group_width(ha, &ac);
        alt += ac;
      }
      for (int k = bw + 1; k <= 16; k++) ne_row += hist[k];
      j->wid[(size_t)r * (size_t)j->wstride + (size_t)(g >> 1)] |= (uint8_t)(bw << ((g & 1) * 4));
      j->wcount[task][bw]++;
      db_row += 8u * (uint32_t)bw;
    }
    j->nesc[r] = ne_row;
    j->dbytes[r] = db_row;
  }
  j->cost[task] = cost;
  if (j->alt_cost) j->alt_cost[task] = alt;
}

static void enc_pass2(void *ctx, size_t task, int tid) {
  (void)tid;
  enc_job *j = ctx;
  int64_t r0 = (int64_t)task * ROWS_PER_TASK, r1 = r0 + ROWS_PER_TASK < j->rows ? r0 + ROWS_PER_TASK : j->rows;
  size_t es = moesz_dtype_size(j->dt);
  for (int64_t r = r0; r < r1; r++) {
    const int16_t *qr = j->q + (size_t)r * (size_t)j->cols;
    uint64_t eo = j->eoff[r];
    uint8_t *p = j->data + j->doff[r];
    for (int64_t g = 0; g < j->ng; g++) {
      int b = (j->wid[(size_t)r * (size_t)j->wstride + (size_t)(g >> 1)] >> ((g & 1) * 4)) & 15;
      int lo = b ? -(1 << (b - 1)) : 0, hi = b ? (1 << (b - 1)) - 1 : 0;
      uint64_t acc = 0;
      int nb = 0;
      for (int64_t i = 0; i < G; i++) {
        int64_t c = g * G + i;
        uint32_t u = 0;
        if (c < j->cols) {
          int16_t v = qr[c];
          if (v == CL_ESC_MARK || v < lo || v > hi) {
            float x;
            moesz_to_f32(j->dt, (const char *)j->src + ((size_t)r * (size_t)j->cols + (size_t)c) * es, &x, 1);
            j->eidx[eo] = (uint32_t)((size_t)r * (size_t)j->cols + (size_t)c);
            j->eval[eo] = x;
            eo++;
          } else {
            u = (uint32_t)v & ((1u << b) - 1);
          }
        }
        if (!b) continue;
        acc |= (uint64_t)u << nb;
        nb += b;
        while (nb >= 8) { *p++ = (uint8_t)acc; acc >>= 8; nb -= 8; }
      }
    }
  }
}

int moesz_cl_encode(const void *src, moesz_dtype dtype, int64_t rows, int64_t cols, moesz_eb_mode mode, double eb,
                    int threads, void **out, size_t *out_len, moesz_cl_info *info, moesz_error *err) {
  return moesz_cl_encode_ex(src, dtype, rows, cols, mode, eb, MOESZ_CL_GRID_AUTO, threads, out, out_len, info, err);
}

int moesz_cl_encode_ex(const void *src, moesz_dtype dtype, int64_t rows, int64_t cols, moesz_eb_mode mode, double eb,
                       int grid, int threads, void **out, size_t *out_len, moesz_cl_info *info, moesz_error *err) {
  *out = NULL;
  *out_len = 0;
  if (!src) return moesz_error_set(err, MOESZ_E_ARG, "compute layout: NULL input");
  if (dtype != MOESZ_DT_F32 && dtype != MOESZ_DT_F16 && dtype != MOESZ_DT_BF16)
    return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "compute layout: input dtype %s (F32, F16, BF16 only)", moesz_dtype_name(dtype));
  if (rows < 1 || cols < 1 || cols > 65536 || rows > INT32_MAX)
    return moesz_error_set(err, MOESZ_E_ARG, "compute layout: shape [%lld, %lld] (rows >= 1, 1 <= cols <= 65536)",
                           (long long)rows, (long long)cols);
  if (mode < MOESZ_EB_ABS || mode > MOESZ_EB_STD) return moesz_error_set(err, MOESZ_E_ARG, "compute layout: unknown error-bound mode");
  if (!(eb > 0) || !isfinite(eb)) return moesz_error_set(err, MOESZ_E_ARG, "compute layout: the bound must be a finite number > 0");
  if (grid < MOESZ_CL_GRID_AUTO || grid > MOESZ_CL_GRID_HALF) return moesz_error_set(err, MOESZ_E_ARG, "compute layout: unknown grid");
  size_t n = (size_t)rows * (size_t)cols;
  if (n >= UINT32_MAX) return moesz_error_set(err, MOESZ_E_RANGE, "compute layout: more than 2^32 values in one matrix");
  double eba = codec_eb_absolute(src, dtype, n, mode, eb);
  double ebr = eba > 0 && isfinite(eba) ? round_bound(eba) : 0;
  /* a bound of 0 (rel/std mode on a constant matrix) keeps every value exactly:
   * codes on an arbitrary grid where they are exact, escapes elsewhere */
  double stepd = ebr > 0 ? 2 * ebr : 1.0 / 1024;
  if (!(stepd >= FLT_MIN) || stepd > 1e30 || (double)(float)stepd != stepd)
    return moesz_error_set(err, MOESZ_E_ARG, "compute layout: bound %g gives a step outside f32's normal range", eba);
  float step = (float)stepd;
  enc_job j;
  memset(&j, 0, sizeof j);
  j.src = src; j.dt = dtype; j.rows = rows; j.cols = cols; j.step = stepd; j.eb = ebr;
  /* the half grid needs a bound (codes exact on an arbitrary grid otherwise) and eb' a normal f32;
   * automatic: codes on the zero grid first (the one fine bounds keep), the half grid's cost beside them */
  int half_ok = grid != MOESZ_CL_GRID_ZERO && ebr > 0 && ebr >= FLT_MIN, choose = half_ok && grid == MOESZ_CL_GRID_AUTO;
  j.half = half_ok && !choose;
  j.ng = (cols + G - 1) / G;
  j.wstride = (j.ng + 1) / 2;
  size_t ntask = (size_t)((rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK);
  int nth = threads > 0 ? threads : 1;
  if ((size_t)nth > ntask) nth = (int)ntask;
  moesz_pool *pool = nth > 1 ? moesz_pool_create(nth) : NULL;
  if (pool) nth = moesz_pool_size(pool);
  else nth = 1;
  j.q = malloc(n * sizeof *j.q);
  j.wid = calloc((size_t)rows * (size_t)j.wstride, 1);
  j.nesc = calloc((size_t)rows, sizeof *j.nesc);
  j.dbytes = calloc((size_t)rows, sizeof *j.dbytes);
  j.eoff = calloc((size_t)rows, sizeof *j.eoff);
  j.doff = calloc((size_t)rows, sizeof *j.doff);
  j.wcount = calloc(ntask, sizeof *j.wcount);
  j.cost = calloc(ntask, sizeof *j.cost);
  if (choose) j.alt_cost = calloc(ntask, sizeof *j.alt_cost);
  j.rowbuf = calloc((size_t)nth, sizeof *j.rowbuf);
  int rc = MOESZ_OK;
  if (!j.q || !j.wid || !j.nesc || !j.dbytes || !j.eoff || !j.doff || !j.wcount || !j.cost || !j.rowbuf ||
      (choose && !j.alt_cost))
    rc = moesz_error_set(err, MOESZ_E_NOMEM, "compute layout: out of memory");
  for (int t = 0; !rc && t < nth; t++)
    if (!(j.rowbuf[t] = malloc((size_t)cols * sizeof(float)))) rc = moesz_error_set(err, MOESZ_E_NOMEM, "compute layout: out of memory");
  uint8_t *buf = NULL;
  cl_geom gm;
  moesz_cl_info in;
  memset(&in, 0, sizeof in);
  if (!rc) {
    moesz_pool_run(pool, ntask, enc_pass1, &j);
    if (j.alt_cost) {   /* automatic: the half grid only if it saves at least 1/2% of the codes' bits (where
                           the two tie, the zero grid keeps exact zeros exact and the layout what earlier
                           encoders wrote) */
      uint64_t c = 0, a = 0;
      for (size_t t = 0; t < ntask; t++) { c += j.cost[t]; a += j.alt_cost[t]; }
      free(j.alt_cost);
      j.alt_cost = NULL;
      if (a * 200 <= c * 199) {
        j.half = 1;
        memset(j.wid, 0, (size_t)rows * (size_t)j.wstride);
        memset(j.wcount, 0, ntask * sizeof *j.wcount);
        moesz_pool_run(pool, ntask, enc_pass1, &j);
      }
    }
    uint64_t n_esc = 0, data_bytes = 0;
    for (int64_t r = 0; r < rows; r++) {
      j.eoff[r] = n_esc;
      j.doff[r] = data_bytes;
      n_esc += j.nesc[r];
      data_bytes += j.dbytes[r];
    }
    for (size_t t = 0; t < ntask; t++)
      for (int b = 0; b <= MOESZ_CL_MAXW; b++) in.groups_by_width[b] += j.wcount[t][b];
    if (data_bytes >= UINT32_MAX || !geom((uint64_t)rows, (uint64_t)j.wstride, n_esc, data_bytes, &gm))
      rc = moesz_error_set(err, MOESZ_E_RANGE, "compute layout: matrix too large for 32-bit offsets");
    else if (!(buf = aligned_alloc(64, al64(gm.total))))
      rc = moesz_error_set(err, MOESZ_E_NOMEM, "compute layout: out of memory (%zu bytes)", gm.total);
    if (!rc) {
      memset(buf, 0, gm.total);
      memcpy(buf, CL_MAGIC, 8);
      put32(buf + 8, CL_VERSION);
      put32(buf + 12, G);
      put64(buf + 16, (uint64_t)rows);
      put64(buf + 24, (uint64_t)cols);
      memcpy(buf + 32, &step, 4);
      put32(buf + 36, j.half ? CL_FLAG_HALF : 0);
      memcpy(buf + 40, &ebr, 8);
      put32(buf + 48, (uint32_t)n_esc);
      put32(buf + 52, (uint32_t)data_bytes);
      memcpy(buf + gm.wid, j.wid, (size_t)rows * (size_t)j.wstride);
      j.eidx = (uint32_t *)(buf + gm.eidx);
      j.eval = (float *)(buf + gm.eval);
      j.data = buf + gm.data;
      moesz_pool_run(pool, ntask, enc_pass2, &j);
      put64(buf + 56, cl_checksum(buf, gm.total));
      in.values = n;
      in.escapes = n_esc;
      in.eb = ebr;
      in.half = j.half;
      in.bytes = gm.total;
      in.bits_per_value = 8.0 * (double)gm.total / (double)n;
    }
  }
  if (j.rowbuf)
    for (int t = 0; t < nth; t++) free(j.rowbuf[t]);
  free(j.rowbuf); free(j.q); free(j.wid); free(j.nesc); free(j.dbytes); free(j.eoff); free(j.doff); free(j.wcount);
  free(j.cost); free(j.alt_cost);
  moesz_pool_destroy(pool);
  if (rc) { free(buf); return rc; }
  if (info) *info = in;
  *out = buf;
  *out_len = gm.total;
  return MOESZ_OK;
}

static int parse_rows(moesz_cl *m, uint64_t rows, uint64_t cols, uint64_t ng, uint64_t wstride, uint64_t n_esc,
                      uint64_t dbytes, moesz_error *err);

size_t moesz_cl_parse_bytes(int64_t rows) { return 2 * ((size_t)rows + 1) * sizeof(uint32_t) + (size_t)rows; }

void moesz_cl_free(moesz_cl *m) {
  if (!m) return;
  free(m->row_off);
  m->row_off = m->esc_start = NULL;
  m->usual = NULL;
}

int moesz_cl_parse(const void *buf, size_t len, moesz_cl *m, moesz_error *err) {
  return moesz_cl_parse_ex(buf, len, 0, m, err);
}

int moesz_cl_parse_ex(const void *vbuf, size_t len, unsigned flags, moesz_cl *m, moesz_error *err) {
  int rc = moesz_cl_header(vbuf, len, m, err);
  if (rc) return rc;
  const uint8_t *buf = vbuf;
  uint64_t rows = (uint64_t)m->rows, cols = (uint64_t)m->cols, n_esc = m->n_esc, dbytes = m->data_bytes;
  uint64_t ng = (uint64_t)m->ngroups, wstride = (uint64_t)m->wstride;
  if (!(flags & MOESZ_CL_VERIFIED) && !MOESZ_CHECKSUM_OK(cl_checksum(buf, len), get64(buf + 56)))
    return moesz_error_set(err, MOESZ_E_FORMAT, "compute layout: checksum mismatch");
  if (!(m->row_off = malloc(moesz_cl_parse_bytes((int64_t)rows))))
    return moesz_error_set(err, MOESZ_E_NOMEM, "compute layout: out of memory");
  m->esc_start = m->row_off + rows + 1;
  m->usual = (uint8_t *)(m->esc_start + rows + 1);
  return parse_rows(m, rows, cols, ng, wstride, n_esc, dbytes, err);
}

int moesz_cl_header(const void *vbuf, size_t len, moesz_cl *m, moesz_error *err) {
  const uint8_t *buf = vbuf;
  memset(m, 0, sizeof *m);
  if (!buf || len < CL_HDR || memcmp(buf, CL_MAGIC, 8))
    return moesz_error_set(err, MOESZ_E_FORMAT, "compute layout: bad magic or truncated header");
  if ((uintptr_t)buf % 4) return moesz_error_set(err, MOESZ_E_ARG, "compute layout: buffer not 4-byte aligned");
  if (get32(buf + 8) != CL_VERSION) return moesz_error_set(err, MOESZ_E_FORMAT, "compute layout: version %u unknown", get32(buf + 8));
  if (get32(buf + 12) != G) return moesz_error_set(err, MOESZ_E_FORMAT, "compute layout: group %u (only 64)", get32(buf + 12));
  uint32_t hflags = get32(buf + 36);
  if (hflags & ~CL_FLAG_HALF) return moesz_error_set(err, MOESZ_E_FORMAT, "compute layout: unknown flags 0x%x", hflags);
  uint64_t rows = get64(buf + 16), cols = get64(buf + 24), n_esc = get32(buf + 48), dbytes = get32(buf + 52);
  float step;
  double eb;
  memcpy(&step, buf + 32, 4);
  memcpy(&eb, buf + 40, 8);
  uint32_t sbits;
  memcpy(&sbits, &step, 4);
  if (rows < 1 || rows > INT32_MAX || cols < 1 || cols > 65536 || rows * cols >= UINT32_MAX)
    return moesz_error_set(err, MOESZ_E_FORMAT, "compute layout: shape [%llu, %llu] out of range", (unsigned long long)rows,
                           (unsigned long long)cols);
  if (!(step >= FLT_MIN) || !isfinite(step) || (sbits & 0x3fff) || (eb != (double)step / 2 && eb != 0) ||
      (hflags & CL_FLAG_HALF && !(eb != 0 && step / 2 >= FLT_MIN)))
    return moesz_error_set(err, MOESZ_E_FORMAT, "compute layout: step/bound not of the layout's form");
  uint64_t ng = (cols + G - 1) / G, wstride = (ng + 1) / 2;
  if (n_esc > rows * cols || dbytes >= UINT32_MAX || dbytes > rows * ng * 8 * MOESZ_CL_MAXW)
    return moesz_error_set(err, MOESZ_E_FORMAT, "compute layout: counts out of range");
  cl_geom gm;
  if (!geom(rows, wstride, n_esc, dbytes, &gm) || gm.total != len)
    return moesz_error_set(err, MOESZ_E_FORMAT, "compute layout: %zu bytes, the header implies %zu", len, gm.total);
  m->rows = (int64_t)rows;
  m->cols = (int64_t)cols;
  m->ngroups = (int64_t)ng;
  m->wstride = (int64_t)wstride;
  m->step = step;
  m->half = hflags & CL_FLAG_HALF ? step / 2 : 0;
  m->eb = eb;
  m->n_esc = n_esc;
  m->data_bytes = (size_t)dbytes;
  m->widths = buf + gm.wid;
  m->esc_idx = (const uint32_t *)(buf + gm.eidx);
  m->esc_val = (const float *)(buf + gm.eval);
  m->data = buf + gm.data;
  return MOESZ_OK;
}

/* Row offsets and escape starts of a layout whose header checked out. */
static int parse_rows(moesz_cl *m, uint64_t rows, uint64_t cols, uint64_t ng, uint64_t wstride, uint64_t n_esc,
                      uint64_t dbytes, moesz_error *err) {
  /* row offsets from the widths */
  uint64_t off = 0;
  for (uint64_t r = 0; r < rows; r++) {
    m->row_off[r] = (uint32_t)off;
    const uint8_t *w = m->widths + r * wstride;
    uint32_t sum = 0;   /* two widths a byte; with ng odd the last high nibble is padding, checked below */
    int w15 = 0;   /* 15-bit groups: zero grid only (|2q + 1| < 2^14 on the half grid) */
    for (uint64_t i = 0; i < wstride; i++) {
      sum += (uint32_t)(w[i] & 15) + (uint32_t)(w[i] >> 4);
      w15 |= (w[i] & 15) == 15 || w[i] >> 4 == 15;
    }
    if (w15 && m->half != 0) {
      moesz_cl_free(m);
      return moesz_error_set(err, MOESZ_E_FORMAT, "compute layout: row %llu: a 15-bit group on the half grid", (unsigned long long)r);
    }
    off += 8u * (uint64_t)sum;
    if (off > dbytes) { moesz_cl_free(m); return moesz_error_set(err, MOESZ_E_FORMAT, "compute layout: widths exceed the data"); }
    if (ng & 1 && w[wstride - 1] >> 4) {
      moesz_cl_free(m);
      return moesz_error_set(err, MOESZ_E_FORMAT, "compute layout: row %llu: padding width not 0", (unsigned long long)r);
    }
    uint64_t nb = ng >> 1, same = 0, two = 0;   /* full width bytes (two groups each) equal to the first, 0x22 */
    for (uint64_t i = 0; i < nb; i++) {
      same += w[i] == w[0];
      two += w[i] == 0x22;
    }
    m->usual[r] = (uint8_t)(nb && (w[0] & 15) == (w[0] >> 4) && same * 8 >= nb * 7 ? (w[0] & 15) : 0);
    if (nb ? 2 * two >= nb : (w[0] & 15) == 2) m->usual[r] |= MOESZ_CL_MOSTLY2;
  }
  m->row_off[rows] = (uint32_t)off;
  if (off != dbytes) { moesz_cl_free(m); return moesz_error_set(err, MOESZ_E_FORMAT, "compute layout: widths disagree with the data size"); }
  /* escapes: ascending positions over a zero code, so the kernels and decode agree */
  uint64_t e = 0;
  for (uint64_t r = 0; r < rows; r++) {
    m->esc_start[r] = (uint32_t)e;
    uint64_t goff = m->row_off[r];
    int64_t gcur = 0;
    for (; e < n_esc && m->esc_idx[e] < (r + 1) * cols; e++) {
      if (m->esc_idx[e] < r * cols || (e && m->esc_idx[e] <= m->esc_idx[e - 1])) {
        moesz_cl_free(m);
        return moesz_error_set(err, MOESZ_E_FORMAT, "compute layout: escapes not ascending");
      }
      int64_t c = (int64_t)(m->esc_idx[e] - r * cols);
      for (; gcur < c / G; gcur++) goff += 8u * (uint64_t)moesz_cl_width(m, (int64_t)r, gcur);
      if (moesz_cl_code(m->data + goff, moesz_cl_width(m, (int64_t)r, c / G), (int)(c % G)) != 0) {
        moesz_cl_free(m);
        return moesz_error_set(err, MOESZ_E_FORMAT, "compute layout: row %llu: escape over a non-zero code", (unsigned long long)r);
      }
    }
  }
  m->esc_start[rows] = (uint32_t)e;
  if (e != n_esc) { moesz_cl_free(m); return moesz_error_set(err, MOESZ_E_FORMAT, "compute layout: escape beyond the matrix"); }
  return MOESZ_OK;
}

void moesz_cl_decode_rows(const moesz_cl *m, int64_t r0, int64_t r1, float *dst) {
  for (int64_t r = r0; r < r1; r++) {
    const uint8_t *p = m->data + m->row_off[r];
    float *d = dst + (size_t)(r - r0) * (size_t)m->cols;
    for (int64_t g = 0; g < m->ngroups; g++) {
      int b = moesz_cl_width(m, r, g);
      for (int64_t i = 0; i < G && g * G + i < m->cols; i++) d[g * G + i] = (float)moesz_cl_code(p, b, (int)i) * m->step + m->half;
      p += 8 * b;
    }
    for (uint32_t e = m->esc_start[r]; e < m->esc_start[r + 1]; e++) d[m->esc_idx[e] - (size_t)r * (size_t)m->cols] = m->esc_val[e];
  }
}

void moesz_cl_decode(const moesz_cl *m, float *dst) { moesz_cl_decode_rows(m, 0, m->rows, dst); }
