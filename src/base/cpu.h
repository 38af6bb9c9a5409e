/* base/cpu.h - run-time CPU feature detection for kernels that pick an AVX2
 * or AVX-512 path or a scalar one (cpuid + xgetbv, so it works with gcc and
 * clang alike and checks that the OS saves AVX state), and the write-once
 * cache that keeps such answers. Owned by src/base. */
#ifndef MOESZ_BASE_CPU_H
#define MOESZ_BASE_CPU_H
#include <stdatomic.h>

/* 1 if AVX2, FMA and F16C are usable. */
int moesz_cpu_avx2(void);
/* 1 if AVX-512 F, BW and VNNI are usable (with AVX2 as above). */
int moesz_cpu_avx512_vnni(void);
/* 1 if AVX512_BF16 (vdpbf16ps) is usable too. */
int moesz_cpu_avx512_bf16(void);
/* 1 if AVX512_VBMI (vpermb, vpmultishiftqb) is usable too (with F, BW, VNNI). */
int moesz_cpu_avx512_vbmi(void);
/* detect()'s answer, asked once per slot (a static _Atomic int, 0 at start)
 * and kept: for facts about this CPU, and checks of kernels on it. */
int moesz_cpu_once(_Atomic int *slot, int (*detect)(void));
#endif
