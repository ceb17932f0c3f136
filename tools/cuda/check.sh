#!/usr/bin/env bash
# tools/cuda/check.sh: compile-checks (and lints) the GPU features on a machine without CUDA, with
# tools/cuda/fake-nvcc standing in for nvcc: `cuda` (candle's CUDA backend) with `nccl` (gradients summed
# by NCCL), alone and with `mpi` (several ranks; needs libopenmpi-dev and libclang-dev). Its own target
# folder keeps the empty kernels away from real builds (candle-kernels' build script does not re-run
# when PATH changes).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="$(mktemp -d)"
trap 'rm -rf "$BIN"' EXIT
ln -s "$PWD/tools/cuda/fake-nvcc" "$BIN/nvcc"
export PATH="$BIN:$PATH" NVCC="$BIN/nvcc"
export CUDA_COMPUTE_CAP=90 CUDARC_CUDA_VERSION=13000
export CARGO_TARGET_DIR="${CUDA_CHECK_TARGET:-target/cuda-check}"
cargo clippy --workspace --features distill/nccl "$@" -- -D warnings
cargo clippy --workspace --features distill/nccl,distill/mpi "$@" -- -D warnings
echo "CUDA CHECK OK (cuda and nccl, alone and with mpi, compiled against candle's CUDA backend; kernels not built)"
