"""checkpoint_parity.py -- our encoder vs transformers on a real checkpoint (all-MiniLM-L6-v2, BERT;
all-mpnet-base-v2, MPNet).

Usage (from the repository root, after `bash tools/setup_python.sh` and
`bash tools/setup_teacher.sh` / `bash tools/setup_mpnet.sh`, with target/debug/distill built):

    tools/.venv/bin/python tools/parity/checkpoint_parity.py [--n 200] \
        [--model models/all-MiniLM-L6-v2] [--glue ../shared/glue] [--bin target/debug/distill] \
        [--max-len 128] [--batch-size 32] [--tol 1e-4] [--logits]

Takes the first N sentences of SST-2 dev and the mixed-case, accented and non-Latin sentences of
tools/parity/mixed_case.tsv, runs `distill encode` on them (every layer's
hidden states) and transformers AutoModel (eager attention, eval, float32, 2 threads) on
the same texts with AutoTokenizer (padding to the longest, truncation to max-len).
Checks that our input_ids equal transformers' on the real tokens, then prints the max
abs difference of every hidden state (index 0 = embeddings) over real (non-padding)
tokens. With --logits, also gives the checkpoint a seeded random 2-label head with
AutoModelForSequenceClassification, saves it, and compares `distill predict`'s logits on
the same sentences with transformers'. Exits 1 on an id mismatch or a max diff > tol.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

import torch
import transformers
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

transformers.logging.disable_progress_bar()


def sst2_sentences(glue, n):
    csv.field_size_limit(sys.maxsize)
    with open(os.path.join(glue, "SST-2", "dev.tsv"), encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    col = rows[0].index("sentence")
    return [r[col] for r in rows[1:] if r][:n]


def mixed_case_sentences():
    """tools/parity/mixed_case.tsv: capitals, accents and non-Latin script, which SST-2 (all lower case)
    never exercises."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mixed_case.tsv")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r[0] for r in rows[1:] if r]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--model", default="models/all-MiniLM-L6-v2")
    ap.add_argument("--glue", default="../shared/glue")
    ap.add_argument("--bin", default="target/debug/distill")
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--logits", action="store_true",
                    help="also compare a sequence classifier's logits (a seeded random head)")
    args = ap.parse_args()
    torch.set_num_threads(2)

    texts = sst2_sentences(args.glue, args.n) + mixed_case_sentences()
    assert all(t.strip() and "\t" not in t and "\n" not in t for t in texts)
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "texts.txt"), os.path.join(tmp, "ours.safetensors")
        with open(inp, "w", encoding="utf-8") as f:
            f.write("\n".join(texts) + "\n")
        cmd = [args.bin, "encode", args.model, "--file", inp, "--out", out,
               "--max-len", str(args.max_len), "--batch-size", str(args.batch_size)]
        subprocess.run(cmd, check=True)
        ours = load_file(out)

    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model, attn_implementation="eager", dtype=torch.float32).eval()
    enc = tok(texts, padding="longest", truncation=True, max_length=args.max_len, return_tensors="pt")
    with torch.no_grad():
        ref = model(**enc, output_hidden_states=True).hidden_states
    n_layers = model.config.num_hidden_layers
    print(f"{len(texts)} sentences (SST-2 dev and tools/parity/mixed_case.tsv); transformers {transformers.__version__}, torch {torch.__version__}; "
          f"{model.__class__.__name__} {args.model} ({n_layers} layers, hidden {model.config.hidden_size})")
    print(f"padded length: ours {ours['input_ids'].shape[1]}, transformers {enc['input_ids'].shape[1]}")

    # 1. token ids on the real tokens
    our_len = ours["attention_mask"].sum(1).round().long()
    ref_len = enc["attention_mask"].sum(1).long()
    bad = []
    for i in range(len(texts)):
        a = ours["input_ids"][i, : our_len[i]].long().tolist()
        b = enc["input_ids"][i, : ref_len[i]].tolist()
        if a != b:
            bad.append(i)
            if len(bad) <= 3:
                print(f"input_ids mismatch row {i}: {texts[i]!r}")
                print(f"  ours         {tok.convert_ids_to_tokens(a)}")
                print(f"  transformers {tok.convert_ids_to_tokens(b)}")
    print(f"input_ids: {len(texts) - len(bad)}/{len(texts)} rows equal")
    if bad:
        print("FAIL")
        return 1

    # 2. hidden states on the real tokens
    s = int(ref_len.max())
    mask = enc["attention_mask"][:, :s].bool()
    overall, worst = 0.0, None
    for k in range(n_layers + 1):
        a = ours[f"hidden_states.{k}"][:, :s][mask]
        b = ref[k][:, :s][mask]
        d = (a - b).abs()
        m = d.max().item()
        print(f"hidden_states.{k}: max abs diff {m:.3e}  (mean {d.mean().item():.3e}, max |ref| {b.abs().max().item():.2f})")
        if m > overall:
            overall, worst = m, k
    print(f"overall max abs diff: {overall:.3e} (hidden_states.{worst}; {int(mask.sum())} real tokens; tol {args.tol:g})")
    ok = overall <= args.tol
    if args.logits:
        ok &= check_logits(args, texts, tok)
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


def check_logits(args, texts, tok):
    """A 2-label classifier of the checkpoint (head drawn with torch.manual_seed(0)): `distill predict`
    against transformers' logits."""
    torch.manual_seed(0)
    clf = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=2, attn_implementation="eager", dtype=torch.float32).eval()
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "classifier")
        clf.save_pretrained(folder, safe_serialization=True)
        tok.save_pretrained(folder)
        inp = os.path.join(tmp, "texts.txt")
        with open(inp, "w", encoding="utf-8") as f:
            f.write("\n".join(texts) + "\n")
        cmd = [args.bin, "predict", folder, "--file", inp, "--max-len", str(args.max_len),
               "--batch-size", str(args.batch_size)]
        lines = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()
    ours = torch.tensor([json.loads(l)["logits"] for l in lines if l.strip()])
    enc = tok(texts, padding="longest", truncation=True, max_length=args.max_len, return_tensors="pt")
    with torch.no_grad():
        ref = clf(**enc).logits
    d = (ours - ref).abs().max().item()
    print(f"{clf.__class__.__name__} logits: max abs diff {d:.3e} over {len(texts)} sentences "
          f"(max |ref| {ref.abs().max().item():.2f}; tol {args.tol:g})")
    return d <= args.tol


if __name__ == "__main__":
    sys.exit(main())
