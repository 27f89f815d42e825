"""Writes tests/fixtures/builtin_logits.json: token ids and last-position logits of fixed
texts for the built-in model, computed by Hugging Face transformers (LlamaForCausalLM,
AutoTokenizer, f32, CPU). The Rust test `reference` compares our forward pass with it.

Run (offline): HF_HUB_OFFLINE=1 python tests/reference/builtin_logits.py
Needs: torch, transformers (from PyPI).
"""
import json
import pathlib

import torch
from transformers import AutoTokenizer, LlamaForCausalLM

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "assets" / "models" / "builtin"
TEXTS = [
    "In the beginning God created the heaven and the earth.",
    "And the LORD said unto Moses,",
    "Review: the food was good.\nSentiment:",
    "房间很干净，服务也很好，下次还会再来。\nLabel:",
    "书的质量太差了，纸张很薄。",
]

tok = AutoTokenizer.from_pretrained(MODEL)
model = LlamaForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float32).eval()
cases = []
with torch.no_grad():
    for text in TEXTS:
        ids = tok(text)["input_ids"]
        logits = model(torch.tensor([ids])).logits[0, -1]
        cases.append({"text": text, "token_ids": ids, "logits": [round(float(x), 6) for x in logits]})
    prompt = tok("And God said,", return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=24, do_sample=False)
    sample = tok.decode(out[0])
    prompt = tok("这本书", return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=24, do_sample=False)
    sample_zh = tok.decode(out[0])
out_path = ROOT / "tests" / "fixtures" / "builtin_logits.json"
out_path.write_text(json.dumps({"transformers": __import__("transformers").__version__,
                                "torch": torch.__version__, "cases": cases, "greedy_sample": sample,
                                "greedy_sample_zh": sample_zh}) + "\n")
print(f"wrote {out_path}; greedy samples: {sample!r} {sample_zh!r}")
