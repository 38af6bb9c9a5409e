/* fuzz/fuzz_clayout.c - libFuzzer target for the codec's compute layout:
 * arbitrary bytes parsed as a layout (copied to an aligned buffer); what
 * parses is decoded to f32 and multiplied by the scalar and AVX2 kernels:
 * the float path, and (smaller layouts) the integer path with x split
 * exactly, at 16 bits and at 8 bits, for 1 to 4 tokens. */
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
      float *x = calloc((size_t)m.cols * 4, sizeof(float)), *y = malloc((size_t)m.rows * 4 * sizeof(float));
      size_t sb = (moesz_k_cl_scratch_bytes(m.cols) + 63) / 64 * 64;
      void *scr = aligned_alloc(64, sb);
      if (w && x && y && scr) {
        moesz_cl_decode(&m, w);
        for (int64_t i = 0; i < m.cols * 4; i++) x[i] = (float)(i % 5) - 2 + (float)(i % 7) * 0.001f;
        for (int simd = 0; simd < 2; simd++) {
          moesz_k_cl_rows(&m, 0, m.rows, x, (size_t)m.cols, 1, y, (size_t)m.rows, 0, simd && moesz_k_cpu_simd(), 0, NULL, 0);
          moesz_k_cl_rows(&m, 0, m.rows, x, (size_t)m.cols, 3, y, (size_t)m.rows, 0, simd && moesz_k_cpu_simd(), 0, NULL, 0);
        }
        if ((size_t)m.rows * (size_t)m.cols <= (1u << 18) && moesz_k_cpu_simd())
          for (int act = 0; act < 3; act++)
            for (int nt = 1; nt <= 4; nt++)
              moesz_k_cl_rows(&m, 0, m.rows, x, (size_t)m.cols, nt, y, (size_t)m.rows, nt & 1, 1, act, scr, 0);
      }
      free(w); free(x); free(y); free(scr);
    }
    moesz_cl_free(&m);
  }
  free(buf);
  return 0;
}
