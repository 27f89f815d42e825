#!/usr/bin/env bash
# Writes the pretraining corpus of the built-in model: the King James Bible (public
# domain) from Debian's `bible-kjv` package, one verse per line, verse numbers removed.
# Usage: scripts/fetch-corpus.sh [OUT_FILE]   (default: target/corpus/kjv.txt)
set -euo pipefail
out=${1:-target/corpus/kjv.txt}
if ! command -v bible >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bible-kjv >/dev/null
fi
mkdir -p "$(dirname "$out")"
bible -l0 'gen1:1-rev22:21' | sed -E 's/^ +[0-9]+ //' | grep -v '^[[:space:]]*$' > "$out.tmp"
mv "$out.tmp" "$out"
echo "$out: $(wc -l < "$out") lines, $(wc -c < "$out") bytes"
