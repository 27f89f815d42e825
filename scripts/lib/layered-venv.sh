# Sourced by the verify scripts: layered_venv BASE VENV REQUIREMENTS makes VENV a venv whose
# own packages (REQUIREMENTS, exact pins, installed without dependencies) come first on
# sys.path and whose torch and the rest come from the venv BASE (scripts/verify-peft.sh's):
# for a library that pins an older transformers or peft than the workbench's, without a
# second torch download. Rebuilt when REQUIREMENTS changes.
layered_venv() {
  local base=$1 venv=$2 reqs=$3 site
  if ! "$base/bin/python" -c "import torch" 2>/dev/null; then
    echo "no Python venv with torch in $base: run scripts/verify-peft.sh first" >&2
    return 1
  fi
  if cmp -s "$reqs" "$venv/requirements.txt" 2>/dev/null; then
    return 0
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  site=$("$venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')
  "$base/bin/python" -c 'import site; print(site.getsitepackages()[0])' > "$site/zz-peft-workbench-base.pth"
  "$venv/bin/pip" install -q --no-deps -r "$reqs"
  cp "$reqs" "$venv/requirements.txt"
}
