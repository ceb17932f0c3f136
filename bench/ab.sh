#!/usr/bin/env bash
# bench/ab.sh BEFORE AFTER [ROUNDS]: `distill bench` of two builds of the binary, alternating
# (BEFORE, AFTER, BEFORE, ...) so that the machine's drift hits both alike, then the medians side by
# side (bench/ab.py). For checking that a change leaves speed where it was. Run on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE="$1"
AFTER="$2"
ROUNDS="${3:-3}"
OUT="${BENCH_OUT:-runs/bench-ab}"
mkdir -p "$OUT"
for i in $(seq 1 "$ROUNDS"); do
    "$BEFORE" bench --steps 3 --json "$OUT/before-$i.json" >/dev/null
    "$AFTER" bench --steps 3 --json "$OUT/after-$i.json" >/dev/null
done
python3 bench/ab.py "$OUT"
