#!/usr/bin/env bash
# bench/run.sh [STEPS]: `distill bench` and the PyTorch baseline one after the other on this machine (same
# shapes, same thread count), then a side-by-side table with ratios. Run it on an otherwise idle machine.
# Needs a release build (`cargo build --release -p distill`) and tools/.venv (bash tools/setup_python.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${1:-3}"
OUT="${BENCH_OUT:-runs/bench}"
mkdir -p "$OUT"
THREADS="$(nproc)"
target/release/distill bench --steps "$STEPS" --json "$OUT/distill.json" >/dev/null
tools/.venv/bin/python bench/pytorch_baseline.py --threads "$THREADS" --steps "$STEPS" --json "$OUT/pytorch.json" >/dev/null
tools/.venv/bin/python bench/compare.py "$OUT/distill.json" "$OUT/pytorch.json"
