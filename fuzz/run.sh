#!/bin/sh
# Runs each libFuzzer target for $1 seconds from its seed corpus
# (fuzz/corpus/<target>/); any crash fails the run.
set -e
SECS=$1; shift
for f in "$@"; do
  name=$(basename "$f")
  seeds=fuzz/corpus/$name
  work=$(mktemp -d)
  [ -d "$seeds" ] || seeds=""
  echo "fuzz $name: ${SECS}s"
  "$f" -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
       -print_final_stats=0 "$work" $seeds 2>&1 | tail -2
  rm -rf "$work"
done
