#!/bin/sh
# bench/codec.sh - moesz's two codec pipelines on the synthetic N(0, 0.02^2)
# 2048 x 4096 bf16 array at eb 2e-4, 1e-3, 5e-3 and on a real trained expert
# matrix, as one markdown table (`moesz codec bench --json`, medians of REPS).
#
#   sh bench/codec.sh [REPS=5] [THREADS=2]
set -eu
MOESZ_BIN=${MOESZ_BIN:-build/moesz}
REPS=${1:-5}
THREADS=${2:-2}
TENSOR=model.layers.3.block_sparse_moe.experts.0.w1.weight
{
  for eb in 2e-4 1e-3 5e-3; do "$MOESZ_BIN" codec bench --eb "$eb" --reps "$REPS" --threads "$THREADS" --json | sed 's/^/synthetic gaussian\t/'; done
  "$MOESZ_BIN" codec bench --file models/moesz-mix-tiny --tensor "$TENSOR" --eb 1e-3 --reps "$REPS" --threads "$THREADS" --json | sed 's/^/bundled model expert\t/'
} | python3 -c '
import json, sys
print("| input | eb | pipeline | bits/value | H_q | over H_q | ratio vs bf16 | max err / eb | verbatim | compress GB/s | decompress GB/s | decompress, %s threads (x one) | memcpy GB/s |" % sys.argv[1])
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for line in sys.stdin:
    name, js = line.split("\t", 1)
    d = json.loads(js)
    one, many = d["decompress_gbps_per_core"], d["decompress_gbps_threads"]
    print("| %s | %g | %s | %.3f | %.3f | %+.3f | %.3f | %.4f | %d | %.3f | %.3f | %.3f (%.2fx) | %.2f |" % (
        name, d["eb"], d["pipeline"], d["bits_per_value"], d["entropy_bits"], d["bits_per_value"] - d["entropy_bits"],
        16 / d["bits_per_value"], d["max_err_over_bound"], d["verbatim_values"], d["compress_gbps_per_core"], one,
        many, many / one if one else 0, d["memcpy_gbps"]))
' "$THREADS"
