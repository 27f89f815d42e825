#!/usr/bin/env bash
# Prepares scripts/gpu-check.sh for a GPU machine that has no Rust toolchain and no network
# (the lent H200 of this workplace: nvcc and PyTorch's NVIDIA wheels are there, nothing can be
# fetched). Builds the CUDA binary here without the window (the GUI is not needed there),
# strips it and compresses it into .device/ (git-ignored), about 10 MB, so that it travels
# with the working tree. Then, on the GPU machine, from the repository root:
#
#   xz -dc .device/peft-workbench.xz > /tmp/peft-workbench && chmod +x /tmp/peft-workbench \
#     && BIN=/tmp/peft-workbench bash scripts/gpu-check.sh
#
# (the device tool's run: carry [".device"]). The binary links cuBLAS/cuRAND/the runtime of
# CUDA 13 dynamically; gpu-check.sh finds them in the machine's NVIDIA Python wheels.
# SmolLM2's GGUF (98 MB) is over one carry's 64 MiB: without models/ there, gpu-check's
# training checks run on the built-in model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-cuda.sh --release --no-default-features --bin peft-workbench
mkdir -p .device
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
strip -o .device/peft-workbench target/cuda/release/peft-workbench
xz -9 -T0 -f .device/peft-workbench

ls -la .device/peft-workbench.xz
