/* base/cpu.h - run-time CPU feature detection for kernels that pick an AVX2
 * path or a scalar one (cpuid + xgetbv, so it works with gcc and clang alike
 * and checks that the OS saves AVX state). Owned by src/base. */
#ifndef MOESZ_BASE_CPU_H
#define MOESZ_BASE_CPU_H

/* 1 if AVX2, FMA and F16C are usable. */
int moesz_cpu_avx2(void);
/* 1 if AVX-512 F, BW, VBMI and VNNI are usable (with AVX2 as above). */
int moesz_cpu_avx512_vnni(void);
/* 1 if AVX512_BF16 (vdpbf16ps) is usable too. */
int moesz_cpu_avx512_bf16(void);
#endif
