"""Writes tests/fixtures/smollm2_logits.json: token ids and last-position logits of fixed
texts for SmolLM2-135M-Instruct (Q4_1 GGUF, from scripts/fetch-models.sh), computed by Hugging
Face transformers' GGUF loader (dequantised to f32, LlamaForCausalLM, CPU). The Rust test
`smollm2_matches_transformers` compares our GGUF reader and forward pass with it.

Run (offline): HF_HUB_OFFLINE=1 python tests/reference/smollm2_logits.py
Needs: torch, transformers, gguf (from PyPI).
"""
import json
import pathlib

import torch
import transformers
from transformers import AutoTokenizer, LlamaForCausalLM

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
GGUF = "smollm2-135m-instruct-q4_1.gguf"
TEXTS = [
    "What is the capital of France?",
    "The quick brown fox jumps over the lazy dog.",
    "Review: the food was good.\nLabel:",
    "123 + 45 = 168, isn't it?",
]

tok = AutoTokenizer.from_pretrained(MODELS, gguf_file=GGUF)
model = LlamaForCausalLM.from_pretrained(MODELS, gguf_file=GGUF, dtype=torch.float32).eval()
cases = []
with torch.no_grad():
    for text in TEXTS:
        ids = tok(text)["input_ids"]
        logits = model(torch.tensor([ids])).logits[0, -1]
        # The full vocabulary is 49 152 wide: keep the 64 largest and a fixed sample, enough
        # to catch any layer or layout error without a large fixture.
        top = torch.topk(logits, 64).indices.tolist()
        sample = list(range(0, logits.shape[0], 97))
        picked = sorted(set(top + sample))
        cases.append({"text": text, "token_ids": ids,
                      "logits": {str(i): round(float(logits[i]), 5) for i in picked}})
out = ROOT / "tests" / "fixtures" / "smollm2_logits.json"
out.write_text(json.dumps({"transformers_version": transformers.__version__, "model": GGUF,
                           "cases": cases}, indent=0) + "\n")
print("wrote", out)
