#!/bin/sh
# bench/huf_pairs.sh - the Huffman pair decoder against the single-symbol
# decoder (build/bench/huf_pairs: both in one process, alternated), on the
# bundled model's expert matrices compressed at three bounds and on moesz
# codec bench's synthetic array at the same bounds; then stream sizes near
# the break-even (the first M values of each 5e-3 expert). Containers are
# written to a temporary folder.
#
#   sh bench/huf_pairs.sh [REPS=40]
set -eu
MOESZ_BIN=${MOESZ_BIN:-build/moesz}
REPS=${1:-40}
make --no-print-directory build/bench/huf_pairs >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for eb in 2e-4 1e-3 5e-3; do
  "$MOESZ_BIN" compress models/moesz-mix-tiny -o "$tmp/m$eb.msz" --method sz --eb "$eb" --quiet >/dev/null
  echo "## bundled model experts, eb $eb"
  build/bench/huf_pairs "$tmp/m$eb.msz" "$REPS"
  echo "## synthetic 2048 x 4096, eb $eb"
  build/bench/huf_pairs "synthetic:$eb" 5
done
for m in 4096 8192 16384; do
  echo "## bundled model experts, eb 5e-3, first $m values of each"
  build/bench/huf_pairs "$tmp/m5e-3.msz" "$REPS" "$m" 96
done
