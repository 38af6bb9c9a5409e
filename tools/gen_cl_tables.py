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

# src/infer/kernels_cl512_tab.h: for width b <= 8 the vpermb indices that put
# the b bytes of codes 8j..8j+7 into 64-bit lane j (bytes jb .. jb+b-1; the
# lane's other bytes repeat later ones, never read past byte 63), and the
# vpmultishiftqb offsets that take the 8 bits ending at code i's top bit
# (i b + b - 8, modulo 64: the first code's low bits wrap to the lane's top,
# masked off afterwards): code i in the top b bits of byte i.
hdr5 = """/* infer/kernels_cl512_tab.h - constant unpacking tables of kernels_x512.c's
 * compute-layout kernel, written by tools/gen_cl_tables.py (do not edit by
 * hand): for width b <= 8, the vpermb indices putting the b bytes of codes
 * 8j..8j+7 into 64-bit lane j, and the vpmultishiftqb bit offsets putting
 * code i of a lane into the top b bits of byte i. */
"""
out5 = [hdr5.rstrip("\n"), "static const uint8_t CL5_PERM[9][64] __attribute__((aligned(64))) = {"]
msh5 = []
for b in range(9):
    perm, msh = [], []
    for j in range(8):
        for k in range(8):
            perm.append(j * b + k if b else 0)
            msh.append((k * b + b - 8) % 64 if b else 0)
    out5.append("  {" + ", ".join(str(v) for v in perm) + "},")
    msh5.append(msh)
out5 += ["};", "static const uint8_t CL5_MSH[9][64] __attribute__((aligned(64))) = {"]
out5 += ["  {" + ", ".join(str(v) for v in m) + "}," for m in msh5]
out5 += ["};"]
open("src/infer/kernels_cl512_tab.h", "w").write("\n".join(out5) + "\n")
