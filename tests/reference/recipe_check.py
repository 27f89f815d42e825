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
    ours = {}
    for line in open(pathlib.Path(ours_dir) / "metrics.jsonl"):
        e = json.loads(line)
        if e.get("type") == "step":
            ours[e["step"]] = e["loss"]
    theirs, state = recipe_losses(output)
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


def imported(output, run_dir):
    theirs, _ = recipe_losses(output)
    ours = {}
    for line in open(pathlib.Path(run_dir) / "metrics.jsonl"):
        e = json.loads(line)
        if e.get("type") == "step":
            ours[e["step"]] = e["loss"]
    if ours != theirs:
        sys.exit(f"the imported run's losses differ from {output}'s")
    summary = json.loads((pathlib.Path(run_dir) / "summary.json").read_text())
    recipe = json.loads((pathlib.Path(output).parent / "recipe.json").read_text())
    if summary["method"] != recipe["method"] or summary["trainable_params"] != recipe["trainable_params"]:
        sys.exit(f"the imported run says {summary['method']} / {summary['trainable_params']}")
    print(f"imported {len(ours)} steps of {output} into {run_dir} ({summary['method']})")


def logits(binary, adapter, tol):
    import torch
    from peft import PeftModel

    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from peft_roundtrip import TEXTS, base_model, last_logits, tokenizer

    tok = tokenizer()
    model = PeftModel.from_pretrained(base_model(), adapter).eval()
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
    print(f"{adapter}: `logits --adapter` against PEFT's, max |diff| {worst:.2e}")
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
    elif cmd == "logits":
        logits(*args[:2], float(args[2]) if len(args) > 2 else 1e-4)
    else:
        sys.exit(__doc__)
