#!/usr/bin/env bash
# bench/gpu.sh [DISTILL_BINARY]: the GPU check (docs/performance.md), for an NVIDIA machine (H100/H200, driver 580+,
# CUDA 13 libraries in its Python environment, no network). Build the binary here first
# (`bash tools/cuda/build.sh` -> target/cuda/release/distill) and bring the teacher folder
# (models/all-MiniLM-L6-v2, from `bash tools/setup_teacher.sh`) and the GLUE data ($GLUE_DIR) along.
#   1. the card's name, driver and memory;
#   2. `distill bench --device cuda`: student logits on the GPU against the CPU on the same weights (printed
#      and kept as device_vs_cpu_max_abs_diff), then the training steps and inference, beside
#      bench/pytorch_baseline.py on the same card when PyTorch is installed there; then the training
#      steps again in each mixed precision of $PRECISIONS (default "fp32 bf16 f16"), beside autocast;
#   3. a short SST-2 distillation with `device: cuda` (2,000 sentences) in $SST2_PRECISION (default
#      bf16), its stage times and dev metrics.
# Everything lands in $OUT (default runs/gpu): gpu.txt, distill-P.json, pytorch-P.json, table-P.md for
# each precision P, sst2/.
# DEVICE=cpu runs the same steps on the CPU (to check the script itself on a machine without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/cuda/release/distill}"
OUT="${OUT:-runs/gpu}"
DEVICE="${DEVICE:-cuda}"
STEPS="${STEPS:-5}"
PRECISIONS="${PRECISIONS:-fp32 bf16 f16}"
SST2_PRECISION="${SST2_PRECISION:-bf16}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
# CUDA 13 libraries from the machine's Python environment (PyTorch cu13 wheels), where they are.
NV="$("$PY" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null || true)"
export LD_LIBRARY_PATH="${NV:+$NV:}/usr/local/nvidia/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

if [[ "$DEVICE" != cpu ]]; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
fi
# fp32 first (every row), then the training steps in each mixed precision, each beside PyTorch's
# autocast on the same card.
HAVE_TORCH=0
"$PY" -c 'import torch, transformers' 2>/dev/null && HAVE_TORCH=1
for P in $PRECISIONS; do
    EXTRA=()
    [[ "$P" != fp32 ]] && EXTRA=(--skip-teacher)
    echo "== distill bench --device $DEVICE --precision $P"
    "$BIN" bench --device "$DEVICE" --precision "$P" --steps "$STEPS" --latency-runs 50 "${EXTRA[@]}" \
        --json "$OUT/distill-$P.json" >/dev/null
    if [[ "$HAVE_TORCH" == 1 ]]; then
        echo "== PyTorch baseline on the same device, $P"
        "$PY" bench/pytorch_baseline.py --device "$DEVICE" --precision "$P" --threads "$(nproc)" \
            --steps "$STEPS" "${EXTRA[@]}" --json "$OUT/pytorch-$P.json" >/dev/null
        "$PY" bench/compare.py "$OUT/distill-$P.json" "$OUT/pytorch-$P.json" | tee "$OUT/table-$P.md"
    else
        echo "PyTorch not installed here: distill's figures only ($OUT/distill-$P.json)"
    fi
done
echo "== short SST-2 distillation on $DEVICE"
"$BIN" run configs/sst2-minilm.yaml --set device="$DEVICE" --set data.max_train_examples=2000 \
    --set teacher.finetune.epochs=1 --set train.epochs=2 --set "train.precision=$SST2_PRECISION" \
    --set "output_dir=$OUT/sst2" 2>&1 | tail -25
