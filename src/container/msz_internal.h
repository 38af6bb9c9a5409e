/* container/msz_internal.h - private state of an open container, shared by
 * msz_read.c, msz_write.c and msz_codec.c. Owned by src/container. */
#ifndef MOESZ_MSZ_INTERNAL_H
#define MOESZ_MSZ_INTERNAL_H
#include "moesz/codec.h"
#include "moesz/container.h"

/* File header (64 bytes, little-endian):
 *  0 magic "MOESZMSZ" | 8 u32 version | 12 u32 flags | 16 u64 manifest_off |
 * 24 u64 manifest_len | 32 u64 XXH3-64 of the manifest | 40 u64 file size |
 * 48..63 zero */
#define MOESZ_MSZ_HEADER 64

typedef struct msz_src {      /* an original tensor that expert blobs slice */
  char *name;
  moesz_dtype dtype;
  int ndim;
  int64_t shape[MOESZ_MAX_DIMS];
  uint64_t numel;
} msz_src;

typedef struct msz_expert {
  moesz_msz_rec rec;          /* shape = logical [rows, cols] of the matrix */
  int tensor;                 /* index into src */
  uint64_t view_off;          /* element offset of (0, 0) in the source tensor */
  uint64_t view_ld;           /* stride between rows (cols if view_t) in elements */
  int view_t;                 /* 1: element (r, c) at view_off + c * ld + r */
} msz_expert;

struct moesz_msz {
  void *map;                  /* whole file, read-only */
  int owns_map;               /* 1: munmap on close (moesz_msz_open) */
  uint64_t size;
  uint64_t manifest_off;
  moesz_config cfg;
  moesz_msz_rec *files;       /* [nfiles] embedded files, config.json among them */
  size_t nfiles;
  moesz_msz_rec dense_rec;    /* the safetensors image of the dense tensors */
  moesz_st *dense;            /* parsed from the mapping */
  msz_src *src;               /* [nsrc] */
  size_t nsrc;
  msz_expert *ex;             /* [nex] */
  size_t nex;
  int32_t *lookup;            /* [n_layers][lookup_e][2 shared][3 mats] -> ex index or -1 */
  int lookup_e;
  uint32_t version;           /* header format version */
  moesz_msz_resmoe_layer *rm; /* [nrm] ResMoE layers (msz_resmoe.c) */
  size_t nrm;
  char *path;                 /* the file (moesz_msz_open), NULL in memory: export never writes over it */
  int allow_part;             /* set before parsing: a part container may open */
  int part, part_first, part_last;  /* a part: the experts of layers [first, last] only */
};

static inline size_t msz_slot(const moesz_msz *c, int layer, int expert, int shared, moesz_mat mat) {
  return (((size_t)layer * (size_t)c->lookup_e + (size_t)expert) * 2 + (size_t)shared) * 3 + (size_t)(mat - 1);
}

int moesz_msz_parse(moesz_msz *c, moesz_error *err);
int msz_build_lookup(moesz_msz *c, moesz_error *err);
/* Completeness checks after the manifest parsed (msz_check.c). */
int msz_check(const moesz_msz *c, moesz_error *err);
int msz_convert(moesz_dtype from, const void *src, moesz_dtype to, void *dst, size_t n, moesz_error *err);
/* Codec blobs (msz_codec.c). */
int msz_codec_decode(const moesz_msz_rec *r, const void *blob, moesz_dtype out, void *dst, size_t n,
                     moesz_codec_ctx *x, moesz_error *err);
/* Encodes n values of dtype into a malloc'd stream; reports bound and stats. */
int msz_codec_encode(moesz_codec_ctx *x, const void *src, moesz_dtype dtype, size_t n, const moesz_msz_opts *o, double eb,
                     void **blob, size_t *len, double *eb_abs, uint64_t *verbatim, double *max_err_ratio,
                     moesz_error *err);
/* Compute-layout blobs (msz_codec.c): encode [rows, cols] at the run's bound
 * (checked by decoding; *half: 1 if the encoder took the half grid), parse a
 * blob against its record, decode to F32. */
int msz_cl_encode(const void *src, moesz_dtype dtype, int64_t rows, int64_t cols, const moesz_msz_opts *o, double eb,
                  void **blob, size_t *len, double *eb_abs, uint64_t *escapes, double *max_err_ratio, int *half,
                  moesz_error *err);
struct moesz_cl;
int msz_cl_parse(const moesz_msz_rec *r, const void *blob, struct moesz_cl *m, moesz_error *err);
int msz_cl_decode(const moesz_msz_rec *r, const void *blob, moesz_dtype out, void *dst, moesz_error *err);
/* Parses a manifest record's common fields (msz_read.c). */
int msz_parse_rec(moesz_msz *c, const void *json, moesz_msz_rec *r, int need_shape, moesz_error *err);
/* ResMoE layers (msz_resmoe.c): the manifest's "resmoe" section, checked
 * against the expert records (after the lookup is built); decoding one
 * RESMOE record; freeing; writing one layer through put (msz_write.c). */
int msz_resmoe_parse(moesz_msz *c, const void *root_json, moesz_error *err);
int msz_resmoe_read(const moesz_msz *c, const moesz_msz_rec *r, moesz_dtype out, void *dst, moesz_error *err);
void msz_resmoe_free(moesz_msz *c);
typedef int (*msz_put_fn)(void *w, void *json_rec, const char *name, const char *method, const void *data, size_t len,
                          moesz_error *err);
int msz_resmoe_write_layer(const moesz_model *m, int layer, double eb, const moesz_msz_opts *o, msz_put_fn put, void *w,
                           void *experts_json, void *resmoe_json, moesz_msz_summary *s, moesz_error *err);
/* Per-tensor bound rules (msz_rules.c): compiled PCRE2 patterns of
 * opts.tensor_eb, with a hit count per rule. */
typedef struct msz_rules msz_rules;
int msz_rules_compile(const moesz_msz_opts *o, msz_rules **out, moesz_error *err);
/* The bound of the first rule that matches name (counted as a hit), or 0 if none does. */
double msz_rules_eb(msz_rules *r, const char *name);
/* MOESZ_E_ARG naming the first rule without a hit. */
int msz_rules_check_hits(const msz_rules *r, moesz_error *err);
void msz_rules_free(msz_rules *r);
/* Accessors for the expert blob behind a record (for the runtime and decompress). */
const msz_expert *msz_expert_of(const moesz_msz *c, const moesz_msz_rec *r);
#endif
