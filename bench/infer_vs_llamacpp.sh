#!/bin/sh
# bench/infer_vs_llamacpp.sh - prompt and decode tokens/s of `moesz run`
# against llama.cpp's llama-bench on the same model (same weights converted to
# GGUF with llama.cpp's convert_hf_to_gguf.py), same dtype, threads, prompt
# length and generation length. Prints one Markdown table row per dtype with
# medians over REPS alternating runs (moesz, llama.cpp, moesz, ...; one warm-up
# run of moesz first, llama-bench warms up itself) and the ratio.
#
#   LLAMA_BENCH=/tmp/llamacpp/.../build/bin/llama-bench \
#   sh bench/infer_vs_llamacpp.sh HF_DIR_F32 GGUF_F32 [HF_DIR_BF16 GGUF_BF16]
#
# Env: MOESZ_BIN (build/moesz), THREADS (2), PROMPT (64 tokens), GEN (32), REPS (5),
# MOESZ_EXTRA (more `moesz run` options: "--fast-dot" multiplies BF16 weights against BF16 x on CPUs
# with AVX512_BF16, as llama.cpp does for BF16 models), LABELS (the two pairs' dtype names for the rows,
# default "F32 BF16"; "BF16" names a BF16 pair run alone).
# Making the model (not in the repo): python3 tools/make_bench_model.py DIR --dtype f32,
# then python3 convert_hf_to_gguf.py DIR --outtype f32 --outfile DIR.gguf.
# llama-bench's prompt is PROMPT random ids; moesz gets PROMPT fixed ids: the work per
# token is the same (every decode token runs top-k experts per layer either way).
set -eu
MOESZ_BIN=${MOESZ_BIN:-build/moesz}
LLAMA_BENCH=${LLAMA_BENCH:?set LLAMA_BENCH to the llama-bench binary of llama.cpp}
THREADS=${THREADS:-2}
PROMPT=${PROMPT:-64}
GEN=${GEN:-32}
REPS=${REPS:-5}

ids=$(awk -v n="$PROMPT" 'BEGIN { s = ""; for (i = 0; i < n; i++) s = s (i ? "," : "") (i * 7919) % 50000 + 10; print s }')

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

moesz_once() { # prints "prompt_tps gen_tps"
  "$MOESZ_BIN" run "$1" --prompt-ids "$ids" --print-ids --temperature 0 --ignore-eos \
    --max-tokens "$GEN" --threads "$THREADS" ${MOESZ_EXTRA:-} 2>&1 >/dev/null |
    sed -n 's/^prompt: .*, \([0-9.]*\) tok\/s; generated: .*, \([0-9.]*\) tok\/s.*/\1 \2/p'
}

llama_once() { # prints "prompt_tps gen_tps" (llama-bench warms up itself)
  "$LLAMA_BENCH" -m "$1" -p "$PROMPT" -n "$GEN" -t "$THREADS" -r 1 -o csv 2>/dev/null |
    awk -F, -v p="$PROMPT" -v g="$GEN" '
      NR == 1 { for (i = 1; i <= NF; i++) { gsub(/"/, "", $i); h[$i] = i } next }
      { gsub(/"/, "") }
      $h["n_prompt"] == p && $h["n_gen"] == 0 { pp = $h["avg_ts"] }
      $h["n_gen"] == g && $h["n_prompt"] == 0 { tg = $h["avg_ts"] }
      END { print pp, tg }'
}

bench_pair() { # HF_DIR GGUF LABEL: runs alternate (moesz, llama.cpp) REPS times
  moesz_once "$1" >/dev/null
  : > /tmp/moesz_bench_$$.txt
  : > /tmp/llama_bench_$$.txt
  i=0
  while [ $i -lt "$REPS" ]; do
    moesz_once "$1" >> /tmp/moesz_bench_$$.txt
    llama_once "$2" >> /tmp/llama_bench_$$.txt
    i=$((i + 1))
  done
  mp=$(cut -d' ' -f1 /tmp/moesz_bench_$$.txt | median)
  mg=$(cut -d' ' -f2 /tmp/moesz_bench_$$.txt | median)
  lp=$(cut -d' ' -f1 /tmp/llama_bench_$$.txt | median)
  lg=$(cut -d' ' -f2 /tmp/llama_bench_$$.txt | median)
  printf '| %s | %s | %.2f | %.2f | %.2fx | %.1f | %.1f | %.2fx |\n' "$3" "$THREADS" \
    "$mg" "$lg" "$(echo "$mg $lg" | awk '{ print $1 / $2 }')" \
    "$mp" "$lp" "$(echo "$mp $lp" | awk '{ print $1 / $2 }')"
  if [ -n "${VERBOSE:-}" ]; then
    echo "moesz runs (prompt gen):"; cat /tmp/moesz_bench_$$.txt
    echo "llama.cpp runs (prompt gen):"; cat /tmp/llama_bench_$$.txt
  fi
  rm -f /tmp/moesz_bench_$$.txt /tmp/llama_bench_$$.txt
}

echo "| dtype | threads | moesz decode tok/s | llama.cpp decode tok/s | ratio | moesz prompt tok/s | llama.cpp prompt tok/s | ratio |"
echo "|---|---|---|---|---|---|---|---|"
labels=${LABELS:-F32 BF16}
label1=${labels%% *} label2=${labels#* }
bench_pair "$1" "$2" "$label1"
if [ $# -ge 4 ]; then bench_pair "$3" "$4" "$label2"; fi
