/* infer/sampler.c - next-token sampling: greedy (temperature 0),
 * temperature softmax, nucleus (top-p) restriction, with the RNG state in
 * the sampler (xorshift64*), never global. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "moesz/infer.h"

typedef struct { float p; int32_t id; } prob_id;

void moesz_sampler_init(moesz_sampler *s, float temperature, float top_p, uint64_t seed) {
  memset(s, 0, sizeof *s);
  s->temperature = temperature;
  s->top_p = top_p;
  /* splitmix64 of the seed, so nearby seeds give unrelated streams; never 0 */
  uint64_t z = seed + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  s->rng = z ? z : 0x2545f4914f6cdd1dull;
}

void moesz_sampler_free(moesz_sampler *s) {
  if (!s) return;
  free(s->scratch);
  s->scratch = NULL;
  s->cap = 0;
}

static double uniform01(moesz_sampler *s) { /* [0, 1) with 53 random bits */
  uint64_t x = s->rng;
  x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
  s->rng = x;
  return (double)((x * 0x2545f4914f6cdd1dull) >> 11) * (1.0 / 9007199254740992.0);
}

int32_t moesz_argmax(const float *x, int n) {
  if (n <= 0) return -1;
  int32_t best = 0;
  for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
  return best;
}

static int by_prob_desc(const void *a, const void *b) {
  const prob_id *x = a, *y = b;
  if (x->p != y->p) return x->p > y->p ? -1 : 1;
  return x->id < y->id ? -1 : (x->id > y->id);
}

int32_t moesz_sampler_sample(moesz_sampler *s, const float *logits, int n) {
  if (n <= 0 || !logits) return MOESZ_E_ARG;
  if (!(s->temperature > 0)) return moesz_argmax(logits, n);
  if (s->cap < n) {
    void *p = realloc(s->scratch, sizeof(prob_id) * (size_t)n);
    if (!p) return MOESZ_E_NOMEM;
    s->scratch = p;
    s->cap = n;
  }
  prob_id *pi = s->scratch;
  float m = logits[moesz_argmax(logits, n)];
  double sum = 0;
  for (int i = 0; i < n; i++) {
    double v = exp(((double)logits[i] - m) / s->temperature);
    pi[i].p = (float)v;
    pi[i].id = i;
    sum += v;
  }
  int cnt = n;
  double mass = sum;
  if (s->top_p > 0 && s->top_p < 1) {
    qsort(pi, (size_t)n, sizeof *pi, by_prob_desc);
    double acc = 0, goal = s->top_p * sum;
    cnt = 0;
    while (cnt < n) {
      acc += pi[cnt].p;
      cnt++;
      if (acc >= goal) break;
    }
    mass = acc;
  }
  double r = uniform01(s) * mass, acc = 0;
  for (int i = 0; i < cnt; i++) {
    acc += pi[i].p;
    if (r < acc) return pi[i].id;
  }
  /* rounding left r at the very top: the last candidate with mass */
  for (int i = cnt - 1; i >= 0; i--) if (pi[i].p > 0) return pi[i].id;
  return pi[0].id;
}
