#!/usr/bin/env python3
"""Decode speed against bits per expert weight: the speed half of the
quality-at-equal-bytes comparison (bench/results/quality_vs_llamacpp.md).

Reads one or more outputs of bench/compute_vs_llamacpp.sh run with VERBOSE=1
(every run's decode and prompt tok/s per file), pools each entry's runs over
all outputs (median, and the range of the per-output medians), and sets them
against the bits each file spends per routed-expert weight:

- a .msz container: `moesz inspect --json` (expert_stored_bytes * 8 over the
  expert weights);
- a GGUF file: the bytes of its `*_exps` tensors over their elements (gguf-py);
- a model folder: its dtype's width (BF16: 16).

The expert weights are counted from the model's config (MoE layers x experts
x 3 x hidden x moe_intermediate: the gate, up and down matrices of
Mixtral-style experts). Writes a markdown table to stdout and, with --svg, a
plot (bits per expert weight -> decode tok/s, one curve per engine).

  python3 bench/speed_at_bits.py --moesz build/moesz --files DIR X.msz ... Y.gguf ... \
      --runs run1.txt [run2.txt ...] [--svg plot.svg]
"""
import argparse, json, os, re, statistics, subprocess, sys


def expert_weights(moesz, model_dir):
    cfg = json.loads(subprocess.run([moesz, "inspect", model_dir, "--json"], check=True, capture_output=True,
                                    text=True).stdout)["config"]
    return cfg["n_moe_layers"] * cfg["n_experts"] * 3 * cfg["hidden"] * cfg["moe_intermediate"]


def bits_of(moesz, path, nw):
    if os.path.isdir(path):
        with open(os.path.join(path, "config.json")) as f:
            dt = json.load(f).get("torch_dtype", "")
        width = {"bfloat16": 16, "float16": 16, "float32": 32}.get(dt)
        if width is None:
            sys.exit(f"{path}: unknown torch_dtype {dt!r}")
        return float(width)
    if path.endswith(".msz"):
        info = json.loads(subprocess.run([moesz, "inspect", path, "--json"], check=True, capture_output=True,
                                         text=True).stdout)
        return info["expert_stored_bytes"] * 8 / nw
    if path.endswith(".gguf"):
        import gguf   # gguf-py, from the llama.cpp sources
        r = gguf.GGUFReader(path)
        nb = ne = 0
        for t in r.tensors:
            if "_exps" in t.name:
                nb += int(t.n_bytes)
                ne += int(t.n_elements)
        if ne != nw:
            sys.exit(f"{path}: {ne} expert weights in the GGUF, {nw} in the model's config")
        return nb * 8 / ne
    sys.exit(f"{path}: not a folder, .msz or .gguf")


def sections(paths):
    """The outputs in the files: each starts at the script's header line ('# YYYY-MM-DD, ...')."""
    for p in paths:
        cur = None
        with open(p) as f:
            for line in f:
                if re.match(r"# \d{4}-\d\d-\d\d, ", line):
                    if cur:
                        yield cur
                    cur = []
                elif cur is not None:
                    cur.append(line.rstrip("\n"))
        if cur:
            yield cur


def parse_runs(paths):
    """{(engine, file): [per-output list of (decode, prompt) runs]}."""
    out, n = {}, 0
    for sec in sections(paths):
        n += 1
        eng, runs = {}, {}
        for line in sec:
            m = re.match(r"\| (moesz[^|]*|llama\.cpp) \| (\S+) \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|", line)
            if m:
                eng[m.group(2)] = m.group(1).strip()
                continue
            m = re.match(r"# (\S+): ([0-9.]+ \([0-9.]+\)(, [0-9.]+ \([0-9.]+\))*)$", line.strip())
            if m:
                runs[m.group(1)] = [(float(g), float(pp)) for g, pp in re.findall(r"([0-9.]+) \(([0-9.]+)\)", m.group(2))]
        for key, vals in runs.items():   # a VERBOSE line names the entry with its +fast suffix
            base = re.sub(r"\+fast8?$", "", key)
            e = ("moesz --fast-dot=8" if key.endswith("+fast8") else "moesz --fast-dot" if key.endswith("+fast")
                 else eng.get(base, "moesz"))
            out.setdefault((e, base), []).append(vals)
    return out, n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--moesz", default="build/moesz")
    ap.add_argument("--files", nargs="+", required=True, help="the model folder first, then the .msz and .gguf files")
    ap.add_argument("--runs", nargs="+", required=True, help="outputs of compute_vs_llamacpp.sh with VERBOSE=1")
    ap.add_argument("--svg")
    args = ap.parse_args()
    nw = expert_weights(args.moesz, args.files[0])
    bits = {os.path.basename(p.rstrip("/")): bits_of(args.moesz, p, nw) for p in args.files}
    runs, nout = parse_runs(args.runs)
    if not runs:
        sys.exit("no VERBOSE=1 output of compute_vs_llamacpp.sh in --runs")
    rows = []
    for (eng, f), per in runs.items():
        if f not in bits:
            sys.exit(f"{f}: in the runs but not in --files")
        allg = [g for vals in per for g, _ in vals]
        allp = [pp for vals in per for _, pp in vals]
        meds = [statistics.median(g for g, _ in vals) for vals in per]
        rows.append((eng, f, bits[f], statistics.median(allg), min(meds), max(meds), statistics.median(allp), len(allg)))
    rows.sort(key=lambda r: (r[0] != "llama.cpp", r[0], -r[2]))
    print(f"Expert weights: {nw}; {nout} outputs pooled.\n")
    print("| engine | file | bits / expert weight | decode tok/s (median of all runs) | per-output medians |"
          " prompt tok/s | runs |")
    print("|---|---|---|---|---|---|---|")
    for eng, f, b, g, lo, hi, pp, n in rows:
        print(f"| {eng} | {f} | {b:.3f} | {g:.2f} | {lo:.2f}-{hi:.2f} | {pp:.1f} | {n} |")
    if args.svg:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for eng in sorted({r[0] for r in rows}):
            pts = sorted((r[2], r[3], r[4], r[5]) for r in rows if r[0] == eng)
            xs = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            err = [[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]]
            ax.errorbar(xs, ys, yerr=err, marker="o" if eng == "llama.cpp" else "s", capsize=3, label=eng)
        ax.set_xlabel("bits per expert weight (stored)")
        ax.set_ylabel("decode tok/s (2 threads; bars: range of run medians)")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.svg, format="svg", metadata={"Date": None})


if __name__ == "__main__":
    main()
