#!/bin/sh
# bench/families.sh - decode speed of the DeepSeek-V3 (MLA) and GLM-4.5
# synthetics against the OLMoE synthetic of the same size: hidden 2048, 16
# heads, 64 experts of width 1024, top-8, vocab 50304, LAYERS MoE layers
# (deepseek_v3 / glm4_moe get one more layer, the dense first layer `synth
# --layers` writes for them), BF16, all experts mapped. Prompt and decode tokens/s of `moesz run`,
# alternating the models, medians over REPS, same-run ratios against OLMoE;
# and the KV-cache bytes per token of each.
#
#   sh bench/families.sh [DIR]     (DIR: where the models go)
#
# Env: MOESZ_BIN (build/moesz), LAYERS (4), THREADS (2), PROMPT (32), GEN (32), REPS (3).
set -eu
MOESZ_BIN=${MOESZ_BIN:-build/moesz}
DIR=${1:-/tmp/moesz_bench_families}
LAYERS=${LAYERS:-4}
THREADS=${THREADS:-2}
PROMPT=${PROMPT:-32}
GEN=${GEN:-32}
REPS=${REPS:-3}
mkdir -p "$DIR"
shape="--hidden 2048 --heads 16 --kv-heads 16 --experts 64 --expert-width 1024 --top-k 8 --vocab 50304"
for fam in olmoe deepseek_v3 glm4_moe; do
  n=$LAYERS; [ "$fam" = olmoe ] || n=$((LAYERS + 1))
  [ -f "$DIR/$fam/model.safetensors" ] || "$MOESZ_BIN" synth --like "$fam" --layers "$n" $shape -o "$DIR/$fam" >/dev/null
done
ids=$(awk -v n="$PROMPT" 'BEGIN { s = ""; for (i = 0; i < n; i++) s = s (i ? "," : "") (i * 7919) % 50000 + 10; print s }')
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
once() { # MODEL -> "prompt_tps gen_tps"
  "$MOESZ_BIN" run "$1" --prompt-ids "$ids" --temperature 0 --ignore-eos --max-tokens "$GEN" --threads "$THREADS" \
    2>&1 >/dev/null | awk '/^prompt:/ { for (i = 1; i <= NF; i++) if ($i == "tok/s;") p = $(i - 1); g = $(NF - 1) }
                           END { print p, g }'
}
set -- "$DIR/olmoe" "$DIR/deepseek_v3" "$DIR/glm4_moe"
for m in "$@"; do once "$m" >/dev/null; : > "$m.times"; done   # warm the page cache
i=0
while [ $i -lt "$REPS" ]; do
  for m in "$@"; do once "$m" >> "$m.times"; done
  i=$((i + 1))
done
bp=$(cut -d' ' -f1 "$DIR/olmoe.times" | median); bg=$(cut -d' ' -f2 "$DIR/olmoe.times" | median)
printf '| model | params | prompt tok/s | decode tok/s | decode vs OLMoE | KV cache B/token/layer |\n|---|---|---|---|---|---|\n'
for m in "$@"; do
  p=$(cut -d' ' -f1 "$m.times" | median); g=$(cut -d' ' -f2 "$m.times" | median)
  n=$("$MOESZ_BIN" inspect "$m" | awk '$1 == "total" { print $2 }')
  kv=$(python3 -c "import json; c = json.load(open('$m/config.json'))
if 'kv_lora_rank' in c: print(4 * (c['kv_lora_rank'] + c['qk_rope_head_dim']))
else: print(4 * 2 * c['num_key_value_heads'] * c.get('head_dim', c['hidden_size'] // c['num_attention_heads']))")
  printf '| %s | %.2f B | %.2f | %.2f | %.2fx | %s |\n' "$(basename "$m")" "$(echo "$n" | awk '{ print $1 / 1e9 }')" \
    "$p" "$g" "$(echo "$g $bg" | awk '{ print $1 / $2 }')" "$kv"
done
