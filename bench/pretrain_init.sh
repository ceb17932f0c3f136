#!/usr/bin/env bash
# bench/pretrain_init.sh: does pre-training help? SST-2, CoLA and MRPC students distilled from the same teacher
# with the same budget (training subset, epochs, seed, terms), once from random weights and once from the
# masked-LM pre-trained student (`distill pretrain`, its export). Prints a markdown table of dev metrics;
# each run is under OUT/<task>-<init>/ (TASKS="sst2 cola" and INITS="random" pick rows).
#   bash bench/pretrain_init.sh [PRETRAINED_EXPORT] [N_TRAIN] [EPOCHS]
# Teachers (fine-tuned all-MiniLM-L6-v2, uncased): SST2_TEACHER, COLA_TEACHER, MRPC_TEACHER.
set -euo pipefail
cd "$(dirname "$0")/.."
PRE="${1:-runs/pretrain-glue/export}"; N="${2:-4000}"; EPOCHS="${3:-3}"
BIN="${DISTILL_BIN:-target/release/distill}"
OUT="${OUT:-runs/pretrain-init}"
VOCAB="${VOCAB:-../shared/vocab/bert-base-cased-vocab.txt}"
declare -A teacher=(
  [sst2]="${SST2_TEACHER:-runs/sst2-minilm/teacher/model}"
  [cola]="${COLA_TEACHER:-runs/cola-full/teacher/model}"
  [mrpc]="${MRPC_TEACHER:-runs/glue/mrpc/teacher/model}"
)
# Sentence pairs (MRPC) need the longer inputs; single sentences fit in 64 tokens.
declare -A len=([sst2]=64 [cola]=64 [mrpc]=128)
declare -A init=([random]=random [pretrained]="$PRE")
mkdir -p "$OUT"
for task in ${TASKS:-sst2 cola mrpc}; do
  for i in ${INITS:-random pretrained}; do
    run="$task-$i"; start=$(date +%s)
    # The cased student reads SST-2's lower-cased text and the uncased teacher's weak MRPC head on
    # purpose (the comparison is between the two students), so those preflight checks are waived.
    "$BIN" run "configs/$task.yaml" --set "output_dir=$OUT/$run" --set "teacher.model=${teacher[$task]}" \
      --set "student.init=${init[$i]}" --set "student.tokenizer=$VOCAB" \
      --set "data.max_train_examples=$N" --set "data.max_seq_len=${len[$task]}" --set "train.epochs=$EPOCHS" \
      --set "preflight.allow_casing_mismatch=true" --set "preflight.allow_weak_teacher=true" \
      > "$OUT/$run.log" 2>&1 || { echo "$run failed: see $OUT/$run.log"; exit 1; }
    echo "$run $(( $(date +%s) - start )) s" >> "$OUT/times"
  done
done
python3 - "$OUT" "$N" "$EPOCHS" <<'PY'
import json, os, sys
out, n, ep = sys.argv[1:]
print(f"Dev metrics ×100 [95% CI], {n} training examples, {ep} epochs, same teacher and terms per task\n")
print("| task | metric | teacher | student from random | student from pre-trained |")
print("|---|---|---|---|---|")
def cell(m, key):
    v, ci = m["dev"]["values"][key] * 100, m["dev_interval"][key]
    return f"{v:.2f} [{ci['low']*100:.1f}, {ci['high']*100:.1f}]"
for task in ["sst2", "cola", "mrpc"]:
    reps = {}
    for i in ["random", "pretrained"]:
        p = os.path.join(out, f"{task}-{i}", "report.json")
        if os.path.exists(p):
            reps[i] = json.load(open(p))
    if not reps:
        continue
    any_rep = next(iter(reps.values()))
    for key in any_rep["teacher"]["dev"]["values"]:
        row = [task, key, cell(any_rep["teacher"], key)]
        row += [cell(reps[i]["student"], key) if i in reps else "" for i in ["random", "pretrained"]]
        print("| " + " | ".join(row) + " |")
PY
