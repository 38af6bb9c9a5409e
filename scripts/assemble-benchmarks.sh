#!/bin/sh
# Rebuilds BENCHMARKS.md from the per-module result files bench/results/*.md
# (each module's benchmark writes its own file: machine, command, date,
# figures). Run after updating any of them.
set -e
cd "$(dirname "$0")/.."
{
  echo "# moesz benchmarks"
  echo
  echo "Every figure below was measured by a script or program in bench/, with the command, machine and date"
  echo "next to it. Speeds are medians over repeated runs on a shared 2-core machine, quoted with a baseline"
  echo "measured in the same run (memcpy, entropy limit, a peer tool). Targets are stated as the issues set"
  echo "them; where a target is missed the figure is reported as measured, with what limits it."
  echo
  echo "Sections: $(for f in bench/results/*.md; do printf '[%s](#%s) ' "$(basename "$f" .md)" "$(basename "$f" .md)"; done)"
  for f in bench/results/*.md; do
    echo
    echo "<a id=\"$(basename "$f" .md)\"></a>"
    echo
    cat "$f"
  done
} > BENCHMARKS.md
echo "wrote BENCHMARKS.md from $(ls bench/results/*.md | wc -l) result files"
