#!/bin/sh
# bench/families_oss.sh - decode and prompt tokens/s of `moesz run` on the
# gpt-oss synthetic (`moesz synth --like gpt_oss`: MXFP4 experts as published,
# attention sinks, sliding windows, biases) against the OLMoE synthetic of the
# same size (BF16 experts), and of the gpt-oss container that keeps its MXFP4
# blocks as they are. Runs alternate (olmoe, gpt_oss, gpt_oss container) REPS
# times after one warm-up each; prints a Markdown table of medians and the
# ratios to OLMoE measured in the same run.
#
#   sh bench/families_oss.sh [WORKDIR]      (default /tmp/moesz_oss_bench; ~2.3 GB)
#
# Env: MOESZ_BIN (build/moesz), THREADS (2), PROMPT (64), GEN (32), REPS (5),
# LAYERS (4), EXPERTS (16): OLMoE-1B-7B's hidden 2048, 16 heads, expert width
# 1024, top-8 and vocabulary 50304, with LAYERS layers of EXPERTS experts (as
# bench/results/infer.md's model).
set -eu
MOESZ_BIN=${MOESZ_BIN:-build/moesz}
THREADS=${THREADS:-2}
PROMPT=${PROMPT:-64}
GEN=${GEN:-32}
REPS=${REPS:-5}
LAYERS=${LAYERS:-4}
EXPERTS=${EXPERTS:-16}
W=${1:-/tmp/moesz_oss_bench}
mkdir -p "$W"
shape="--layers $LAYERS --experts $EXPERTS --top-k 8 --hidden 2048 --expert-width 1024 --heads 16 --kv-heads 16 --vocab 50304 --dtype bf16"
[ -f "$W/olmoe/model.safetensors" ] || "$MOESZ_BIN" synth --like olmoe -o "$W/olmoe" $shape --force >/dev/null
[ -f "$W/gpt_oss/model.safetensors" ] || "$MOESZ_BIN" synth --like gpt_oss -o "$W/gpt_oss" $shape --force >/dev/null
[ -f "$W/gpt_oss.msz" ] || "$MOESZ_BIN" compress "$W/gpt_oss" -o "$W/gpt_oss.msz" --method zstd >/dev/null

ids=$(awk -v n="$PROMPT" 'BEGIN { s = ""; for (i = 0; i < n; i++) s = s (i ? "," : "") (i * 7919) % 50000 + 10; print s }')
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
once() { # prints "prompt_tps gen_tps"
  "$MOESZ_BIN" run "$1" --prompt-ids "$ids" --print-ids --temperature 0 --ignore-eos \
    --max-tokens "$GEN" --threads "$THREADS" 2>&1 >/dev/null |
    sed -n 's/^prompt: .*, \([0-9.]*\) tok\/s; generated: .*, \([0-9.]*\) tok\/s.*/\1 \2/p'
}
set -- "$W/olmoe" "$W/gpt_oss" "$W/gpt_oss.msz"
for m in "$@"; do once "$m" >/dev/null; done
: > "$W/runs.txt"
i=0
while [ $i -lt "$REPS" ]; do
  k=0
  for m in "$@"; do echo "$k $(once "$m")" >> "$W/runs.txt"; k=$((k + 1)); done
  i=$((i + 1))
done
med() { awk -v k="$1" -v f="$2" '$1 == k { print $f }' "$W/runs.txt" | median; }
og=$(med 0 3); op=$(med 0 2)
echo "| model | experts stored as | decode tok/s | vs OLMoE | prompt tok/s | vs OLMoE |"
echo "|---|---|---|---|---|---|"
k=0
for label in "olmoe synthetic|BF16" "gpt_oss synthetic (folder)|MXFP4" "gpt_oss container (compress --method zstd)|MXFP4 kept"; do
  g=$(med $k 3); p=$(med $k 2)
  printf '| %s | %.2f | %.2fx | %.1f | %.2fx |\n' "$label" "$g" "$(echo "$g $og" | awk '{ print $1 / $2 }')" \
    "$p" "$(echo "$p $op" | awk '{ print $1 / $2 }')"
  k=$((k + 1))
done
if [ -n "${VERBOSE:-}" ]; then echo "runs (model prompt gen):"; cat "$W/runs.txt"; fi
