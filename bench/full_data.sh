#!/usr/bin/env bash
# bench/full_data.sh: the full-data results with the large teacher (all-mpnet-base-v2), task by task: the
# fine-tuned teacher and its targets (`distill teacher configs/TASK.yaml`), the student made of the teacher's
# bottom four blocks, the RoBERTa-tiny-cased student on the gold labels alone (alpha_kd 0), and the same student
# distilled from random weights (`distill run configs/TASK.yaml`). The variants take the fine-tuned teacher and
# its targets from the machine's cache (`distill cache` lists it), so the teacher is fine-tuned once per task.
# Every step resumes from `last/`, so the same command continues a cut-off run; finished steps are skipped as
# fresh. Prints the table at the end.
#   bash bench/full_data.sh [TASK...]          # default: sst2 cola mrpc stsb
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${DISTILL_BIN:-target/release/distill}"
TASKS=("$@")
[ ${#TASKS[@]} -gt 0 ] || TASKS=(sst2 cola mrpc stsb)

for t in "${TASKS[@]}"; do
  echo "== $t: teacher and its targets"
  "$BIN" teacher "configs/$t.yaml"
  echo "== $t: student made of the teacher's blocks 1-4"
  if [ -f "configs/$t-teacher-layers.yaml" ]; then
    "$BIN" run "configs/$t-teacher-layers.yaml"
  else
    # The student keeps the teacher's uncased tokenizer: the preflight's casing refusal is expected here.
    "$BIN" run "configs/$t.yaml" --set "output_dir=runs/$t-teacher-layers" --set student.init=teacher \
      --set 'student.teacher_layers=[1, 2, 3, 4]' --set student.tokenizer=null \
      --set preflight.allow_casing_mismatch=true
  fi
  echo "== $t: student on the labels alone"
  "$BIN" run "configs/$t.yaml" --set "output_dir=runs/$t-labels" --set distill.alpha_kd=0
  echo "== $t: RoBERTa-tiny-cased distilled from random weights"
  "$BIN" run "configs/$t.yaml"
done
python3 bench/full_data.py "${TASKS[@]}"
