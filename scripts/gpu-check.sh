#!/usr/bin/env bash
# One short check of the CUDA backend on an NVIDIA machine. Exits non-zero on any mismatch.
#
#  1. builds with --features cuda (scripts/build-cuda.sh: toolkit from PyPI wheels) and runs
#     the reference tests on the GPU (PEFT_WORKBENCH_TEST_DEVICE=cuda:0): the built-in
#     model, SmolLM2, MiniLM and GPT-2 against their transformers fixtures, exports and
#     merges of every method, generation, with the tests' own tolerances (1e-3 on the
#     built-in model's logits) and the bf16/f16 forward pass (0.1 / 0.015);
#     with BIN=prebuilt-binary instead (a GPU machine with no Rust or no network: build it
#     elsewhere with `bash scripts/build-cuda.sh --release --no-default-features`), no build
#     and no cargo tests, the CUDA libraries taken from the machine's NVIDIA Python wheels;
#  2. always: the reference logits through the CLI on the GPU (`logits --device`): the
#     built-in model, GPT-2, SmolLM2 and the adapters PEFT itself made for seven methods,
#     within 1e-2 of transformers/PEFT;
#  3. the first steps of LoRA on SmolLM2-135M on the CPU and on the GPU, same seed and
#     data: the losses must agree (f32: 1e-2 relative; bf16: 5e-2);
#  4. LoRA on SmolLM2-135M for STEPS steps (default 300) on the GPU in f32 and in bf16,
#     with tokens/s and peak GPU memory (nvidia-smi, sampled every 100 ms) printed next to
#     the CPU's tokens/s; the evaluation loss must fall.
# Without models/smollm2-135m-instruct-q4_1.gguf (scripts/fetch-models.sh) steps 3-4 use
# the built-in model and say so.
#
# Needs: an NVIDIA driver, nvidia-smi, python3; network for the wheels and models on the
# first run unless BIN is given. About 15 minutes on a fresh machine, most of it the build.
# Usage: bash scripts/gpu-check.sh
#   env: STEPS (300), GPU (0), BIN, OUT (a folder), PRECISIONS ("f32 bf16"), DEV (cuda:$GPU;
#        DEV=cpu PRECISIONS=f32 runs the script's own logic on a machine without a GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-300}
GPU=${GPU:-0}
DEV=${DEV:-cuda:$GPU}
PRECISIONS=${PRECISIONS:-f32 bf16}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
fail() { echo "GPU CHECK FAILED: $*" >&2; exit 1; }

command -v nvidia-smi >/dev/null || fail "nvidia-smi not found: this is not an NVIDIA machine"
nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap --format=csv

if [ -z "${BIN:-}" ]; then
  bash scripts/fetch-models.sh >/dev/null
  echo "== build (release, --features cuda)"
  bash scripts/build-cuda.sh --release --bin peft-workbench
  # shellcheck source=/dev/null
  source target/cuda/env.sh
  BIN=target/cuda/release/peft-workbench
  echo "== reference tests on $DEV"
  PEFT_WORKBENCH_TEST_DEVICE=$DEV cargo test --release --features cuda \
    --test reference --test real_models --test gpt2 --test export \
    || fail "a reference test failed on the GPU"
else
  # cuBLAS, cuRAND and the runtime from the machine's own NVIDIA wheels (PyTorch's).
  libs=$(python3 -c 'import nvidia, os; print(":".join(os.path.join(p, "cu13", "lib") for p in nvidia.__path__))' 2>/dev/null || true)
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
"$BIN" --help >/dev/null || fail "$BIN does not start (missing CUDA libraries?)"

echo "== reference logits through the CLI on $DEV (within 1e-2)"
python3 - "$BIN" "$DEV" <<'EOF' || fail "logits on the GPU differ from the references"
import json, os, subprocess, sys
bin, dev = sys.argv[1], sys.argv[2]
fx = "tests/fixtures"
checks = [("built-in", "builtin", None, json.load(open(f"{fx}/builtin_logits.json"))["cases"]),
          ("GPT-2", f"{fx}/tiny-gpt2", None, json.load(open(f"{fx}/tiny-gpt2/logits.json"))["cases"])]
if os.path.exists("models/smollm2-135m-instruct-q4_1.gguf"):
    checks.append(("SmolLM2", "models/smollm2-135m-instruct-q4_1.gguf", None,
                   json.load(open(f"{fx}/smollm2_logits.json"))["cases"]))
for method, cases in json.load(open(f"{fx}/peft_made/expected.json"))["adapters"].items():
    checks.append((f"PEFT {method}", "builtin", f"{fx}/peft_made/{method}", cases))
ok = True
for name, model, adapter, cases in checks:
    worst = 0.0
    for case in cases:
        cmd = [bin, "logits", "--model", model, "--text", case["text"], "--device", dev]
        if adapter:
            cmd += ["--adapter", adapter]
        got = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        if got["token_ids"] != case["token_ids"]:
            print(f"{name}: token ids differ for {case['text']!r}")
            ok = False
        want = case["logits"]  # a list, or {index: logit} for a sample of a large vocabulary
        pairs = want.items() if isinstance(want, dict) else enumerate(want)
        worst = max([worst] + [abs(got["logits"][int(i)] - w) for i, w in pairs])
    good = worst <= 1e-2
    ok &= good
    print(f"{name:20s} {len(cases)} texts  worst logit difference {worst:.2e} {'ok' if good else 'MISMATCH'}")
sys.exit(0 if ok else 1)
EOF

PRESET=presets/smollm2-lora.toml
if [ ! -f models/smollm2-135m-instruct-q4_1.gguf ]; then
  echo "models/smollm2-135m-instruct-q4_1.gguf is missing: the training checks use the built-in model"
  PRESET=presets/lora.toml
fi
train() { # name, device, precision, steps
  "$BIN" train "$PRESET" --out "$OUT/$1" --steps "$4" \
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

echo "== first steps: CPU against GPU ($PRESET)"
train cpu-steps cpu f32 4
for p in $PRECISIONS; do train "gpu-steps-$p" "$DEV" "$p" 4; done
python3 - "$OUT" $PRECISIONS <<'EOF' || fail "GPU losses differ from the CPU's"
import json, sys
out, precisions = sys.argv[1], sys.argv[2:]
def losses(name):
    rows = [json.loads(l) for l in open(f"{out}/{name}/metrics.jsonl")]
    return [r["loss"] for r in rows if r["type"] in ("step", "eval")]
cpu = losses("cpu-steps")
ok = True
for p in precisions:
    name, tol = f"gpu-steps-{p}", (1e-2 if p == "f32" else 5e-2)
    gpu = losses(name)
    worst = max(abs(a - b) / abs(a) for a, b in zip(cpu, gpu))
    good = len(cpu) == len(gpu) and worst <= tol
    ok &= good
    print(f"{name:15s} losses {['%.4f' % x for x in gpu]}  vs CPU {['%.4f' % x for x in cpu]}"
          f"  worst relative difference {worst:.2e} (allowed {tol:g}) {'ok' if good else 'MISMATCH'}")
sys.exit(0 if ok else 1)
EOF

echo "== $STEPS steps of $PRESET on the GPU"
for p in $PRECISIONS; do with_gpu_memory "gpu-$p" train "gpu-$p" "$DEV" "$p" "$STEPS"; done
cpu_threads=$(nproc)
python3 - "$OUT" "$cpu_threads" $PRECISIONS <<'EOF' || fail "a GPU run did not learn"
import json, sys
out, threads, precisions = sys.argv[1], sys.argv[2], sys.argv[3:]
ok = True
cpu = json.load(open(f"{out}/cpu-steps.json"))
print(f"{'run':10s} {'tokens/s':>10s} {'peak memory':>14s} {'eval loss':>20s}")
print(f"{'cpu f32':10s} {cpu['tokens_per_second']:10.0f} {cpu['peak_rss_bytes'] / 2**30:10.2f} GiB"
      f"  (host RAM, {threads} threads, {cpu['steps']} steps)")
for name in (f"gpu-{p}" for p in precisions):
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
