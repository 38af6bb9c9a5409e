#!/bin/sh
# bench/resmoe.sh - ResMoE against its baselines on one model: mean relative
# Frobenius error of the compressed layers, stored vs original expert bytes,
# and held-out perplexity, KL(original || compressed) and top-1 agreement on
# the same tokens. One Markdown row per method.
#
#   sh bench/resmoe.sh MODEL TEXT [KEEP=0.25] [TOKENS=20000]
#
# TEXT "-" skips the perplexity columns (models without a tokenizer, such as
# the random-weight family fixtures: only the weight-space error is measured).
#
# Env: MOESZ_BIN (build/moesz), OUT (/tmp/moesz_resmoe_bench), LAYERS (default: the command's).
set -eu
MOESZ_BIN=${MOESZ_BIN:-build/moesz}
MODEL=$1
TEXT=$2
KEEP=${3:-0.25}
TOKENS=${4:-20000}
OUT=${OUT:-/tmp/moesz_resmoe_bench}
mkdir -p "$OUT"
layers=${LAYERS:+--layers $LAYERS}
val() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p"; }
if [ "$TEXT" = - ]; then
  echo "model $MODEL, keep $KEEP (no perplexity: weight-space error only)"
else
  base=$("$MOESZ_BIN" ppl "$MODEL" "$TEXT" --limit-tokens "$TOKENS" --json)
  echo "model $MODEL, keep $KEEP, $TOKENS tokens of $(basename "$TEXT"); original perplexity $(echo "$base" | val ppl)"
fi
echo
echo "| method | residual | mean rel. Frobenius error | stored / original expert bytes | ppl | KL(orig \\|\\| new) | top-1 | seconds |"
echo "|---|---|---|---|---|---|---|---|"
for spec in "resmoe prune" "resmoe svd" "mean-residual prune" "prune -" "svd -"; do
  set -- $spec
  method=$1; res=$2
  resarg=""; [ "$res" != "-" ] && resarg="--residual $res"
  dir="$OUT/$method-$res"
  t0=$(date +%s.%N)
  "$MOESZ_BIN" resmoe "$MODEL" -o "$dir" --force --method "$method" $resarg --keep "$KEEP" $layers --report "$dir.json" >/dev/null
  t1=$(date +%s.%N)
  stats=$(python3 -c "
import json; r = json.load(open('$dir.json')); L = r['layers']
print('%.4f %.3f' % (sum(l['mean_rel_error'] for l in L) / len(L), r['stored_bytes'] / r['original_bytes']))")
  if [ "$TEXT" = - ]; then
    printf '| %s | %s | %s | %s | - | - | - | %.1f |\n' "$method" "$res" ${stats} "$(echo "$t1 - $t0" | bc)"
    continue
  fi
  p=$("$MOESZ_BIN" ppl "$dir" "$TEXT" --limit-tokens "$TOKENS" --ref "$MODEL" --json)
  printf '| %s | %s | %s | %s | %.3f | %.4f | %.3f | %.1f |\n' "$method" "$res" ${stats} "$(echo "$p" | val ppl)" \
    "$(echo "$p" | val kl)" "$(echo "$p" | val top1)" "$(echo "$t1 - $t0" | bc)"
done
