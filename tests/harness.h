/* tests/harness.h - the tiny test harness every tests/test_*.c program uses.
 *
 *   TEST(name) { CHECK(cond); CHECK_NEAR(a, b, tol); ... }
 *   int main(void) { RUN(name); ...; return DONE(); }
 *
 * A test passes when none of its checks failed; SKIP("why") inside a test
 * marks it skipped (e.g. ../shared/data absent). DONE() prints the
 * "#result P F S" line tests/run.sh sums into "N passed, N failed". */
#ifndef MOESZ_TEST_HARNESS_H
#define MOESZ_TEST_HARNESS_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

typedef struct { int pass, fail, skip, cur_fail, cur_skip; } harness_state;
static harness_state H_;

#define TEST(name) static void name(void)
#define CHECK(c) do { if (!(c)) { H_.cur_fail++; \
    fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #c); } } while (0)
#define CHECK_MSG(c, ...) do { if (!(c)) { H_.cur_fail++; \
    fprintf(stderr, "  %s:%d: check failed: %s: ", __FILE__, __LINE__, #c); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define CHECK_EQ_INT(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
    if (a_ != b_) { H_.cur_fail++; fprintf(stderr, "  %s:%d: %s == %s failed: %lld vs %lld\n", \
    __FILE__, __LINE__, #a, #b, a_, b_); } } while (0)
#define CHECK_NEAR(a, b, tol) do { double a_ = (double)(a), b_ = (double)(b); \
    if (!(fabs(a_ - b_) <= (tol))) { H_.cur_fail++; fprintf(stderr, \
    "  %s:%d: |%s - %s| <= %g failed: %.9g vs %.9g\n", __FILE__, __LINE__, #a, #b, \
    (double)(tol), a_, b_); } } while (0)
#define SKIP(...) do { H_.cur_skip = 1; printf("skip %s: ", h_name_); printf(__VA_ARGS__); \
    printf("\n"); return; } while (0)
#define RUN(fn) do { H_.cur_fail = 0; H_.cur_skip = 0; h_set_name_(#fn); fn(); \
    if (H_.cur_fail) { H_.fail++; printf("FAIL %s (%d checks)\n", #fn, H_.cur_fail); } \
    else if (H_.cur_skip) H_.skip++; else { H_.pass++; printf("ok %s\n", #fn); } \
    fflush(stdout); } while (0)
#define DONE() (printf("#result %d %d %d\n", H_.pass, H_.fail, H_.skip), 0)

static const char *h_name_ = "";
static void h_set_name_(const char *n) { h_name_ = n; }

/* Path of the shared data folder: $MOESZ_DATA or ../shared/data. */
static inline const char *harness_data_dir(void) {
  const char *d = getenv("MOESZ_DATA");
  return d && *d ? d : "../shared/data";
}

/* Runs a shell command, captures its stdout into out (NUL-terminated);
 * returns its exit status, or -1 if it could not run or was killed. */
static inline int harness_run_cmd(const char *cmd, char *out, size_t cap) {
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  size_t n = fread(out, 1, cap - 1, p);
  out[n] = 0;
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
#endif
