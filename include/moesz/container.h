/* moesz/container.h - the .msz container: one file holding a model's config
 * and tokenizer files, its dense tensors (a safetensors image, mmap-able in
 * place) and one blob per expert matrix, each stored raw, zstd-compressed or
 * with the error-bounded codec, with an xxHash64 checksum per blob and per
 * manifest. Owned by src/container. Format: docs/CONTAINER.md. */
#ifndef MOESZ_CONTAINER_H
#define MOESZ_CONTAINER_H
#include "moesz/base.h"
#include "moesz/tensor.h"
#include "moesz/model.h"
#include "moesz/resmoe.h"

#define MOESZ_MSZ_MAGIC "MOESZMSZ"   /* 8 bytes at offset 0 and in the trailer */
#define MOESZ_MSZ_VERSION 1
#define MOESZ_MSZ_VERSION_RESMOE 2   /* written when the container holds ResMoE layers */
#define MOESZ_MSZ_ALIGN 64           /* every blob starts at a multiple of this */

typedef enum moesz_msz_method {
  MOESZ_MSZ_RAW = 0,    /* the original bytes */
  MOESZ_MSZ_ZSTD,       /* zstd (lossless) of the original bytes */
  MOESZ_MSZ_CODEC,      /* moesz error-bounded codec stream (src/codec) */
  MOESZ_MSZ_COMPUTE,    /* the codec's compute layout (codec.h): kernels multiply from it;
                           the bound holds in F32, so it decodes to F32 only */
  MOESZ_MSZ_RESMOE      /* ResMoE: the layer's barycenter + this expert's residual blob (shared by its 3 matrices) */
} moesz_msz_method;

/* One stored blob: an expert matrix, the dense-tensor image, or a file. */
typedef struct moesz_msz_rec {
  const char *name;        /* tensor name, or "@dense" / "@file:<name>" */
  moesz_dtype dtype;       /* original dtype of the tensor */
  int ndim;
  int64_t shape[MOESZ_MAX_DIMS];
  size_t raw_bytes;        /* numel * dtype size */
  moesz_msz_method method;
  uint64_t off, len;       /* byte range in the file, off % MOESZ_MSZ_ALIGN == 0 */
  uint64_t xxh64;          /* of the stored bytes [off, off + len) */
  double eb;               /* absolute error bound used (codec), 0 if lossless */
  int layer, expert;       /* expert matrices: layer, expert index (-1 otherwise) */
  int shared;              /* 1 for a shared expert matrix */
  moesz_mat mat;           /* gate / up / down for expert matrices */
} moesz_msz_rec;

typedef struct moesz_msz moesz_msz;

/* Opens and validates a container: header (flags and reserved bytes zero),
 * manifest checksum and structure, every record's range, shape and view,
 * every routed expert matrix the config implies present exactly once with
 * its implied shape, every source tensor covered exactly once, and codec /
 * zstd stream headers agreeing with their records (docs/CONTAINER.md
 * "Checks"). Blob checksums are checked when a blob is read. */
int moesz_msz_open(const char *path, moesz_msz **out, moesz_error *err);
/* A part container (written by moesz_msz_write with opts.part: the experts
 * of a range of layers only, docs/CONTAINER.md "Parts") is refused by
 * moesz_msz_open and moesz_msz_open_mem (it cannot be served); this opens
 * either, a part validated over its own layers. */
int moesz_msz_open_part(const char *path, moesz_msz **out, moesz_error *err);
/* Same over a caller-owned buffer that must outlive the handle. */
int moesz_msz_open_part_mem(const void *data, size_t len, moesz_msz **out, moesz_error *err);
/* 1 and the part's layer range [first, last] if c is a part, else 0. */
int moesz_msz_part(const moesz_msz *c, int *first, int *last);
/* Joins part containers (any order) into one container at out (temporary
 * file + rename), byte for byte the container one run over all layers
 * writes: the parts must hold the same files, dense image and sources, and
 * disjoint layer ranges whose experts cover every MoE layer. The result is
 * validated as moesz_msz_open does before it is renamed into place. */
int moesz_msz_merge(const char *const *parts, int n, const char *out, moesz_error *err);
/* Same over a caller-owned buffer that must outlive the handle. */
int moesz_msz_open_mem(const void *data, size_t len, moesz_msz **out, moesz_error *err);
void moesz_msz_close(moesz_msz *c);
size_t moesz_msz_count(const moesz_msz *c);
const moesz_msz_rec *moesz_msz_at(const moesz_msz *c, size_t i);
const moesz_msz_rec *moesz_msz_find(const moesz_msz *c, const char *name);
/* Expert matrix record (shared = 0 routed, 1 shared), NULL if absent. */
const moesz_msz_rec *moesz_msz_expert(const moesz_msz *c, int layer, int expert, int shared,
                                      moesz_mat mat);
/* The model's config (parsed) and its original config.json text. */
const moesz_config *moesz_msz_config(const moesz_msz *c);
/* An embedded file (config.json, tokenizer.json, ...) checked against its
 * checksum; NULL + MOESZ_E_NOTFOUND if absent. */
int moesz_msz_file(const moesz_msz *c, const char *name, const void **data, size_t *len,
                   moesz_error *err);
size_t moesz_msz_file_count(const moesz_msz *c);
const char *moesz_msz_file_name(const moesz_msz *c, size_t i);
/* The dense tensors (everything that is not a routed/shared expert matrix),
 * as a safetensors set whose data lies in the container's mapping. */
const moesz_st *moesz_msz_dense(const moesz_msz *c);
/* Decodes one blob into dst (rec->raw_bytes / dtype size elements of
 * out_dtype: F32, F16, BF16, or the original dtype). Verifies the checksum. */
int moesz_msz_read(const moesz_msz *c, const moesz_msz_rec *r, moesz_dtype out_dtype, void *dst,
                   moesz_error *err);
/* Checks len = r->len stored bytes of blob r (read by the caller, e.g. the
 * runtime's storage tier) against the record's checksum. */
int moesz_msz_verify(const moesz_msz_rec *r, const void *stored, moesz_error *err);
/* Decodes the stored bytes of blob r (r->len bytes, already verified with
 * moesz_msz_verify) into dst as moesz_msz_read does; moesz_msz_read is
 * moesz_msz_blob + moesz_msz_decode. */
int moesz_msz_decode(const moesz_msz *c, const moesz_msz_rec *r, const void *stored, moesz_dtype out_dtype,
                     void *dst, moesz_error *err);
/* The same through a codec context (codec.h: its threads decode a stream's
 * chunks in parallel, its buffers are reused); x = NULL: one thread. */
struct moesz_codec_ctx;
int moesz_msz_decode_ctx(const moesz_msz *c, const moesz_msz_rec *r, const void *stored, moesz_dtype out_dtype,
                         void *dst, struct moesz_codec_ctx *x, moesz_error *err);
/* The stored bytes of a blob (checksum-verified) without decoding. */
int moesz_msz_blob(const moesz_msz *c, const moesz_msz_rec *r, const void **data,
                   moesz_error *err);
uint64_t moesz_msz_file_size(const moesz_msz *c);
/* Writes a Hugging Face model folder (config, tokenizer files,
 * model.safetensors with the original names, shapes and dtypes) to dir. All
 * of it is written into a temporary folder beside dir and renamed to dir at
 * the end: a failure leaves dir as it was. An existing non-empty dir is
 * refused (MOESZ_E_ARG) unless force; with force it must be a model folder
 * and is replaced whole. A dir that holds the container's own file is
 * always refused. */
int moesz_msz_export(const moesz_msz *c, const char *dir, int force, int progress, moesz_error *err);

/* Source tensors: the checkpoint tensors the expert matrices were cut from
 * (one per expert matrix, or one stacked tensor per layer), as
 * moesz_msz_export writes them. moesz_msz_source fills out's name (valid
 * while c is open), dtype (the one export writes: the original, or F32 where
 * compute-layout blobs slice the tensor), ndim, shape, numel and nbytes;
 * data = NULL. moesz_msz_source_read decodes source tensor i, reassembled
 * from its blobs, into dst (numel values of out_dtype: F32, F16, BF16, the
 * original dtype, or MOESZ_DT_COUNT = the dtype moesz_msz_source reports). */
size_t moesz_msz_source_count(const moesz_msz *c);
int moesz_msz_source(const moesz_msz *c, size_t i, moesz_tensor *out, moesz_error *err);
int moesz_msz_source_read(const moesz_msz *c, size_t i, moesz_dtype out_dtype, void *dst, moesz_error *err);

/* ResMoE layers (docs/CONTAINER.md "ResMoE layers", src/container/msz_resmoe.c). */
typedef struct moesz_msz_resmoe_layer {
  int layer;
  moesz_residual_kind residual;
  int n, d, D;                 /* experts as n x D rows [gate | up | down^T], D = 3d */
  int E;                       /* experts */
  double keep;
  moesz_msz_rec bary;          /* codec stream of the barycenter B' [n, D] (F32) */
  moesz_msz_rec *res;          /* [E] residual blobs (method RESMOE, F32 [n, D]) */
  double *thr;                 /* [E] prune: largest |x - b'| left out (0 for SVD) */
  double *max_err;             /* [E] worst |w' - x| measured by the writer (F32, aligned rows) */
} moesz_msz_resmoe_layer;

/* Layer L's ResMoE record, NULL if the layer is stored plainly. */
const moesz_msz_resmoe_layer *moesz_msz_resmoe(const moesz_msz *c, int layer);
/* Restores expert e of ResMoE layer L as W' = B' + R' [n, D] F32, rows in the
 * barycenter's order (checksums verified; B' decoded on every call). */
int moesz_msz_resmoe_expert(const moesz_msz *c, int layer, int expert, float *X, moesz_error *err);
/* Copies matrix mat of a restored expert X [n, 3d] into dst as dtype
 * (F32 / F16 / BF16): gate, up [n, d]; down [d, n]. */
int moesz_msz_resmoe_split(const float *X, int n, int d, moesz_mat mat, moesz_dtype dtype, void *dst, moesz_error *err);

/* ------------------------------------------------------------- writing */

/* A per-tensor bound (compress --tensor-eb): expert matrices whose record
 * name ("<source tensor>#<expert>.<gate|up|down>") the PCRE2 pattern finds
 * (unanchored search) take eb: > 0 a bound (in the run's eb_mode), < 0
 * lossless (zstd). The first matching rule wins; rules override layer_eb. */
typedef struct moesz_msz_tensor_eb {
  const char *regex;
  double eb;
} moesz_msz_tensor_eb;

typedef struct moesz_msz_opts {
  moesz_msz_method method;  /* for expert matrices; dense tensors are stored raw */
  int eb_mode;              /* MOESZ_EB_ABS / REL / STD (codec.h) */
  double eb;                /* default bound */
  int pipeline;             /* codec pipeline (codec.h) */
  int threads;
  /* per-layer bound override: layer_eb[L] > 0 replaces eb for layer L; < 0 keeps layer L lossless */
  const double *layer_eb;   /* [n_layers] or NULL */
  int progress;             /* progress bar on stderr */
  /* ResMoE: resmoe_layers[L] != 0 stores MoE layer L as barycenter + residuals
   * (bound eb, or layer_eb[L] > 0); other layers as method says */
  const moesz_resmoe_opts *resmoe;
  const uint8_t *resmoe_layers;  /* [n_layers] or NULL */
  /* part: 1 writes only the experts of layers [part_first, part_last] (a
   * part container, joined with moesz_msz_merge); 0 writes every layer */
  int part, part_first, part_last;
  /* per-tensor bounds; a rule that matches no written matrix is an error (MOESZ_E_ARG) */
  const moesz_msz_tensor_eb *tensor_eb;   /* [n_tensor_eb] or NULL */
  int n_tensor_eb;
  /* progress callback (optional; the Python package's progress=): called on
   * the writing thread after each expert matrix (a ResMoE layer: all its
   * matrices at once) with the matrices done and the total; a non-zero return
   * stops the write with MOESZ_E_ARG "cancelled", and nothing is written */
  int (*on_progress)(void *ctx, uint64_t done, uint64_t total);
  void *progress_ctx;
} moesz_msz_opts;

/* Per-run results of moesz_msz_write. */
typedef struct moesz_msz_summary {
  uint64_t expert_raw_bytes, expert_stored_bytes;
  uint64_t dense_bytes, file_bytes, total_bytes;
  uint64_t verbatim_values;    /* codec values stored verbatim (compute layouts: escaped) */
  uint64_t compute_matrices, compute_half_grid;   /* compute-layout blobs; those on the half grid */
  double max_err_over_bound;   /* worst |x' - x| / eb over codec blobs (0 if none) */
  int resmoe_layers;           /* layers stored as ResMoE */
  uint64_t resmoe_bary_bytes, resmoe_residual_bytes;   /* stored bytes of their barycenters / residuals */
  double resmoe_max_err;       /* worst |w' - x| over their experts (F32, before the dtype cast) */
  double seconds;
} moesz_msz_summary;

/* Sets o->pipeline and o->eb_mode from their names ("entropy"/"fast",
 * "abs"/"rel"/"std"); -1 if a name is unknown. */
int moesz_msz_codec_options(const char *pipeline, const char *eb_mode, moesz_msz_opts *o);

/* Writes m as a container at path (temporary file + rename). */
int moesz_msz_write(const moesz_model *m, const char *path, const moesz_msz_opts *o,
                    moesz_msz_summary *sum, moesz_error *err);

/* Streaming writer (what moesz_msz_write runs on): open, the embedded files
 * (config.json first), the expert sources (the original tensors the expert
 * matrices come from), the dense image once, then each expert matrix in
 * (layer, expert, gate/up/down) order, then commit, which writes the manifest
 * and header and renames the temporary file into place (abort removes it).
 * Each call copies or encodes what it is given, so the caller holds one
 * matrix at a time. n_mats sizes the progress bar (opts.progress). */
typedef struct moesz_msz_writer moesz_msz_writer;
typedef struct moesz_msz_expert_in {
  int layer, expert;
  moesz_mat mat;            /* GATE / UP / DOWN */
  const char *tensor;       /* source tensor (added with moesz_msz_writer_source) */
  moesz_dtype dtype;
  int64_t rows, cols;       /* logical matrix */
  const void *data;         /* [rows, cols] contiguous, of dtype */
  uint64_t view_off, view_ld;  /* where it sits in the source tensor (elements) */
  int view_t;               /* 1: stored transposed in the source */
} moesz_msz_expert_in;
int moesz_msz_writer_open(const char *path, const moesz_msz_opts *o, int n_mats, moesz_msz_writer **out,
                          moesz_error *err);
int moesz_msz_writer_file(moesz_msz_writer *w, const char *name, const void *data, size_t len, moesz_error *err);
int moesz_msz_writer_source(moesz_msz_writer *w, const char *name, moesz_dtype dtype, int ndim, const int64_t *shape,
                            moesz_error *err);
int moesz_msz_writer_dense(moesz_msz_writer *w, const moesz_stw *dense, moesz_error *err);
int moesz_msz_writer_expert(moesz_msz_writer *w, const moesz_msz_expert_in *in, moesz_error *err);
/* Frees w either way; fills sum on success. */
int moesz_msz_writer_commit(moesz_msz_writer *w, moesz_msz_summary *sum, moesz_error *err);
void moesz_msz_writer_abort(moesz_msz_writer *w);   /* frees w, writes nothing; NULL is a no-op */
/* Writes the checkpoint moesz_synth_write would (same options, same seed)
 * straight into a container at path, streaming (one expert matrix generated
 * while the previous one is encoded): byte for byte the container that
 * moesz_msz_write writes from that folder with the same o. Parts and ResMoE
 * need the folder (MOESZ_E_ARG). */
int moesz_msz_synth_write(const moesz_synth_opts *so, const char *path, const moesz_msz_opts *o,
                          moesz_msz_summary *sum, moesz_error *err);
#endif
