#!/usr/bin/env bash
# Checks this app's PEFT-format exports against Hugging Face PEFT itself: trains each
# method briefly on the built-in model, then tests/reference/peft_roundtrip.py loads every
# adapter with PeftModel.from_pretrained and compares its logits with `peft-workbench
# logits --adapter` (max |diff| <= 1e-3).
#
# The Python stack (torch, transformers, peft from PyPI, CPU) lives in a venv cached at
# $PEFT_VENV (default ~/.cache/peft-workbench/venv), created on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${PEFT_VENV:-$HOME/.cache/peft-workbench/venv}"
if ! "$venv/bin/python" -c "import torch, transformers, peft, gguf, pyarrow" 2>/dev/null; then
  echo "creating the Python reference venv in $venv (torch + transformers + peft + pyarrow from PyPI)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q torch transformers peft safetensors gguf pyarrow
fi
cargo build -q --bin peft-workbench
bin=target/debug/peft-workbench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for m in lora dora ia3 prompt-tuning p-tuning prefix-tuning p-tuning-v2; do
  "$bin" train "presets/$m.toml" --steps 15 --set eval_examples=16 --out "$work/$m" >/dev/null 2>&1 \
    || { echo "training $m failed"; "$bin" train "presets/$m.toml" --steps 15 --out "$work/$m" --overwrite; exit 1; }
done
"$bin" train presets/adalora.toml --steps 15 --set eval_examples=16 --set method.tinit=3 \
  --set method.tfinal=4 --set method.delta_t=2 --out "$work/adalora" >/dev/null 2>&1
HF_HUB_OFFLINE=1 "$venv/bin/python" tests/reference/peft_roundtrip.py check "$bin" "$work"/*/adapter

# The same on a real model: SmolLM2-135M from its GGUF file (scripts/fetch-models.sh).
smol=models/smollm2-135m-instruct-q4_1.gguf
if [ ! -f "$smol" ]; then bash scripts/fetch-models.sh; fi
mkdir -p "$work/smollm2"
for m in lora prefix-tuning ia3; do
  "$bin" train "presets/$m.toml" --steps 3 --set "model=$smol" --set batch_size=2 --set eval_examples=4 \
    --set eval_every=3 --set optimizer.warmup_steps=0 --out "$work/smollm2/$m" >/dev/null 2>&1 \
    || { echo "training $m on SmolLM2 failed"; exit 1; }
done
HF_HUB_OFFLINE=1 "$venv/bin/python" tests/reference/peft_roundtrip.py check "$bin" --model "$smol" "$work"/smollm2/*/adapter

# And on the BERT encoder all-MiniLM-L6-v2 as a sequence classifier: PEFT loads each export
# (adapter + the `classifier` head saved as modules_to_save) into
# BertForSequenceClassification and the class logits are compared. (transformers' BERT
# takes no past key values, so PEFT cannot load prefix-tuning adapters for it.)
bert=models/all-minilm-l6-v2
mkdir -p "$work/minilm"
for m in lora ia3 prompt-tuning p-tuning; do
  "$bin" train "presets/$m.toml" --steps 10 --set "model=$bert" --set dataset=builtin:sentiment-labels \
    --set eval_examples=16 --set max_seq_len=64 --out "$work/minilm/$m" >/dev/null 2>&1 \
    || { echo "training $m on MiniLM failed"; exit 1; }
done
HF_HUB_OFFLINE=1 "$venv/bin/python" tests/reference/peft_roundtrip.py check "$bin" --model "$bert" "$work"/minilm/*/adapter

# And on GPT-2 (tests/fixtures/tiny-gpt2, a small random GPT-2 saved by transformers): its
# Conv1D projections, the fused c_attn that LoRA targets, `fan_in_fan_out` exports.
gpt2=tests/fixtures/tiny-gpt2
mkdir -p "$work/gpt2"
for m in lora dora ia3 prompt-tuning p-tuning prefix-tuning p-tuning-v2; do
  "$bin" train "presets/$m.toml" --steps 10 --set "model=$gpt2" --set eval_examples=8 --set max_seq_len=32 \
    --out "$work/gpt2/$m" >/dev/null 2>&1 || { echo "training $m on GPT-2 failed"; exit 1; }
done
HF_HUB_OFFLINE=1 "$venv/bin/python" tests/reference/peft_roundtrip.py check "$bin" --model "$gpt2" "$work"/gpt2/*/adapter
