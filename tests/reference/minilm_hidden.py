"""Writes tests/fixtures/minilm_hidden.json: token ids, the final hidden state at [CLS]
and at the last position, and the pooler's output, of fixed texts for all-MiniLM-L6-v2
(BERT, from scripts/fetch-models.sh), computed by Hugging Face transformers' BertModel
(f32, CPU, eval mode). The Rust test `minilm_matches_transformers` compares our encoder
with it, the texts run as one padded batch so that the padding mask is checked too.

Run (offline): HF_HUB_OFFLINE=1 python tests/reference/minilm_hidden.py
Needs: torch, transformers (from PyPI).
"""
import json
import pathlib

import torch
import transformers
from transformers import AutoTokenizer, BertModel

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "all-minilm-l6-v2"
TEXTS = [
    "the food was good.",
    "i thought the ship was not horrible and the wine was great.",
    "A longer sentence, with punctuation; numbers like 1234 and UPPER case words!",
]

tok = AutoTokenizer.from_pretrained(MODEL)
model = BertModel.from_pretrained(MODEL, dtype=torch.float32).eval()
cases = []
with torch.no_grad():
    for text in TEXTS:
        ids = tok(text)["input_ids"]
        out = model(torch.tensor([ids]))
        hidden = out.last_hidden_state[0]
        r = lambda t: [round(float(x), 6) for x in t]
        cases.append({"text": text, "token_ids": ids,
                      "hidden_first": r(hidden[0]), "hidden_last": r(hidden[-1]),
                      "pooled": r(out.pooler_output[0])})
out = ROOT / "tests" / "fixtures" / "minilm_hidden.json"
out.write_text(json.dumps({"transformers_version": transformers.__version__,
                           "model": "all-minilm-l6-v2", "cases": cases}, indent=0) + "\n")
print("wrote", out)
