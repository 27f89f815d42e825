#!/usr/bin/env python3
"""Trains the run that recipe.json describes, in PyTorch with Hugging Face transformers and
PEFT, as peft-workbench trained it: the same method and initial tensors (init_adapter/, the
run's step-0 export), the same examples (train.jsonl: token ids and loss mask), the same
batches in the same order (order.json), the same loss (mean cross-entropy over the scored
tokens of a step's batch), AdamW, warm-up and decay, and gradient clipping.

It is a plain loop, not transformers' Trainer: the Trainer draws its own batches, warms up
from a learning rate of 0 and averages the loss per device, so it could not repeat the run
step for step. It writes what the Trainer writes: output/trainer_state.json (the loss of
every step in log_history) and the PEFT adapter in output/adapter/.

One process: python train.py.  Several (one per GPU, or gloo on CPUs): see launch.sh.
Each process takes its share of every step's batch; gradients are summed over all of a
step's scored tokens across processes, so N processes take the same steps as one.
"""
import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent


def lr_at(step, recipe):
    """The learning rate of optimizer step `step` (1-based), as peft-workbench schedules it."""
    o = recipe["optimizer"]
    s = step - 1
    if s < o["warmup_steps"]:
        return o["lr"] * (s + 1) / o["warmup_steps"]
    decay = max(recipe["steps"] - o["warmup_steps"], 1)
    progress = min((s - o["warmup_steps"]) / decay, 1.0)
    if o["schedule"] == "cosine":
        return o["lr"] * 0.5 * (1.0 + math.cos(math.pi * progress))
    if o["schedule"] == "linear":
        return o["lr"] * (1.0 - progress)
    return o["lr"]


def batch(examples, pad, device):
    """Inputs padded after each example, and targets (-100 where not scored), as ours."""
    width = max(max(len(e["input_ids"]) for e in examples), 2) - 1
    inputs, labels = [], []
    for e in examples:
        ids, mask = e["input_ids"], e["loss_mask"]
        n = len(ids)
        inputs.append([ids[t] if t + 1 < n else pad for t in range(width)])
        labels.append([ids[t + 1] if t + 1 < n and mask[t + 1] else -100 for t in range(width)])
    return (torch.tensor(inputs, device=device), torch.tensor(labels, device=device))


def summed_loss(model, inputs, labels):
    """Summed cross-entropy over the scored tokens, and their count."""
    out = model(input_ids=inputs, attention_mask=torch.ones_like(inputs))
    # Prompt tuning puts its virtual tokens first: the real tokens are the last positions.
    logits = out.logits[:, -inputs.shape[1]:, :].float()
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return loss, int((labels != -100).sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-model", help="the base model, a folder or a hub id (default: recipe.json's)")
    ap.add_argument("--out", default=str(HERE / "output"), help="where the results go (default: output/)")
    ap.add_argument("--steps", type=int, help="stop after this many steps (default: the run's)")
    ap.add_argument("--bf16", action="store_true", help="the base model in bfloat16 (a GPU's usual choice)")
    ap.add_argument(
        "--peft-init", action="store_true", help="start from PEFT's own initialisation, not the run's tensors"
    )
    args = ap.parse_args()
    recipe = json.loads((HERE / "recipe.json").read_text())
    torch.manual_seed(recipe["seed"])

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1:
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")

    from transformers import AutoModelForCausalLM

    base = args.base_model or recipe["base_model"]
    if not args.base_model and not os.path.isabs(base) and (HERE / base).exists():
        base = str(HERE / base)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    start = recipe["start"]
    if start == "base_tensors":
        names = set(recipe["trainable_base"])
        known = {n for n, _ in model.named_parameters()}
        # A tied output head is the embedding under transformers' single name.
        missing = sorted(n for n in names - known if n != "lm_head.weight")
        if missing:
            raise SystemExit(f"the base model has no tensors named {missing[:5]}")
        for n, p in model.named_parameters():
            p.requires_grad_(n in names)
    else:
        from peft import PeftModel, get_peft_config, get_peft_model, set_peft_model_state_dict
        from safetensors.torch import load_file

        init = HERE / "init_adapter"
        config = json.loads((init / "adapter_config.json").read_text())
        ours = start == "our_tensors" and not args.peft_init
        if ours and config["peft_type"] not in ("PROMPT_TUNING", "PREFIX_TUNING", "P_TUNING"):
            model = PeftModel.from_pretrained(model, str(init), is_trainable=True)
        else:
            config["inference_mode"] = False
            if config["peft_type"] == "PROMPT_TUNING":
                # The initial tokens come from our tensors or PEFT's random draw; PEFT's
                # text initialisation would need the tokenizer by name.
                config["prompt_tuning_init"] = "RANDOM"
            model = get_peft_model(model, get_peft_config(config))
            if ours:
                # PEFT refuses to load a prompt-learning adapter as trainable; its state
                # loader puts our step-0 virtual tokens (or prefixes) in place instead.
                state = load_file(str(init / "adapter_model.safetensors"))
                set_peft_model_state_dict(model, state)
                placed = model.prompt_encoder["default"].embedding.weight
                if not torch.equal(placed.detach().cpu(), state["prompt_embeddings"].to(placed.dtype)):
                    raise SystemExit("PEFT did not take init_adapter's virtual tokens")
    model.to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    if rank == 0:
        print(f"trainable parameters: {trainable} (peft-workbench: {recipe['trainable_params']})", flush=True)
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    o = recipe["optimizer"]
    opt = torch.optim.AdamW(
        params, lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"], weight_decay=o["weight_decay"]
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_at(k + 1, recipe) / o["lr"])
    adalora = recipe["method"] == "adalora"

    def read(name):
        with open(HERE / name) as f:
            return [json.loads(line) for line in f]

    train, evals = read("train.jsonl"), read("eval.jsonl")
    order = json.loads((HERE / "order.json").read_text())
    pad = recipe["pad"]
    steps = min(args.steps or recipe["steps"], len(order))

    def evaluate():
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(evals), recipe["batch_size"]):
                inputs, labels = batch(evals[i : i + recipe["batch_size"]], pad, device)
                s, n = summed_loss(model, inputs, labels)
                total, count = total + float(s), count + n
        model.train()
        return total / max(count, 1)

    log, tokens, started = [], 0, time.time()
    for step in range(1, steps + 1):
        picked = [train[i] for i in order[step - 1]][rank::world]
        inputs, labels = batch(picked, pad, device) if picked else batch(
            [train[order[step - 1][0]]], pad, device
        )
        if not picked:
            labels.fill_(-100)
        s, n = summed_loss(ddp, inputs, labels)
        counts = torch.tensor([float(s.detach()), float(n)], dtype=torch.float64)
        if world > 1:
            torch.distributed.all_reduce(counts)
        # DDP averages gradients over processes: scaled by the processes, each one's sum over
        # the step's scored tokens makes the gradient of the step's mean.
        (s * world / max(counts[1].item(), 1.0)).backward()
        if o["max_grad_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(params, o["max_grad_norm"])
        lr = opt.param_groups[0]["lr"]
        opt.step()
        if adalora:
            model.base_model.update_and_allocate(step)
        opt.zero_grad(set_to_none=True)
        sched.step()
        tokens += sum(len(e["input_ids"]) - 1 for e in picked)
        loss = counts[0].item() / max(counts[1].item(), 1.0)
        entry = {"step": step, "loss": loss, "learning_rate": lr, "epoch": step / max(len(order), 1)}
        if rank == 0 and (step % recipe["eval_every"] == 0 or step == steps):
            entry_eval = {"step": step, "eval_loss": evaluate()}
        else:
            entry_eval = None
        if world > 1:
            torch.distributed.barrier()
        if rank == 0:
            log.append(entry)
            if entry_eval:
                log.append(entry_eval)
            print(json.dumps(entry_eval or entry), flush=True)

    seconds = time.time() - started
    if rank == 0:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        if start == "base_tensors":
            model.save_pretrained(out / "model")
        else:
            model.save_pretrained(out / "adapter")
        state = {
            "global_step": steps,
            "max_steps": steps,
            "logging_steps": 1,
            "eval_steps": recipe["eval_every"],
            "train_batch_size": recipe["batch_size"],
            "world_size": world,
            "log_history": log,
            "trainable_params": trainable,
            "train_runtime": seconds,
            "tokens_per_second": tokens * world / max(seconds, 1e-9),
        }
        (out / "trainer_state.json").write_text(json.dumps(state, indent=1))
        print(f"{steps} steps in {seconds:.1f} s on {world} process(es); results in {out}", flush=True)
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
