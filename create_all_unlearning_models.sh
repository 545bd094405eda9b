#!/usr/bin/env bash
# Create one unlearned model per method for a preset's base model.
#
#   ./create_all_unlearning_models.sh                      # tiny preset, every method in UNLEARN_METHODS
#   ./create_all_unlearning_models.sh --preset deep-ignorance
#   ./create_all_unlearning_models.sh --methods "npo rmu" --force
#   ./create_all_unlearning_models.sh -- --dtype bfloat16   # anything after -- goes to unlearn.py
#   (--preset also accepts a path to a preset file)
#
# Reads presets/<preset>.env (BASE_MODEL, DATA_DIR, UNLEARN_METHODS). Writes
# unlearned_models/<base>__<method>/ for each method; a finished model with the same parameters is
# skipped by unlearn.py itself, --force retrains. UNLEARN_LAUNCHER (e.g. "uv run accelerate launch")
# replaces the default "uv run" launcher for multi-GPU runs.
set -euo pipefail

preset=tiny
methods=""
force=()
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --preset) preset="$2"; shift 2 ;;
    --methods) methods="$2"; shift 2 ;;
    --force) force=(--force); shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [[ -f "$preset" ]]; then env_file="$(cd "$(dirname "$preset")" && pwd)/$(basename "$preset")"
else env_file="presets/${preset}.env"; fi
cd "$(dirname "$0")"    # model and data paths in presets are relative to the repository root
[[ -f "$env_file" ]] || { echo "error: no preset file $env_file" >&2; exit 2; }
# shellcheck disable=SC1090
source "$env_file"
methods="${methods:-${UNLEARN_METHODS:-}}"
[[ -n "$methods" ]] || { echo "error: $env_file sets no UNLEARN_METHODS" >&2; exit 2; }
read -r -a launcher <<< "${UNLEARN_LAUNCHER:-uv run}"

for method in $methods; do
  echo "== unlearn ${BASE_MODEL} with ${method} (preset ${preset})"
  "${launcher[@]}" unlearn.py --preset "$env_file" --model "$BASE_MODEL" --data-dir "$DATA_DIR" \
    --method "$method" "${force[@]}" "${extra[@]}"
done
