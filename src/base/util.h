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
