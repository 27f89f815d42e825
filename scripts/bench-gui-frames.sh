#!/usr/bin/env bash
# Frame times of the real window while a run trains: the app under Xvfb (Mesa's software
# renderer), a preset started at launch, the window redrawing as fast as it can; prints the
# JSON summary the app writes at exit (median and 99th percentile of egui's CPU time per
# frame and of the wall time between frames, counted only while the run trains).
#
#   bash scripts/bench-gui-frames.sh                      # LoRA on the built-in model, 60 s
#   PRESET=presets/full.toml DURATION=30 bash scripts/bench-gui-frames.sh
#
# Env: PRESET (presets/lora.toml), DURATION (seconds, 60), THREADS (training threads, 2).
# Needs: xvfb, mesa-vulkan-drivers (Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${PRESET:-presets/lora.toml} DURATION=${DURATION:-60} THREADS=${THREADS:-2}
cargo build -q --bin peft-workbench
work=$(mktemp -d)
display=:$((90 + RANDOM % 9))
Xvfb "$display" -screen 0 1280x800x24 >/dev/null 2>&1 &
xvfb=$!
trap 'kill $xvfb 2>/dev/null; rm -rf "$work"' EXIT
sleep 1
# A fresh settings folder: no window state or language carried over from elsewhere.
DISPLAY=$display XDG_DATA_HOME="$work/data" RAYON_NUM_THREADS=$THREADS CANDLE_NUM_THREADS=$THREADS \
  target/debug/peft-workbench gui --runs-dir "$work/runs" --start "$PRESET" \
  --frame-log "$work/frames.json" --exit-after "$DURATION" 2>"$work/gui.log" || {
  cat "$work/gui.log" >&2
  exit 1
}
cat "$work/frames.json"
