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
/* AVX512_VNNI: the compute layout's 8-bit tile (kernels_cl.c: quad k of
 * column half h at tile + (8 h + k) * 64, 16 rows x 4 offset codes u in
 * 0..15) by nt (1..6) tokens of 8-bit x (x8[t] [ng * 64], in the tile's
 * column order; s8[t] [ng], one scale per group): out[t * 16 + i] = sum over
 * halves h of s8[t][h / 2] * (int32 sum of u * x8 over the half), in that
 * order, one FMA a half: the AVX2 kernel's sums bit for bit. */
void KX(moesz_kx_cl8_mm)(const uint8_t *tile, int64_t ng, const int8_t *const *x8, const float *const *s8, int nt,
                         float *out);
/* AVX-512 VBMI + VNNI, the compute layout against 1 to 4 tokens
 * (kernels_x512.c explains the arithmetic). moesz_kx_cl_quant_x: x [cols]
 * one scale a block of 4 groups of 64 columns, into xq (moesz_kx_cl_xq_bytes(ng) bytes: three
 * digit planes, scales, sums), digits 3 to 24 bits (exact) or 2 to 16 bits
 * (fast_dot: the top plane zero); 0 if x has a non-finite value.
 * moesz_kx_cl_rows: rows r0..r1 of m against nt (1..4) tokens (xq[t] from
 * the quantizer with the same digits, x[t] the f32 values, read for groups
 * wider than 8 bits): out[t * ldo + i] = sum over columns of q x for row
 * r0 + i (before the step and the escapes). */
struct moesz_cl;
size_t KX(moesz_kx_cl_xq_bytes)(int64_t ng);
int KX(moesz_kx_cl_quant_x)(const float *x, int64_t cols, int64_t ng, int digits, void *xq);
void KX(moesz_kx_cl_rows)(const struct moesz_cl *m, int64_t r0, int64_t r1, const void *const *xq,
                          const float *const *x, int nt, int digits, float *out, size_t ldo);
#endif
