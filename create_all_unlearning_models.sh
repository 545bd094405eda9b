#!/usr/bin/env bash
# Create one unlearned model per method for a preset's base model.
#
#   ./create_all_unlearning_models.sh                      # tiny preset, every method in UNLEARN_METHODS
#   ./create_all_unlearning_models.sh --preset deep-ignorance
#   ./create_all_unlearning_models.sh --methods "npo rmu" --force
#   ./create_all_unlearning_models.sh --base models/other-base     # another base model
#   ./create_all_unlearning_models.sh -- --dtype bfloat16   # anything after -- goes to unlearn.py
#   (--preset also accepts a path to a preset file)
#
# Reads presets/<preset>.env (BASE_MODEL, UNLEARN_METHODS). Writes unlearned_models/<base>__<method>/
# for each method; a finished model with the same parameters and inputs is skipped by unlearn.py
# itself, --force retrains. UNLEARN_LAUNCHER (e.g. "uv run accelerate launch") replaces the default
# "uv run" launcher for multi-GPU runs.
set -euo pipefail

fail() { echo "error: $*" >&2; exit 2; }
preset=tiny
methods=""
base=""
force=()
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --preset|--methods|--base)
      [[ $# -ge 2 && "$2" != --* ]] || fail "$1 needs a value (see --help)"
      case "$1" in --preset) preset="$2" ;; --methods) methods="$2" ;; --base) base="$2" ;; esac
      shift 2 ;;
    --force) force=(--force); shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) fail "unknown argument $1 (see --help)" ;;
  esac
done

if [[ -f "$preset" ]]; then env_file="$(cd "$(dirname "$preset")" && pwd)/$(basename "$preset")"
else env_file="presets/${preset}.env"; fi
cd "$(dirname "$0")"    # model and data paths in presets are relative to the repository root
[[ -f "$env_file" ]] || fail "no preset file $env_file"
# shellcheck disable=SC1090
source "$env_file"
methods="${methods:-${UNLEARN_METHODS:-}}"
[[ -n "$methods" ]] || fail "$env_file sets no UNLEARN_METHODS"
command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
read -r -a launcher <<< "${UNLEARN_LAUNCHER:-uv run}"

for method in $methods; do
  echo "== unlearn ${base:-$BASE_MODEL} with ${method} (preset ${preset})"
  "${launcher[@]}" unlearn.py --preset "$env_file" --model "${base:-$BASE_MODEL}" --method "$method" \
    "${force[@]}" "${extra[@]}"
done
