#!/usr/bin/env bash
# Times the same training step in peft-workbench (`bench`) and in PyTorch + transformers +
# PEFT (tests/reference/bench_torch.py): same weights, same method configuration, same
# batch and sequence length, same thread count, f32, AdamW, every position scored. Runs
# alternate ours / PyTorch for REPS repetitions in this one invocation; the table gives the
# medians, the ratio of the fastest steps, and the peak resident memory of each process.
#
#   bash scripts/bench-vs-torch.sh                     # built-in model and SmolLM2-135M
#   MODELS=builtin METHODS="lora full" REPS=3 bash scripts/bench-vs-torch.sh
#
# Then greedy generation with the key/value cache (bench --generate against transformers'
# generate, tests/reference/bench_torch.py --generate) with LoRA attached, per model.
#
# Env: MODELS (builtin and/or a .gguf/folder; default both), METHODS (default lora
# prefix-tuning prompt-tuning ia3 full), BATCH (8), SEQ (128), STEPS (3 timed, after 2
# warm-up), THREADS (2), REPS (2), GENERATE (new tokens, 64; 0 skips), PROMPT (32),
# PEFT_VENV (the venv of scripts/verify-peft.sh), KEEP (a file for every run's JSON).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${PEFT_VENV:-$HOME/.cache/peft-workbench/venv}"
if ! "$venv/bin/python" -c "import torch, transformers, peft, gguf" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q torch transformers peft safetensors gguf
fi
smol=models/smollm2-135m-instruct-q4_1.gguf
MODELS=${MODELS:-"builtin $smol"}
METHODS=${METHODS:-"lora prefix-tuning prompt-tuning ia3 full"}
BATCH=${BATCH:-8} SEQ=${SEQ:-128} STEPS=${STEPS:-3} THREADS=${THREADS:-2} REPS=${REPS:-2}
GENERATE=${GENERATE:-64} PROMPT=${PROMPT:-32}
case " $MODELS " in *" $smol "*) [ -f "$smol" ] || bash scripts/fetch-models.sh ;; esac
# The release build, as the README's commands run it: the dev profile optimises this crate
# too but keeps its debug assertions and overflow checks in the kernels' loops.
cargo build -q --release --bin peft-workbench
bin=target/release/peft-workbench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
results="$work/results.jsonl"
generated="$work/generate.jsonl"
touch "$generated"
# The PEFT configuration PyTorch uses is the one this app exports for the same preset on
# the same model (one tiny step is enough to write it).
export_config() { # method model -> folder
  local out="$work/cfg-$1-$(basename "$2")"
  [ -d "$out/adapter" ] || "$bin" train "presets/$1.toml" --steps 1 --set "model=$2" \
    --set batch_size=1 --set eval_examples=1 --set optimizer.warmup_steps=0 --out "$out" >/dev/null 2>&1
  echo "$out/adapter"
}
for model in $MODELS; do
  torch_model=$model
  [ "$model" = builtin ] && torch_model=assets/models/builtin
  for m in $METHODS; do
    cfg_args=()
    if [ "$m" != full ]; then
      cfg_args=(--adapter-config "$(export_config "$m" "$model")")
    fi
    for rep in $(seq "$REPS"); do
      echo "[$model $m, repetition $rep/$REPS]" >&2
      "$bin" bench --model "$model" --preset "presets/$m.toml" --batch "$BATCH" --seq "$SEQ" \
        --steps "$STEPS" --threads "$THREADS" 2>/dev/null \
        | python3 -c "import json,sys; r=json.load(sys.stdin); r.update(side='ours', model='$model', method='$m'); print(json.dumps(r))" >>"$results"
      HF_HUB_OFFLINE=1 "$venv/bin/python" tests/reference/bench_torch.py --model "$torch_model" \
        "${cfg_args[@]}" --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" --threads "$THREADS" 2>/dev/null \
        | python3 -c "import json,sys; r=json.load(sys.stdin); r.update(side='torch', model='$model', method='$m'); print(json.dumps(r))" >>"$results"
    done
  done
  if [ "$GENERATE" -gt 0 ]; then
    lora_cfg=$(export_config lora "$model")
    for rep in $(seq "$REPS"); do
      echo "[$model generation, repetition $rep/$REPS]" >&2
      "$bin" bench --model "$model" --preset presets/lora.toml --generate "$GENERATE" \
        --prompt "$PROMPT" --steps "$STEPS" --threads "$THREADS" 2>/dev/null \
        | python3 -c "import json,sys; r=json.load(sys.stdin); r.update(side='ours', model='$model'); print(json.dumps(r))" >>"$generated"
      HF_HUB_OFFLINE=1 "$venv/bin/python" tests/reference/bench_torch.py \
        --model "$torch_model" --adapter-config "$lora_cfg" --prompt "$PROMPT" \
        --generate "$GENERATE" --steps "$STEPS" --threads "$THREADS" 2>/dev/null \
        | python3 -c "import json,sys; r=json.load(sys.stdin); r.update(side='torch', model='$model'); print(json.dumps(r))" >>"$generated"
    done
  fi
done
# KEEP=FILE keeps every run's JSON (one per line) for a closer look.
if [ -n "${KEEP:-}" ]; then cp "$results" "$KEEP"; fi
python3 - "$results" "$BATCH" "$SEQ" "$THREADS" <<'PY'
import collections, json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = collections.defaultdict(lambda: collections.defaultdict(list))
for r in rows:
    by[(r["model"], r["method"])][r["side"]].append(r)
print(f"batch {sys.argv[2]} x {sys.argv[3]} tokens, {sys.argv[4]} threads, f32, AdamW; medians of {len(rows) // max(len(by), 1) // 2} alternating runs\n")
print("| model | method | trainable (ours / torch) | ours tok/s | torch tok/s | ours / torch | fastest step, ours / torch | ours peak | torch peak | ours peak / torch | ours useful GFLOP/s | matmul GFLOP/s | useful / matmul |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for (model, method), sides in by.items():
    o, t = sides["ours"], sides["torch"]
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    # The fastest step of all runs, as a speed ratio: on a shared machine other load only
    # ever slows a step down, so the fastest is the least disturbed.
    fastest = lambda rs: min(r["fastest_ms_per_step"] for r in rs)
    ot, tt = med(o, "tokens_per_second"), med(t, "tokens_per_second")
    print(f"| {model.split('/')[-1]} | {method} | {o[0]['trainable_params']} / {t[0]['trainable_params']} | "
          f"{ot:.0f} | {tt:.0f} | {ot / tt:.2f} | {fastest(t) / fastest(o):.2f} | {med(o, 'peak_rss_bytes') / 1e9:.2f} GB | "
          f"{med(t, 'peak_rss_bytes') / 1e9:.2f} GB | {med(o, 'peak_rss_bytes') / med(t, 'peak_rss_bytes'):.2f} | "
          f"{med(o, 'useful_gflops'):.0f} | {med(o, 'matmul_gflops'):.0f} | {med(o, 'useful_fraction'):.2f} |")
PY
python3 - "$generated" "$PROMPT" "$GENERATE" "$THREADS" <<'PY'
import collections, json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
if not rows:
    sys.exit(0)
by = collections.defaultdict(lambda: collections.defaultdict(list))
for r in rows:
    by[r["model"]][r["side"]].append(r)
print(f"\ngreedy generation with the key/value cache, LoRA attached: prompt {sys.argv[2]} tokens, "
      f"{sys.argv[3]} new, {sys.argv[4]} threads, f32\n")
print("| model | ours decode tok/s | torch decode tok/s | ours / torch | ours prefill ms | torch prefill ms | ours peak | torch peak |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for model, sides in by.items():
    o, t = sides["ours"], sides["torch"]
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    od, td = med(o, "decode_tokens_per_second"), med(t, "decode_tokens_per_second")
    print(f"| {model.split('/')[-1]} | {od:.1f} | {td:.1f} | {od / td:.2f} | {med(o, 'prefill_ms'):.0f} | "
          f"{med(t, 'prefill_ms'):.0f} | {med(o, 'peak_rss_bytes') / 1e9:.2f} GB | {med(t, 'peak_rss_bytes') / 1e9:.2f} GB |")
PY
