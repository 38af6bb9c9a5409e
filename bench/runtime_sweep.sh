#!/bin/sh
# bench/runtime_sweep.sh - serving under a memory budget: tokens/s, expert
# cache hit rate, bytes moved and stall time of `moesz run` on a .msz
# container for several budgets (fractions of the model's decoded expert
# bytes), policies and prefetch on/off, against the same model served from
# its folder (every expert resident, mmap) in the same run. One Markdown row
# per configuration; medians over REPS runs.
#
#   sh bench/runtime_sweep.sh MODEL_DIR CONTAINER.msz [PROMPT_IDS_FILE]
#
# Env: MOESZ_BIN (build/moesz), THREADS (1), GEN (64), REPS (3),
#      FRACTIONS ("1.0 0.5 0.25 0.125"), POLICIES ("lru lfu lfru").
# PROMPT_IDS_FILE holds comma-separated prompt ids (default: 32 fixed ids);
# with a real model use real text so the routing is real.
set -eu
MOESZ_BIN=${MOESZ_BIN:-build/moesz}
THREADS=${THREADS:-1}
GEN=${GEN:-64}
REPS=${REPS:-3}
FRACTIONS=${FRACTIONS:-"1.0 0.5 0.25 0.125"}
POLICIES=${POLICIES:-"lru lfu lfru"}
MODEL=$1
MSZ=$2
if [ $# -ge 3 ]; then ids=$(cat "$3"); else ids=$(awk 'BEGIN { for (i = 0; i < 32; i++) printf "%s%d", (i ? "," : ""), (i * 37 + 11) % 200 + 3 }'); fi

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
json() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p"; }

# decoded bytes of all routed experts (as stored: what an unlimited cache could hold)
total=$("$MOESZ_BIN" inspect "$MSZ" --json | grep -o '"expert_bytes":[0-9]*' | head -1 | cut -d: -f2)
echo "model $MODEL, container $MSZ ($(wc -c < "$MSZ") bytes), decoded expert bytes $total, threads $THREADS, $GEN tokens"
echo
base=""
for r in $(seq "$REPS"); do
  t=$("$MOESZ_BIN" run "$MODEL" --prompt-ids "$ids" --print-ids --temperature 0 --ignore-eos --max-tokens "$GEN" \
      --threads "$THREADS" 2>&1 >/dev/null | sed -n 's/.*generated: [0-9]* tokens, [0-9.]* s, \([0-9.]*\) tok\/s.*/\1/p')
  base="$base $t"
done
btps=$(echo $base | tr ' ' '\n' | median)
echo "| config | budget | decode tok/s | vs folder | hit rate | misses | MB read | MB decoded | stall s | prefetch used/issued |"
echo "|---|---|---|---|---|---|---|---|---|---|"
echo "| folder (mmap, all resident) | - | $btps | 1.00 | - | - | - | - | - | - |"
for frac in $FRACTIONS; do
  budget=$(awk -v t="$total" -v f="$frac" 'BEGIN { printf "%d", t * f }')
  for pol in $POLICIES; do
    for pf in "" "--prefetch"; do
      rows=""
      for r in $(seq "$REPS"); do
        out=$("$MOESZ_BIN" run "$MSZ" --prompt-ids "$ids" --print-ids --temperature 0 --ignore-eos --max-tokens "$GEN" \
              --threads "$THREADS" --mem "$budget" --cache "$pol" $pf --stats json 2>&1 >/dev/null)
        tps=$(echo "$out" | sed -n 's/.*generated: [0-9]* tokens, [0-9.]* s, \([0-9.]*\) tok\/s.*/\1/p')
        rows="$rows$tps $(echo "$out" | grep '^{' | tr -d '\n')
"
      done
      mid=$(printf '%s' "$rows" | sort -g | awk -v n="$REPS" 'NR == int((n + 1) / 2)')
      tps=${mid%% *}
      js=${mid#* }
      printf '| %s%s | %s (%.0f%%) | %s | %.2f | %.1f%% | %s | %.1f | %.1f | %s | %s/%s |\n' "$pol" "${pf:+ +prefetch}" \
        "$budget" "$(awk -v f="$frac" 'BEGIN { print f * 100 }')" "$tps" "$(awk -v a="$tps" -v b="$btps" 'BEGIN { print a / b }')" \
        "$(echo "$js" | json hit_rate | awk '{ print $1 * 100 }')" "$(echo "$js" | json misses)" \
        "$(echo "$js" | json bytes_read | awk '{ print $1 / 1e6 }')" "$(echo "$js" | json bytes_decoded | awk '{ print $1 / 1e6 }')" \
        "$(echo "$js" | json stall_s)" "$(echo "$js" | json prefetch_used)" "$(echo "$js" | json prefetch_issued)"
    done
  done
done
