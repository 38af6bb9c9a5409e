#!/usr/bin/env python3
"""Writes src/infer/kernels_cl_tab.h: for each code width b (0..15) and lane i
of 8 codes stored at bit i*b of b little-endian bytes, the byte shuffle that
brings bytes k..k+2 (k = i*b // 8) into 32-bit lane i, and the left shift that
puts the code's top bit at bit 31 (an arithmetic right shift by 32 - b then
sign-extends it). Run from the repository root."""
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
open("src/infer/kernels_cl_tab.h", "w").write("\n".join(out) + "\n")
