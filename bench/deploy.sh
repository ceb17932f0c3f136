#!/usr/bin/env bash
# bench/deploy.sh: the deployment figures (docs/performance.md) on the SST-2 run (`distill run configs/sst2-minilm.yaml`,
# with the same --set overrides passed here as arguments): the comparison report (f32 and int8 students,
# plots), the ONNX/int8 parity check in onnxruntime, our runtime beside onnxruntime (bench/runtimes.py), and the
# server load test in f32 and int8.
# Writes runs/deploy/; run it on an otherwise idle machine.
#   bash bench/deploy.sh --set data.max_train_examples=8000 --set teacher.finetune.epochs=2 --set train.epochs=3
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${DISTILL_BIN:-target/release/distill}"
PY="${PYTHON:-tools/.venv/bin/python}"
GLUE="${GLUE_DIR:-../shared/glue}"
OUT=runs/deploy
mkdir -p "$OUT"
"$BIN" compare configs/sst2-minilm.yaml "$@" > "$OUT/report.md"
"$BIN" export configs/sst2-minilm.yaml "$@" --format onnx --int8
EXPORT="$(grep -o 'output_dir: .*' configs/sst2-minilm.yaml | cut -d' ' -f2)/export"
"$PY" tools/parity/check_onnx.py "$EXPORT" "$GLUE/SST-2/dev.tsv" --label-col label --distill "$BIN" \
    --json "$OUT/onnx.json" | tee "$OUT/onnx.md"
"$PY" bench/runtimes.py "$EXPORT" "$GLUE/SST-2/dev.tsv" --distill "$BIN" --json "$OUT/runtimes.json" \
    | tee "$OUT/runtimes.md"
cut -f1 "$GLUE/SST-2/dev.tsv" | tail -n +2 > "$OUT/texts.txt"
for mode in f32 int8; do
    args=""; [[ $mode == int8 ]] && args="--int8"
    SERVE_ARGS="$args" PYTHON=python3 bash bench/serve.sh "$EXPORT" --texts-file "$OUT/texts.txt" \
        --concurrency 1,4,16,64 --requests 400 --duration 20 --json "$OUT/serve-$mode.json" | tee "$OUT/serve-$mode.md"
done
