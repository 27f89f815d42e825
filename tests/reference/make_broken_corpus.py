"""Writes tests/fixtures/broken/: small valid files and hand-made broken ones for the loaders'
bad-input tests (tests/broken_inputs.rs) and the seeds of their fuzz tests. Each broken file
breaks one thing; the Rust test checks the message names it and that nothing panics.

Run: python tests/reference/make_broken_corpus.py   (needs: numpy, gguf, safetensors)
"""
import json
import pathlib
import struct

import numpy as np
from gguf import GGUFWriter
from safetensors.numpy import save_file

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "broken"
OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)

# --- safetensors -------------------------------------------------------------------------
valid = OUT / "valid.safetensors"
save_file({"a.weight": rng.standard_normal((4, 3)).astype(np.float32),
           "b.bias": rng.standard_normal(5).astype(np.float32)}, str(valid))
raw = valid.read_bytes()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
(OUT / "truncated.safetensors").write_bytes(raw[:-20])
lying = dict(header)
lying["a.weight"] = dict(header["a.weight"], data_offsets=[0, 10_000_000])
h = json.dumps(lying).encode()
(OUT / "offsets-past-the-end.safetensors").write_bytes(struct.pack("<Q", len(h)) + h + raw[8 + n:])
(OUT / "huge-header-length.safetensors").write_bytes(struct.pack("<Q", 1 << 62) + raw[8:])
(OUT / "header-not-json.safetensors").write_bytes(struct.pack("<Q", 10) + b"{not json!" + raw[8 + n:])
shape_lie = dict(header)
shape_lie["a.weight"] = dict(header["a.weight"], shape=[400000, 3000])
h = json.dumps(shape_lie).encode()
(OUT / "shape-disagrees-with-bytes.safetensors").write_bytes(struct.pack("<Q", len(h)) + h + raw[8 + n:])

# --- GGUF ----------------------------------------------------------------------------------
g = OUT / "valid.gguf"
w = GGUFWriter(str(g), "llama")
w.add_embedding_length(8)
w.add_feed_forward_length(16)
w.add_head_count(2)
w.add_head_count_kv(2)
w.add_block_count(1)
w.add_layer_norm_rms_eps(1e-5)
w.add_context_length(32)
w.add_vocab_size(12)
w.add_tensor("token_embd.weight", rng.standard_normal((12, 8)).astype(np.float32))
w.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
graw = g.read_bytes()
(OUT / "truncated.gguf").write_bytes(graw[: len(graw) // 2])
(OUT / "bad-magic.gguf").write_bytes(b"GGML" + graw[4:])
# tensor_count (u64 after magic and version) far beyond what the file holds
(OUT / "huge-tensor-count.gguf").write_bytes(graw[:8] + struct.pack("<Q", 1 << 60) + graw[16:])

# --- tokenizer, configs ----------------------------------------------------------------------
(OUT / "tokenizer-not-json.json").write_text('{"version": "1.0", "model": {"type": "BPE", "vocab": ')
(OUT / "config-unknown-arch.json").write_text(json.dumps({"model_type": "mamba", "hidden_size": 8}))
(OUT / "config-zero-heads.json").write_text(json.dumps({
    "model_type": "llama", "hidden_size": 8, "intermediate_size": 16, "num_attention_heads": 0,
    "num_hidden_layers": 1, "vocab_size": 12}))

# --- datasets -------------------------------------------------------------------------------
(OUT / "empty.jsonl").write_text("\n\n")
(OUT / "bad-json-line-3.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n{"text": "c"\n')
(OUT / "missing-fields.jsonl").write_text('{"prompt": "only a prompt"}\n')
(OUT / "wrong-types.jsonl").write_text('{"prompt": 3, "completion": ["x"]}\n')
(OUT / "not-utf8.jsonl").write_bytes(b'{"text": "caf\xe9"}\n')
(OUT / "unseen-label.train.jsonl").write_text('{"text": "good", "label": "pos"}\n{"text": "bad", "label": "neg"}\n')
(OUT / "unseen-label.eval.jsonl").write_text('{"text": "meh", "label": "neutral"}\n')

# --- adapters -------------------------------------------------------------------------------
def adapter(name, config, tensors):
    d = OUT / "adapters" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "adapter_config.json").write_text(json.dumps(config, indent=2))
    save_file(tensors, str(d / "adapter_model.safetensors"))

lora = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]}
a = rng.standard_normal((2, 256)).astype(np.float32)
b = rng.standard_normal((256, 2)).astype(np.float32)
q = "base_model.model.model.layers.0.self_attn.q_proj"
adapter("unknown-peft-type", dict(lora, peft_type="VERA"), {f"{q}.lora_A.weight": a})
adapter("missing-lora-b", lora, {f"{q}.lora_A.weight": a})
adapter("wrong-shape", lora, {f"{q}.lora_A.weight": rng.standard_normal((2, 100)).astype(np.float32),
                              f"{q}.lora_B.weight": b})
adapter("unknown-module", lora, {
    "base_model.model.model.layers.0.self_attn.qq_proj.lora_A.weight": a,
    "base_model.model.model.layers.0.self_attn.qq_proj.lora_B.weight": b})
print("wrote", OUT)
