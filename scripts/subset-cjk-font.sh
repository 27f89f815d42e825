#!/usr/bin/env bash
# Rebuilds assets/fonts/DroidSansFallback-subset.ttf, the CJK font the window bundles for
# its 简体中文 UI: Droid Sans Fallback (Apache-2.0, Debian's fonts-droid-fallback) cut to the
# characters the UI shows (every non-ASCII character under src/app/, the translation table
# and the Learn pages included) plus the 3 755 hanzi of
# GB 2312 level 1, so ordinary Chinese prompts and answers render as well.
# Needs: the font (apt install fonts-droid-fallback) and fonttools (a venv is made for it).
set -euo pipefail
cd "$(dirname "$0")/.."
src=${CJK_FONT:-/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf}
venv=${FONT_VENV:-$HOME/.cache/peft-workbench/fontvenv}
[ -x "$venv/bin/pyftsubset" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q fonttools; }
chars=$(mktemp)
python3 - "$chars" <<'PY'
import pathlib, sys
text = set()
for p in pathlib.Path("src/app").rglob("*.rs"):
    text |= {c for c in p.read_text(encoding="utf-8") if ord(c) > 127}
# GB 2312 level 1: rows 0xB0-0xD7, columns 0xA1-0xFE (row 0xD7 ends at 0xF9).
for row in range(0xB0, 0xD8):
    for col in range(0xA1, 0xFF if row < 0xD7 else 0xFA):
        text.add(bytes([row, col]).decode("gb2312"))
# CJK punctuation and full-width forms.
text |= {chr(c) for c in range(0x3000, 0x3040)} | {chr(c) for c in range(0xFF01, 0xFF5F)}
pathlib.Path(sys.argv[1]).write_text("".join(sorted(text)), encoding="utf-8")
PY
mkdir -p assets/fonts
"$venv/bin/pyftsubset" "$src" --text-file="$chars" --output-file=assets/fonts/DroidSansFallback-subset.ttf \
  --layout-features='*' --no-hinting --desubroutinize
rm -f "$chars"
ls -l assets/fonts/DroidSansFallback-subset.ttf
