#!/bin/sh
# bench/compute_layout.sh - serving from the compute layout against the BF16
# engine on the same OLMoE-shaped model, all experts resident: prompt and
# decode tokens/s of `moesz run` on the BF16 folder and on a container written
# with --codec compute (and, with SZ=1, an entropy-coded container decoded to
# BF16 in the cache), alternating runs, medians over REPS, same-run ratios;
# resident expert bytes from the run statistics.
#
#   sh bench/compute_layout.sh [DIR]     (DIR: where the model and containers go)
#
# Env: MOESZ_BIN (build/moesz), LAYERS (8), THREADS (2), PROMPT (64), GEN (32),
# REPS (3), EB (1e-3), SZ (0), STORE (mmap: containers served from their mapping, as the folder is;
# compute layouts are then used in place; `buffered` copies each expert into the cache on first use),
# FAST (1: also the compute container with --fast-dot, x rounded to 16 bits a group).
set -eu
MOESZ_BIN=${MOESZ_BIN:-build/moesz}
DIR=${1:-/tmp/moesz_bench_cl}
LAYERS=${LAYERS:-8}
THREADS=${THREADS:-2}
PROMPT=${PROMPT:-64}
GEN=${GEN:-32}
REPS=${REPS:-3}
EB=${EB:-1e-3}
SZ=${SZ:-0}
STORE=${STORE:-mmap}
FAST=${FAST:-1}
mkdir -p "$DIR"
M="$DIR/olmoe$LAYERS"
[ -f "$M/model.safetensors" ] || "$MOESZ_BIN" synth --like olmoe --layers "$LAYERS" -o "$M" >/dev/null
[ -f "$M.cl.msz" ] || "$MOESZ_BIN" compress "$M" -o "$M.cl.msz" --codec compute --eb "$EB" -q --threads "$THREADS" >/dev/null
if [ "$SZ" = 1 ] && [ ! -f "$M.sz.msz" ]; then
  "$MOESZ_BIN" compress "$M" -o "$M.sz.msz" --eb "$EB" -q --threads "$THREADS" >/dev/null
fi
ids=$(awk -v n="$PROMPT" 'BEGIN { s = ""; for (i = 0; i < n; i++) s = s (i ? "," : "") (i * 7919) % 50000 + 10; print s }')
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
once() { # MODEL[+fast] -> "prompt_tps gen_tps peak_expert_bytes"
  case "$1" in *.msz*) st="--store $STORE" ;; *) st="" ;; esac
  case "$1" in *+fast) st="$st --fast-dot" ;; esac
  "$MOESZ_BIN" run "${1%+fast}" $st --prompt-ids "$ids" --temperature 0 --ignore-eos --max-tokens "$GEN" --threads "$THREADS" \
    --stats json 2>&1 >/dev/null |
    awk '/^prompt:/ { for (i = 1; i <= NF; i++) if ($i == "tok/s;") p = $(i - 1); g = $(NF - 1) }
         /^\{/ { match($0, /"peak_bytes":[0-9]+/); b = substr($0, RSTART + 13, RLENGTH - 13) }
         END { print p, g, (b == "" ? 0 : b) }'
}
set -- "$M" "$M.cl.msz"
[ "$FAST" = 1 ] && set -- "$@" "$M.cl.msz+fast"
[ "$SZ" = 1 ] && set -- "$@" "$M.sz.msz"
for m in "$@"; do once "$m" >/dev/null; : > "$m.times"; done   # warm the page cache
i=0
while [ $i -lt "$REPS" ]; do
  for m in "$@"; do once "$m" >> "$m.times"; done
  i=$((i + 1))
done
bp=$(cut -d' ' -f1 "$M.times" | median); bg=$(cut -d' ' -f2 "$M.times" | median)
printf '| model | prompt tok/s | decode tok/s | prompt vs BF16 | decode vs BF16 | resident expert MB |\n|---|---|---|---|---|---|\n'
for m in "$@"; do
  p=$(cut -d' ' -f1 "$m.times" | median); g=$(cut -d' ' -f2 "$m.times" | median); b=$(cut -d' ' -f3 "$m.times" | median)
  printf '| %s | %.2f | %.2f | %.2fx | %.2fx | %s |\n' "$(basename "$m")" "$p" "$g" \
    "$(echo "$p $bp" | awk '{ print $1 / $2 }')" "$(echo "$g $bg" | awk '{ print $1 / $2 }')" \
    "$(echo "$b" | awk '{ print ($1 > 0 ? sprintf("%.0f", $1 / 1e6) : "mapped") }')"
done
