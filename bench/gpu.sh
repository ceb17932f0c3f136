#!/usr/bin/env bash
# bench/gpu.sh [DISTILL_BINARY]: the GPU check of issue #6, for an NVIDIA machine (H100/H200, driver 580+,
# CUDA 13 libraries in its Python environment, no network). Build the binary here first
# (`bash tools/cuda/build.sh` -> target/cuda/release/distill) and bring the teacher folder
# (models/all-MiniLM-L6-v2, from `bash tools/setup_teacher.sh`) and the GLUE data ($GLUE_DIR) along.
#   1. the card's name, driver and memory;
#   2. `distill bench --device cuda`: student logits on the GPU against the CPU on the same weights (printed
#      and kept as device_vs_cpu_max_abs_diff), then the training steps and inference, beside
#      bench/pytorch_baseline.py on the same card when PyTorch is installed there;
#   3. a short SST-2 distillation with `device: cuda` (2,000 sentences), its stage times and dev metrics.
# Everything lands in $OUT (default runs/gpu): gpu.txt, distill.json, pytorch.json, table.md, sst2/.
# DEVICE=cpu runs the same steps on the CPU (to check the script itself on a machine without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/cuda/release/distill}"
OUT="${OUT:-runs/gpu}"
DEVICE="${DEVICE:-cuda}"
STEPS="${STEPS:-5}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
# CUDA 13 libraries from the machine's Python environment (PyTorch cu13 wheels), where they are.
NV="$("$PY" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null || true)"
export LD_LIBRARY_PATH="${NV:+$NV:}/usr/local/nvidia/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

if [[ "$DEVICE" != cpu ]]; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
fi
echo "== distill bench --device $DEVICE"
"$BIN" bench --device "$DEVICE" --steps "$STEPS" --latency-runs 50 --json "$OUT/distill.json" >/dev/null
if "$PY" -c 'import torch, transformers' 2>/dev/null; then
    echo "== PyTorch baseline on the same device"
    "$PY" bench/pytorch_baseline.py --device "$DEVICE" --threads "$(nproc)" --steps "$STEPS" \
        --json "$OUT/pytorch.json" >/dev/null
    "$PY" bench/compare.py "$OUT/distill.json" "$OUT/pytorch.json" | tee "$OUT/table.md"
else
    echo "PyTorch not installed here: distill's figures only ($OUT/distill.json)"
fi
echo "== short SST-2 distillation on $DEVICE"
"$BIN" run configs/sst2.yaml --set device="$DEVICE" --set data.max_train_examples=2000 \
    --set teacher.finetune.epochs=1 --set train.epochs=2 --set "output_dir=$OUT/sst2" 2>&1 | tail -25
