#!/usr/bin/env python3
"""bench/cl_escape_cost.py - what a cheaper escape would save the compute layout.

A model of the encoder's width choice (src/codec/clayout.c, docs/CODEC.md
"Groups"): per group of 64 codes the width b minimising 64 b + E * (codes
outside b bits), plus 4 bits a group for its width; the better of the two
grids per matrix. E = 64 is today's escape (u32 position + F32 value); the
other costs are hypothetical formats. Prints bits per expert weight, pooled
over every routed expert matrix of a model folder (safetensors; numpy,
ml_dtypes and safetensors from PyPI). A model, not the encoder: headers, alignment and
the bound's rounding are left out (they add about 0.04 bits at eb 1e-3 on
models/moesz-mix-tiny, against bench/cl_rate).

    python3 bench/cl_escape_cost.py [MODEL_DIR] [--eb 1e-3,8e-3,3.2e-2] [--esc 64,48,32,24]
"""
import argparse
import glob
import os

import ml_dtypes  # noqa: F401 (registers bfloat16 with numpy for safetensors)
import numpy as np
from safetensors.numpy import load_file


def group_bits(q, esc_bits):
    """Bits of the codes q [rows, cols] at the best width per group of 64."""
    rows, cols = q.shape
    ng = (cols + 63) // 64
    pad = np.zeros((rows, ng * 64))
    pad[:, :cols] = q
    g = pad.reshape(rows, ng, 64)
    best = None
    for b in range(16):
        lo, hi = (-(1 << (b - 1)), (1 << (b - 1)) - 1) if b else (0, 0)
        c = 64 * b + esc_bits * ((g < lo) | (g > hi)).sum(-1)
        best = c if best is None else np.minimum(best, c)
    return float(best.sum()) + 4.0 * rows * ng


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", default="models/moesz-mix-tiny")
    ap.add_argument("--eb", default="1e-3,8e-3,3.2e-2")
    ap.add_argument("--esc", default="64,48,32,24")
    a = ap.parse_args()
    mats = []
    for f in sorted(glob.glob(os.path.join(a.model, "*.safetensors"))):
        for k, v in load_file(f).items():
            if "experts" in k and v.ndim == 2:
                mats.append(v.astype(np.float32))
    if not mats:
        raise SystemExit(f"{a.model}: no routed expert matrices")
    n = sum(m.size for m in mats)
    print("| eb | escape bits | bits/weight, zero grid | bits/weight, better grid per matrix |")
    print("|---|---|---|---|")
    for eb in (float(e) for e in a.eb.split(",")):
        step = 2 * eb
        for e in (int(x) for x in a.esc.split(",")):
            zero = best = 0.0
            for m in mats:
                z = group_bits(np.round(m / step), e)
                h = group_bits(np.floor(m / step), e)
                zero += z
                best += min(z, h)
            print(f"| {eb:g} | {e} | {zero / n:.3f} | {best / n:.3f} |")


if __name__ == "__main__":
    main()
