/* serve/page.c - owns what the server says about itself: the live page
 * (embedded HTML + script that polls /v1/experts), that JSON (per layer:
 * each expert resident, in flight or only stored; hits, misses, bytes moved,
 * stall), the Prometheus text of /metrics, and the UTF-8 cleaning every
 * answer's text goes through. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "serve/serve_internal.h"

const char serve_page_html[] =
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>moesz serve</title>\n"
    "<style>body{font:14px sans-serif;margin:1em}table{border-collapse:collapse}"
    "td,th{padding:2px 8px;text-align:right;border-bottom:1px solid #ddd}"
    ".ex{text-align:left;font-family:monospace;letter-spacing:1px}"
    ".R{color:#080}.L{color:#c60}.S{color:#bbb}#sum{margin:.5em 0}</style></head>\n"
    "<body><h1>moesz serve</h1>\n"
    "<div id=\"sum\">loading&hellip;</div>\n"
    "<p>Experts per layer: <span class=\"R\">&#9632; resident</span> "
    "<span class=\"L\">&#9632; in flight</span> <span class=\"S\">&#9632; stored only</span></p>\n"
    "<table id=\"layers\"><thead><tr><th>layer</th><th class=\"ex\">experts</th><th>requests</th><th>hits</th>"
    "<th>misses</th><th>hit rate</th><th>MB read</th><th>MB decoded</th><th>stall s</th></tr></thead>"
    "<tbody id=\"rows\"></tbody></table>\n"
    "<script>\n"
    "function cell(t,c){var d=document.createElement('td');d.textContent=t;if(c)d.className=c;return d;}\n"
    "function render(j){\n"
    " document.getElementById('sum').textContent='model '+j.model+': '+j.active+' running, '+j.queued+\n"
    "  ' waiting; '+j.completion_tokens+' tokens generated, '+j.tokens_per_s.toFixed(1)+' tok/s; cache '+\n"
    "  (j.resident_bytes/1e6).toFixed(2)+' MB of '+(j.budget_bytes?(j.budget_bytes/1e6).toFixed(2)+' MB':'unlimited');\n"
    " var tb=document.getElementById('rows');\n"
    " while(tb.rows.length>j.rows.length)tb.deleteRow(-1);\n"
    " j.rows.forEach(function(r,i){\n"
    "  var tr=tb.rows[i];if(!tr){tr=tb.insertRow();}\n"
    "  tr.id='layer-'+r.layer;tr.className='layer-row';tr.innerHTML='';\n"
    "  tr.appendChild(cell(r.layer));\n"
    "  var ex=document.createElement('td');ex.className='ex';\n"
    "  for(var k=0;k<r.states.length;k++){var s=document.createElement('span');s.className=r.states[k];"
    "s.textContent='\\u25a0';s.title='expert '+k;ex.appendChild(s);}\n"
    "  if(!r.states.length)ex.textContent=r.moe?'(no cache)':'(dense)';\n"
    "  tr.appendChild(ex);tr.appendChild(cell(r.gets));tr.appendChild(cell(r.hits));tr.appendChild(cell(r.misses));\n"
    "  tr.appendChild(cell(r.gets?(100*(r.hits+r.prefetch_waits)/r.gets).toFixed(1)+'%':'-'));\n"
    "  tr.appendChild(cell((r.bytes_read/1e6).toFixed(2)));tr.appendChild(cell((r.bytes_decoded/1e6).toFixed(2)));\n"
    "  tr.appendChild(cell(r.stall_s.toFixed(3)));\n"
    " });\n"
    "}\n"
    "function poll(){fetch('/v1/experts').then(function(r){return r.json();}).then(render)"
    ".catch(function(){}).then(function(){setTimeout(poll,500);});}\n"
    "poll();\n"
    "</script></body></html>\n";

typedef struct sb { char *b; size_t len, cap; int bad; } sb;

static void sb_printf(sb *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sb *s, const char *fmt, ...) {
  if (s->bad) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->b ? s->b + s->len : NULL, s->b ? s->cap - s->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) { s->bad = 1; return; }
    if (s->b && s->len + (size_t)n < s->cap) { s->len += (size_t)n; return; }
    size_t cap = s->cap ? s->cap * 2 : 4096;
    while (cap < s->len + (size_t)n + 1) cap *= 2;
    char *nb = realloc(s->b, cap);
    if (!nb) { s->bad = 1; return; }
    s->b = nb;
    s->cap = cap;
  }
}

static char *sb_done(sb *s) {
  if (s->bad) { free(s->b); return NULL; }
  return s->b;
}

static void snapshot(moesz_server *s, moesz_serve_stats *st, double *tps) {
  pthread_mutex_lock(&s->mu);
  *st = s->st;
  *tps = s->n_act ? s->tps_ewma : 0;
  pthread_mutex_unlock(&s->mu);
}

char *serve_experts_json(moesz_server *s) {
  moesz_serve_stats st;
  double tps;
  snapshot(s, &st, &tps);
  const moesz_config *c = moesz_engine_config(s->e);
  sb o = {0};
  moesz_cache_stats cs = {0};
  if (s->cache) moesz_cache_stats_get(s->cache, &cs);
  sb_printf(&o, "{\"model\":\"%s\",\"layers\":%d,\"experts\":%d,\"active\":%d,\"queued\":%d,\"completion_tokens\":%llu,"
            "\"tokens_per_s\":%.3f,\"budget_bytes\":%llu,\"resident_bytes\":%llu,\"rows\":[", s->model_id, c->n_layers,
            c->n_experts, st.active, st.queued, (unsigned long long)st.completion_tokens, tps,
            (unsigned long long)cs.budget_bytes, (unsigned long long)cs.resident_bytes);
  int E = s->cache ? moesz_cache_experts(s->cache) : 0;
  uint8_t *states = E > 0 ? malloc((size_t)E) : NULL;
  char *str = malloc((size_t)E + 1);
  for (int L = 0; L < c->n_layers; L++) {
    moesz_cache_layer_stats ls = {0};
    int n = 0;
    if (s->cache && c->is_moe[L] && states && moesz_cache_layer_stats_get(s->cache, L, &ls, states) == 0) n = E;
    for (int i = 0; str && i < n; i++)
      str[i] = states[i] == MOESZ_EXPERT_RESIDENT ? 'R' : states[i] == MOESZ_EXPERT_LOADING ? 'L' : 'S';
    if (str) str[n] = 0;
    sb_printf(&o, "%s{\"layer\":%d,\"moe\":%s,\"states\":\"%s\",\"gets\":%llu,\"hits\":%llu,\"misses\":%llu,"
              "\"prefetch_waits\":%llu,\"prefetch_issued\":%llu,\"bytes_read\":%llu,\"bytes_decoded\":%llu,"
              "\"stall_s\":%.6f}", L ? "," : "", L, c->is_moe[L] ? "true" : "false", str ? str : "",
              (unsigned long long)ls.gets, (unsigned long long)ls.hits, (unsigned long long)ls.misses,
              (unsigned long long)ls.prefetch_waits, (unsigned long long)ls.prefetch_issued,
              (unsigned long long)ls.bytes_read, (unsigned long long)ls.bytes_decoded, ls.stall_seconds);
  }
  sb_printf(&o, "]}\n");
  free(states);
  free(str);
  return sb_done(&o);
}

char *serve_metrics_text(moesz_server *s) {
  moesz_serve_stats st;
  double tps;
  snapshot(s, &st, &tps);
  sb o = {0};
#define M(name, type, help, fmt, val) sb_printf(&o, "# HELP moesz_" name " " help "\n# TYPE moesz_" name " " type \
                                                "\nmoesz_" name " " fmt "\n", val)
  M("http_requests_total", "counter", "HTTP requests answered.", "%llu", (unsigned long long)st.requests);
  sb_printf(&o, "# HELP moesz_http_errors_total HTTP answers with an error status.\n"
            "# TYPE moesz_http_errors_total counter\nmoesz_http_errors_total{class=\"4xx\"} %llu\n"
            "moesz_http_errors_total{class=\"5xx\"} %llu\n", (unsigned long long)st.errors_4xx,
            (unsigned long long)st.errors_5xx);
  M("completions_total", "counter", "Generation sequences finished (any reason).", "%llu",
    (unsigned long long)st.completions);
  M("cancelled_total", "counter", "Sequences cancelled because the client went away.", "%llu",
    (unsigned long long)st.cancelled);
  M("prompt_tokens_total", "counter", "Prompt tokens read.", "%llu", (unsigned long long)st.prompt_tokens);
  M("completion_tokens_total", "counter", "Tokens generated.", "%llu", (unsigned long long)st.completion_tokens);
  M("engine_steps_total", "counter", "Batched engine steps.", "%llu", (unsigned long long)st.steps);
  M("engine_step_tokens_total", "counter", "Tokens over all engine steps.", "%llu", (unsigned long long)st.step_rows);
  M("engine_step_sequences_total", "counter", "Sequences over all engine steps.", "%llu",
    (unsigned long long)st.step_seqs);
  M("engine_busy_seconds_total", "counter", "Wall time inside engine steps, summed over the workers.", "%.6f",
    st.busy_seconds);
  M("workers", "gauge", "Scheduler workers.", "%d", st.workers);
  M("sequences_active", "gauge", "Sequences being decoded.", "%d", st.active);
  M("requests_queued", "gauge", "Sequences waiting for a slot.", "%d", st.queued);
  M("tokens_per_second", "gauge", "Generated tokens per second of step time, smoothed (0 when idle).", "%.3f", tps);
  M("generation_tokens_per_second_mean", "gauge", "Generated tokens per busy second since start (per worker).", "%.3f",
    st.busy_seconds > 0 ? (double)st.completion_tokens / st.busy_seconds : 0.0);
  if (s->cache) {
    moesz_cache_stats cs;
    moesz_cache_stats_get(s->cache, &cs);
    M("expert_cache_budget_bytes", "gauge", "Expert cache budget (0 = unlimited).", "%llu",
      (unsigned long long)cs.budget_bytes);
    M("expert_cache_resident_bytes", "gauge", "Decoded experts held and loads in flight.", "%llu",
      (unsigned long long)cs.resident_bytes);
    M("expert_cache_evictions_total", "counter", "Experts evicted.", "%llu", (unsigned long long)cs.evictions);
    const moesz_config *c = moesz_engine_config(s->e);
    static const char *names[] = {"expert_requests_total", "expert_hits_total", "expert_misses_total",
                                  "expert_prefetch_waits_total", "expert_bytes_read_total",
                                  "expert_bytes_decoded_total", "expert_stall_seconds_total"};
    static const char *helps[] = {"Expert requests by the forward pass.", "Requests found decoded.",
                                  "Requests decoded on demand.", "Requests that waited on a prefetch in flight.",
                                  "Stored bytes read from the container.", "Decoded bytes produced.",
                                  "Time the forward pass waited for experts."};
    for (int m = 0; m < 7; m++) {
      sb_printf(&o, "# HELP moesz_%s %s\n# TYPE moesz_%s counter\n", names[m], helps[m], names[m]);
      for (int L = 0; L < c->n_layers; L++) {
        moesz_cache_layer_stats ls;
        if (!c->is_moe[L] || moesz_cache_layer_stats_get(s->cache, L, &ls, NULL)) continue;
        uint64_t v[6] = {ls.gets, ls.hits, ls.misses, ls.prefetch_waits, ls.bytes_read, ls.bytes_decoded};
        if (m < 6) sb_printf(&o, "moesz_%s{layer=\"%d\"} %llu\n", names[m], L, (unsigned long long)v[m]);
        else sb_printf(&o, "moesz_%s{layer=\"%d\"} %.6f\n", names[m], L, ls.stall_seconds);
      }
    }
  }
#undef M
  return sb_done(&o);
}

char *serve_utf8_clean(const char *s, size_t n) {
  char *o = malloc(n * 3 + 1);
  if (!o) return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n;) {
    unsigned char c = (unsigned char)s[i];
    size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    int ok = len > 0 && i + len <= n && c != 0;
    uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (size_t j = 1; ok && j < len; j++) {
      unsigned char d = (unsigned char)s[i + j];
      ok = (d & 0xc0) == 0x80;
      cp = cp << 6 | (d & 0x3f);
    }
    if (ok && len > 1) {   /* overlong forms, surrogates, beyond U+10FFFF */
      static const uint32_t minv[5] = {0, 0, 0x80, 0x800, 0x10000};
      ok = cp >= minv[len] && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
    }
    if (ok) { memcpy(o + k, s + i, len); k += len; i += len; }
    else { memcpy(o + k, "\xef\xbf\xbd", 3); k += 3; i++; }
  }
  o[k] = 0;
  return o;
}
