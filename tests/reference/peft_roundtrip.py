"""Checks adapters against Hugging Face PEFT, both ways, on the built-in model.

  check BIN [--model M] ADAPTER...
                         Loads the model (the built-in one, or M: a folder or a .gguf file)
                         with transformers and each adapter folder (exported by
                         peft-workbench) with PeftModel.from_pretrained, and compares the last
                         position's logits of fixed texts with
                         `BIN logits --model M --adapter ADAPTER --text ...`. Fails above 1e-3.
  make-fixtures          Writes tests/fixtures/peft_made/: LoRA, DoRA, AdaLoRA, IA3, prompt
                         tuning, P-tuning and prefix tuning adapters made by PEFT with random
                         non-zero weights, and PEFT's logits for them (expected.json). The Rust
                         test `peft_made_adapters_give_peft_logits` reads them back.

Run (offline): HF_HUB_OFFLINE=1 python tests/reference/peft_roundtrip.py check target/debug/peft-workbench runs/*/adapter
Needs: torch, transformers, peft (from PyPI), CPU.
"""
import json
import pathlib
import subprocess
import sys

import peft
import torch
from peft import (AdaLoraConfig, IA3Config, LoraConfig, PeftModel, PrefixTuningConfig,
                  PromptEncoderConfig, PromptTuningConfig, get_peft_model)
from transformers import (AutoModelForCausalLM, AutoTokenizer, BertForSequenceClassification,
                          LlamaForCausalLM)

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "assets" / "models" / "builtin"
TEXTS = [
    "Review: the food was good.\nLabel:",
    "And God said,",
]
TOL = 1e-3


def is_bert(model):
    cfg = pathlib.Path(model or MODEL) / "config.json"
    return cfg.is_file() and json.loads(cfg.read_text()).get("model_type") == "bert"


def base_model(model=None, num_labels=2):
    """The built-in model, or `model`: a Hugging Face folder or a GGUF file; a BERT folder
    as a sequence classifier of `num_labels` classes."""
    if model is None:
        return LlamaForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    path = pathlib.Path(model)
    if is_bert(path):
        return BertForSequenceClassification.from_pretrained(path, num_labels=num_labels,
                                                             dtype=torch.float32).eval()
    if path.suffix == ".gguf":
        return LlamaForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def tokenizer(model=None):
    if model is None:
        return AutoTokenizer.from_pretrained(MODEL)
    path = pathlib.Path(model)
    if path.suffix == ".gguf":
        return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return AutoTokenizer.from_pretrained(path)


def last_logits(model, tok, text):
    """Token ids and the last position's logits (a classifier's class logits)."""
    ids = tok(text)["input_ids"]
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    logits = out.logits[0]
    return ids, logits[-1] if logits.dim() == 2 else logits


def check(binary, adapters, model_path=None):
    tok = tokenizer(model_path)
    worst = 0.0
    failed = []
    for adapter in adapters:
        labels = pathlib.Path(adapter) / "labels.json"
        num_labels = len(json.loads(labels.read_text())["id2label"]) if labels.is_file() else 2
        model = PeftModel.from_pretrained(base_model(model_path, num_labels), adapter).eval()
        cfg = json.loads((pathlib.Path(adapter) / "adapter_config.json").read_text())
        for text in TEXTS:
            ids, ref = last_logits(model, tok, text)
            out = subprocess.run([binary, "logits", "--model", model_path or "builtin", "--adapter", adapter,
                                  "--text", text],
                                 check=True, capture_output=True, text=True).stdout
            ours = json.loads(out)
            if ours["token_ids"] != ids:
                failed.append(f"{adapter}: token ids differ for {text!r}")
                continue
            diff = (torch.tensor(ours["logits"]) - ref).abs().max().item()
            worst = max(worst, diff)
            print(f"{cfg['peft_type']:14} {adapter}: max |diff| {diff:.2e} on {text!r}")
            if diff > TOL:
                failed.append(f"{adapter}: logits differ by {diff:.2e} > {TOL}")
    print(f"worst difference {worst:.2e} over {len(adapters)} adapters (peft {peft.__version__})")
    if failed:
        print("\n".join(failed))
        sys.exit(1)


def randomise(model, std):
    """Gives every trainable tensor random non-zero values (PEFT starts LoRA's B and
    AdaLoRA's E at zero, which would test nothing)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(p + torch.randn(p.shape, generator=g) * std)


def make_fixtures():
    tok = AutoTokenizer.from_pretrained(MODEL)
    out_dir = ROOT / "tests" / "fixtures" / "peft_made"
    out_dir.mkdir(parents=True, exist_ok=True)
    configs = {
        "lora": (LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                            task_type="CAUSAL_LM"), 0.05),
        "dora": (LoraConfig(r=4, lora_alpha=8, use_dora=True, target_modules=["k_proj", "o_proj"],
                            task_type="CAUSAL_LM"), 0.05),
        "adalora": (AdaLoraConfig(init_r=6, target_r=2, lora_alpha=12, total_step=10,
                                  target_modules=["q_proj", "up_proj"], task_type="CAUSAL_LM"), 0.1),
        "ia3": (IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"],
                          task_type="CAUSAL_LM"), 0.2),
        "prompt-tuning": (PromptTuningConfig(num_virtual_tokens=5, task_type="CAUSAL_LM"), 0.0),
        "p-tuning": (PromptEncoderConfig(num_virtual_tokens=4, encoder_hidden_size=32, task_type="CAUSAL_LM"), 0.0),
        "prefix-tuning": (PrefixTuningConfig(num_virtual_tokens=6, encoder_hidden_size=32, prefix_projection=True,
                                             task_type="CAUSAL_LM"), 0.0),
    }
    expected = {"peft_version": peft.__version__, "texts": TEXTS, "adapters": {}}
    for name, (config, std) in configs.items():
        torch.manual_seed(1)
        model = get_peft_model(base_model(), config)
        if std > 0:
            randomise(model, std)
        target = out_dir / name
        model.save_pretrained(target)
        # Keep the fixture free of this machine's paths and of PEFT's generated model card.
        (target / "README.md").unlink(missing_ok=True)
        cfg_path = target / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = "assets/models/builtin"
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        # What PEFT itself computes once the saved folder is loaded back.
        loaded = PeftModel.from_pretrained(base_model(), target).eval()
        cases = []
        for text in TEXTS:
            ids, logits = last_logits(loaded, tok, text)
            cases.append({"text": text, "token_ids": ids, "logits": [round(float(x), 6) for x in logits]})
        expected["adapters"][name] = cases
        print("wrote", target)
    (out_dir / "expected.json").write_text(json.dumps(expected) + "\n")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "check":
        rest = sys.argv[3:]
        if rest[:1] == ["--model"]:
            check(sys.argv[2], rest[2:], rest[1])
        else:
            check(sys.argv[2], rest)
    elif sys.argv[1:] == ["make-fixtures"]:
        make_fixtures()
    else:
        print(__doc__)
        sys.exit(2)
