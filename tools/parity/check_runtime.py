#!/usr/bin/env python3
"""`distill predict --runtime onnxruntime` against `distill predict` and against onnxruntime's Python API.

On a model folder holding model.onnx and model.int8.onnx (`distill onnx DIR [--int8]`) and a TSV of inputs:
  - f32: the runtime's logits equal `distill predict`'s (our encoder) within --tol, the ONNX parity
    tolerance, with the same labels;
  - f32 and int8: the runtime's logits equal Python onnxruntime's on the same graph within --tol (the same
    library runs both: ORT_DYLIB_PATH is set to the Python package's copy). The int8 graph quantizes each
    activation with one scale for the whole batch, so its answers depend on what shares a batch: both sides
    run it one input at a time.
Exits 1 when any of these fails.

    tools/.venv/bin/python tools/parity/check_runtime.py runs/sst2-quick/export ../shared/glue/SST-2/dev.tsv \
        --distill target/release/distill
"""
import argparse
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from check_onnx import distill_logits, encode, read_tsv, run_onnx


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("tsv")
    ap.add_argument("--text-col", default="sentence")
    ap.add_argument("--pair-col")
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--distill", default="target/release/distill")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()

    cfg = json.load(open(os.path.join(a.model_dir, "config.json")))
    texts, _ = read_tsv(a.tsv, a.text_col, a.pair_col, None)
    enc = encode(Tokenizer.from_file(os.path.join(a.model_dir, "tokenizer.json")), texts, a.max_len)
    pad_id = cfg.get("pad_token_id", 0)
    ours = distill_logits(a.distill, a.model_dir, texts, a.max_len, int8=False)
    checks = []
    for precision, graph in [("f32", "model.onnx"), ("int8", "model.int8.onnx")]:
        int8 = precision == "int8"
        # Batch-dependent int8 (see above): one input at a time on both sides.
        batch = 1 if int8 else 64
        runtime = distill_logits(a.distill, a.model_dir, texts, a.max_len, int8,
                                 ["--runtime", "onnxruntime", "--batch-size", str(batch)])
        _, python = run_onnx(os.path.join(a.model_dir, graph), enc, pad_id, a.threads, batch)
        checks.append((f"{precision}: --runtime onnxruntime vs onnxruntime (Python)", runtime, python))
        if precision == "f32":
            checks.append(("f32: --runtime onnxruntime vs distill predict", runtime, ours))

    print(f"{len(texts)} inputs from {a.tsv}; onnxruntime {ort.__version__}; tolerance {a.tol}\n")
    print("| check | max abs diff | label agreement | |")
    print("|---|---|---|---|")
    failed = False
    for name, x, y in checks:
        diff = float(np.abs(x - y).max())
        agree = float((x.argmax(1) == y.argmax(1)).mean()) if x.shape[1] > 1 else 1.0
        ok = diff <= a.tol and agree == 1.0
        failed |= not ok
        print(f"| {name} | {diff:.2e} | {100 * agree:.2f}% | {'ok' if ok else 'FAIL'} |")
    if failed:
        print(f"\nFAIL: --runtime onnxruntime differs by more than {a.tol} or changes a label")
        sys.exit(1)


if __name__ == "__main__":
    main()
