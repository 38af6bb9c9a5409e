#!/usr/bin/env python3
"""Table (and plot) of bench/llamacpp_quality.sh's results.tsv.

For each llama.cpp format, moesz's KL at the format's bits per weight is
interpolated between the two bounds whose bits bracket it (log KL linear in
bits: KL goes as the bound squared, bits as minus its log2); top-1 is
interpolated linearly in bits. Also: the bits per weight moesz needs to reach
the format's KL (the same interpolation inverted). A format outside the range
of measured bounds gets n/a, never an extrapolation.

The first table holds the uniform bound (one --eb for every layer); when the
results hold policy rows (side "moesz <codec> policy": compress --target-kl,
one bound per layer), a second table sets them next to the uniform ratios, and
the plot draws them as dashed curves. Rows of side "llama.cpp imatrix" (the
same formats quantized with an importance matrix from the calibration text) get
a third table: the policy against them. --policy names the script's policy.tsv
(the layer bounds chosen per target), listed with the measured points.

  python3 bench/llamacpp_quality_report.py results.tsv [--policy policy.tsv] [--svg plot.svg]
"""
import argparse, csv, math

GOAL = {"compute": 0.67, "entropy": 0.5}


def load(path):
    """llama.cpp rows, and moesz rows by curve: "compute", "entropy", "compute policy", "entropy policy"."""
    llama, imat, moesz = [], [], {}
    with open(path) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            row = (float(r["bits"]), float(r["kl"]), float(r["top1"]), r["setting"], float(r["ppl"]))
            if r["side"] == "llama.cpp":
                llama.append(row)
            elif r["side"] == "llama.cpp imatrix":
                imat.append(row)
            elif r["side"].startswith("moesz "):
                moesz.setdefault(r["side"][len("moesz "):], []).append(row)
    for pts in moesz.values():
        pts.sort()
    return llama, imat, moesz


def load_policy(path):
    """(codec, target) -> the row of policy.tsv (layer bounds, tries, calibration KL)."""
    if not path:
        return {}
    with open(path) as f:
        return {(r["codec"], r["target"]): r for r in csv.DictReader(f, delimiter="\t")}


def at_bits(pts, bits):
    """(KL, top-1) interpolated at BITS, or None outside the measured range."""
    for (b0, k0, t0, *_), (b1, k1, t1, *_) in zip(pts, pts[1:]):
        if b0 <= bits <= b1 and k0 > 0 and k1 > 0:
            w = (bits - b0) / (b1 - b0) if b1 > b0 else 0.0
            return math.exp(math.log(k0) + w * (math.log(k1) - math.log(k0))), t0 + w * (t1 - t0)
    return None


def bits_at_kl(pts, kl):
    """bits per weight at which KL reaches KL (pts sorted by bits, KL falling), or None."""
    for (b0, k0, *_), (b1, k1, *_) in zip(pts, pts[1:]):
        if k1 <= kl <= k0 and k0 > 0 and k1 > 0 and k0 != k1:
            w = (math.log(kl) - math.log(k0)) / (math.log(k1) - math.log(k0))
            return b0 + w * (b1 - b0)
    return None


def fmt(x, spec):
    return "n/a" if x is None else format(x, spec)


def ratio(m, kl):
    return "n/a" if m is None else "%.2fx" % (m[0] / kl)


def header(fixed, per_codec, codecs):
    """A markdown table's head: the fixed columns, then per_codec's for each codec (%(c)s, %(goal)s)."""
    cols = fixed + [h % {"c": c, "goal": GOAL[c]} for c in codecs for h in per_codec]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--policy", help="policy.tsv of bench/llamacpp_quality.sh (layer bounds per target)")
    ap.add_argument("--svg")
    args = ap.parse_args()
    llama, imat, moesz = load(args.results)
    plans = load_policy(args.policy)
    codecs = [c for c in ("compute", "entropy") if c in moesz]
    pcodecs = [c for c in ("compute", "entropy") if c + " policy" in moesz]
    formats = sorted(llama, key=lambda r: -r[0])

    # 1. the uniform bound
    header(["format", "bits/weight", "llama.cpp KL", "llama.cpp top-1"],
           ["%(c)s KL at same bits", "top-1", "KL ratio (goal <= %(goal).2fx)", "bits at llama.cpp's KL"], codecs)
    for bits, kl, top1, name, _ in formats:
        line = "| %s | %.4g | %.4g | %.4f |" % (name, bits, kl, top1)
        for c in codecs:
            m = at_bits(moesz[c], bits)
            b = bits_at_kl(moesz[c], kl)
            line += " %s | %s | %s | %s |" % (fmt(m and m[0], ".4g"), fmt(m and m[1], ".4f"), ratio(m, kl), fmt(b, ".2f"))
        print(line)

    # 2. the bound policy, next to the uniform bound's ratio and bits
    if pcodecs:
        print()
        header(["format", "bits/weight", "llama.cpp KL"],
               ["%(c)s uniform: ratio / bits at llama.cpp's KL", "%(c)s policy KL at same bits", "top-1",
                "KL ratio (goal <= %(goal).2fx)", "bits at llama.cpp's KL"], pcodecs)
        for bits, kl, _, name, _ in formats:
            line = "| %s | %.4g | %.4g |" % (name, bits, kl)
            for c in pcodecs:
                u = at_bits(moesz.get(c, []), bits)
                ub = bits_at_kl(moesz.get(c, []), kl)
                m = at_bits(moesz[c + " policy"], bits)
                b = bits_at_kl(moesz[c + " policy"], kl)
                line += " %s / %s | %s | %s | %s | %s |" % (
                    ratio(u, kl), fmt(ub, ".2f"), fmt(m and m[0], ".4g"), fmt(m and m[1], ".4f"), ratio(m, kl),
                    fmt(b, ".2f"))
            print(line)

    # 3. the bound policy against llama.cpp with an importance matrix
    if imat and pcodecs:
        plain = {r[3]: r[1] for r in llama}
        print()
        header(["format", "bits/weight", "llama.cpp imatrix KL", "top-1", "vs without"],
               ["%(c)s policy KL at same bits", "KL ratio (goal <= %(goal).2fx)", "bits at its KL"], pcodecs)
        for bits, kl, top1, name, _ in sorted(imat, key=lambda r: -r[0]):
            line = "| %s | %.4g | %.4g | %.4f | %s |" % (
                name, bits, kl, top1, "%.2fx" % (kl / plain[name]) if name in plain else "n/a")
            for c in pcodecs:
                m = at_bits(moesz[c + " policy"], bits)
                b = bits_at_kl(moesz[c + " policy"], kl)
                line += " %s | %s | %s |" % (fmt(m and m[0], ".4g"), ratio(m, kl), fmt(b, ".2f"))
            print(line)

    print()
    print("| side | setting | bits/weight | KL | top-1 | ppl |")
    print("|---|---|---|---|---|---|")
    for bits, kl, top1, name, ppl in formats:
        print("| llama.cpp | %s | %.4f | %.4g | %.4f | %.3f |" % (name, bits, kl, top1, ppl))
    for bits, kl, top1, name, ppl in sorted(imat, key=lambda r: -r[0]):
        print("| llama.cpp imatrix | %s | %.4f | %.4g | %.4f | %.3f |" % (name, bits, kl, top1, ppl))
    for c in codecs:
        for bits, kl, top1, eb, ppl in sorted(moesz[c], key=lambda r: -r[0]):
            print("| moesz %s | eb %s | %.4f | %.4g | %.4f | %.3f |" % (c, eb, bits, kl, top1, ppl))
    for c in pcodecs:
        for bits, kl, top1, t, ppl in sorted(moesz[c + " policy"], key=lambda r: -r[0]):
            print("| moesz %s policy | target %s | %.4f | %.4g | %.4f | %.3f |" % (c, t, bits, kl, top1, ppl))

    if plans:
        print()
        print("| codec | target KL | tries | predicted KL | calibration KL | --layer-eb |")
        print("|---|---|---|---|---|---|")
        for (c, t), r in sorted(plans.items(), key=lambda kv: (kv[0][0], float(kv[0][1]))):
            print("| %s | %s | %s | %.4g | %.4g | `%s` |" % (c, t, r["tries"], float(r["predicted"]),
                                                           float(r["calib_kl"]), r["layer_eb"]))

    if args.svg:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for c, style, color in zip(("compute", "entropy"), ("o", "s"), ("tab:blue", "tab:orange")):
            if c in moesz:
                pts = moesz[c]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style + "-", ms=4, color=color,
                        label="moesz %s, one bound (one point per bound)" % c)
            if c + " policy" in moesz:
                pts = moesz[c + " policy"]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style + "--", ms=4, color=color, mfc="none",
                        label="moesz %s, bound policy (one point per target)" % c)
        ax.scatter([p[0] for p in llama], [p[1] for p in llama], marker="x", s=50,
                   color="black", zorder=3, label="llama.cpp (ggml reference quantizer)")
        if imat:
            ax.scatter([p[0] for p in imat], [p[1] for p in imat], marker="+", s=60, color="tab:red", zorder=3,
                       label="llama.cpp with an importance matrix")
        seen = {}
        for bits, kl, _, name, _ in sorted(llama, key=lambda r: -r[1]):
            n = seen[bits] = seen.get(bits, -1) + 1  # formats of equal size: labels one under another
            ax.annotate(name, (bits, kl), textcoords="offset points", xytext=(5, 4 - 11 * n), fontsize=8)
        ax.set_yscale("log")
        ax.set_xlabel("bits per expert weight (stored)")
        ax.set_ylabel("KL(original || model) per token, nats")
        ax.set_title("moesz-mix-tiny, experts only, WikiText-2 test")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.svg, format="svg", metadata={"Date": None})


if __name__ == "__main__":
    main()
