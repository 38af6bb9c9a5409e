#!/usr/bin/env python3
"""Peers on the arrays `moesz codec bench` measures: SZ3 (PyPI pysz; algorithm
NOPRED and the default INTERP_LORENZO), zstd (level 3 and 19, lossless) and zfp
(fixed accuracy), at the same absolute bounds, side by side with moesz's two
pipelines (run in the same process via `moesz codec bench --json`).

Ratios are against the bf16 input (2 bytes/value); SZ3 and zfp compress the
float32 widening of the bf16 values (they have no bf16 input), and their error
is measured after rounding their float32 output back to bf16, the dtype a
serving system would use - which is where SZ3's bound can break.

  python3 bench/codec_peers.py [--moesz build/moesz] [--rows 2048 --cols 4096] [--reps 3]
"""
import argparse, json, subprocess, time
import numpy as np


def bf16_round(x):
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return (u.astype(np.uint32) << 16).view(np.float32)


def gaussian_bf16(rows, cols):
    # the same generator as `moesz codec bench --synthetic gaussian` is not needed: we compare on this array
    rng = np.random.default_rng(20261124)
    return bf16_round((rng.standard_normal((rows, cols)) * 0.02).astype(np.float32))


def timeit(f, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = f()
        ts.append(time.perf_counter() - t0)
    return out, float(np.median(ts))


def entropy_bits(x, eb):
    q = np.rint(x.astype(np.float64) / (2 * eb)).astype(np.int64)
    _, c = np.unique(q, return_counts=True)
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moesz", default="build/moesz")
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ebs", default="2e-4,1e-3,5e-3")
    args = ap.parse_args()
    import zstandard, zfpy
    from pysz import sz, szConfig, szAlgorithm, szErrorBoundMode
    x = gaussian_bf16(args.rows, args.cols)
    n = x.size
    bf = (x.view(np.uint32) >> 16).astype(np.uint16)
    raw = bf.tobytes()
    out_bytes = 2 * n
    rows = []
    # memcpy baseline
    _, t = timeit(lambda: bytearray(raw), args.reps)
    memcpy = out_bytes / t / 1e9
    for eb in [float(e) for e in args.ebs.split(",")]:
        H = entropy_bits(x, eb)
        def add(name, size, tc, td, err):
            rows.append({"eb": eb, "codec": name, "bits_per_value": 8 * size / n, "entropy_bits": H,
                         "ratio_vs_bf16": out_bytes / size, "max_err_over_bound": err / eb,
                         "compress_gbps": out_bytes / tc / 1e9, "decompress_gbps": out_bytes / td / 1e9})
        for algo_name, algo in [("SZ3 NOPRED", szAlgorithm.NOPRED), ("SZ3 default (interp+lorenzo)", szAlgorithm.INTERP_LORENZO)]:
            cfg = szConfig(x.shape)
            cfg.errorBoundMode = szErrorBoundMode.ABS
            cfg.absErrorBound = eb
            cfg.cmprAlgo = algo
            (comp, _), tc = timeit(lambda: sz.compress(x, cfg), args.reps)
            (dec, _), td = timeit(lambda: sz.decompress(comp, np.float32, x.shape), args.reps)
            err = float(np.abs(bf16_round(dec).astype(np.float64) - x).max())
            add(algo_name, comp.nbytes, tc, td, err)
        tol = eb
        comp, tc = timeit(lambda: zfpy.compress_numpy(x, tolerance=tol), args.reps)
        dec, td = timeit(lambda: zfpy.decompress_numpy(comp), args.reps)
        add("zfp fixed accuracy", len(comp), tc, td, float(np.abs(bf16_round(dec).astype(np.float64) - x).max()))
        r = subprocess.run([args.moesz, "codec", "bench", "--synthetic", "gaussian", "--rows", str(args.rows), "--cols", str(args.cols),
                            "--eb", str(eb), "--reps", str(args.reps), "--threads", "2", "--json"], capture_output=True, text=True, check=True)
        for line in r.stdout.splitlines():
            j = json.loads(line)
            rows.append({"eb": eb, "codec": f"moesz {j['pipeline']}", "bits_per_value": j["bits_per_value"], "entropy_bits": j["entropy_bits"],
                         "ratio_vs_bf16": 16 / j["bits_per_value"], "max_err_over_bound": j["max_err_over_bound"],
                         "compress_gbps": j["compress_gbps_per_core"], "decompress_gbps": j["decompress_gbps_per_core"],
                         "note": "moesz's own gaussian array (same distribution)"})
    for lvl in (3, 19):
        c = zstandard.ZstdCompressor(level=lvl)
        comp, tc = timeit(lambda: c.compress(raw), args.reps)
        d = zstandard.ZstdDecompressor()
        _, td = timeit(lambda: d.decompress(comp), args.reps)
        rows.append({"eb": 0, "codec": f"zstd -{lvl} (lossless bf16)", "bits_per_value": 8 * len(comp) / n, "entropy_bits": None,
                     "ratio_vs_bf16": out_bytes / len(comp), "max_err_over_bound": 0, "compress_gbps": out_bytes / tc / 1e9,
                     "decompress_gbps": out_bytes / td / 1e9})
    print(f"array: {args.rows} x {args.cols} bf16, N(0, 0.02^2); memcpy {memcpy:.2f} GB/s; medians of {args.reps}\n")
    print("| eb | codec | bits/value | H_q | ratio vs bf16 | max err / eb (bf16 output) | compress GB/s | decompress GB/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        H = "-" if r["entropy_bits"] is None else f"{r['entropy_bits']:.3f}"
        print(f"| {r['eb']:g} | {r['codec']} | {r['bits_per_value']:.3f} | {H} | {r['ratio_vs_bf16']:.3f} | "
              f"{r['max_err_over_bound']:.3f} | {r['compress_gbps']:.3f} | {r['decompress_gbps']:.3f} |")


if __name__ == "__main__":
    main()
