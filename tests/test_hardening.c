/* tests/test_hardening.c - the CLI never damages a user's files: an output
 * that is (or holds) an input is refused for every command that writes, and
 * folder outputs (decompress, resmoe, synth) appear whole or not at all:
 * written beside the target and renamed at the end, an existing folder
 * refused without --force and swapped atomically with it. */
#include "harness.h"
#include "harness_engine.h"
#include "harness_tok.h"
#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include <xxhash.h>
#include "moesz.h"
#include "base/bytes.h"
#include "base/util.h"

static char T[128];          /* scratch folder of this run */
static const char *BIN;

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs `moesz ARGS 2>&1` into out; returns the exit status. */
static char OUT[1 << 16];
static int cli(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int cli(const char *fmt, ...) {
  char args[1536], cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  snprintf(cmd, sizeof cmd, "%s %s 2>&1", BIN, args);
  return harness_run_cmd(cmd, OUT, sizeof OUT);
}

/* Number of entries in dir whose name contains ".tmp." or ".old.". */
static int leftovers(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, ".tmp.") || strstr(e->d_name, ".old.");
  closedir(d);
  return n;
}

static int exists(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int exists(const char *fmt, ...) {
  char p[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p, sizeof p, fmt, ap);
  va_end(ap);
  return access(p, F_OK) == 0;
}

static int setup(void) {
  BIN = getenv("MOESZ_BIN");
  if (!BIN || access(BIN, X_OK)) return 0;
  snprintf(T, sizeof T, "/tmp/moesz_hard_%ld", (long)getpid());
  sh("rm -rf %s && mkdir -p %s", T, T);
  return 1;
}

/* Item 1: compress, decompress and resmoe refuse an output that is an input
 * file (same path, a symbolic link to it, a hard link to it) or a folder
 * that holds one; the input is left byte for byte as it was. */
TEST(output_over_input_is_refused) {
  if (!setup()) SKIP("MOESZ_BIN not set (make check sets it)");
  CHECK_EQ_INT(sh("cp -r tests/fixtures/mixtral %s/m && cp -r tests/fixtures/mixtral %s/orig", T, T), 0);
  static const char *victims[] = {"model.safetensors", "config.json"};
  for (int i = 0; i < 2; i++) {
    CHECK_EQ_INT(cli("compress %s/m -o %s/m/%s -q", T, T, victims[i]), 1);
    CHECK_MSG(strstr(OUT, "is the input file") != NULL, "%s", OUT);
  }
  CHECK_EQ_INT(sh("ln -s %s/m/model.safetensors %s/sym && ln %s/m/model.safetensors %s/hard", T, T, T, T), 0);
  CHECK_EQ_INT(cli("compress %s/m -o %s/sym -q", T, T), 1);
  CHECK_MSG(strstr(OUT, "is the input file") != NULL, "%s", OUT);
  CHECK_EQ_INT(cli("compress %s/m -o %s/hard -q", T, T), 1);
  CHECK_MSG(strstr(OUT, "is the input file") != NULL, "%s", OUT);
  CHECK_EQ_INT(cli("compress %s/m -o %s/m/../m/./config.json -q", T, T), 1);
  CHECK_EQ_INT(cli("compress %s/m -o %s/m -q", T, T), 1);
  CHECK_MSG(strstr(OUT, "is a folder") != NULL, "%s", OUT);
  CHECK_EQ_INT(sh("diff -r %s/m %s/orig >/dev/null", T, T), 0);
  CHECK_EQ_INT(leftovers(T), 0);
  /* a container beside the weights is fine */
  CHECK_EQ_INT(cli("compress %s/m -o %s/m/m.msz -q", T, T), 0);
  /* decompress: the output folder must not hold the container, nor be it */
  CHECK_EQ_INT(cli("decompress %s/m/m.msz -o %s/m -q", T, T), 1);
  CHECK_MSG(strstr(OUT, "holds the input") != NULL, "%s", OUT);
  CHECK_EQ_INT(cli("decompress %s/m/m.msz -o %s/m -q --force", T, T), 1);
  CHECK_EQ_INT(cli("decompress %s/m/m.msz -o %s -q --force", T, T), 1);
  CHECK_EQ_INT(cli("decompress %s/m/m.msz -o %s/m/m.msz -q", T, T), 1);
  CHECK(exists("%s/m/m.msz", T) && exists("%s/m/model.safetensors", T));
  CHECK_EQ_INT(sh("rm %s/m/m.msz && diff -r %s/m %s/orig >/dev/null", T, T, T), 0);
  /* resmoe: not into the model's folder (even with --force), no report over an input */
  CHECK_EQ_INT(cli("resmoe %s/m -o %s/m --keep 0.5", T, T), 1);
  CHECK_MSG(strstr(OUT, "holds the input") != NULL, "%s", OUT);
  CHECK_EQ_INT(cli("resmoe %s/m -o %s/m --force --keep 0.5", T, T), 1);
  CHECK_EQ_INT(cli("resmoe %s/m -o %s/r --keep 0.5 --report %s/m/config.json", T, T, T), 1);
  CHECK_MSG(strstr(OUT, "is the input file") != NULL, "%s", OUT);
  CHECK(!exists("%s/r", T));
  CHECK_EQ_INT(sh("diff -r %s/m %s/orig >/dev/null", T, T), 0);
  CHECK_EQ_INT(leftovers(T), 0);
  sh("rm -rf %s", T);
}

/* The library refuses too: exporting a container into the folder that holds
 * it, even with force. */
TEST(export_never_replaces_its_own_folder) {
  char dir[128], msz[160];
  snprintf(dir, sizeof dir, "/tmp/moesz_hard_lib_%ld", (long)getpid());
  snprintf(msz, sizeof msz, "%s/m.msz", dir);
  CHECK_EQ_INT(sh("rm -rf %s && cp -r tests/fixtures/mixtral %s", dir, dir), 0);
  moesz_model *m = NULL;
  CHECK_EQ_INT(moesz_model_open(dir, &m, NULL), MOESZ_OK);
  moesz_msz_opts o;
  memset(&o, 0, sizeof o);
  if (m) CHECK_EQ_INT(moesz_msz_write(m, msz, &o, NULL, NULL), MOESZ_OK);
  moesz_model_close(m);
  moesz_msz *c = NULL;
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_msz_open(msz, &c, &e), MOESZ_OK);
  if (c) {
    CHECK_EQ_INT(moesz_msz_export(c, dir, 1, 0, &e), MOESZ_E_ARG);
    CHECK_MSG(strstr(e.msg, "holds the input") != NULL, "%s", e.msg);
    moesz_msz_close(c);
  }
  CHECK(exists("%s", msz) && exists("%s/model.safetensors", dir));
  sh("rm -rf %s", dir);
}

/* Flips one byte in the middle of the first expert blob of a container. */
static int corrupt_expert(const char *msz) {
  moesz_msz *c;
  if (moesz_msz_open(msz, &c, NULL)) return -1;
  const moesz_msz_rec *r = moesz_msz_at(c, moesz_msz_count(c) / 2);
  long off = r ? (long)(r->off + r->len / 2) : -1;
  moesz_msz_close(c);
  FILE *f = off >= 0 ? fopen(msz, "r+b") : NULL;
  if (!f) return -1;
  fseek(f, off, SEEK_SET);
  int b = fgetc(f);
  fseek(f, off, SEEK_SET);
  fputc(b ^ 0x5a, f);
  fclose(f);
  return 0;
}

/* Item 2: a failed decompress leaves nothing behind (new folder) or the old
 * folder untouched (existing one); an existing non-empty folder needs
 * --force, which swaps the whole folder. */
TEST(decompress_is_all_or_nothing) {
  if (!setup()) SKIP("MOESZ_BIN not set (make check sets it)");
  CHECK_EQ_INT(cli("compress tests/fixtures/qwen2_moe -o %s/q.msz --method zstd -q", T), 0);
  CHECK_EQ_INT(sh("cp %s/q.msz %s/bad.msz", T, T), 0);
  char bad[256];
  snprintf(bad, sizeof bad, "%s/bad.msz", T);
  CHECK_EQ_INT(corrupt_expert(bad), 0);
  /* into a new folder: fails on the checksum, leaves no folder */
  CHECK_EQ_INT(cli("decompress %s/bad.msz -o %s/new -q", T, T), 1);
  CHECK_MSG(strstr(OUT, "checksum") != NULL, "%s", OUT);
  CHECK(!exists("%s/new", T));
  CHECK_EQ_INT(leftovers(T), 0);
  /* into an existing model folder: refused without --force, untouched */
  CHECK_EQ_INT(sh("cp -r tests/fixtures/mixtral %s/m && cp -r tests/fixtures/mixtral %s/orig && "
                  "echo keep > %s/m/notes.txt", T, T, T), 0);
  CHECK_EQ_INT(cli("decompress %s/q.msz -o %s/m -q", T, T), 1);
  CHECK_MSG(strstr(OUT, "not empty") && strstr(OUT, "--force"), "%s", OUT);
  /* with --force and a corrupt blob: fails, the old folder is intact */
  CHECK_EQ_INT(cli("decompress %s/bad.msz -o %s/m -q --force", T, T), 1);
  CHECK_EQ_INT(sh("rm %s/m/notes.txt && diff -r %s/m %s/orig >/dev/null", T, T, T), 0);
  CHECK_EQ_INT(leftovers(T), 0);
  /* with --force and a good container: the folder is the container's model, nothing else */
  CHECK_EQ_INT(sh("echo keep > %s/m/notes.txt", T), 0);
  CHECK_EQ_INT(cli("decompress %s/q.msz -o %s/m/ -q --force", T, T), 0);
  CHECK_EQ_INT(sh("cmp -s %s/m/config.json tests/fixtures/qwen2_moe/config.json", T), 0);
  CHECK(!exists("%s/m/notes.txt", T));
  CHECK_EQ_INT(leftovers(T), 0);
  moesz_model *a = NULL, *b = NULL;
  char p[256];
  snprintf(p, sizeof p, "%s/m", T);
  CHECK_EQ_INT(moesz_model_open(p, &b, NULL), MOESZ_OK);
  CHECK_EQ_INT(moesz_model_open("tests/fixtures/qwen2_moe", &a, NULL), MOESZ_OK);
  if (a && b) {
    int diff = moesz_st_count(a->st) != moesz_st_count(b->st);
    for (size_t i = 0; !diff && i < moesz_st_count(a->st); i++) {
      const moesz_tensor *x = moesz_st_at(a->st, i), *y = moesz_st_find(b->st, x->name);
      diff = !y || y->nbytes != x->nbytes || memcmp(x->data, y->data, x->nbytes);
    }
    CHECK_EQ_INT(diff, 0);
  }
  moesz_model_close(a);
  moesz_model_close(b);
  /* an existing empty folder is filled without --force */
  CHECK_EQ_INT(sh("mkdir %s/empty", T), 0);
  CHECK_EQ_INT(cli("decompress %s/q.msz -o %s/empty -q", T, T), 0);
  CHECK(exists("%s/empty/model.safetensors", T));
  /* --force never replaces a folder that is not a model folder, nor a file */
  CHECK_EQ_INT(sh("mkdir %s/docs && echo x > %s/docs/a.txt && echo y > %s/file", T, T, T), 0);
  CHECK_EQ_INT(cli("decompress %s/q.msz -o %s/docs -q --force", T, T), 1);
  CHECK_MSG(strstr(OUT, "not a model folder") != NULL, "%s", OUT);
  CHECK(exists("%s/docs/a.txt", T));
  CHECK_EQ_INT(cli("decompress %s/q.msz -o %s/file -q --force", T, T), 1);
  CHECK_MSG(strstr(OUT, "not a folder") != NULL, "%s", OUT);
  CHECK_EQ_INT(leftovers(T), 0);
  sh("rm -rf %s", T);
}

/* The other folder writers follow the same rule. */
TEST(resmoe_and_synth_need_force) {
  if (!setup()) SKIP("MOESZ_BIN not set (make check sets it)");
  CHECK_EQ_INT(cli("synth --like olmoe --layers 1 --hidden 32 --expert-width 16 --vocab 64 --heads 2 "
                   "--kv-heads 2 --experts 4 -o %s/s", T), 0);
  CHECK_EQ_INT(sh("cp %s/s/model.safetensors %s/s1", T, T), 0);
  CHECK_EQ_INT(cli("synth --like olmoe --layers 1 --hidden 32 --expert-width 16 --vocab 64 --heads 2 "
                   "--kv-heads 2 --experts 4 --seed 9 -o %s/s", T), 1);
  CHECK_MSG(strstr(OUT, "not empty") != NULL, "%s", OUT);
  CHECK_EQ_INT(sh("cmp -s %s/s/model.safetensors %s/s1", T, T), 0);
  CHECK_EQ_INT(cli("synth --like olmoe --layers 1 --hidden 32 --expert-width 16 --vocab 64 --heads 2 "
                   "--kv-heads 2 --experts 4 --seed 9 -o %s/s --force", T), 0);
  CHECK(sh("cmp -s %s/s/model.safetensors %s/s1", T, T) != 0);
  /* --msz: the same checkpoint straight into a container, equal to synth + compress */
  CHECK_EQ_INT(cli("synth --like olmoe --layers 1 --hidden 32 --expert-width 16 --vocab 64 --heads 2 "
                   "--kv-heads 2 --experts 4 --seed 9 --msz --codec compute -q -o %s/d.msz", T), 0);
  CHECK_EQ_INT(cli("compress %s/s --method sz --codec compute -q -o %s/c.msz", T, T), 0);
  CHECK_EQ_INT(sh("cmp -s %s/d.msz %s/c.msz", T, T), 0);
  CHECK_EQ_INT(cli("synth --like olmoe --layers 1 --eb 1e-3 -o %s/x", T), 2);   /* --eb without --msz */
  CHECK_MSG(strstr(OUT, "need --msz") != NULL, "%s", OUT);
  CHECK_EQ_INT(cli("synth --like olmoe --layers 1 --msz --method zstd --codec fast -o %s/x.msz", T), 2);
  CHECK_EQ_INT(cli("synth --like olmoe --layers 1 --msz --method lz4 -o %s/x.msz", T), 2);
  CHECK(!exists("%s/x.msz", T));
  CHECK_EQ_INT(cli("resmoe tests/fixtures/mixtral -o %s/s --keep 0.5", T), 1);
  CHECK_MSG(strstr(OUT, "not empty") != NULL, "%s", OUT);
  CHECK_EQ_INT(cli("resmoe tests/fixtures/mixtral -o %s/s --keep 0.5 --force --report %s/s/report.json", T, T), 0);
  CHECK_EQ_INT(sh("cmp -s %s/s/config.json tests/fixtures/mixtral/config.json", T), 0);
  CHECK(exists("%s/s/report.json", T));
  CHECK_EQ_INT(leftovers(T), 0);
  sh("rm -rf %s", T);
}


/* ---- item 4: complete validation at open ---------------------------------------- */

static uint64_t rd64le(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
static void wr64le(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* A container of fixture fam written with method (codec: eb 1e-3), as bytes. */
static uint8_t *container_of(const char *fam, moesz_msz_method method, size_t *n) {
  char dir[256], msz[256];
  snprintf(dir, sizeof dir, "tests/fixtures/%s", fam);
  snprintf(msz, sizeof msz, "/tmp/moesz_hard_c_%ld.msz", (long)getpid());
  int rc = harness_write_msz(dir, method, msz);
  char *buf = NULL;
  if (rc || moesz_file_read_all(msz, 1 << 26, &buf, n, NULL)) return NULL;
  unlink(msz);
  return (uint8_t *)buf;
}

/* The same container with its manifest edited by edit() and the header's
 * manifest length, checksum and file size recomputed: a lying manifest with a
 * valid checksum. Opens it and returns the status (message in e). */
static int open_edited(const uint8_t *img, size_t n, void (*edit)(cJSON *, int), int arg, moesz_error *e) {
  uint64_t moff = rd64le(img + 16);
  cJSON *man = cJSON_ParseWithLength((const char *)img + moff, n - moff);
  if (!man) return 999;
  edit(man, arg);
  char *txt = cJSON_PrintUnformatted(man);
  cJSON_Delete(man);
  size_t ml = strlen(txt), total = moff + ml;
  uint8_t *out = malloc(total);
  memcpy(out, img, moff);
  memcpy(out + moff, txt, ml);
  wr64le(out + 24, ml);
  wr64le(out + 32, XXH3_64bits(txt, ml));
  wr64le(out + 40, total);
  free(txt);
  moesz_msz *c = NULL;
  int rc = moesz_msz_open_mem(out, total, &c, e);
  moesz_msz_close(c);
  free(out);
  return rc;
}

static void ed_none(cJSON *m, int a) { (void)m; (void)a; }
static void ed_drop_expert(cJSON *m, int a) { cJSON_DeleteItemFromArray(cJSON_GetObjectItem(m, "experts"), a); }
static void ed_no_experts(cJSON *m, int a) {
  (void)a;
  cJSON_ReplaceItemInObject(m, "experts", cJSON_CreateArray());
}
/* grows dimension 0 of source a by one: the views no longer cover it */
static void ed_pad_source(cJSON *m, int a) {
  cJSON *sh = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(m, "sources"), a), "shape");
  cJSON *d0 = cJSON_GetArrayItem(sh, 0);
  cJSON_SetNumberValue(d0, d0->valuedouble + 1);
}
/* doubles the bound recorded for expert record a */
static void ed_eb(cJSON *m, int a) {
  cJSON *eb = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(m, "experts"), a), "eb");
  cJSON_SetNumberValue(eb, eb->valuedouble * 2);
}
/* record a takes record 0's source and view: one region twice, another never */
static void ed_overlap(cJSON *m, int a) {
  cJSON *ex = cJSON_GetObjectItem(m, "experts"), *x0 = cJSON_GetArrayItem(ex, 0), *xa = cJSON_GetArrayItem(ex, a);
  static const char *keys[] = {"tensor", "view_off", "view_ld", "view_t"};
  for (int k = 0; k < 4; k++)
    cJSON_ReplaceItemInObject(xa, keys[k], cJSON_Duplicate(cJSON_GetObjectItem(x0, keys[k]), 1));
}
/* record a gets a routed-layer number the config says is dense (deepseek layer 0) */
static void ed_layer(cJSON *m, int a) {
  cJSON *x = cJSON_GetArrayItem(cJSON_GetObjectItem(m, "experts"), a);
  cJSON_SetNumberValue(cJSON_GetObjectItem(x, "layer"), 0);
}
static void ed_version(cJSON *m, int a) { cJSON_SetNumberValue(cJSON_GetObjectItem(m, "version"), a); }
/* a lossless record that claims a bound */
static void ed_lossless_eb(cJSON *m, int a) {
  cJSON *x = cJSON_GetArrayItem(cJSON_GetObjectItem(m, "experts"), a);
  cJSON_SetNumberValue(cJSON_GetObjectItem(x, "eb"), 1e-3);
}

TEST(lying_manifests_are_rejected_at_open) {
  size_t n = 0, nc = 0, ns = 0, nd = 0;
  uint8_t *z = container_of("mixtral", MOESZ_MSZ_ZSTD, &n);
  uint8_t *cd = container_of("mixtral", MOESZ_MSZ_CODEC, &nc);
  uint8_t *st = container_of("mixtral_stacked", MOESZ_MSZ_RAW, &ns);
  uint8_t *ds = container_of("deepseek", MOESZ_MSZ_RAW, &nd);
  CHECK(z && cd && st && ds);
  if (!z || !cd || !st || !ds) { free(z); free(cd); free(st); free(ds); return; }
  moesz_error e = {0};
  /* the unedited re-serialisation opens: the edits below are what is refused */
  CHECK_EQ_INT(open_edited(z, n, ed_none, 0, &e), MOESZ_OK);
  CHECK_EQ_INT(open_edited(cd, nc, ed_none, 0, &e), MOESZ_OK);
  CHECK_EQ_INT(open_edited(st, ns, ed_none, 0, &e), MOESZ_OK);
  CHECK_EQ_INT(open_edited(ds, nd, ed_none, 0, &e), MOESZ_OK);
  CHECK_EQ_INT(open_edited(z, n, ed_drop_expert, 4, &e), MOESZ_E_FORMAT);
  CHECK_MSG(strstr(e.msg, "no up matrix") || strstr(e.msg, "no gate matrix") || strstr(e.msg, "no down matrix"), "%s", e.msg);
  CHECK_EQ_INT(open_edited(z, n, ed_no_experts, 0, &e), MOESZ_E_FORMAT);
  CHECK_MSG(strstr(e.msg, "layer 0 expert 0: no gate matrix") != NULL, "%s", e.msg);
  CHECK_EQ_INT(open_edited(z, n, ed_pad_source, 0, &e), MOESZ_E_FORMAT);
  CHECK_MSG(strstr(e.msg, "cover") != NULL, "%s", e.msg);
  CHECK_EQ_INT(open_edited(st, ns, ed_pad_source, 1, &e), MOESZ_E_FORMAT);
  CHECK_MSG(strstr(e.msg, "cover") != NULL, "%s", e.msg);
  CHECK_EQ_INT(open_edited(z, n, ed_overlap, 3, &e), MOESZ_E_FORMAT);
  CHECK_MSG(strstr(e.msg, "overlap") != NULL, "%s", e.msg);
  CHECK_EQ_INT(open_edited(st, ns, ed_overlap, 5, &e), MOESZ_E_FORMAT);
  CHECK_EQ_INT(open_edited(cd, nc, ed_eb, 2, &e), MOESZ_E_FORMAT);
  CHECK_MSG(strstr(e.msg, "bound") && strstr(e.msg, "differs"), "%s", e.msg);
  CHECK_EQ_INT(open_edited(z, n, ed_lossless_eb, 2, &e), MOESZ_E_FORMAT);
  CHECK_EQ_INT(open_edited(ds, nd, ed_layer, 7, &e), MOESZ_E_FORMAT);
  CHECK_MSG(strstr(e.msg, "not a routed expert matrix") || strstr(e.msg, "two blobs"), "%s", e.msg);
  CHECK_EQ_INT(open_edited(z, n, ed_version, 2, &e), MOESZ_E_FORMAT);
  /* header: unknown flags and non-zero reserved bytes */
  moesz_msz *c = NULL;
  z[12] = 1;
  CHECK_EQ_INT(moesz_msz_open_mem(z, n, &c, &e), MOESZ_E_UNSUPPORTED);
  CHECK_MSG(strstr(e.msg, "flags") != NULL, "%s", e.msg);
  z[12] = 0;
  z[50] = 7;
  CHECK_EQ_INT(moesz_msz_open_mem(z, n, &c, &e), MOESZ_E_FORMAT);
  CHECK_MSG(strstr(e.msg, "reserved") != NULL, "%s", e.msg);
  z[50] = 0;
  CHECK_EQ_INT(moesz_msz_open_mem(z, n, &c, &e), MOESZ_OK);
  moesz_msz_close(c);
  free(z); free(cd); free(st); free(ds);
}

/* A codec stream with a non-zero reserved header byte or chunk-header byte is
 * refused (unknown flags), not decoded. */
TEST(codec_reserved_bytes_rejected) {
  enum { N = 1024 };
  float f[N];
  for (int i = 0; i < N; i++) f[i] = (float)(0.02 * sin(i * 0.37));
  moesz_codec_params p = {.eb = 1e-3, .pipeline = MOESZ_PIPE_ENTROPY, .out_dtype = MOESZ_DT_COUNT, .threads = 1, .chunk = 512};
  void *s = NULL;
  size_t len = 0;
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_codec_compress(f, MOESZ_DT_F32, N, &p, &s, &len, NULL, &e), MOESZ_OK);
  if (!s) return;
  uint8_t *b = s;
  float out[N];
  CHECK_EQ_INT(moesz_codec_decompress(s, len, MOESZ_DT_F32, out, N, 1, &e), MOESZ_OK);
  moesz_codec_info info;
  CHECK_EQ_INT(moesz_codec_info_read(s, len, &info, &e), MOESZ_OK);
  size_t tb = (size_t)b[12] | (size_t)b[13] << 8 | (size_t)b[14] << 16 | (size_t)b[15] << 24;
  size_t idx_len = tb + info.nchunks * 24;
  /* header bytes 9..11 and 44..47 must be zero (checksum made to match) */
  static const int hdr_bytes[] = {9, 10, 11, 44, 47};
  for (int k = 0; k < 5; k++) {
    b[hdr_bytes[k]] ^= 1;
    wr64le(b + 56, XXH3_64bits(b, 56) ^ XXH3_64bits(b + 64, idx_len));
    CHECK_EQ_INT(moesz_codec_decompress(s, len, MOESZ_DT_F32, out, N, 1, &e), MOESZ_E_FORMAT);
    CHECK_MSG(strstr(e.msg, "reserved") != NULL, "byte %d: %s", hdr_bytes[k], e.msg);
    b[hdr_bytes[k]] ^= 1;
  }
  wr64le(b + 56, XXH3_64bits(b, 56) ^ XXH3_64bits(b + 64, idx_len));
  CHECK_EQ_INT(moesz_codec_decompress(s, len, MOESZ_DT_F32, out, N, 1, &e), MOESZ_OK);
  /* chunk 0's header bytes 1..3 (chunk and header checksums made to match) */
  uint8_t *idx = b + 64 + tb;
  uint64_t off = rd64le(idx), l = rd64le(idx + 8);
  b[off + 2] = 1;
  wr64le(idx + 16, XXH3_64bits(b + off, l));
  wr64le(b + 56, XXH3_64bits(b, 56) ^ XXH3_64bits(b + 64, idx_len));
  CHECK_EQ_INT(moesz_codec_decompress(s, len, MOESZ_DT_F32, out, N, 1, &e), MOESZ_E_FORMAT);
  CHECK_MSG(strstr(e.msg, "chunk 0") != NULL, "%s", e.msg);
  free(s);
}

/* ---- item 10: prefetch errors surface; one set of byte-order helpers -------------- */

/* A background prefetch of a corrupt expert is counted and its message kept
 * in the stats (it used to vanish); a later request reports the error. */
TEST(prefetch_failures_are_counted) {
  size_t n = 0;
  uint8_t *img = container_of("mixtral", MOESZ_MSZ_ZSTD, &n);
  CHECK(img != NULL);
  if (!img) return;
  moesz_msz *c = NULL;
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_msz_open_mem(img, n, &c, &e), MOESZ_OK);
  if (!c) { free(img); return; }
  const moesz_msz_rec *r = moesz_msz_expert(c, 0, 1, 0, MOESZ_MAT_UP);
  CHECK(r != NULL);
  if (r) img[r->off + r->len / 2] ^= 0x20;
  moesz_cache_opts o = {.budget_bytes = 0, .policy = MOESZ_CACHE_LRU, .dtype = MOESZ_DT_COUNT, .prefetch = 1,
                        .prefetch_threads = 1};
  moesz_cache *k = NULL;
  CHECK_EQ_INT(moesz_cache_create(c, &o, &k, &e), MOESZ_OK);
  if (k) {
    int32_t ex[2] = {1, 2};
    moesz_cache_prefetch(k, 0, ex, 2);
    moesz_cache_stats st;
    memset(&st, 0, sizeof st);
    for (int t = 0; t < 5000; t++) {        /* up to 5 s for the background thread */
      moesz_cache_stats_get(k, &st);
      if (st.prefetch_failed >= 1 && st.bytes_decoded > 0) break;   /* expert 1 failed, expert 2 decoded */
      usleep(1000);
    }
    CHECK_EQ_INT(st.prefetch_failed, 1);
    CHECK_MSG(strstr(st.prefetch_error, "layer 0 expert 1") && strstr(st.prefetch_error, "checksum"), "'%s'",
              st.prefetch_error);
    moesz_matview v[3];
    CHECK_EQ_INT(moesz_cache_get(k, 0, 1, v, &e), MOESZ_E_CHECKSUM);
    CHECK_EQ_INT(moesz_cache_get(k, 0, 2, v, &e), MOESZ_OK);
    moesz_cache_release(k, 0, 2);
    moesz_cache_destroy(k);
  }
  moesz_msz_close(c);
  free(img);
}

/* The codec and the container read and write their integers through
 * base/bytes.h alone: no file keeps its own byte-order helpers. */
TEST(one_set_of_little_endian_helpers) {
  static const char *files[] = {"src/codec/stream.c", "src/codec/huff.c", "src/codec/pack.c",
                                "src/container/msz_read.c", "src/container/msz_write.c",
                                "src/container/msz_export.c", "src/container/msz_util.c"};
  static const char *defs[] = {"rd16(", "rd32(", "rd64(", "wr16(", "wr32(", "wr64(", "put_le(", "get_le("};
  for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
    char *txt = NULL;
    size_t len = 0;
    if (moesz_file_read_all(files[f], 1 << 22, &txt, &len, NULL)) continue;   /* a file may be gone */
    for (size_t d = 0; d < sizeof defs / sizeof *defs; d++) {
      char pat[64];
      snprintf(pat, sizeof pat, " %s", defs[d]);
      const char *hit = strstr(txt, pat);
      CHECK_MSG(hit == NULL, "%s defines or uses its own %s", files[f], defs[d]);
    }
    free(txt);
  }
  /* and the helpers are little-endian */
  uint8_t b[8];
  moesz_wr32le(b, 0x01020304u);
  CHECK(b[0] == 4 && b[3] == 1 && moesz_rd32le(b) == 0x01020304u);
  moesz_wr64le(b, 0x0102030405060708ull);
  CHECK(b[0] == 8 && b[7] == 1 && moesz_rd64le(b) == 0x0102030405060708ull);
  moesz_wrf64le(b, 1.0);
  CHECK(b[7] == 0x3f && b[6] == 0xf0 && moesz_rdf64le(b) == 1.0);
}

/* ---- item 5: interrupted runs leave no temporaries --------------------------------- */

/* Starts `moesz ARGV...` (stderr to errfile), waits until its temporary
 * "<out>.tmp.<pid>" appears, sends sig and reaps it. Returns 1 if the process
 * died of sig with the temporary seen, 0 otherwise. */
static int interrupt_run(char *const argv[], const char *out, int sig, const char *errfile) {
  pid_t pid = fork();
  if (pid < 0) return 0;
  if (pid == 0) {
    FILE *f = freopen(errfile, "w", stderr);
    (void)f;
    if (!freopen("/dev/null", "w", stdout)) _exit(127);
    execv(BIN, argv);
    _exit(127);
  }
  char tmp[600];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out, (long)pid);
  int seen = 0, st = 0;
  for (int t = 0; t < 20000 && !seen; t++) {    /* up to ~10 s */
    seen = access(tmp, F_OK) == 0;
    if (!seen) {
      if (waitpid(pid, &st, WNOHANG) == pid) return 0;   /* finished before it could be interrupted */
      usleep(500);
    }
  }
  if (seen) kill(pid, sig);
  waitpid(pid, &st, 0);
  return seen && WIFSIGNALED(st) && WTERMSIG(st) == sig;
}

TEST(signals_remove_temporaries) {
  if (!setup()) SKIP("MOESZ_BIN not set (make check sets it)");
  char out[256], err[256], dir[256];
  snprintf(out, sizeof out, "%s/m.msz", T);
  snprintf(err, sizeof err, "%s/stderr.txt", T);
  char *cargv[] = {(char *)BIN, "compress", "models/moesz-mix-tiny", "-o", out, "-q", "--threads", "1", NULL};
  CHECK(interrupt_run(cargv, out, SIGTERM, err));
  CHECK(!exists("%s", out));
  CHECK_EQ_INT(leftovers(T), 0);
  CHECK(interrupt_run(cargv, out, SIGINT, err));
  CHECK_EQ_INT(leftovers(T), 0);
  char *txt = NULL;
  size_t len = 0;
  CHECK(moesz_file_read_all(err, 1 << 16, &txt, &len, NULL) == 0 && txt && strstr(txt, "removed"));
  free(txt);
  /* a decompress interrupted into an existing model folder leaves it as it was */
  CHECK_EQ_INT(cli("compress models/moesz-mix-tiny -o %s -q --method zstd", out), 0);
  CHECK_EQ_INT(sh("cp -r tests/fixtures/mixtral %s/m && cp -r tests/fixtures/mixtral %s/orig", T, T), 0);
  snprintf(dir, sizeof dir, "%s/m", T);
  char *dargv[] = {(char *)BIN, "decompress", out, "-o", dir, "--force", "-q", NULL};
  CHECK(interrupt_run(dargv, dir, SIGTERM, err));
  CHECK_EQ_INT(sh("diff -r %s/m %s/orig >/dev/null", T, T), 0);
  CHECK_EQ_INT(leftovers(T), 0);
  /* temporaries of a process that is gone are removed by the next run, with a note */
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, NULL, 0);
  CHECK_EQ_INT(sh("echo partial > %s.tmp.%ld && mkdir %s/n.tmp.%ld", out, (long)dead, T, (long)dead), 0);
  CHECK_EQ_INT(cli("compress tests/fixtures/mixtral -o %s -q", out), 0);
  CHECK_MSG(strstr(OUT, "left by an interrupted run") != NULL, "%s", OUT);
  CHECK_EQ_INT(cli("synth --like olmoe --layers 1 --hidden 32 --expert-width 16 --vocab 64 --heads 2 "
                   "--kv-heads 2 --experts 4 -o %s/n", T), 0);
  CHECK_EQ_INT(leftovers(T), 0);
  sh("rm -rf %s", T);
}

/* ---- items 7 and 8: strict parsing, compress checks the model, f16 cache range ----- */

/* Copies fixture src into dst with tensor `drop` left out, tensor `flip`
 * stored with its two dimensions swapped, and element 0 of tensor `poke` set
 * to value (F32 fixtures). NULL: none. */
static int rewrite_model(const char *src, const char *dst, const char *drop, const char *flip, const char *poke,
                         float value) {
  if (sh("rm -rf %s && mkdir -p %s && cp %s/config.json %s/", dst, dst, src, dst)) return -1;
  moesz_st *st;
  char p[512];
  snprintf(p, sizeof p, "%s/model.safetensors", src);
  if (moesz_st_open(p, &st, NULL)) return -1;
  snprintf(p, sizeof p, "%s/model.safetensors", dst);
  moesz_stw *w;
  if (moesz_stw_create(p, &w, NULL)) { moesz_st_close(st); return -1; }
  int rc = 0;
  for (size_t i = 0; i < moesz_st_count(st) && !rc; i++) {
    const moesz_tensor *t = moesz_st_at(st, i);
    if (drop && !strcmp(t->name, drop)) continue;
    int64_t shape[MOESZ_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    if (flip && !strcmp(t->name, flip)) { shape[0] = t->shape[1]; shape[1] = t->shape[0]; }
    if (poke && !strcmp(t->name, poke) && t->dtype == MOESZ_DT_F32) {
      float *c = malloc(t->nbytes);
      memcpy(c, t->data, t->nbytes);
      c[0] = value;
      rc = moesz_stw_add_copy(w, t->name, t->dtype, t->ndim, shape, c, NULL);
      free(c);
    } else {
      rc = moesz_stw_add(w, t->name, t->dtype, t->ndim, shape, t->data, NULL);
    }
  }
  rc = rc ? (moesz_stw_abort(w), rc) : moesz_stw_commit(w, NULL);
  moesz_st_close(st);
  return rc;
}

TEST(lenient_parsing_is_refused) {
  if (!setup()) SKIP("MOESZ_BIN not set (make check sets it)");
  static const struct { const char *args, *msg; int code; } bad[] = {
    {"compress tests/fixtures/mixtral -o %s/x.msz --eb ''", "bad --eb", 2},
    {"compress tests/fixtures/mixtral -o %s/x.msz --eb 1e-3x", "bad --eb", 2},
    {"compress tests/fixtures/mixtral -o %s/x.msz --layer-eb ''", "bad --layer-eb: empty", 2},
    {"compress tests/fixtures/mixtral -o %s/x.msz --layer-eb ,,", "stray comma", 2},
    {"compress tests/fixtures/mixtral -o %s/x.msz --layer-eb 0-:1e-3,", "stray comma", 2},
    {"compress tests/fixtures/mixtral -o %s/x.msz --threads two", "bad --threads", 2},
    {"run tests/fixtures/mixtral --prompt-ids 1,,2 --print-ids --max-tokens 1", "bad --prompt-ids", 2},
    {"run tests/fixtures/mixtral --prompt-ids 1,2, --print-ids --max-tokens 1", "bad --prompt-ids", 2},
    {"run tests/fixtures/mixtral --prompt-ids ,1 --print-ids --max-tokens 1", "bad --prompt-ids", 2},
    {"synth --like mixtral --top-k 3 --experts 2 --layers 1 --hidden 32 --vocab 64 -o %s/s", "top-k 3 exceeds", 1},
    {"synth --like llama --experts 2 --layers 1 -o %s/s", "dense family", 2},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int rc = cli(bad[i].args, T);
    CHECK_MSG(rc == bad[i].code && strstr(OUT, bad[i].msg), "'%s': exit %d, '%s'", bad[i].args, rc, OUT);
  }
  CHECK(!exists("%s/x.msz", T) && !exists("%s/s", T));
  /* the forms that are meant */
  CHECK_EQ_INT(cli("run tests/fixtures/mixtral --prompt-ids '1, 2 3' --print-ids --max-tokens 1 --temperature 0"), 0);
  CHECK_EQ_INT(cli("compress tests/fixtures/mixtral -o %s/x.msz -q --eb 0 --layer-eb 0:1e-3,1-:lossless", T), 0);
  CHECK_EQ_INT(cli("run --help"), 0);
  CHECK(strstr(OUT, "0: unlimited") != NULL);
  /* max_position_embeddings: 0 is refused by name */
  CHECK_EQ_INT(sh("cp -r tests/fixtures/mixtral %s/mp && sed -i 's/\"max_position_embeddings\": *[0-9]*/"
                  "\"max_position_embeddings\": 0/' %s/mp/config.json", T, T), 0);
  CHECK_EQ_INT(cli("inspect %s/mp", T), 1);
  CHECK_MSG(strstr(OUT, "max_position_embeddings") != NULL, "%s", OUT);
  /* compress checks the model as run would, before writing anything */
  static const struct { const char *drop, *flip, *msg; } broken[] = {
    {"model.embed_tokens.weight", NULL, "token embedding"},
    {"model.layers.0.block_sparse_moe.gate.weight", NULL, "router"},
    {NULL, "model.layers.1.self_attn.k_proj.weight", "shape contradicts the config"},
  };
  for (size_t i = 0; i < 3; i++) {
    char d[256];
    snprintf(d, sizeof d, "%s/broken%zu", T, i);
    CHECK_EQ_INT(rewrite_model("tests/fixtures/mixtral", d, broken[i].drop, broken[i].flip, NULL, 0), 0);
    int rc = cli("compress %s -o %s/b.msz -q", d, T);
    CHECK_MSG(rc == 1 && strstr(OUT, broken[i].msg) && strstr(OUT, "nothing written"), "%zu: exit %d, '%s'", i, rc, OUT);
    CHECK(!exists("%s/b.msz", T));
  }
  CHECK_EQ_INT(leftovers(T), 0);
  sh("rm -rf %s", T);
}

/* An expert weight beyond f16's range is refused with --cache-dtype f16
 * rather than turned into Inf; bf16 and f32 serve it. */
TEST(cache_dtype_f16_overflow_refused) {
  if (!setup()) SKIP("MOESZ_BIN not set (make check sets it)");
  char d[256];
  snprintf(d, sizeof d, "%s/big", T);
  CHECK_EQ_INT(rewrite_model("tests/fixtures/mixtral", d, NULL, NULL,
                             "model.layers.0.block_sparse_moe.experts.0.w1.weight", 1e5f), 0);
  CHECK_EQ_INT(cli("compress %s -o %s/big.msz -q --method raw", d, T), 0);
  const char *ids = "--prompt-ids 1,2,3,4,5,6,7,8 --print-ids --max-tokens 2 --temperature 0";
  CHECK_EQ_INT(cli("run %s/big.msz %s --cache-dtype bf16", T, ids), 0);
  int rc = cli("run %s/big.msz %s --cache-dtype f16", T, ids);
  CHECK_MSG(rc == 1 && strstr(OUT, "beyond F16's range"), "exit %d: %s", rc, OUT);
  CHECK_EQ_INT(cli("run --help"), 0);
  CHECK(strstr(OUT, "65504") != NULL);
  sh("rm -rf %s", T);
}

/* ---- item 6: Switch Transformers' two-matrix experts ------------------------------- */

/* compress (raw: bit-exact; codec: within the bound) -> decompress, and
 * resmoe, on the Switch fixture; run says it has no forward pass. */
TEST(switch_compresses_and_restores) {
  if (!setup()) SKIP("MOESZ_BIN not set (make check sets it)");
  moesz_model *orig = NULL;
  CHECK_EQ_INT(moesz_model_open("tests/fixtures/switch", &orig, NULL), MOESZ_OK);
  if (!orig) return;
  static const char *methods[] = {"raw", "sz"};
  for (int k = 0; k < 2; k++) {
    CHECK_EQ_INT(cli("compress tests/fixtures/switch -o %s/s.msz -q --method %s --eb 1e-3", T, methods[k]), 0);
    char p[256];
    snprintf(p, sizeof p, "%s/s.msz", T);
    moesz_msz *c = NULL;
    CHECK_EQ_INT(moesz_msz_open(p, &c, NULL), MOESZ_OK);
    if (c) {
      const moesz_config *cfg = moesz_msz_config(c);
      CHECK_EQ_INT(moesz_msz_count(c), (size_t)cfg->n_moe_layers * (size_t)cfg->n_experts * 2);
      moesz_msz_close(c);
    }
    CHECK_EQ_INT(cli("decompress %s/s.msz -o %s/d -q --force", T, T), 0);
    snprintf(p, sizeof p, "%s/d", T);
    moesz_model *back = NULL;
    CHECK_EQ_INT(moesz_model_open(p, &back, NULL), MOESZ_OK);
    if (!back) continue;
    CHECK_EQ_INT(moesz_st_count(back->st), moesz_st_count(orig->st));
    double worst = 0;
    int differ = 0;
    for (size_t i = 0; i < moesz_st_count(orig->st); i++) {
      const moesz_tensor *a = moesz_st_at(orig->st, i), *b = moesz_st_find(back->st, a->name);
      if (!b || b->nbytes != a->nbytes || a->dtype != MOESZ_DT_F32) { differ++; continue; }
      int expert = orig->roles[i].role == MOESZ_ROLE_EXPERT;
      if (!expert || k == 0) { differ += memcmp(a->data, b->data, a->nbytes) != 0; continue; }
      const float *x = a->data, *y = b->data;
      for (size_t j = 0; j < a->numel; j++) worst = fmax(worst, fabs((double)x[j] - y[j]));
    }
    CHECK_MSG(differ == 0, "%s: %d tensors differ", methods[k], differ);
    CHECK_MSG(worst <= 1e-3, "%s: max error %g", methods[k], worst);
    moesz_model_close(back);
  }
  moesz_model_close(orig);
  CHECK_EQ_INT(cli("run %s/s.msz --prompt-ids 1,2 --print-ids", T), 1);
  CHECK_MSG(strstr(OUT, "no forward pass") != NULL, "%s", OUT);
  CHECK_EQ_INT(cli("resmoe tests/fixtures/switch -o %s/r --keep 0.5 --layers all", T), 0);
  CHECK(exists("%s/r/model.safetensors", T));
  sh("rm -rf %s", T);
}

/* ---- item 9: scoring as lm-evaluation-harness 0.4.x -------------------------------- */

/* A byte-level tokenizer (id = byte value) with "<s>" = 256 and
 * "<|endoftext|>" = 257 as added special tokens; with_bos: a TemplateProcessing
 * post-processor that prepends <s>; with_s: whether <s> exists at all. */
static moesz_tok *byte_tok(int with_bos, int with_s) {
  cJSON *root = cJSON_CreateObject();
  harness_byte_model(root);
  cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
  static const char *SP[] = {"<s>", "<|endoftext|>"};
  for (int k = with_s ? 0 : 1; k < 2; k++) {
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "id", 256 + k);
    cJSON_AddStringToObject(a, "content", SP[k]);
    cJSON_AddBoolToObject(a, "special", 1);
    cJSON_AddItemToArray(added, a);
  }
  cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer"), *dec = cJSON_AddObjectToObject(root, "decoder");
  cJSON_AddStringToObject(pre, "type", "ByteLevel");
  cJSON_AddBoolToObject(pre, "add_prefix_space", 0);
  cJSON_AddStringToObject(dec, "type", "ByteLevel");
  if (with_bos) {
    cJSON *pp = cJSON_AddObjectToObject(root, "post_processor"), *single = cJSON_AddArrayToObject(pp, "single");
    cJSON_AddStringToObject(pp, "type", "TemplateProcessing");
    cJSON *a = cJSON_CreateObject(), *st = cJSON_AddObjectToObject(a, "SpecialToken");
    cJSON_AddStringToObject(st, "id", "<s>");
    cJSON_AddItemToArray(single, a);
    a = cJSON_CreateObject();
    st = cJSON_AddObjectToObject(a, "Sequence");
    cJSON_AddStringToObject(st, "id", "A");
    cJSON_AddItemToArray(single, a);
  }
  char *json = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  moesz_tok *t = NULL;
  moesz_error e = {0};
  if (moesz_tok_load_json(json, strlen(json), &t, &e)) fprintf(stderr, "  byte tokenizer: %s\n", e.msg);
  free(json);
  return t;
}

/* ids == the listed values (terminated by -9) */
static int ids_are(const int32_t *v, size_t n, const int *want) {
  size_t k = 0;
  while (want[k] != -9) k++;
  if (k != n) return 0;
  for (size_t i = 0; i < n; i++)
    if (v[i] != want[i]) return 0;
  return 1;
}

static int pair_is(const moesz_tok *t, const char *ctx, const char *cont, moesz_bos_mode bos, const int *wc,
                   const int *wt) {
  int32_t *c = NULL, *w = NULL;
  size_t nc = 0, nw = 0;
  moesz_error e = {0};
  int ok = moesz_eval_encode_pair(t, ctx, cont, bos, &c, &nc, &w, &nw, &e) == MOESZ_OK && ids_are(c, nc, wc) &&
           ids_are(w, nw, wt);
  if (!ok) {
    fprintf(stderr, "  '%s' + '%s' (bos %d): ctx", ctx, cont, (int)bos);
    for (size_t i = 0; i < nc; i++) fprintf(stderr, " %d", c[i]);
    fprintf(stderr, " | cont");
    for (size_t i = 0; i < nw; i++) fprintf(stderr, " %d", w[i]);
    fprintf(stderr, " %s\n", e.msg);
  }
  free(c);
  free(w);
  return ok;
}

TEST(task_scoring_follows_the_harness) {
  moesz_tok *tb = byte_tok(1, 1), *tn = byte_tok(0, 1), *te = byte_tok(0, 0);
  CHECK(tb && tn && te);
  if (!tb || !tn || !te) { moesz_tok_free(tb); moesz_tok_free(tn); moesz_tok_free(te); return; }
  CHECK_EQ_INT(moesz_tok_bos(tb), 256);
  /* all trailing whitespace of the context (a newline too) moves to the continuation */
  CHECK(pair_is(tn, "Q:\n", " A", MOESZ_BOS_NO, (const int[]){'Q', ':', -9}, (const int[]){'\n', ' ', 'A', -9}));
  CHECK(pair_is(tn, "Q: \t", " A", MOESZ_BOS_NO, (const int[]){'Q', ':', -9}, (const int[]){' ', '\t', ' ', 'A', -9}));
  /* Unicode whitespace (U+00A0) as Python's str.rstrip */
  CHECK(pair_is(tn, "Q\xc2\xa0", " A", MOESZ_BOS_NO, (const int[]){'Q', -9}, (const int[]){0xc2, 0xa0, ' ', 'A', -9}));
  /* auto: BOS when the tokenizer adds it, not otherwise; yes: always, once; no: never */
  CHECK(pair_is(tb, "Q:\n", " A", MOESZ_BOS_AUTO, (const int[]){256, 'Q', ':', -9}, (const int[]){'\n', ' ', 'A', -9}));
  CHECK(pair_is(tn, "Q:", " A", MOESZ_BOS_AUTO, (const int[]){'Q', ':', -9}, (const int[]){' ', 'A', -9}));
  CHECK(pair_is(tn, "Q:", " A", MOESZ_BOS_YES, (const int[]){256, 'Q', ':', -9}, (const int[]){' ', 'A', -9}));
  CHECK(pair_is(tb, "Q:", " A", MOESZ_BOS_YES, (const int[]){256, 'Q', ':', -9}, (const int[]){' ', 'A', -9}));
  CHECK(pair_is(tb, "Q:", " A", MOESZ_BOS_NO, (const int[]){'Q', ':', -9}, (const int[]){' ', 'A', -9}));
  /* an empty context is scored after BOS (EOS when the tokenizer has no BOS), whatever the mode */
  CHECK(pair_is(tb, "", " A", MOESZ_BOS_AUTO, (const int[]){256, -9}, (const int[]){' ', 'A', -9}));
  CHECK(pair_is(tn, "", " A", MOESZ_BOS_NO, (const int[]){256, -9}, (const int[]){' ', 'A', -9}));
  CHECK(pair_is(te, "", " A", MOESZ_BOS_AUTO, (const int[]){257, -9}, (const int[]){' ', 'A', -9}));
  CHECK(pair_is(tb, " ", "A", MOESZ_BOS_AUTO, (const int[]){256, -9}, (const int[]){' ', 'A', -9}));
  moesz_bos_mode m;
  CHECK(moesz_bos_mode_parse("auto", &m) == MOESZ_OK && m == MOESZ_BOS_AUTO);
  CHECK(moesz_bos_mode_parse("maybe", &m) != MOESZ_OK);
  moesz_tok_free(tb); moesz_tok_free(tn); moesz_tok_free(te);
  if (!setup()) SKIP("MOESZ_BIN not set (make check sets it)");
  CHECK_EQ_INT(cli("eval tests/fixtures/mixtral --task x.jsonl --bos sometimes"), 2);
  CHECK(strstr(OUT, "bad --bos") != NULL);
  CHECK_EQ_INT(cli("eval --help"), 0);
  CHECK(strstr(OUT, "--bos MODE") != NULL);
}

int main(void) {
  RUN(output_over_input_is_refused);
  RUN(decompress_is_all_or_nothing);
  RUN(export_never_replaces_its_own_folder);
  RUN(resmoe_and_synth_need_force);
  RUN(lying_manifests_are_rejected_at_open);
  RUN(codec_reserved_bytes_rejected);
  RUN(prefetch_failures_are_counted);
  RUN(one_set_of_little_endian_helpers);
  RUN(signals_remove_temporaries);
  RUN(lenient_parsing_is_refused);
  RUN(cache_dtype_f16_overflow_refused);
  RUN(switch_compresses_and_restores);
  RUN(task_scoring_follows_the_harness);
  if (T[0]) sh("rm -rf %s", T);   /* setup()'s folder, made afresh by each test */
  return DONE();
}
