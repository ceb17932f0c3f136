#!/usr/bin/env bash
# bench/sst2_terms.sh: the loss-term ablation on real SST-2, every row with the same budget
# (student shape, training subset, epochs, seed): labels only, logit KD, + hidden-state MSE, + MiniLMv2
# relations, all with the student on the teacher's tokenizer; then row 4 again with the student on its own
# cased vocabulary, the token-level terms aligned by words across the two tokenizers; then the hidden term
# phased out, TinyBERT's two stages, and row 4 with augmentation (rows 6-8, see below). The teacher is a
# fine-tuned all-MiniLM-L6-v2 (TEACHER, default: the one `distill run configs/sst2-minilm.yaml` fine-tunes).
# Prints a markdown table of dev accuracy; each row's run is under OUT/<row>/ (ROWS="..." picks rows).
#   bash bench/sst2_terms.sh [N_TRAIN] [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-4000}"; EPOCHS="${2:-3}"
BIN="${DISTILL_BIN:-target/release/distill}"
TEACHER="${TEACHER:-runs/sst2-minilm/teacher/model}"
OUT="${OUT:-runs/terms}"
common=(--set "teacher.model=$TEACHER" --set "student.tokenizer=$TEACHER/tokenizer.json"
        --set "data.max_train_examples=$N" --set "train.epochs=$EPOCHS" --set "data.max_seq_len=64"
        --set "preflight.allow_casing_mismatch=true")
declare -A rows=(
  [1-labels]='{terms: [{kind: ce, weight: 1.0}]}'
  [2-kd]='{temperature: 2.0, terms: [{kind: kd, weight: 0.5}, {kind: ce, weight: 0.5}]}'
  [3-kd-hidden]='{temperature: 2.0, balance: true, terms: [{kind: kd, weight: 0.5}, {kind: ce, weight: 0.5}, {kind: hidden_mse, weight: 1.0}]}'
  [4-kd-hidden-relations]='{temperature: 2.0, balance: true, terms: [{kind: kd, weight: 0.5}, {kind: ce, weight: 0.5}, {kind: hidden_mse, weight: 1.0}, {kind: minilm_relations, weight: 1.0, relation_heads: 16}]}'
  [5-cased-student-kd-hidden-relations]='{temperature: 2.0, balance: true, terms: [{kind: kd, weight: 0.5}, {kind: ce, weight: 0.5}, {kind: hidden_mse, weight: 1.0}, {kind: minilm_relations, weight: 1.0, relation_heads: 16}]}'
)
# Row 6 is row 3 with the hidden term phased out over the run (linear_decay) so that the task terms own the end
# of it; row 7 is TinyBERT's two stages in the same 3-epoch budget (intermediate terms for 1 epoch, then the
# prediction terms for 2); row 8 is row 4 with TinyBERT augmentation (2 variants of each sentence, labelled by
# the teacher's soft targets only) in the same number of optimizer steps (1 epoch over 3x the examples);
# row 9 is row 3 without `balance` (each term at its raw scale).
rows[6-kd-hidden-decay]='{temperature: 2.0, balance: true, terms: [{kind: kd, weight: 0.5}, {kind: ce, weight: 0.5}, {kind: hidden_mse, weight: 1.0, schedule: linear_decay}]}'
rows[7-two-stage]="${rows[2-kd]}"
rows[9-kd-hidden-unbalanced]='{temperature: 2.0, terms: [{kind: kd, weight: 0.5}, {kind: ce, weight: 0.5}, {kind: hidden_mse, weight: 1.0}]}'
rows[8-kd-hidden-relations-augment]="${rows[4-kd-hidden-relations]}"
# Extra settings of a row, separated by ';'. Row 5 is row 4 with the student on its own cased vocabulary:
# token-level terms align words across tokenizers.
declare -A extra=(
  [5-cased-student-kd-hidden-relations]="student.tokenizer=${VOCAB:-../shared/vocab/bert-base-cased-vocab.txt}"
  [7-two-stage]="stages=[{name: intermediate, epochs: 1, distill: {balance: true, terms: [{kind: hidden_mse, weight: 1.0}, {kind: minilm_relations, weight: 1.0, relation_heads: 16}]}}, {name: prediction, epochs: $(( EPOCHS > 1 ? EPOCHS - 1 : 1 )), distill: ${rows[2-kd]}}]"
  [8-kd-hidden-relations-augment]="augment={copies: 2, replace_prob: 0.4, candidates: 15};train.epochs=$(( EPOCHS / 3 > 0 ? EPOCHS / 3 : 1 ))"
)
for row in $(printf '%s\n' "${!rows[@]}" | sort); do
  [[ -n "${ROWS:-}" && ! " $ROWS " =~ " $row " ]] && continue
  start=$(date +%s)
  more=()
  if [[ -n "${extra[$row]:-}" ]]; then
    IFS=';' read -ra sets <<< "${extra[$row]}"
    for s in "${sets[@]}"; do more+=(--set "$s"); done
  fi
  "$BIN" run configs/sst2-minilm.yaml "${common[@]}" "${more[@]}" --set "output_dir=$OUT/$row" --set "distill=${rows[$row]}" \
    > "$OUT.$row.log" 2>&1 || { echo "$row failed: see $OUT.$row.log"; exit 1; }
  echo "$row $(( $(date +%s) - start )) s" >> "$OUT.times"
done
python3 - "$OUT" "$N" "$EPOCHS" <<'PY'
import json, sys, os
out, n, ep = sys.argv[1:]
print(f"SST-2 dev accuracy, {n} training sentences, {ep} epochs, RoBERTa-tiny-shaped student on the teacher's tokenizer\n")
print("| row | distill terms | dev accuracy [95% CI] | % of teacher | agreement |")
print("|---|---|---|---|---|")
for row in sorted(os.listdir(out)):
    p = os.path.join(out, row, "report.json")
    if not os.path.exists(p):
        continue
    r = json.load(open(p))
    s = r["student"]
    acc = s["dev"]["values"]["accuracy"] * 100
    ci = s["dev_interval"]["accuracy"]
    print(f"| {row} | | {acc:.2f} [{ci['low']*100:.1f}, {ci['high']*100:.1f}] | {r['retained_percent']:.1f}% | {r['agreement']*100:.1f}% |")
PY
