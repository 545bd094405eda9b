#!/usr/bin/env bash
# Create one unlearned model per method for a preset's base model.
#
#   ./create_all_unlearning_models.sh                      # tiny preset, every method in UNLEARN_METHODS
#   ./create_all_unlearning_models.sh --preset deep-ignorance
#   ./create_all_unlearning_models.sh --methods "npo rmu" --force
#   ./create_all_unlearning_models.sh --base models/other-base     # another base model
#   ./create_all_unlearning_models.sh -- --dtype bfloat16   # anything after -- goes to unlearn.py
#   ./create_all_unlearning_models.sh --seeds "0 1 2" --strengths "matched weak"   # the population
#   (--preset also accepts a path to a preset file)
#
# Reads presets/<preset>.env (BASE_MODEL, UNLEARN_METHODS; FILTERED_MODEL with --strengths).
# Writes unlearned_models/<base>__<method>/ for each method; with --seeds and/or --strengths one
# model per (method, seed, strength): <base>__<method>__s<seed>__<strength>/ (unlearn.py --calibrate,
# see docs/unlearning.md), or <base>__<method>__s<seed>/ with --seeds alone. The control edit is not
# calibrated (it unlearns nothing) and is skipped with --strengths. A finished model with the same
# parameters and inputs is skipped by unlearn.py itself, --force retrains. UNLEARN_LAUNCHER (e.g. "uv run accelerate launch") replaces the default
# "uv run" launcher for multi-GPU runs.
set -euo pipefail

fail() { echo "error: $*" >&2; exit 2; }
preset=tiny
methods=""
base=""
seeds=""
strengths=""
force=()
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --preset|--methods|--base|--seeds|--strengths)
      [[ $# -ge 2 && "$2" != --* ]] || fail "$1 needs a value (see --help)"
      case "$1" in --preset) preset="$2" ;; --methods) methods="$2" ;; --base) base="$2" ;;
                   --seeds) seeds="$2" ;; --strengths) strengths="$2" ;; esac
      shift 2 ;;
    --force) force=(--force); shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
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

for s in $seeds; do [[ "$s" =~ ^[0-9]+$ ]] || fail "--seeds takes non-negative integers, not $s"; done
for s in $strengths; do [[ "$s" == matched || "$s" == weak ]] || fail "--strengths takes matched and/or weak, not $s"; done
model="${base:-$BASE_MODEL}"
for method in $methods; do
  if [[ -z "$seeds$strengths" ]]; then   # the default run: one model per method, default name
    echo "== unlearn ${model} with ${method} (preset ${preset})"
    "${launcher[@]}" unlearn.py --preset "$env_file" --model "$model" --method "$method" "${force[@]}" "${extra[@]}"
    continue
  fi
  if [[ -n "$strengths" && "$method" == control ]]; then
    echo "== skip control: it unlearns nothing, so it has no forgetting level to calibrate"
    continue
  fi
  for seed in ${seeds:-0}; do
    for strength in ${strengths:-none}; do
      # unlearn.py names the folder <base>__<method>__s<seed>[__<strength>]
      if [[ "$strength" == none ]]; then cal=(--seeded-name); else cal=(--calibrate "$strength"); fi
      echo "== unlearn ${model} with ${method}, seed ${seed}, strength ${strength} (preset ${preset})"
      "${launcher[@]}" unlearn.py --preset "$env_file" --model "$model" --method "$method" --seed "$seed" \
        "${cal[@]}" "${force[@]}" "${extra[@]}"
    done
  done
done
