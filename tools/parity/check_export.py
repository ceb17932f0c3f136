"""check_export.py -- check a Rust-exported HF checkpoint and its predictions against transformers.

Usage (from the repository root, after `bash tools/setup_python.sh`):

    tools/.venv/bin/python tools/parity/check_export.py EXPORT_DIR INPUT_TSV PREDICTIONS_JSONL \
        [--tol 1e-4] [--max-len 128] [--batch-size 32] [--limit N]

EXPORT_DIR is loaded with AutoModelForSequenceClassification + AutoTokenizer (CPU,
eval mode, eager attention).  INPUT_TSV is a GLUE-style TSV with a header; the text
columns are found by name: `sentence` (SST-2, CoLA test), `sentence1`/`sentence2`
(MNLI, RTE, STS-B, WNLI), `question`/`sentence` (QNLI), `question1`/`question2`
(QQP), `#1 String`/`#2 String` (MRPC).  PREDICTIONS_JSONL has one object per TSV
row, same order: {"label": str, "label_id": int, "score": float, "logits": [float]}.
Prints the max abs logit difference and the number of label disagreements
(argmax; skipped for regression heads) and exits 1 if the max diff > tol or any
label differs (2 on bad input).
"""

import argparse
import csv
import json
import sys

import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer

COLUMN_SETS = [
    ("sentence1", "sentence2"),
    ("question1", "question2"),
    ("question", "sentence"),
    ("#1 String", "#2 String"),
    ("sentence", None),
    ("text", None),
]


transformers.logging.disable_progress_bar()


def read_tsv(path):
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, body = rows[0], [r for r in rows[1:] if r]
    for a, b in COLUMN_SETS:
        if a in header and (b is None or b in header):
            ia = header.index(a)
            ib = header.index(b) if b is not None else None
            return [(r[ia], r[ib] if ib is not None else None) for r in body], (a, b)
    sys.exit(f"error: no known text column in header {header}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("export_dir")
    ap.add_argument("input_tsv")
    ap.add_argument("predictions_jsonl")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--limit", type=int, default=None, help="only check the first N rows")
    args = ap.parse_args()

    texts, cols = read_tsv(args.input_tsv)
    with open(args.predictions_jsonl, encoding="utf-8") as f:
        preds = [json.loads(line) for line in f if line.strip()]
    if args.limit is not None:
        texts, preds = texts[: args.limit], preds[: args.limit]
    if len(texts) != len(preds):
        print(f"error: {len(texts)} TSV rows but {len(preds)} predictions", file=sys.stderr)
        return 2

    tok = AutoTokenizer.from_pretrained(args.export_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.export_dir, attn_implementation="eager", dtype=torch.float32
    ).eval()
    num_labels = model.config.num_labels
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    print(f"{len(texts)} rows, columns {cols}, {model.__class__.__name__}, num_labels={num_labels}")

    max_diff, max_score_diff, label_diff, name_diff, first_bad = 0.0, 0.0, 0, 0, None
    for start in range(0, len(texts), args.batch_size):
        chunk = texts[start : start + args.batch_size]
        a = [t[0] for t in chunk]
        b = [t[1] for t in chunk] if cols[1] is not None else None
        enc = tok(a, b, padding=True, truncation=True, max_length=args.max_len, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits.float()
        for j, p in enumerate(preds[start : start + args.batch_size]):
            i = start + j
            ref = logits[j]
            got = torch.tensor(p["logits"], dtype=torch.float32)
            if got.shape != ref.shape:
                print(f"error: row {i}: {got.numel()} logits, model has {ref.numel()}", file=sys.stderr)
                return 2
            d = (got - ref).abs().max().item()
            if d > max_diff:
                max_diff = d
            if first_bad is None and d > args.tol:
                first_bad = (i, ref.tolist(), p["logits"])
            if num_labels > 1:
                want = int(ref.argmax())
                if int(p["label_id"]) != want:
                    label_diff += 1
                if p.get("label") != id2label.get(int(p["label_id"])):
                    name_diff += 1
                if "score" in p:
                    score = torch.softmax(ref, -1)[int(p["label_id"])].item()
                    max_score_diff = max(max_score_diff, abs(score - float(p["score"])))

    print(f"max abs logit diff: {max_diff:.3e} (tol {args.tol:g})")
    if num_labels > 1:
        print(f"label disagreements: {label_diff} / {len(texts)}")
        print(f"max abs diff of score vs softmax prob of label_id: {max_score_diff:.3e} (not checked)")
        if name_diff:
            print(f"warning: {name_diff} rows whose label name differs from config id2label {id2label}")
    if first_bad is not None:
        print(f"first row over tol: {first_bad[0]}: transformers {first_bad[1]} vs export {first_bad[2]}")
    ok = max_diff <= args.tol and label_diff == 0
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
