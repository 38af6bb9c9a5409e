/* tests/test_hardening.c - the CLI never damages a user's files: an output
 * that is (or holds) an input is refused for every command that writes, and
 * folder outputs (decompress, resmoe, synth) appear whole or not at all:
 * written beside the target and renamed at the end, an existing folder
 * refused without --force and swapped atomically with it. */
#include "harness.h"
#include <dirent.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>
#include "moesz.h"

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
  CHECK_EQ_INT(cli("resmoe tests/fixtures/mixtral -o %s/s --keep 0.5", T), 1);
  CHECK_MSG(strstr(OUT, "not empty") != NULL, "%s", OUT);
  CHECK_EQ_INT(cli("resmoe tests/fixtures/mixtral -o %s/s --keep 0.5 --force --report %s/s/report.json", T, T), 0);
  CHECK_EQ_INT(sh("cmp -s %s/s/config.json tests/fixtures/mixtral/config.json", T), 0);
  CHECK(exists("%s/s/report.json", T));
  CHECK_EQ_INT(leftovers(T), 0);
  sh("rm -rf %s", T);
}

int main(void) {
  RUN(output_over_input_is_refused);
  RUN(decompress_is_all_or_nothing);
  RUN(resmoe_and_synth_need_force);
  return DONE();
}
