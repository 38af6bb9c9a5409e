#!/bin/sh
# bench/compute_vs_llamacpp.sh - decode and prompt tokens/s of `moesz run` on
# compute-layout containers (experts only, dense BF16) against llama.cpp's
# llama-bench on GGUF files of the same model quantized by llama-quantize
# (every tensor: Q8_0, Q4_K_M), plus the BF16 folder; bytes per weight from
# the file sizes. Runs alternate (moesz ..., llama.cpp ...) REPS times;
# medians per entry.
#
#   LLAMA_BENCH=.../llama-bench sh bench/compute_vs_llamacpp.sh BF16_DIR \
#       MSZ[+fast|+fast8] ... -- GGUF ...
#
# MSZ+fast runs the container with --fast-dot, MSZ+fast8 with --fast-dot=8. Env: MOESZ_BIN (build/moesz),
# THREADS (2), PROMPT (64), GEN (32), REPS (3), VERBOSE (0; 1: also every run's figures), DIR_RUN (1; 0: the
# BF16 folder only names the model, not run: fewer files in the page cache), LLAMA_DEPTH (0: llama-bench's
# decode test starts from an empty context; PROMPT: it decodes after that many
# tokens of context, as `moesz run` decodes after its prompt), WARM (0; 1: each container
# run starts warm, its experts loaded before the prompt from a --cache-state file the warm-up
# run wrote, as llama-bench's own warm-up run pages in its weights before it times the prompt;
# 0: a container's prompt includes its cold start: every expert verified, parsed and paged in on
# first use. The BF16 folder is mapped and in the page cache either way).
# Making the inputs: moesz synth --like olmoe --layers 8 -o DIR; copy the OLMoE
# tokenizer.json into DIR; moesz compress DIR -o X.msz --codec compute --eb E;
# python3 convert_hf_to_gguf.py DIR --outtype bf16; llama-quantize IN OUT Q8_0|Q4_K_M.
set -eu
MOESZ_BIN=${MOESZ_BIN:-build/moesz}
LLAMA_BENCH=${LLAMA_BENCH:?set LLAMA_BENCH to the llama-bench binary of llama.cpp}
THREADS=${THREADS:-2}
PROMPT=${PROMPT:-64}
GEN=${GEN:-32}
REPS=${REPS:-3}
LLAMA_DEPTH=${LLAMA_DEPTH:-0}
WARM=${WARM:-0}
VERBOSE=${VERBOSE:-0}
DIR_RUN=${DIR_RUN:-1}
DIR=$1; shift
msz=""; gg=""; side=m
for a in "$@"; do
  if [ "$a" = "--" ]; then side=g; continue; fi
  if [ $side = m ]; then msz="$msz $a"; else gg="$gg $a"; fi
done
ids=$(awk -v n="$PROMPT" 'BEGIN { s = ""; for (i = 0; i < n; i++) s = s (i ? "," : "") (i * 7919) % 50000 + 10; print s }')
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
nw=$("$MOESZ_BIN" inspect "$DIR" --json 2>/dev/null | sed -n 's/.*"params":\([0-9]*\).*/\1/p' | head -1)
key() { echo "$1" | tr '/+.' '___'; }
moesz_once() { # ENTRY -> "prompt_tps gen_tps"
  f=""; case "$1" in *+fast8) f=--fast-dot=8 ;; *+fast) f=--fast-dot ;; esac
  if [ "$WARM" = 1 ]; then case "$1" in *.msz*) f="$f --cache-state /tmp/cvl_state_$(key "$1")" ;; esac; fi
  "$MOESZ_BIN" run "${1%+fast*}" $f --prompt-ids "$ids" --temperature 0 --ignore-eos --max-tokens "$GEN" \
    --threads "$THREADS" 2>&1 >/dev/null |
    sed -n 's/^prompt: .*, \([0-9.]*\) tok\/s; generated: .*, \([0-9.]*\) tok\/s.*/\1 \2/p'
}
llama_once() {
  if [ "$LLAMA_DEPTH" -gt 0 ]; then   # decode after LLAMA_DEPTH tokens of context, as moesz decodes after its prompt
    "$LLAMA_BENCH" -m "$1" -p "$PROMPT" -n 0 -t "$THREADS" -r 1 -o csv 2>/dev/null
    "$LLAMA_BENCH" -m "$1" -p 0 -n "$GEN" -d "$LLAMA_DEPTH" -t "$THREADS" -r 1 -o csv 2>/dev/null | tail -n +2
  else
    "$LLAMA_BENCH" -m "$1" -p "$PROMPT" -n "$GEN" -t "$THREADS" -r 1 -o csv 2>/dev/null
  fi |
    awk -F, -v p="$PROMPT" -v g="$GEN" '
      NR == 1 { for (i = 1; i <= NF; i++) { gsub(/"/, "", $i); h[$i] = i } next }
      { gsub(/"/, "") }
      $h["n_prompt"] == p && $h["n_gen"] == 0 { pp = $h["avg_ts"] }
      $h["n_gen"] == g && $h["n_prompt"] == 0 { tg = $h["avg_ts"] }
      END { print pp, tg }'
}
runm=$msz; [ "$DIR_RUN" = 0 ] || runm="$DIR $msz"
for m in $runm; do rm -f "/tmp/cvl_state_$(key "$m")"; moesz_once "$m" >/dev/null; : > "/tmp/cvl_$(key "$m")"; done
for g in $gg; do : > "/tmp/cvl_$(key "$g")"; done
i=0
while [ $i -lt "$REPS" ]; do
  for m in $runm; do moesz_once "$m" >> "/tmp/cvl_$(key "$m")"; done
  for g in $gg; do llama_once "$g" >> "/tmp/cvl_$(key "$g")"; done
  i=$((i + 1))
done
echo "# $(date -u +%Y-%m-%d), $THREADS threads, prompt $PROMPT, gen $GEN, medians of $REPS, llama.cpp decode depth $LLAMA_DEPTH, containers warm $WARM; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '| engine | file | file GB | decode tok/s | prompt tok/s |\n|---|---|---|---|---|\n'
for e in $runm $gg; do
  f=${e%+fast*}; sz=$(du -sb "$f" | cut -f1)
  case "$e" in *.gguf) eng=llama.cpp ;; *+fast8) eng="moesz --fast-dot=8" ;; *+fast) eng="moesz --fast-dot" ;; *) eng=moesz ;; esac
  p=$(cut -d' ' -f1 "/tmp/cvl_$(key "$e")" | median); g=$(cut -d' ' -f2 "/tmp/cvl_$(key "$e")" | median)
  printf '| %s | %s | %.2f | %.2f | %.2f |\n' "$eng" "$(basename "$f")" "$(echo "$sz" | awk '{ print $1 / 1e9 }')" "$g" "$p"
done
if [ "$VERBOSE" = 1 ]; then   # every run, in the order they ran (the bandwidth level can change between runs)
  echo "# every run, decode tok/s (prompt tok/s):"
  for e in $runm $gg; do
    printf '# %s: %s\n' "$(basename "$e")" "$(awk '{ printf "%s%.2f (%.1f)", (NR > 1 ? ", " : ""), $2, $1 }' "/tmp/cvl_$(key "$e")")"
  done
fi
