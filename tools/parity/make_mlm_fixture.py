"""make_mlm_fixture.py -- tiny random masked LMs + reference outputs for the Rust MLM parity tests.

Run from the repository root (after `bash tools/setup_python.sh`):

    tools/.venv/bin/python tools/parity/make_mlm_fixture.py [OUT_DIR]

Writes OUT_DIR/<name>/ (default OUT_DIR: modeling/tests/fixtures/parity) for
  bert_mlm     BertForMaskedLM, cased WordPiece tokenizer (make_fixtures.py's)
  roberta_mlm  RobertaForMaskedLM, byte-level BPE tokenizer (make_fixtures.py's)
Each folder: config.json, model.safetensors (as save_pretrained writes it: the tied decoder is not
stored), tokenizer files, and reference.safetensors with the masked input_ids, attention_mask,
token_type_ids, labels (int64 [b,s], -100 where nothing is predicted), logits [b,s,vocab], loss (0-d)
and grad.<name> for a few parameters (the tied word embeddings among them). Parameters are perturbed
by N(0, 0.1) so wrong biases or LayerNorm parameters show; eval mode (no dropout), eager attention,
torch.manual_seed(0): deterministic.
"""

import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import BertConfig, BertForMaskedLM, RobertaConfig, RobertaForMaskedLM

from make_fixtures import TINY, clear_tokenizer_json, make_bert_tokenizer, make_roberta_tokenizer, perturb

OUT = sys.argv[1] if len(sys.argv) > 1 else "modeling/tests/fixtures/parity"

# Two single sentences and a pair (token type ids for BERT), padded to the longest.
TEXTS = [
    ("The quick brown fox jumped over the lazy dog.", None),
    ("Hello world!", None),
    ("How are you doing today?", "I am fine, thanks."),
]


def masked_inputs(tok, model_vocab):
    """Every third ordinary token is predicted: two of three of those become the mask token, the
    rest alternate between a fixed random-looking token and staying as they are."""
    feats = [tok(a, b, return_token_type_ids=True, return_special_tokens_mask=True) for a, b in TEXTS]
    enc = tok.pad(feats, padding=True, return_tensors="pt")
    ids = enc["input_ids"].clone()
    labels = torch.full_like(ids, -100)
    k = 0
    for r in range(ids.shape[0]):
        for c in range(ids.shape[1]):
            if enc["special_tokens_mask"][r, c] or not enc["attention_mask"][r, c]:
                continue
            k += 1
            if k % 3:
                continue
            labels[r, c] = ids[r, c]
            if (k // 3) % 3 == 1:
                ids[r, c] = (7 * k + 11) % model_vocab if (k // 3) % 2 else ids[r, c]
            else:
                ids[r, c] = tok.mask_token_id
    return {
        "input_ids": ids.long(),
        "attention_mask": enc["attention_mask"].long(),
        "token_type_ids": enc["token_type_ids"].long(),
        "labels": labels.long(),
    }


def build(name, model, tok, grad_names):
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    tok.backend_tokenizer.model.save(folder)
    clear_tokenizer_json(folder)

    ref = masked_inputs(tok, model.config.vocab_size)
    model.eval()
    model.zero_grad()
    out = model(**ref)
    out.loss.backward()
    ref["logits"] = out.logits
    ref["loss"] = out.loss
    params = dict(model.named_parameters(remove_duplicate=False))
    for g in grad_names:
        ref[f"grad.{g}"] = params[g].grad
    ref = {k: v.detach().clone().contiguous() for k, v in ref.items()}
    save_file(ref, os.path.join(folder, "reference.safetensors"))

    # The folder reloads with the same logits (the tie is restored from the stored tensors).
    m = model.__class__.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        again = m(**{k: ref[k] for k in ("input_ids", "attention_mask", "token_type_ids")}).logits
    assert torch.equal(again, ref["logits"]), folder

    print(f"== {name}  ({model.__class__.__name__})  loss {ref['loss'].item():.6f}")
    print("  predicted:", int((ref["labels"] != -100).sum()), "of", int(ref["attention_mask"].sum()))
    total = 0
    for fn in sorted(os.listdir(folder)):
        size = os.path.getsize(os.path.join(folder, fn))
        total += size
        print(f"  {size:9d}  {fn}")
    with safe_open(os.path.join(folder, "model.safetensors"), "pt") as f:
        print("  head keys:", [k for k in f.keys() if k.startswith(("cls.", "lm_head."))])
    print(f"  {total:9d}  total")
    return total


def main():
    torch.manual_seed(0)
    btok = make_bert_tokenizer()
    rtok = make_roberta_tokenizer()
    total = 0

    def make(cls, cfg):
        cfg._attn_implementation = "eager"
        m = cls(cfg)
        perturb(m)
        m.tie_weights()  # perturb() moved tied parameters once each; keep the ties explicit
        return m

    bcfg = BertConfig(vocab_size=len(btok), max_position_embeddings=64, type_vocab_size=2,
                      layer_norm_eps=1e-12, pad_token_id=0, **TINY)
    m = make(BertForMaskedLM, bcfg)
    total += build("bert_mlm", m, btok, [
        "bert.embeddings.word_embeddings.weight",
        "bert.encoder.layer.0.attention.self.query.weight",
        "cls.predictions.transform.dense.weight",
        "cls.predictions.transform.LayerNorm.weight",
        "cls.predictions.bias",
    ])
    rcfg = RobertaConfig(vocab_size=len(rtok), max_position_embeddings=64 + 2, type_vocab_size=1,
                         layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2, **TINY)
    m = make(RobertaForMaskedLM, rcfg)
    total += build("roberta_mlm", m, rtok, [
        "roberta.embeddings.word_embeddings.weight",
        "roberta.encoder.layer.1.output.dense.weight",
        "lm_head.dense.weight",
        "lm_head.layer_norm.bias",
        "lm_head.bias",
    ])
    print(f"all MLM fixtures: {total} bytes")


if __name__ == "__main__":
    main()
