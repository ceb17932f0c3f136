#!/usr/bin/env bash
# setup_onnxruntime.sh -- find or fetch onnxruntime's shared library for `--runtime onnxruntime`, and print
# its path (the only line on stdout), for ORT_DYLIB_PATH:
#     export ORT_DYLIB_PATH=$(bash tools/setup_onnxruntime.sh)
# The library ships in the onnxruntime wheel on PyPI as onnxruntime/capi/libonnxruntime.so.<version>. The
# one in tools/.venv (tools/setup_python.sh) is used when it is there; otherwise the wheel alone (no
# dependencies) is installed into tools/.onnxruntime (git-ignored). Running it again downloads nothing.
# Run from the repository root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VERSION="$(grep -o '^onnxruntime==[0-9.]*' tools/requirements.txt | cut -d= -f3)"
find_lib() {
    ls "$@" 2>/dev/null | sort -V | tail -n 1
}
lib="$(find_lib tools/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.*)"
if [[ -z "$lib" ]]; then
    lib="$(find_lib tools/.onnxruntime/onnxruntime/capi/libonnxruntime.so.*)"
fi
if [[ -z "$lib" ]]; then
    echo "installing onnxruntime==$VERSION into tools/.onnxruntime ..." >&2
    "${PYTHON:-python3}" -m pip install --quiet --no-deps --no-cache-dir --target tools/.onnxruntime \
        "onnxruntime==$VERSION" >&2
    lib="$(find_lib tools/.onnxruntime/onnxruntime/capi/libonnxruntime.so.*)"
fi
if [[ -z "$lib" ]]; then
    echo "error: the onnxruntime==$VERSION wheel holds no onnxruntime/capi/libonnxruntime.so.*" >&2
    exit 1
fi
realpath "$lib"
