#!/bin/sh
# Runs each test program given, sums their results and prints the closing
# line "N passed, N failed". Each program prints "ok NAME", "FAIL NAME ..."
# or "skip NAME ..." lines and a last line "#result P F S".
P=0; F=0; S=0; BAD=""
for t in "$@"; do
  out=$("$t" 2>&1); rc=$?
  printf '%s\n' "$out" | grep -v '^#result'
  line=$(printf '%s\n' "$out" | grep '^#result' | tail -1)
  if [ -z "$line" ] || [ $rc -ne 0 ]; then
    echo "FAIL $(basename "$t"): exited $rc without a result line"; F=$((F+1)); BAD="$BAD $t"; continue
  fi
  tp=$(echo "$line" | cut -d' ' -f2); tf=$(echo "$line" | cut -d' ' -f3); ts=$(echo "$line" | cut -d' ' -f4)
  P=$((P+tp)); F=$((F+tf)); S=$((S+ts))
  [ "$tf" -ne 0 ] && BAD="$BAD $t"
done
[ -n "$BAD" ] && echo "failing programs:$BAD"
if [ $S -gt 0 ]; then echo "$P passed, $F failed, $S skipped"; else echo "$P passed, $F failed"; fi
[ $F -eq 0 ]
