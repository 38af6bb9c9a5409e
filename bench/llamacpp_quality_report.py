#!/usr/bin/env python3
"""Table (and plot) of bench/llamacpp_quality.sh's results.tsv.

For each llama.cpp format, moesz's KL at the format's bits per weight is
interpolated between the two bounds whose bits bracket it (log KL linear in
bits: KL goes as the bound squared, bits as minus its log2); top-1 is
interpolated linearly in bits. Also: the bits per weight moesz needs to reach
the format's KL (the same interpolation inverted). A format outside the range
of measured bounds gets n/a, never an extrapolation.

  python3 bench/llamacpp_quality_report.py results.tsv [--svg plot.svg]
"""
import argparse, csv, math

GOAL = {"compute": 0.67, "entropy": 0.5}


def load(path):
    llama, moesz = [], {}
    with open(path) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            row = (float(r["bits"]), float(r["kl"]), float(r["top1"]), r["setting"], float(r["ppl"]))
            if r["side"] == "llama.cpp":
                llama.append(row)
            else:
                moesz.setdefault(r["side"].split()[-1], []).append(row)
    for pts in moesz.values():
        pts.sort()
    return llama, moesz


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--svg")
    args = ap.parse_args()
    llama, moesz = load(args.results)
    codecs = [c for c in ("compute", "entropy") if c in moesz]

    head = "| format | bits/weight | llama.cpp KL | llama.cpp top-1 |"
    rule = "|---|---|---|---|"
    for c in codecs:
        head += " %s KL at same bits | top-1 | KL ratio (goal <= %.2fx) | bits at llama.cpp's KL |" % (c, GOAL[c])
        rule += "---|---|---|---|"
    print(head)
    print(rule)
    for bits, kl, top1, name, _ in sorted(llama, key=lambda r: -r[0]):
        line = "| %s | %.4g | %.4g | %.4f |" % (name, bits, kl, top1)
        for c in codecs:
            m = at_bits(moesz[c], bits)
            b = bits_at_kl(moesz[c], kl)
            line += " %s | %s | %s | %s |" % (
                fmt(m and m[0], ".4g"), fmt(m and m[1], ".4f"),
                "n/a" if m is None else "%.2fx" % (m[0] / kl), fmt(b, ".2f"))
        print(line)

    print()
    print("| side | setting | bits/weight | KL | top-1 | ppl |")
    print("|---|---|---|---|---|---|")
    for bits, kl, top1, name, ppl in sorted(llama, key=lambda r: -r[0]):
        print("| llama.cpp | %s | %.4f | %.4g | %.4f | %.3f |" % (name, bits, kl, top1, ppl))
    for c in codecs:
        for bits, kl, top1, eb, ppl in sorted(moesz[c], key=lambda r: -r[0]):
            print("| moesz %s | eb %s | %.4f | %.4g | %.4f | %.3f |" % (c, eb, bits, kl, top1, ppl))

    if args.svg:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for c, style in zip(codecs, ("o-", "s-")):
            pts = moesz[c]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, ms=4,
                    label="moesz %s (one point per bound)" % c)
        ax.scatter([p[0] for p in llama], [p[1] for p in llama], marker="x", s=50,
                   color="black", zorder=3, label="llama.cpp (ggml reference quantizer)")
        seen = {}
        for bits, kl, _, name, _ in sorted(llama, key=lambda r: -r[1]):
            n = seen[bits] = seen.get(bits, -1) + 1  # formats of equal size: labels one under another
            ax.annotate(name, (bits, kl), textcoords="offset points", xytext=(5, 4 - 11 * n), fontsize=8)
        ax.set_yscale("log")
        ax.set_xlabel("bits per expert weight (stored)")
        ax.set_ylabel("KL(original || model) per token, nats")
        ax.set_title("moesz-mix-tiny, experts only, WikiText-2 test")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.svg, format="svg", metadata={"Date": None})


if __name__ == "__main__":
    main()
