#!/usr/bin/env bash
# Builds peft-workbench with `--features cuda` on a machine without a CUDA toolkit.
#
# nvcc, the CUDA headers and the libraries candle links (cuBLAS, cuRAND, NVRTC, the
# runtime) come from NVIDIA's PyPI wheels, installed into a venv of their own. CUDA 13.0 is
# pinned: it is the oldest 13.x (any driver that runs CUDA 13 loads its PTX) and cudarc 0.19
# knows 13.0–13.4 only, so the newest wheels (13.5) would not build.
#
# candle links the driver library (libcuda) at build time. On a machine with an NVIDIA
# driver its libcuda.so.1 is used; elsewhere (CI, a laptop without a GPU) a stub with the
# same soname is generated from the driver functions cudarc declares: it is only for the
# linker, the real driver is what loads at run time.
#
# Usage: bash scripts/build-cuda.sh [extra cargo args]   e.g.  --release --bin peft-workbench
#   env: CUDA_COMPUTE_CAP  GPU architecture to compile kernels for (default: the GPU's,
#                          from nvidia-smi; 90 (Hopper: H100/H200) without one)
#        CUDA_VENV         where the wheels go (default ~/.cache/peft-workbench/cuda-13.0)
#        CARGO_CMD         cargo subcommand (default build)
# Output: target/cuda/<profile>/peft-workbench (a target folder of its own: the rpath and
# features differ from the CPU build, sharing one would rebuild both every time).
# Prints the environment the build used last, for running tests by hand: source
# target/cuda/env.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${CUDA_VENV:-$HOME/.cache/peft-workbench/cuda-13.0}
WHEELS=(
  nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
  nvidia-cuda-runtime==13.0.88 nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-cccl==13.0.85
  nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35
)

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -m pip show -q nvidia-cuda-nvcc nvidia-cublas nvidia-curand >/dev/null 2>&1; then
  echo "installing the CUDA 13.0 toolkit wheels into $VENV (about 1.2 GB)"
  "$VENV/bin/python" -m pip install -q "${WHEELS[@]}"
fi
CU=$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')
[ -x "$CU/bin/nvcc" ] || { echo "nvcc not found under $CU" >&2; exit 1; }

# The wheels carry versioned libraries only (libcublas.so.13); the linker wants the plain
# names. A folder of links, plus libcuda.
LINK=$VENV/link
mkdir -p "$LINK"
for lib in cublas cublasLt curand nvrtc cudart; do
  real=$(ls "$CU/lib/lib$lib.so."* 2>/dev/null | grep -v -e builtins -e '\.alt\.' | head -1)
  [ -n "$real" ] || { echo "lib$lib missing from the wheels under $CU/lib" >&2; exit 1; }
  ln -sfn "$real" "$LINK/lib$lib.so"
done
driver=$( (ldconfig -p 2>/dev/null || true) | awk '/libcuda\.so\.1 /{print $NF; exit}')
if [ -n "$driver" ]; then
  ln -sfn "$driver" "$LINK/libcuda.so"
  echo "linking against the driver's $driver"
else
  cudarc=$(cargo metadata --features cuda --format-version 1 2>/dev/null | "$VENV/bin/python" -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "cudarc":
        print(p["manifest_path"].rsplit("/", 1)[0]); break')
  [ -n "$cudarc" ] || { echo "cudarc is not among the dependencies (cargo metadata)" >&2; exit 1; }
  # Every driver function cudarc declares, as a function that does nothing.
  grep -ho '^ *fn cu[A-Za-z0-9_]*(' "$cudarc/src/driver/sys/mod.rs" | sed 's/ *fn \(.*\)(/\1/' | sort -u |
    awk '{print "void " $1 "(void) {}"}' > "$LINK/libcuda-stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$LINK/libcuda.so" "$LINK/libcuda-stub.c"
  echo "no NVIDIA driver here: linking against a stub libcuda ($(wc -l < "$LINK/libcuda-stub.c") functions)"
fi

if [ -z "${CUDA_COMPUTE_CAP:-}" ]; then
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .' || true)
  export CUDA_COMPUTE_CAP=${cap:-90}
fi
mkdir -p target/cuda
cat > target/cuda/env.sh <<EOF
export PATH="$CU/bin:\$PATH"
export CUDA_ROOT="$CU" CUDA_PATH="$CU" CUDA_TOOLKIT_ROOT_DIR="$CU"
export CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP
export CARGO_TARGET_DIR="$(pwd)/target/cuda"
export LIBRARY_PATH="$LINK\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$CU/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export RUSTFLAGS="-L native=$LINK -C link-arg=-Wl,-rpath,$CU/lib"
EOF
# shellcheck source=/dev/null
source target/cuda/env.sh
echo "nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), kernels for sm_$CUDA_COMPUTE_CAP"
cargo "${CARGO_CMD:-build}" --features cuda "$@"
