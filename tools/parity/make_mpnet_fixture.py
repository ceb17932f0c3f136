"""make_mpnet_fixture.py -- a tiny random MPNet classifier and its reference outputs, for the Rust
parity tests (modeling/tests/parity.rs).

Run from the repository root (after `bash tools/setup_python.sh`):

    tools/.venv/bin/python tools/parity/make_mpnet_fixture.py [OUT_DIR]

Writes OUT_DIR/mpnet_cls/ (default OUT_DIR: modeling/tests/fixtures/parity): an
MPNetForSequenceClassification with 3 labels (hidden 32, 2 layers, 4 heads, 32 relative-position
buckets) and an uncased WordPiece MPNet tokenizer with <s>/</s> specials, as all-mpnet-base-v2 has.
The inputs are long enough (up to 60 tokens) that the relative-position buckets beyond the exact
range, and their logarithmic widths, are all used. reference.safetensors holds input_ids /
attention_mask / token_type_ids (zeros: MPNet has no token types), every hidden state and attention
map, logits, labels, the loss and the gradients of a few parameters, the relative-position bias
table among them.
"""

import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import MPNetConfig, MPNetForSequenceClassification, MPNetTokenizerFast

from make_fixtures import TEXTS, TINY, WORDS, SUBWORDS, clear_tokenizer_json, perturb

OUT = sys.argv[1] if len(sys.argv) > 1 else "modeling/tests/fixtures/parity"
NAME = "mpnet_cls"
LABELS = [0, 2, 1, 2, 0]
# TEXTS plus one long pair, so distances past the exact buckets (8) and past 32 occur.
LONG = (
    "The film was a wonderful story of a small dog and a big city and the people in it, "
    "and the actors were great all the time.",
    "I did not like it at all: it was long and the story was bad, so I went home before the end.",
)


def make_tokenizer(folder):
    """all-mpnet-base-v2's tokenizer layout on a small vocabulary: uncased WordPiece with `[UNK]`,
    `<s>` / `</s>` / `<pad>` / `<mask>` specials and RoBERTa-style pair templates."""
    import string
    from tokenizers import models, normalizers, pre_tokenizers, processors, decoders

    specials = ["<s>", "<pad>", "</s>", "<unk>", "[UNK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    cont = ["##" + c for c in string.ascii_lowercase + string.digits]
    toks = []
    for t in specials + chars + cont + [w.lower() for w in WORDS] + SUBWORDS + ["<mask>"]:
        if t not in toks:
            toks.append(t)
    vocab = {t: i for i, t in enumerate(toks)}
    raw = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##"))
    raw.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=True)
    raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    raw.post_processor = processors.RobertaProcessing(("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]))
    raw.decoder = decoders.WordPiece(prefix="##")
    tok = MPNetTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                             cls_token="<s>", unk_token="[UNK]", pad_token="<pad>", mask_token="<mask>",
                             do_lower_case=True)
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(toks) + "\n")
    return tok


def main():
    transformers.logging.disable_progress_bar()
    torch.manual_seed(0)
    folder = os.path.join(OUT, NAME)
    os.makedirs(folder, exist_ok=True)
    tok = make_tokenizer(folder)
    cfg = MPNetConfig(vocab_size=len(tok), max_position_embeddings=128 + 2, layer_norm_eps=1e-5,
                      pad_token_id=1, bos_token_id=0, eos_token_id=2, relative_attention_num_buckets=32,
                      num_labels=3, **TINY)
    cfg._attn_implementation = "eager"
    model = MPNetForSequenceClassification(cfg)
    perturb(model)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    clear_tokenizer_json(folder)

    texts = TEXTS + [LONG]
    feats = [tok(a, b) for a, b in texts]
    enc = tok.pad(feats, padding=True, return_tensors="pt")
    ref = {
        "input_ids": enc["input_ids"].long(),
        "attention_mask": enc["attention_mask"].long(),
        "token_type_ids": torch.zeros_like(enc["input_ids"]).long(),
    }
    model.eval()
    lab = torch.tensor(LABELS, dtype=torch.long)
    model.zero_grad()
    out = model(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"], labels=lab,
                output_hidden_states=True, output_attentions=True)
    for i, h in enumerate(out.hidden_states):
        ref[f"hidden_states.{i}"] = h
    for i, a in enumerate(out.attentions):
        ref[f"attentions.{i}"] = a
    ref["logits"] = out.logits
    ref["labels"] = lab
    ref["loss"] = out.loss
    out.loss.backward()
    params = dict(model.named_parameters())
    for g in ["mpnet.embeddings.word_embeddings.weight", "mpnet.encoder.layer.0.attention.attn.q.weight",
              "mpnet.encoder.layer.1.output.LayerNorm.weight", "mpnet.encoder.relative_attention_bias.weight",
              "classifier.out_proj.weight"]:
        ref[f"grad.{g}"] = params[g].grad
    ref = {k: v.detach().clone().contiguous() for k, v in ref.items()}
    save_file(ref, os.path.join(folder, "reference.safetensors"))
    with open(os.path.join(folder, "inputs.json"), "w", encoding="utf-8") as f:
        json.dump({"texts": [list(t) for t in texts], "labels": LABELS}, f, ensure_ascii=False, indent=1)

    # The folder as the Rust side reads it: the raw tokenizer gives the same ids.
    raw = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    assert raw.padding is None and raw.truncation is None
    for row, (a, b) in enumerate(texts):
        e = raw.encode(a, b) if b is not None else raw.encode(a)
        n = len(e.ids)
        assert e.ids == ref["input_ids"][row, :n].tolist(), row
    print(f"== {NAME}: {ref['input_ids'].shape[1]} tokens at most")
    print(" ".join(tok.convert_ids_to_tokens(enc["input_ids"][4].tolist())))
    for fn in sorted(os.listdir(folder)):
        print(f"  {os.path.getsize(os.path.join(folder, fn)):9d}  {fn}")


if __name__ == "__main__":
    main()
