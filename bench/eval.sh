#!/bin/sh
# bench/eval.sh - accuracy of a model and of its codec-compressed copies:
# held-out perplexity, KL(original || compressed) and top-1 agreement, and
# the evaluation tasks of ../shared/data/eval scored as lm-evaluation-harness
# scores them. Prints a markdown section on stdout.
#
#   sh bench/eval.sh [MODEL=models/moesz-mix-tiny] [EBS="1e-3 5e-3"] [LIMIT=500] [TOKENS=100000]
#
# The data folder is $MOESZ_DATA (default ../shared/data).
set -eu
MOESZ_BIN=${MOESZ_BIN:-build/moesz}
MODEL=${1:-models/moesz-mix-tiny}
EBS=${2:-"1e-3 5e-3"}
LIMIT=${3:-500}
TOKENS=${4:-100000}
DATA=${MOESZ_DATA:-../shared/data}
OUT=${OUT:-/tmp/moesz_eval}
mkdir -p "$OUT"
val() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p" | head -1; }
TEXT=$DATA/text/wikitext-2-raw-test.txt
# tinystories' held-out part: the last 10% of the bytes, cut at a line boundary (as tools/train_moe.py)
TS=$OUT/tinystories-heldout.txt
python3 -c "
import sys
t = open(sys.argv[1], encoding='utf-8', newline='').read()
c = t.index('\n', int(len(t) * 0.9)) + 1
open(sys.argv[2], 'w', encoding='utf-8', newline='').write(t[c:])" "$DATA/text/tinystories-valid.txt" "$TS"

echo "Model: \`$MODEL\`. Date: $(date -u +%Y-%m-%d). Machine: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)."
echo "Command: \`sh bench/eval.sh $MODEL \"$EBS\" $LIMIT $TOKENS\`."
echo
echo "### Perplexity and agreement with the original"
echo
echo "Sliding windows (ctx 512, stride 256). Compressed copies: \`moesz compress --method sz --eb EB\` (entropy"
echo "pipeline, every expert value within EB), served from the .msz container."
echo
echo "| model | expert ratio | wikitext-2 ppl (first $TOKENS tokens) | KL(orig \\|\\| model) | top-1 agreement | tinystories held-out ppl | KL | top-1 |"
echo "|---|---|---|---|---|---|---|---|"
models="$MODEL"
for eb in $EBS; do
  c=$("$MOESZ_BIN" compress "$MODEL" -o "$OUT/eb$eb.msz" --method sz --eb "$eb" --quiet --json)
  echo "$c" > "$OUT/eb$eb.compress.json"
  models="$models $OUT/eb$eb.msz"
done
for m in $models; do
  if [ "$m" = "$MODEL" ]; then ref=""; name="original (bf16)"; ratio="1.00"; else
    ref="--ref $MODEL"; eb=$(basename "$m" .msz | sed 's/^eb//'); name="eb $eb"
    ratio=$(val expert_ratio < "$OUT/eb$eb.compress.json"); fi
  w=$("$MOESZ_BIN" ppl "$m" "$TEXT" --limit-tokens "$TOKENS" $ref --json)
  t=$("$MOESZ_BIN" ppl "$m" "$TS" $ref --json)
  printf '| %s | %s | %.2f | %s | %s | %.2f | %s | %s |\n' "$name" "${ratio:-?}" "$(echo "$w" | val ppl)" \
    "$(echo "$w" | val kl)" "$(echo "$w" | val top1)" "$(echo "$t" | val ppl)" "$(echo "$t" | val kl)" "$(echo "$t" | val top1)"
done
echo
echo "### Tasks"
echo
echo "First $LIMIT examples of each task (\`moesz eval MODEL --task FILE --limit $LIMIT\`); acc_norm for the"
echo "multiple-choice tasks, acc for WinoGrande, greedy exact match for LAMBADA. +- is the standard error."
echo "Chance: COPA, BoolQ, WinoGrande 50%, PIQA 50%, ARC-Easy about 25%."
echo
printf '| model |'; for t in copa piqa arc_easy winogrande boolq lambada_openai; do printf ' %s |' "$t"; done; echo
echo "|---|---|---|---|---|---|---|"
for m in $models; do
  if [ "$m" = "$MODEL" ]; then name="original (bf16)"; else name="eb $(basename "$m" .msz | sed 's/^eb//')"; fi
  printf '| %s |' "$name"
  for t in copa piqa arc_easy winogrande boolq lambada_openai; do
    j=$("$MOESZ_BIN" eval "$m" --task "$DATA/eval/$t.jsonl" --limit "$LIMIT" --json 2>/dev/null)
    a=$(echo "$j" | val acc_norm); [ -n "$a" ] || a=$(echo "$j" | val acc)
    se=$(echo "$j" | val acc_norm_stderr); [ -n "$se" ] || se=$(echo "$j" | val acc_stderr)
    printf ' %.3f +- %.3f |' "$a" "${se:-0}"
  done
  echo
done
