"""Checks that sentence-transformers (or model2vec, for a static model's folder) reads a folder as distill
does: `SentenceTransformer(folder).encode(texts)` (`StaticModel.from_pretrained(folder).encode(texts)`)
against `distill embed folder --file texts` (within --atol), on text with capitals, accents and non-Latin
script. Used on embedding runs' exports (the tiny fixtures in CI) and on the real teacher folder. With
`--onnx GRAPH` (written by `distill onnx FOLDER`), the graph in onnxruntime is compared with `distill embed` too.

    python tools/parity/check_sentence_export.py FOLDER TEXTS_FILE --distill target/debug/distill
"""
import argparse
import json
import subprocess
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("texts", help="one text per line (a tab and what follows is dropped: pair files work)")
    ap.add_argument("--distill", default="target/debug/distill")
    ap.add_argument("--atol", type=float, default=1e-5)
    ap.add_argument("--n", type=int, default=0, help="first N texts (0: all)")
    ap.add_argument("--onnx", help="an ONNX graph of the folder (distill onnx), run in onnxruntime")
    ap.add_argument("--onnx-atol", type=float, default=1e-4)
    a = ap.parse_args()
    texts = [l.rstrip("\n").split("\t")[0] for l in open(a.texts, encoding="utf-8")]
    texts = [t for t in texts if t.strip()]
    if texts and texts[0] in ("sentence", "sentence1"):
        texts = texts[1:]
    if a.n:
        texts = texts[: a.n]
    config = json.load(open(f"{a.folder}/config.json"))
    if config.get("model_type") == "model2vec":
        from model2vec import StaticModel

        want = StaticModel.from_pretrained(a.folder).encode(texts)
        library = "model2vec"
    else:
        from sentence_transformers import SentenceTransformer

        want = SentenceTransformer(a.folder, device="cpu").encode(texts, batch_size=32, convert_to_numpy=True)
        library = "sentence-transformers"
    tmp = a.texts + ".embed-input.txt"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(texts) + "\n")
    out = subprocess.run([a.distill, "-q", "embed", a.folder, "--file", tmp], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"distill embed failed:\n{out.stderr}")
    got = np.array([json.loads(l)["embedding"] for l in out.stdout.splitlines()], dtype=np.float32)
    if got.shape != want.shape:
        sys.exit(f"shape: distill {got.shape}, sentence-transformers {want.shape}")
    diff = float(np.abs(got - want).max())
    print(f"{a.folder}: {len(texts)} texts, {want.shape[1]} dimensions, max |distill - {library}| = {diff:.2e}")
    if diff > a.atol:
        sys.exit(f"FAIL: {diff:.2e} > {a.atol}")
    if a.onnx:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        st = json.load(open(f"{a.folder}/sentence_bert_config.json"))
        tok = AutoTokenizer.from_pretrained(a.folder)
        enc = tok(texts, padding=True, truncation=True, max_length=st.get("max_seq_length", 512), return_tensors="np")
        sess = ort.InferenceSession(a.onnx, providers=["CPUExecutionProvider"])
        names = {i.name for i in sess.get_inputs()}
        feed = {k: v.astype(np.int64) for k, v in enc.items() if k in names}
        onnx_out = sess.run(["sentence_embedding"], feed)[0]
        d = float(np.abs(onnx_out - got).max())
        print(f"{a.onnx}: max |onnxruntime - distill| = {d:.2e}")
        if d > a.onnx_atol:
            sys.exit(f"FAIL: {d:.2e} > {a.onnx_atol}")


if __name__ == "__main__":
    main()
