#!/usr/bin/env bash
# bench/full_data.sh: the full-data results with the large teacher (all-mpnet-base-v2), task by task: the
# fine-tuned teacher and its targets (`distill teacher configs/TASK.yaml`), then the students against that same
# teacher and targets, taken from the machine's cache (`distill cache` lists it), so the teacher is fine-tuned
# once per task. Every step resumes from `last/`, so the same command continues a cut-off run; finished steps
# are skipped as fresh. Prints the table at the end.
#   bash bench/full_data.sh [TASK...]          # default: sst2 cola mrpc stsb
#   STUDENTS="tiny-even tiny-importance" bash bench/full_data.sh stsb   # some of the students
#   EPOCHS=6 STUDENTS=tiny-cased-even bash bench/full_data.sh sst2     # train.epochs, in runs/TASK-NAME-e6
# The students (each a run folder runs/TASK-NAME, the random one runs/TASK):
#   teacher-layers          the teacher's blocks 1-4 (its width and tokenizer), KD
#   labels, random          RoBERTa-tiny-cased from random weights, on the labels alone and with KD
#   tiny-even               RoBERTa-tiny's shape (4 x 512, 8 heads, FFN 2048) selected from the teacher's
#                           blocks 1-4, evenly spaced, the teacher's vocabulary, KD; `-labels`: labels alone
#   tiny-importance         the same, the most important dimensions (`student.selection: importance`)
#   tiny-units              the most important heads and FFN units, evenly spaced hidden dimensions
#                           (`student.selection: importance_units`)
#   tiny-gradient           those whose removal changes the teacher's task loss most (the gradient of a
#                           mask on each: `student.selection: gradient`)
#   tiny-prune              pruning while distilling: the teacher's blocks 1-4 at its full width for one
#                           epoch, then 640 / 10 heads / FFN 2560 for one, then RoBERTa-tiny's shape for the
#                           rest, each step selected from the previous one's weights by the loss gradient
#   tiny-cased-even         the even selection with bert-base-cased's vocabulary transferred:
#                           RoBERTa-tiny-cased of the model card's exact shape, KD
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${DISTILL_BIN:-target/release/distill}"
# EPOCHS=N: train.epochs, and the run folders' suffix.
if [ -n "${EPOCHS:-}" ]; then BIN_ARGS=(--set "train.epochs=$EPOCHS"); else BIN_ARGS=(); fi
SUFFIX="${EPOCHS:+-e$EPOCHS}"
run() { "$BIN" run "$@" "${BIN_ARGS[@]}"; }
TASKS=("$@")
[ ${#TASKS[@]} -gt 0 ] || TASKS=(sst2 cola mrpc stsb)
read -r -a STUDENTS <<< "${STUDENTS:-teacher-layers labels random tiny-even tiny-importance tiny-even-labels tiny-cased-even}"

# RoBERTa-tiny's shape from the teacher's first four blocks. The uncased teacher's own tokenizer reads the cased
# task: the preflight's casing refusal is expected for those students.
TINY=(--set student.init=teacher --set 'student.teacher_layers=[1, 2, 3, 4]' --set student.hidden_size=512
  --set student.num_heads=8 --set student.intermediate_size=2048)
UNCASED=(--set student.tokenizer=null --set preflight.allow_casing_mismatch=true)

student() { # TASK NAME
  local t=$1 c="configs/$1.yaml" out="runs/$1-$2$SUFFIX"
  echo "== $t: $2${EPOCHS:+, $EPOCHS epochs}"
  case $2 in
    teacher-layers)
      if [ -f "configs/$t-teacher-layers.yaml" ]; then run "configs/$t-teacher-layers.yaml"
      else run "$c" --set "output_dir=$out" --set student.init=teacher \
        --set 'student.teacher_layers=[1, 2, 3, 4]' "${UNCASED[@]}"; fi ;;
    labels) run "$c" --set "output_dir=$out" --set distill.alpha_kd=0 ;;
    random) run "$c" --set "output_dir=runs/$t$SUFFIX" ;;
    tiny-even|tiny-importance|tiny-units|tiny-gradient) run "$c" --set "output_dir=$out" "${TINY[@]}" \
      "${UNCASED[@]}" --set "student.selection=$(sed 's/^units$/importance_units/' <<< "${2#tiny-}")" ;;
    tiny-prune) run "$c" --set "output_dir=$out" --set student.init=teacher \
      --set 'student.teacher_layers=[1, 2, 3, 4]' --set student.selection=gradient "${UNCASED[@]}" \
      --set "stages=[{name: full, epochs: 1, distill: {}}, {name: mid, epochs: 1, distill: {},
        shape: {hidden_size: 640, num_heads: 10, intermediate_size: 2560}}, {name: tiny, epochs: 2,
        distill: {}, shape: {hidden_size: 512, num_heads: 8, intermediate_size: 2048}}]" ;;
    tiny-even-labels|tiny-importance-labels) run "$c" --set "output_dir=$out" "${TINY[@]}" \
      "${UNCASED[@]}" --set "student.selection=$(cut -d- -f2 <<< "$2")" --set distill.alpha_kd=0 ;;
    tiny-cased-even|tiny-cased-importance) run "$c" --set "output_dir=$out" "${TINY[@]}" \
      --set "student.selection=${2#tiny-cased-}" ;;
    *) echo "unknown student $2" >&2; exit 2 ;;
  esac
}

for t in "${TASKS[@]}"; do
  echo "== $t: teacher and its targets"
  "$BIN" teacher "configs/$t.yaml"
  for s in "${STUDENTS[@]}"; do student "$t" "$s"; done
done
python3 bench/full_data.py "${TASKS[@]}"
