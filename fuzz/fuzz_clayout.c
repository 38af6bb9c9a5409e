/* fuzz/fuzz_clayout.c - libFuzzer target for the codec's compute layout:
 * arbitrary bytes parsed as a layout (copied to an aligned buffer); what
 * parses is decoded to f32 and multiplied by the scalar and AVX2 kernels. */
#include <stdlib.h>
#include <string.h>
#include "infer/kernels.h"
#include "moesz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *buf = aligned_alloc(64, (size + 64) / 64 * 64);
  if (!buf) return 0;
  memcpy(buf, data, size);
  moesz_cl m;
  if (moesz_cl_parse(buf, size, &m, NULL) == 0) {
    if ((size_t)m.rows * (size_t)m.cols <= (1u << 22)) {
      float *w = malloc((size_t)m.rows * (size_t)m.cols * sizeof(float));
      float *x = calloc((size_t)m.cols * 3, sizeof(float)), *y = malloc((size_t)m.rows * 3 * sizeof(float));
      if (w && x && y) {
        moesz_cl_decode(&m, w);
        for (int64_t i = 0; i < m.cols * 3; i++) x[i] = (float)(i % 5) - 2;
        for (int simd = 0; simd < 2; simd++) {
          moesz_k_cl_rows(&m, 0, m.rows, x, (size_t)m.cols, 1, y, (size_t)m.rows, 0, simd && moesz_k_cpu_simd(), 0, NULL, 0);
          moesz_k_cl_rows(&m, 0, m.rows, x, (size_t)m.cols, 3, y, (size_t)m.rows, 0, simd && moesz_k_cpu_simd(), 0, NULL, 0);
        }
      }
      free(w); free(x); free(y);
    }
    moesz_cl_free(&m);
  }
  free(buf);
  return 0;
}
