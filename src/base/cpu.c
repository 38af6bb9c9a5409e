/* base/cpu.c - CPU feature detection (see cpu.h). */
#include "base/cpu.h"

/* cpuid traps to the hypervisor in a virtual machine (microseconds), so the
 * answers are kept: a write-once cache of a fact about the hardware (or of a
 * check of this build on it), which every thread computes identically
 * (0 = not asked yet, else answer + 1). */
int moesz_cpu_once(_Atomic int *slot, int (*detect)(void)) {
  int v = atomic_load_explicit(slot, memory_order_relaxed);
  if (!v) {
    v = detect() + 1;
    atomic_store_explicit(slot, v, memory_order_relaxed);
  }
  return v - 1;
}

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static int detect_avx2(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
  int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
  if (!fma || !osxsave || !avx || !f16c) return 0;
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & 6) != 6) return 0;              /* XMM and YMM state saved by the OS */
  if (__get_cpuid_max(0, 0) < 7) return 0;
  __cpuid_count(7, 0, a, b, c, d);
  return (b >> 5) & 1;                      /* AVX2 */
}

static int detect_avx512_vnni(void) {
  if (!detect_avx2()) return 0;
  unsigned a, b, c, d, lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & 0xe6) != 0xe6) return 0;        /* opmask and ZMM state saved too */
  __cpuid_count(7, 0, a, b, c, d);
  return ((b >> 16) & 1) && ((b >> 30) & 1) && ((c >> 11) & 1); /* F, BW, VNNI */
}

static int detect_avx512_bf16(void) {
  if (!detect_avx512_vnni() || __get_cpuid_max(0, 0) < 7) return 0;
  unsigned a, b, c, d;
  __cpuid_count(7, 0, a, b, c, d);
  if (a < 1) return 0;                      /* no subleaf 1 */
  __cpuid_count(7, 1, a, b, c, d);
  return (a >> 5) & 1;                      /* AVX512_BF16 */
}

static int detect_avx512_vbmi(void) {
  if (!detect_avx512_vnni()) return 0;
  unsigned a, b, c, d;
  __cpuid_count(7, 0, a, b, c, d);
  return (c >> 1) & 1;                      /* VBMI */
}

int moesz_cpu_avx2(void) {
  static _Atomic int slot;
  return moesz_cpu_once(&slot, detect_avx2);
}

int moesz_cpu_avx512_vnni(void) {
  static _Atomic int slot;
  return moesz_cpu_once(&slot, detect_avx512_vnni);
}

int moesz_cpu_avx512_bf16(void) {
  static _Atomic int slot;
  return moesz_cpu_once(&slot, detect_avx512_bf16);
}

int moesz_cpu_avx512_vbmi(void) {
  static _Atomic int slot;
  return moesz_cpu_once(&slot, detect_avx512_vbmi);
}
#else
int moesz_cpu_avx2(void) { return 0; }
int moesz_cpu_avx512_vnni(void) { return 0; }
int moesz_cpu_avx512_bf16(void) { return 0; }
int moesz_cpu_avx512_vbmi(void) { return 0; }
#endif
