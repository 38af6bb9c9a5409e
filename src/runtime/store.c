/* runtime/store.c - owns the slow tier: reading the stored bytes of expert
 * blobs from the container file with pread into pooled, aligned buffers
 * (O_DIRECT where the file system allows it, ranges widened to its direct-I/O
 * block; buffered reads, with a note, where it refuses), or in place from the
 * container's mapping; the link model that paces every read (bandwidth as a
 * token bucket without burst, plus a per-request latency);
 * checksum verification of every blob read; I/O counters.
 *
 * Locking: one mutex guards the buffer pool, the link's clock, the note and
 * the counters; reads and link sleeps run unlocked. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "base/util.h"
#include "moesz/runtime.h"

#define LINK_LATE_MAX 20e-3      /* most oversleep credited back to the link, in seconds */
#define RUN_GAP (64u << 10)      /* blobs closer than this in the file share one read */
#define MEM_ALIGN 4096           /* I/O buffer alignment (>= any direct-I/O memory alignment seen) */

struct moesz_store_buf {
  void *mem;                     /* [cap] aligned to MEM_ALIGN; NULL for in-place reads */
  size_t cap;
  moesz_store_buf *next;         /* free list */
};

struct moesz_store {
  const moesz_msz *c;
  moesz_store_opts o;
  int fd_direct;                 /* O_DIRECT descriptor, -1 if none */
  int fd;                        /* buffered descriptor, -1 in mmap mode */
  atomic_int direct;             /* 1 while O_DIRECT reads are in use */
  size_t block;                  /* direct-I/O offset and length alignment */
  double rate;                   /* link bytes per second, 0 = unthrottled */
  double latency;                /* link seconds per request */
  pthread_mutex_t mu;
  double link_free;              /* when the link has sent every byte granted so far */
  double late;                   /* oversleep of link waits not yet credited back (<= LINK_LATE_MAX) */
  moesz_store_buf *pool;         /* free buffers */
  moesz_store_buf inplace;       /* handle returned for in-place reads */
  char note[256];
  moesz_store_stats st;
};

static const char *MODES[] = {"direct", "buffered", "mmap"};
int moesz_store_in_place(const moesz_store *s) { return s && s->o.mode == MOESZ_STORE_MMAP; }

const char *moesz_store_mode_name(moesz_store_mode m) { return (unsigned)m < 3 ? MODES[m] : "?"; }
int moesz_store_mode_parse(const char *s, moesz_store_mode *out) {
  for (int i = 0; i < 3; i++)
    if (!strcmp(s, MODES[i])) { *out = (moesz_store_mode)i; return MOESZ_OK; }
  return MOESZ_E_ARG;
}

int moesz_store_check_link(double gbps, double latency_us, moesz_error *err) {
  if (!(gbps == 0 || (gbps >= MOESZ_LINK_GBPS_MIN && gbps <= MOESZ_LINK_GBPS_MAX)))
    return moesz_error_set(err, MOESZ_E_ARG, "link speed %g GB/s outside [%g, %g] (0 = unthrottled)", gbps,
                           MOESZ_LINK_GBPS_MIN, MOESZ_LINK_GBPS_MAX);
  if (!(latency_us >= 0 && latency_us <= MOESZ_LINK_LATENCY_US_MAX))
    return moesz_error_set(err, MOESZ_E_ARG, "link latency %g us outside [0, %g]", latency_us,
                           MOESZ_LINK_LATENCY_US_MAX);
  return MOESZ_OK;
}

/* The file system's direct-I/O alignment: 0 if it says it has no direct
 * I/O, else the larger of its offset and memory alignments (4096 when it
 * does not say). */
static size_t dio_block(int fd) {
#ifdef STATX_DIOALIGN
  struct statx sx;
  if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN)) {
    if (!sx.stx_dio_offset_align) return 0;
    size_t b = sx.stx_dio_offset_align > sx.stx_dio_mem_align ? sx.stx_dio_offset_align : sx.stx_dio_mem_align;
    return b <= MEM_ALIGN ? b : 0;
  }
#else
  (void)fd;
#endif
  return MEM_ALIGN;
}

int moesz_store_open(const moesz_msz *c, const moesz_store_opts *o, moesz_store **out, moesz_error *err) {
  *out = NULL;
  moesz_store_opts oo = {0};
  if (o) oo = *o;
  if (!oo.path) oo.mode = MOESZ_STORE_MMAP;
  if ((unsigned)oo.mode > MOESZ_STORE_MMAP) return moesz_error_set(err, MOESZ_E_ARG, "store: unknown mode %d", (int)oo.mode);
  int rc = moesz_store_check_link(oo.link_gbps, oo.link_latency_us, err);
  if (rc) return rc;
  moesz_store *s = calloc(1, sizeof *s);
  if (!s) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  s->c = c;
  s->o = oo;
  s->o.path = NULL;               /* not kept: the caller's string */
  s->fd = s->fd_direct = -1;
  s->block = 1;
  s->rate = oo.link_gbps * 1e9;
  s->latency = oo.link_latency_us * 1e-6;
  s->link_free = moesz_time_now();
  pthread_mutex_init(&s->mu, NULL);
  if (oo.mode != MOESZ_STORE_MMAP) {
    s->fd = open(oo.path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0) {
      rc = moesz_error_set(err, errno == ENOENT ? MOESZ_E_NOTFOUND : MOESZ_E_IO, "store: %s: %s", oo.path, strerror(errno));
      moesz_store_close(s);
      return rc;
    }
    struct stat sb;
    if (fstat(s->fd, &sb) || (uint64_t)sb.st_size != moesz_msz_file_size(c)) {
      moesz_store_close(s);
      return moesz_error_set(err, MOESZ_E_IO, "store: %s is not the opened container (size differs)", oo.path);
    }
    if (oo.mode == MOESZ_STORE_DIRECT) {
      size_t b = dio_block(s->fd);
      if (!b) {
        snprintf(s->note, sizeof s->note, "O_DIRECT not supported by the file system of %s: buffered reads", oo.path);
      } else {
        s->fd_direct = open(oo.path, O_RDONLY | O_CLOEXEC | O_DIRECT);
        if (s->fd_direct < 0)
          snprintf(s->note, sizeof s->note, "O_DIRECT refused for %s (%s): buffered reads", oo.path, strerror(errno));
        else {
          s->block = b;
          atomic_store(&s->direct, 1);
        }
      }
    }
  }
  *out = s;
  return MOESZ_OK;
}

void moesz_store_close(moesz_store *s) {
  if (!s) return;
  if (s->fd >= 0) close(s->fd);
  if (s->fd_direct >= 0) close(s->fd_direct);
  for (moesz_store_buf *b = s->pool, *nx; b; b = nx) {
    nx = b->next;
    free(b->mem);
    free(b);
  }
  pthread_mutex_destroy(&s->mu);
  free(s);
}

const char *moesz_store_note(moesz_store *s) {
  return s->note;
}

void moesz_store_stats_get(moesz_store *s, moesz_store_stats *out) {
  pthread_mutex_lock(&s->mu);
  *out = s->st;
  out->direct = atomic_load(&s->direct);
  out->block = out->direct ? s->block : 1;
  pthread_mutex_unlock(&s->mu);
}

/* Grants bytes on the link; returns when the read may complete (absolute
 * monotonic seconds), 0 when the link is not modelled. The link sends one
 * byte stream at `rate`: a request starts when the link has sent what was
 * granted before it, or now if it is idle, and completes `latency` after
 * its last byte (a token bucket without burst). Idle time earns no credit,
 * except the time readers finished past their deadlines (timer slack,
 * scheduling delays, a read slower than the link), up to LINK_LATE_MAX, so
 * the pacing does not drift slower than the modelled speed while storage
 * keeps up on average. */
static double link_grant(moesz_store *s, uint64_t bytes) {
  if (s->rate <= 0 && s->latency <= 0) return 0;
  pthread_mutex_lock(&s->mu);
  double now = moesz_time_now(), end = now;
  if (s->rate > 0) {
    double start = now;
    if (s->link_free >= now) start = s->link_free;
    else {
      double credit = now - s->link_free < s->late ? now - s->link_free : s->late;
      start = now - credit;
      s->late -= credit;
    }
    s->link_free = start + (double)bytes / s->rate;
    end = s->link_free;
  }
  pthread_mutex_unlock(&s->mu);
  return end + s->latency;
}

/* Sleeps until deadline; returns the seconds slept. */
static double link_wait(moesz_store *s, double deadline) {
  if (deadline <= 0) return 0;
  double t0 = moesz_time_now();
  if (t0 >= deadline) {
    /* the read itself ran late (slow storage, the reader descheduled) */
    pthread_mutex_lock(&s->mu);
    s->late += t0 - deadline;
    if (s->late > LINK_LATE_MAX) s->late = LINK_LATE_MAX;
    pthread_mutex_unlock(&s->mu);
    return 0;
  }
  struct timespec ts;
  ts.tv_sec = (time_t)deadline;
  ts.tv_nsec = (long)((deadline - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
  double t1 = moesz_time_now();
  pthread_mutex_lock(&s->mu);
  s->late += t1 - deadline;
  if (s->late > LINK_LATE_MAX) s->late = LINK_LATE_MAX;
  pthread_mutex_unlock(&s->mu);
  return t1 - t0;
}

/* A pooled buffer of at least cap bytes (mutex not held). */
static moesz_store_buf *buf_get(moesz_store *s, size_t cap) {
  pthread_mutex_lock(&s->mu);
  moesz_store_buf **pp = &s->pool, *b = NULL;
  for (; *pp; pp = &(*pp)->next)
    if ((*pp)->cap >= cap) { b = *pp; *pp = b->next; break; }
  if (!b && s->pool) {            /* none big enough: grow the first free one */
    b = s->pool;
    s->pool = b->next;
    s->st.buffer_bytes -= b->cap;
    free(b->mem);
    b->mem = NULL;
    b->cap = 0;
  }
  pthread_mutex_unlock(&s->mu);
  if (!b && !(b = calloc(1, sizeof *b))) return NULL;
  if (b->cap < cap) {
    void *m = NULL;
    size_t want = (cap + MEM_ALIGN - 1) / MEM_ALIGN * MEM_ALIGN;
    if (posix_memalign(&m, MEM_ALIGN, want)) { free(b); return NULL; }
    b->mem = m;
    b->cap = want;
    pthread_mutex_lock(&s->mu);
    s->st.buffer_bytes += want;
    pthread_mutex_unlock(&s->mu);
  }
  b->next = NULL;
  return b;
}

void moesz_store_release(moesz_store *s, moesz_store_buf *b) {
  if (!b || b == &s->inplace) return;
  pthread_mutex_lock(&s->mu);
  b->next = s->pool;
  s->pool = b;
  pthread_mutex_unlock(&s->mu);
}

/* Reads file range [off, off + len) into dst: O_DIRECT while it works,
 * buffered otherwise. dst is aligned to the block and has room for the
 * range widened to whole blocks; *skip receives where off lands in dst. */
static int read_range(moesz_store *s, uint64_t off, uint64_t len, uint8_t *dst, size_t *skip, uint64_t *io_bytes,
                      const char *what, moesz_error *err) {
  for (;;) {
    int direct = atomic_load(&s->direct);
    int fd = direct ? s->fd_direct : s->fd;
    uint64_t b = direct ? s->block : 1;
    uint64_t a0 = off / b * b, a1 = (off + len + b - 1) / b * b, need = off + len - a0;
    uint64_t got = 0;
    int e = 0;
    while (got < need) {
      ssize_t r = pread(fd, dst + got, (size_t)(a1 - a0 - got), (off_t)(a0 + got));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) { e = errno; break; }
      if (r == 0) break;
      got += (uint64_t)r;
      if (direct && got % b) break;   /* end of file inside a block */
    }
    *io_bytes += got;
    if (direct && e == EINVAL && got == 0) {
      /* the file system refused this O_DIRECT read: fall back for good */
      pthread_mutex_lock(&s->mu);
      if (atomic_load(&s->direct)) {
        atomic_store(&s->direct, 0);
        snprintf(s->note, sizeof s->note, "O_DIRECT reads refused by the file system (%s): buffered reads",
                 strerror(EINVAL));
      }
      pthread_mutex_unlock(&s->mu);
      continue;
    }
    if (e) return moesz_error_set(err, MOESZ_E_IO, "%s: read of %llu bytes at %llu failed: %s", what,
                                  (unsigned long long)len, (unsigned long long)off, strerror(e));
    if (got < need)
      return moesz_error_set(err, MOESZ_E_IO, "%s: short read (%llu of %llu bytes at %llu): the container shrank or is truncated",
                             what, (unsigned long long)(got > off - a0 ? got - (off - a0) : 0), (unsigned long long)len,
                             (unsigned long long)off);
    *skip = (size_t)(off - a0);
    return MOESZ_OK;
  }
}

int moesz_store_fetch(moesz_store *s, const moesz_msz_rec *const *r, int n, const void **data,
                      moesz_store_buf **out, moesz_store_io *io, moesz_error *err) {
  *out = NULL;
  moesz_store_io my = {0};
  if (n < 1 || n > MOESZ_STORE_MAX_BLOBS) return moesz_error_set(err, MOESZ_E_ARG, "store: %d blobs in one fetch", n);
  uint64_t fsize = moesz_msz_file_size(s->c);
  for (int i = 0; i < n; i++) {
    if (!r[i] || r[i]->off > fsize || r[i]->len > fsize - r[i]->off)
      return moesz_error_set(err, MOESZ_E_ARG, "store: blob outside the container");
    my.bytes += r[i]->len;
  }
  int rc = MOESZ_OK;
  uint64_t io_bytes = 0, nreads = 0;
  moesz_store_buf *b = NULL;
  if (s->o.mode == MOESZ_STORE_MMAP) {
    /* in place: the link still paces the bytes, one request per blob */
    for (int i = 0; i < n && !rc; i++) {
      double dl = link_grant(s, r[i]->len);
      double t0 = moesz_time_now();
      rc = moesz_msz_blob(s->c, r[i], &data[i], err);
      my.read_seconds += moesz_time_now() - t0;
      my.link_wait_seconds += link_wait(s, dl);
      nreads++;
    }
    b = &s->inplace;
  } else {
    /* runs of blobs close together in the file, in file order */
    int ord[MOESZ_STORE_MAX_BLOBS];
    for (int i = 0; i < n; i++) ord[i] = i;
    for (int i = 1; i < n; i++)
      for (int j = i; j > 0 && r[ord[j]]->off < r[ord[j - 1]]->off; j--) { int t = ord[j]; ord[j] = ord[j - 1]; ord[j - 1] = t; }
    uint64_t run_a[MOESZ_STORE_MAX_BLOBS], run_b[MOESZ_STORE_MAX_BLOBS];
    int run_of[MOESZ_STORE_MAX_BLOBS], nrun = 0;
    for (int j = 0; j < n; j++) {
      const moesz_msz_rec *x = r[ord[j]];
      if (nrun && x->off <= run_b[nrun - 1] + RUN_GAP) {
        if (x->off + x->len > run_b[nrun - 1]) run_b[nrun - 1] = x->off + x->len;
      } else {
        run_a[nrun] = x->off;
        run_b[nrun] = x->off + x->len;
        nrun++;
      }
      run_of[ord[j]] = nrun - 1;
    }
    /* buffer: each run widened to whole blocks (largest block the store may use) */
    size_t blk = s->block, cap = 0, at[MOESZ_STORE_MAX_BLOBS];
    for (int q = 0; q < nrun; q++) {
      at[q] = cap;
      cap += (size_t)((run_b[q] - run_a[q]) + 2 * blk + MEM_ALIGN);
      cap = (cap + MEM_ALIGN - 1) / MEM_ALIGN * MEM_ALIGN;
    }
    b = buf_get(s, cap);
    if (!b) return moesz_error_set(err, MOESZ_E_NOMEM, "store: I/O buffer of %zu bytes", cap);
    size_t skip[MOESZ_STORE_MAX_BLOBS];
    for (int q = 0; q < nrun && !rc; q++) {
      double dl = link_grant(s, run_b[q] - run_a[q]);
      double t0 = moesz_time_now();
      char what[96];
      snprintf(what, sizeof what, "blob %s", r[ord[0]]->name);
      for (int j = 0; j < n; j++)
        if (run_of[ord[j]] == q) { snprintf(what, sizeof what, "blob %s", r[ord[j]]->name); break; }
      rc = read_range(s, run_a[q], run_b[q] - run_a[q], (uint8_t *)b->mem + at[q], &skip[q], &io_bytes, what, err);
      my.read_seconds += moesz_time_now() - t0;
      my.link_wait_seconds += link_wait(s, dl);
      nreads++;
    }
    double t0 = moesz_time_now();
    for (int i = 0; i < n && !rc; i++) {
      int q = run_of[i];
      data[i] = (const uint8_t *)b->mem + at[q] + skip[q] + (r[i]->off - run_a[q]);
      rc = moesz_msz_verify(r[i], data[i], err);
    }
    my.read_seconds += moesz_time_now() - t0;   /* checksums count as reading */
  }
  pthread_mutex_lock(&s->mu);
  s->st.fetches++;
  s->st.reads += nreads;
  if (!rc) s->st.bytes += my.bytes;
  s->st.bytes_io += io_bytes;
  s->st.link_wait_seconds += my.link_wait_seconds;
  s->st.read_seconds += my.read_seconds;
  pthread_mutex_unlock(&s->mu);
  if (io) *io = my;
  if (rc) {
    moesz_store_release(s, b);
    for (int i = 0; i < n; i++) data[i] = NULL;
    return rc;
  }
  *out = b;
  return MOESZ_OK;
}
