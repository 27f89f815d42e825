"""The training step `peft-workbench bench` times, done by PyTorch + transformers + PEFT:
the same weights, the same method configuration (read from an adapter_config.json this app
exported; no adapter for full fine-tuning), a batch of random tokens of a fixed length
with every position scored, f32, AdamW, a fixed thread count. Prints one JSON object with
the keys of `peft-workbench bench`.

With --generate N it times greedy generation instead, as `peft-workbench bench --generate N`
does: transformers' `generate` with the key/value cache (the adapter attached), a prompt of
--prompt random tokens, N new tokens with no early stop, median of --steps rounds.

Run (offline): HF_HUB_OFFLINE=1 python tests/reference/bench_torch.py --model M
    [--adapter-config DIR] [--batch 8] [--seq 128] [--steps 3] [--threads 2]
    [--generate N] [--prompt 32]
M is a model folder or a .gguf file. Needs: torch, transformers, peft (+ gguf), from PyPI.
"""
import argparse
import json
import pathlib
import resource
import statistics
import time

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--adapter-config", help="a folder with this app's adapter_config.json")
parser.add_argument("--batch", type=int, default=8)
parser.add_argument("--seq", type=int, default=128)
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--generate", type=int)
parser.add_argument("--prompt", type=int, default=32)
a = parser.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

from transformers import LlamaForCausalLM  # noqa: E402  (after the thread count is set)

t0 = time.perf_counter()
path = pathlib.Path(a.model)
if path.suffix == ".gguf":
    model = LlamaForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
else:
    model = LlamaForCausalLM.from_pretrained(path, dtype=torch.float32)
method = "full"
if a.adapter_config:
    from peft import PeftConfig, get_peft_model

    config = PeftConfig.from_pretrained(a.adapter_config)
    config.inference_mode = False
    if getattr(config, "prompt_tuning_init", None) is not None:
        # Initialisation does not change the step's cost; a text init would need the hub.
        config.prompt_tuning_init = "RANDOM"
    model = get_peft_model(model, config)
    method = str(config.peft_type.value).lower().replace("_", "-")
load_seconds = time.perf_counter() - t0


def bench_generate():
    model.eval()
    ids = torch.randint(0, model.config.vocab_size, (1, a.prompt))
    prefill, decode = [], []
    with torch.inference_mode():
        for i in range(max(a.steps, 1) + 1):
            t = time.perf_counter()
            model(input_ids=ids, use_cache=True)
            p = time.perf_counter() - t
            t = time.perf_counter()
            out = model.generate(input_ids=ids, max_new_tokens=a.generate, min_new_tokens=a.generate,
                                 do_sample=False, use_cache=True, pad_token_id=0)
            g = time.perf_counter() - t
            assert out.shape[1] == a.prompt + a.generate, out.shape
            if i > 0:  # the first round warms up
                prefill.append(p)
                # Tokens after the first, over the time after the prompt's forward pass.
                decode.append((a.generate - 1) / max(g - p, 1e-9))
    print(json.dumps({
        "model": a.model,
        "method": method,
        "prompt_tokens": a.prompt,
        "new_tokens": a.generate,
        "load_seconds": load_seconds,
        "prefill_ms": statistics.median(prefill) * 1e3,
        "decode_tokens_per_second": statistics.median(decode),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "threads": torch.get_num_threads(),
    }))


if a.generate:
    bench_generate()
    raise SystemExit(0)
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)

vocab = model.config.vocab_size
tokens = torch.randint(0, vocab, (a.batch, a.seq + 1))
inputs, targets = tokens[:, :-1], tokens[:, 1:].reshape(-1)


def loss_of():
    logits = model(input_ids=inputs).logits
    # Prompt tuning's logits include its virtual positions first: score the real tokens.
    logits = logits[:, -a.seq:, :].reshape(-1, vocab)
    return torch.nn.functional.cross_entropy(logits, targets)


forward = []
with torch.no_grad():
    for i in range(a.steps + 1):
        t = time.perf_counter()
        loss_of()
        if i > 0:
            forward.append(time.perf_counter() - t)
steps = []
for i in range(a.steps + 2):
    t = time.perf_counter()
    loss = loss_of()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if i >= 2:
        steps.append(time.perf_counter() - t)
tokens_per_step = a.batch * a.seq
step = statistics.median(steps)
print(json.dumps({
    "model": a.model,
    "method": method,
    "batch": a.batch,
    "seq": a.seq,
    "load_seconds": load_seconds,
    "tokens_per_second": tokens_per_step / step,
    "ms_per_step": step * 1e3,
    "fastest_ms_per_step": min(steps) * 1e3,
    "forward_tokens_per_second": tokens_per_step / statistics.median(forward),
    "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "trainable_params": sum(p.numel() for p in params),
    "threads": torch.get_num_threads(),
}))
