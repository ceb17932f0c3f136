#!/usr/bin/env bash
# bench/data_parallel.sh: the time per update of RoBERTa-tiny-cased (from random weights, KD on the
# fine-tuned teacher's targets) in one process accumulating two micro-batches of 32, and in two MPI
# ranks of one micro-batch each, deterministic and fast. Each figure is (T(20 updates) - T(4 updates))/16,
# so start-up and the final dev evaluation cancel out. Needs `distill run configs/sst2-quick.yaml` done
# (its teacher and targets are reused) and a binary built with `--features mpi`:
#   cargo build --release -p distill --features mpi && bash bench/data_parallel.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${DISTILL_BIN:-target/release/distill}"
SRC=runs/sst2-quick
CORES=$(nproc)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
[ -f "$SRC/targets/train.safetensors" ] || { echo "run \`distill run configs/sst2-quick.yaml\` first" >&2; exit 1; }

# One run: NAME STEPS LAUNCH... ; prints the training seconds from its report.
run() {
  local name="$1" steps="$2"; shift 2
  local out="runs/dp-$name-$steps"
  rm -rf "$out"; mkdir -p "$out/teacher" "$out/targets"
  cp -al "$SRC/teacher/model" "$out/teacher/"; cp -l "$SRC/teacher/stamp.json" "$out/teacher/"
  cp -l "$SRC/targets/train.safetensors" "$out/targets/"
  "$@" "$BIN" train configs/sst2-quick.yaml --set "output_dir=$out" --set student.init=random \
    --set 'student.teacher_layers=[]' --set "student.tokenizer=${VOCAB:-../shared/vocab/bert-base-cased-vocab.txt}" \
    --set preflight.allow_casing_mismatch=true --set "train.max_steps=$steps" "${EXTRA[@]}" > "$out/run.log" 2>&1
  python3 -c "import json;print(json.load(open('$out/student/train_report.json'))['seconds'])"
}

per_update() {  # NAME LAUNCH...
  local name="$1"; shift
  local short long
  short=$(run "$name" 4 "$@"); long=$(run "$name" 20 "$@")
  python3 -c "print(f'{($long - $short) / 16:.3f}')"
}

EXTRA=(--set train.gradient_accumulation=2)
one=$(per_update one env RAYON_NUM_THREADS="$CORES")
EXTRA=()
two=$(per_update two mpirun -np 2 --bind-to none)
EXTRA=(--set train.all_reduce=fast)
fast=$(per_update fast mpirun -np 2 --bind-to none)
same=$(cmp -s runs/dp-one-20/student/last/model.safetensors runs/dp-two-20/student/last/model.safetensors && echo yes || echo no)
echo "| run | s per update | weights equal to one process |"
echo "|---|---|---|"
echo "| one process, gradient_accumulation 2, $CORES threads | $one | |"
echo "| mpirun -np 2, deterministic, $((CORES / 2)) thread(s) each | $two | $same |"
echo "| mpirun -np 2, fast | $fast | |"
grep -ho "data-parallel: .*" runs/dp-two-20/run.log runs/dp-fast-20/run.log || true
