#!/usr/bin/env bash
# The learning-rate sweep behind presets/compare-all.toml's [learning_rates]: every method of
# a comparison file, each at its conventional rate times each of FACTORS, scored on the eval
# split (never on the reserved reviews, which the project does not have). Prints a Markdown
# table (method, rate, eval loss, metric) and the best rate of each method; every run's
# folder stays under OUT.
#   bash scripts/sweep-lr.sh                       # presets/compare-all.toml, factors 1/3 1 3 10
#   FACTORS="1 3" METHODS="lora ia3" STEPS=100 SET="eval_every=100" bash scripts/sweep-lr.sh
# EXE=path runs that binary instead of building this tree's release one.
set -euo pipefail
cd "$(dirname "$0")/.."
file=${FILE:-presets/compare-all.toml}
out=${OUT:-runs/sweep}
factors=${FACTORS-"0.333 1 3 10"}
methods=${METHODS:-"full freeze lora dora adalora ia3 bitfit adapter prompt-tuning p-tuning prefix-tuning p-tuning-v2"}
extra=()
[ -n "${STEPS:-}" ] && extra+=(--steps "$STEPS")
for kv in ${SET:-}; do extra+=(--set "$kv"); done
exe=${EXE:-target/release/peft-workbench}
[ -n "${EXE:-}" ] || cargo build --release --quiet
mkdir -p "$out"
# The conventional rate of each method, as compare uses it (read from its own dry listing).
rates=$("$exe" compare "$file" --dry-run)
for m in $methods; do
  base=$(awk -v m="$m" '$1 == m { print $2 }' <<<"$rates")
  [ -n "$base" ] || { echo "unknown method $m" >&2; exit 2; }
  for f in $factors; do
    lr=$(python3 -c "print(f'{$base * $f:.1e}')")
    dir="$out/$m-$lr"
    if [ -f "$dir/$m/summary.json" ]; then continue; fi
    rm -rf "$dir"
    # One method at one rate: the comparison file with its rate for this method.
    "$exe" compare "$file" --only "$m" --set "optimizer.lr=$lr" "${extra[@]}" --out "$dir" >/dev/null
  done
done
python3 - "$out" $methods <<'PY'
import json, pathlib, sys
out, methods = pathlib.Path(sys.argv[1]), sys.argv[2:]
print("| method | lr | eval loss | metric |\n|---|---:|---:|---:|")
best = {}
def rate(d, m):
    # `p-tuning-*` also matches `p-tuning-v2-*`: only a rate may follow the method.
    try:
        return float(d.name[len(m) + 1:])
    except ValueError:
        return None
for m in methods:
    runs = [d for d in out.glob(f"{m}-*") if rate(d, m) is not None]
    for d in sorted(runs, key=lambda d: rate(d, m)):
        s = d / m / "summary.json"
        if not s.is_file():
            print(f"| {m} | {d.name[len(m) + 1:]} | failed | |")
            continue
        s = json.loads(s.read_text())
        lr = d.name[len(m) + 1:]
        print(f"| {m} | {lr} | {s['final_eval_loss']:.3f} | {s['metric_value']:.3f} |")
        key = (s["metric_value"], -s["final_eval_loss"])
        if m not in best or key > best[m][0]:
            best[m] = (key, lr)
print("\nBest rate per method (metric, then eval loss):")
for m, (_, lr) in best.items():
    print(f"{m} = {lr}")
PY
