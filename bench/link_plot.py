#!/usr/bin/env python3
"""bench/link_plot.py - decode tok/s against link speed, one line per storage
method and one panel per budget, from the CSV bench/link_sweep.sh writes.
Plain SVG (no plotting library).

    python3 bench/link_plot.py LINK.csv OUT.svg
"""
import csv
import math
import sys

COLORS = {"raw": "#444444", "zstd": "#1f77b4", "sz-entropy": "#d62728", "sz-fast": "#2ca02c"}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rows = [r for r in csv.DictReader(open(sys.argv[1])) if float(r["link_gbps"]) >= 0]
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
            out.append('<text x="%d" y="%d" fill="%s">%s</text>' % (x0 + 8 + mi * 95, H + 60, c, m))
    out.append("</svg>")
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
