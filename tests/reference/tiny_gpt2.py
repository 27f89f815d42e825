"""Writes tests/fixtures/tiny-gpt2/: a small random GPT-2 (2 layers, width 32, the built-in
model's tokenizer) saved by transformers' GPT2Model (bare tensor names, Conv1D weights stored
[in, out], as the released GPT-2 checkpoints are), and logits.json: token ids and the last
position's logits of fixed texts from GPT2LMHeadModel (tied head, f32, CPU). No GPT-2
weights ship on PyPI; this checks our GPT-2 code and Conv1D handling against transformers'.

Run (offline): HF_HUB_OFFLINE=1 python tests/reference/tiny_gpt2.py
Needs: torch, transformers (from PyPI).
"""
import json
import pathlib
import shutil

import torch
import transformers
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, GPT2Model

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILTIN = ROOT / "assets" / "models" / "builtin"
OUT = ROOT / "tests" / "fixtures" / "tiny-gpt2"
TEXTS = ["And God said,", "Review: the food was good.\nLabel:"]

torch.manual_seed(0)
config = GPT2Config(vocab_size=4096, n_positions=128, n_embd=32, n_layer=2, n_head=4,
                    bos_token_id=0, eos_token_id=0, activation_function="gelu_new")
base = GPT2Model(config)
with torch.no_grad():
    # Larger than transformers' 0.02 init, so every layer changes the logits visibly.
    for name, p in base.named_parameters():
        if p.dim() > 1:
            p.normal_(0.0, 0.2)
        elif "ln" in name and name.endswith("weight"):
            p.copy_(1.0 + 0.1 * torch.randn_like(p))
        else:
            p.normal_(0.0, 0.1)
if OUT.exists():
    shutil.rmtree(OUT)
base.save_pretrained(OUT)
for f in ["tokenizer.json", "tokenizer_config.json"]:
    shutil.copy(BUILTIN / f, OUT / f)
cfg = json.loads((OUT / "config.json").read_text())
cfg.pop("transformers_version", None)
(OUT / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

tok = AutoTokenizer.from_pretrained(OUT)
model = GPT2LMHeadModel.from_pretrained(OUT, dtype=torch.float32).eval()
cases = []
with torch.no_grad():
    for text in TEXTS:
        ids = tok(text)["input_ids"]
        logits = model(torch.tensor([ids])).logits[0, -1]
        cases.append({"text": text, "token_ids": ids,
                      "logits": [round(float(x), 6) for x in logits]})
(OUT / "logits.json").write_text(json.dumps({"transformers_version": transformers.__version__,
                                             "cases": cases}) + "\n")
print("wrote", OUT)
