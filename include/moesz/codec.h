/* moesz/codec.h - the error-bounded codec for weight arrays (src/codec).
 *
 * Every delivered value is within an absolute bound eb of the original, in
 * the delivered dtype: q = round(x / (2 eb)), x' = 2 eb q (computed in double,
 * bit for bit the same in encoder and decoder), and any value for which the
 * delivered x' would miss the bound - or that is NaN, +-Inf, -0, or whose |q|
 * is out of range - is stored verbatim (its original bits). Two pipelines
 * share the quantizer: `entropy` (canonical Huffman, four interleaved streams,
 * table-driven decoding, raw fallback per chunk) and `fast` (blocks of 32
 * codes at a per-block bit width). The stream is a header, a chunk index and
 * independent chunks, each with an XXH3 checksum, so chunks decode in parallel
 * or alone. No global state: calls are thread-safe. Format: docs/CODEC.md. */
#ifndef MOESZ_CODEC_H
#define MOESZ_CODEC_H
#include "moesz/base.h"
#include "moesz/tensor.h"

typedef enum moesz_eb_mode {
  MOESZ_EB_ABS = 0,   /* bound as given */
  MOESZ_EB_REL = 1,   /* bound x (max - min) of the finite values (SZ3's REL) */
  MOESZ_EB_STD = 2    /* bound x standard deviation of the finite values */
} moesz_eb_mode;

typedef enum moesz_pipeline {
  MOESZ_PIPE_ENTROPY = 0,
  MOESZ_PIPE_FAST = 1
} moesz_pipeline;

typedef struct moesz_codec_params {
  moesz_eb_mode mode;
  double eb;                /* >= 0; 0 = lossless */
  moesz_pipeline pipeline;
  moesz_dtype out_dtype;    /* dtype the bound is guaranteed in (F32/F16/BF16); MOESZ_DT_COUNT = input's */
  int threads;              /* <= 0: 1 */
  size_t chunk;             /* values per chunk; 0 = 65536 */
} moesz_codec_params;

typedef struct moesz_codec_info {
  moesz_dtype in_dtype;     /* dtype of the original values */
  moesz_dtype out_dtype;    /* dtype the bound holds in (also F32) */
  moesz_pipeline pipeline;
  size_t count;             /* values */
  double eb;                /* absolute bound used */
  size_t chunk, nchunks;
  uint64_t verbatim;        /* values stored verbatim */
  size_t stream_bytes;      /* total stream size */
} moesz_codec_info;

/* Largest stream moesz_codec_compress can produce for n values of dtype. */
size_t moesz_codec_bound(size_t n, moesz_dtype dtype);
/* Compresses n values (F32, F16 or BF16) into a malloc'd stream (*out, *out_len).
 * MOESZ_E_RANGE when out_dtype is a 16-bit dtype other than the input's and
 * some finite value has no out_dtype value within the bound (the bound could
 * not be kept for it). */
int moesz_codec_compress(const void *src, moesz_dtype dtype, size_t n, const moesz_codec_params *p,
                         void **out, size_t *out_len, moesz_codec_info *info, moesz_error *err);
/* Validates the header and index and fills info (no payload is decoded). */
int moesz_codec_info_read(const void *stream, size_t len, moesz_codec_info *info, moesz_error *err);
/* Decodes all n values into dst as dtype (F32, F16 or BF16). The bound holds
 * for dtype == info.out_dtype and for F32. Checksums are verified. */
int moesz_codec_decompress(const void *stream, size_t len, moesz_dtype dtype, void *dst, size_t n,
                           int threads, moesz_error *err);
/* Decodes chunk i alone into dst (room for cap values); *n_out = values written. */
int moesz_codec_decompress_chunk(const void *stream, size_t len, size_t i, moesz_dtype dtype, void *dst,
                                 size_t cap, size_t *n_out, moesz_error *err);
/* ------------------------------------------------------- compute layout
 *
 * A matrix [rows, cols] stored so that kernels multiply from it directly
 * (src/infer/kernels_cl.c): per row, groups of 64 integer codes q in two's
 * complement at a width of 0..15 bits chosen per group, plus a per-row list of
 * escapes (column, f32 weight) for values whose code does not fit the group's
 * width or that are not finite. Weight (r, c) is q * step evaluated in f32
 * (the zero grid), or q * step + step / 2 (the half grid: levels at odd
 * multiples of eb', symmetric about 0, so a b-bit group covers +-2^(b-1) steps
 * where the zero grid covers -2^(b-1) - 1/2 .. 2^(b-1) - 1/2), either exact:
 * step = 2 eb' has at most 10 significant bits and |q| < 2^14 (|2q + 1| < 2^14
 * on the half grid), so the value has at most 24; the encoder checks
 * |weight - x| <= eb' <= eb for every coded value and escapes keep x itself.
 * The bound therefore holds in F32 (not after rounding to BF16/F16). The
 * encoder takes the half grid where it saves at least 0.5% of the bits
 * (moesz_cl_encode_ex forces either). Format: docs/CODEC.md. */
#define MOESZ_CL_GROUP 64
#define MOESZ_CL_MAXW 15

typedef struct moesz_cl {
  int64_t rows, cols;        /* logical shape [rows, cols]; cols <= 65536 */
  int64_t ngroups;           /* groups per row: ceil(cols / 64) (the last one zero-padded) */
  int64_t wstride;           /* bytes of widths per row: ceil(ngroups / 2) */
  float step;                /* weight = q * step + half (step = 2 eb') */
  float half;                /* 0 (zero grid) or step / 2 (half grid) */
  double eb;                 /* eb': the bound every weight keeps (<= the requested bound) */
  uint64_t n_esc;            /* escapes */
  size_t data_bytes;         /* packed codes (without the 16 bytes of padding) */
  const uint8_t *widths;     /* [rows, wstride] group widths, low nibble = even group */
  const uint32_t *esc_idx;   /* [n_esc] r * cols + c of each escape, ascending */
  const float *esc_val;      /* [n_esc] the escaped weight (the original value); the
                                kernels add (esc_val - half) x, half x being in every column's share */
  const uint8_t *data;       /* [data_bytes + 16] groups of 8 * width bytes, row after row */
  uint32_t *row_off;         /* [rows + 1] byte offset of row r's codes in data (derived, owned) */
  uint32_t *esc_start;       /* [rows + 1] index of row r's first escape (derived, in row_off's block) */
  uint8_t *usual;            /* [rows] low 4 bits: the width both groups of at least 7 in 8 of row r's
                                full width bytes have, its first byte's, or 0: the kernels take such
                                rows with that width's constant tables; MOESZ_CL_MOSTLY2: at least half
                                of those bytes are two 2-bit groups, or the row's one group is 2 bits
                                wide (derived, in row_off's block) */
} moesz_cl;
#define MOESZ_CL_MOSTLY2 0x10 /* moesz_cl.usual: a row mostly of 2-bit groups */

typedef struct moesz_cl_info {
  uint64_t values, escapes;
  uint64_t groups_by_width[MOESZ_CL_MAXW + 1];
  double eb;                 /* eb' used */
  int half;                  /* 1: the half grid was used */
  size_t bytes;              /* serialized size */
  double bits_per_value;     /* 8 * bytes / values */
} moesz_cl_info;

/* Code i of a group of width b whose bytes start at p (two's complement; 0
 * for b = 0). Reads up to 3 bytes from the code's first byte (the data's
 * padding covers the last group). */
static inline int moesz_cl_code(const uint8_t *p, int b, int i) {
  if (!b) return 0;
  size_t bit = (size_t)i * (size_t)b;
  uint32_t w = (uint32_t)p[bit >> 3] | (uint32_t)p[(bit >> 3) + 1] << 8 | (uint32_t)p[(bit >> 3) + 2] << 16;
  uint32_t u = (w >> (bit & 7)) & ((1u << b) - 1);
  return (int)(u ^ (1u << (b - 1))) - (1 << (b - 1));
}
/* Width of group g of row r. */
static inline int moesz_cl_width(const moesz_cl *m, int64_t r, int64_t g) {
  return (m->widths[r * m->wstride + (g >> 1)] >> ((g & 1) * 4)) & 15;
}
/* Encodes src [rows, cols] (F32, F16 or BF16, row-major) at bound eb (mode as
 * the codec's; eb > 0) on `threads` threads (<= 0: 1) into a buffer
 * (*out, *out_len; free() it), 64-byte aligned sections. info may be NULL. */
int moesz_cl_encode(const void *src, moesz_dtype dtype, int64_t rows, int64_t cols, moesz_eb_mode mode, double eb,
                    int threads, void **out, size_t *out_len, moesz_cl_info *info, moesz_error *err);
/* As moesz_cl_encode with the grid chosen: MOESZ_CL_GRID_AUTO (the half grid
 * where it saves at least 0.5% of the bits; moesz_cl_encode's choice), _ZERO
 * or _HALF. */
enum { MOESZ_CL_GRID_AUTO = 0, MOESZ_CL_GRID_ZERO = 1, MOESZ_CL_GRID_HALF = 2 };
int moesz_cl_encode_ex(const void *src, moesz_dtype dtype, int64_t rows, int64_t cols, moesz_eb_mode mode, double eb,
                       int grid, int threads, void **out, size_t *out_len, moesz_cl_info *info, moesz_error *err);
/* Validates a serialized layout (every width, count and escape) and fills m
 * with pointers into buf, which must be 4-byte aligned and outlive m, plus
 * the row offsets, escape starts and usual widths it derives (9 bytes a row,
 * freed by moesz_cl_free). */
int moesz_cl_parse(const void *buf, size_t len, moesz_cl *m, moesz_error *err);
/* As moesz_cl_parse; flags MOESZ_CL_VERIFIED skips the layout's own checksum
 * when the caller has just verified the same bytes (a container blob's
 * checksum); every width, count and escape is still checked. */
#define MOESZ_CL_VERIFIED 1u
int moesz_cl_parse_ex(const void *buf, size_t len, unsigned flags, moesz_cl *m, moesz_error *err);
void moesz_cl_free(moesz_cl *m);
/* The header alone (magic, version, fields, the length it implies; no checksum,
 * no per-row checks): fills m's shape, step, eb and counts, nothing to free. */
int moesz_cl_header(const void *buf, size_t len, moesz_cl *m, moesz_error *err);
/* Bytes moesz_cl_parse allocates for a layout of this many rows. */
size_t moesz_cl_parse_bytes(int64_t rows);
/* Every weight of a parsed layout as f32 into dst [rows * cols]. */
void moesz_cl_decode(const moesz_cl *m, float *dst);
/* Rows r0..r1 as f32 into dst [r1 - r0, cols]. */
void moesz_cl_decode_rows(const moesz_cl *m, int64_t r0, int64_t r1, float *dst);
/* 1 if buf starts like a serialized compute layout. */
int moesz_cl_is(const void *buf, size_t len);

/* A codec context, as zstd's CCtx/DCtx: the worker pool (threads), per-chunk
 * buffers and Huffman tables, created once and reused by every call, so
 * compressing or decoding thousands of matrices does not start threads or
 * fault in fresh buffers each time. One call at a time per context. The
 * plain calls above make a context per call. */
typedef struct moesz_codec_ctx moesz_codec_ctx;
int moesz_codec_ctx_create(int threads, moesz_codec_ctx **out, moesz_error *err);
void moesz_codec_ctx_free(moesz_codec_ctx *x);
/* moesz_codec_compress on x (p->threads is ignored: x's pool is used). */
int moesz_codec_compress_ctx(moesz_codec_ctx *x, const void *src, moesz_dtype dtype, size_t n,
                             const moesz_codec_params *p, void **out, size_t *out_len, moesz_codec_info *info,
                             moesz_error *err);
/* moesz_codec_decompress on x's threads. */
int moesz_codec_decompress_ctx(moesz_codec_ctx *x, const void *stream, size_t len, moesz_dtype dtype, void *dst,
                               size_t n, moesz_error *err);

const char *moesz_pipeline_name(moesz_pipeline p);
const char *moesz_eb_mode_name(moesz_eb_mode m);
#endif
