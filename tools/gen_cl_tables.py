#!/usr/bin/env python3
"""Writes src/infer/kernels_cl_tab.h: for each code width b (0..15) and lane i
of 8 codes stored at bit i*b of b little-endian bytes, the byte shuffle that
brings bytes k..k+2 (k = i*b // 8) into 32-bit lane i, and the left shift that
puts the code's top bit at bit 31 (an arithmetic right shift by 32 - b then
sign-extends it); and for widths up to 8 the same for 16 codes into 16-bit
lanes (two bytes, a multiplier as the left shift). Run from the repository
root."""
hdr = """/* infer/kernels_cl_tab.h - constant unpacking tables of kernels_cl.c, written
 * by tools/gen_cl_tables.py (do not edit by hand): for width b and lane i of 8
 * codes at bit i*b of b bytes, the bytes k..k+2 (k = i*b/8) into 32-bit lane
 * i, and the left shift putting the code's top bit at bit 31. */
"""
shuf, shl = [], []
for b in range(16):
    s, l = [], []
    for i in range(8):
        k, o = (i * b) >> 3, (i * b) & 7
        if b == 0:
            s += [0x80] * 4
            l.append(0)
        else:
            s += [k, k + 1, k + 2, 0x80]
            l.append(32 - o - b)
    shuf.append(s)
    shl.append(l)
out = [hdr.rstrip("\n"), "static const uint8_t CL_SHUF[16][32] __attribute__((aligned(32))) = {"]
out += ["  {" + ", ".join("0x%02x" % v for v in s) + "}," for s in shuf]
out += ["};", "static const int32_t CL_SHL[16][8] __attribute__((aligned(32))) = {"]
out += ["  {" + ", ".join(str(v) for v in l) + "}," for l in shl]
out += ["};"]
# 16 codes of width b <= 8 (2b bytes) into 16-bit lanes: bytes k, k+1 of code
# i (k = i*b // 8; k+1 past the 16 bytes is not needed then), and the
# multiplier 2^(16 - o - b) that left-aligns the code in its lane.
out += ["static const uint8_t CL_SHUF16[9][32] __attribute__((aligned(32))) = {"]
mul = []
for b in range(9):
    s16, m16 = [], []
    for i in range(16):
        k, o = (i * b) >> 3, (i * b) & 7
        if b == 0:
            s16 += [0x80, 0x80]
            m16.append(0)
        else:
            s16 += [k, k + 1 if k + 1 < 16 else 0x80]
            m16.append(1 << (16 - o - b))
    out.append("  {" + ", ".join("0x%02x" % v for v in s16) + "},")
    mul.append(m16)
out += ["};", "static const uint16_t CL_MUL16[9][16] __attribute__((aligned(32))) = {"]
out += ["  {" + ", ".join(str(v) for v in m) + "}," for m in mul]
out += ["};"]
# the arithmetic right shift 16 - b that follows, as the 128-bit count operand
# of vpsraw (low 64 bits; b = 0 gives 16: the zero codes stay zero)
out += ["static const uint64_t CL_SRA16[9][2] __attribute__((aligned(16))) = {"]
out += ["  {%d, 0}," % (16 - b) for b in range(9)]
out += ["};"]
open("src/infer/kernels_cl_tab.h", "w").write("\n".join(out) + "\n")
