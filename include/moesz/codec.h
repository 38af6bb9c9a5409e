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
const char *moesz_pipeline_name(moesz_pipeline p);
const char *moesz_eb_mode_name(moesz_eb_mode m);
#endif
