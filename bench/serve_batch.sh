#!/bin/sh
# bench/serve_batch.sh - aggregate generation speed of `moesz serve` with 1,
# 2, 4 and 8 concurrent clients (continuous batching: one engine step for
# every active request), and the expert bytes read from the container per
# generated token. The server runs the bundled model's container under a
# cache budget of BUDGET_PCT % of the decoded experts; each client (a thread
# of build/bench/serve_client, `make benches`) sends REQS completions of
# MAX_TOKENS tokens one after another (temperature 0.8, its own seeds; EOS
# may end one early: tokens are counted from the answers' usage). Medians of
# REPS repetitions; each repetition runs every client count in turn, and the
# ratio to one client is also given as the median of the ratios within a
# repetition (runs seconds apart, so drift in the machine's speed cancels). The last column is the server's CPU time (user +
# system, /proc) per generated token: less swayed than wall time by other
# jobs on a shared machine.
#
#   sh bench/serve_batch.sh [MODEL_DIR]
#   MSZ=X.msz sh bench/serve_batch.sh      (serve an existing container instead)
#
# Env: MOESZ_BIN (build/moesz), CLIENT (build/bench/serve_client), REPS (3), REQS (4), MAX_TOKENS (48),
# THREADS (2), BUDGET_PCT (25), POLICY (lfru), PORT (18181), CLIENTS ("1 2 4 8"), SERVE_EXTRA (more `moesz serve`
# options, e.g. "--workers 2"), COMPRESS_EXTRA (more `moesz compress` options, e.g. "--codec compute"),
# RATIOS (set: also print every repetition's ratios), MSZ (a container to serve as it is: MODEL_DIR and
# COMPRESS_EXTRA are then not used).
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
CLIENTS_LIST=${CLIENTS:-1 2 4 8}
work=$(mktemp -d)
srv=""
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT INT TERM
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

if [ -n "${MSZ:-}" ]; then
  ln -s "$(cd "$(dirname "$MSZ")" && pwd)/$(basename "$MSZ")" "$work/m.msz"
  MODEL=$MSZ
else
  "$MOESZ_BIN" compress "$MODEL" -o "$work/m.msz" --eb 1e-3 ${COMPRESS_EXTRA:-} --quiet >/dev/null
fi
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

[ -n "${MSZ:-}" ] && desc="container $MSZ" || desc="model $MODEL as a container (eb 1e-3 ${COMPRESS_EXTRA:-})"
echo "$desc, budget $budget bytes ($BUDGET_PCT% of $experts decoded expert bytes), $POLICY,"
echo "$THREADS threads; each client: $REQS requests x $MAX_TOKENS tokens; medians of $REPS repetitions"
echo
echo "| clients | aggregate tok/s | vs 1 client | vs 1 client, same repetition | tokens per engine step | expert bytes read per token | server CPU ms per token |"
echo "|---|---|---|---|---|---|---|"
# Repetitions outermost: each repetition runs every client count once, in
# turn, so a count's run and the first count's run of the same repetition are
# seconds apart (this machine's speed drifts over minutes); the fourth column
# is the median of those same-repetition ratios.
for c in $CLIENTS_LIST; do : > "$work/tps.$c"; : > "$work/bpt.$c"; : > "$work/tpstep.$c"; : > "$work/cpt.$c"; : > "$work/rr.$c"; done
first=""
for rep in $(seq "$REPS"); do
  for c in $CLIENTS_LIST; do
    [ -z "$first" ] && first=$c
    b0=$(metric moesz_expert_bytes_read_total)
    s0=$(metric moesz_engine_steps_total); r0=$(metric moesz_engine_step_tokens_total)
    c0=$(cpu)
    set -- $("$CLIENT" "$PORT" "$c" "$REQS" "$MAX_TOKENS" "$rep")
    [ "$3" = 0 ] || echo "$3 requests failed" >&2
    c1=$(cpu)
    b1=$(metric moesz_expert_bytes_read_total)
    s1=$(metric moesz_engine_steps_total); r1=$(metric moesz_engine_step_tokens_total)
    tps=$(awk -v t="$1" -v s="$2" 'BEGIN { printf "%.2f\n", t / s }')
    echo "$tps" >> "$work/tps.$c"
    [ "$c" = "$first" ] && base_rep=$tps
    awk -v a="$tps" -v b="$base_rep" 'BEGIN { printf "%.4f\n", a / b }' >> "$work/rr.$c"
    awk -v t="$1" -v by="$((b1 - b0))" 'BEGIN { printf "%.0f\n", t ? by / t : 0 }' >> "$work/bpt.$c"
    awk -v s="$((s1 - s0))" -v r="$((r1 - r0))" 'BEGIN { printf "%.2f\n", s ? r / s : 0 }' >> "$work/tpstep.$c"
    awk -v t="$1" -v c="$((c1 - c0))" -v k="$tck" 'BEGIN { printf "%.3f\n", t ? c * 1000 / k / t : 0 }' >> "$work/cpt.$c"
  done
done
base=""
for c in $CLIENTS_LIST; do
  tps=$(median < "$work/tps.$c"); bpt=$(median < "$work/bpt.$c"); tpstep=$(median < "$work/tpstep.$c")
  cpt=$(median < "$work/cpt.$c"); rr=$(median < "$work/rr.$c")
  [ -z "$base" ] && base=$tps
  ratio=$(awk -v a="$tps" -v b="$base" 'BEGIN { printf "%.2f", a / b }')
  rr=$(awk -v a="$rr" 'BEGIN { printf "%.2f", a }')
  echo "| $c | $tps | ${ratio}x | ${rr}x | $tpstep | $bpt | $cpt |"
done
[ -n "${RATIOS:-}" ] && for c in $CLIENTS_LIST; do echo "same-repetition ratios, $c clients: $(tr '\n' ' ' < "$work/rr.$c")"; done
exit 0
