#!/bin/sh
# bench/sensitivity.sh - layer sensitivity to expert compression error: for
# each layer group (shallow / middle / deep thirds of the layers) and each
# error bound, compress only that group's experts with the codec (the other
# layers lossless) and measure held-out perplexity, KL(original || compressed)
# and top-1 agreement against the original model on the same tokens.
#
#   sh bench/sensitivity.sh MODEL TEXT [EBS="2e-3 5e-3 1e-2 2e-2"] [TOKENS=20000]
set -eu
MOESZ_BIN=${MOESZ_BIN:-build/moesz}
MODEL=$1
TEXT=$2
EBS=${3:-"2e-3 5e-3 1e-2 2e-2"}
TOKENS=${4:-20000}
OUT=${OUT:-/tmp/moesz_sensitivity}
mkdir -p "$OUT"
L=$("$MOESZ_BIN" inspect "$MODEL" --json | grep -o '"n_layers":[0-9]*' | head -1 | cut -d: -f2)
a=$((L / 3)); b=$((2 * L / 3))
val() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p"; }
echo "model $MODEL ($L layers), $TOKENS tokens of $(basename "$TEXT"); groups: shallow 0-$((a - 1)), middle $a-$((b - 1)), deep $b-$((L - 1))"
echo
echo "| group | eb | expert ratio (group) | ppl | KL(orig \\|\\| new) | top-1 |"
echo "|---|---|---|---|---|---|"
for g in "shallow 0 $((a - 1))" "middle $a $((b - 1))" "deep $b $((L - 1))" "all 0 $((L - 1))"; do
  set -- $g
  name=$1; lo=$2; hi=$3
  for eb in $EBS; do
    spec="0-$((L - 1)):lossless,$lo-$hi:$eb"
    [ "$name" = all ] && spec="0-$((L - 1)):$eb"
    c=$("$MOESZ_BIN" compress "$MODEL" -o "$OUT/x.msz" --method sz --eb "$eb" --layer-eb "$spec" --quiet --json)
    ratio=$("$MOESZ_BIN" inspect "$OUT/x.msz" --json | python3 -c "
import json, sys; j = json.load(sys.stdin); lo, hi = $lo, $hi
L = [l for l in j['layers'] if lo <= l['layer'] <= hi]
print('%.3f' % (sum(l['expert_bytes'] for l in L) / sum(l['stored_bytes'] for l in L)))")
    p=$("$MOESZ_BIN" ppl "$OUT/x.msz" "$TEXT" --limit-tokens "$TOKENS" --ref "$MODEL" --json)
    printf '| %s (%s-%s) | %s | %s | %.4f | %.5f | %.4f |\n' "$name" "$lo" "$hi" "$eb" "$ratio" "$(echo "$p" | val ppl)" \
      "$(echo "$p" | val kl)" "$(echo "$p" | val top1)"
  done
done
: "$c"
