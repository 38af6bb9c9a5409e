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
 *
 *   ggml_roundtrip FORMAT IN.f32 OUT.f32 IMATRIX.f32 ROW
 *
 * With an importance matrix: ggml's quantize_<fmt> (what llama.cpp's quantizer
 * runs when given one) on rows of ROW values (a multiple of the block), row r
 * with quant_weights = IMATRIX.f32[r * ROW ...], which holds one weight per
 * value of IN.f32 (the mean squared activation of the value's input column).
 * Q8_0 ignores the weights, as in ggml.
 */
#include "ggml-quants.h"
#include "ggml-common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*quant_fn)(const float *x, void *y, int64_t k);
typedef void (*dequant_fn)(const void *x, float *y, int64_t k);
typedef size_t (*quant_imat_fn)(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix);

struct format {
    const char *name;
    size_t block_values;  /* values per block */
    size_t block_bytes;   /* bytes per block */
    quant_fn quant;
    dequant_fn dequant;
    quant_imat_fn quant_imat;
};

#define FMT(NAME, LOWER, QK, BLOCK)                                              \
    { NAME, QK, sizeof(BLOCK), (quant_fn)quantize_row_##LOWER##_ref,            \
      (dequant_fn)dequantize_row_##LOWER, quantize_##LOWER }

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
    if (argc != 4 && argc != 6) {
        fprintf(stderr, "usage: ggml_roundtrip FORMAT IN.f32 OUT.f32 [IMATRIX.f32 ROW] | ggml_roundtrip --list\n");
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
    if (argc == 6) {
        float *w = NULL;
        size_t nw = 0;
        char *end;
        long row = strtol(argv[5], &end, 10);
        if (*end || end == argv[5] || row <= 0 || (size_t)row % fmt->block_values || n % (size_t)row) {
            fprintf(stderr, "ggml_roundtrip: ROW %s is not a positive multiple of %zu dividing %zu\n",
                    argv[5], fmt->block_values, n);
            return 1;
        }
        if (read_all(argv[4], &w, &nw) != 0 || nw != n) {
            fprintf(stderr, "ggml_roundtrip: %s is not %zu float32 weights\n", argv[4], n);
            return 1;
        }
        for (size_t i = 0; i < n; i++)
            if (!(w[i] >= 0) || !isfinite(w[i])) {
                fprintf(stderr, "ggml_roundtrip: importance weight %zu is %g\n", i, (double)w[i]);
                return 1;
            }
        size_t row_bytes = (size_t)row / fmt->block_values * fmt->block_bytes;
        for (size_t r = 0; r < n / (size_t)row; r++)
            fmt->quant_imat(x + r * (size_t)row, (char *)q + r * row_bytes, 1, row, w + r * (size_t)row);
        free(w);
    } else {
        fmt->quant(x, q, (int64_t)n);
    }
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
