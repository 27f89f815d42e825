#!/usr/bin/env bash
# One short check of the CUDA backend on an NVIDIA machine. Exits non-zero on any mismatch.
#
#  1. builds with --features cuda (scripts/build-cuda.sh: toolkit from PyPI wheels);
#  2. runs the reference tests on the GPU (PEFT_WORKBENCH_TEST_DEVICE=cuda:0): the built-in
#     model, SmolLM2, MiniLM and GPT-2 against their transformers fixtures, exports and
#     merges of every method, generation — with the tests' own CPU tolerances (1e-3 on the
#     built-in model's logits, stricter than the 1e-2 asked of the GPU), and the bf16/f16
#     forward pass (0.1 / 0.015 on the logits);
#  3. the first steps of LoRA on SmolLM2-135M on the CPU and on the GPU, same seed and
#     data: the losses must agree (f32: 1e-2 relative; bf16: 5e-2);
#  4. LoRA on SmolLM2-135M for STEPS steps (default 300) on the GPU in f32 and in bf16,
#     with tokens/s and peak GPU memory (nvidia-smi, sampled every 100 ms) printed next to
#     the CPU's tokens/s; the evaluation loss must fall.
#
# Needs: an NVIDIA driver, nvidia-smi, python3, network for the wheels and models on the
# first run (both are cached). Takes about 15 minutes on a fresh machine, most of it the
# build. Usage: bash scripts/gpu-check.sh     env: STEPS (300), GPU (0)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-300}
GPU=${GPU:-0}
DEV=cuda:$GPU
OUT=${OUT:-$(mktemp -d)}
fail() { echo "GPU CHECK FAILED: $*" >&2; exit 1; }

command -v nvidia-smi >/dev/null || fail "nvidia-smi not found: this is not an NVIDIA machine"
nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap --format=csv
bash scripts/fetch-models.sh >/dev/null

echo "== build (release, --features cuda)"
bash scripts/build-cuda.sh --release --bin peft-workbench
# shellcheck source=/dev/null
source target/cuda/env.sh
BIN=target/cuda/release/peft-workbench
"$BIN" --help >/dev/null

echo "== reference tests on $DEV"
PEFT_WORKBENCH_TEST_DEVICE=$DEV cargo test --release --features cuda \
  --test reference --test real_models --test gpt2 --test export \
  || fail "a reference test failed on the GPU"

SMOL=models/smollm2-135m-instruct-q4_1.gguf
train() { # name, device, precision, steps
  "$BIN" train presets/smollm2-lora.toml --out "$OUT/$1" --steps "$4" \
    --set device="$2" --set precision="$3" --set eval_every=50 --set checkpoint_every=0 \
    > "$OUT/$1.json" 2> "$OUT/$1.log" || { tail -5 "$OUT/$1.log"; fail "training $1 failed"; }
}
# Peak memory.used of the GPU while a command runs (MiB), from nvidia-smi every 100 ms.
with_gpu_memory() { # name, command...
  local name=$1; shift
  nvidia-smi --id="$GPU" --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 \
    > "$OUT/$name.mem" &
  local smi=$!
  "$@"
  kill "$smi" 2>/dev/null || true
  wait "$smi" 2>/dev/null || true
}

echo "== first steps: CPU against GPU (LoRA r8 q,v on SmolLM2-135M, batch 8)"
train cpu-steps cpu f32 4
train gpu-steps "$DEV" f32 4
train gpu-steps-bf16 "$DEV" bf16 4
python3 - "$OUT" <<'EOF' || fail "GPU losses differ from the CPU's"
import json, sys
out = sys.argv[1]
def losses(name):
    rows = [json.loads(l) for l in open(f"{out}/{name}/metrics.jsonl")]
    return [r["loss"] for r in rows if r["type"] in ("step", "eval")]
cpu = losses("cpu-steps")
ok = True
for name, tol in [("gpu-steps", 1e-2), ("gpu-steps-bf16", 5e-2)]:
    gpu = losses(name)
    worst = max(abs(a - b) / abs(a) for a, b in zip(cpu, gpu))
    good = len(cpu) == len(gpu) and worst <= tol
    ok &= good
    print(f"{name:15s} losses {['%.4f' % x for x in gpu]}  vs CPU {['%.4f' % x for x in cpu]}"
          f"  worst relative difference {worst:.2e} (allowed {tol:g}) {'ok' if good else 'MISMATCH'}")
sys.exit(0 if ok else 1)
EOF

echo "== $STEPS steps of LoRA on SmolLM2-135M"
with_gpu_memory gpu-f32 train gpu-f32 "$DEV" f32 "$STEPS"
with_gpu_memory gpu-bf16 train gpu-bf16 "$DEV" bf16 "$STEPS"
cpu_threads=$(nproc)
python3 - "$OUT" "$cpu_threads" <<'EOF' || fail "a GPU run did not learn"
import json, sys
out, threads = sys.argv[1], sys.argv[2]
ok = True
cpu = json.load(open(f"{out}/cpu-steps.json"))
print(f"{'run':10s} {'tokens/s':>10s} {'peak memory':>14s} {'eval loss':>20s}")
print(f"{'cpu f32':10s} {cpu['tokens_per_second']:10.0f} {cpu['peak_rss_bytes'] / 2**30:10.2f} GiB"
      f"  (host RAM, {threads} threads, {cpu['steps']} steps)")
for name in ("gpu-f32", "gpu-bf16"):
    s = json.load(open(f"{out}/{name}.json"))
    mem = max((int(l) for l in open(f"{out}/{name}.mem") if l.strip().isdigit()), default=0)
    learned = s["final_eval_loss"] < s["initial_eval_loss"]
    ok &= learned
    print(f"{name:10s} {s['tokens_per_second']:10.0f} {mem / 1024:10.2f} GiB"
          f"  {s['initial_eval_loss']:.3f} -> {s['final_eval_loss']:.3f}"
          f" {'' if learned else 'DID NOT FALL'}")
sys.exit(0 if ok else 1)
EOF
echo "GPU CHECK PASSED (runs in $OUT)"
