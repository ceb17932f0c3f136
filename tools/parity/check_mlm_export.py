"""check_mlm_export.py -- our masked-LM export reloaded by transformers, and `distill fill-mask` on it.

Run from the repository root after `cargo test` (which builds target/debug/distill and the student
example target/debug/examples/mlm_export):

    tools/.venv/bin/python tools/parity/check_mlm_export.py [--distill target/debug/distill]
        [--export target/debug/examples/mlm_export] [--tol 1e-4]

For each source folder -- the committed bert_mlm and roberta_mlm fixtures (trained heads) and the
bert_bare fixture (a bare encoder: the export gets a fresh head) -- it
  1. writes our export with `mlm_export SRC OUT` (student::export::export_mlm);
  2. loads OUT with AutoModelForMaskedLM + AutoTokenizer (no warnings about missing or unexpected
     weights allowed) and, when SRC had a head, checks its logits equal transformers' on SRC;
  3. runs `distill fill-mask OUT TEXT... --top-k VOCAB` and checks, at every mask position, that our
     log-probability of every token equals log_softmax of transformers' logits within --tol (log
     probabilities, since a tiny random model spreads its probability thinly over the vocabulary).
Exits 0 when everything agrees, 1 otherwise.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import transformers
from transformers import AutoModelForMaskedLM, AutoTokenizer

FIXTURES = "modeling/tests/fixtures/parity"
TEXTS = [
    "The quick brown [MASK] jumped over the lazy dog.",
    "Hello [MASK]!",
    "How are you [MASK] today? I am [MASK], thanks.",
    # Capitals, accents and other scripts: the export's tokenizer_config.json must say what its
    # tokenizer.json does, or transformers tokenizes these differently.
    "Zürich is a [MASK] City, said Amélie.",
    "Крайне [MASK] фильм.",
    "Ένα [MASK] ΦΙΛΜ; 这部电影.",
]
CASES = [("bert_mlm", True), ("roberta_mlm", True), ("bert_bare", False)]


def hf_logits(folder, texts):
    """Logits [s, vocab] per text, from transformers on `folder`, and the loading report."""
    model, info = AutoModelForMaskedLM.from_pretrained(folder, output_loading_info=True,
                                                       attn_implementation="eager")
    model.eval()
    tok = AutoTokenizer.from_pretrained(folder)
    out = []
    for t in texts:
        t = t.replace("[MASK]", tok.mask_token)
        enc = tok(t, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits[0]
        out.append((enc["input_ids"][0], logits))
    return out, info, tok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--distill", default="target/debug/distill")
    ap.add_argument("--export", default="target/debug/examples/mlm_export")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name, has_head in CASES:
            src = os.path.join(FIXTURES, name)
            out = os.path.join(tmp, name)
            subprocess.run([args.export, src, out, "7"], check=True)
            ours_hf, info, tok = hf_logits(out, TEXTS)
            bad_keys = {k: v for k, v in info.items() if v and k != "error_msgs"}
            if bad_keys:
                print(f"FAIL {name}: transformers reports {bad_keys}")
                ok = False
            worst_src = 0.0
            if has_head:
                ref, _, _ = hf_logits(src, TEXTS)
                for (ids_a, a), (ids_b, b) in zip(ours_hf, ref):
                    assert torch.equal(ids_a, ids_b)
                    worst_src = max(worst_src, (a - b).abs().max().item())
                if worst_src > args.tol:
                    print(f"FAIL {name}: export logits differ from the source by {worst_src}")
                    ok = False
            vocab = ours_hf[0][1].shape[-1]
            run = subprocess.run([args.distill, "fill-mask", out, *TEXTS, "--top-k", str(vocab)],
                                 capture_output=True, text=True)
            if run.returncode != 0:
                print(f"FAIL {name}: distill fill-mask: {run.stderr.strip()}")
                ok = False
                continue
            rows = [json.loads(line) for line in run.stdout.splitlines()]
            worst, masks = 0.0, 0
            for r in rows:
                ids, logits = ours_hf[r["input"]]
                pos = r["position"]
                if ids[pos].item() != tok.mask_token_id:
                    print(f"FAIL {name}: input {r['input']} position {pos} is not a mask for transformers")
                    ok = False
                    continue
                logp = torch.log_softmax(logits[pos].double(), -1)
                if len(r["predictions"]) != vocab:
                    print(f"FAIL {name}: {len(r['predictions'])} predictions for a vocabulary of {vocab}")
                    ok = False
                for p in r["predictions"]:
                    ours = torch.tensor(p["score"], dtype=torch.float64).log().item()
                    worst = max(worst, abs(ours - logp[p["token_id"]].item()))
                masks += 1
            want = sum(int((ids == tok.mask_token_id).sum()) for ids, _ in ours_hf)
            if masks != want:
                print(f"FAIL {name}: fill-mask reported {masks} masks, transformers sees {want}")
                ok = False
            status = "ok" if worst <= args.tol else "FAIL"
            ok &= worst <= args.tol
            print(f"{status} {name}: {masks} masks, max |log p_ours - log p_hf| {worst:.2e}"
                  + (f", export vs source logits {worst_src:.2e}" if has_head else " (fresh head)"))
    print("MLM EXPORT OK" if ok else "MLM EXPORT FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
