"""Writes tests/fixtures/peft_param_counts.json: the trainable-parameter count Hugging Face
PEFT reports (`get_nb_trainable_parameters`, what `print_trainable_parameters` prints) for
each method it has, configured as the workbench's `[method]` table next to it, on the
built-in model. The Rust test `methods_reference` checks our formulas give the same numbers.

Run (offline): HF_HUB_OFFLINE=1 python tests/reference/peft_param_counts.py
Needs: torch, transformers, peft (from PyPI).
"""
import json
import pathlib

import peft
import torch
from peft import (AdaLoraConfig, IA3Config, LoraConfig, PrefixTuningConfig, PromptEncoderConfig,
                  PromptTuningConfig, get_peft_model)
from transformers import LlamaForCausalLM

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "assets" / "models" / "builtin"

# (our [method] table, the PEFT config of the same method)
CASES = [
    ({"kind": "lora", "rank": 8, "alpha": 16.0, "target_modules": ["q_proj", "v_proj"]},
     lambda: LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")),
    ({"kind": "lora", "rank": 4, "alpha": 8.0,
      "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]},
     lambda: LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")),
    ({"kind": "dora", "rank": 8, "alpha": 16.0, "target_modules": ["q_proj", "v_proj"]},
     lambda: LoraConfig(r=8, lora_alpha=16, use_dora=True, target_modules=["q_proj", "v_proj"],
                        task_type="CAUSAL_LM")),
    ({"kind": "adalora", "init_r": 12, "target_r": 4, "alpha": 16.0,
      "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
     lambda: AdaLoraConfig(init_r=12, target_r=4, lora_alpha=16, total_step=300,
                           target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")),
    ({"kind": "ia3", "target_modules": ["k_proj", "v_proj", "down_proj"], "feedforward_modules": ["down_proj"]},
     lambda: IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"],
                       task_type="CAUSAL_LM")),
    ({"kind": "prompt-tuning", "num_virtual_tokens": 10},
     lambda: PromptTuningConfig(num_virtual_tokens=10, task_type="CAUSAL_LM")),
    ({"kind": "p-tuning", "num_virtual_tokens": 10, "encoder_type": "lstm", "encoder_hidden_size": 128,
      "encoder_num_layers": 2},
     lambda: PromptEncoderConfig(num_virtual_tokens=10, encoder_reparameterization_type="LSTM",
                                 encoder_hidden_size=128, encoder_num_layers=2, task_type="CAUSAL_LM")),
    ({"kind": "p-tuning", "num_virtual_tokens": 10, "encoder_type": "mlp", "encoder_hidden_size": 128},
     lambda: PromptEncoderConfig(num_virtual_tokens=10, encoder_reparameterization_type="MLP",
                                 encoder_hidden_size=128, task_type="CAUSAL_LM")),
    ({"kind": "prefix-tuning", "num_virtual_tokens": 10, "encoder_hidden_size": 128, "prefix_projection": True},
     lambda: PrefixTuningConfig(num_virtual_tokens=10, encoder_hidden_size=128, prefix_projection=True,
                                task_type="CAUSAL_LM")),
    ({"kind": "p-tuning-v2", "num_virtual_tokens": 10},
     lambda: PrefixTuningConfig(num_virtual_tokens=10, prefix_projection=False, task_type="CAUSAL_LM")),
]

cases = []
for method, make in CASES:
    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
    peft_model = get_peft_model(model, make())
    trainable, total = peft_model.get_nb_trainable_parameters()
    cases.append({"method": method, "peft_trainable": trainable, "peft_total": total})
    print(method["kind"], trainable, total)

out = ROOT / "tests" / "fixtures" / "peft_param_counts.json"
out.write_text(json.dumps({"peft_version": peft.__version__, "torch_version": torch.__version__,
                           "cases": cases}, indent=1) + "\n")
print("wrote", out)
