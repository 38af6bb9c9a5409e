/* tests/test_base.c - error reports, atomic files, thread pool. */
#include "harness.h"
#include <unistd.h>
#include <stdatomic.h>
#include "moesz.h"
#include "base/util.h"
#include "base/pool.h"

TEST(error_set_and_wrap) {
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_error_set(&e, MOESZ_E_FORMAT, "bad %d", 7), MOESZ_E_FORMAT);
  CHECK(!strcmp(e.msg, "bad 7"));
  moesz_error_wrap(&e, MOESZ_E_IO, "reading %s", "x.bin");
  CHECK(!strcmp(e.msg, "reading x.bin: bad 7"));
  CHECK_EQ_INT(e.code, MOESZ_E_IO);
  CHECK_EQ_INT(moesz_error_set(NULL, MOESZ_E_ARG, "x"), MOESZ_E_ARG);
}

TEST(afile_commit_and_abort) {
  char path[] = "/tmp/moesz_test_afile_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  close(fd);
  moesz_afile a;
  CHECK_EQ_INT(moesz_afile_open(&a, path, NULL), MOESZ_OK);
  CHECK_EQ_INT(moesz_afile_write(&a, "hello", 5, NULL), MOESZ_OK);
  moesz_afile_abort(&a);                 /* original (empty) file untouched */
  char *buf; size_t n;
  CHECK_EQ_INT(moesz_file_read_all(path, 100, &buf, &n, NULL), MOESZ_OK);
  CHECK_EQ_INT(n, 0);
  free(buf);
  CHECK(access(a.tmp, F_OK) != 0);
  CHECK_EQ_INT(moesz_afile_open(&a, path, NULL), MOESZ_OK);
  CHECK_EQ_INT(moesz_afile_write(&a, "hello", 5, NULL), MOESZ_OK);
  CHECK_EQ_INT(moesz_afile_commit(&a, NULL), MOESZ_OK);
  CHECK_EQ_INT(moesz_file_read_all(path, 100, &buf, &n, NULL), MOESZ_OK);
  CHECK(n == 5 && !memcmp(buf, "hello", 5));
  free(buf);
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_file_read_all(path, 3, &buf, &n, &e), MOESZ_E_FORMAT);
  CHECK_EQ_INT(moesz_file_read_all("/nonexistent/x", 3, &buf, &n, &e), MOESZ_E_NOTFOUND);
  unlink(path);
}

typedef struct { atomic_int hits[1000]; } pool_ctx;
static void pool_task(void *c, size_t i, int tid) {
  (void)tid;
  atomic_fetch_add(&((pool_ctx *)c)->hits[i], 1);
}

TEST(pool_runs_each_task_once) {
  for (int nt = 1; nt <= 3; nt++) {
    moesz_pool *p = moesz_pool_create(nt);
    CHECK(p != NULL);
    pool_ctx *c = calloc(1, sizeof *c);
    for (int rep = 0; rep < 20; rep++) moesz_pool_run(p, 1000, pool_task, c);
    int bad = 0;
    for (int i = 0; i < 1000; i++) bad += atomic_load(&c->hits[i]) != 20;
    CHECK_EQ_INT(bad, 0);
    free(c);
    moesz_pool_destroy(p);
  }
}

int main(void) {
  RUN(error_set_and_wrap);
  RUN(afile_commit_and_abort);
  RUN(pool_runs_each_task_once);
  return DONE();
}
