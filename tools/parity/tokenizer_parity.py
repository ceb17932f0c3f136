"""tokenizer_parity.py -- our cased WordPiece tokenizer (from vocab.txt) vs transformers on GLUE dev.

Usage (from the repository root, after `bash tools/setup_python.sh`, with target/debug/distill built):

    tools/.venv/bin/python tools/parity/tokenizer_parity.py [--glue ../shared/glue] \
        [--vocab ../shared/vocab/bert-base-cased-vocab.txt] [--bin target/debug/distill] \
        [--max-len 128] [--batch-size 64] [--tasks SST-2,CoLA,MRPC,STS-B,QNLI] [--show 3]

Builds a throw-away model folder in a temp dir (tiny random BertModel, vocab_size 28996,
the cased vocab as vocab.txt, tokenizer_config.json {"do_lower_case": false} and no
tokenizer.json, so the Rust side assembles WordPiece from vocab.txt the way
BertTokenizerFast does), runs `distill encode` on every dev input of each task (pairs
tab-joined) and compares the input_ids on the real tokens with transformers'
BertTokenizerFast(vocab, do_lower_case=False), truncation longest_first to max-len.
Prints per task the number of inputs and of mismatching rows (with the first few
mismatches) and exits 1 on any mismatch.

Note: in transformers 5, BertTokenizerFast(vocab_file=...) silently ignores the file (a
5-token vocabulary); the vocabulary is passed as a dict (vocab=load_vocab(path)) here.
"""

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch
import transformers
from safetensors import safe_open
from transformers import BertConfig, BertModel, BertTokenizerFast
from transformers.models.bert.tokenization_bert import load_vocab

transformers.logging.disable_progress_bar()

# task -> (has header, text column a, text column b or None); a column is a header name or an index.
TASKS = {
    "SST-2": (True, "sentence", None),
    "CoLA": (False, 3, None),
    "MRPC": (True, "#1 String", "#2 String"),
    "STS-B": (True, "sentence1", "sentence2"),
    "QNLI": (True, "question", "sentence"),
}


def read_task(glue, task):
    header, ca, cb = TASKS[task]
    csv.field_size_limit(sys.maxsize)
    with open(os.path.join(glue, task, "dev.tsv"), encoding="utf-8", newline="") as f:
        rows = [r for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if r]
    if header:
        head, rows = rows[0], rows[1:]
        ca = head.index(ca)
        cb = head.index(cb) if cb is not None else None
    return [(r[ca], r[cb] if cb is not None else None) for r in rows]


def make_model_dir(folder, vocab):
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=28996, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=512, pad_token_id=0)
    BertModel(cfg).save_pretrained(folder, safe_serialization=True)
    shutil.copyfile(vocab, os.path.join(folder, "vocab.txt"))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": False}, f)
    assert not os.path.exists(os.path.join(folder, "tokenizer.json"))


def first_diff(a, b):
    return next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--glue", default="../shared/glue")
    ap.add_argument("--vocab", default="../shared/vocab/bert-base-cased-vocab.txt")
    ap.add_argument("--bin", default="target/debug/distill")
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--show", type=int, default=3, help="mismatches printed per task")
    args = ap.parse_args()

    tok = BertTokenizerFast(vocab=load_vocab(args.vocab), do_lower_case=False)
    assert len(tok) == 28996, f"transformers tokenizer has {len(tok)} tokens"
    print(f"transformers {transformers.__version__}, tokenizers {__import__('tokenizers').__version__}; "
          f"vocab {args.vocab} ({len(tok)} tokens); max_len {args.max_len}, longest_first")

    total_bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = os.path.join(tmp, "model")
        make_model_dir(model_dir, args.vocab)
        for task in args.tasks.split(","):
            items = read_task(args.glue, task)
            for a, b in items:  # the line format of `distill encode`
                assert not any(c in t for t in (a, b or "") for c in "\t\n\r"), (a, b)
                assert a.strip() or b, (a, b)
            inp, out = os.path.join(tmp, f"{task}.txt"), os.path.join(tmp, f"{task}.safetensors")
            with open(inp, "w", encoding="utf-8") as f:
                for a, b in items:
                    f.write(a + ("\t" + b if b is not None else "") + "\n")
            subprocess.run([args.bin, "encode", model_dir, "--file", inp, "--out", out,
                            "--max-len", str(args.max_len), "--batch-size", str(args.batch_size)], check=True)
            with safe_open(out, "pt") as f:
                ids, mask = f.get_tensor("input_ids").long(), f.get_tensor("attention_mask")
            os.remove(out)
            if ids.shape[0] != len(items):
                print(f"{task}: ours has {ids.shape[0]} rows for {len(items)} inputs")
                return 1
            lens = mask.sum(1).round().long().tolist()

            a_list = [a for a, _ in items]
            b_list = [b for _, b in items] if items[0][1] is not None else None
            ref = tok(a_list, b_list, truncation="longest_first", max_length=args.max_len)["input_ids"]
            bad = [i for i in range(len(items)) if ids[i, : lens[i]].tolist() != ref[i]]
            n_trunc = sum(len(r) == args.max_len for r in ref)
            print(f"{task}: {len(items)} inputs ({'pairs' if b_list else 'single'}), "
                  f"{n_trunc} truncated to {args.max_len}, longest {max(map(len, ref))} tokens; "
                  f"{len(bad)} mismatching rows")
            for i in bad[: args.show]:
                ours, theirs = ids[i, : lens[i]].tolist(), ref[i]
                k = first_diff(ours, theirs)
                print(f"  row {i}: {items[i]!r}")
                print(f"    first difference at token {k}; lengths ours {len(ours)}, transformers {len(theirs)}")
                print(f"    ours         {tok.convert_ids_to_tokens(ours[max(0, k - 5): k + 10])}")
                print(f"    transformers {tok.convert_ids_to_tokens(theirs[max(0, k - 5): k + 10])}")
            total_bad += len(bad)
    print("OK" if total_bad == 0 else f"FAIL: {total_bad} mismatching rows")
    return 0 if total_bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
