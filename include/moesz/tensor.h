/* moesz/tensor.h - dtypes and conversions (MXFP4 included), safetensors reading (mmap, single
 * file or sharded through model.safetensors.index.json) and atomic writing.
 * Owned by src/tensor. */
#ifndef MOESZ_TENSOR_H
#define MOESZ_TENSOR_H
#include "moesz/base.h"

typedef enum moesz_dtype {
  MOESZ_DT_F32 = 0, MOESZ_DT_F16, MOESZ_DT_BF16, MOESZ_DT_F8_E4M3,
  MOESZ_DT_I8, MOESZ_DT_U8, MOESZ_DT_I16, MOESZ_DT_I32, MOESZ_DT_I64,
  MOESZ_DT_F64, MOESZ_DT_BOOL,
  MOESZ_DT_COUNT
} moesz_dtype;

size_t moesz_dtype_size(moesz_dtype t);            /* bytes per element */
const char *moesz_dtype_name(moesz_dtype t);       /* safetensors spelling: "BF16" */
int moesz_dtype_parse(const char *s, moesz_dtype *out); /* MOESZ_E_UNSUPPORTED if unknown */
int moesz_dtype_is_float(moesz_dtype t);           /* F32, F16, BF16, F8_E4M3, F64 */

/* Exact conversions; f32 -> 16-bit rounds to nearest even, NaN stays NaN. */
float moesz_bf16_to_f32(uint16_t h);
uint16_t moesz_f32_to_bf16(float f);
float moesz_f16_to_f32(uint16_t h);
uint16_t moesz_f32_to_f16(float f);
float moesz_f8e4m3_to_f32(uint8_t b);
/* Bulk conversions (vectorised where the CPU allows). */
void moesz_bf16_to_f32_n(const uint16_t *src, float *dst, size_t n);
void moesz_f32_to_bf16_n(const float *src, uint16_t *dst, size_t n);
void moesz_f16_to_f32_n(const uint16_t *src, float *dst, size_t n);
void moesz_f32_to_f16_n(const float *src, uint16_t *dst, size_t n);
/* Any float dtype (F32/F16/BF16/F8_E4M3/F64) or integer dtype to f32. */
int moesz_to_f32(moesz_dtype t, const void *src, float *dst, size_t n);
/* f32 to F32/F16/BF16. */
int moesz_from_f32(moesz_dtype t, const float *src, void *dst, size_t n);

/* MXFP4 (OCP microscaling, as gpt-oss publishes its experts; src/tensor/mxfp4.c):
 * groups of 32 e2m1 values in 16 bytes (element 2i in the low nibble of byte
 * i, 2i+1 in the high one) with one e8m0 scale byte each, value = e2m1 *
 * 2^(scale - 127). Dequantisation is exact in F32 and BF16; quantisation
 * picks scale 2^(floor(log2 max|x|) - 2) and the nearest e2m1 value. */
float moesz_e2m1_to_f32(uint8_t nibble);
void moesz_mxfp4_to_f32(const uint8_t *blocks, const uint8_t *scales, size_t ngroups, float *dst);
void moesz_mxfp4_to_bf16(const uint8_t *blocks, const uint8_t *scales, size_t ngroups, uint16_t *dst);
void moesz_mxfp4_from_f32(const float *src, size_t ngroups, uint8_t *blocks, uint8_t *scales);

#define MOESZ_MAX_DIMS 8

/* One tensor of an open checkpoint. data points into a read-only mapping
 * that lives as long as the moesz_st it came from. */
typedef struct moesz_tensor {
  const char *name;
  moesz_dtype dtype;
  int ndim;
  int64_t shape[MOESZ_MAX_DIMS];
  size_t numel;
  size_t nbytes;
  const void *data;
  int shard;              /* index of the file it lives in */
} moesz_tensor;

/* A set of safetensors files opened together (one checkpoint). */
typedef struct moesz_st moesz_st;

#define MOESZ_ST_MAX_HEADER (100u * 1000u * 1000u) /* spec limit: 100 MB */

/* Opens one .safetensors file. */
int moesz_st_open_file(const char *path, moesz_st **out, moesz_error *err);
/* Opens a model folder: model.safetensors.index.json (sharded) if present,
 * else model.safetensors, else every *.safetensors in the folder. A path to a
 * file is opened as moesz_st_open_file. */
int moesz_st_open(const char *path, moesz_st **out, moesz_error *err);
void moesz_st_close(moesz_st *st);
size_t moesz_st_count(const moesz_st *st);
const moesz_tensor *moesz_st_at(const moesz_st *st, size_t i);    /* sorted by name */
const moesz_tensor *moesz_st_find(const moesz_st *st, const char *name); /* NULL if absent */
/* __metadata__ value of the first file that has key, or NULL. */
const char *moesz_st_meta(const moesz_st *st, const char *key);

/* Validates a safetensors header (the JSON after the 8-byte length) against a
 * data section of data_len bytes; used by the reader and the fuzz target.
 * On success returns the tensors through out (free with moesz_st_close). */
int moesz_st_parse(const uint8_t *file, size_t file_len, moesz_st **out, moesz_error *err);

/* Writer: add tensors (data referenced, not copied, until commit), optional
 * metadata, then commit writes PATH atomically (temporary file + rename). */
typedef struct moesz_stw moesz_stw;
int moesz_stw_create(const char *path, moesz_stw **out, moesz_error *err);
int moesz_stw_add(moesz_stw *w, const char *name, moesz_dtype dtype, int ndim,
                  const int64_t *shape, const void *data, moesz_error *err);
/* Same, but copies the data (for buffers the caller frees before commit). */
int moesz_stw_add_copy(moesz_stw *w, const char *name, moesz_dtype dtype, int ndim,
                       const int64_t *shape, const void *data, moesz_error *err);
int moesz_stw_meta(moesz_stw *w, const char *key, const char *value, moesz_error *err);
int moesz_stw_commit(moesz_stw *w, moesz_error *err); /* frees w either way */
void moesz_stw_abort(moesz_stw *w);                     /* frees w, writes nothing */
/* Streams the file image (length, header, data) to sink instead of a path,
 * e.g. to embed a safetensors image in another file; w stays valid. */
typedef int (*moesz_stw_sink)(void *ctx, const void *buf, size_t n, moesz_error *err);
int moesz_stw_emit(const moesz_stw *w, moesz_stw_sink sink, void *ctx, moesz_error *err);
/* Bytes moesz_stw_emit will produce (0 on error). */
uint64_t moesz_stw_size(const moesz_stw *w, moesz_error *err);
/* Bytes of tensor data added so far (the image less its header). */
uint64_t moesz_stw_data_bytes(const moesz_stw *w);
#endif
