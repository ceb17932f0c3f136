#!/usr/bin/env bash
# bench/sst2_terms.sh: the loss-term ablation of issue #4 on real SST-2, every row with the same budget
# (student shape, training subset, epochs, seed): labels only, logit KD, + hidden-state MSE, + MiniLMv2
# relations, all with the student on the teacher's tokenizer; then row 4 again with the student on its own
# cased vocabulary, the token-level terms aligned by words across the two tokenizers. The teacher is a
# fine-tuned all-MiniLM-L6-v2 (TEACHER, default: the one `distill run configs/sst2.yaml` fine-tunes).
# Prints a markdown table of dev accuracy; each row's run is under OUT/<row>/ (ROWS="..." picks rows).
#   bash bench/sst2_terms.sh [N_TRAIN] [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-4000}"; EPOCHS="${2:-3}"
BIN="${DISTILL_BIN:-target/release/distill}"
TEACHER="${TEACHER:-runs/sst2/teacher/model}"
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
# Row 5 is row 4 with the student on its own cased vocabulary: token-level terms align words across tokenizers.
declare -A extra=(
  [5-cased-student-kd-hidden-relations]="student.tokenizer=${VOCAB:-../shared/vocab/bert-base-cased-vocab.txt}"
)
for row in $(printf '%s\n' "${!rows[@]}" | sort); do
  [[ -n "${ROWS:-}" && ! " $ROWS " =~ " $row " ]] && continue
  start=$(date +%s)
  more=(); [[ -n "${extra[$row]:-}" ]] && more=(--set "${extra[$row]}")
  "$BIN" run configs/sst2.yaml "${common[@]}" "${more[@]}" --set "output_dir=$OUT/$row" --set "distill=${rows[$row]}" \
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
