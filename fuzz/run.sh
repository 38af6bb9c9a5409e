#!/bin/sh
# Runs each libFuzzer target for $1 seconds from its seed corpus
# (fuzz/corpus/<target>/); a crash, leak or timeout fails the run. The
# inputs a target finds go to a temporary folder, kept (and named) only
# when that target fails.
SECS=$1; shift
status=0
for f in "$@"; do
  name=$(basename "$f")
  seeds=fuzz/corpus/$name
  work=$(mktemp -d)
  [ -d "$seeds" ] || seeds=""
  log=$(mktemp)
  if "$f" -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
       -print_final_stats=0 -artifact_prefix="$work/" "$work" $seeds > "$log" 2>&1; then
    echo "fuzz $name: ${SECS}s, $(grep -o 'Done [0-9]* runs' "$log" | tail -1), no failure"
    rm -rf "$work"   # the inputs it found: kept only where a run failed
  else
    echo "fuzz $name: FAILED"
    grep -E "ERROR|SUMMARY|#[0-9]+ 0x" "$log" | head -20
    ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* 2>/dev/null
    echo "fuzz $name: inputs kept in $work"
    status=1
  fi
  rm -f "$log"
done
exit $status
