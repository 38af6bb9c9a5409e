#!/bin/sh
# bench/resmoe_stored.sh - stored bytes per expert weight against KL and
# top-1 agreement for the ways moesz can store a model's experts: the
# error-bounded codec alone (sz) over a range of bounds; ResMoE stored in the
# container (compress --method resmoe: codec-coded barycenter + pruned or SVD
# residuals) over keep and bounds; plain pruning + sz (--base none); and the
# paper's ResMoE without a codec (`moesz resmoe`, bf16 values + u32 positions).
# Every run scores the same held-out tokens with `moesz ppl --ref MODEL`.
#
#   sh bench/resmoe_stored.sh [MODEL] [TEXT] [TOKENS]
#
# Writes $OUT/runs.tsv (one row per run) and prints the Markdown table; with
# SVG=path also an SVG plot (bytes -> KL). Env: MOESZ_BIN (build/moesz),
# OUT (/tmp/moesz_resmoe_stored), THREADS (2), QUICK=1 (a few runs only).
# SERVE=1 instead measures serving (moesz run, 128 greedy tokens, LFRU) of
# sz and ResMoE containers under 25% and 50% budgets, REPS (5) runs each.
set -eu
MOESZ_BIN=${MOESZ_BIN:-build/moesz}
MODEL=${1:-models/moesz-mix-tiny}
TEXT=${2:-../shared/data/text/wikitext-2-raw-test.txt}
TOKENS=${3:-20000}
OUT=${OUT:-/tmp/moesz_resmoe_stored}
THREADS=${THREADS:-2}
REPS=${REPS:-5}
mkdir -p "$OUT"
TSV=$OUT/runs.tsv
val() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p"; }

# weights per expert byte: bf16 / f16 models store 2 bytes per weight, f32 4
case $(tr -d ' \n' < "$MODEL/config.json" | sed -n 's/.*"\(torch_\)\{0,1\}dtype":"\([a-z0-9]*\)".*/\2/p') in
  float32) WB=4 ;; *) WB=2 ;;
esac

score() {   # label kind keep eb stored_bytes raw_bytes model_path
  p=$("$MOESZ_BIN" ppl "$7" "$TEXT" --ref "$MODEL" --limit-tokens "$TOKENS" --threads "$THREADS" --json)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$(echo "$p" | val ppl)" \
    "$(echo "$p" | val kl)" "$(echo "$p" | val top1)" >> "$TSV"
  tail -1 "$TSV" >&2
}

done_already() { cut -f1 "$TSV" | grep -qx "$1"; }

container() {   # label kind keep eb compress-args...
  label=$1 kind=$2 keep=$3 eb=$4
  shift 4
  done_already "$label" && return 0
  msz=$OUT/$label.msz
  j=$("$MOESZ_BIN" compress "$MODEL" -o "$msz" --eb "$eb" --threads "$THREADS" --quiet --json "$@")
  score "$label" "$kind" "$keep" "$eb" "$(echo "$j" | val expert_stored_bytes)" "$(echo "$j" | val expert_raw_bytes)" "$msz"
  rm -f "$msz"
}

if [ "${SERVE:-0}" = 1 ]; then
  # serving: tokens/s and bytes moved under 25% and 50% of the decoded expert bytes, same prompt, greedy
  raw=$("$MOESZ_BIN" compress "$MODEL" -o "$OUT/s.msz" --eb 1e-3 --quiet --json | val expert_raw_bytes)
  echo "| container | stored expert bytes | budget | tok/s (median of $REPS) | hit rate | bytes read | decode s |"
  echo "|---|---|---|---|---|---|---|"
  for cfg in "sz 1e-3:--method sz --eb 1e-3" "sz 8e-3:--method sz --eb 8e-3" \
             "resmoe(prune) keep 0.25 + sz 1e-3:--method resmoe --keep 0.25 --eb 1e-3" \
             "resmoe(svd) keep 0.25 + sz 1e-3:--method resmoe --residual svd --keep 0.25 --eb 1e-3"; do
    name=${cfg%%:*}
    # shellcheck disable=SC2086
    st=$("$MOESZ_BIN" compress "$MODEL" -o "$OUT/s.msz" --quiet --json ${cfg#*:} | val expert_stored_bytes)
    for frac in 25 50; do
      budget=$((raw * frac / 100))
      for r in $(seq "$REPS"); do
        "$MOESZ_BIN" run "$OUT/s.msz" --prompt "${PROMPT:-Once upon a time}" --max-tokens 128 --temperature 0 \
          --mem "$budget" --cache lfru --threads "$THREADS" --stats json 2>&1 | grep "^{" | tail -1
      done > "$OUT/serve.json"
      tps=$(val tokens_per_s < "$OUT/serve.json" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
      last=$(tail -1 "$OUT/serve.json")
      echo "| $name | $st | $frac% ($budget) | $tps | $(echo "$last" | val hit_rate) | $(echo "$last" | val bytes_read) | $(echo "$last" | val decode_s) |"
    done
  done
  rm -f "$OUT/s.msz" "$OUT/serve.json"
  exit 0
fi

# runs already in $TSV are kept (an interrupted sweep resumes); remove $OUT to start afresh
[ -s "$TSV" ] || printf 'label\tkind\tkeep\teb\tstored_bytes\traw_bytes\tppl\tkl\ttop1\n' > "$TSV"
if [ "${QUICK:-0}" = 1 ]; then
  EBS_SZ="1e-3 8e-3"; KEEPS="0.25"; EBS_RM="1e-3"
else
  EBS_SZ="1e-3 2e-3 4e-3 8e-3 1.6e-2 3.2e-2 4.8e-2 6.4e-2 1.28e-1"; KEEPS="0.1 0.25 0.5"; EBS_RM="2e-3 8e-3 3.2e-2"
fi
for eb in $EBS_SZ; do container "sz-$eb" sz - "$eb" --method sz; done
for keep in $KEEPS; do
  for eb in $EBS_RM; do
    container "resmoe-prune-$keep-$eb" "resmoe(prune)+sz" "$keep" "$eb" --method resmoe --residual prune --keep "$keep"
    container "resmoe-svd-$keep-$eb" "resmoe(svd)+sz" "$keep" "$eb" --method resmoe --residual svd --keep "$keep"
  done
  container "prune-$keep-1e-3" "prune+sz" "$keep" 1e-3 --method resmoe --residual prune --keep "$keep" --base none
  # the paper's ResMoE without a codec: bf16 barycenter and values, u32 positions; other layers raw
  d=$OUT/paper-$keep
  done_already "paper-$keep" && continue
  "$MOESZ_BIN" resmoe "$MODEL" -o "$d" --keep "$keep" --report "$d.json" > /dev/null
  raw=$(awk -F'\t' 'NR == 2 { print $6 }' "$TSV")
  st=$(tr -d ' \n\t' < "$d.json" | sed 's/.*"original_bytes":\([0-9.e+]*\),"stored_bytes":\([0-9.e+]*\)}$/\1 \2/')
  stored=$(echo "$st $raw" | awk '{ printf "%.0f", $2 + $3 - $1 }')
  score "paper-$keep" "resmoe, no codec" "$keep" - "$stored" "$raw" "$d"
  rm -rf "$d" "$d.json"
done
if [ "${QUICK:-0}" != 1 ]; then
  container "resmoe-prune-all-0.25-1e-3" "resmoe(prune)+sz, all layers" 0.25 1e-3 --method resmoe --resmoe-layers all
  # the low-bytes end, where the front is decided
  container "resmoe-svd-0.25-6.4e-2" "resmoe(svd)+sz" 0.25 6.4e-2 --method resmoe --residual svd --keep 0.25
  container "resmoe-svd-0.1-6.4e-2" "resmoe(svd)+sz" 0.1 6.4e-2 --method resmoe --residual svd --keep 0.1
  container "resmoe-svd-all-0.25-3.2e-2" "resmoe(svd)+sz, all layers" 0.25 3.2e-2 --method resmoe --residual svd --keep 0.25 --resmoe-layers all
  container "resmoe-svd-all-0.1-3.2e-2" "resmoe(svd)+sz, all layers" 0.1 3.2e-2 --method resmoe --residual svd --keep 0.1 --resmoe-layers all
fi

python3 - "$TSV" "$WB" "${SVG:-}" <<'EOF'
import sys
tsv, wb, svg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = [l.rstrip('\n').split('\t') for l in open(tsv)][1:]
runs = []
for r in rows:
    label, kind, keep, eb, stored, raw, ppl, kl, top1 = r
    bits = 8.0 * float(stored) / (float(raw) / wb)
    runs.append(dict(label=label, kind=kind, keep=keep, eb=eb, bits=bits, ppl=float(ppl), kl=float(kl), top1=float(top1)))
# Pareto front of (bits, KL): no other run has fewer-or-equal bits and lower-or-equal KL (one strictly)
for a in runs:
    a['front'] = not any((b['bits'] <= a['bits'] and b['kl'] <= a['kl']) and (b['bits'] < a['bits'] or b['kl'] < a['kl']) for b in runs)
print('| method | keep | eb | bits / expert weight | ppl | KL(ref \\|\\| model) | top-1 | on front |')
print('|---|---|---|---|---|---|---|---|')
for a in sorted(runs, key=lambda a: a['bits']):
    print('| %s | %s | %s | %.3f | %.2f | %.4f | %.4f | %s |' % (a['kind'], a['keep'], a['eb'], a['bits'], a['ppl'], a['kl'], a['top1'], 'yes' if a['front'] else ''))
if svg:
    W, H, ml, mb, mt, mr = 820, 440, 70, 50, 20, 290
    import math
    # runs far right of the rest (uncoded values) are listed, not drawn, so the front stays readable
    near = [a for a in runs if a['bits'] <= 8] or runs
    off = [a for a in runs if a not in near]
    xs = [a['bits'] for a in near]; ys = [a['kl'] for a in near]
    x0, x1 = 0.0, max(xs) * 1.05
    y0, y1 = math.log10(min(ys)) - 0.1, math.log10(max(ys)) + 0.1
    X = lambda v: ml + (v - x0) / (x1 - x0) * (W - ml - mr)
    Y = lambda v: H - mb - (math.log10(v) - y0) / (y1 - y0) * (H - mb - mt)
    colors = {}
    palette = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf', '#7f7f7f']
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (W, H),
           '<rect width="100%" height="100%" fill="white"/>',
           '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (ml, H - mb, W - mr, H - mb),
           '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (ml, mt, ml, H - mb),
           '<text x="%d" y="%d" text-anchor="middle">stored bits per expert weight</text>' % ((ml + W - mr) // 2, H - 12),
           '<text x="16" y="%d" transform="rotate(-90 16 %d)" text-anchor="middle">KL(ref || model), nats/token (log)</text>' % ((mt + H - mb) // 2, (mt + H - mb) // 2)]
    for t in range(0, int(x1) + 1, 1):
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%d</text>' % (X(t), H - mb + 16, t))
    for e in range(int(math.floor(y0)), int(math.ceil(y1)) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if y0 <= math.log10(v) <= y1:
                out.append('<text x="%d" y="%.1f" text-anchor="end">%g</text>' % (ml - 4, Y(v) + 4, v))
                out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>' % (ml, Y(v), W - mr, Y(v)))
    front = sorted([a for a in runs if a['front']], key=lambda a: a['bits'])
    out.append('<polyline fill="none" stroke="#999" stroke-dasharray="4 3" points="%s"/>' % ' '.join('%.1f,%.1f' % (X(a['bits']), Y(a['kl'])) for a in front))
    for a in near:
        c = colors.setdefault(a['kind'], palette[len(colors) % len(palette)])
        out.append('<circle cx="%.1f" cy="%.1f" r="%d" fill="%s"><title>%s</title></circle>' % (X(a['bits']), Y(a['kl']), 5 if a['front'] else 3, c, a['label']))
    for i, (k, c) in enumerate(colors.items()):
        out.append('<circle cx="%d" cy="%d" r="5" fill="%s"/><text x="%d" y="%d">%s</text>' % (W - mr + 15, mt + 10 + 20 * i, c, W - mr + 25, mt + 14 + 20 * i, k))
    out.append('<text x="%d" y="%d" fill="#666">dashed: bytes-&gt;KL Pareto front</text>' % (W - mr + 10, mt + 20 + 20 * len(colors)))
    for i, a in enumerate(off):
        out.append('<text x="%d" y="%d" fill="#666">off scale: %s, %.1f bits, KL %.3f</text>' % (W - mr + 10, mt + 40 + 20 * len(colors) + 16 * i, a['kind'], a['bits'], a['kl']))
    out.append('</svg>')
    open(svg, 'w').write('\n'.join(out) + '\n')
EOF
