/* tests/test_layers.c - the module layering of docs/ARCHITECTURE.md, checked
 * on the sources as built: scans the .c and .h files under src/<module>/ for includes of
 * another module ("moesz/<m>.h", "<m>/...", "moesz.h") and fails on an edge
 * the architecture forbids (a lower layer including a higher one). Run with
 * MOESZ_PRINT_DEPS=1 to print the dependency edges found. */
#include <dirent.h>
#include "harness.h"

#define MAXMOD 32
static const char *MODS[] = {"base", "tensor", "codec", "model", "resmoe", "container",
                             "runtime", "infer", "text", "eval", "serve", "cli"};
#define NMODS (int)(sizeof MODS / sizeof MODS[0])

/* ALLOWED[i] lists the modules module i may include (besides itself). */
static const char *ALLOWED[] = {
  /* base */      "",
  /* tensor */    "base",
  /* codec */     "base tensor",
  /* model */     "base tensor",
  /* resmoe */    "base tensor model codec",
  /* container */ "base tensor model codec resmoe",
  /* runtime */   "base tensor model codec resmoe container",
  /* infer */     "base tensor model codec resmoe container runtime",
  /* text */      "base",
  /* eval */      "base tensor model codec resmoe container runtime infer text",
  /* serve */     "base tensor model codec resmoe container runtime infer text eval",
  /* cli */       "base tensor model codec resmoe container runtime infer text eval serve",
};

static int mod_index(const char *name, size_t len) {
  for (int i = 0; i < NMODS; i++)
    if (strlen(MODS[i]) == len && !strncmp(MODS[i], name, len)) return i;
  return -1;
}

static int allowed(int from, int to) {
  if (from == to) return 1;
  const char *a = ALLOWED[from];
  size_t n = strlen(MODS[to]);
  for (const char *p = a; (p = strstr(p, MODS[to])); p += n)
    if ((p == a || p[-1] == ' ') && (p[n] == 0 || p[n] == ' ')) return 1;
  return 0;
}

static int edges[MAXMOD][MAXMOD];

static void scan_file(int from, const char *path) {
  FILE *f = fopen(path, "r");
  CHECK_MSG(f != NULL, "cannot read %s", path);
  if (!f) return;
  char line[1024];
  while (fgets(line, sizeof line, f)) {
    const char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    if (strncmp(p, "#include \"", 10)) continue;
    p += 10;
    const char *q = strchr(p, '"');
    if (!q) continue;
    int to = -1;
    if (!strncmp(p, "moesz.h\"", 8)) to = mod_index("cli", 3); /* the umbrella header: CLI only */
    else if (!strncmp(p, "moesz/", 6)) {
      const char *dot = strchr(p + 6, '.');
      if (dot && dot < q) to = mod_index(p + 6, (size_t)(dot - p - 6));
    } else {
      const char *slash = strchr(p, '/');
      if (slash && slash < q) to = mod_index(p, (size_t)(slash - p));
    }
    if (to < 0) continue;
    if (!strncmp(p, "moesz.h\"", 8) && from == mod_index("cli", 3)) continue;
    edges[from][to]++;
    CHECK_MSG(allowed(from, to), "%s includes %.*s: %s may not depend on %s", path, (int)(q - p), p,
              MODS[from], MODS[to]);
  }
  fclose(f);
}

TEST(layering) {
  DIR *src = opendir("src");
  if (!src) SKIP("run from the repository root");
  struct dirent *m;
  int nfiles = 0;
  while ((m = readdir(src))) {
    if (m->d_name[0] == '.') continue;
    int from = mod_index(m->d_name, strlen(m->d_name));
    CHECK_MSG(from >= 0, "src/%s is not in the module table of tests/test_layers.c and "
              "docs/ARCHITECTURE.md", m->d_name);
    if (from < 0) continue;
    char dir[512];
    snprintf(dir, sizeof dir, "src/%s", m->d_name);
    DIR *d = opendir(dir);
    if (!d) continue;
    struct dirent *e;
    while ((e = readdir(d))) {
      size_t n = strlen(e->d_name);
      if (n < 3 || (strcmp(e->d_name + n - 2, ".c") && strcmp(e->d_name + n - 2, ".h"))) continue;
      char path[1024];
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      scan_file(from, path);
      nfiles++;
    }
    closedir(d);
  }
  closedir(src);
  CHECK(nfiles > 0);
  if (getenv("MOESZ_PRINT_DEPS"))
    for (int i = 0; i < NMODS; i++) {
      printf("%-9s ->", MODS[i]);
      for (int j = 0; j < NMODS; j++)
        if (j != i && edges[i][j]) printf(" %s", MODS[j]);
      printf("\n");
    }
}

/* The checker itself: a forbidden edge must be caught. */
TEST(layering_rules) {
  CHECK(allowed(mod_index("model", 5), mod_index("tensor", 6)));
  CHECK(!allowed(mod_index("codec", 5), mod_index("model", 5)));
  CHECK(allowed(mod_index("tensor", 6), mod_index("base", 4)));
  CHECK(!allowed(mod_index("runtime", 7), mod_index("infer", 5)));
  CHECK(!allowed(mod_index("base", 4), mod_index("tensor", 6)));
  CHECK(!allowed(mod_index("model", 5), mod_index("infer", 5)));
  CHECK(!allowed(mod_index("eval", 4), mod_index("cli", 3)));
  CHECK(mod_index("nonsense", 8) < 0);
}

int main(void) {
  RUN(layering);
  RUN(layering_rules);
  return DONE();
}
