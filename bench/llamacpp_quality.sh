#!/bin/sh
# bench/llamacpp_quality.sh - quality at equal bytes against llama.cpp's quantizer
# on the bundled model, experts only quantized, every other tensor as is.
#
# llama.cpp side: each expert matrix goes through ggml's reference quantizer and
# back (bench/ggml/ggml_roundtrip.c, compiled here against the ggml sources of the
# llama-cpp-python sdist; quantize_row_<fmt>_ref + dequantize_row_<fmt>, what
# llama.cpp's quantizer runs without an importance matrix), flattened row-major
# (the K-quants need blocks of 256 values; a row of the bundled model has 128
# or 256), written as F32 into a copy of the model folder (bench/ggml_model_copy.py).
# moesz side: `moesz compress --codec compute|entropy --eb E` at bounds that
# bracket each llama.cpp format's bits per weight (stored expert bytes * 8 /
# expert weights, from `moesz inspect --json`).
# Both scored by `moesz ppl COPY TEXT --ref MODEL`: KL(original || model) per
# token and top-1 agreement. bench/llamacpp_quality_report.py interpolates
# moesz's log-KL linearly in bits at each format's size and prints the table;
# with SVG set it also draws bits per weight -> KL.
# Policy rows (side "moesz compute policy" / "moesz entropy policy", setting =
# the target): `moesz compress --codec C --target-kl T --calib CALIB` (per-layer
# bounds, docs/EVAL.md "Bound policy") for each target T, scored like the rest.
# CALIB must not overlap the scored text: by default it is TEXT after its first
# 400,000 bytes (`tail -c +400001`; the first 20000 tokens of WikiText-2 test end
# before byte 60,000). The per-layer sweep cells live in WORK/policy_sweep, one
# folder for both codecs: a cell is the entropy stream's round trip of one layer
# (its KL and its bytes) whatever --codec says, so a second codec or target runs
# no new cell. The layer bounds chosen and the calibration KL go to
# WORK/policy.tsv (the report lists them).
# llama.cpp with an importance matrix (side "llama.cpp imatrix"; the like-for-like
# comparison with the policy, which also sees calibration text): per-column mean
# squared expert inputs on the same CALIB tokens (bench/ggml_imatrix.py, the
# transformers forward pass; needs torch), then ggml's quantize_<fmt> with them
# as quant_weights (ggml_model_copy.py --imatrix).
#
#   sh bench/llamacpp_quality.sh
#
# Env: MOESZ_BIN (build/moesz), MODEL (models/moesz-mix-tiny),
#      TEXT (../shared/data/text/wikitext-2-raw-test.txt), LIMIT (20000 tokens),
#      THREADS (2), PYTHON (python3, with numpy; matplotlib for SVG; torch and
#      transformers for the imatrix rows),
#      WORK (/tmp/moesz_llq: sdist, copies, containers, results.tsv - runs already
#      in results.tsv are not repeated; delete it to start over),
#      SDIST (an unpacked llama-cpp-python sdist; default: pip download into WORK),
#      FORMATS ("Q8_0 Q6_K Q5_K Q4_K Q4_0 Q3_K Q2_K"),
#      EB_COMPUTE ("2.5e-4 5e-4 1e-3 2e-3 4e-3 8e-3 1.6e-2 3.2e-2"),
#      EB_ENTROPY ("2.5e-4 5e-4 1e-3 2e-3 4e-3 8e-3 1.6e-2 3.2e-2"), SVG (plot path, optional),
#      POLICY_TARGETS (target KLs, nats per token, on CALIB; "" = no policy rows;
#        default "5e-5 7e-5 1.2e-4 2.5e-4 5e-4 1e-3 2e-3 4e-3 8e-3 1.6e-2 3e-2"),
#      POLICY_CODECS ("compute entropy"), CALIB (WORK/policy_calib.txt, made from TEXT
#        as above when absent), CALIB_TOKENS (2048, compress --calib-tokens),
#      POLICY_EB (--policy-eb candidates: the default list extended both ways so that
#        the tightest and loosest targets are reachable,
#        "1.25e-4,2.5e-4,5e-4,1e-3,2e-3,3e-3,5e-3,7e-3,1e-2,1.5e-2,2e-2,3e-2,4.5e-2,6.4e-2"),
#      IMATRIX_FORMATS ("Q6_K Q5_K Q4_K Q4_0 Q3_K Q2_K"; Q8_0 ignores the weights; "" = none),
#      POLICY_TRIES (4, compress --tries). Another CALIB (or CALIB_TOKENS) needs a fresh
#      WORK/policy_sweep and WORK/imatrix.npz (a cell is keyed by layer, bound and token
#      count, not by the text).
set -eu
MOESZ_BIN=${MOESZ_BIN:-build/moesz}
MODEL=${MODEL:-models/moesz-mix-tiny}
TEXT=${TEXT:-../shared/data/text/wikitext-2-raw-test.txt}
LIMIT=${LIMIT:-20000}
THREADS=${THREADS:-2}
PYTHON=${PYTHON:-python3}
WORK=${WORK:-/tmp/moesz_llq}
FORMATS=${FORMATS:-"Q8_0 Q6_K Q5_K Q4_K Q4_0 Q3_K Q2_K"}
EB_COMPUTE=${EB_COMPUTE:-"2.5e-4 5e-4 1e-3 2e-3 4e-3 8e-3 1.6e-2 3.2e-2"}
EB_ENTROPY=${EB_ENTROPY:-"2.5e-4 5e-4 1e-3 2e-3 4e-3 8e-3 1.6e-2 3.2e-2"}
POLICY_TARGETS=${POLICY_TARGETS-"5e-5 7e-5 1.2e-4 2.5e-4 5e-4 1e-3 2e-3 4e-3 8e-3 1.6e-2 3e-2"}
POLICY_CODECS=${POLICY_CODECS:-"compute entropy"}
CALIB=${CALIB:-$WORK/policy_calib.txt}
CALIB_TOKENS=${CALIB_TOKENS:-2048}
POLICY_EB=${POLICY_EB:-"1.25e-4,2.5e-4,5e-4,1e-3,2e-3,3e-3,5e-3,7e-3,1e-2,1.5e-2,2e-2,3e-2,4.5e-2,6.4e-2"}
POLICY_TRIES=${POLICY_TRIES:-4}
IMATRIX_FORMATS=${IMATRIX_FORMATS-"Q6_K Q5_K Q4_K Q4_0 Q3_K Q2_K"}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK"
RES=$WORK/results.tsv
PT=$WORK/policy.tsv
[ -f "$RES" ] || printf 'side\tsetting\tbits\tkl\ttop1\tppl\n' > "$RES"

done_already() { awk -F'\t' -v s="$1" -v k="$2" '$1 == s && $2 == k { f = 1 } END { exit !f }' "$RES"; }

# --- ggml sources and the round-trip program (only when a llama.cpp row is missing)
need_ggml=0
for f in $FORMATS; do done_already llama.cpp "$f" || need_ggml=1; done
for f in $IMATRIX_FORMATS; do done_already "llama.cpp imatrix" "$f" || need_ggml=1; done
if [ "$need_ggml" = 1 ] && [ -z "${SDIST:-}" ]; then
  if ! ls -d "$WORK"/sdist/llama_cpp_python-*/ >/dev/null 2>&1; then
    mkdir -p "$WORK/sdist"
    "$PYTHON" -m pip download -q --no-deps --no-binary :all: llama-cpp-python -d "$WORK/sdist"
    (cd "$WORK/sdist" && tar xzf llama_cpp_python-*.tar.gz)
  fi
  SDIST=$(ls -d "$WORK"/sdist/llama_cpp_python-*/ | head -n 1)
fi
RT=$WORK/ggml_roundtrip
if [ "$need_ggml" = 1 ] && { [ ! -x "$RT" ] || [ "$here/ggml/ggml_roundtrip.c" -nt "$RT" ]; }; then
  G=$SDIST/vendor/llama.cpp/ggml
  mkdir -p "$WORK/obj/gen"
  sed 's/@GGML_VERSION@/sdist/; s/@GGML_BUILD_COMMIT@/sdist/' "$G/src/ggml-version.h.in" > "$WORK/obj/gen/ggml-version.h"
  CF="-O2 -std=gnu11 -D_GNU_SOURCE -ffunction-sections -fdata-sections -I$WORK/obj/gen -I$G/include -I$G/src"
  # shellcheck disable=SC2086
  cc $CF -c "$G/src/ggml.c" -o "$WORK/obj/ggml.o"
  # shellcheck disable=SC2086
  cc $CF -c "$G/src/ggml-quants.c" -o "$WORK/obj/ggml-quants.o"
  # shellcheck disable=SC2086
  cc $CF -c "$here/ggml/ggml_roundtrip.c" -o "$WORK/obj/ggml_roundtrip.o"
  # --gc-sections drops ggml.c's graph code and with it its references to the backend
  cc -Wl,--gc-sections "$WORK/obj/ggml_roundtrip.o" "$WORK/obj/ggml-quants.o" "$WORK/obj/ggml.o" \
    -lm -lpthread -o "$RT"
fi

score() { # MODEL_OR_MSZ SIDE SETTING BITS
  "$MOESZ_BIN" ppl "$1" "$TEXT" --ref "$MODEL" --limit-tokens "$LIMIT" --threads "$THREADS" --json |
    "$PYTHON" -c 'import json, sys; d = json.load(sys.stdin); print("%s\t%s\t%.4f\t%.6g\t%.6f\t%.4f" % (sys.argv[1], sys.argv[2], float(sys.argv[3]), d["kl"], d["top1"], d["ppl"]))' \
      "$2" "$3" "$4" >> "$RES"
  tail -n 1 "$RES" >&2
}

for f in $FORMATS; do
  done_already llama.cpp "$f" && continue
  bits=$("$PYTHON" "$here/ggml_model_copy.py" --roundtrip "$RT" --format "$f" "$MODEL" "$WORK/copy_$f" |
    "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["bits_per_weight"])')
  score "$WORK/copy_$f" llama.cpp "$f" "$bits"
  rm -rf "$WORK/copy_$f"
done

if [ -n "$IMATRIX_FORMATS" ]; then
  [ -f "$CALIB" ] || tail -c +400001 "$TEXT" > "$CALIB"
  if [ ! -f "$WORK/imatrix.npz" ]; then
    "$PYTHON" "$here/ggml_imatrix.py" "$MODEL" "$CALIB" "$WORK/imatrix.npz" --tokens "$CALIB_TOKENS" \
      --moesz "$MOESZ_BIN" >&2
  fi
  for f in $IMATRIX_FORMATS; do
    done_already "llama.cpp imatrix" "$f" && continue
    bits=$("$PYTHON" "$here/ggml_model_copy.py" --roundtrip "$RT" --format "$f" --imatrix "$WORK/imatrix.npz" \
             "$MODEL" "$WORK/copy_$f" | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["bits_per_weight"])')
    score "$WORK/copy_$f" "llama.cpp imatrix" "$f" "$bits"
    rm -rf "$WORK/copy_$f"
  done
fi

n_expert=$("$MOESZ_BIN" inspect "$MODEL" --json |
  "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["params"]["experts"])')
for codec in compute entropy; do
  if [ "$codec" = compute ]; then ebs=$EB_COMPUTE; else ebs=$EB_ENTROPY; fi
  for eb in $ebs; do
    done_already "moesz $codec" "$eb" && continue
    out=$WORK/$codec-$eb.msz
    "$MOESZ_BIN" compress "$MODEL" -o "$out" --codec "$codec" --eb "$eb" --threads "$THREADS" -q >/dev/null
    bits=$("$MOESZ_BIN" inspect "$out" --json |
      "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["expert_stored_bytes"] * 8 / int(sys.argv[1]))' "$n_expert")
    score "$out" "moesz $codec" "$eb" "$bits"
    rm -f "$out"
  done
done

# --- the bound policy: per-layer bounds under a KL target on the calibration text
if [ -n "$POLICY_TARGETS" ]; then
  [ -f "$CALIB" ] || tail -c +400001 "$TEXT" > "$CALIB"
  [ -f "$PT" ] || printf 'codec\ttarget\tlayer_eb\ttries\tpredicted\tcalib_kl\tcalib_tokens\n' > "$PT"
  for codec in $POLICY_CODECS; do
    for t in $POLICY_TARGETS; do
      done_already "moesz $codec policy" "$t" && continue
      out=$WORK/$codec-policy-$t.msz
      if ! j=$("$MOESZ_BIN" compress "$MODEL" -o "$out" --codec "$codec" --target-kl "$t" --calib "$CALIB" \
                 --calib-tokens "$CALIB_TOKENS" --policy-eb "$POLICY_EB" --policy-dir "$WORK/policy_sweep" \
                 --tries "$POLICY_TRIES" --threads "$THREADS" -q --json 2>"$WORK/policy-$codec-$t.log"); then
        echo "policy $codec target $t: no container ($(tail -n 1 "$WORK/policy-$codec-$t.log"))" >&2
        continue
      fi
      echo "$j" | "$PYTHON" -c 'import json, sys; d = json.load(sys.stdin); print("%s\t%s\t%s\t%d\t%.6g\t%.6g\t%d" % (sys.argv[1], sys.argv[2], d["layer_eb"], d["tries"], d["predicted"], d["kl"], d["tokens"]))' \
        "$codec" "$t" >> "$PT"
      bits=$("$MOESZ_BIN" inspect "$out" --json |
        "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["expert_stored_bytes"] * 8 / int(sys.argv[1]))' "$n_expert")
      score "$out" "moesz $codec policy" "$t" "$bits"
      rm -f "$out"
    done
  done
fi

if [ -f "$PT" ]; then set -- --policy "$PT"; else set --; fi
"$PYTHON" "$here/llamacpp_quality_report.py" "$RES" ${SVG:+--svg "$SVG"} "$@"
