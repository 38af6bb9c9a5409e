/* fuzz/fuzz_sweep_tasks_csv.c - libFuzzer target for the sweep's tasks.csv
 * reader (moesz sweep --task resumes from it): parses the input and, if it is
 * accepted, checks every row's invariants. */
#include <stdlib.h>
#include <string.h>
#include "moesz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  moesz_sweep_task_row *r;
  size_t n;
  if (moesz_sweep_tasks_csv_parse((const char *)data, size, &r, &n, NULL)) return 0;
  for (size_t i = 0; i < n; i++)
    if (r[i].first < 0 || r[i].first > r[i].last || !(r[i].eb > 0) || r[i].eb_mode < 0 || r[i].eb_mode > 2 ||
        strlen(r[i].group) >= sizeof r[i].group || strlen(r[i].task) >= sizeof r[i].task || r[i].seed < 0 ||
        !r[i].items || !(r[i].acc >= 0 && r[i].acc <= 1) || !(r[i].ref_acc >= 0 && r[i].ref_acc <= 1))
      abort();
  free(r);
  return 0;
}
