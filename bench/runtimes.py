#!/usr/bin/env python3
"""Our runtime beside onnxruntime on one exported model, in one run, on the same thread count.

Rows, each in f32 and int8:
  - `distill predict --time` (our encoder on candle; int8 is `--int8`, dynamic quantization in Rust);
  - `distill predict --time --runtime onnxruntime` (the export's model.onnx / model.int8.onnx through the
    `ort` crate);
  - onnxruntime's Python API on the same two graphs.
With --before BIN, another build of distill (the code before a change) runs beside ours in every
round. Each: batch-1 latency (p50 / p99 over the first --latency-n inputs, after 10 untimed) and throughput at
--batch-size over all inputs (sorted by length, as `distill` batches them). Inputs are tokenised
beforehand everywhere, with the export's tokenizer.json. The rows are measured --rounds times, one
after the other in each round, so that the machine's drift reaches all of them; the table gives each
figure's median. Last, the memory bound at batch 1: the bytes of int8 weights a forward reads over the
machine's read bandwidth (measured here), beside our int8 p50. Run it on an otherwise idle machine:

    distill onnx runs/sst2-quick/export && distill onnx runs/sst2-quick/export --int8
    tools/.venv/bin/python bench/runtimes.py runs/sst2-quick/export ../shared/glue/SST-2/dev.tsv \
        --distill target/release/distill --json runs/runtimes.json
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "parity"))
from check_onnx import encode, feeds, ort_library, read_tsv, write_texts  # noqa: E402

WARMUP = 10


def distill_time(binary, model_dir, texts_file, args, threads, max_len, batch_size):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), ORT_DYLIB_PATH=ort_library())
    cmd = [binary, "-q", "predict", model_dir, "--file", texts_file, "--time", "--max-len", str(max_len),
           "--batch-size", str(batch_size), *args]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    r = json.loads(out)
    return {"p50_ms": r["latency"]["p50_ms"], "p99_ms": r["latency"]["p99_ms"],
            "examples_per_second": r["examples_per_second"], "runtime": r["runtime"]}


def python_time(path, enc, pad_id, threads, latency_n, batch_size):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    n = min(latency_n, len(enc))
    ms = []
    for i, e in enumerate(enc[:WARMUP] + enc[:n]):
        t = time.perf_counter()
        sess.run(["logits"], feeds(sess, [e], pad_id))
        if i >= WARMUP:
            ms.append((time.perf_counter() - t) * 1000)
    order = sorted(range(len(enc)), key=lambda i: -len(enc[i][0]))
    t = time.perf_counter()
    for s in range(0, len(order), batch_size):
        sess.run(["logits"], feeds(sess, [enc[i] for i in order[s:s + batch_size]], pad_id))
    secs = time.perf_counter() - t
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "examples_per_second": len(enc) / secs, "runtime": f"onnxruntime {ort.__version__} (Python)"}


def weight_bytes(model_dir):
    """Bytes of the export's weights as our int8 path holds them, from model.safetensors' header:
    (all of them, those a batch-1 forward reads, the multiply-adds of its dense layers per token). Matrices of the encoder blocks and the head are int8
    with an f32 scale per output row, the word embeddings int8 with an f32 scale per row, every other
    tensor f32. A forward reads every weight but the embedding tables (and MPNet's relative-position
    bias table), of which it gathers rows.
    """
    with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    total = read = macs = 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        shape = t["shape"]
        n = int(np.prod(shape)) if shape else 1
        embedding = ("embeddings" in name and "LayerNorm" not in name) or "relative_attention_bias" in name
        int8 = len(shape) == 2 and ("word_embeddings" in name or not embedding)
        size = n + 4 * shape[0] if int8 else 4 * n
        total += size
        read += 0 if embedding else size
        macs += n if int8 and not embedding else 0
    return total, read, macs


def bandwidth(threads, mib=512, reps=5):
    """The machine's read bandwidth in bytes/s: `threads` threads each summing its share of a buffer
    larger than the caches (numpy releases the GIL), the best of `reps` passes."""
    from concurrent.futures import ThreadPoolExecutor
    buf = np.ones(mib * 2**20 // 8, dtype=np.float64)
    parts = np.array_split(buf, threads)
    best = 0.0
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(reps):
            t = time.perf_counter()
            list(pool.map(np.sum, parts))
            best = max(best, buf.nbytes / (time.perf_counter() - t))
    return best


def measure(a, texts_file, enc, pad_id):
    """One round: the six rows, in table order."""
    rows = []
    for precision in ("f32", "int8"):
        q = ["--int8"] if precision == "int8" else []
        graph = os.path.join(a.model_dir, "model.int8.onnx" if q else "model.onnx")
        runs = [
            ("distill", lambda: distill_time(a.distill, a.model_dir, texts_file, q, a.threads, a.max_len,
                                             a.batch_size)),
            ("distill --runtime onnxruntime",
             lambda: distill_time(a.distill, a.model_dir, texts_file, q + ["--runtime", "onnxruntime"],
                                  a.threads, a.max_len, a.batch_size)),
            ("onnxruntime (Python)",
             lambda: python_time(graph, enc, pad_id, a.threads, a.latency_n, a.batch_size)),
        ]
        if a.before:
            # Another build of distill (the code before a change), measured in the same rounds.
            runs.insert(1, ("distill (before)", lambda: distill_time(a.before, a.model_dir, texts_file, q,
                                                                     a.threads, a.max_len, a.batch_size)))
        for name, run in runs:
            rows.append({"path": name, "precision": precision, **run()})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("tsv")
    ap.add_argument("--text-col", default="sentence")
    ap.add_argument("--pair-col")
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--distill", default="target/release/distill")
    ap.add_argument("--before", help="another distill binary, measured beside it in every round")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--latency-n", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()

    for f in ("model.onnx", "model.int8.onnx"):
        if not os.path.exists(os.path.join(a.model_dir, f)):
            sys.exit(f"{a.model_dir}/{f} is missing: write it with `distill onnx {a.model_dir}"
                     f"{' --int8' if 'int8' in f else ''}`")
    cfg = json.load(open(os.path.join(a.model_dir, "config.json")))
    texts, _ = read_tsv(a.tsv, a.text_col, a.pair_col, None)
    tok = Tokenizer.from_file(os.path.join(a.model_dir, "tokenizer.json"))
    enc = encode(tok, texts, a.max_len)
    texts_file = write_texts(texts)
    try:
        rounds = [measure(a, texts_file, enc, cfg.get("pad_token_id", 0)) for _ in range(a.rounds)]
    finally:
        os.unlink(texts_file)
    keys = ("p50_ms", "p99_ms", "examples_per_second")
    rows = [dict(r, **{k: float(np.median([x[i][k] for x in rounds])) for k in keys},
                 rounds=[{k: x[i][k] for k in keys} for x in rounds])
            for i, r in enumerate(rounds[0])]

    print(f"{len(enc)} inputs from {a.tsv}; {a.threads} threads; batch-1 over the first "
          f"{min(a.latency_n, len(enc))} after {WARMUP} untimed; throughput at batch {a.batch_size}; "
          f"medians of {a.rounds} rounds\n")
    print("| path | precision | runtime | batch-1 p50 / p99 ms | examples/s | batch-1 p50 speed vs distill |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ours = next(x for x in rows if x["path"] == "distill" and x["precision"] == r["precision"])
        print(f"| {r['path']} | {r['precision']} | {r['runtime']} | {r['p50_ms']:.2f} / {r['p99_ms']:.2f} | "
              f"{r['examples_per_second']:.1f} | {ours['p50_ms'] / r['p50_ms']:.2f}x |")
    total, read, macs = weight_bytes(a.model_dir)
    bw = bandwidth(a.threads)
    ours = next(x for x in rows if x["path"] == "distill" and x["precision"] == "int8")
    floor_ms = read / bw * 1e3
    tokens = float(np.mean([len(e[0]) for e in enc[:a.latency_n]]))
    gmacs = macs * tokens / (ours["p50_ms"] / 1e3) / 1e9
    print(f"\nint8 weights: {total / 1e6:.1f} MB in all, {read / 1e6:.1f} MB read by a batch-1 forward "
          f"(the embedding tables are gathered a row per token); read bandwidth {bw / 1e9:.1f} GB/s "
          f"({a.threads} threads); memory bound at batch 1 {floor_ms:.2f} ms ({total / bw * 1e3:.2f} ms "
          f"for all the weights); distill int8 p50 {ours['p50_ms']:.2f} ms = {ours['p50_ms'] / floor_ms:.2f}x "
          f"the bound. A batch-1 input has {tokens:.1f} tokens on average: {macs * tokens / 1e6:.0f}M "
          f"multiply-adds in the dense layers, {gmacs:.0f} G/s at that p50")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"inputs": len(enc), "tsv": a.tsv, "threads": a.threads, "batch_size": a.batch_size,
                       "rounds": a.rounds, "rows": rows,
                       "int8_weight_bytes": total, "int8_weight_bytes_read": read,
                       "read_bandwidth_bytes_per_s": bw, "memory_bound_ms": floor_ms,
                       "mean_tokens": tokens, "dense_macs_per_token": macs}, f, indent=2)


if __name__ == "__main__":
    main()
