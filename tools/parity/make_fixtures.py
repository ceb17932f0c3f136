"""make_fixtures.py -- tiny random HF checkpoints + reference outputs for Rust parity tests.

Run from the repository root (after `bash tools/setup_python.sh`):

    tools/.venv/bin/python tools/parity/make_fixtures.py [OUT_DIR]

Writes OUT_DIR/<name>/ (default OUT_DIR: modeling/tests/fixtures/parity) for
  bert_cls     BertForSequenceClassification, 3 labels, cased WordPiece tokenizer
  bert_bare    BertModel (bare keys, with pooler), same tokenizer
  roberta_cls  RobertaForSequenceClassification, 2 labels, byte-level BPE tokenizer
  roberta_reg  RobertaForSequenceClassification, 1 label (regression), same tokenizer
Each folder: config.json, model.safetensors, tokenizer.json (+ vocab files),
inputs.json ({"texts": [[a, b|null], ...], "labels": [...]}) and
reference.safetensors with input_ids/attention_mask/token_type_ids (int64 [b,s]),
hidden_states.{0..L} [b,s,h], attentions.{0..L-1} [b,heads,s,s], logits [b,n]
(heads) or last_hidden_state/pooler_output (bare), and for heads labels,
loss (shape [], a 0-d scalar) and grad.<state_dict name> for a few parameters.
Everything is deterministic (torch.manual_seed(0)), eval mode, eager attention.
"""

import json
import os
import string
import sys

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import ByteLevelBPETokenizer, Tokenizer
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    BertTokenizer,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaTokenizer,
)

OUT = sys.argv[1] if len(sys.argv) > 1 else "modeling/tests/fixtures/parity"

# Two singles (short; longer with capitals, punctuation, digits and a word with
# a character outside the BERT vocab -> [UNK]) and two pairs.
TEXTS = [
    ("Hello world!", None),
    ("The quick brown fox, surprisingly, jumped over 12 lazy dogs in Zürich yesterday.", None),
    ("How are you doing today?", "I am fine, thanks for asking."),
    ("Is the movie good?", "It was an absolutely wonderful film, and the actors were great!"),
]
CLS_LABELS = {3: [0, 2, 1, 2], 2: [1, 0, 1, 0]}
REG_LABELS = [0.5, -1.25, 2.0, 0.75]

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    hidden_act="gelu",
    initializer_range=0.02,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
)

WORDS = """the The a an and or of to in on at for with is are was were be been it It
I you he she we they this that not no yes how How what What why who Is are do does doing
did have has had am can will would should good bad great movie film actor actors story
quick brown fox dog dogs lazy over under jump jumped run hello Hello world World day today
yesterday thank thanks ask asking fine well very really so too all some any one two three
wonder wonderful absolute absolutely surpris sur new old big small long short time year
people man woman child house city country love like make made see saw go went come came
""".split()
SUBWORDS = """##s ##es ##ed ##ing ##ly ##er ##est ##ful ##ness ##ion ##tion ##al ##ive
##ous ##able ##ment ##ity ##ish ##ize ##ise ##ic ##y ##en ##ers ##ings ##ingly ##pr
##is ##ri ##at ##or ##an ##in ##on ##re ##te ##le ##st ##ng ##nd ##th ##he ##ll ##ay
""".split()


transformers.logging.disable_progress_bar()


def bert_vocab():
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [c for c in string.ascii_letters + string.digits + string.punctuation]
    cont = ["##" + c for c in string.ascii_letters + string.digits]
    toks = []
    for t in specials + chars + cont + WORDS + SUBWORDS:
        if t not in toks:
            toks.append(t)
    return toks


def make_bert_tokenizer():
    toks = bert_vocab()
    return BertTokenizer(vocab={t: i for i, t in enumerate(toks)}, do_lower_case=False)


def make_roberta_tokenizer():
    corpus = [a for a, _ in TEXTS] + [b for _, b in TEXTS if b] + [
        "The film was great and the story was wonderful.",
        "I did not like the actors in this movie at all.",
        "A small dog and a big cat went to the city today.",
        "What a really bad, long and boring year it has been!",
    ] * 4
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        corpus,
        vocab_size=400,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return RobertaTokenizer(vocab=model["vocab"], merges=merges)


def perturb(model):
    """Add N(0, 0.1) to every parameter so wrong biases / LayerNorm params show up."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)


def clear_tokenizer_json(folder):
    p = os.path.join(folder, "tokenizer.json")
    with open(p, encoding="utf-8") as f:
        tok = json.load(f)
    tok["padding"] = None
    tok["truncation"] = None
    with open(p, "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)


def self_check(folder, cls, ref):
    """Reload the folder as the Rust side would see it and compare with the references."""
    raw = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    assert raw.padding is None and raw.truncation is None
    for row, (a, b) in enumerate(TEXTS):
        e = raw.encode(a, b) if b is not None else raw.encode(a)
        n = len(e.ids)
        assert e.ids == ref["input_ids"][row, :n].tolist(), (folder, row)
        assert e.type_ids == ref["token_type_ids"][row, :n].tolist(), (folder, row)
        assert ref["attention_mask"][row].sum().item() == n
    m = cls.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        out = m(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"],
                token_type_ids=ref["token_type_ids"], output_hidden_states=True)
    last = f"hidden_states.{m.config.num_hidden_layers}"
    assert torch.equal(out.hidden_states[-1], ref[last]), folder


def build(name, model, tok, labels, grad_names):
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    tok.backend_tokenizer.model.save(folder)  # vocab.txt (WordPiece) or vocab.json + merges.txt (BPE)
    clear_tokenizer_json(folder)

    # Encode one by one (a batch may not mix singles and pairs), then pad to the longest.
    feats = [tok(a, b, return_token_type_ids=True) for a, b in TEXTS]
    enc = tok.pad(feats, padding=True, return_tensors="pt")
    ref = {
        "input_ids": enc["input_ids"].long(),
        "attention_mask": enc["attention_mask"].long(),
        "token_type_ids": enc["token_type_ids"].long(),
    }

    model.eval()
    kwargs = dict(ref, output_hidden_states=True, output_attentions=True)
    if labels is not None:
        lab = torch.tensor(labels, dtype=torch.float32 if model.config.num_labels == 1 else torch.long)
        ref["labels"] = lab
        kwargs["labels"] = lab
    model.zero_grad()
    out = model(**kwargs)
    for i, h in enumerate(out.hidden_states):
        ref[f"hidden_states.{i}"] = h
    for i, at in enumerate(out.attentions):
        ref[f"attentions.{i}"] = at
    if labels is not None:
        ref["logits"] = out.logits
        ref["loss"] = out.loss
        out.loss.backward()
        params = dict(model.named_parameters())
        for g in grad_names:
            ref[f"grad.{g}"] = params[g].grad
    else:
        ref["last_hidden_state"] = out.last_hidden_state
        if out.pooler_output is not None:
            ref["pooler_output"] = out.pooler_output
    ref = {k: v.detach().clone().contiguous() for k, v in ref.items()}
    save_file(ref, os.path.join(folder, "reference.safetensors"))

    with open(os.path.join(folder, "inputs.json"), "w", encoding="utf-8") as f:
        json.dump({"texts": [list(t) for t in TEXTS], "labels": labels}, f, ensure_ascii=False, indent=1)

    self_check(folder, model.__class__, ref)

    print(f"== {name}  ({model.__class__.__name__})")
    for t in tok.convert_ids_to_tokens(enc["input_ids"][1].tolist()):
        print(t, end=" ")
    print()
    total = 0
    for fn in sorted(os.listdir(folder)):
        size = os.path.getsize(os.path.join(folder, fn))
        total += size
        print(f"  {size:9d}  {fn}")
    print(f"  {total:9d}  total")
    for fn in ("model.safetensors", "reference.safetensors"):
        with safe_open(os.path.join(folder, fn), "pt") as f:
            keys = list(f.keys())
            print(f"  {fn} keys ({len(keys)}):")
            for k in keys:
                t = f.get_slice(k)
                print(f"    {k} {t.get_dtype()} {t.get_shape()}")
    return total


def main():
    torch.manual_seed(0)
    total = 0
    btok = make_bert_tokenizer()
    rtok = make_roberta_tokenizer()

    def bert_cfg(**kw):
        return BertConfig(vocab_size=len(btok), max_position_embeddings=64, type_vocab_size=2,
                          layer_norm_eps=1e-12, pad_token_id=0, **TINY, **kw)

    def roberta_cfg(**kw):
        return RobertaConfig(vocab_size=len(rtok), max_position_embeddings=64 + 2, type_vocab_size=1,
                             layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                             **TINY, **kw)

    def make(cls, cfg):
        cfg._attn_implementation = "eager"
        m = cls(cfg)
        perturb(m)
        return m

    grads = lambda base, head: [  # noqa: E731
        f"{base}.embeddings.word_embeddings.weight",
        f"{base}.encoder.layer.0.attention.self.query.weight",
        f"{base}.encoder.layer.1.output.LayerNorm.weight",
        head,
    ]

    m = make(BertForSequenceClassification, bert_cfg(num_labels=3))
    total += build("bert_cls", m, btok, CLS_LABELS[3], grads("bert", "classifier.weight"))
    m = make(BertModel, bert_cfg())
    total += build("bert_bare", m, btok, None, [])
    m = make(RobertaForSequenceClassification, roberta_cfg(num_labels=2))
    total += build("roberta_cls", m, rtok, CLS_LABELS[2], grads("roberta", "classifier.out_proj.weight"))
    m = make(RobertaForSequenceClassification, roberta_cfg(num_labels=1, problem_type="regression"))
    total += build("roberta_reg", m, rtok, REG_LABELS, grads("roberta", "classifier.out_proj.weight"))
    print(f"all fixtures: {total} bytes")


if __name__ == "__main__":
    main()
