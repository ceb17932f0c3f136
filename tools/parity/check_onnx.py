#!/usr/bin/env python3
"""ONNX parity and int8 figures for an export written by `distill export CONFIG --format onnx --int8`.

Runs model.onnx (and model.int8.onnx when present) in onnxruntime on a dev TSV, tokenised with the
export's tokenizer.json, and compares with `distill predict` (f32 and --int8) on the same inputs:
max |logit difference| and label agreement against our f32 logits, the dev metric (accuracy, or
Pearson for one output), file size, and batch-1 latency (p50/p99 over `--latency-n` dev inputs).

    tools/.venv/bin/python tools/parity/check_onnx.py runs/sst2/export \
        ../shared/glue/SST-2/dev.tsv --text-col sentence --label-col label \
        --distill target/release/distill --json runs/sst2/onnx_parity.json

Exits 1 when the f32 graph differs from `distill predict` by more than --tol or changes a label.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def read_tsv(path, text_col, pair_col, label_col):
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    texts = [(r[text_col], r[pair_col] if pair_col else None) for r in rows]
    labels = [r[label_col] for r in rows] if label_col else None
    return texts, labels


def encode(tok, texts, max_len):
    tok.no_padding()
    tok.enable_truncation(max_len)
    out = []
    for a, b in texts:
        e = tok.encode(a, b) if b is not None else tok.encode(a)
        out.append((e.ids, e.type_ids))
    return out


def feeds(ort_model, batch, pad_id):
    n = max(len(ids) for ids, _ in batch)
    ids = np.full((len(batch), n), pad_id, dtype=np.int64)
    types = np.zeros((len(batch), n), dtype=np.int64)
    mask = np.zeros((len(batch), n), dtype=np.int64)
    for i, (t, ty) in enumerate(batch):
        ids[i, : len(t)] = t
        types[i, : len(t)] = ty
        mask[i, : len(t)] = 1
    names = {i.name for i in ort_model.get_inputs()}
    f = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in names:
        f["token_type_ids"] = types
    return f


def run_onnx(path, enc, pad_id, threads, batch_size=64):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    order = sorted(range(len(enc)), key=lambda i: len(enc[i][0]))
    logits = [None] * len(enc)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        out = sess.run(["logits"], feeds(sess, [enc[i] for i in idx], pad_id))[0]
        for j, i in enumerate(idx):
            logits[i] = out[j]
    return sess, np.stack(logits)


def latency(sess, enc, pad_id, n):
    for e in enc[:5]:
        sess.run(["logits"], feeds(sess, [e], pad_id))
    times = []
    for e in enc[:n]:
        t = time.perf_counter()
        sess.run(["logits"], feeds(sess, [e], pad_id))
        times.append((time.perf_counter() - t) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def write_texts(texts):
    """The inputs as a `distill predict --file` file (a tab joins a pair); returns its path."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        for a, b in texts:
            f.write(a if b is None else f"{a}\t{b}")
            f.write("\n")
        return f.name


def ort_library():
    """The shared library inside the Python package, for ORT_DYLIB_PATH: `--runtime onnxruntime` then runs the
    same build as the Python API."""
    capi = os.path.join(os.path.dirname(ort.__file__), "capi")
    libs = sorted(f for f in os.listdir(capi) if f.startswith("libonnxruntime.so."))
    if not libs:
        sys.exit(f"no libonnxruntime.so.* in {capi}")
    return os.path.join(capi, libs[-1])


def distill_logits(binary, model_dir, texts, max_len, int8, extra=()):
    name = write_texts(texts)
    cmd = [binary, "-q", "predict", model_dir, "--file", name, "--max-len", str(max_len), *extra]
    if int8:
        cmd.append("--int8")
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                             env=dict(os.environ, ORT_DYLIB_PATH=ort_library())).stdout
    finally:
        os.unlink(name)
    return np.array([json.loads(l)["logits"] for l in out.splitlines()], dtype=np.float32)


def metric(logits, labels, label_names):
    if labels is None:
        return None
    if logits.shape[1] == 1:
        y = np.array([float(l) for l in labels])
        return float(np.corrcoef(logits[:, 0], y)[0, 1])
    ids = {name: i for i, name in enumerate(label_names)}
    y = np.array([ids.get(l, int(l) if l.isdigit() else -1) for l in labels])
    return float((logits.argmax(1) == y).mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("tsv")
    ap.add_argument("--text-col", default="sentence")
    ap.add_argument("--pair-col")
    ap.add_argument("--label-col")
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--distill", default="target/release/distill")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--latency-n", type=int, default=200)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--json")
    a = ap.parse_args()

    cfg = json.load(open(os.path.join(a.model_dir, "config.json")))
    label_names = [cfg["id2label"][str(i)] for i in range(len(cfg.get("id2label", {})))]
    texts, labels = read_tsv(a.tsv, a.text_col, a.pair_col, a.label_col)
    tok = Tokenizer.from_file(os.path.join(a.model_dir, "tokenizer.json"))
    pad_id = cfg.get("pad_token_id", 0)
    enc = encode(tok, texts, a.max_len)

    ours = distill_logits(a.distill, a.model_dir, texts, a.max_len, int8=False)
    ours8 = distill_logits(a.distill, a.model_dir, texts, a.max_len, int8=True)
    rows = [
        {
            "model": "distill f32",
            "metric": metric(ours, labels, label_names),
            "size_mb": os.path.getsize(os.path.join(a.model_dir, "model.safetensors")) / 1e6,
        },
        {"model": "distill int8", "metric": metric(ours8, labels, label_names),
         "max_abs_diff_vs_f32": float(np.abs(ours8 - ours).max()),
         "label_agreement_vs_f32": float((ours8.argmax(1) == ours.argmax(1)).mean())},
    ]
    failed = False
    for name, file in [("onnx f32", "model.onnx"), ("onnx int8", "model.int8.onnx")]:
        path = os.path.join(a.model_dir, file)
        if not os.path.exists(path):
            continue
        sess, logits = run_onnx(path, enc, pad_id, a.threads)
        p50, p99 = latency(sess, enc, pad_id, a.latency_n)
        diff = float(np.abs(logits - ours).max())
        agree = float((logits.argmax(1) == ours.argmax(1)).mean())
        rows.append({
            "model": name, "metric": metric(logits, labels, label_names),
            "max_abs_diff_vs_f32": diff, "label_agreement_vs_f32": agree,
            "size_mb": os.path.getsize(path) / 1e6, "p50_ms": p50, "p99_ms": p99,
        })
        if file == "model.onnx" and (diff > a.tol or agree < 1.0):
            failed = True

    print(f"{len(texts)} inputs from {a.tsv}; onnxruntime {ort.__version__}, {a.threads} threads\n")
    print("| model | dev metric | max abs diff vs distill f32 | label agreement | size MB | batch-1 p50 / p99 ms |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        m = "—" if r.get("metric") is None else f"{100 * r['metric']:.2f}"
        d = f"{r['max_abs_diff_vs_f32']:.2e}" if "max_abs_diff_vs_f32" in r else "—"
        g = f"{100 * r['label_agreement_vs_f32']:.2f}%" if "label_agreement_vs_f32" in r else "—"
        s = f"{r['size_mb']:.1f}" if "size_mb" in r else "—"
        l = f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}" if "p50_ms" in r else "—"
        print(f"| {r['model']} | {m} | {d} | {g} | {s} | {l} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"inputs": len(texts), "tsv": a.tsv, "rows": rows}, f, indent=2)
    if failed:
        print(f"\nFAIL: model.onnx differs from distill predict by more than {a.tol} or changes a label")
        sys.exit(1)


if __name__ == "__main__":
    main()
