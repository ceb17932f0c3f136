#!/usr/bin/env bash
# tools/cuda/build.sh: a release `distill` with the `cuda` feature, built on a machine without a GPU, to
# copy to an NVIDIA H100/H200 (driver 580+, CUDA 13). The recipe of ../shared/notes/cuda-build.md,
# variant B: nvcc 13.0 from PyPI (13.5 writes PTX a 580 driver cannot load), kernels for sm_90, and
# candle-core patched (through `cargo --config`, the workspace is untouched) so that cudarc loads
# libcuda/libcublas/libcurand at run time instead of linking them: the binary needs no CUDA library to
# link, only the GPU machine's at run time. cudarc panics when libcuda is absent; `device: auto` catches
# that and falls back to the CPU.
#   bash tools/cuda/build.sh            # -> target/cuda/release/distill  (about 16 min cold on 2 cores)
# On the GPU machine:  NV=$(python3 -c 'import nvidia,os; print(os.path.join(list(nvidia.__path__)[0],"cu13","lib"))')
#                      LD_LIBRARY_PATH=$NV:/usr/local/nvidia/lib64 ./distill bench ...
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${CUDA_VENV:-tools/.cuda-venv}"
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85
N="$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
[[ -x "$N/bin/nvcc" ]] || { echo "no nvcc under $N/bin" >&2; exit 1; }

# candle-core 0.11.1 with cudarc's `dynamic-loading` in place of `dynamic-linking`.
SRC="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/candle-core-0.11.1 2>/dev/null | head -1)"
if [[ -z "$SRC" ]]; then
    cargo fetch >/dev/null
    SRC="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/candle-core-0.11.1 | head -1)"
fi
PATCH="$PWD/target/cuda-patch/candle-core"
rm -rf "$PATCH" && mkdir -p "$(dirname "$PATCH")" && cp -r "$SRC" "$PATCH"
grep -q '"dynamic-linking"' "$PATCH/Cargo.toml" || { echo "candle-core's cudarc features changed" >&2; exit 1; }
sed -i 's/"dynamic-linking"/"dynamic-loading"/' "$PATCH/Cargo.toml"

# cudart is linked statically (candle-kernels' MoE/GGUF library needs it).
LIB="$PWD/target/cuda-lib"
mkdir -p "$LIB" && ln -sf "$N/lib/libcudart_static.a" "$LIB/libcudart.a"

export PATH="$N/bin:$PATH" NVCC="$N/bin/nvcc" CUDA_HOME="$N" CUDA_COMPUTE_CAP=90 CUDARC_CUDA_VERSION=13000
export LIBRARY_PATH="$LIB${LIBRARY_PATH:+:$LIBRARY_PATH}" CARGO_TARGET_DIR="${CUDA_TARGET:-target/cuda}"
nvcc --version | tail -1
cargo build --release -p distill --features cuda \
    --config "patch.crates-io.candle-core.path=\"$PATCH\""
echo "built $CARGO_TARGET_DIR/release/distill (CUDA, sm_90); copy it to the GPU machine"
