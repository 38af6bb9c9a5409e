#!/bin/sh
# bench/serve_batch.sh - aggregate generation speed of `moesz serve` with 1,
# 2, 4 and 8 concurrent clients (continuous batching: one engine step for
# every active request), and the expert bytes read from the container per
# generated token. The server runs the bundled model's container under a
# cache budget of BUDGET_PCT % of the decoded experts; each client (a thread
# of build/bench/serve_client, `make benches`) sends REQS completions of
# MAX_TOKENS tokens one after another (temperature 0.8, its own seeds; EOS
# may end one early: tokens are counted from the answers' usage). Medians of
# REPS runs per client count. The last column is the server's CPU time (user +
# system, /proc) per generated token: less swayed than wall time by other
# jobs on a shared machine.
#
#   sh bench/serve_batch.sh [MODEL_DIR]
#
# Env: MOESZ_BIN (build/moesz), CLIENT (build/bench/serve_client), REPS (3), REQS (4), MAX_TOKENS (48),
# THREADS (2), BUDGET_PCT (25), POLICY (lfru), PORT (18181), CLIENTS ("1 2 4 8"), SERVE_EXTRA (more `moesz serve`
# options, e.g. "--workers 2").
set -eu
MOESZ_BIN=${MOESZ_BIN:-build/moesz}
CLIENT=${CLIENT:-build/bench/serve_client}
MODEL=${1:-models/moesz-mix-tiny}
REPS=${REPS:-3}
REQS=${REQS:-4}
MAX_TOKENS=${MAX_TOKENS:-48}
THREADS=${THREADS:-2}
BUDGET_PCT=${BUDGET_PCT:-25}
POLICY=${POLICY:-lfru}
PORT=${PORT:-18181}
work=$(mktemp -d)
srv=""
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT INT TERM
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

"$MOESZ_BIN" compress "$MODEL" -o "$work/m.msz" --eb 1e-3 --quiet >/dev/null
experts=$("$MOESZ_BIN" inspect "$work/m.msz" --json | sed 's/.*"expert_bytes":\([0-9]*\),"expert_stored_bytes".*/\1/')
budget=$((experts * BUDGET_PCT / 100))
"$MOESZ_BIN" serve "$work/m.msz" --port "$PORT" --threads "$THREADS" --mem "$budget" --cache "$POLICY" \
  --store buffered --max-batch 8 --max-tokens "$MAX_TOKENS" ${SERVE_EXTRA:-} 2>"$work/server.err" &
srv=$!
for i in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.2; done

tck=$(getconf CLK_TCK)
cpu() { awk '{ print $14 + $15 }' "/proc/$srv/stat"; }
# sum of a metric's samples (all layers)
metric() { curl -sf "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%.0f\n", s }'; }

echo "model $MODEL as a container (eb 1e-3), budget $budget bytes ($BUDGET_PCT% of $experts decoded expert bytes), $POLICY,"
echo "$THREADS threads; each client: $REQS requests x $MAX_TOKENS tokens; medians of $REPS runs"
echo
echo "| clients | aggregate tok/s | vs 1 client | tokens per engine step | expert bytes read per token | server CPU ms per token |"
echo "|---|---|---|---|---|---|"
base=""
for c in ${CLIENTS:-1 2 4 8}; do
  : > "$work/tps"; : > "$work/bpt"; : > "$work/tpstep"; : > "$work/cpt"
  for rep in $(seq "$REPS"); do
    b0=$(metric moesz_expert_bytes_read_total)
    s0=$(metric moesz_engine_steps_total); r0=$(metric moesz_engine_step_tokens_total)
    c0=$(cpu)
    set -- $("$CLIENT" "$PORT" "$c" "$REQS" "$MAX_TOKENS" "$rep")
    [ "$3" = 0 ] || echo "$3 requests failed" >&2
    c1=$(cpu)
    b1=$(metric moesz_expert_bytes_read_total)
    s1=$(metric moesz_engine_steps_total); r1=$(metric moesz_engine_step_tokens_total)
    awk -v t="$1" -v s="$2" 'BEGIN { printf "%.2f\n", t / s }' >> "$work/tps"
    awk -v t="$1" -v by="$((b1 - b0))" 'BEGIN { printf "%.0f\n", t ? by / t : 0 }' >> "$work/bpt"
    awk -v s="$((s1 - s0))" -v r="$((r1 - r0))" 'BEGIN { printf "%.2f\n", s ? r / s : 0 }' >> "$work/tpstep"
    awk -v t="$1" -v c="$((c1 - c0))" -v k="$tck" 'BEGIN { printf "%.3f\n", t ? c * 1000 / k / t : 0 }' >> "$work/cpt"
  done
  tps=$(median < "$work/tps"); bpt=$(median < "$work/bpt"); tpstep=$(median < "$work/tpstep"); cpt=$(median < "$work/cpt")
  [ -z "$base" ] && base=$tps
  ratio=$(awk -v a="$tps" -v b="$base" 'BEGIN { printf "%.2f", a / b }')
  echo "| $c | $tps | ${ratio}x | $tpstep | $bpt | $cpt |"
done
