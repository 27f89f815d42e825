#!/usr/bin/env bash
# The window on months of runs: a generated runs folder of RUNS finished runs of STEPS steps
# each (one real finished LoRA run's config, summary and adapter, with a synthetic
# STEPS-step metrics.jsonl and an experiment per twelve runs), opened in the real window
# under Xvfb while a LoRA run trains. Prints the frame log (first_frame_s: launch until the
# first frame was on screen, past runs read; frame times while the run trains) and the
# process's peak resident memory.
#
#   bash scripts/bench-many-runs.sh                 # 1,000 runs x 3,000 steps, 20 s
#   RUNS=10000 bash scripts/bench-many-runs.sh
#
# Env: RUNS (1000), STEPS (3000), DURATION (seconds the window stays open, 20).
# Needs: xvfb, mesa-vulkan-drivers, GNU time (Debian: time).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-1000} STEPS=${STEPS:-3000} DURATION=${DURATION:-20}
cargo build -q --release --bin peft-workbench
exe=target/release/peft-workbench
work=$(mktemp -d)
display=:$((90 + RANDOM % 9))
Xvfb "$display" -screen 0 1280x800x24 >/dev/null 2>&1 &
xvfb=$!
trap 'kill $xvfb 2>/dev/null; rm -rf "$work"' EXIT
# One real run to copy.
"$exe" train presets/lora.toml --steps 4 --set eval_every=4 --set eval_examples=8 \
  --out "$work/seed" --quiet >/dev/null
python3 - "$work/seed" "$work/runs" "$RUNS" "$STEPS" <<'PY'
import json, math, pathlib, random, shutil, sys
seed, runs, n, steps = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
runs.mkdir()
config = (seed / "config.toml").read_text()
random.seed(0)
for i in range(n):
    d = runs / f"{1700000000 + i}-{i:05}-lora"
    d.mkdir()
    shutil.copy(seed / "summary.json", d)
    shutil.copytree(seed / "adapter", d / "adapter")
    # `experiment` is a top-level key: it goes before the first table.
    head, sep, tail = config.partition("\n[")
    (d / "config.toml").write_text(f'{head}\nexperiment = "bench {i // 12:04}"\n{sep.lstrip(chr(10))}{tail}')
    lines = []
    for s in range(1, steps + 1):
        loss = 2.0 + 5.0 * math.exp(-s / 300) + random.gauss(0, 0.1)
        lines.append(json.dumps({"type": "step", "step": s, "loss": loss, "lr": 1e-3,
                                 "tokens_per_second": 3000.0, "tokens_seen": 400 * s,
                                 "elapsed_s": 0.13 * s}))
        if s % 250 == 0 or s == 1:
            lines.append(json.dumps({"type": "eval", "step": s, "loss": loss, "metric": 0.6,
                                     "elapsed_s": 0.13 * s}))
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
PY
du -sh "$work/runs" | sed 's/^/runs folder: /'
DISPLAY=$display XDG_DATA_HOME="$work/data" /usr/bin/time -v "$exe" gui --runs-dir "$work/runs" \
  --start presets/lora.toml --frame-log "$work/frames.json" --exit-after "$DURATION" \
  2>"$work/gui.log" || {
  cat "$work/gui.log" >&2
  exit 1
}
cat "$work/frames.json"
grep -E "Maximum resident set size" "$work/gui.log"
