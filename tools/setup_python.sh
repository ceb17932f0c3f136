#!/usr/bin/env bash
# setup_python.sh -- create the Python venv used by tools/parity/*.py.
#
# Creates tools/.venv (git-ignored) and installs the pinned packages from
# tools/requirements.txt (torch, transformers, tokenizers, safetensors, numpy,
# scipy, scikit-learn) from PyPI.  Only PyPI is reachable, so torch is the
# regular PyPI wheel, which pulls its nvidia-* CUDA runtime wheels as well
# (a CPU-only wheel is only served by the PyTorch index; the CUDA build runs
# fine on CPU).  Idempotent: does nothing when the venv already satisfies the
# requirements.
# Run from the repository root: bash tools/setup_python.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
REQ="$HERE/requirements.txt"
PY="${PYTHON:-python3}"

if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" - "$REQ" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
ok = True
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    try:
        ok &= version(name) == want
    except PackageNotFoundError:
        ok = False
sys.exit(0 if ok else 1)
PYEOF
then
    echo "venv $VENV is up to date"
    exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --no-cache-dir -r "$REQ"
"$VENV/bin/python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
