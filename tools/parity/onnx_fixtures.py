#!/usr/bin/env python3
"""ONNX export vs transformers on the committed parity fixtures (BERT and RoBERTa, classification and
regression): `distill onnx` writes each fixture's graph, onnxruntime runs it on the fixture's inputs,
and its logits must equal the PyTorch reference logits in reference.safetensors within 1e-4. The int8
graph must run and keep its logits within --int8-tol of the reference.

    tools/.venv/bin/python tools/parity/onnx_fixtures.py --distill target/debug/distill
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort
from safetensors.numpy import load_file

FIXTURES = "modeling/tests/fixtures/parity"


def run(path, ref):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    feeds = {k: ref[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids") if k in names}
    return sess.run(["logits"], feeds)[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--distill", default="target/debug/distill")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--int8-tol", type=float, default=0.1)
    a = ap.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for name in ["bert_cls", "roberta_cls", "roberta_reg", "mpnet_cls"]:
            d = os.path.join(FIXTURES, name)
            ref = load_file(os.path.join(d, "reference.safetensors"))
            for int8 in (False, True):
                out = os.path.join(tmp, f"{name}{'.int8' if int8 else ''}.onnx")
                cmd = [a.distill, "onnx", d, "--out", out] + (["--int8"] if int8 else [])
                subprocess.run(cmd, check=True, capture_output=True)
                diff = float(np.abs(run(out, ref) - ref["logits"]).max())
                tol = a.int8_tol if int8 else a.tol
                ok = diff <= tol
                failed |= not ok
                kind = "int8" if int8 else "f32 "
                print(f"{name:12} {kind} max |logits - transformers| = {diff:.2e} (tol {tol}) {'ok' if ok else 'FAIL'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
