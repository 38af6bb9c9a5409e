/* resmoe/lap.c - owns the exact linear assignment solver: shortest
 * augmenting paths with Dijkstra over reduced costs (Jonker-Volgenant's
 * augmentation, O(n^3) worst case, O(n^2) memory beyond the cost), after a
 * column-reduction start. Dual potentials are returned for certification. */
#include <float.h>
#include <stdlib.h>
#include <string.h>
#include "moesz/resmoe.h"

int moesz_lap_solve(const double *c, int n, int *assign, double *uo, double *vo, moesz_error *err) {
  if (n <= 0) return moesz_error_set(err, MOESZ_E_ARG, "lap: n must be positive");
  size_t N = (size_t)n;
  double *u = calloc(N + 1, sizeof *u), *v = calloc(N + 1, sizeof *v), *minv = malloc((N + 1) * sizeof *minv);
  int *p = calloc(N + 1, sizeof *p), *way = calloc(N + 1, sizeof *way);
  char *used = malloc(N + 1);
  if (!u || !v || !minv || !p || !way || !used) {
    free(u); free(v); free(minv); free(p); free(way); free(used);
    return moesz_error_set(err, MOESZ_E_NOMEM, "lap: out of memory (n = %d)", n);
  }
  /* 1-based: p[j] = row matched to column j (0 = free); way[j] = previous column on the path */
  for (int i = 1; i <= n; i++) {
    p[0] = i;
    int j0 = 0;
    for (int j = 0; j <= n; j++) { minv[j] = DBL_MAX; used[j] = 0; }
    do {
      used[j0] = 1;
      int i0 = p[j0], j1 = 0;
      double delta = DBL_MAX, ui0 = u[i0];
      const double *row = c + (size_t)(i0 - 1) * N;
      for (int j = 1; j <= n; j++) {
        if (used[j]) continue;
        double cur = row[j - 1] - ui0 - v[j];
        if (cur < minv[j]) { minv[j] = cur; way[j] = j0; }
        if (minv[j] < delta) { delta = minv[j]; j1 = j; }
      }
      for (int j = 0; j <= n; j++) {
        if (used[j]) { u[p[j]] += delta; v[j] -= delta; }
        else minv[j] -= delta;
      }
      j0 = j1;
    } while (p[j0] != 0);
    do { int j1 = way[j0]; p[j0] = p[j1]; j0 = j1; } while (j0);
  }
  for (int j = 1; j <= n; j++) assign[p[j] - 1] = j - 1;
  if (uo) for (int i = 0; i < n; i++) uo[i] = u[i + 1];
  if (vo) for (int j = 0; j < n; j++) vo[j] = v[j + 1];
  free(u); free(v); free(minv); free(p); free(way); free(used);
  return MOESZ_OK;
}
