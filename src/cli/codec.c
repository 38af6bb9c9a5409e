/* cli/codec.c - `moesz codec bench`: the codec's rate and speed against the
 * order-0 entropy of its codes and memcpy, measured in one run. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "cli/cli.h"

static const char *USAGE =
  "usage: moesz codec bench [--synthetic gaussian|laplace|student-t | --file MODEL --tensor NAME]\n"
  "                         [--eb X] [--eb-mode abs|rel|std] [--threads N] [--reps R] [--json]\n\n"
  "Compresses one array with both pipelines and reports bits per value, the order-0 entropy H_q of\n"
  "round(x / 2eb) (the rate limit), ratio against the input dtype, max |error| / bound, values stored\n"
  "verbatim, compress and decompress GB/s per core (bytes of delivered bf16 output), decompress GB/s\n"
  "with N threads, and memcpy GB/s of the same size, all in this run (medians over R repetitions).\n\n"
  "  --synthetic DIST   sigma = 0.02 values, 2048 x 4096, stored as bf16 (default: gaussian)\n"
  "  --rows R --cols C  synthetic shape\n"
  "  --file MODEL       a model folder or .safetensors file; --tensor names the tensor\n"
  "  --eb X             bound (default 1e-3); --eb-mode abs (default) | rel | std\n"
  "  --threads N        threads for the multi-thread decode (default 2)\n"
  "  --reps R           repetitions per measurement (default 5)\n"
  "  --json             one JSON object per pipeline per line\n";

static uint64_t xs(uint64_t *s) { *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s; }
static double ur(uint64_t *s) { return ((double)(xs(s) >> 11) + 0.5) * 0x1p-53; }

static int cmp_d(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }
static double median(double *v, int n) { qsort(v, (size_t)n, sizeof *v, cmp_d); return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]); }

int moesz_cli_codec(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "bench")) {
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) { fputs(USAGE, stdout); return 0; }
    fputs(USAGE, stderr);
    return 2;
  }
  if (moesz_cli_wants_help(argc, argv)) { fputs(USAGE, stdout); return 0; }
  const char *dist = "gaussian", *file = NULL, *tname = NULL, *mode_s = "abs";
  double eb = 1e-3;
  int threads = 2, reps = 5, json = 0;
  long rows = 2048, cols = 4096;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    int hv = i + 1 < argc;
    if (!strcmp(a, "--json")) json = 1;
    else if (!strcmp(a, "--synthetic") && hv) dist = argv[++i];
    else if (!strcmp(a, "--file") && hv) file = argv[++i];
    else if (!strcmp(a, "--tensor") && hv) tname = argv[++i];
    else if (!strcmp(a, "--eb") && hv) eb = atof(argv[++i]);
    else if (!strcmp(a, "--eb-mode") && hv) mode_s = argv[++i];
    else if (!strcmp(a, "--threads") && hv) threads = atoi(argv[++i]);
    else if (!strcmp(a, "--reps") && hv) reps = atoi(argv[++i]);
    else if (!strcmp(a, "--rows") && hv) rows = atol(argv[++i]);
    else if (!strcmp(a, "--cols") && hv) cols = atol(argv[++i]);
    else { fprintf(stderr, "moesz codec bench: bad argument '%s'\n\n%s", a, USAGE); return 2; }
  }
  moesz_eb_mode mode = !strcmp(mode_s, "rel") ? MOESZ_EB_REL : !strcmp(mode_s, "std") ? MOESZ_EB_STD : MOESZ_EB_ABS;
  if (strcmp(mode_s, "abs") && mode == MOESZ_EB_ABS) { fprintf(stderr, "moesz codec bench: bad --eb-mode '%s'\n", mode_s); return 2; }
  if (!(eb > 0) || threads < 1 || reps < 1 || rows < 1 || cols < 1) { fprintf(stderr, "moesz codec bench: bad --eb, --threads, --reps or shape\n"); return 2; }
  /* the input array */
  void *src = NULL;
  moesz_dtype dt = MOESZ_DT_BF16;
  size_t n;
  moesz_st *st = NULL;
  char label[512];
  if (file) {
    moesz_error e = {0};
    if (!tname) { fprintf(stderr, "moesz codec bench: --file needs --tensor NAME\n"); return 2; }
    if (moesz_st_open(file, &st, &e)) return moesz_cli_fail("codec bench", &e);
    const moesz_tensor *t = moesz_st_find(st, tname);
    if (!t || !(t->dtype == MOESZ_DT_F32 || t->dtype == MOESZ_DT_BF16 || t->dtype == MOESZ_DT_F16)) {
      fprintf(stderr, "moesz codec bench: %s: no F32/F16/BF16 tensor named %s\n", file, tname);
      moesz_st_close(st);
      return 1;
    }
    dt = t->dtype;
    n = t->numel;
    src = malloc(t->nbytes + 1);
    if (src) memcpy(src, t->data, t->nbytes);
    snprintf(label, sizeof label, "%s:%s", file, tname);
  } else {
    n = (size_t)rows * (size_t)cols;
    float *f = malloc(n * sizeof *f);
    src = malloc(n * 2);
    if (!f || !src) { free(f); free(src); fprintf(stderr, "moesz codec bench: out of memory\n"); return 1; }
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++) {
      double g = sqrt(-2 * log(ur(&s))) * cos(2 * M_PI * ur(&s)), v;
      if (!strcmp(dist, "gaussian")) v = g;
      else if (!strcmp(dist, "laplace")) { double u = ur(&s) - 0.5; v = -(u < 0 ? -1 : 1) * log(1 - 2 * fabs(u)) / sqrt(2.0); }
      else if (!strcmp(dist, "student-t")) { double c = 0; for (int k = 0; k < 5; k++) { double z = sqrt(-2 * log(ur(&s))) * cos(2 * M_PI * ur(&s)); c += z * z; } v = g / sqrt(c / 5) * sqrt(3.0 / 5.0); }
      else { free(f); free(src); fprintf(stderr, "moesz codec bench: unknown distribution '%s'\n", dist); return 2; }
      f[i] = (float)(0.02 * v);
    }
    moesz_f32_to_bf16_n(f, src, n);
    free(f);
    snprintf(label, sizeof label, "synthetic %s sigma 0.02, %ld x %ld bf16", dist, rows, cols);
  }
  if (!src) { moesz_st_close(st); fprintf(stderr, "moesz codec bench: out of memory\n"); return 1; }
  size_t es = moesz_dtype_size(dt), outb = n * 2;
  void *dec = malloc(n * 4), *ref = malloc(n * 4);
  float *a = malloc(n * 4), *b = malloc(n * 4);
  double *tv = malloc(sizeof *tv * (size_t)reps);
  if (!dec || !ref || !a || !b || !tv) { fprintf(stderr, "moesz codec bench: out of memory\n"); return 1; }
  /* memcpy of the delivered size, same run */
  for (int r = 0; r < reps; r++) { double t0 = moesz_time_now(); memcpy(dec, ref, outb); memcpy(ref, dec, 1); tv[r] = moesz_time_now() - t0; }
  double memcpy_gbps = (double)outb / median(tv, reps) / 1e9;
  /* entropy of the codes (the rate limit) */
  moesz_matview v = {.data = src, .dtype = dt, .rows = 1, .cols = (int64_t)n, .ld = (int64_t)n};
  moesz_matstats ms;
  double eb_abs = eb;
  if (mode != MOESZ_EB_ABS) {
    moesz_matview_stats(&v, 0, &ms, NULL);
    eb_abs = mode == MOESZ_EB_REL ? eb * (ms.max - ms.min) : eb * ms.std;
  }
  moesz_matview_stats(&v, eb_abs, &ms, NULL);
  moesz_to_f32(dt, src, a, n);
  if (!json) {
    printf("%s, %zu values, eb %g (%s) = %g absolute\n", label, n, eb, mode_s, eb_abs);
    printf("order-0 entropy of the codes H_q = %.4f bits/value; memcpy %.2f GB/s\n\n", ms.entropy_bits, memcpy_gbps);
    printf("pipeline  bits/value  H_q+      ratio  max_err/eb  verbatim  comp GB/s  decomp GB/s  decomp x%d GB/s\n", threads);
  }
  int status = 0;
  for (int pipe = 0; pipe < 2; pipe++) {
    moesz_codec_params p = {.mode = mode, .eb = eb, .pipeline = (moesz_pipeline)pipe, .out_dtype = MOESZ_DT_COUNT, .threads = 1};
    void *s = NULL;
    size_t len = 0;
    moesz_codec_info info;
    moesz_error e = {0};
    for (int r = 0; r < reps; r++) {
      free(s);
      double t0 = moesz_time_now();
      if (moesz_codec_compress(src, dt, n, &p, &s, &len, &info, &e)) { status = moesz_cli_fail("codec bench", &e); goto out; }
      tv[r] = moesz_time_now() - t0;
    }
    double comp = (double)outb / median(tv, reps) / 1e9;
    for (int r = 0; r < reps; r++) {
      double t0 = moesz_time_now();
      if (moesz_codec_decompress(s, len, MOESZ_DT_BF16, dec, n, 1, &e)) { status = moesz_cli_fail("codec bench", &e); free(s); goto out; }
      tv[r] = moesz_time_now() - t0;
    }
    double dcmp = (double)outb / median(tv, reps) / 1e9;
    for (int r = 0; r < reps; r++) {
      double t0 = moesz_time_now();
      moesz_codec_decompress(s, len, MOESZ_DT_BF16, dec, n, threads, &e);
      tv[r] = moesz_time_now() - t0;
    }
    double dcmp_t = (double)outb / median(tv, reps) / 1e9;
    moesz_codec_decompress(s, len, dt, dec, n, 1, &e);
    moesz_to_f32(dt, dec, b, n);
    double worst = 0;
    for (size_t i = 0; i < n; i++)
      if (isfinite(a[i]) && fabs((double)a[i] - b[i]) > worst) worst = fabs((double)a[i] - b[i]);
    double bits = 8.0 * (double)len / (double)n;
    if (json) {
      printf("{\"input\":\"%s\",\"pipeline\":\"%s\",\"eb\":%g,\"eb_mode\":\"%s\",\"eb_abs\":%g,\"values\":%zu,"
             "\"bits_per_value\":%.4f,\"entropy_bits\":%.4f,\"ratio\":%.4f,\"max_err_over_bound\":%.6f,"
             "\"verbatim_values\":%llu,\"compress_gbps_per_core\":%.4f,\"decompress_gbps_per_core\":%.4f,"
             "\"threads\":%d,\"decompress_gbps_threads\":%.4f,\"memcpy_gbps\":%.4f}\n",
             label, moesz_pipeline_name(p.pipeline), eb, mode_s, info.eb, n, bits, ms.entropy_bits,
             (double)(n * es) / (double)len, info.eb > 0 ? worst / info.eb : 0, (unsigned long long)info.verbatim,
             comp, dcmp, threads, dcmp_t, memcpy_gbps);
    } else {
      printf("%-8s  %10.4f  %+6.4f  %6.3fx  %10.4f  %8llu  %9.3f  %11.3f  %14.3f\n", moesz_pipeline_name(p.pipeline),
             bits, bits - ms.entropy_bits, (double)(n * es) / (double)len, info.eb > 0 ? worst / info.eb : 0,
             (unsigned long long)info.verbatim, comp, dcmp, dcmp_t);
    }
    free(s);
  }
out:
  free(src); free(dec); free(ref); free(a); free(b); free(tv);
  moesz_st_close(st);
  return status;
}
