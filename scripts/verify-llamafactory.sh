#!/usr/bin/env bash
# Runs `peft-workbench recipe --to llamafactory` in LLaMA-Factory itself and brings the
# runs back: for LoRA, DoRA, Freeze and full fine-tuning on the built-in model (CPU, a few
# steps), `llamafactory-cli train train.yaml` must train exactly as many values as our run
# of the same preset (so the YAML's method keys mean what we mean), and for the adapters
# `import-run` must bring back its steps (same losses as its trainer_log.jsonl) with an
# adapter under which `logits --adapter` gives PEFT's logits (<= 1e-4).
#
# LLaMA-Factory pins older peft/transformers/accelerate than the workbench's venv, so it
# gets its own venv ($LLAMAFACTORY_VENV), layered on scripts/verify-peft.sh's ($PEFT_VENV)
# for torch: built on first use from scripts/llamafactory-requirements.txt (about 1 min).
set -euo pipefail
cd "$(dirname "$0")/.."
base="${PEFT_VENV:-$HOME/.cache/peft-workbench/venv}"
venv="${LLAMAFACTORY_VENV:-$HOME/.cache/peft-workbench/llamafactory-venv}"
source scripts/lib/layered-venv.sh
layered_venv "$base" "$venv" scripts/llamafactory-requirements.txt
cargo build -q --bin peft-workbench
bin=$PWD/target/debug/peft-workbench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HF_HUB_OFFLINE=1 PYTHONWARNINGS=ignore
for m in lora dora freeze full; do
  sets=(--set steps=6 --set eval_every=3 --set eval_examples=8)
  "$bin" recipe "presets/$m.toml" "${sets[@]}" --to llamafactory --out "$work/$m" 2>/dev/null
  (cd "$work/$m" && "$venv/bin/llamafactory-cli" train train.yaml > lf.log 2>&1) \
    || { echo "LLaMA-Factory failed on the $m recipe:"; grep -v 'it/s\]' "$work/$m/lf.log" | tail -20; exit 1; }
  theirs=$(sed -n 's/.*trainable params: \([0-9,]*\) .*/\1/p' "$work/$m/lf.log" | head -1 | tr -d ,)
  "$bin" train "presets/$m.toml" "${sets[@]}" --set steps=1 --out "$work/$m-ours" -q >/dev/null
  ours=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["trainable_params"])' "$work/$m-ours/summary.json")
  echo "$m: LLaMA-Factory trains $theirs values, the workbench $ours"
  [ "$theirs" = "$ours" ] || { echo "$m: the LLaMA-Factory recipe trains other tensors than ours"; exit 1; }
  case "$m" in lora|dora) ;; *) continue ;; esac
  "$bin" import-run "$work/$m/output" --out "$work/$m-imported" 2>/dev/null
  python3 - "$work/$m/output/trainer_log.jsonl" "$work/$m-imported" <<'PY'
import json, pathlib, sys
log = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
theirs = {e["current_steps"]: e["loss"] for e in log if e.get("loss") is not None}
run = pathlib.Path(sys.argv[2])
lines = [json.loads(l) for l in open(run / "metrics.jsonl")]
ours = {e["step"]: e["loss"] for e in lines if e["type"] == "step"}
tokens = [e["tokens_seen"] for e in lines if e["type"] == "step"]
if ours != theirs:
    sys.exit(f"the imported run's losses {ours} are not LLaMA-Factory's {theirs}")
if None in tokens:
    sys.exit("the imported run lost LLaMA-Factory's token counts")
print(f"  imported {len(ours)} steps ({tokens[-1]:.0f} tokens) and its adapter from LLaMA-Factory")
PY
  # The adapter LLaMA-Factory's PEFT saved, read here, gives the workbench venv's PEFT logits.
  "$base/bin/python" tests/reference/recipe_check.py logits "$bin" "$work/$m-imported/adapter"
done
