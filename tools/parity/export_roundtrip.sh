#!/usr/bin/env bash
# export_roundtrip.sh [EXPORT_DIR] [TSV] -- our predictions on an exported model vs transformers.
#
# Runs `distill predict EXPORT_DIR --file <texts of TSV>` and checks the logits with
# tools/parity/check_export.py EXPORT_DIR TSV PREDICTIONS --tol 1e-4 (transformers
# AutoModelForSequenceClassification + AutoTokenizer on the exported folder).
# The texts are the TSV's text columns found by check_export.py (sentence; pairs such as
# sentence1/sentence2 or question/sentence are tab-joined), one per line.
# Defaults: EXPORT_DIR runs/sst2-minilm/export, TSV ../shared/glue/SST-2/dev.tsv.
# Environment: DISTILL (default target/debug/distill), PYTHON (default tools/.venv/bin/python),
# MAX_LEN (default 128), TOL (default 1e-4).
# Run from the repository root, e.g.:
#   target/debug/distill run configs/tiny.yaml --set output_dir=/tmp/rt
#   bash tools/parity/export_roundtrip.sh /tmp/rt/export configs/tiny/data/dev.tsv
# Exits with check_export.py's status (0 OK, 1 logits over tol or labels differ, 2 bad input).
set -euo pipefail

EXPORT_DIR="${1:-runs/sst2-minilm/export}"
TSV="${2:-../shared/glue/SST-2/dev.tsv}"
DISTILL="${DISTILL:-target/debug/distill}"
PY="${PYTHON:-tools/.venv/bin/python}"
MAX_LEN="${MAX_LEN:-128}"
TOL="${TOL:-1e-4}"

for f in "$EXPORT_DIR/config.json" "$TSV" "$DISTILL"; do
    [[ -e "$f" ]] || { echo "error: $f not found" >&2; exit 2; }
done

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# One input per TSV row, with check_export.py's column detection.
"$PY" -c '
import sys
sys.path.insert(0, "tools/parity")
from check_export import read_tsv
rows, cols = read_tsv(sys.argv[1])
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for a, b in rows:
        line = a if b is None else a + "\t" + b
        if not line.strip() or any(c in line for c in "\n\r") or line.count("\t") != (b is not None):
            sys.exit(f"error: row cannot be written as one input line: {line!r}")
        f.write(line + "\n")
print(f"{len(rows)} inputs from {sys.argv[1]} (columns {cols})", file=sys.stderr)
' "$TSV" "$TMP/texts.txt"

"$DISTILL" predict "$EXPORT_DIR" --file "$TMP/texts.txt" --max-len "$MAX_LEN" > "$TMP/pred.jsonl"
"$PY" tools/parity/check_export.py "$EXPORT_DIR" "$TSV" "$TMP/pred.jsonl" --tol "$TOL" --max-len "$MAX_LEN"
