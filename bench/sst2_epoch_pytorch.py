"""PyTorch side of bench/sst2_epoch.sh: SST-2 training the way transformers' run_glue does by default.

RoBERTa-tiny-cased shape (BertForSequenceClassification, random weights, eager attention, dropout 0.1), the cased
WordPiece vocabulary, every training sentence padded to 128 tokens (run_glue's `max_seq_length=128` with
`pad_to_max_length=True`), batch 32, AdamW lr 1e-4 with clipping at 1.0, shuffled. Times the first STEPS updates
after one untimed update and extrapolates to the full epoch (ceil(n / 32) updates).
Usage: tools/.venv/bin/python bench/sst2_epoch_pytorch.py TRAIN_TSV VOCAB [--steps 60] [--threads 2] [--json F]
"""

import argparse
import json
import math
import random
import resource
import time

import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("train_tsv")
    ap.add_argument("vocab")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(42)
    rows = [l.rstrip("\n").split("\t") for l in open(a.train_tsv, encoding="utf-8")][1:]
    texts, labels = [r[0] for r in rows], [int(r[1]) for r in rows]
    tok = BertTokenizerFast(vocab_file=a.vocab, do_lower_case=False)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=512, num_hidden_layers=4, num_attention_heads=8,
                     intermediate_size=2048, num_labels=2, attn_implementation="eager")
    model = BertForSequenceClassification(cfg)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    order = list(range(len(texts)))
    random.Random(42).shuffle(order)
    b = 32
    times, real_tokens = [], 0
    for i in range(a.steps + 1):
        idx = order[i * b:(i + 1) * b]
        t0 = time.perf_counter()
        enc = tok([texts[j] for j in idx], padding="max_length", truncation=True, max_length=128,
                  return_tensors="pt")
        loss = model(**enc, labels=torch.tensor([labels[j] for j in idx])).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i > 0:
            times.append(time.perf_counter() - t0)
            real_tokens += int(enc["attention_mask"].sum())
    step = sum(times) / len(times)
    updates = math.ceil(len(texts) / b)
    out = dict(examples=len(texts), updates=updates, timed_updates=len(times), step_s=step,
               epoch_s=step * updates, real_tokens_per_s=real_tokens / sum(times),
               peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(out))
    if a.json:
        json.dump(out, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
