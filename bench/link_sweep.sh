#!/bin/sh
# bench/link_sweep.sh - where does expert compression pay? `moesz run` on an
# OLMoE-shaped random-weight model (real hidden 2048, expert width 1024, 64
# experts, top-8; few layers, small vocabulary) whose experts are >= 4x the
# expert budget, served through the storage tier behind the link model, over
# link speed x budget x storage method. Per point: prompt and decode tok/s,
# MB over the link per token, hit rate, and the forward pass's stall split
# (link, decode, waiting on prefetch) against compute. Then the break-even
# link speed per method (the fastest link at which it still decodes at least
# as fast as raw bf16), and KL of each method on the bundled model.
#
#   sh bench/link_sweep.sh [WORKDIR]        (default WORKDIR /tmp/moesz_link)
#
# Env: MOESZ_BIN (build/moesz), LAYERS (2), VOCAB (8192), GEN (6 decode
#      tokens), PROMPT (4 tokens), THREADS (2), REPS (1),
#      SPEEDS ("0.5 1 2 4 8 16 32 0"; 0 = unthrottled, from the page cache),
#      BUDGETS ("10 25": percent of the decoded expert bytes),
#      METHODS ("raw zstd sz-entropy sz-fast"), EB (1e-3), DISK (1: also an
#      O_DIRECT row per method and budget, the machine's own disk, unthrottled),
#      KL (1: KL on the bundled model), KL_TOKENS (5000), CSV (WORKDIR/link.csv).
# Writes the CSV and prints Markdown tables on stdout.
set -eu
MOESZ_BIN=${MOESZ_BIN:-build/moesz}
LAYERS=${LAYERS:-2}
VOCAB=${VOCAB:-8192}
GEN=${GEN:-6}
PROMPT=${PROMPT:-4}
THREADS=${THREADS:-2}
REPS=${REPS:-1}
SPEEDS=${SPEEDS:-"0.5 1 2 4 8 16 32 0"}
BUDGETS=${BUDGETS:-"10 25"}
METHODS=${METHODS:-"raw zstd sz-entropy sz-fast"}
EB=${EB:-1e-3}
DISK=${DISK:-1}
KL=${KL:-1}
KL_TOKENS=${KL_TOKENS:-5000}
WORK=${1:-/tmp/moesz_link}
CSV=${CSV:-$WORK/link.csv}
mkdir -p "$WORK"

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
json() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p"; }
method_args() {
  case $1 in
    raw) echo "--method raw" ;;
    zstd) echo "--method zstd" ;;
    sz-entropy) echo "--method sz --codec entropy --eb $EB" ;;
    sz-fast) echo "--method sz --codec fast --eb $EB" ;;
    *) echo "unknown method $1" >&2; exit 2 ;;
  esac
}

model=$WORK/olmoe$LAYERS
if [ ! -f "$model/config.json" ]; then
  "$MOESZ_BIN" synth --like olmoe -o "$model" --layers "$LAYERS" --vocab "$VOCAB" >&2
fi
for m in $METHODS; do
  [ -f "$WORK/$m.msz" ] || "$MOESZ_BIN" compress "$model" -o "$WORK/$m.msz" $(method_args "$m") --threads "$THREADS" --quiet >&2
done
first=$(echo $METHODS | cut -d' ' -f1)
total=$("$MOESZ_BIN" inspect "$WORK/$first.msz" --json | grep -o '"expert_bytes":[0-9]*' | head -1 | cut -d: -f2)
ids=$(awk -v n="$PROMPT" -v v="$VOCAB" 'BEGIN { for (i = 0; i < n; i++) printf "%s%d", (i ? "," : ""), (i * 7919 + 11) % (v - 8) + 3 }')

echo "model: OLMoE-shaped, $LAYERS layers, vocab $VOCAB, decoded expert bytes $total; prompt $PROMPT tokens, $GEN decode tokens, $THREADS threads, lfru + prefetch, medians of $REPS"
echo
echo "| method | stored MB | ratio |"
echo "|---|---|---|"
for m in $METHODS; do
  st=$("$MOESZ_BIN" inspect "$WORK/$m.msz" --json | grep -o '"expert_stored_bytes":[0-9]*' | head -1 | cut -d: -f2)
  [ -n "$st" ] || st=$(wc -c < "$WORK/$m.msz")
  awk -v m="$m" -v s="$st" -v t="$total" 'BEGIN { printf "| %s | %.1f | %.3f |\n", m, s / 1e6, t / s }'
done
echo

echo "method,budget_pct,link_gbps,prompt_tps,decode_tps,mb_per_token,hit_rate,stall_s,stall_link_s,stall_decode_s,stall_prefetch_s,compute_s,peak_bytes,budget_bytes,over_budget,peak_rss" > "$CSV"
echo "| method | budget | link GB/s | prompt tok/s | decode tok/s | MB/token over link | hit rate | stall s (link / decode / prefetch wait) | compute s | peak MB / budget MB |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for pct in $BUDGETS; do
  budget=$(awk -v t="$total" -v p="$pct" 'BEGIN { printf "%d", t * p / 100 }')
  for m in $METHODS; do
    speeds=$SPEEDS
    [ "$DISK" = 1 ] && speeds="$speeds disk"
    for g in $speeds; do
      case $g in
        0) link=""; store=buffered; label=unthrottled ;;
        disk) link=""; store=direct; label="disk (O_DIRECT)" ;;
        *) link="--link-gbps $g"; store=buffered; label=$g ;;
      esac
      rows=""
      for r in $(seq "$REPS"); do
        out=$("$MOESZ_BIN" run "$WORK/$m.msz" --prompt-ids "$ids" --print-ids --temperature 0 --ignore-eos \
              --max-tokens "$GEN" --threads "$THREADS" --mem "$budget" --cache lfru --prefetch --store "$store" $link \
              --stats json 2>&1 >/dev/null)
        dtps=$(echo "$out" | sed -n 's/.*generated: [0-9]* tokens, [0-9.]* s, \([0-9.]*\) tok\/s.*/\1/p')
        ptps=$(echo "$out" | sed -n 's/^prompt: [0-9]* tokens, [0-9.]* s, \([0-9.]*\) tok\/s.*/\1/p')
        rows="$rows$dtps $ptps $(echo "$out" | grep '^{' | tr -d '\n')
"
      done
      mid=$(printf '%s' "$rows" | sort -g | awk -v n="$REPS" 'NR == int((n + 1) / 2)')
      dtps=$(echo "$mid" | cut -d' ' -f1)
      ptps=$(echo "$mid" | cut -d' ' -f2)
      js=$(echo "$mid" | cut -d' ' -f3-)
      tokens=$(echo "$js" | json tokens)
      mbt=$(awk -v b="$(echo "$js" | json bytes_read)" -v t="$tokens" 'BEGIN { printf "%.1f", b / t / 1e6 }')
      hit=$(echo "$js" | json hit_rate)
      sl=$(echo "$js" | json stall_s); sk=$(echo "$js" | json stall_link_s); sd=$(echo "$js" | json stall_decode_s)
      sp=$(echo "$js" | json stall_prefetch_s); cs=$(echo "$js" | json compute_s)
      pk=$(echo "$js" | json peak_bytes); ob=$(echo "$js" | json over_budget); rss=$(echo "$js" | json peak_rss_bytes)
      gv=$g; [ "$g" = disk ] && gv=-1
      echo "$m,$pct,$gv,$ptps,$dtps,$mbt,$hit,$sl,$sk,$sd,$sp,$cs,$pk,$budget,$ob,$rss" >> "$CSV"
      awk -v m="$m" -v p="$pct" -v l="$label" -v pt="$ptps" -v dt="$dtps" -v mb="$mbt" -v h="$hit" -v sl="$sl" \
          -v sk="$sk" -v sd="$sd" -v sp="$sp" -v cs="$cs" -v pk="$pk" -v b="$budget" 'BEGIN {
        printf "| %s | %s%% | %s | %.2f | %.2f | %s | %.1f%% | %.2f (%.2f / %.2f / %.2f) | %.2f | %.0f / %.0f |\n",
          m, p, l, pt, dt, mb, h * 100, sl, sk, sd, sp, cs, pk / 1e6, b / 1e6 }'
    done
  done
done
echo

# break-even: per budget and method, the fastest link at which the method
# still decodes at least as fast as raw (log-linear interpolation between
# the two speeds where the order flips)
echo "| budget | method | decode tok/s / raw, slowest link to unthrottled | compression pays up to |"
echo "|---|---|---|---|"
awk -F, 'NR > 1 && $3 >= 0 { k = $2 SUBSEP $1; v[k, $3] = $5; if (!seen[$3]++) sp[++ns] = $3; if (!sm[$1]++) me[++nm] = $1; if (!sb[$2]++) bu[++nb] = $2 }
END {
  for (i = 1; i <= ns; i++) for (j = i + 1; j <= ns; j++) {
    a = sp[i] == 0 ? 1e9 : sp[i]; b = sp[j] == 0 ? 1e9 : sp[j]
    if (b < a) { t = sp[i]; sp[i] = sp[j]; sp[j] = t }
  }
  for (bi = 1; bi <= nb; bi++) for (mi = 1; mi <= nm; mi++) {
    m = me[mi]; p = bu[bi]
    if (m == "raw") continue
    ratios = ""; be = ""; cross = 0
    for (i = 1; i <= ns; i++) {
      s = sp[i]; r = v[p SUBSEP "raw", s]; x = v[p SUBSEP m, s]
      q[i] = r > 0 ? x / r : 0
      ratios = ratios (i > 1 ? " " : "") sprintf("%.2f", q[i])
      if (!cross && i > 1 && q[i - 1] >= 1 && q[i] < 1) cross = i
    }
    if (q[1] < 1) be = "never (slower than raw at " sp[1] " GB/s already)"
    else if (!cross) be = "always (also unthrottled)"
    else {
      s0 = sp[cross - 1]; s1 = sp[cross]
      if (s1 == 0) be = "beyond " s0 " GB/s (loses only unthrottled)"
      else {
        f = (q[cross - 1] - 1) / (q[cross - 1] - q[cross])
        be = sprintf("%.1f GB/s", exp(log(s0) + f * (log(s1) - log(s0))))
      }
    }
    printf "| %s%% | %s | %s | %s |\n", p, m, ratios, be
  }
}' "$CSV"

if [ "$KL" = 1 ] && [ -f models/moesz-mix-tiny/config.json ]; then
  text=${MOESZ_DATA:-../shared/data}/text/wikitext-2-raw-test.txt
  if [ -f "$text" ]; then
    echo
    echo "| method (bundled model) | expert ratio | KL(orig \|\| method), first $KL_TOKENS wikitext-2 tokens | top-1 agreement |"
    echo "|---|---|---|---|"
    for m in $METHODS; do
      "$MOESZ_BIN" compress models/moesz-mix-tiny -o "$WORK/mix-$m.msz" $(method_args "$m") --quiet >/dev/null 2>&1
      ratio=$("$MOESZ_BIN" inspect "$WORK/mix-$m.msz" --json | json expert_ratio)
      js=$("$MOESZ_BIN" ppl "$WORK/mix-$m.msz" "$text" --ref models/moesz-mix-tiny --limit-tokens "$KL_TOKENS" --threads "$THREADS" --json 2>/dev/null)
      printf '| %s | %s | %s | %s |\n' "$m" "$ratio" "$(echo "$js" | json kl)" "$(echo "$js" | json top1)"
    done
  fi
fi
