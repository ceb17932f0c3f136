#!/usr/bin/env bash
# bench/quick_tiny.sh: RoBERTa-tiny's shape (4 x 512, 8 heads, FFN 2048) made from the teacher at the README
# first command's budget (configs/sst2-quick.yaml: the teacher fine-tuned on 2,000 SST-2 sentences, the
# student distilled on the same 2,000), against that command's student (the teacher's blocks 1-4 at its full
# width, 84.86). The teacher and its targets come from the machine's cache after the first run. Each variant
# is a run folder runs/quick-NAME; the dev accuracy after each epoch is in its student/metrics.jsonl.
#   bash bench/quick_tiny.sh [NAME...]     # default: even even-e5 gradient prune
#   even       evenly spaced selection, 3 epochs (the first command's)
#   even-e5    the same, 5 epochs (the narrow student trains in about half the time a step)
#   gradient   selected by the gradient of the task loss (`student.selection: gradient`), 3 epochs
#   prune      pruning while distilling: the full width for one epoch, 640 / 10 heads / FFN 2560 for one,
#              then RoBERTa-tiny's shape for two, each step selected by the gradient
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${DISTILL_BIN:-target/release/distill}"
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=(even even-e5 gradient prune)
TINY=(--set student.hidden_size=512 --set student.num_heads=8 --set student.intermediate_size=2048)
# SST-2's text is lower case; the teacher's tokenizer is uncased: nothing to refuse here.
COMMON=(--set preflight.allow_casing_mismatch=true)
for name in "${NAMES[@]}"; do
  out="output_dir=runs/quick-$name"
  echo "== $name"
  "$BIN" teacher configs/sst2-quick.yaml --set "$out"
  case $name in
    even) "$BIN" train configs/sst2-quick.yaml --set "$out" "${TINY[@]}" "${COMMON[@]}" ;;
    even-e5) "$BIN" train configs/sst2-quick.yaml --set "$out" "${TINY[@]}" "${COMMON[@]}" \
      --set train.epochs=5 ;;
    gradient) "$BIN" train configs/sst2-quick.yaml --set "$out" "${TINY[@]}" "${COMMON[@]}" \
      --set student.selection=gradient ;;
    prune) "$BIN" train configs/sst2-quick.yaml --set "$out" "${COMMON[@]}" --set student.selection=gradient \
      --set "stages=[{name: full, epochs: 1, distill: {}}, {name: mid, epochs: 1, distill: {},
        shape: {hidden_size: 640, num_heads: 10, intermediate_size: 2560}}, {name: tiny, epochs: 2,
        distill: {}, shape: {hidden_size: 512, num_heads: 8, intermediate_size: 2048}}]" ;;
    *) echo "unknown variant $name" >&2; exit 2 ;;
  esac
  grep -o '"epoch":[0-9.]*,"dev":{"accuracy":[0-9.]*' "runs/quick-$name/student/metrics.jsonl" || true
done
