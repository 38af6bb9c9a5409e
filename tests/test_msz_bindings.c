/* tests/test_msz_bindings.c - the container calls the Python package relies
 * on: moesz_msz_write's progress callback (opts.on_progress: called once per
 * expert matrix with done counting up to the total; a non-zero return cancels
 * the write leaving no file nor temporary behind) and the source tensors
 * (moesz_msz_source / moesz_msz_source_read: every expert source tensor of a
 * lossless container, plain and stacked layouts, equals the checkpoint's). */
#include "harness.h"
#include <dirent.h>
#include <unistd.h>
#include <sys/stat.h>
#include "moesz.h"

static char TMP[128];

typedef struct { uint64_t calls, last_done, total, stop_at; int monotone; } prog;

static int on_progress(void *ctx, uint64_t done, uint64_t total) {
  prog *p = ctx;
  if (done != p->last_done + 1) p->monotone = 0;
  p->calls++;
  p->last_done = done;
  p->total = total;
  return p->stop_at && done >= p->stop_at;
}

static int dir_entries(const char *d) {
  DIR *dd = opendir(d);
  int n = 0;
  if (!dd) return -1;
  for (struct dirent *de; (de = readdir(dd));) n += de->d_name[0] != '.';
  closedir(dd);
  return n;
}

TEST(progress_counts_every_matrix) {
  moesz_model *m;
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_model_open("tests/fixtures/mixtral", &m, &e), MOESZ_OK);
  if (!m) return;
  char msz[256];
  snprintf(msz, sizeof msz, "%s/p.msz", TMP);
  moesz_msz_opts o;
  memset(&o, 0, sizeof o);
  o.method = MOESZ_MSZ_CODEC;
  o.eb = 1e-3;
  prog p = {.monotone = 1};
  o.on_progress = on_progress;
  o.progress_ctx = &p;
  CHECK_EQ_INT(moesz_msz_write(m, msz, &o, NULL, &e), MOESZ_OK);
  uint64_t want = 3ull * (uint64_t)m->cfg.n_moe_layers * (uint64_t)m->cfg.n_experts;
  CHECK_EQ_INT(p.calls, want);
  CHECK_EQ_INT(p.total, want);
  CHECK_EQ_INT(p.last_done, want);
  CHECK(p.monotone);
  moesz_msz *c;
  CHECK_EQ_INT(moesz_msz_open(msz, &c, &e), MOESZ_OK);
  if (c) { CHECK_EQ_INT(moesz_msz_count(c), want); moesz_msz_close(c); }
  unlink(msz);
  moesz_model_close(m);
}

TEST(nonzero_return_cancels_and_writes_nothing) {
  moesz_model *m;
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_model_open("tests/fixtures/mixtral", &m, &e), MOESZ_OK);
  if (!m) return;
  char msz[256];
  snprintf(msz, sizeof msz, "%s/q.msz", TMP);
  moesz_msz_opts o;
  memset(&o, 0, sizeof o);
  o.method = MOESZ_MSZ_ZSTD;
  prog p = {.monotone = 1, .stop_at = 2};
  o.on_progress = on_progress;
  o.progress_ctx = &p;
  CHECK_EQ_INT(moesz_msz_write(m, msz, &o, NULL, &e), MOESZ_E_ARG);
  CHECK_MSG(strstr(e.msg, "cancelled") != NULL, "message: %s", e.msg);
  CHECK_EQ_INT(p.calls, 2);
  CHECK(access(msz, F_OK) != 0);
  CHECK_EQ_INT(dir_entries(TMP), 0);   /* no temporary left */
  moesz_model_close(m);
}

static void sources_equal_checkpoint(const char *family) {
  char dir[256], msz[256];
  snprintf(dir, sizeof dir, "tests/fixtures/%s", family);
  snprintf(msz, sizeof msz, "%s/%s.msz", TMP, family);
  moesz_model *m;
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_model_open(dir, &m, &e), MOESZ_OK);
  if (!m) return;
  moesz_msz_opts o;
  memset(&o, 0, sizeof o);
  o.method = MOESZ_MSZ_ZSTD;
  CHECK_EQ_INT(moesz_msz_write(m, msz, &o, NULL, &e), MOESZ_OK);
  moesz_msz *c;
  CHECK_EQ_INT(moesz_msz_open(msz, &c, &e), MOESZ_OK);
  if (c) {
    size_t ns = moesz_msz_source_count(c), covered = 0;
    CHECK(ns > 0);
    for (size_t i = 0; i < ns; i++) {
      moesz_tensor t;
      CHECK_EQ_INT(moesz_msz_source(c, i, &t, &e), MOESZ_OK);
      const moesz_tensor *ref = moesz_st_find(m->st, t.name);
      CHECK_MSG(ref != NULL, "%s not in the checkpoint", t.name);
      if (!ref) continue;
      CHECK_EQ_INT(t.dtype, ref->dtype);
      CHECK_EQ_INT(t.nbytes, ref->nbytes);
      CHECK_EQ_INT(t.ndim, ref->ndim);
      uint8_t *buf = malloc(t.nbytes);
      CHECK_EQ_INT(moesz_msz_source_read(c, i, MOESZ_DT_COUNT, buf, &e), MOESZ_OK);
      CHECK_MSG(memcmp(buf, ref->data, t.nbytes) == 0, "%s differs", t.name);
      float *f = malloc(t.numel * 4), *g = malloc(t.numel * 4);
      CHECK_EQ_INT(moesz_msz_source_read(c, i, MOESZ_DT_F32, f, &e), MOESZ_OK);
      moesz_to_f32(ref->dtype, ref->data, g, t.numel);
      CHECK(memcmp(f, g, t.numel * 4) == 0);
      free(f); free(g); free(buf);
      covered += moesz_role_is_expert(m->roles[ref - moesz_st_at(m->st, 0)].role);
    }
    CHECK_EQ_INT(covered, ns);
    moesz_tensor t;
    CHECK_EQ_INT(moesz_msz_source(c, ns, &t, &e), MOESZ_E_RANGE);
    CHECK_EQ_INT(moesz_msz_source_read(c, ns, MOESZ_DT_F32, NULL, &e), MOESZ_E_RANGE);
    CHECK_EQ_INT(moesz_msz_source_read(c, 0, MOESZ_DT_I32, NULL, &e), MOESZ_E_UNSUPPORTED);
    moesz_msz_close(c);
  }
  unlink(msz);
  moesz_model_close(m);
}

TEST(source_tensors_equal_checkpoint) {
  sources_equal_checkpoint("mixtral");
  sources_equal_checkpoint("mixtral_stacked");
  sources_equal_checkpoint("qwen2_moe");
}

int main(void) {
  snprintf(TMP, sizeof TMP, "/tmp/moesz_progress_%ld", (long)getpid());
  mkdir(TMP, 0700);
  RUN(progress_counts_every_matrix);
  RUN(nonzero_return_cancels_and_writes_nothing);
  RUN(source_tensors_equal_checkpoint);
  rmdir(TMP);
  return DONE();
}
