#!/usr/bin/env bash
# Checks `peft-workbench recipe` against the workbench's own trainer, step for step: for
# LoRA, DoRA, IA3, Prompt Tuning, Prefix Tuning (trained directly: PEFT keeps only the
# output of a projected prefix), full fine-tuning and the bottleneck adapter on the built-in
# model, and LoRA and full fine-tuning of the BERT classifier all-MiniLM-L6-v2, 20 steps on the
# CPU in f32, each step's loss of the recipe's PyTorch + PEFT loop within 1e-3 (relative)
# of ours, and the same trainable count.
#
# At a tenth of each preset's learning rate: at the presets' own rates the two trainers
# part by up to 2e-2 within 20 steps, as much as PyTorch parts from itself run on 1 thread
# instead of 2 (the rounding of a reduction, amplified by Adam and a fast-moving loss).
#
# Then the distributed engine, really run: the LoRA recipe under torchrun with 2 processes
# (DDP, gloo, CPU) takes the same steps as one process, and the adapter it saves gives
# PEFT's logits under `peft-workbench logits --adapter` (<= 1e-4); so does `accelerate
# launch` with the recipe's DDP config, each process in 2 passes (--accumulate 2). Its FSDP and DeepSpeed configs run only on GPUs:
# here accelerate's own launcher and plugins read them. Last, the recipe's output
# comes back with `import-run` as a run of ours with the same losses, and the MiniLM
# classifier's with its accuracy measured here equal to our run's.
#
# And the bottleneck adapter (PEFT has none) through AdapterHub's `adapters`, in a venv of its
# own ($ADAPTERS_VENV: adapters pins transformers 4.57), layered on the reference one: the
# same 20 steps, and AdapterHub's saved adapter gives the logits ours gives (<= 1e-4).
#
# Uses the Python venv of scripts/verify-peft.sh ($PEFT_VENV), which builds it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${PEFT_VENV:-$HOME/.cache/peft-workbench/venv}"
if ! "$venv/bin/python" -c "import torch, transformers, peft" 2>/dev/null; then
  echo "no Python venv with torch, transformers and peft in $venv: run scripts/verify-peft.sh first" >&2
  exit 1
fi
source scripts/lib/layered-venv.sh
hub="${ADAPTERS_VENV:-$HOME/.cache/peft-workbench/adapters-venv}"
layered_venv "$venv" "$hub" scripts/adapters-requirements.txt
cargo build -q --bin peft-workbench
bin=$PWD/target/debug/peft-workbench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HF_HUB_OFFLINE=1 PYTHONWARNINGS=ignore
check=tests/reference/recipe_check.py
for m in lora dora ia3 prompt-tuning prefix-tuning full adapter; do
  lr=$(sed -n 's/^lr *= *//p' "presets/$m.toml")
  sets=(--set steps=20 --set eval_every=20 --set eval_examples=8 --set "optimizer.lr=$(python3 -c "print($lr / 10)")")
  [ "$m" = prefix-tuning ] && sets+=(--set method.prefix_projection=false)
  "$bin" train "presets/$m.toml" "${sets[@]}" --out "$work/$m/ours" -q >/dev/null
  "$bin" recipe "presets/$m.toml" "${sets[@]}" --out "$work/$m/recipe" 2>/dev/null
  python="$venv/bin/python"
  [ "$m" = adapter ] && python="$hub/bin/python"
  (cd "$work/$m/recipe" && "$python" train.py > ../py.log 2>&1) \
    || { echo "the $m recipe failed:"; tail -20 "$work/$m/py.log"; exit 1; }
  "$venv/bin/python" "$check" steps "$work/$m/ours" "$work/$m/recipe/output" "$work/$m/recipe"
done

# An encoder classifier (all-MiniLM-L6-v2 on the sentiment classes; the head trains beside
# the method): LoRA and full fine-tuning at the presets' own rates.
bert=(--set model=models/all-minilm-l6-v2 --set dataset=builtin:sentiment-labels --set max_seq_len=64
  --set batch_size=16 --set steps=20 --set eval_every=20 --set eval_examples=32)
for m in minilm-lora-sentiment full; do
  "$bin" train "presets/$m.toml" "${bert[@]}" --out "$work/bert-$m/ours" -q >/dev/null
  "$bin" recipe "presets/$m.toml" "${bert[@]}" --out "$work/bert-$m/recipe" 2>/dev/null
  (cd "$work/bert-$m/recipe" && "$venv/bin/python" train.py > ../py.log 2>&1) \
    || { echo "the $m recipe on MiniLM failed:"; tail -20 "$work/bert-$m/py.log"; exit 1; }
  "$venv/bin/python" "$check" steps "$work/bert-$m/ours" "$work/bert-$m/recipe/output" "$work/bert-$m/recipe"
done
# Imported, the PyTorch-trained classifier has its accuracy measured here: ours exactly.
"$bin" import-run "$work/bert-minilm-lora-sentiment/recipe/output" --out "$work/bert-imported" 2>/dev/null
"$venv/bin/python" "$check" measured "$work/bert-minilm-lora-sentiment/ours" "$work/bert-imported"

"$hub/bin/python" "$check" adapterhub "$bin" "$work/adapter/recipe/output"
"$bin" import-run "$work/adapter/recipe/output" --out "$work/adapter/imported" 2>/dev/null
"$venv/bin/python" "$check" imported "$work/adapter/recipe/output" "$work/adapter/imported"

r="$work/lora/recipe"
PYTHON="$venv/bin/python" bash "$r/launch.sh" --nproc 2 -- --out "$work/lora/ddp" > "$work/lora/ddp.log" 2>&1 \
  || { echo "the LoRA recipe under torchrun failed:"; tail -20 "$work/lora/ddp.log"; exit 1; }
"$venv/bin/python" "$check" same "$r/output" "$work/lora/ddp"
PYTHON="$venv/bin/python" bash "$r/launch.sh" --engine ddp --nproc 2 -- --accumulate 2 --out "$work/lora/accelerate" \
  > "$work/lora/accelerate.log" 2>&1 \
  || { echo "the LoRA recipe under accelerate launch failed:"; tail -20 "$work/lora/accelerate.log"; exit 1; }
"$venv/bin/python" "$check" same "$r/output" "$work/lora/accelerate"
"$venv/bin/python" "$check" engines "$r"
"$venv/bin/python" "$check" logits "$bin" "$work/lora/ddp/adapter"

# And back: the recipe's output imported as a run of ours.
"$bin" import-run "$r/output" --out "$work/imported" 2>/dev/null
"$venv/bin/python" "$check" imported "$r/output" "$work/imported"
"$bin" logits --adapter "$work/imported/adapter" --text "Review: good." >/dev/null
