#!/bin/sh
# bench/policy.sh - the bound policy (compress --target-kl) against the
# uniform bound at equal size: for each target, the policy's container, then
# the uniform --eb whose expert bytes are the largest not above the policy's
# (bisection on log eb), both measured against the original model on the
# calibration tokens and on held-out text (KL, top-1, ppl via moesz ppl --ref).
#
#   sh bench/policy.sh MODEL CALIB HELDOUT ["TARGETS"="0.005 0.01"] [TOKENS=2048] [HELD_TOKENS=8192]
#   (POLICY_EB=LIST passes --policy-eb; default: compress's candidate list)
set -eu
MOESZ_BIN=${MOESZ_BIN:-build/moesz}
MODEL=$1; CALIB=$2; HELD=$3
TARGETS=${4:-"0.005 0.01"}
TOKENS=${5:-2048}
HTOK=${6:-8192}
OUT=${OUT:-/tmp/moesz_policy_bench}
THREADS=${THREADS:-2}
mkdir -p "$OUT"
val() { sed -n -e "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" -e t -e "s/.*\"$1\":\([^,}\"]*\).*/\1/p"; }
measure() {   # container text tokens ctx -> "kl top1 ppl ref_ppl"
  p=$("$MOESZ_BIN" ppl "$1" "$2" --ref "$MODEL" --limit-tokens "$3" --ctx 512 --stride 512 --threads "$THREADS" --json 2>/dev/null)
  echo "$(echo "$p" | val kl) $(echo "$p" | val top1) $(echo "$p" | val ppl) $(echo "$p" | val ref_ppl)"
}
bytes_at() {   # eb -> expert stored bytes of the uniform container (left in $OUT/u.msz)
  "$MOESZ_BIN" compress "$MODEL" -o "$OUT/u.msz" --eb "$1" --threads "$THREADS" -q --json | val expert_stored_bytes
}
echo "model $MODEL; calibration: $TOKENS tokens of $(basename "$CALIB"); held out: $HTOK tokens of $(basename "$HELD")"
echo
echo "| target KL | policy --layer-eb | tries | expert bytes | uniform eb (bytes) | KL calib policy / uniform | KL held-out policy / uniform | top-1 held-out policy / uniform | ppl held-out policy / uniform (original) |"
echo "|---|---|---|---|---|---|---|---|---|"
for T in $TARGETS; do
  t0=$(date +%s)
  j=$("$MOESZ_BIN" compress "$MODEL" -o "$OUT/p.msz" --target-kl "$T" --calib "$CALIB" --calib-tokens "$TOKENS" \
       --policy-dir "$OUT/sweep" ${POLICY_EB:+--policy-eb "$POLICY_EB"} --threads "$THREADS" -q --json 2>"$OUT/policy_$T.log")
  t1=$(date +%s)
  spec=$(echo "$j" | val layer_eb); pb=$(echo "$j" | val expert_stored_bytes); tries=$(echo "$j" | val tries)
  # uniform: the largest eb whose bytes are >= ... i.e. the smallest container not larger than the policy's
  lo=0.0001; hi=0.1
  for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14; do
    mid=$(awk -v a="$lo" -v b="$hi" 'BEGIN { printf "%.6g", exp((log(a) + log(b)) / 2) }')
    b=$(bytes_at "$mid")
    if [ "$b" -gt "$pb" ]; then lo=$mid; else hi=$mid; fi
  done
  ub=$(bytes_at "$hi")
  cp "$OUT/u.msz" "$OUT/uniform.msz"
  set -- $(measure "$OUT/p.msz" "$CALIB" "$TOKENS"); pc=$1
  set -- $(measure "$OUT/uniform.msz" "$CALIB" "$TOKENS"); uc=$1
  set -- $(measure "$OUT/p.msz" "$HELD" "$HTOK"); ph=$1; pt=$2; pp=$3; rp=$4
  set -- $(measure "$OUT/uniform.msz" "$HELD" "$HTOK"); uh=$1; ut=$2; up=$3
  printf '| %s | `%s` | %s | %s | %s (%s) | %.5f / %.5f | %.5f / %.5f | %.4f / %.4f | %.3f / %.3f (%.3f) |\n' "$T" "$spec" \
    "$tries" "$pb" "$hi" "$ub" "$pc" "$uc" "$ph" "$uh" "$pt" "$ut" "$pp" "$up" "$rp"
  echo "policy run (sweep cells reused after the first target): $((t1 - t0)) s" >&2
done
