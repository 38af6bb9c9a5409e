/* tests/test_tensor.c - dtype conversions against torch's rounding, the
 * safetensors reader on files the reference package wrote (single, sharded),
 * the writer's round trip, and rejection of hostile headers. */
#include "harness.h"
#include <unistd.h>
#include <sys/stat.h>
#include "moesz.h"
#include "base/util.h"

#define FIX "tests/fixtures/tensor/"

static const moesz_tensor *need(const moesz_st *st, const char *n) {
  const moesz_tensor *t = moesz_st_find(st, n);
  if (!t) fprintf(stderr, "  missing tensor %s\n", n);
  return t;
}

static int same_float_bits(float a, float b) {
  uint32_t x, y;
  memcpy(&x, &a, 4);
  memcpy(&y, &b, 4);
  return x == y || (isnan(a) && isnan(b));
}

TEST(reads_reference_file) {
  moesz_st *st;
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_st_open(FIX "mixed.safetensors", &st, &e), MOESZ_OK);
  if (!st) return;
  CHECK_EQ_INT(moesz_st_count(st), 15);
  CHECK(moesz_st_meta(st, "note") && !strcmp(moesz_st_meta(st, "note"), "moesz fixture"));
  CHECK(moesz_st_meta(st, "absent") == NULL);
  const moesz_tensor *t = need(st, "model.layers.0.mlp.weight");
  CHECK(t && t->dtype == MOESZ_DT_F32 && t->ndim == 3 && t->shape[0] == 3 && t->shape[2] == 5 && t->numel == 60);
  t = need(st, "scalar");
  CHECK(t && t->ndim == 0 && t->numel == 1 && t->nbytes == 4);
  if (t) { float v; memcpy(&v, t->data, 4); CHECK(v == 3.5f); }
  t = need(st, "empty");
  CHECK(t && t->numel == 0 && t->nbytes == 0);
  t = need(st, "i64");
  if (t) {
    float f[2];
    CHECK_EQ_INT(moesz_to_f32(t->dtype, t->data, f, 2), MOESZ_OK);
    CHECK(f[0] == 1099511627776.0f && f[1] == -7.0f);
  }
  t = need(st, "i8");
  if (t) { float f[10]; moesz_to_f32(t->dtype, t->data, f, 10); CHECK(f[0] == -5 && f[9] == 4); }
  CHECK(moesz_st_find(st, "nope") == NULL);
  moesz_st_close(st);
}

TEST(conversions_match_torch) {
  moesz_st *st;
  CHECK_EQ_INT(moesz_st_open(FIX "mixed.safetensors", &st, NULL), MOESZ_OK);
  if (!st) return;
  const moesz_tensor *src = need(st, "src_f32"), *bf = need(st, "src_as_bf16"), *hf = need(st, "src_as_f16");
  const moesz_tensor *bf32 = need(st, "bf16_as_f32"), *hf32 = need(st, "f16_as_f32");
  if (!src || !bf || !hf || !bf32 || !hf32) { moesz_st_close(st); CHECK(0); return; }
  size_t n = src->numel;
  float *x = malloc(n * 4), *y = malloc(n * 4), *z = malloc(n * 4);
  uint16_t *h = malloc(n * 2), *ref = malloc(n * 2);
  memcpy(x, src->data, n * 4);
  size_t bad_bf = 0, bad_hf = 0, bad_up = 0;
  moesz_f32_to_bf16_n(x, h, n);
  memcpy(ref, bf->data, n * 2);
  for (size_t i = 0; i < n; i++) bad_bf += h[i] != ref[i];
  moesz_bf16_to_f32_n(ref, y, n);
  memcpy(z, bf32->data, n * 4);
  for (size_t i = 0; i < n; i++) bad_up += !same_float_bits(y[i], z[i]);
  moesz_f32_to_f16_n(x, h, n);
  memcpy(ref, hf->data, n * 2);
  for (size_t i = 0; i < n; i++) {
    if (h[i] != ref[i]) { if (bad_hf < 3) fprintf(stderr, "  f16(%a) = %04x, torch %04x\n", x[i], h[i], ref[i]); bad_hf++; }
  }
  moesz_f16_to_f32_n(ref, y, n);
  memcpy(z, hf32->data, n * 4);
  for (size_t i = 0; i < n; i++) bad_up += !same_float_bits(y[i], z[i]);
  CHECK_EQ_INT(bad_bf, 0);
  CHECK_EQ_INT(bad_hf, 0);
  CHECK_EQ_INT(bad_up, 0);
  /* every f16 bit pattern widens exactly as torch does */
  const moesz_tensor *all = need(st, "all_f16_bits"), *allf = need(st, "all_f16_as_f32");
  if (all && allf) {
    size_t bad = 0;
    for (size_t i = 0; i < 65536; i++) {
      uint16_t b; float r;
      memcpy(&b, (const char *)all->data + 2 * i, 2);
      memcpy(&r, (const char *)allf->data + 4 * i, 4);
      float v = moesz_f16_to_f32(b);
      bad += !same_float_bits(v, r);
      if (!isnan(v)) bad += moesz_f32_to_f16(v) != b;  /* exact round trip */
    }
    CHECK_EQ_INT(bad, 0);
  }
  /* NaN stays NaN through narrowing */
  CHECK(isnan(moesz_bf16_to_f32(moesz_f32_to_bf16(NAN))));
  CHECK(isnan(moesz_f16_to_f32(moesz_f32_to_f16(NAN))));
  CHECK(moesz_f8e4m3_to_f32(0x38) == 1.0f && moesz_f8e4m3_to_f32(0x7e) == 448.0f && isnan(moesz_f8e4m3_to_f32(0x7f)));
  free(x); free(y); free(z); free(h); free(ref);
  moesz_st_close(st);
}

TEST(reads_sharded_folder) {
  moesz_st *st;
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_st_open(FIX "sharded", &st, &e), MOESZ_OK);
  if (!st) { fprintf(stderr, "  %s\n", e.msg); return; }
  CHECK_EQ_INT(moesz_st_count(st), 3);
  const moesz_tensor *t = need(st, "lm_head.weight");
  CHECK(t && t->dtype == MOESZ_DT_BF16 && t->shard == 1);
  t = need(st, "embed.weight");
  CHECK(t && t->shard == 0);
  moesz_st_close(st);
}

static char *tmpdir(void) {
  static char d[64];
  snprintf(d, sizeof d, "/tmp/moesz_tensor_%ld", (long)getpid());
  mkdir(d, 0700);
  return d;
}

TEST(writer_round_trip) {
  char path[256];
  snprintf(path, sizeof path, "%s/w.safetensors", tmpdir());
  moesz_stw *w;
  CHECK_EQ_INT(moesz_stw_create(path, &w, NULL), MOESZ_OK);
  float a[6] = {1, 2, 3, 4, 5, -0.0f};
  uint16_t b[3] = {0x3f80, 0xbf80, 0x7fc0};
  int64_t sa[2] = {2, 3}, sb[1] = {3};
  CHECK_EQ_INT(moesz_stw_add(w, "a.weight", MOESZ_DT_F32, 2, sa, a, NULL), MOESZ_OK);
  CHECK_EQ_INT(moesz_stw_add_copy(w, "we\"ird\\name", MOESZ_DT_BF16, 1, sb, b, NULL), MOESZ_OK);
  CHECK_EQ_INT(moesz_stw_add(w, "a.weight", MOESZ_DT_F32, 2, sa, a, NULL), MOESZ_E_ARG);
  CHECK_EQ_INT(moesz_stw_meta(w, "format", "pt", NULL), MOESZ_OK);
  CHECK_EQ_INT(moesz_stw_commit(w, NULL), MOESZ_OK);
  char *buf; size_t n;
  CHECK_EQ_INT(moesz_file_read_all(path, 1 << 20, &buf, &n, NULL), MOESZ_OK);
  uint64_t hl = 0;
  memcpy(&hl, buf, 8);
  CHECK((8 + hl) % 8 == 0);  /* data 8-byte aligned */
  free(buf);
  moesz_st *st;
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_st_open(path, &st, &e), MOESZ_OK);
  if (st) {
    const moesz_tensor *t = moesz_st_find(st, "a.weight");
    CHECK(t && t->nbytes == 24 && !memcmp(t->data, a, 24));
    t = moesz_st_find(st, "we\"ird\\name");
    CHECK(t && t->dtype == MOESZ_DT_BF16 && !memcmp(t->data, b, 6));
    CHECK(moesz_st_meta(st, "format") && !strcmp(moesz_st_meta(st, "format"), "pt"));
    moesz_st_close(st);
  }
  /* The reference reader agrees bit for bit (when Python + safetensors exist). */
  if (system("python3 -c 'import safetensors.numpy' 2>/dev/null") == 0) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "python3 -c \"from safetensors import safe_open; import numpy as np;"
             "f=safe_open('%s','np'); a=f.get_tensor('a.weight'); assert a.dtype==np.float32 and a.shape==(2,3), a;"
             "assert a.tobytes()==np.array([1,2,3,4,5,-0.0],dtype=np.float32).tobytes();"
             "assert sorted(f.keys())==['a.weight', 'we\\\"ird\\\\\\\\name'], f.keys();"
             "assert f.metadata()=={'format':'pt'}\"", path);
    CHECK_EQ_INT(system(cmd), 0);
  } else {
    printf("note: python3 safetensors not available, reference read-back not run\n");
  }
  unlink(path);
}

/* Builds a safetensors image from a header string and a data size. */
static uint8_t *image(const char *hdr, size_t dlen, uint64_t lie_len, size_t *n) {
  size_t hl = strlen(hdr);
  *n = 8 + hl + dlen;
  uint8_t *b = calloc(1, *n);
  uint64_t L = lie_len ? lie_len : hl;
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)(L >> (8 * i));
  memcpy(b + 8, hdr, hl);
  return b;
}

static int parse_str(const char *hdr, size_t dlen, uint64_t lie, moesz_error *e) {
  size_t n;
  uint8_t *b = image(hdr, dlen, lie, &n);
  moesz_st *st = NULL;
  int rc = moesz_st_parse(b, n, &st, e);
  moesz_st_close(st);
  free(b);
  return rc;
}

TEST(rejects_hostile_headers) {
  moesz_error e = {0};
  const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  CHECK_EQ_INT(parse_str(ok, 8, 0, &e), MOESZ_OK);
  CHECK_EQ_INT(parse_str(ok, 4, 0, &e), MOESZ_E_FORMAT);                 /* truncated data */
  CHECK(strstr(e.msg, "run past") != NULL);
  CHECK_EQ_INT(parse_str(ok, 12, 0, &e), MOESZ_E_FORMAT);                /* trailing bytes */
  CHECK_EQ_INT(parse_str(ok, 8, 1000, &e), MOESZ_E_FORMAT);              /* length beyond file */
  CHECK_EQ_INT(parse_str(ok, 8, 200000000, &e), MOESZ_E_FORMAT);         /* over 100 MB */
  CHECK_EQ_INT(parse_str("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, 0, &e), MOESZ_E_FORMAT);
  CHECK_EQ_INT(parse_str("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, 0, &e), MOESZ_E_FORMAT);
  CHECK(strstr(e.msg, "overlap") != NULL);
  CHECK_EQ_INT(parse_str("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, 0, &e), MOESZ_E_FORMAT);
  CHECK(strstr(e.msg, "hole") != NULL);
  CHECK_EQ_INT(parse_str("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, 0, &e), MOESZ_E_FORMAT);
  CHECK_EQ_INT(parse_str("{\"a\":{\"dtype\":\"X9\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0, &e), MOESZ_E_UNSUPPORTED);
  CHECK_EQ_INT(parse_str("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, 0, &e), MOESZ_E_FORMAT);
  CHECK_EQ_INT(parse_str("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, 0, &e), MOESZ_E_FORMAT);
  CHECK_EQ_INT(parse_str("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, 0, &e), MOESZ_E_FORMAT);
  CHECK_EQ_INT(parse_str("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                         "\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}", 8, 0, &e), MOESZ_E_FORMAT);
  CHECK_EQ_INT(parse_str("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]", 8, 0, &e), MOESZ_E_FORMAT);
  CHECK_EQ_INT(parse_str("[1,2]", 0, 0, &e), MOESZ_E_FORMAT);
  CHECK_EQ_INT(parse_str("{\"__metadata__\":{\"k\":1}}", 0, 0, &e), MOESZ_E_FORMAT);
  CHECK_EQ_INT(parse_str("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, 0, &e), MOESZ_E_FORMAT);
  uint8_t tiny[5] = {1, 0, 0, 0, 0};
  moesz_st *st;
  CHECK_EQ_INT(moesz_st_parse(tiny, 5, &st, &e), MOESZ_E_FORMAT);
}

TEST(rejects_bad_files_and_shards) {
  moesz_error e = {0};
  moesz_st *st;
  CHECK_EQ_INT(moesz_st_open("/nonexistent/model.safetensors", &st, &e), MOESZ_E_NOTFOUND);
  /* truncated copy of a real file */
  char *buf; size_t n;
  CHECK_EQ_INT(moesz_file_read_all(FIX "mixed.safetensors", 1 << 22, &buf, &n, NULL), MOESZ_OK);
  char path[256];
  snprintf(path, sizeof path, "%s/trunc.safetensors", tmpdir());
  for (size_t cut = 0; cut < n; cut += n / 7 + 1) {
    FILE *f = fopen(path, "wb");
    fwrite(buf, 1, cut, f);
    fclose(f);
    CHECK_EQ_INT(moesz_st_open(path, &st, &e), MOESZ_E_FORMAT);
  }
  free(buf);
  unlink(path);
  /* index naming a missing shard */
  char dir[256], idx[300];
  snprintf(dir, sizeof dir, "%s/shards", tmpdir());
  mkdir(dir, 0700);
  snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
  FILE *f = fopen(idx, "w");
  fputs("{\"weight_map\":{\"x\":\"model-00001-of-00001.safetensors\"}}", f);
  fclose(f);
  CHECK_EQ_INT(moesz_st_open(dir, &st, &e), MOESZ_E_NOTFOUND);
  CHECK(strstr(e.msg, "missing shard") != NULL);
  f = fopen(idx, "w");
  fputs("{\"weight_map\":{\"x\":\"../etc/passwd\"}}", f);
  fclose(f);
  CHECK_EQ_INT(moesz_st_open(dir, &st, &e), MOESZ_E_FORMAT);
  unlink(idx);
  rmdir(dir);
}

int main(void) {
  RUN(reads_reference_file);
  RUN(conversions_match_torch);
  RUN(reads_sharded_folder);
  RUN(writer_round_trip);
  RUN(rejects_hostile_headers);
  RUN(rejects_bad_files_and_shards);
  rmdir(tmpdir());
  return DONE();
}
