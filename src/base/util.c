/* base/util.c - clocks, file helpers, atomic output files and folders,
 * output-versus-input checks, progress. */
#include "base/util.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
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
      moesz_tmp_path(a->tmp, sizeof a->tmp, path, (long)getpid()))
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

int moesz_tmp_path(char *out, size_t cap, const char *path, long pid) {
  int n = snprintf(out, cap, "%s.tmp.%ld", path, pid);
  return n < 0 || (size_t)n >= cap ? MOESZ_E_ARG : MOESZ_OK;
}

/* path with links resolved into out[PATH_MAX]; a path that does not exist
 * resolves as its folder plus its last name. 0 if neither resolves. */
static int path_resolve(const char *path, char *out) {
  if (realpath(path, out)) return 1;
  char dir[PATH_MAX], res[PATH_MAX];
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/') n--;
  if (n == 0 || n >= sizeof dir) return 0;
  memcpy(dir, path, n);
  dir[n] = 0;
  char *slash = strrchr(dir, '/');
  const char *base = dir;
  const char *parent = ".";
  if (slash) {
    *slash = 0;
    base = slash + 1;
    parent = slash == dir ? "/" : dir;
  }
  if (!*base || !strcmp(base, ".") || !strcmp(base, "..") || !realpath(parent, res)) return 0;
  return snprintf(out, PATH_MAX, "%s%s%s", res, strcmp(res, "/") ? "/" : "", base) < PATH_MAX;
}

int moesz_path_same(const char *a, const char *b) {
  struct stat sa, sb;
  if (stat(a, &sa) == 0 && stat(b, &sb) == 0) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  char ra[PATH_MAX], rb[PATH_MAX];
  return path_resolve(a, ra) && path_resolve(b, rb) && !strcmp(ra, rb);
}

int moesz_path_inside(const char *path, const char *dir) {
  char rp[PATH_MAX], rd[PATH_MAX];
  if (!realpath(path, rp) || !realpath(dir, rd)) return 0;
  size_t n = strlen(rd);
  if (!strcmp(rd, "/")) return 1;
  return !strncmp(rp, rd, n) && (rp[n] == 0 || rp[n] == '/');
}

int moesz_output_check(const char *out, int out_is_dir, const char *const *inputs, size_t n,
                       const char *what, moesz_error *err) {
  for (size_t i = 0; i < n; i++) {
    if (moesz_path_same(out, inputs[i]))
      return moesz_error_set(err, MOESZ_E_ARG, "%s %s is the input file %s; writing it would destroy the input",
                             what, out, inputs[i]);
    if (out_is_dir && moesz_path_inside(inputs[i], out))
      return moesz_error_set(err, MOESZ_E_ARG, "%s folder %s holds the input %s; writing it would destroy the input",
                             what, out, inputs[i]);
  }
  return MOESZ_OK;
}

static int ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

int moesz_output_check_model(const char *out, int out_is_dir, const char *model_dir, const char *what,
                             moesz_error *err) {
  if (out_is_dir && moesz_path_inside(model_dir, out))
    return moesz_error_set(err, MOESZ_E_ARG, "%s folder %s holds the input model %s; writing it would destroy the input",
                           what, out, model_dir);
  DIR *d = opendir(model_dir);
  if (!d) return MOESZ_OK;   /* not a folder: nothing on disk to protect */
  int rc = MOESZ_OK;
  for (struct dirent *e; !rc && (e = readdir(d));) {
    if (!ends_with(e->d_name, ".json") && !ends_with(e->d_name, ".safetensors")) continue;
    char p[4096];
    if (moesz_path_join(p, sizeof p, model_dir, e->d_name)) continue;
    const char *in = p;
    rc = moesz_output_check(out, out_is_dir, &in, 1, what, err);
  }
  closedir(d);
  return rc;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb; (void)flag; (void)ftw;
  return remove(p) != 0 && errno != ENOENT ? -1 : 0;
}

int moesz_path_remove_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
  if (!S_ISDIR(st.st_mode)) return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
  return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

/* 1 if dir has an entry other than . and .., 0 if empty, -1 if unreadable. */
static int dir_nonempty(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int any = 0;
  for (struct dirent *e; !any && (e = readdir(d));) any = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
  closedir(d);
  return any;
}

int moesz_adir_open(moesz_adir *d, const char *path, int force, moesz_error *err) {
  memset(d, 0, sizeof *d);
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/') n--;
  if (n == 0 || n >= sizeof d->path) return moesz_error_set(err, MOESZ_E_ARG, "output folder '%s': bad path", path);
  memcpy(d->path, path, n);
  d->path[n] = 0;
  d->force = force;
  const char *base = strrchr(d->path, '/');
  base = base ? base + 1 : d->path;
  if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
    return moesz_error_set(err, MOESZ_E_ARG, "output folder '%s': name a folder (not '.', '..' or '/')", path);
  struct stat st;
  if (lstat(d->path, &st) == 0) {
    if (S_ISLNK(st.st_mode))
      return moesz_error_set(err, MOESZ_E_ARG, "output folder %s is a symbolic link; give the folder itself", d->path);
    if (!S_ISDIR(st.st_mode))
      return moesz_error_set(err, MOESZ_E_ARG, "output %s exists and is not a folder", d->path);
    int ne = dir_nonempty(d->path);
    if (ne < 0) return moesz_error_set(err, MOESZ_E_IO, "%s: %s", d->path, strerror(errno));
    if (ne && !force)
      return moesz_error_set(err, MOESZ_E_ARG, "output folder %s exists and is not empty (--force replaces it)",
                             d->path);
    char cfg[4096];
    if (ne && (moesz_path_join(cfg, sizeof cfg, d->path, "config.json") || access(cfg, F_OK) != 0))
      return moesz_error_set(err, MOESZ_E_ARG, "output folder %s is not a model folder (no config.json); "
                             "not replacing it", d->path);
  } else if (errno != ENOENT) {
    return moesz_error_set(err, MOESZ_E_IO, "%s: %s", d->path, strerror(errno));
  }
  if (moesz_tmp_path(d->tmp, sizeof d->tmp, d->path, (long)getpid()))
    return moesz_error_set(err, MOESZ_E_ARG, "%s: path too long", d->path);
  moesz_path_remove_tree(d->tmp);   /* a leftover of this very pid */
  if (mkdir(d->tmp, 0755) != 0) {
    int e = errno;
    d->tmp[0] = 0;
    return moesz_error_set(err, MOESZ_E_IO, "cannot create the output folder %s.tmp.*: %s", d->path, strerror(e));
  }
  return MOESZ_OK;
}

static void fsync_path(const char *p) {
  int fd = open(p, O_RDONLY | O_DIRECTORY);
  if (fd >= 0) { fsync(fd); close(fd); }
}

int moesz_adir_commit(moesz_adir *d, moesz_error *err) {
  fsync_path(d->tmp);
  if (rename(d->tmp, d->path) == 0) {   /* no target, or an empty folder */
    d->tmp[0] = 0;
    return MOESZ_OK;
  }
  int e = errno;
  if (!d->force || (e != ENOTEMPTY && e != EEXIST)) {
    moesz_adir_abort(d);
    if (e == ENOTEMPTY || e == EEXIST)
      return moesz_error_set(err, MOESZ_E_ARG, "output folder %s is not empty (--force replaces it)", d->path);
    return moesz_error_set(err, MOESZ_E_IO, "rename %s.tmp.* -> %s: %s", d->path, d->path, strerror(e));
  }
  /* replace: swap the new folder in, in one step, then delete the old one
   * (which now sits under the temporary name) */
  if (renameat2(AT_FDCWD, d->tmp, AT_FDCWD, d->path, RENAME_EXCHANGE) == 0) {
    moesz_path_remove_tree(d->tmp);
    d->tmp[0] = 0;
    return MOESZ_OK;
  }
  /* filesystems without RENAME_EXCHANGE: two renames */
  char old[4096 + 32];
  snprintf(old, sizeof old, "%s.old.%ld", d->path, (long)getpid());
  if (rename(d->path, old) != 0 || rename(d->tmp, d->path) != 0) {
    e = errno;
    if (access(d->path, F_OK) != 0) rename(old, d->path);
    moesz_adir_abort(d);
    return moesz_error_set(err, MOESZ_E_IO, "replacing %s: %s", d->path, strerror(e));
  }
  moesz_path_remove_tree(old);
  d->tmp[0] = 0;
  return MOESZ_OK;
}

void moesz_adir_abort(moesz_adir *d) {
  if (d->tmp[0]) moesz_path_remove_tree(d->tmp);
  d->tmp[0] = 0;
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
