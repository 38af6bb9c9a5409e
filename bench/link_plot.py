#!/usr/bin/env python3
"""bench/link_plot.py - decode tok/s against link speed, one line per storage
method and one panel per budget, from the CSVs bench/link_sweep.sh writes
(several runs: the median per point). Plain SVG (no plotting library). Also
prints the break-even table of the medians (the fastest link at which each
method still decodes at least as fast as raw; log-linear interpolation).

    python3 bench/link_plot.py OUT.svg RUN1.csv [RUN2.csv ...]
"""
import csv
import math
import sys

COLORS = {"raw": "#444444", "zstd": "#1f77b4", "sz-entropy": "#d62728", "sz-fast": "#2ca02c", "sz-compute": "#ff7f0e"}


def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def load(paths):
    """(method, budget, link) -> median decode tok/s over the runs; rows for the plot."""
    acc = {}
    for p in paths:
        for r in csv.DictReader(open(p)):
            if float(r["link_gbps"]) < 0:
                continue
            key = (r["method"], int(r["budget_pct"]), float(r["link_gbps"]))
            acc.setdefault(key, []).append(float(r["decode_tps"]))
    return [{"method": k[0], "budget_pct": k[1], "link_gbps": k[2], "decode_tps": median(v), "runs": len(v)}
            for k, v in acc.items()]


def break_even(rows):
    budgets = sorted({r["budget_pct"] for r in rows})
    speeds = sorted({r["link_gbps"] for r in rows}, key=lambda g: g if g > 0 else 1e9)
    tps = {(r["method"], r["budget_pct"], r["link_gbps"]): r["decode_tps"] for r in rows}
    methods = []
    for r in rows:
        if r["method"] not in methods and r["method"] != "raw":
            methods.append(r["method"])
    print("| budget | method | decode tok/s / raw, %s GB/s -> unthrottled (medians) | compression pays up to |"
          % speeds[0])
    print("|---|---|---|---|")
    for b in budgets:
        for m in methods:
            q = [tps[(m, b, g)] / tps[("raw", b, g)] for g in speeds]
            cross = next((i for i in range(1, len(q)) if q[i - 1] >= 1 > q[i]), None)
            if q[0] < 1:
                be = "never (slower than raw at %g GB/s already)" % speeds[0]
            elif cross is None:
                be = "always (also unthrottled)"
            elif speeds[cross] == 0:
                be = "beyond %g GB/s (loses only unthrottled)" % speeds[cross - 1]
            else:
                s0, s1 = speeds[cross - 1], speeds[cross]
                f = (q[cross - 1] - 1) / (q[cross - 1] - q[cross])
                be = "%.1f GB/s" % math.exp(math.log(s0) + f * (math.log(s1) - math.log(s0)))
            print("| %d%% | %s | %s | %s |" % (b, m, " ".join("%.2f" % x for x in q), be))


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rows = load(sys.argv[2:])
    break_even(rows)
    budgets = sorted({int(r["budget_pct"]) for r in rows})
    methods = []
    for r in rows:
        if r["method"] not in methods:
            methods.append(r["method"])
    speeds = sorted({float(r["link_gbps"]) for r in rows if float(r["link_gbps"]) > 0})
    has_unthrottled = any(float(r["link_gbps"]) == 0 for r in rows)
    # x positions: log2 of the speed; unthrottled one step right of the fastest link
    lo, hi = math.log2(speeds[0]), math.log2(speeds[-1]) + (1 if has_unthrottled else 0)

    def xpos(g):
        return hi if g == 0 else math.log2(g)

    W, H, PAD, GAP = 420, 300, 50, 30
    width = len(budgets) * (W + GAP) + GAP
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">'
           % (width, H + 70), '<rect width="100%" height="100%" fill="white"/>']
    for bi, b in enumerate(budgets):
        sub = [r for r in rows if int(r["budget_pct"]) == b]
        ymax = max(float(r["decode_tps"]) for r in sub) * 1.1 or 1
        x0 = GAP + bi * (W + GAP) + PAD
        pw, ph, y0 = W - PAD, H - PAD, 30

        def X(g):
            return x0 + (xpos(g) - lo) / (hi - lo) * pw

        def Y(v):
            return y0 + ph - v / ymax * ph

        out.append('<text x="%d" y="18" font-size="13">budget %d%% of expert bytes</text>' % (x0, b))
        out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>' % (x0, y0, pw, ph))
        for g in speeds + ([0] if has_unthrottled else []):
            out.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>'
                       % (X(g), y0 + ph + 14, "RAM" if g == 0 else ("%g" % g)))
        for k in range(5):
            v = ymax * k / 4
            out.append('<text x="%d" y="%.1f" text-anchor="end">%.2g</text>' % (x0 - 4, Y(v) + 4, v))
        out.append('<text x="%.1f" y="%d" text-anchor="middle">link GB/s (log scale)</text>' % (x0 + pw / 2, y0 + ph + 30))
        out.append('<text x="%d" y="%.1f" transform="rotate(-90 %d %.1f)" text-anchor="middle">decode tok/s</text>'
                   % (x0 - 34, y0 + ph / 2, x0 - 34, y0 + ph / 2))
        for mi, m in enumerate(methods):
            pts = sorted(((xpos(float(r["link_gbps"])), float(r["link_gbps"]), float(r["decode_tps"]))
                          for r in sub if r["method"] == m))
            path = " ".join("%.1f,%.1f" % (X(g), Y(v)) for _, g, v in pts)
            c = COLORS.get(m, "#9467bd")
            out.append('<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>' % (path, c))
            for _, g, v in pts:
                out.append('<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>' % (X(g), Y(v), c))
            out.append('<text x="%d" y="%d" fill="%s">%s</text>' % (x0 + 8 + mi * 80, H + 60, c, m))
    out.append("</svg>")
    with open(sys.argv[1], "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
