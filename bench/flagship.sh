#!/bin/sh
# bench/flagship.sh - a Mixtral-8x7B-shaped model (random weights; hidden
# 4096, 8 experts of 14336 x 4096, top-2, GQA 32/8 heads, vocab 32000) served
# on a small machine from a compressed container behind the link model, with
# an expert budget of a few GB. The container is written straight by
# `moesz synth --msz` (streaming: the bf16 folder never exists on disk), then
# `moesz run` serves it at each link speed: prompt and decode tok/s, bytes
# over the link per token, hit rate, stall split, peak RSS (VmHWM).
#
#   sh bench/flagship.sh [WORKDIR]        (default WORKDIR /tmp/moesz_flagship)
#
# Env: MOESZ_BIN (build/moesz), LAYERS (32: the real depth; fewer to fit the
#      time), CODEC (compute | entropy | fast; sz at EB 1e-3), THREADS (2),
#      MEM (3GiB expert budget), PROMPT (16 tokens), GEN (8 decode tokens),
#      SPEEDS ("1 4 0"; GB/s, 0 = unthrottled from the page cache, "disk" =
#      O_DIRECT from this machine's disk, unpaced), STORE (buffered: how the
#      paced rows read; direct where the container is larger than the page
#      cache can hold), PREFETCH (1: --prefetch; 0: demand loads only), WARM (1: read the
#      container once first, so the paced rows measure the link and not the
#      disk where the page cache can hold the file), KEEP (0: delete the
#      container at the end; an existing one is reused, not rewritten).
# The write runs under `nice -n 10` with a progress bar and ETA on stderr; the
# container needs about 1.2 GB of disk per layer + 0.5 GB (38 GB at 32 layers).
set -eu
MOESZ_BIN=${MOESZ_BIN:-build/moesz}
LAYERS=${LAYERS:-32}
CODEC=${CODEC:-compute}
EB=${EB:-1e-3}
THREADS=${THREADS:-2}
MEM=${MEM:-3GiB}
PROMPT=${PROMPT:-16}
GEN=${GEN:-8}
SPEEDS=${SPEEDS:-"1 4 0"}
KEEP=${KEEP:-0}
STORE=${STORE:-buffered}
PREFETCH=${PREFETCH:-1}
pf=""
[ "$PREFETCH" = 1 ] && pf=--prefetch
WARM=${WARM:-1}
WORK=${1:-/tmp/moesz_flagship}
mkdir -p "$WORK"
C=$WORK/mixtral$LAYERS-$CODEC.msz

json() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p"; }

if [ ! -f "$C" ]; then
  t0=$(date +%s)
  /usr/bin/time -f "write: %e s wall, %U s user, %S s sys, peak RSS %M kB" \
    nice -n 10 "$MOESZ_BIN" synth --like mixtral --layers "$LAYERS" --msz --method sz --codec "$CODEC" --eb "$EB" \
    --threads "$THREADS" --progress -o "$C" >&2
  echo "wrote $C in $(( $(date +%s) - t0 )) s" >&2
fi
size=$(wc -c < "$C")
[ "$WARM" = 1 ] && cat "$C" > /dev/null
ids=$(awk -v n="$PROMPT" 'BEGIN { for (i = 0; i < n; i++) printf "%s%d", (i ? "," : ""), (i * 7919 + 11) % 31990 + 3 }')

echo "model: Mixtral-8x7B-shaped, $LAYERS of 32 layers, random weights; container $C ($(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1e9 }') GB, sz --codec $CODEC at eb $EB)"
echo "serve: prompt $PROMPT tokens, $GEN greedy decode tokens, --threads $THREADS --mem $MEM --cache lfru $pf"
echo
echo "| link | prompt tok/s | decode tok/s | GB over the link (MB/token) | hit rate | stall s (link / decode / prefetch wait) | compute s | expert peak MB / budget MB | peak RSS MB (VmHWM) | dense MB |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for g in $SPEEDS; do
  case $g in
    0) link=""; store=buffered; label=unthrottled ;;
    disk) link=""; store=direct; label="disk (O_DIRECT)" ;;
    *) link="--link-gbps $g"; store=$STORE; label="$g GB/s" ;;
  esac
  out=$("$MOESZ_BIN" run "$C" --prompt-ids "$ids" --print-ids --temperature 0 --ignore-eos --max-tokens "$GEN" \
        --threads "$THREADS" --mem "$MEM" --cache lfru $pf --store "$store" $link --stats json 2>&1 >/dev/null)
  dtps=$(echo "$out" | sed -n 's/.*generated: [0-9]* tokens, [0-9.]* s, \([0-9.]*\) tok\/s.*/\1/p')
  ptps=$(echo "$out" | sed -n 's/^prompt: [0-9]* tokens, [0-9.]* s, \([0-9.]*\) tok\/s.*/\1/p')
  js=$(echo "$out" | grep '^{' | tr -d '\n')
  echo "$js" > "$WORK/run-$g.json"
  tokens=$(echo "$js" | json tokens)
  br=$(echo "$js" | json bytes_read)
  awk -v l="$label" -v pt="$ptps" -v dt="$dtps" -v b="$br" -v t="$tokens" -v h="$(echo "$js" | json hit_rate)" \
      -v sl="$(echo "$js" | json stall_s)" -v sk="$(echo "$js" | json stall_link_s)" \
      -v sd="$(echo "$js" | json stall_decode_s)" -v sp="$(echo "$js" | json stall_prefetch_s)" \
      -v cs="$(echo "$js" | json compute_s)" -v pk="$(echo "$js" | json peak_bytes)" \
      -v bu="$(echo "$js" | json budget_bytes)" -v rss="$(echo "$js" | json peak_rss_bytes)" \
      -v dn="$(echo "$js" | json dense_bytes)" 'BEGIN {
    printf "| %s | %.3f | %.3f | %.2f (%.0f) | %.1f%% | %.1f (%.1f / %.1f / %.1f) | %.1f | %.0f / %.0f | %.0f | %.0f |\n",
      l, pt, dt, b / 1e9, b / t / 1e6, h * 100, sl, sk, sd, sp, cs, pk / 1e6, bu / 1e6, rss / 1e6, dn / 1e6 }'
done
if [ "$KEEP" != 1 ]; then rm -f "$C"; fi
