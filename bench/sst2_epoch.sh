#!/usr/bin/env bash
# bench/sst2_epoch.sh [STEPS]: the SST-2 epoch benchmark. The RoBERTa-tiny-cased student trains on all of
# SST-2 (67,349 sentences, batch 32, labels only, AdamW lr 1e-4) here with length bucketing, and in PyTorch the way
# run_glue does by default (every sentence padded to 128 tokens; bench/sst2_epoch_pytorch.py), one after the
# other with the same thread count. Each side times STEPS updates and extrapolates to the epoch's 2,105 updates:
# ours as the difference of a 10-update and a (10 + STEPS)-update run (which cancels start-up and the final dev
# evaluation), PyTorch's after one untimed update. Prints a markdown table. Run it on an otherwise idle machine.
# Needs a release build, tools/.venv (bash tools/setup_python.sh) and a fine-tuned teacher folder for the
# config's preflight (TEACHER, default runs/sst2-minilm/teacher/model; it does not take part in training).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${1:-100}"
BIN="${DISTILL_BIN:-target/release/distill}"
OUT="${OUT:-runs/sst2-epoch}"
GLUE="${GLUE_DIR:-../shared/glue}"
VOCAB="${VOCAB:-../shared/vocab/bert-base-cased-vocab.txt}"
THREADS="$(nproc)"
mkdir -p "$OUT"
for k in 10 $((10 + STEPS)); do
  rm -rf "$OUT/k$k"
  "$BIN" train configs/sst2-minilm.yaml --set "output_dir=$OUT/k$k" --set "teacher.model=${TEACHER:-runs/sst2-minilm/teacher/model}" \
    --set "distill={terms: [{kind: ce}]}" --set "train.max_steps=$k" --set train.epochs=1 --set train.eval_every=0 \
    --set preflight.allow_casing_mismatch=true > "$OUT/k$k.log" 2>&1 || { echo "see $OUT/k$k.log"; exit 1; }
done
tools/.venv/bin/python bench/sst2_epoch_pytorch.py "$GLUE/SST-2/train.tsv" "$VOCAB" --steps "$STEPS" \
  --threads "$THREADS" --json "$OUT/pytorch.json" > /dev/null
python3 - "$OUT" "$STEPS" <<'PY'
import json, math, sys
out, steps = sys.argv[1], int(sys.argv[2])
r = [json.load(open(f"{out}/k{k}/student/train_report.json")) for k in (10, 10 + steps)]
sec = r[1]["seconds"] - r[0]["seconds"]
tok = r[1]["tokens_per_second"] * r[1]["seconds"] - r[0]["tokens_per_second"] * r[0]["seconds"]
pt = json.load(open(f"{out}/pytorch.json"))
updates = pt["updates"]
ours = dict(step_s=sec / steps, epoch_s=sec / steps * updates, real_tokens_per_s=tok / sec)
print(f"SST-2 training epoch ({pt['examples']} sentences, {updates} updates of 32), from {steps} timed updates\n")
print("| | distill (length buckets) | PyTorch (run_glue default: pad to 128) | ratio (distill / PyTorch) |")
print("|---|---|---|---|")
print(f"| seconds per update | {ours['step_s']:.3f} | {pt['step_s']:.3f} | {ours['step_s'] / pt['step_s']:.2f} |")
print(f"| epoch (extrapolated) | {ours['epoch_s'] / 60:.1f} min | {pt['epoch_s'] / 60:.1f} min | {ours['epoch_s'] / pt['epoch_s']:.2f} |")
print(f"| real (non-padding) tokens/s | {ours['real_tokens_per_s']:,.0f} | {pt['real_tokens_per_s']:,.0f} | {ours['real_tokens_per_s'] / pt['real_tokens_per_s']:.2f} |")
PY
