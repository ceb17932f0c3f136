#!/usr/bin/env python3
"""make_corpus.py -- the evidence corpus for masked-LM pre-training, from GLUE's training files.

    python3 tools/make_corpus.py OUT [--glue ../shared/glue] [--doc-sentences 100]
                                     [--vocab ../shared/vocab/bert-base-cased-vocab.txt]

Collects the sentences of every task's train.tsv under --glue (single sentences and both sides of
pairs), drops exact duplicates (keeping the first occurrence) and writes them one per line to OUT, in
the layout the corpus cache reads: a blank line between documents. Each task's sentences are cut into
documents of --doc-sentences consecutive sentences, so that the held-out split (1% of the documents)
samples every task instead of holding out one whole task. OUT should lie outside the repository
(e.g. runs/corpus/glue.txt; runs/ is git-ignored); it is written to OUT.tmp and renamed.

Prints, per task and in total, the sentence count and the token count: bert-base-cased WordPiece
tokens when --vocab exists (a stdlib re-implementation of BertTokenizer's basic + WordPiece steps,
cased; the cache build reports the exact count), else whitespace words.
Stdlib only.
"""

import argparse
import os
import sys
import unicodedata

# Columns holding text, by header name (GLUE's layouts; CoLA has no header: column 3).
TEXT_COLUMNS = ["sentence", "sentence1", "sentence2", "question", "question1", "question2",
                "#1 String", "#2 String"]
NO_HEADER = {"CoLA": [3]}


def task_sentences(path, task):
    """The text fields of a GLUE train.tsv, row by row (tabs split; no quoting, as GLUE's files)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if task in NO_HEADER:
        cols, rows = NO_HEADER[task], lines
    else:
        header = lines[0].rstrip("\r").split("\t")
        cols = [header.index(c) for c in TEXT_COLUMNS if c in header]
        rows = lines[1:]
        if not cols:
            raise SystemExit(f"{path}: no text column among {TEXT_COLUMNS}")
    for row in rows:
        fields = row.rstrip("\r").split("\t")
        for c in cols:
            if c < len(fields):
                text = " ".join(fields[c].split())  # one line, single spaces
                if text:
                    yield text


class WordPiece:
    """BertTokenizer's cased tokenization (basic tokenizer, then greedy longest-match WordPiece)."""

    def __init__(self, vocab_path):
        with open(vocab_path, encoding="utf-8") as f:
            self.vocab = {line.rstrip("\n") for line in f}

    @staticmethod
    def _is_punct(ch):
        cp = ord(ch)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(ch).startswith("P")

    @staticmethod
    def _is_cjk(cp):
        return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
                or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
                or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)

    def words(self, text):
        out, cur = [], []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
                continue
            if ch.isspace():
                if cur:
                    out.append("".join(cur))
                    cur = []
            elif self._is_punct(ch) or self._is_cjk(cp):
                if cur:
                    out.append("".join(cur))
                    cur = []
                out.append(ch)
            else:
                cur.append(ch)
        if cur:
            out.append("".join(cur))
        return out

    def count(self, text):
        n = 0
        for w in self.words(text):
            if len(w) > 100:
                n += 1  # [UNK]
                continue
            start, pieces = 0, 0
            while start < len(w):
                end = len(w)
                while end > start:
                    sub = w[start:end] if start == 0 else "##" + w[start:end]
                    if sub in self.vocab:
                        break
                    end -= 1
                if end == start:
                    pieces = 1  # the whole word is [UNK]
                    break
                pieces += 1
                start = end
            n += pieces
        return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output text file, outside the repository (e.g. runs/corpus/glue.txt)")
    ap.add_argument("--glue", default=os.environ.get("GLUE_DIR", "../shared/glue"))
    ap.add_argument("--doc-sentences", type=int, default=100,
                    help="sentences per document (documents are what the held-out split samples)")
    ap.add_argument("--vocab", default=os.environ.get("VOCAB", "../shared/vocab/bert-base-cased-vocab.txt"))
    args = ap.parse_args()
    if args.doc_sentences < 1:
        raise SystemExit("--doc-sentences must be at least 1")
    if not os.path.isdir(args.glue):
        raise SystemExit(f"{args.glue}: GLUE folder not found (set --glue or GLUE_DIR)")
    out = os.path.abspath(args.out)
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    if out.startswith(repo + os.sep) and not out.startswith(os.path.join(repo, "runs") + os.sep):
        raise SystemExit(f"{args.out}: inside the repository; write it under runs/ or elsewhere")

    counter = WordPiece(args.vocab) if os.path.isfile(args.vocab) else None
    unit = "WordPiece tokens" if counter else "words (no --vocab)"
    count = counter.count if counter else (lambda t: len(t.split()))

    seen = set()
    tasks = sorted(t for t in os.listdir(args.glue) if os.path.isfile(os.path.join(args.glue, t, "train.tsv")))
    if not tasks:
        raise SystemExit(f"{args.glue}: no <TASK>/train.tsv found")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    tmp = out + ".tmp"
    total_s = total_t = docs = 0
    print(f"{'task':<8} {'sentences':>10} {'duplicates':>10} {unit:>18}")
    with open(tmp, "w", encoding="utf-8") as f:
        first_doc = True
        for task in tasks:
            kept, dups, tokens = [], 0, 0
            for s in task_sentences(os.path.join(args.glue, task, "train.tsv"), task):
                if s in seen:
                    dups += 1
                    continue
                seen.add(s)
                kept.append(s)
                tokens += count(s)
            for i in range(0, len(kept), args.doc_sentences):
                if not first_doc:
                    f.write("\n")
                first_doc = False
                f.write("\n".join(kept[i:i + args.doc_sentences]) + "\n")
                docs += 1
            total_s += len(kept)
            total_t += tokens
            print(f"{task:<8} {len(kept):>10,} {dups:>10,} {tokens:>18,}")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    print(f"{'total':<8} {total_s:>10,} {'':>10} {total_t:>18,}")
    print(f"wrote {args.out}: {total_s:,} sentences in {docs:,} documents, {total_t:,} {unit}")


if __name__ == "__main__":
    sys.exit(main())
