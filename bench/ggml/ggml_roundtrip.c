/* bench/ggml/ggml_roundtrip.c - quantize -> dequantize round trip of float32 arrays
 * through llama.cpp's own quantizer: the C reference functions of ggml
 * (quantize_row_<fmt>_ref, dequantize_row_<fmt>), which are what llama.cpp's
 * quantizer runs for these formats when no importance matrix is given.
 *
 * Not part of the moesz build (kept out of the top of bench/, whose C files `make benches`
 * compiles): bench/llamacpp_quality.sh compiles it against
 * the ggml sources of an unpacked llama-cpp-python sdist at bench time
 * (ggml-quants.c, ggml.c and their helpers; no ggml code lives in this repo).
 *
 *   ggml_roundtrip FORMAT IN.f32 OUT.f32
 *
 * IN.f32 is a raw little-endian float32 array whose length is a multiple of
 * the format's block (32 for Q8_0/Q4_0, 256 for the K-quants); the array is
 * quantized as one flat row of that length, i.e. a matrix is quantized
 * flattened row-major. OUT.f32 receives the dequantized values. Prints the
 * format's bits per weight and the max |error| on stderr.
 */
#include "ggml-quants.h"
#include "ggml-common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*quant_fn)(const float *x, void *y, int64_t k);
typedef void (*dequant_fn)(const void *x, float *y, int64_t k);

struct format {
    const char *name;
    size_t block_values;  /* values per block */
    size_t block_bytes;   /* bytes per block */
    quant_fn quant;
    dequant_fn dequant;
};

#define FMT(NAME, LOWER, QK, BLOCK)                                              \
    { NAME, QK, sizeof(BLOCK), (quant_fn)quantize_row_##LOWER##_ref,            \
      (dequant_fn)dequantize_row_##LOWER }

static const struct format formats[] = {
    FMT("Q8_0", q8_0, QK8_0, block_q8_0),
    FMT("Q6_K", q6_K, QK_K, block_q6_K),
    FMT("Q5_K", q5_K, QK_K, block_q5_K),
    FMT("Q5_1", q5_1, QK5_1, block_q5_1),
    FMT("Q5_0", q5_0, QK5_0, block_q5_0),
    FMT("Q4_K", q4_K, QK_K, block_q4_K),
    FMT("Q4_1", q4_1, QK4_1, block_q4_1),
    FMT("Q4_0", q4_0, QK4_0, block_q4_0),
    FMT("Q3_K", q3_K, QK_K, block_q3_K),
    FMT("Q2_K", q2_K, QK_K, block_q2_K),
};

static int read_all(const char *path, float **out, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return -1; }
    long len = ftell(f);
    if (len < 0 || len % 4 != 0 || fseek(f, 0, SEEK_SET) != 0) { fclose(f); return -1; }
    *n = (size_t)len / 4;
    *out = malloc(*n ? *n * 4 : 4);
    if (!*out || fread(*out, 4, *n, f) != *n) { fclose(f); free(*out); return -1; }
    fclose(f);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
            printf("%s %.4f\n", formats[i].name,
                   8.0 * (double)formats[i].block_bytes / (double)formats[i].block_values);
        return 0;
    }
    if (argc != 4) {
        fprintf(stderr, "usage: ggml_roundtrip FORMAT IN.f32 OUT.f32 | ggml_roundtrip --list\n");
        return 2;
    }
    const struct format *fmt = NULL;
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (strcmp(formats[i].name, argv[1]) == 0) fmt = &formats[i];
    if (!fmt) { fprintf(stderr, "ggml_roundtrip: unknown format %s\n", argv[1]); return 2; }
    float *x = NULL;
    size_t n = 0;
    if (read_all(argv[2], &x, &n) != 0) {
        fprintf(stderr, "ggml_roundtrip: cannot read %s as float32\n", argv[2]);
        return 1;
    }
    if (n == 0 || n % fmt->block_values != 0) {
        fprintf(stderr, "ggml_roundtrip: %zu values is not a positive multiple of %s's block of %zu\n",
                n, fmt->name, fmt->block_values);
        free(x);
        return 1;
    }
    size_t nblocks = n / fmt->block_values;
    void *q = calloc(nblocks, fmt->block_bytes);
    float *y = malloc(n * 4);
    if (!q || !y) { fprintf(stderr, "ggml_roundtrip: out of memory\n"); return 1; }
    fmt->quant(x, q, (int64_t)n);
    fmt->dequant(q, y, (int64_t)n);
    double maxerr = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)y[i] - (double)x[i]);
        if (e > maxerr) maxerr = e;
    }
    FILE *f = fopen(argv[3], "wb");
    if (!f || fwrite(y, 4, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "ggml_roundtrip: cannot write %s\n", argv[3]);
        return 1;
    }
    fprintf(stderr, "%s: %zu values, %.4f bits/weight, max |err| %.6g\n", fmt->name, n,
            8.0 * (double)(nblocks * fmt->block_bytes) / (double)n, maxerr);
    free(x); free(y); free(q);
    return 0;
}
