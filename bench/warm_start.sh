#!/bin/sh
# bench/warm_start.sh - cold vs warm start with --cache-state: prompt and
# first-16-token decode speed of `moesz run` on a container behind a link,
# started cold (empty cache) and warm (the cache state saved by an earlier
# run on different text preloaded). Medians of REPS runs.
#
#   sh bench/warm_start.sh CONTAINER.msz BUDGET LINK_GBPS [TEXT_FILE]
#
# Env: MOESZ_BIN (build/moesz), REPS (3), THREADS (2), STORE (buffered).
# TEXT_FILE (default ../shared/data/text/tinystories-valid.txt): the state is
# learned from its first 4000 bytes, the measured prompt is 400 bytes from
# its end (needs the container's tokenizer).
set -eu
MOESZ_BIN=${MOESZ_BIN:-build/moesz}
REPS=${REPS:-3}
THREADS=${THREADS:-2}
STORE=${STORE:-buffered}
MSZ=$1
BUDGET=$2
LINK=$3
TEXT=${4:-${MOESZ_DATA:-../shared/data}/text/tinystories-valid.txt}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

learn=$(head -c 4000 "$TEXT" | tr '\n' ' ')
prompt=$(tail -c 400 "$TEXT" | tr '\n' ' ')
common="--temperature 0 --ignore-eos --threads $THREADS --mem $BUDGET --cache lfru --prefetch --store $STORE --link-gbps $LINK --stats json"
# the state: one run over the learning text
"$MOESZ_BIN" run "$MSZ" --prompt "$learn" --max-tokens 64 $common --cache-state "$work/state.json" >/dev/null 2>&1
echo "container $MSZ, budget $BUDGET bytes, link $LINK GB/s ($STORE), lfru + prefetch, $THREADS threads, medians of $REPS"
echo
echo "| start | prompt tok/s | first 16 tokens tok/s | hit rate | misses | preloaded (s) |"
echo "|---|---|---|---|---|---|"
for mode in cold warm; do
  p=""; g=""; h=""; m=""; pre=""
  for r in $(seq "$REPS"); do
    if [ $mode = warm ]; then
      cp "$work/state.json" "$work/run.json"
      st="--cache-state $work/run.json"
    else
      st=""
    fi
    out=$("$MOESZ_BIN" run "$MSZ" --prompt "$prompt" --max-tokens 17 $common $st 2>&1 >/dev/null)
    p="$p $(echo "$out" | sed -n 's/^prompt: [0-9]* tokens, [0-9.]* s, \([0-9.]*\) tok\/s.*/\1/p')"
    g="$g $(echo "$out" | sed -n 's/.*generated: [0-9]* tokens, [0-9.]* s, \([0-9.]*\) tok\/s.*/\1/p')"
    h="$h $(echo "$out" | sed -n 's/.*"hit_rate":\([0-9.]*\).*/\1/p')"
    m="$m $(echo "$out" | sed -n 's/.*"misses":\([0-9]*\).*/\1/p')"
    pre="$pre $(echo "$out" | sed -n 's/.*preloaded [0-9]* experts ([0-9.]* MB) in \([0-9.]*\) s.*/\1/p')"
  done
  printf '| %s | %s | %s | %.1f%% | %s | %s |\n' "$mode" "$(echo $p | tr ' ' '\n' | median)" \
    "$(echo $g | tr ' ' '\n' | median)" "$(echo $h | tr ' ' '\n' | median | awk '{ print $1 * 100 }')" \
    "$(echo $m | tr ' ' '\n' | median)" "$( [ -n "$(echo $pre)" ] && echo $pre | tr ' ' '\n' | median || echo -)"
done
