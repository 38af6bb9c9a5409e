/* infer/route.c - owns the sigmoid group-limited top-k router of DeepSeek-V3
 * and GLM-4.5 (correction bias for selection only, group scores as the sum of
 * each group's best two, routed_scaling_factor). See infer/mla.h. */
#include <math.h>
#include "infer/mla.h"

/* Indices of the k largest of v[n] into idx (larger first, lower index first on ties). */
static void top_indices(const float *v, int n, int k, int32_t *idx) {
  for (int j = 0; j < k; j++) idx[j] = -1;
  for (int i = 0; i < n; i++) {
    if (idx[k - 1] >= 0 && v[i] <= v[idx[k - 1]]) continue;
    int j = k - 1;
    while (j > 0 && (idx[j - 1] < 0 || v[i] > v[idx[j - 1]])) { idx[j] = idx[j - 1]; j--; }
    idx[j] = i;
  }
}

void moesz_route_sigmoid_groups(const float *logits, const float *bias, int E, int n_group,
                                int topk_group, int k, int renorm, float scale, int32_t *idx,
                                float *w, float *tmp) {
  float *s = tmp, *c = tmp + E;
  for (int i = 0; i < E; i++) {
    s[i] = 1.0f / (1.0f + expf(-logits[i]));
    c[i] = bias ? s[i] + bias[i] : s[i];
  }
  if (n_group > 1 && topk_group < n_group) {
    int gs = E / n_group;
    float *gscore = tmp + 2 * E;              /* [n_group] */
    int32_t top2[2];
    for (int g = 0; g < n_group; g++) {
      top_indices(c + g * gs, gs, 2, top2);
      gscore[g] = c[g * gs + top2[0]] + c[g * gs + top2[1]];
    }
    /* group g stays iff fewer than topk_group groups rank above it */
    for (int g = 0; g < n_group; g++) {
      int above = 0;
      for (int h = 0; h < n_group; h++)
        above += gscore[h] > gscore[g] || (gscore[h] == gscore[g] && h < g);
      if (above >= topk_group)
        for (int i = g * gs; i < (g + 1) * gs; i++) c[i] = -INFINITY;
    }
  }
  top_indices(c, E, k, idx);
  float sum = 0;
  for (int j = 0; j < k; j++) { w[j] = s[idx[j]]; sum += w[j]; }
  if (renorm) {
    sum += 1e-20f;
    for (int j = 0; j < k; j++) w[j] /= sum;
  }
  for (int j = 0; j < k; j++) w[j] *= scale;
}
