/* tensor/safetensors.c - owns reading safetensors checkpoints: header
 * validation (8-byte length, JSON, dtype x shape == byte range, ranges inside
 * the data, contiguous without holes or overlaps, header <= 100 MB), mmap of
 * each file, sharded folders through model.safetensors.index.json. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/util.h"
#include "moesz/tensor.h"

typedef struct st_file {
  char *path;
  void *map;              /* whole file mapping, or NULL when parsed from a caller buffer */
  size_t size;
} st_file;

typedef struct st_meta { char *key, *value; } st_meta;

struct moesz_st {
  st_file *files;         /* [nfiles] */
  size_t nfiles;
  moesz_tensor *t;        /* [nt], sorted by name; names owned */
  size_t nt, cap;
  st_meta *meta;          /* [nmeta] */
  size_t nmeta, metacap;
};

static int cmp_name(const void *a, const void *b) {
  return strcmp(((const moesz_tensor *)a)->name, ((const moesz_tensor *)b)->name);
}

typedef struct { size_t begin, end; size_t idx; } range;
static int cmp_range(const void *a, const void *b) {
  const range *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static int json_uint(const cJSON *j, size_t *out) {
  if (!cJSON_IsNumber(j)) return 0;
  double v = j->valuedouble;
  if (!(v >= 0) || v > 9007199254740992.0 || v != floor(v)) return 0;
  *out = (size_t)v;
  return 1;
}

static int st_push(moesz_st *st, moesz_error *err) {
  if (st->nt < st->cap) return MOESZ_OK;
  size_t nc = st->cap ? st->cap * 2 : 64;
  moesz_tensor *n = realloc(st->t, nc * sizeof *n);
  if (!n) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory for tensor table");
  st->t = n;
  st->cap = nc;
  return MOESZ_OK;
}

static int meta_add(moesz_st *st, const char *k, const char *v, moesz_error *err) {
  if (st->nmeta == st->metacap) {
    size_t nc = st->metacap ? st->metacap * 2 : 8;
    st_meta *n = realloc(st->meta, nc * sizeof *n);
    if (!n) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
    st->meta = n;
    st->metacap = nc;
  }
  st->meta[st->nmeta].key = strdup(k);
  st->meta[st->nmeta].value = strdup(v);
  if (!st->meta[st->nmeta].key || !st->meta[st->nmeta].value) {
    free(st->meta[st->nmeta].key);
    free(st->meta[st->nmeta].value);
    return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  }
  st->nmeta++;
  return MOESZ_OK;
}

/* Parses one file image and appends its tensors to st as shard `shard`. */
static int parse_into(moesz_st *st, const uint8_t *file, size_t flen, int shard, moesz_error *err) {
  if (flen < 8) return moesz_error_set(err, MOESZ_E_FORMAT, "file of %zu bytes is shorter than the 8-byte header length", flen);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | file[i];
  if (n > MOESZ_ST_MAX_HEADER)
    return moesz_error_set(err, MOESZ_E_FORMAT, "header length %llu exceeds the 100 MB limit", (unsigned long long)n);
  if (n + 8 > flen)
    return moesz_error_set(err, MOESZ_E_FORMAT, "header length %llu runs past the end of the %zu-byte file",
                           (unsigned long long)n, flen);
  if (n < 2) return moesz_error_set(err, MOESZ_E_FORMAT, "header of %llu bytes cannot hold a JSON object", (unsigned long long)n);
  const uint8_t *data = file + 8 + n;
  size_t dlen = flen - 8 - (size_t)n;
  cJSON *root = cJSON_ParseWithLength((const char *)file + 8, (size_t)n);
  if (!root) return moesz_error_set(err, MOESZ_E_FORMAT, "header is not valid JSON");
  int rc = MOESZ_OK;
  range *rg = NULL;
  size_t nr = 0, first = st->nt;
  if (!cJSON_IsObject(root)) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "header is not a JSON object"); goto done; }
  size_t cnt = (size_t)cJSON_GetArraySize(root);
  rg = malloc((cnt ? cnt : 1) * sizeof *rg);
  if (!rg) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto done; }
  for (const cJSON *it = root->child; it; it = it->next) {
    const char *name = it->string;
    if (!name) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "header entry without a name"); goto done; }
    if (!strcmp(name, "__metadata__")) {
      if (!cJSON_IsObject(it)) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "__metadata__ is not an object"); goto done; }
      for (const cJSON *m = it->child; m; m = m->next) {
        if (!cJSON_IsString(m)) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "__metadata__ value '%s' is not a string", m->string); goto done; }
        if ((rc = meta_add(st, m->string, m->valuestring, err))) goto done;
      }
      continue;
    }
    if (!cJSON_IsObject(it)) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "tensor '%s': entry is not an object", name); goto done; }
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(it, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
    if (!cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsArray(jo)) {
      rc = moesz_error_set(err, MOESZ_E_FORMAT, "tensor '%s': needs dtype (string), shape and data_offsets (arrays)", name);
      goto done;
    }
    moesz_tensor t;
    memset(&t, 0, sizeof t);
    if (moesz_dtype_parse(jd->valuestring, &t.dtype)) {
      rc = moesz_error_set(err, MOESZ_E_UNSUPPORTED, "tensor '%s': unsupported dtype '%s'", name, jd->valuestring);
      goto done;
    }
    int nd = cJSON_GetArraySize(js);
    if (nd > MOESZ_MAX_DIMS) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "tensor '%s': %d dimensions (max %d)", name, nd, MOESZ_MAX_DIMS); goto done; }
    t.ndim = nd;
    size_t numel = 1;
    int d = 0;
    for (const cJSON *e = js->child; e; e = e->next, d++) {
      size_t v;
      if (!json_uint(e, &v)) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "tensor '%s': shape entry %d is not a non-negative integer", name, d); goto done; }
      t.shape[d] = (int64_t)v;
      if (!moesz_mul_ok(numel, v, &numel)) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "tensor '%s': element count overflows", name); goto done; }
    }
    size_t b, e;
    if (cJSON_GetArraySize(jo) != 2 || !json_uint(jo->child, &b) || !json_uint(jo->child->next, &e) || b > e) {
      rc = moesz_error_set(err, MOESZ_E_FORMAT, "tensor '%s': data_offsets must be two integers [begin, end] with begin <= end", name);
      goto done;
    }
    if (e > dlen) {
      rc = moesz_error_set(err, MOESZ_E_FORMAT, "tensor '%s': data_offsets [%zu, %zu) run past the %zu data bytes", name, b, e, dlen);
      goto done;
    }
    size_t nbytes;
    if (!moesz_mul_ok(numel, moesz_dtype_size(t.dtype), &nbytes) || nbytes != e - b) {
      rc = moesz_error_set(err, MOESZ_E_FORMAT, "tensor '%s': %zu bytes for %zu %s elements (expected %zu)", name,
                           e - b, numel, moesz_dtype_name(t.dtype), numel * moesz_dtype_size(t.dtype));
      goto done;
    }
    t.numel = numel;
    t.nbytes = nbytes;
    t.data = data + b;
    t.shard = shard;
    if ((rc = st_push(st, err))) goto done;
    if (!(t.name = strdup(name))) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto done; }
    rg[nr].begin = b;
    rg[nr].end = e;
    rg[nr].idx = st->nt;
    nr++;
    st->t[st->nt++] = t;
  }
  /* Ranges must tile [0, dlen) exactly: no overlaps, no holes. */
  qsort(rg, nr, sizeof *rg, cmp_range);
  size_t pos = 0;
  for (size_t i = 0; i < nr; i++) {
    if (rg[i].begin != pos) {
      rc = moesz_error_set(err, MOESZ_E_FORMAT, "tensor '%s': data_offsets begin at %zu but the previous tensor ends at %zu (%s)",
                           st->t[rg[i].idx].name, rg[i].begin, pos, rg[i].begin < pos ? "overlap" : "hole");
      goto done;
    }
    pos = rg[i].end;
  }
  if (pos != dlen) {
    rc = moesz_error_set(err, MOESZ_E_FORMAT, "tensors cover %zu of the %zu data bytes (trailing bytes)", pos, dlen);
    goto done;
  }
  (void)first;
done:
  free(rg);
  cJSON_Delete(root);
  return rc;
}

static int finish(moesz_st *st, moesz_error *err) {
  qsort(st->t, st->nt, sizeof *st->t, cmp_name);
  for (size_t i = 1; i < st->nt; i++)
    if (!strcmp(st->t[i - 1].name, st->t[i].name))
      return moesz_error_set(err, MOESZ_E_FORMAT, "tensor '%s' appears twice", st->t[i].name);
  return MOESZ_OK;
}

int moesz_st_parse(const uint8_t *file, size_t file_len, moesz_st **out, moesz_error *err) {
  *out = NULL;
  moesz_st *st = calloc(1, sizeof *st);
  if (!st) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  int rc = parse_into(st, file, file_len, 0, err);
  if (!rc) rc = finish(st, err);
  if (rc) { moesz_st_close(st); return rc; }
  *out = st;
  return MOESZ_OK;
}
/* The mapping's page tables filled at open (MADV_POPULATE_READ, Linux 5.14+;
 * elsewhere a no-op), as llama.cpp maps with MAP_POPULATE, when the file
 * takes at most half the machine's memory: the first pass over the weights
 * then runs at the speed of the later ones (the BF16 bench model's first
 * 64-token prompt: 285-336 -> 393-401 tok/s at 2 threads on Zen 4). A larger
 * file is left to fault in as it is used. */
static void prefault(void *map, size_t size) {
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
  long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
  if (pages > 0 && psz > 0 && size <= (size_t)pages / 2 * (size_t)psz) (void)madvise(map, size, MADV_POPULATE_READ);
}


/* Maps path read-only and appends its tensors to st. */
static int add_file(moesz_st *st, const char *path, moesz_error *err) {
  st_file *nf = realloc(st->files, (st->nfiles + 1) * sizeof *nf);
  if (!nf) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  st->files = nf;
  st_file *f = &st->files[st->nfiles];
  memset(f, 0, sizeof *f);
  if (!(f->path = strdup(path))) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  st->nfiles++;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return moesz_error_set(err, errno == ENOENT ? MOESZ_E_NOTFOUND : MOESZ_E_IO, "%s: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return moesz_error_set(err, MOESZ_E_IO, "%s: not a regular file", path);
  }
  f->size = (size_t)sb.st_size;
  if (f->size > 0) {
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
      f->map = NULL;
      int e = errno;
      close(fd);
      return moesz_error_set(err, MOESZ_E_IO, "%s: mmap: %s", path, strerror(e));
    }
    prefault(f->map, f->size);
  }
  close(fd);
  int rc = parse_into(st, f->map, f->size, (int)st->nfiles - 1, err);
  if (rc) return moesz_error_wrap(err, rc, "%s", path);
  return MOESZ_OK;
}

int moesz_st_open_file(const char *path, moesz_st **out, moesz_error *err) {
  *out = NULL;
  moesz_st *st = calloc(1, sizeof *st);
  if (!st) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  int rc = add_file(st, path, err);
  if (!rc) rc = finish(st, err);
  if (rc) { moesz_st_close(st); return rc; }
  *out = st;
  return MOESZ_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sharded: every file named in weight_map is opened once; every name in the
 * weight_map must be found in the shard it names. */
static int open_index(moesz_st *st, const char *dir, const char *index, moesz_error *err) {
  char *txt = NULL;
  size_t len;
  int rc = moesz_file_read_all(index, 64u << 20, &txt, &len, err);
  if (rc) return rc;
  cJSON *root = cJSON_ParseWithLength(txt, len);
  free(txt);
  if (!root) return moesz_error_set(err, MOESZ_E_FORMAT, "%s: not valid JSON", index);
  const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
  char **names = NULL;
  size_t nn = 0;
  if (!cJSON_IsObject(wm)) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "%s: no weight_map object", index); goto done; }
  size_t cnt = (size_t)cJSON_GetArraySize(wm);
  names = calloc(cnt ? cnt : 1, sizeof *names);
  if (!names) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto done; }
  for (const cJSON *it = wm->child; it; it = it->next) {
    if (!cJSON_IsString(it) || strchr(it->valuestring, '/') || !it->valuestring[0]) {
      rc = moesz_error_set(err, MOESZ_E_FORMAT, "%s: weight_map['%s'] is not a plain file name", index, it->string ? it->string : "?");
      goto done;
    }
    names[nn++] = it->valuestring;
  }
  qsort(names, nn, sizeof *names, cmp_str);
  for (size_t i = 0; i < nn; i++) {
    if (i && !strcmp(names[i], names[i - 1])) continue;
    char p[4096];
    if (moesz_path_join(p, sizeof p, dir, names[i])) { rc = moesz_error_set(err, MOESZ_E_ARG, "path too long"); goto done; }
    if ((rc = add_file(st, p, err))) {
      if (rc == MOESZ_E_NOTFOUND) moesz_error_wrap(err, rc, "missing shard named in %s", index);
      goto done;
    }
  }
  if ((rc = finish(st, err))) goto done;
  for (const cJSON *it = wm->child; it; it = it->next) {
    const moesz_tensor *t = moesz_st_find(st, it->string);
    if (!t || strcmp(strrchr(st->files[t->shard].path, '/') + 1, it->valuestring)) {
      rc = moesz_error_set(err, MOESZ_E_FORMAT, "%s: tensor '%s' is not in shard %s", index, it->string, it->valuestring);
      goto done;
    }
  }
done:
  free(names);
  cJSON_Delete(root);
  return rc;
}

int moesz_st_open(const char *path, moesz_st **out, moesz_error *err) {
  *out = NULL;
  if (!moesz_path_is_dir(path)) return moesz_st_open_file(path, out, err);
  char p[4096];
  if (moesz_path_join(p, sizeof p, path, "model.safetensors.index.json"))
    return moesz_error_set(err, MOESZ_E_ARG, "path too long");
  moesz_st *st = calloc(1, sizeof *st);
  if (!st) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  int rc;
  if (access(p, F_OK) == 0) {
    rc = open_index(st, path, p, err);
  } else {
    moesz_path_join(p, sizeof p, path, "model.safetensors");
    if (access(p, F_OK) == 0) {
      rc = add_file(st, p, err);
      if (!rc) rc = finish(st, err);
    } else {
      /* every *.safetensors in the folder, in name order */
      DIR *d = opendir(path);
      rc = d ? MOESZ_OK : moesz_error_set(err, MOESZ_E_IO, "%s: %s", path, strerror(errno));
      char **fn = NULL;
      size_t nf = 0;
      for (struct dirent *de; !rc && (de = readdir(d));) {
        size_t l = strlen(de->d_name);
        if (l <= 12 || strcmp(de->d_name + l - 12, ".safetensors")) continue;
        char **g = realloc(fn, (nf + 1) * sizeof *g);
        if (!g || !(g[nf] = strdup(de->d_name))) { fn = g ? g : fn; rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); break; }
        fn = g;
        nf++;
      }
      if (d) closedir(d);
      if (!rc && nf == 0) rc = moesz_error_set(err, MOESZ_E_NOTFOUND, "%s: no .safetensors files", path);
      if (!rc) qsort(fn, nf, sizeof *fn, cmp_str);
      for (size_t i = 0; !rc && i < nf; i++) {
        moesz_path_join(p, sizeof p, path, fn[i]);
        rc = add_file(st, p, err);
      }
      for (size_t i = 0; i < nf; i++) free(fn[i]);
      free(fn);
      if (!rc) rc = finish(st, err);
    }
  }
  if (rc) { moesz_st_close(st); return rc; }
  *out = st;
  return MOESZ_OK;
}

void moesz_st_close(moesz_st *st) {
  if (!st) return;
  for (size_t i = 0; i < st->nt; i++) free((char *)st->t[i].name);
  for (size_t i = 0; i < st->nfiles; i++) {
    if (st->files[i].map) munmap(st->files[i].map, st->files[i].size);
    free(st->files[i].path);
  }
  for (size_t i = 0; i < st->nmeta; i++) { free(st->meta[i].key); free(st->meta[i].value); }
  free(st->meta);
  free(st->files);
  free(st->t);
  free(st);
}

size_t moesz_st_count(const moesz_st *st) { return st->nt; }

const moesz_tensor *moesz_st_at(const moesz_st *st, size_t i) { return i < st->nt ? &st->t[i] : NULL; }

const moesz_tensor *moesz_st_find(const moesz_st *st, const char *name) {
  size_t lo = 0, hi = st->nt;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(st->t[mid].name, name);
    if (c == 0) return &st->t[mid];
    if (c < 0) lo = mid + 1; else hi = mid;
  }
  return NULL;
}

const char *moesz_st_meta(const moesz_st *st, const char *key) {
  for (size_t i = 0; i < st->nmeta; i++)
    if (!strcmp(st->meta[i].key, key)) return st->meta[i].value;
  return NULL;
}
