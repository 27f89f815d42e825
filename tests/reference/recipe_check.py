"""Checks a `peft-workbench recipe` run against the workbench's own run of the same config.

  recipe_check.py steps OURS_RUN_DIR RECIPE_OUTPUT_DIR RECIPE_DIR [TOL]
      every step's training loss of the recipe (trainer_state.json) against ours
      (metrics.jsonl), relative difference <= TOL (default 1e-3), and the trainable count
      PyTorch found against ours (recipe.json); prints the worst difference and its step.
  recipe_check.py same OUTPUT_A OUTPUT_B [TOL]
      two recipe runs (one process and two under torchrun) took the same steps.
  recipe_check.py imported OUTPUT_DIR RUN_DIR
      `peft-workbench import-run` of OUTPUT_DIR made RUN_DIR: the same step losses, the
      recipe's own configuration.
  recipe_check.py measured OURS_RUN_DIR RUN_DIR
      the import RUN_DIR of a recipe's output carries the task metric measured on import:
      the same metric, value and chance level as our run of the same config (the two
      trainers' adapters agree to ~1e-7, so no evaluation example changes its answer).
  recipe_check.py engines RECIPE_DIR
      accelerate reads the recipe's accelerate/*.yaml as meant (its own launcher's parsing
      and plugins): DDP; FSDP 2 wrapping decoder layers; ZeRO-2 and ZeRO-3 clipping at the
      run's max_grad_norm. FSDP and DeepSpeed run only on GPUs, so this is what a CPU
      machine can check of them.
  recipe_check.py adapterhub BINARY OUTPUT_DIR [TOL]
      (in a venv with AdapterHub's `adapters`) a bottleneck-adapter recipe's output: the
      base model with AdapterHub's saved adapter (OUTPUT_DIR/adapterhub) gives the logits
      `BINARY logits --adapter OUTPUT_DIR/adapter` gives (<= 1e-4).
  recipe_check.py logits BINARY ADAPTER [TOL]
      `BINARY logits --adapter ADAPTER` against PEFT's logits for the adapter (<= 1e-4).
"""
import json
import pathlib
import subprocess
import sys


def recipe_losses(output):
    state = json.loads((pathlib.Path(output) / "trainer_state.json").read_text())
    return {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}, state


def worst_relative(a, b):
    if sorted(a) != sorted(b):
        sys.exit(f"the runs logged different steps: {sorted(a)} and {sorted(b)}")
    diffs = {s: abs(a[s] - b[s]) / abs(a[s]) for s in a}
    step = max(diffs, key=diffs.get)
    return diffs[step], step


def steps(ours_dir, output, recipe_dir, tol):
    ours, our_tokens = {}, {}
    for line in open(pathlib.Path(ours_dir) / "metrics.jsonl"):
        e = json.loads(line)
        if e.get("type") == "step":
            ours[e["step"]] = e["loss"]
            our_tokens[e["step"]] = e["tokens_seen"]
    theirs, state = recipe_losses(output)
    their_tokens = {e["step"]: e["num_input_tokens_seen"] for e in state["log_history"] if "loss" in e}
    if their_tokens != our_tokens:
        sys.exit(f"the recipe counted other tokens seen than ours: {their_tokens} against {our_tokens}")
    recipe = json.loads((pathlib.Path(recipe_dir) / "recipe.json").read_text())
    worst, step = worst_relative(ours, theirs)
    counts = (state["trainable_params"], recipe["trainable_params"])
    print(
        f"{recipe['method']:14} {len(ours)} steps, lr {recipe['optimizer']['lr']:.1e}: worst relative loss "
        f"difference {worst:.2e} (step {step}); trainable {counts[0]} (PyTorch) / {counts[1]} (ours)"
    )
    if counts[0] != counts[1]:
        sys.exit(f"{recipe['method']}: PyTorch trains {counts[0]} values, the workbench {counts[1]}")
    if worst > tol:
        sys.exit(f"{recipe['method']}: step {step} differs by {worst:.2e} > {tol}")


def same(a_dir, b_dir, tol):
    (a, sa), (b, sb) = recipe_losses(a_dir), recipe_losses(b_dir)
    worst, step = worst_relative(a, b)
    print(
        f"{sa['world_size']} process(es) against {sb['world_size']}: worst relative loss difference "
        f"{worst:.2e} (step {step}) over {len(a)} steps"
    )
    if worst > tol:
        sys.exit(f"step {step} differs by {worst:.2e} > {tol}")
    seen = [[e["num_input_tokens_seen"] for e in s["log_history"] if "loss" in e] for s in (sa, sb)]
    if seen[0] != seen[1]:
        sys.exit(f"the runs counted other tokens seen: {seen[0]} and {seen[1]}")


def imported(output, run_dir):
    theirs, _ = recipe_losses(output)
    ours = {}
    for line in open(pathlib.Path(run_dir) / "metrics.jsonl"):
        e = json.loads(line)
        if e.get("type") == "step":
            ours[e["step"]] = e["loss"]
    if ours != theirs:
        sys.exit(f"the imported run's losses differ from {output}'s")
    tokens = [json.loads(line).get("tokens_seen") for line in open(pathlib.Path(run_dir) / "metrics.jsonl")]
    state = json.loads((pathlib.Path(output) / "trainer_state.json").read_text())
    if [t for t in tokens if t is not None] != [e["num_input_tokens_seen"] for e in state["log_history"] if "loss" in e]:
        sys.exit("the imported run lost the tokens seen of its steps")
    summary = json.loads((pathlib.Path(run_dir) / "summary.json").read_text())
    recipe = json.loads((pathlib.Path(output).parent / "recipe.json").read_text())
    if summary["method"] != recipe["method"] or summary["trainable_params"] != recipe["trainable_params"]:
        sys.exit(f"the imported run says {summary['method']} / {summary['trainable_params']}")
    print(f"imported {len(ours)} steps of {output} into {run_dir} ({summary['method']})")


def measured(ours_dir, run_dir):
    ours = json.loads((pathlib.Path(ours_dir) / "summary.json").read_text())
    theirs = json.loads((pathlib.Path(run_dir) / "summary.json").read_text())
    seen = {k: (ours.get(k), theirs.get(k)) for k in ("metric_name", "metric_value", "chance")}
    if any(a != b for a, b in seen.values()) or theirs["metric_value"] is None:
        sys.exit(f"the metric measured on import is not our run's: {seen}")
    print(f"the recipe's adapter, measured on import: {theirs['metric_name']} {theirs['metric_value']} = ours")


def engines(recipe_dir):
    import os

    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    recipe_dir = pathlib.Path(recipe_dir)
    clip = json.loads((recipe_dir / "recipe.json").read_text())["optimizer"]["max_grad_norm"]
    os.chdir(recipe_dir)
    seen = {}
    for engine in ("ddp", "fsdp", "zero2", "zero3"):
        argv = ["--config_file", f"accelerate/{engine}.yaml", "--num_processes", "2", "train.py"]
        args, defaults, _ = _validate_launch_command(launch_command_parser().parse_args(argv))
        if args.use_deepspeed:
            args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
            env = prepare_deepspeed_cmd_env(args)[1]
        else:
            env = prepare_multi_gpu_env(args)
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            if engine == "ddp":
                got = (args.multi_gpu, args.use_fsdp, args.use_deepspeed, env["ACCELERATE_MIXED_PRECISION"])
                want = (True, False, False, "no")
            elif engine == "fsdp":
                p = FullyShardedDataParallelPlugin()
                got = (p.fsdp_version, p.auto_wrap_policy.__name__, p.state_dict_type.name)
                want = (2, "transformer_auto_wrap_policy", "FULL_STATE_DICT")
            else:
                p = DeepSpeedPlugin()
                got = (p.zero_stage, float(p.gradient_clipping), p.deepspeed_config["gradient_clipping"])
                want = (int(engine[-1]), float(clip), clip)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        if got != want:
            sys.exit(f"accelerate reads accelerate/{engine}.yaml as {got}, not {want}")
        seen[engine] = got
    print(f"accelerate reads the recipe's engines as meant: {seen}")


def adapterhub(binary, output, tol):
    import adapters

    output = pathlib.Path(output)
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from peft_roundtrip import base_model

    model = base_model()
    adapters.init(model)
    name = model.load_adapter(str(output / "adapterhub"))
    model.set_active_adapters(name)
    compare_logits(binary, model.eval(), str(output / "adapter"), tol, "AdapterHub's")


def logits(binary, adapter, tol):
    from peft import PeftModel

    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from peft_roundtrip import base_model

    compare_logits(binary, PeftModel.from_pretrained(base_model(), adapter).eval(), adapter, tol, "PEFT's")


def compare_logits(binary, model, adapter, tol, whose):
    """`BINARY logits --adapter ADAPTER` against `model`'s on the round-trip texts."""
    import torch

    from peft_roundtrip import TEXTS, last_logits, tokenizer

    tok = tokenizer()
    worst = 0.0
    for text in TEXTS:
        ids, ref = last_logits(model, tok, text)
        out = subprocess.run(
            [binary, "logits", "--adapter", adapter, "--text", text], check=True, capture_output=True, text=True
        ).stdout
        ours = json.loads(out)
        if ours["token_ids"] != ids:
            sys.exit(f"token ids differ for {text!r}")
        worst = max(worst, (torch.tensor(ours["logits"]) - ref).abs().max().item())
    print(f"{adapter}: `logits --adapter` against {whose}, max |diff| {worst:.2e}")
    if worst > tol:
        sys.exit(f"logits differ by {worst:.2e} > {tol}")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "steps":
        steps(*args[:3], float(args[3]) if len(args) > 3 else 1e-3)
    elif cmd == "same":
        same(*args[:2], float(args[2]) if len(args) > 2 else 1e-5)
    elif cmd == "imported":
        imported(*args[:2])
    elif cmd == "measured":
        measured(*args[:2])
    elif cmd == "engines":
        engines(args[0])
    elif cmd == "adapterhub":
        adapterhub(*args[:2], float(args[2]) if len(args) > 2 else 1e-4)
    elif cmd == "logits":
        logits(*args[:2], float(args[2]) if len(args) > 2 else 1e-4)
    else:
        sys.exit(__doc__)
