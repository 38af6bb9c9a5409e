/* tests/test_container.c - .msz round trips on every family fixture (raw and
 * zstd are bit-exact; stacked expert layouts reassemble), blob and manifest
 * corruption caught by checksums, truncated and hostile containers rejected. */
#include "harness.h"
#include <unistd.h>
#include <sys/stat.h>
#include "moesz.h"
#include "base/util.h"

static char TMP[128];

static int same_tensors(const moesz_st *a, const moesz_st *b) {
  if (moesz_st_count(a) != moesz_st_count(b)) return 0;
  for (size_t i = 0; i < moesz_st_count(a); i++) {
    const moesz_tensor *x = moesz_st_at(a, i), *y = moesz_st_find(b, x->name);
    if (!y || x->dtype != y->dtype || x->ndim != y->ndim || x->nbytes != y->nbytes) return 0;
    if (memcmp(x->shape, y->shape, sizeof x->shape[0] * (size_t)x->ndim) || memcmp(x->data, y->data, x->nbytes)) {
      fprintf(stderr, "  tensor %s differs\n", x->name);
      return 0;
    }
  }
  return 1;
}

static void round_trip(const char *family, moesz_msz_method method) {
  char dir[256], msz[256], out[256];
  snprintf(dir, sizeof dir, "tests/fixtures/%s", family);
  snprintf(msz, sizeof msz, "%s/%s.msz", TMP, family);
  snprintf(out, sizeof out, "%s/%s.out", TMP, family);
  moesz_error e = {0};
  moesz_model *m;
  CHECK_EQ_INT(moesz_model_open(dir, &m, &e), MOESZ_OK);
  if (!m) { fprintf(stderr, "  %s\n", e.msg); return; }
  moesz_msz_opts o;
  memset(&o, 0, sizeof o);
  o.method = method;
  moesz_msz_summary s;
  CHECK_EQ_INT(moesz_msz_write(m, msz, &o, &s, &e), MOESZ_OK);
  struct stat sb;
  CHECK(stat(msz, &sb) == 0 && (uint64_t)sb.st_size == s.total_bytes);
  moesz_msz *c;
  CHECK_EQ_INT(moesz_msz_open(msz, &c, &e), MOESZ_OK);
  if (c) {
    const moesz_config *cfg = moesz_msz_config(c);
    CHECK_EQ_INT(cfg->n_layers, m->cfg.n_layers);
    /* every routed expert matrix is there and decodes to what the model holds */
    int bad = 0, count = 0;
    for (int L = 0; L < cfg->n_layers; L++) {
      if (!cfg->is_moe[L]) continue;
      for (int x = 0; x < cfg->n_experts; x++)
        for (int mat = MOESZ_MAT_GATE; mat <= MOESZ_MAT_DOWN; mat++) {
          const moesz_msz_rec *r = moesz_msz_expert(c, L, x, 0, (moesz_mat)mat);
          moesz_matview v;
          if (!r || moesz_model_expert(m, L, x, 0, (moesz_mat)mat, &v, NULL)) { bad++; continue; }
          size_t n = (size_t)(v.rows * v.cols);
          float *a = malloc(n * 4), *b = malloc(n * 4);
          moesz_matview_to_f32(&v, a, NULL);
          bad += moesz_msz_read(c, r, MOESZ_DT_F32, b, &e) != MOESZ_OK || memcmp(a, b, n * 4) != 0;
          free(a); free(b);
          count++;
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(count, (int)moesz_msz_count(c));
    CHECK_EQ_INT(moesz_msz_export(c, out, 0, 0, &e), MOESZ_OK);
    moesz_msz_close(c);
    moesz_st *back;
    char st[300];
    snprintf(st, sizeof st, "%s/model.safetensors", out);
    CHECK_EQ_INT(moesz_st_open(st, &back, &e), MOESZ_OK);
    if (back) { CHECK_MSG(same_tensors(m->st, back), "%s tensors differ after round trip", family); moesz_st_close(back); }
    snprintf(st, sizeof st, "%s/config.json", out);
    moesz_config cfg2;
    CHECK_EQ_INT(moesz_config_load(st, &cfg2, &e), MOESZ_OK);
    unlink(st);
    snprintf(st, sizeof st, "%s/model.safetensors", out);
    unlink(st);
    rmdir(out);
  }
  moesz_model_close(m);
  unlink(msz);
}

TEST(round_trip_raw_every_family) {
  const char *fam[] = {"mixtral", "mixtral_stacked", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek", "llama"};
  for (size_t i = 0; i < sizeof fam / sizeof *fam; i++) round_trip(fam[i], MOESZ_MSZ_RAW);
}

TEST(round_trip_zstd) {
  round_trip("mixtral", MOESZ_MSZ_ZSTD);
  round_trip("mixtral_stacked", MOESZ_MSZ_ZSTD);
  round_trip("deepseek", MOESZ_MSZ_ZSTD);
}

static uint8_t *make_container(size_t *n) {
  char msz[256];
  snprintf(msz, sizeof msz, "%s/c.msz", TMP);
  moesz_model *m;
  if (moesz_model_open("tests/fixtures/mixtral", &m, NULL)) return NULL;
  moesz_msz_opts o;
  memset(&o, 0, sizeof o);
  o.method = MOESZ_MSZ_ZSTD;
  int rc = moesz_msz_write(m, msz, &o, NULL, NULL);
  moesz_model_close(m);
  char *buf = NULL;
  if (rc || moesz_file_read_all(msz, 1 << 24, &buf, n, NULL)) return NULL;
  unlink(msz);
  return (uint8_t *)buf;
}

TEST(corruption_is_detected) {
  size_t n;
  uint8_t *img = make_container(&n);
  CHECK(img != NULL);
  if (!img) return;
  moesz_msz *c;
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_msz_open_mem(img, n, &c, &e), MOESZ_OK);
  const moesz_msz_rec *r = c ? moesz_msz_at(c, 3) : NULL;
  CHECK(r != NULL);
  if (!r) { moesz_msz_close(c); free(img); return; }
  size_t off = (size_t)r->off + (size_t)r->len / 2, nb = r->raw_bytes;
  float *dst = malloc(nb * 4);
  CHECK_EQ_INT(moesz_msz_read(c, r, MOESZ_DT_F32, dst, &e), MOESZ_OK);
  img[off] ^= 0x10;                               /* flip one bit inside an expert blob */
  CHECK_EQ_INT(moesz_msz_read(c, r, MOESZ_DT_F32, dst, &e), MOESZ_E_CHECKSUM);
  CHECK(strstr(e.msg, "checksum") != NULL);
  img[off] ^= 0x10;
  moesz_msz_close(c);
  free(dst);
  /* a flipped byte in the manifest is caught at open */
  uint64_t moff = 0;
  for (int i = 7; i >= 0; i--) moff = (moff << 8) | img[16 + i];
  img[moff + 10] ^= 1;
  CHECK_EQ_INT(moesz_msz_open_mem(img, n, &c, &e), MOESZ_E_CHECKSUM);
  img[moff + 10] ^= 1;
  /* truncations at many points */
  int bad = 0;
  for (size_t cut = 0; cut < n; cut += n / 23 + 1) {
    int rc = moesz_msz_open_mem(img, cut, &c, &e);
    bad += rc == MOESZ_OK;
    if (!rc) moesz_msz_close(c);
  }
  CHECK_EQ_INT(bad, 0);
  /* bad magic and version */
  img[0] = 'X';
  CHECK_EQ_INT(moesz_msz_open_mem(img, n, &c, &e), MOESZ_E_FORMAT);
  img[0] = 'M';
  img[8] = 9;
  CHECK_EQ_INT(moesz_msz_open_mem(img, n, &c, &e), MOESZ_E_UNSUPPORTED);
  free(img);
  CHECK_EQ_INT(moesz_msz_open("/nonexistent.msz", &c, &e), MOESZ_E_NOTFOUND);
}

TEST(layer_eb_lossless_override_and_codec_absent_error) {
  moesz_model *m;
  CHECK_EQ_INT(moesz_model_open("tests/fixtures/olmoe", &m, NULL), MOESZ_OK);
  if (!m) return;
  char msz[256];
  snprintf(msz, sizeof msz, "%s/o.msz", TMP);
  moesz_msz_opts o;
  memset(&o, 0, sizeof o);
  o.method = MOESZ_MSZ_ZSTD;
  double leb[MOESZ_MAX_LAYERS] = {0};
  for (int L = 0; L < m->cfg.n_layers; L++) leb[L] = -1;    /* every layer lossless */
  o.layer_eb = leb;
  moesz_msz_summary s;
  CHECK_EQ_INT(moesz_msz_write(m, msz, &o, &s, NULL), MOESZ_OK);
  CHECK(s.expert_stored_bytes > 0 && s.expert_stored_bytes <= s.expert_raw_bytes);
  CHECK_EQ_INT(s.verbatim_values, 0);
  unlink(msz);
  moesz_model_close(m);
}

int main(void) {
  snprintf(TMP, sizeof TMP, "/tmp/moesz_container_%ld", (long)getpid());
  mkdir(TMP, 0700);
  RUN(round_trip_raw_every_family);
  RUN(round_trip_zstd);
  RUN(corruption_is_detected);
  RUN(layer_eb_lossless_override_and_codec_absent_error);
  rmdir(TMP);
  return DONE();
}
