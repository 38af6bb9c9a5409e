/* base/util.h - internal helpers shared by all modules: clocks, whole-file
 * reads with a size cap, atomic output files (temporary + rename), progress
 * reporting on stderr, checked size arithmetic. Owned by src/base. */
#ifndef MOESZ_BASE_UTIL_H
#define MOESZ_BASE_UTIL_H
#include <stdio.h>
#include "moesz/base.h"

/* Monotonic seconds. */
double moesz_time_now(void);

/* Reads a whole file (NUL-terminated copy) refusing files above max bytes. */
int moesz_file_read_all(const char *path, size_t max, char **out, size_t *len,
                        moesz_error *err);
/* Joins dir and name into out (cap bytes); MOESZ_E_ARG if it does not fit. */
int moesz_path_join(char *out, size_t cap, const char *dir, const char *name);
/* 1 if path names an existing directory. */
int moesz_path_is_dir(const char *path);

/* An output file written to PATH.tmp.<pid> and renamed over PATH on commit,
 * so a failure never leaves a corrupt PATH. */
typedef struct moesz_afile {
  FILE *f;
  char tmp[4096];
  char path[4096];
} moesz_afile;
int moesz_afile_open(moesz_afile *a, const char *path, moesz_error *err);
int moesz_afile_write(moesz_afile *a, const void *buf, size_t n, moesz_error *err);
/* Flushes, fsyncs, closes and renames. On failure the temporary is removed. */
int moesz_afile_commit(moesz_afile *a, moesz_error *err);
void moesz_afile_abort(moesz_afile *a);

/* The temporary name of an output: "<path>.tmp.<pid>" (afile and adir use it;
 * the CLI removes it on SIGINT/SIGTERM). MOESZ_E_ARG if it does not fit. */
int moesz_tmp_path(char *out, size_t cap, const char *path, long pid);

/* 1 if a and b name the same file: the same device and inode when both
 * exist, or the same resolved path (links followed; for a path that does not
 * exist, its folder resolved plus its last name). */
int moesz_path_same(const char *a, const char *b);
/* 1 if the existing path is folder dir itself or lies anywhere below it
 * (both resolved). */
int moesz_path_inside(const char *path, const char *dir);
/* Refuses (MOESZ_E_ARG, before anything is written) an output that would
 * damage an input: out names the same file as inputs[i], or, for an output
 * folder (out_is_dir; it may be replaced whole), inputs[i] lies inside it.
 * what names the output in the message ("output", "--report"). */
int moesz_output_check(const char *out, int out_is_dir, const char *const *inputs, size_t n,
                       const char *what, moesz_error *err);
/* The same against the input files of a model folder: every *.json and
 * *.safetensors file in model_dir (config, tokenizer files, index, shards). */
int moesz_output_check_model(const char *out, int out_is_dir, const char *model_dir, const char *what,
                             moesz_error *err);

/* An output folder: everything is written into "<path>.tmp.<pid>" beside
 * the target (same filesystem) and renamed to path on commit, so a failure
 * never leaves a half-written or mixed folder. An existing non-empty target
 * is refused unless force; with force it must be a model folder (it holds a
 * config.json) and is swapped with the new one in one rename
 * (RENAME_EXCHANGE), after which the old contents are deleted. */
typedef struct moesz_adir {
  char tmp[4096];   /* write here */
  char path[4096];  /* the target */
  int force;
} moesz_adir;
int moesz_adir_open(moesz_adir *d, const char *path, int force, moesz_error *err);
int moesz_adir_commit(moesz_adir *d, moesz_error *err);
/* Removes the temporary folder and everything in it. */
void moesz_adir_abort(moesz_adir *d);
/* Removes path and, for a folder, everything below it (links not followed);
 * 0 on success or if path does not exist. */
int moesz_path_remove_tree(const char *path);

/* Progress line on stderr ("label  42%  12.3 s, ETA 17 s"), at most every
 * 0.25 s, only when enabled (the CLI enables it when stderr is a tty or
 * --progress is given). */
typedef struct moesz_progress {
  const char *label;
  double total, done;
  double t0, last;
  int enabled;
} moesz_progress;
void moesz_progress_begin(moesz_progress *p, const char *label, double total, int enabled);
void moesz_progress_step(moesz_progress *p, double done);
void moesz_progress_end(moesz_progress *p);

/* A growable byte buffer, always NUL-terminated; oom is set (and further
 * appends ignored) when an allocation fails. */
typedef struct moesz_buf { char *p; size_t n, cap; int oom; } moesz_buf;
void moesz_buf_put(moesz_buf *b, const void *s, size_t n);

/* Checked arithmetic: return 0 on overflow. */
static inline int moesz_mul_ok(size_t a, size_t b, size_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}
static inline int moesz_add_ok(size_t a, size_t b, size_t *out) {
  return !__builtin_add_overflow(a, b, out);
}
/* A stored checksum matches the computed one. libFuzzer builds (which define
 * FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION) accept any, so the fuzzer reaches
 * the decoders behind the checksums; every other build verifies. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define MOESZ_CHECKSUM_OK(computed, stored) ((void)(computed), (void)(stored), 1)
#else
#define MOESZ_CHECKSUM_OK(computed, stored) ((computed) == (stored))
#endif

#endif
