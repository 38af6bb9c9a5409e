/* fuzz/fuzz_sweep_csv.c - libFuzzer target for the sweep's results.csv
 * reader (moesz sweep resumes from it): parses the input and, if it is
 * accepted, checks every row's invariants. */
#include <stdlib.h>
#include <string.h>
#include "moesz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  moesz_sweep_row *r;
  size_t n;
  if (moesz_sweep_csv_parse((const char *)data, size, &r, &n, NULL)) return 0;
  for (size_t i = 0; i < n; i++)
    if (r[i].first < 0 || r[i].first > r[i].last || !(r[i].eb > 0) || r[i].eb_mode < 0 || r[i].eb_mode > 2 ||
        strlen(r[i].group) >= sizeof r[i].group || r[i].seed < 0)
      abort();
  free(r);
  return 0;
}
