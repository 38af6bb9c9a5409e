/* infer/kernels_x512.h - AVX-512 kernels for prompt-sized products and
 * AVX512_BF16 dot products, called by kernels.c where the CPU has them (see
 * kernels_x512.c). Internal to src/infer. */
#ifndef MOESZ_INFER_KERNELS_X512_H
#define MOESZ_INFER_KERNELS_X512_H
#include <stddef.h>
#include <stdint.h>

/* tests/test_kernels_x512.c builds kernels_x512.c a second time against a
 * portable AVX-512 implementation, under other names */
#ifndef KX
#define KX(name) name
#endif

/* Packed path, AVX-512F: nr packed f32 rows p [nr, c] times nt tokens x
 * [nt, c] (row stride ldx): y[t * ldy + i] (+)= sum_k p[i, k] x[t, k]. The
 * sums of kernels.c's AVX2 micro-kernels up to summation order. */
void KX(moesz_kx_mm_f32)(const float *p, int nr, const float *x, size_t ldx, int nt, size_t c,
                         float *y, size_t ldy, int acc);

/* Bytes of the BF16 copy of n tokens of `cols` values: row stride
 * moesz_kx_bf16_ld(cols) (cols rounded up to 32, zero padded). */
size_t KX(moesz_kx_bf16_ld)(size_t cols);
/* x [n, cols] (row stride ldx) rounded to BF16 (nearest even) into xb [n,
 * ldb], each row zero padded to ldb. */
void KX(moesz_kx_x_to_bf16)(const float *x, size_t ldx, int n, size_t cols, uint16_t *xb, size_t ldb);
/* AVX512_BF16: nr BF16 rows w [nr, cols] (row stride ld) times nt tokens of
 * xb [nt, ldb] (moesz_kx_x_to_bf16): y[t * ldy + i] (+)= sum_k w[i, k] xb[t, k]
 * in f32 by vdpbf16ps (each product exact, sums in f32). */
void KX(moesz_kx_bf16_rows)(const uint16_t *w, size_t ld, size_t cols, int nr, const uint16_t *xb,
                            size_t ldb, int nt, float *y, size_t ldy, int acc);
#endif
