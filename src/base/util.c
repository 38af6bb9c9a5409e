/* base/util.c - clocks, file helpers, atomic output files, progress. */
#include "base/util.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double moesz_time_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int moesz_file_read_all(const char *path, size_t max, char **out, size_t *len,
                        moesz_error *err) {
  *out = NULL;
  if (len) *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f)
    return moesz_error_set(err, errno == ENOENT ? MOESZ_E_NOTFOUND : MOESZ_E_IO,
                           "%s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    return moesz_error_set(err, MOESZ_E_IO, "%s: not a regular file", path);
  }
  if ((unsigned long long)st.st_size > (unsigned long long)max) {
    fclose(f);
    return moesz_error_set(err, MOESZ_E_FORMAT, "%s: %lld bytes, more than the %zu allowed",
                           path, (long long)st.st_size, max);
  }
  size_t n = (size_t)st.st_size;
  char *buf = malloc(n + 1);
  if (!buf) {
    fclose(f);
    return moesz_error_set(err, MOESZ_E_NOMEM, "%s: cannot allocate %zu bytes", path, n + 1);
  }
  if (fread(buf, 1, n, f) != n) {
    free(buf);
    fclose(f);
    return moesz_error_set(err, MOESZ_E_IO, "%s: short read", path);
  }
  fclose(f);
  buf[n] = 0;
  *out = buf;
  if (len) *len = n;
  return MOESZ_OK;
}

int moesz_path_join(char *out, size_t cap, const char *dir, const char *name) {
  size_t dl = strlen(dir);
  int sep = dl > 0 && dir[dl - 1] != '/';
  int n = snprintf(out, cap, "%s%s%s", dir, sep ? "/" : "", name);
  if (n < 0 || (size_t)n >= cap) return MOESZ_E_ARG;
  return MOESZ_OK;
}

int moesz_path_is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int moesz_afile_open(moesz_afile *a, const char *path, moesz_error *err) {
  memset(a, 0, sizeof *a);
  if (snprintf(a->path, sizeof a->path, "%s", path) >= (int)sizeof a->path ||
      snprintf(a->tmp, sizeof a->tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof a->tmp)
    return moesz_error_set(err, MOESZ_E_ARG, "%s: path too long", path);
  a->f = fopen(a->tmp, "wb");
  if (!a->f) return moesz_error_set(err, MOESZ_E_IO, "%s: %s", a->tmp, strerror(errno));
  return MOESZ_OK;
}

int moesz_afile_write(moesz_afile *a, const void *buf, size_t n, moesz_error *err) {
  if (n && fwrite(buf, 1, n, a->f) != n)
    return moesz_error_set(err, MOESZ_E_IO, "%s: write failed: %s", a->tmp, strerror(errno));
  return MOESZ_OK;
}

int moesz_afile_commit(moesz_afile *a, moesz_error *err) {
  int ok = fflush(a->f) == 0 && fsync(fileno(a->f)) == 0;
  int saved = errno;
  ok = (fclose(a->f) == 0) && ok;
  a->f = NULL;
  if (!ok) {
    unlink(a->tmp);
    return moesz_error_set(err, MOESZ_E_IO, "%s: %s", a->tmp, strerror(saved ? saved : errno));
  }
  if (rename(a->tmp, a->path) != 0) {
    saved = errno;
    unlink(a->tmp);
    return moesz_error_set(err, MOESZ_E_IO, "rename %s -> %s: %s", a->tmp, a->path, strerror(saved));
  }
  return MOESZ_OK;
}

void moesz_afile_abort(moesz_afile *a) {
  if (a->f) fclose(a->f);
  a->f = NULL;
  if (a->tmp[0]) unlink(a->tmp);
}

void moesz_progress_begin(moesz_progress *p, const char *label, double total, int enabled) {
  p->label = label;
  p->total = total > 0 ? total : 1;
  p->done = 0;
  p->t0 = p->last = moesz_time_now();
  p->enabled = enabled;
}

void moesz_progress_step(moesz_progress *p, double done) {
  p->done = done;
  if (!p->enabled) return;
  double now = moesz_time_now();
  if (now - p->last < 0.25 && done < p->total) return;
  p->last = now;
  double el = now - p->t0, frac = done / p->total;
  double eta = frac > 0 ? el * (1 - frac) / frac : 0;
  fprintf(stderr, "\r%s %5.1f%%  %.1f s, ETA %.0f s   ", p->label, 100.0 * frac, el, eta);
  fflush(stderr);
}

void moesz_progress_end(moesz_progress *p) {
  if (!p->enabled) return;
  fprintf(stderr, "\r%s 100.0%%  %.1f s            \n", p->label, moesz_time_now() - p->t0);
}

void moesz_buf_put(moesz_buf *b, const void *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->n + n + 1) nc *= 2;
    char *q = realloc(b->p, nc);
    if (!q) { b->oom = 1; return; }
    b->p = q;
    b->cap = nc;
  }
  if (n) memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}
