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

One process: python train.py.  Several (one per GPU, or gloo on CPUs): see launch.sh, which
starts it under torchrun, or under `accelerate launch` with one of accelerate/*.yaml (DDP,
FSDP, DeepSpeed ZeRO-2 or ZeRO-3). The loop runs through accelerate's Accelerator, which
reads the engine from how it was launched; on one process it is a plain PyTorch loop.
Each process takes its share of every step's batch; gradients are summed over all of a
step's scored tokens across processes, so N processes take the same steps as one.
"""
import argparse
import contextlib
import json
import math
import os
import re
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
    """Inputs padded after each example, their attention mask, and targets (-100 where not
    scored), as ours: a classifier's examples carry a class, a decoder's a loss mask."""
    if "label" in examples[0]:
        width = max(len(e["input_ids"]) for e in examples)
        inputs = [e["input_ids"] + [pad] * (width - len(e["input_ids"])) for e in examples]
        mask = [[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in examples]
        labels = [e["label"] for e in examples]
        return tuple(torch.tensor(x, device=device) for x in (inputs, mask, labels))
    width = max(max(len(e["input_ids"]) for e in examples), 2) - 1
    inputs, labels = [], []
    for e in examples:
        ids, mask = e["input_ids"], e["loss_mask"]
        n = len(ids)
        inputs.append([ids[t] if t + 1 < n else pad for t in range(width)])
        labels.append([ids[t + 1] if t + 1 < n and mask[t + 1] else -100 for t in range(width)])
    # Causal attention: padding after an example changes none of its positions.
    inputs = torch.tensor(inputs, device=device)
    return (inputs, torch.ones_like(inputs), torch.tensor(labels, device=device))


def fed_tokens(example):
    """The tokens an example feeds the model, as our trainer counts them."""
    n = len(example["input_ids"])
    return n if "label" in example else n - 1


def summed_loss(model, inputs, mask, labels):
    """Summed cross-entropy over the scored tokens (a classifier's examples), and their count."""
    out = model(input_ids=inputs, attention_mask=mask)
    if labels.dim() == 1:
        logits = out.logits.float()
    else:
        # Prompt tuning puts its virtual tokens first: the real tokens are the last positions.
        logits = out.logits[:, -inputs.shape[1]:, :].float()
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return loss, int((labels != -100).sum())


ADAPTER = "workbench"
# Our bottleneck tensor names (model.layers.N.{attention,output}_adapter.{down,up}.{weight,bias})
# against AdapterHub's (...N.{attention,output}_adapters.adapters.workbench.adapter_{down.0,up}...).
OURS = re.compile(r"^model\.layers\.(\d+)\.(attention|output)_adapter\.(down|up)\.(weight|bias)$")
THEIRS = re.compile(r"\.(\d+)\.(attention|output)_adapters\.adapters\." + ADAPTER + r"\.adapter_(down\.0|up)\.(weight|bias)$")


def adapterhub_key(name):
    """The (layer, site, down|up, weight|bias) of an AdapterHub bottleneck tensor, or None."""
    hit = THEIRS.search(name)
    return hit and (int(hit[1]), hit[2], hit[3].split(".")[0], hit[4])


def with_bottleneck_adapters(model, recipe, init):
    """The base model with AdapterHub's bottleneck adapters in our places, holding our step-0
    tensors. PEFT has no bottleneck adapters. This configuration computes ours exactly:
    without the block's own layer norms (pre-norm decoders hand none) the adapter reads the
    sub-layer's output h, adds it back (residual_before_ln) and the block's residual after
    (original_ln_after): res + h + up(act(down(h)))."""
    import adapters
    from adapters import BnConfig
    from safetensors.torch import load_file

    method = recipe["config"]["method"]
    hidden, m = model.config.hidden_size, method["bottleneck"]
    config = BnConfig(
        mh_adapter=method["variant"] == "houlsby",
        output_adapter=True,
        # adapters sizes the bottleneck as int(hidden // reduction_factor): m + 1/2 keeps a
        # float's rounding from making it m - 1.
        reduction_factor=hidden / (m + 0.5),
        non_linearity=method["activation"],
        original_ln_before=False,
        original_ln_after=True,
        residual_before_ln=True,
        adapter_residual_before_ln=False,
        ln_before=False,
        ln_after=False,
        scaling=1.0,
        use_gating=False,
        dropout=0.0,
        init_weights="mam_adapter",
    )
    adapters.init(model)
    model.add_adapter(ADAPTER, config=config)
    model.train_adapter(ADAPTER)
    ours = {}
    for name, tensor in load_file(str(init / "model.safetensors")).items():
        hit = OURS.match(name)
        if not hit:
            raise SystemExit(f"init_adapter holds {name}, not a bottleneck tensor")
        ours[(int(hit[1]), hit[2], hit[3], hit[4])] = tensor
    placed = set()
    with torch.no_grad():
        for name, p in model.named_parameters():
            key = adapterhub_key(name)
            if key is None:
                continue
            if key not in ours or ours[key].shape != p.shape:
                raise SystemExit(f"AdapterHub's {name} {tuple(p.shape)} has no tensor of that shape in init_adapter")
            p.copy_(ours[key])
            placed.add(key)
    if placed != set(ours):
        raise SystemExit(f"AdapterHub made no place for {sorted(set(ours) - placed)[:4]}")
    return model


def save_bottleneck_adapters(state_dict, init, out):
    """The trained bottleneck tensors in our export format (init_adapter's names and
    method.json), which peft-workbench reads back."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, t in state_dict.items():
        key = adapterhub_key(name)
        if key:
            layer, site, part, kind = key
            tensors[f"model.layers.{layer}.{site}_adapter.{part}.{kind}"] = t.detach().float().cpu().contiguous()
    save_file(tensors, str(out / "model.safetensors"))
    (out / "method.json").write_text((init / "method.json").read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-model", help="the base model, a folder or a hub id (default: recipe.json's)")
    ap.add_argument("--out", default=str(HERE / "output"), help="where the results go (default: output/)")
    ap.add_argument("--steps", type=int, help="stop after this many steps (default: the run's)")
    ap.add_argument("--bf16", action="store_true", help="the base model in bfloat16 (a GPU's usual choice)")
    ap.add_argument(
        "--accumulate",
        type=int,
        default=1,
        help="split each process's share of a step's batch into this many passes, gradients summed "
        "(the same steps, less activation memory; not under DeepSpeed)",
    )
    ap.add_argument(
        "--peft-init", action="store_true", help="start from PEFT's own initialisation, not the run's tensors"
    )
    args = ap.parse_args()
    recipe = json.loads((HERE / "recipe.json").read_text())
    torch.manual_seed(recipe["seed"])

    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    # The schedule steps once per optimizer step: accelerate's default steps it once per
    # process (it assumes each process drew a whole batch; here they share one).
    asked = [e for e in ("FSDP", "DEEPSPEED") if os.environ.get(f"ACCELERATE_USE_{e}", "").lower() == "true"]
    if asked and not torch.cuda.is_available():
        # accelerate would quietly run plain DDP instead.
        raise SystemExit(f"accelerate runs {asked[0]} only on GPUs, and this machine has none")
    # Without a GPU, `cpu` lets several processes meet over gloo (else accelerate runs each alone).
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), step_scheduler_with_optimizer=False)
    world, rank, device = accelerator.num_processes, accelerator.process_index, accelerator.device
    engine = accelerator.distributed_type
    sharded = engine in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    if args.accumulate < 1:
        raise SystemExit("--accumulate takes a whole number of passes, at least 1")
    if args.accumulate > 1 and engine == DistributedType.DEEPSPEED:
        # accelerate's DeepSpeed backward also steps the optimizer, once per pass.
        raise SystemExit("under DeepSpeed set gradient accumulation in its own config, not --accumulate")
    if args.bf16 and engine == DistributedType.DEEPSPEED:
        raise SystemExit("under DeepSpeed set mixed_precision: bf16 in accelerate/zero*.yaml instead of --bf16")

    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    base = args.base_model or recipe["base_model"]
    if not args.base_model and not os.path.isabs(base) and (HERE / base).exists():
        base = str(HERE / base)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    classify = recipe.get("task") == "classification"
    if classify:
        # Our encoder trains without the base model's dropout, so a run depends only on its seed.
        model = AutoModelForSequenceClassification.from_pretrained(
            base,
            dtype=dtype,
            num_labels=len(recipe["labels"]),
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            classifier_dropout=0.0,
        )
    else:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    start = recipe["start"]
    init = HERE / "init_adapter"
    if start == "adapterhub":
        model = with_bottleneck_adapters(model, recipe, init)
    elif start == "base_tensors":
        names = set(recipe["trainable_base"])
        known = {n for n, _ in model.named_parameters()}
        # A tied output head is the embedding under transformers' single name.
        missing = sorted(n for n in names - known if n != "lm_head.weight")
        if missing:
            raise SystemExit(f"the base model has no tensors named {missing[:5]}")
        for n, p in model.named_parameters():
            p.requires_grad_(n in names)
        if (HERE / "init_head.safetensors").is_file():
            # The classifier's head at step 0 (the base model's folder has none).
            from safetensors.torch import load_file

            head = load_file(str(HERE / "init_head.safetensors"))
            missing, _ = model.load_state_dict(head, strict=False)
            if set(head) & set(missing):
                raise SystemExit(f"the base model has no place for init_head's {sorted(set(head) & set(missing))}")
    else:
        from peft import PeftModel, get_peft_config, get_peft_model, set_peft_model_state_dict
        from safetensors.torch import load_file

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
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if rank == 0:
        print(
            f"trainable parameters: {trainable} (peft-workbench: {recipe['trainable_params']}); "
            f"{world} process(es), {engine.value}",
            flush=True,
        )
    if recipe["method"] == "adalora" and sharded:
        raise SystemExit("AdaLoRA reallocates ranks from whole gradients: run it under DDP, not FSDP or DeepSpeed")

    o = recipe["optimizer"]
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=o["lr"],
        betas=(o["beta1"], o["beta2"]),
        eps=o["eps"],
        weight_decay=o["weight_decay"],
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_at(k + 1, recipe) / o["lr"])
    # DDP wraps the model; FSDP shards it (and the optimizer with it); DeepSpeed takes all
    # three into its engine and clips by its config's gradient_clipping (accelerate/*.yaml).
    if engine == DistributedType.DEEPSPEED:
        # There is no DataLoader to read it from: each process's share of a step's batch.
        share_size = -(-recipe["batch_size"] // world)
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = share_size
    wrapped, opt, sched = accelerator.prepare(model, opt, sched)
    adalora = recipe["method"] == "adalora"

    def read(name):
        with open(HERE / name) as f:
            return [json.loads(line) for line in f]

    train, evals = read("train.jsonl"), read("eval.jsonl")
    order = json.loads((HERE / "order.json").read_text())
    pad = recipe["pad"]
    steps = min(args.steps or recipe["steps"], len(order))

    def share(examples, part=0, parts=1):
        """This process's part of a batch (its `part` of `parts` passes), as model inputs:
        every process runs a forward for every pass (FSDP and DeepSpeed gather weights
        collectively), an empty one with nothing scored."""
        picked = examples[rank::world][part::parts]
        inputs, mask, labels = batch(picked or examples[:1], pad, device)
        if not picked:
            labels.fill_(-100)
        return picked, inputs, mask, labels

    def summed_over_processes(*values):
        t = torch.tensor(values, dtype=torch.float64, device=device)
        return accelerator.reduce(t, reduction="sum").tolist() if world > 1 else t.tolist()

    def evaluate():
        wrapped.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(evals), recipe["batch_size"]):
                _, inputs, mask, labels = share(evals[i : i + recipe["batch_size"]])
                s, n = summed_loss(wrapped, inputs, mask, labels)
                total, count = total + float(s), count + n
        wrapped.train()
        total, count = summed_over_processes(total, count)
        return total / max(count, 1)

    log, tokens, started = [], 0, time.time()
    for step in range(1, steps + 1):
        examples = [train[i] for i in order[step - 1]]
        passes = [share(examples, k, args.accumulate) for k in range(args.accumulate)]
        scored, fed = summed_over_processes(
            float(sum(int((labels != -100).sum()) for *_, labels in passes)),
            float(sum(fed_tokens(e) for picked, *_ in passes for e in picked)),
        )
        lr = sched.get_last_lr()[0]
        mine = 0.0
        for k, (_, inputs, mask, labels) in enumerate(passes):
            # Gradients meet across processes once, after the last pass.
            last = k == len(passes) - 1
            with contextlib.nullcontext() if last else accelerator.no_sync(wrapped):
                s, _ = summed_loss(wrapped, inputs, mask, labels)
                # The engines average gradients over processes: scaled by the processes, each
                # one's sum over the step's scored tokens makes the gradient of the step's mean.
                # (DeepSpeed steps its optimizer and schedule inside backward.)
                accelerator.backward(s * world / max(scored, 1.0))
            mine += float(s.detach())
        (loss_sum,) = summed_over_processes(mine)
        if o["max_grad_norm"] > 0 and engine != DistributedType.DEEPSPEED:
            accelerator.clip_grad_norm_(wrapped.parameters(), o["max_grad_norm"])
        opt.step()
        if adalora:
            accelerator.unwrap_model(wrapped).base_model.update_and_allocate(step)
        opt.zero_grad(set_to_none=True)
        sched.step()
        tokens += int(fed)
        entry = {"step": step, "loss": loss_sum / max(scored, 1.0), "learning_rate": lr}
        entry["num_input_tokens_seen"] = tokens
        entry["epoch"] = step / max(len(order), 1)
        entry_eval = None
        if step % recipe["eval_every"] == 0 or step == steps:
            entry_eval = {"step": step, "eval_loss": evaluate()}
        if rank == 0:
            log.append(entry)
            if entry_eval:
                log.append(entry_eval)
            print(json.dumps(entry_eval or entry), flush=True)

    seconds = time.time() - started
    accelerator.wait_for_everyone()
    # Gathered whole on every process (FSDP and ZeRO-3 hold shards), saved by the first.
    state_dict = accelerator.get_state_dict(wrapped)
    if rank == 0:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        unwrapped = accelerator.unwrap_model(wrapped)
        if start == "adapterhub":
            save_bottleneck_adapters(state_dict, init, out / "adapter")
            unwrapped.save_adapter(str(out / "adapterhub"), ADAPTER)
        else:
            folder = out / ("model" if start == "base_tensors" else "adapter")
            unwrapped.save_pretrained(folder, state_dict=state_dict)
        state = {
            "global_step": steps,
            "max_steps": steps,
            "logging_steps": 1,
            "eval_steps": recipe["eval_every"],
            "train_batch_size": recipe["batch_size"],
            "world_size": world,
            "engine": engine.value,
            "log_history": log,
            "trainable_params": trainable,
            "train_runtime": seconds,
            "num_input_tokens_seen": tokens,
            "tokens_per_second": tokens / max(seconds, 1e-9),
        }
        (out / "trainer_state.json").write_text(json.dumps(state, indent=1))
        print(f"{steps} steps in {seconds:.1f} s on {world} process(es); results in {out}", flush=True)
    accelerator.end_training()


if __name__ == "__main__":
    main()
