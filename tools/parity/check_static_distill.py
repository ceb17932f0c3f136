"""Checks distill's static student against model2vec's own distillation of the same teacher:
`model2vec.distill.distill_from_model(teacher, tokenizer, pca_dims=D, quantize_to="float32")` against
the export of an embedding run with `static_model: {dims: D}`, compared on the texts' embeddings
(`StaticModel.encode`): the largest difference and the smallest cosine.

    python tools/parity/check_static_distill.py TEACHER EXPORT TEXTS_FILE --dims D

model2vec's distillation (its `distill` extra) needs transformers < 5.4, older than tools/requirements.txt pins,
so this check runs in a venv of its own:

    python3 -m venv /tmp/m2v && /tmp/m2v/bin/pip install "model2vec[distill]==0.10.0" torch==2.15.0
    /tmp/m2v/bin/python tools/parity/check_static_distill.py ...
"""
import argparse
import sys

import numpy as np
from model2vec import StaticModel
from model2vec.distill import distill_from_model
from transformers import AutoModel, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("teacher")
    ap.add_argument("export")
    ap.add_argument("texts")
    ap.add_argument("--dims", type=int, default=256)
    ap.add_argument("--atol", type=float, default=1e-4)
    a = ap.parse_args()
    texts = [l.rstrip("\n").split("\t")[0] for l in open(a.texts, encoding="utf-8")]
    texts = [t for t in texts[1:] if t.strip()]
    # The teacher's tokenizer as distill read it (the export carries it): a folder with vocab.txt alone is
    # cased to distill but lower-cased by AutoTokenizer's default.
    tok = AutoTokenizer.from_pretrained(a.export)
    model = AutoModel.from_pretrained(a.teacher)
    ref = distill_from_model(model, tok, pca_dims=a.dims, quantize_to="float32", device="cpu")
    want = ref.encode(texts)
    got = StaticModel.from_pretrained(a.export).encode(texts)
    diff = float(np.abs(got - want).max())
    cos = float((got * want).sum(1).min())
    print(f"{a.export}: {len(texts)} texts, max |distill - model2vec.distill| = {diff:.2e}, min cosine {cos:.6f}")
    if diff > a.atol:
        sys.exit(f"FAIL: {diff:.2e} > {a.atol}")


if __name__ == "__main__":
    main()
