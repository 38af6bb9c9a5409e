#!/usr/bin/env python3
"""moesz.compress / moesz.decompress from Python against the C bench
(`moesz codec bench --file`, the plain C calls on one thread) on the same
array, and against SZ3 through its Python package (PyPI pysz).

The array (N(0, 0.02^2), bf16, ROWS x COLS, the generator of
bench/codec_peers.py) is written to a temporary safetensors file that the C
bench reads, so both sides code the same bytes. Each round runs the C bench
(REPS repetitions, medians) and the Python calls (REPS repetitions, medians)
back to back, alternating which goes first; the table gives the medians over
ROUNDS rounds and the median of the per-round Python / C ratios. GB/s count bytes of bf16 values
(2 per value), as the C bench does. moesz runs one thread; decompress is
timed into a preallocated array (out=, as the C bench) and allocating its
result. A second table isolates the binding's cost on a loaded machine: each
repetition times moesz.compress / moesz.decompress(out=) and, right after, the
same C function called bare through ctypes (no checks, no bytes object), and
reports the median of the per-pair ratios. SZ3 has no bf16 input: it codes
the float32 widening.

  python3 bench/python_codec.py [--moesz build/moesz] [--rows 2048 --cols 4096] [--reps 5] [--rounds 3]
"""
import argparse
import json
import os
import struct
import subprocess
import tempfile
import time

import ml_dtypes
import numpy as np

import moesz


def gaussian_bf16(rows, cols):
    rng = np.random.default_rng(20261124)
    return (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32).astype(ml_dtypes.bfloat16)


def write_safetensors(path, name, a):
    hdr = json.dumps({name: {"dtype": "BF16", "shape": list(a.shape), "data_offsets": [0, a.nbytes]}}).encode()
    hdr += b" " * (-len(hdr) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)) + hdr + a.tobytes())


def med_time(f, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moesz", default="build/moesz")
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--eb", type=float, default=1e-3)
    ap.add_argument("--no-pysz", action="store_true")
    args = ap.parse_args()
    x = gaussian_bf16(args.rows, args.cols)
    n, gb = x.size, 2 * x.size / 1e9
    out = np.empty(n, dtype=ml_dtypes.bfloat16)
    rows = {}
    with tempfile.TemporaryDirectory() as d:
        st = os.path.join(d, "w.safetensors")
        write_safetensors(st, "w", x)
        bufs = {p: moesz.compress(x, eb=args.eb, pipeline=p, threads=1) for p in ("entropy", "fast")}
        for rnd in range(args.rounds):
            def c_part():
                r = subprocess.run([args.moesz, "codec", "bench", "--file", st, "--tensor", "w", "--eb",
                                    str(args.eb), "--reps", str(args.reps), "--threads", "1", "--json"],
                                   capture_output=True, text=True, check=True)
                return {j["pipeline"]: j for j in map(json.loads, r.stdout.splitlines())}

            def py_part():
                res = {}
                for p, buf in bufs.items():
                    tc = med_time(lambda: moesz.compress(x, eb=args.eb, pipeline=p, threads=1), args.reps)
                    td = med_time(lambda: moesz.decompress(buf, out=out), args.reps)
                    ta = med_time(lambda: moesz.decompress(buf), args.reps)
                    assert np.abs(out.astype(np.float64) - x.reshape(-1).astype(np.float64)).max() <= args.eb
                    res[p] = (tc, td, ta)
                return res
            if rnd % 2:       # alternate which side runs first, so load drift does not favour one
                py, cj = py_part(), c_part()
            else:
                cj, py = c_part(), py_part()
            for p, (tc, td, ta) in py.items():
                j = cj[p]
                assert abs(8 * len(bufs[p]) / n - j["bits_per_value"]) < 1e-3   # the same stream as the C bench
                rec = rows.setdefault(p, {k: [] for k in ("c_comp", "c_dec", "py_comp", "py_dec", "py_dec_alloc")})
                rec["bits"] = j["bits_per_value"]
                rec["c_comp"].append(j["compress_gbps_per_core"])
                rec["c_dec"].append(j["decompress_gbps_per_core"])
                rec["py_comp"].append(gb / tc)
                rec["py_dec"].append(gb / td)
                rec["py_dec_alloc"].append(gb / ta)
        # binding overhead, interleaved pairs: the API call, then the bare C call through ctypes
        import ctypes as C
        from moesz import _lib as L
        pairs = {}
        for p in rows:
            buf = moesz.compress(x, eb=args.eb, pipeline=p, threads=1)
            prm = L.CodecParams(mode=0, eb=args.eb, pipeline=0 if p == "entropy" else 1, out_dtype=L.DT_COUNT,
                                threads=1, chunk=0)
            src, dst, cbuf = C.c_void_p(x.ctypes.data), C.c_void_p(out.ctypes.data), C.c_char_p(buf)

            def bare_comp():
                o, ln = C.c_void_p(), C.c_size_t()
                assert L.lib.moesz_codec_compress(src, L.DT_BF16, n, C.byref(prm), C.byref(o), C.byref(ln), None,
                                                  None) == 0
                L.free(o)

            def bare_dec():
                assert L.lib.moesz_codec_decompress(cbuf, len(buf), L.DT_BF16, dst, n, 1, None) == 0
            rc, rd = [], []
            for _ in range(args.reps * args.rounds):
                rc.append(med_time(lambda: moesz.compress(x, eb=args.eb, pipeline=p, threads=1), 1) /
                          med_time(bare_comp, 1))
                rd.append(med_time(lambda: moesz.decompress(buf, out=out), 1) / med_time(bare_dec, 1))
            pairs[p] = (float(np.median(rc)), float(np.median(rd)), len(rc))
    med = lambda v: float(np.median(v))  # noqa: E731
    print("array: %d x %d bf16, N(0, 0.02^2), eb %g; one thread; %d rounds x %d reps (medians)\n"
          % (args.rows, args.cols, args.eb, args.rounds, args.reps))
    print("| codec | bits/value | C compress GB/s | Python compress GB/s | Python / C | C decompress GB/s | "
          "Python decompress (out=) GB/s | Python / C | Python decompress (allocating) GB/s | Python / C |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for p, r in rows.items():
        ratio = lambda a, b: med([x / y for x, y in zip(r[a], r[b])])  # noqa: E731
        print("| moesz %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |" % (
            p, r["bits"], med(r["c_comp"]), med(r["py_comp"]), ratio("py_comp", "c_comp"), med(r["c_dec"]),
            med(r["py_dec"]), ratio("py_dec", "c_dec"), med(r["py_dec_alloc"]), ratio("py_dec_alloc", "c_dec")))
    print("\nBinding overhead (time of the moesz call / time of the bare C call, median of interleaved pairs):\n")
    print("| codec | compress: moesz.compress / bare C | decompress: moesz.decompress(out=) / bare C | pairs |")
    print("|---|---|---|---|")
    for p, (a, b, k) in pairs.items():
        print("| moesz %s | %.3f | %.3f | %d |" % (p, a, b, k))
    if args.no_pysz:
        return
    from pysz import sz, szAlgorithm, szConfig, szErrorBoundMode
    x32 = x.astype(np.float32)
    print("\nFrom Python, same process, same values: moesz (bf16 input, bound kept in bf16) and SZ3 through pysz "
          "(float32 widening; its float32 output rounded to bf16 for the error):\n")
    print("| codec | bits/value | max err / eb (bf16) | compress GB/s | decompress GB/s |")
    print("|---|---|---|---|---|")
    for p in rows:
        buf = moesz.compress(x, eb=args.eb, pipeline=p, threads=1)
        tc = med_time(lambda: moesz.compress(x, eb=args.eb, pipeline=p, threads=1), args.reps)
        td = med_time(lambda: moesz.decompress(buf), args.reps)
        err = np.abs(moesz.decompress(buf).astype(np.float64) - x.reshape(-1).astype(np.float64)).max()
        print("| moesz %s (Python) | %.3f | %.3f | %.3f | %.3f |" % (p, 8 * len(buf) / n, err / args.eb, gb / tc,
                                                                  gb / td))
    for name, algo in (("SZ3 NOPRED (pysz)", szAlgorithm.NOPRED), ("SZ3 default (pysz)", szAlgorithm.INTERP_LORENZO)):
        cfg = szConfig(x32.shape)
        cfg.errorBoundMode = szErrorBoundMode.ABS
        cfg.absErrorBound = args.eb
        cfg.cmprAlgo = algo
        comp, _ = sz.compress(x32, cfg)
        dec, _ = sz.decompress(comp, np.float32, x32.shape)
        err = np.abs(dec.astype(ml_dtypes.bfloat16).astype(np.float64) - x.astype(np.float64)).max()
        tc = med_time(lambda: sz.compress(x32, cfg), args.reps)
        td = med_time(lambda: sz.decompress(comp, np.float32, x32.shape), args.reps)
        print("| %s | %.3f | %.3f | %.3f | %.3f |" % (name, 8 * comp.nbytes / n, err / args.eb, gb / tc, gb / td))


if __name__ == "__main__":
    main()
