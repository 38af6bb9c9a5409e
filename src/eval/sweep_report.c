/* eval/sweep_report.c - owns the sweep's reports from its result rows:
 * results.json (every row), results.md (a table with means and standard
 * deviations over seeds) and one SVG line plot per metric (kl.svg, top1.svg,
 * ppl.svg: the metric against the bound, one line per group and error kind,
 * error bars over seeds) and, for one-layer groups, KL per layer (kl_per_layer.svg),
 * each written to a temporary file and renamed. docs/EVAL.md "Sweep". */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "moesz/eval.h"

static const char *MODES[] = {"abs", "rel", "std"};

static int put_file(const char *dir, const char *name, const char *data, size_t len, moesz_error *err) {
  char path[4096];
  if (moesz_path_join(path, sizeof path, dir, name)) return moesz_error_set(err, MOESZ_E_ARG, "output folder name too long");
  moesz_afile af;
  int rc = moesz_afile_open(&af, path, err);
  if (rc) return rc;
  if ((rc = moesz_afile_write(&af, data, len, err))) { moesz_afile_abort(&af); return rc; }
  return moesz_afile_commit(&af, err);
}

static void bprintf(moesz_buf *b, const char *fmt, ...) {
  char tmp[2048];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (k > 0) moesz_buf_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* Rows of one cell but the seed. */
static int same_cell(const moesz_sweep_row *a, const moesz_sweep_row *b) {
  return !strcmp(a->group, b->group) && a->first == b->first && a->last == b->last && a->err == b->err &&
         a->eb_mode == b->eb_mode && a->eb == b->eb && a->tokens == b->tokens;
}
/* Rows of one line in a plot (all bounds). */
static int same_series(const moesz_sweep_row *a, const moesz_sweep_row *b) {
  return !strcmp(a->group, b->group) && a->first == b->first && a->last == b->last && a->err == b->err &&
         a->eb_mode == b->eb_mode && a->tokens == b->tokens;
}

static double metric(const moesz_sweep_row *r, int k) { return k == 0 ? r->kl : k == 1 ? r->top1 : r->ppl; }

/* Mean and standard deviation (n - 1) of metric k over the seeds of r[i]'s cell. */
static void cell_stats(const moesz_sweep_row *r, size_t n, size_t i, int k, double *mean, double *sd, int *count) {
  double s = 0, q = 0;
  int c = 0;
  for (size_t j = 0; j < n; j++)
    if (same_cell(&r[i], &r[j])) { s += metric(&r[j], k); c++; }
  *mean = s / c;
  for (size_t j = 0; j < n; j++)
    if (same_cell(&r[i], &r[j])) q += (metric(&r[j], k) - *mean) * (metric(&r[j], k) - *mean);
  *sd = c > 1 ? sqrt(q / (c - 1)) : 0;
  *count = c;
}

static int first_of_cell(const moesz_sweep_row *r, size_t i) {
  for (size_t j = 0; j < i; j++)
    if (same_cell(&r[i], &r[j])) return 0;
  return 1;
}

static int write_json(const moesz_sweep_row *r, size_t n, const char *dir, moesz_error *err) {
  cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "rows");
  for (size_t i = 0; i < n; i++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToArray(arr, o);
    cJSON_AddStringToObject(o, "group", r[i].group);
    cJSON_AddNumberToObject(o, "first", r[i].first);
    cJSON_AddNumberToObject(o, "last", r[i].last);
    cJSON_AddStringToObject(o, "error", moesz_sweep_err_name(r[i].err));
    cJSON_AddStringToObject(o, "eb_mode", MODES[r[i].eb_mode]);
    cJSON_AddNumberToObject(o, "eb", r[i].eb);
    cJSON_AddNumberToObject(o, "seed", r[i].seed);
    cJSON_AddNumberToObject(o, "tokens", (double)r[i].tokens);
    cJSON_AddNumberToObject(o, "kl", r[i].kl);
    cJSON_AddNumberToObject(o, "top1", r[i].top1);
    cJSON_AddNumberToObject(o, "ppl", r[i].ppl);
    cJSON_AddNumberToObject(o, "ref_ppl", r[i].ref_ppl);
    cJSON_AddNumberToObject(o, "raw_bytes", (double)r[i].raw_bytes);
    cJSON_AddNumberToObject(o, "stored_bytes", (double)r[i].stored_bytes);
    cJSON_AddNumberToObject(o, "seconds", r[i].seconds);
  }
  char *txt = cJSON_Print(root);
  cJSON_Delete(root);
  if (!txt) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  int rc = put_file(dir, "results.json", txt, strlen(txt), err);
  free(txt);
  return rc;
}

static int write_md(const moesz_sweep_row *r, size_t n, const char *dir, moesz_error *err) {
  moesz_buf b = {0};
  bprintf(&b, "# Layer sensitivity sweep\n\nOnly the group's routed experts are perturbed; KL(original || perturbed) "
              "in nats per token and top-1 agreement are against the unperturbed model on the same tokens. Mean over "
              "seeds (± sample standard deviation when there are several).\n\n"
              "| group | layers | error | eb | seeds | tokens | KL | top-1 | ppl (original) | expert ratio |\n"
              "|---|---|---|---|---|---|---|---|---|---|\n");
  for (size_t i = 0; i < n; i++) {
    if (!first_of_cell(r, i)) continue;
    double m[3], sd[3];
    int c = 0;
    for (int k = 0; k < 3; k++) cell_stats(r, n, i, k, &m[k], &sd[k], &c);
    char kl[64], t1[64], ratio[32] = "-";
    if (c > 1) {
      snprintf(kl, sizeof kl, "%.5g ± %.2g", m[0], sd[0]);
      snprintf(t1, sizeof t1, "%.4f ± %.4f", m[1], sd[1]);
    } else {
      snprintf(kl, sizeof kl, "%.5g", m[0]);
      snprintf(t1, sizeof t1, "%.4f", m[1]);
    }
    if (r[i].stored_bytes) snprintf(ratio, sizeof ratio, "%.3fx", (double)r[i].raw_bytes / (double)r[i].stored_bytes);
    bprintf(&b, "| %s | %d-%d | %s | %g (%s) | %d | %zu | %s | %s | %.4f (%.4f) | %s |\n", r[i].group, r[i].first,
            r[i].last, moesz_sweep_err_name(r[i].err), r[i].eb, MODES[r[i].eb_mode], c, r[i].tokens, kl, t1, m[2],
            r[i].ref_ppl, ratio);
  }
  bprintf(&b, "\nPlots: [KL](kl.svg), [top-1](top1.svg), [perplexity](ppl.svg).\n");
  int rc = b.oom ? moesz_error_set(err, MOESZ_E_NOMEM, "out of memory") : put_file(dir, "results.md", b.p, b.n, err);
  free(b.p);
  return rc;
}

/* One plot: metric k against log10(eb), a line per series (colour by group, dash by error kind). */
static int write_svg(const moesz_sweep_row *r, size_t n, int k, const char *dir, moesz_error *err) {
  static const char *NAMES[] = {"KL(original || perturbed), nats/token", "top-1 agreement", "perplexity"};
  static const char *FILES[] = {"kl.svg", "top1.svg", "ppl.svg"};
  static const char *COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
                                 "#7f7f7f", "#bcbd22", "#17becf"};
  static const char *DASH[] = {"", "6,4", "2,3"};
  const double W = 760, H = 440, x0 = 80, x1 = 520, y0 = 30, y1 = 390;
  int logy = k == 0;
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    double x = log10(r[i].eb), y = metric(&r[i], k);
    if (logy) y = log10(y > 1e-9 ? y : 1e-9);
    xmin = fmin(xmin, x); xmax = fmax(xmax, x);
    ymin = fmin(ymin, y); ymax = fmax(ymax, y);
  }
  if (!n) { xmin = ymin = 0; xmax = ymax = 1; }
  if (logy) { ymin = floor(ymin); ymax = ceil(ymax); }
  if (xmax - xmin < 1e-9) { xmin -= 0.5; xmax += 0.5; }
  if (ymax - ymin < 1e-12) { ymin -= logy ? 1 : 0.01; ymax += logy ? 1 : 0.01; }
  moesz_buf b = {0};
  bprintf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" "
              "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H);
  bprintf(&b, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"black\"/>\n", x0, y0,
          x1 - x0, y1 - y0);
#define PX(x) (x0 + ((x) - xmin) / (xmax - xmin) * (x1 - x0))
#define PY(y) (y1 - ((y) - ymin) / (ymax - ymin) * (y1 - y0))
  /* x ticks: every bound present */
  for (size_t i = 0; i < n; i++) {
    int seen = 0;
    for (size_t j = 0; j < i; j++) seen |= r[j].eb == r[i].eb;
    if (seen) continue;
    double x = PX(log10(r[i].eb));
    bprintf(&b, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#ddd\"/>\n<text x=\"%.1f\" y=\"%.0f\" "
                "text-anchor=\"middle\">%g</text>\n", x, y0, x, y1, x, y1 + 16, r[i].eb);
  }
  for (int t = 0; t <= 4; t++) {
    double y = ymin + (ymax - ymin) * t / 4, py = PY(y);
    char lab[32];
    if (logy) snprintf(lab, sizeof lab, "%.2g", pow(10, y));
    else snprintf(lab, sizeof lab, "%.4g", y);
    bprintf(&b, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n<text x=\"%.0f\" y=\"%.1f\" "
                "text-anchor=\"end\">%s</text>\n", x0, py, x1, py, x0 - 6, py + 4, lab);
  }
  bprintf(&b, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">error bound eb (log scale)</text>\n", (x0 + x1) / 2, H - 12);
  bprintf(&b, "<text x=\"%.0f\" y=\"18\" text-anchor=\"middle\">%s%s</text>\n", (x0 + x1) / 2, NAMES[k],
          logy ? " (log scale)" : "");
  /* one line per series, points sorted by eb, mean over seeds */
  int series = 0, ngroups = 0, nseries = 0;
  for (size_t i = 0; i < n; i++) {
    int seen = 0;
    for (size_t j = 0; j < i; j++) seen |= same_series(&r[i], &r[j]);
    nseries += !seen;
  }
  double step = nseries * 18 > y1 - y0 ? (y1 - y0) / nseries : 18;
  char groups[10][48];
  for (size_t i = 0; i < n; i++) {
    int seen = 0;
    for (size_t j = 0; j < i; j++) seen |= same_series(&r[i], &r[j]);
    if (seen) continue;
    int gi = -1;
    for (int g = 0; g < ngroups; g++)
      if (!strcmp(groups[g], r[i].group)) gi = g;
    if (gi < 0 && ngroups < 10) { snprintf(groups[ngroups], 48, "%s", r[i].group); gi = ngroups++; }
    if (gi < 0) gi = 9;
    bprintf(&b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" stroke-dasharray=\"%s\" points=\"",
            COLORS[gi], DASH[r[i].err]);
    double last = -INFINITY;
    moesz_buf bars = {0};   /* error bars: mean ± sd over seeds */
    for (;;) {   /* next larger bound of this series */
      size_t best = n;
      for (size_t j = 0; j < n; j++)
        if (same_series(&r[i], &r[j]) && r[j].eb > last && (best == n || r[j].eb < r[best].eb)) best = j;
      if (best == n) break;
      double m, sd, y;
      int c;
      cell_stats(r, n, best, k, &m, &sd, &c);
      y = logy ? log10(m > 1e-9 ? m : 1e-9) : m;
      bprintf(&b, "%.1f,%.1f ", PX(log10(r[best].eb)), PY(y));
      if (c > 1 && sd > 0) {
        double lo = m - sd, hi = m + sd;
        if (logy) { lo = log10(lo > 1e-9 ? lo : 1e-9); hi = log10(hi); }
        double plo = fmin(y1, fmax(y0, PY(lo))), phi = fmin(y1, fmax(y0, PY(hi))), px = PX(log10(r[best].eb));
        bprintf(&bars, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n", px, plo, px, phi,
                COLORS[gi]);
      }
      last = r[best].eb;
    }
    bprintf(&b, "\"/>\n");
    if (bars.p) moesz_buf_put(&b, bars.p, bars.n);
    b.oom |= bars.oom;
    free(bars.p);
    double ly = y0 + 10 + step * series++;
    bprintf(&b, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" stroke-width=\"2\" "
                "stroke-dasharray=\"%s\"/>\n<text x=\"%.0f\" y=\"%.0f\">%s (%d-%d) %s</text>\n", x1 + 15, ly, x1 + 45, ly,
            COLORS[gi], DASH[r[i].err], x1 + 52, ly + 4, r[i].group, r[i].first, r[i].last, moesz_sweep_err_name(r[i].err));
  }
#undef PX
#undef PY
  bprintf(&b, "</svg>\n");
  int rc = b.oom ? moesz_error_set(err, MOESZ_E_NOMEM, "out of memory") : put_file(dir, FILES[k], b.p, b.n, err);
  free(b.p);
  return rc;
}

/* KL against the layer for the one-layer groups (--per-layer: L<i>), a line per
 * (error kind, bound); nothing when there are none. */
static int write_per_layer(const moesz_sweep_row *r, size_t n, const char *dir, moesz_error *err) {
  static const char *COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
  static const char *DASH[] = {"", "6,4", "2,3"};
  const double W = 760, H = 440, x0 = 80, x1 = 520, y0 = 30, y1 = 390;
  int lmin = 1 << 30, lmax = -1;
  double ymin = INFINITY, ymax = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    if (r[i].group[0] != 'L' || r[i].first != r[i].last) continue;
    lmin = r[i].first < lmin ? r[i].first : lmin;
    lmax = r[i].first > lmax ? r[i].first : lmax;
    double y = log10(r[i].kl > 1e-9 ? r[i].kl : 1e-9);
    ymin = fmin(ymin, y);
    ymax = fmax(ymax, y);
  }
  if (lmax < 0) return MOESZ_OK;
  if (lmax == lmin) { lmin--; lmax++; }
  ymin = floor(ymin);
  ymax = ceil(ymax);
  if (ymax - ymin < 1) ymax = ymin + 1;
  moesz_buf b = {0};
  bprintf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" "
              "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<rect x=\"%.0f\" y=\"%.0f\" "
              "width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"black\"/>\n", W, H, x0, y0, x1 - x0, y1 - y0);
#define PX(x) (x0 + ((x) - lmin) / (double)(lmax - lmin) * (x1 - x0))
#define PY(y) (y1 - ((y) - ymin) / (ymax - ymin) * (y1 - y0))
  for (int L = lmin; L <= lmax; L++)
    bprintf(&b, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%d</text>\n", PX(L), y1 + 16, L);
  for (double y = ymin; y <= ymax + 1e-9; y += 1)
    bprintf(&b, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n<text x=\"%.0f\" y=\"%.1f\" "
                "text-anchor=\"end\">%.0e</text>\n", x0, PY(y), x1, PY(y), x0 - 6, PY(y) + 4, pow(10, y));
  bprintf(&b, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">layer</text>\n<text x=\"%.0f\" y=\"18\" "
              "text-anchor=\"middle\">KL(original || perturbed) per layer, nats/token (log scale)</text>\n",
          (x0 + x1) / 2, H - 12, (x0 + x1) / 2);
  int series = 0;
  for (size_t i = 0; i < n; i++) {
    if (r[i].group[0] != 'L' || r[i].first != r[i].last) continue;
    int seen = 0;
    for (size_t j = 0; j < i && !seen; j++)
      seen = r[j].group[0] == 'L' && r[j].first == r[j].last && r[j].err == r[i].err && r[j].eb == r[i].eb &&
             r[j].eb_mode == r[i].eb_mode && r[j].tokens == r[i].tokens;
    if (seen) continue;
    const char *col = COLORS[series % 6];
    bprintf(&b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" stroke-dasharray=\"%s\" points=\"", col,
            DASH[r[i].err]);
    for (int L = lmin; L <= lmax; L++)
      for (size_t j = 0; j < n; j++) {
        if (r[j].group[0] != 'L' || r[j].first != L || r[j].last != L || r[j].err != r[i].err || r[j].eb != r[i].eb ||
            r[j].eb_mode != r[i].eb_mode || r[j].tokens != r[i].tokens || !first_of_cell(r, j))
          continue;
        double m, sd;
        int c;
        cell_stats(r, n, j, 0, &m, &sd, &c);
        bprintf(&b, "%.1f,%.1f ", PX(L), PY(log10(m > 1e-9 ? m : 1e-9)));
        break;
      }
    double ly = y0 + 10 + 18 * series++;
    bprintf(&b, "\"/>\n<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" stroke-width=\"2\" "
                "stroke-dasharray=\"%s\"/>\n<text x=\"%.0f\" y=\"%.0f\">%s eb %g (%s)</text>\n", x1 + 15, ly, x1 + 45, ly, col,
            DASH[r[i].err], x1 + 52, ly + 4, moesz_sweep_err_name(r[i].err), r[i].eb, MODES[r[i].eb_mode]);
  }
#undef PX
#undef PY
  bprintf(&b, "</svg>\n");
  int rc = b.oom ? moesz_error_set(err, MOESZ_E_NOMEM, "out of memory") : put_file(dir, "kl_per_layer.svg", b.p, b.n, err);
  free(b.p);
  return rc;
}

int moesz_sweep_report(const moesz_sweep_row *rows, size_t n, const char *dir, moesz_error *err) {
  int rc = write_json(rows, n, dir, err);
  if (!rc) rc = write_md(rows, n, dir, err);
  for (int k = 0; k < 3 && !rc; k++) rc = write_svg(rows, n, k, dir, err);
  if (!rc) rc = write_per_layer(rows, n, dir, err);
  return rc;
}
