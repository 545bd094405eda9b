#!/usr/bin/env bash
# Run the whole experiment for one preset, in order, skipping steps that already finished.
#
#   ./pipeline.sh                          # the tiny world: data, two models, unlearning, every step, report
#   ./pipeline.sh --preset deep-ignorance  # EleutherAI's 6.9B models (GPU + HuggingFace access)
#   ./pipeline.sh --preset tofu            # Llama-3.2-1B TOFU forget10: layer-wise forgetting of IdkDPO
#   ./pipeline.sh --force                  # recompute everything
#   ./pipeline.sh --base A --filtered B --unlearned C [--unlearned D ...] --no-unlearn   # your own models
#
# Options: --preset NAME, --force, --base M, --filtered M, --unlearned M (repeatable),
#          --no-unlearn (do not train unlearned models), --no-relearn (skip relearning attacks),
#          --device DEV (auto, cpu, cuda), --output-root DIR (default outputs).
# Each script owns its skip logic (a _DONE.json marker with matching parameters), so a step behaves
# the same alone and here; this file only sequences them.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v uv >/dev/null 2>&1; then
  echo "uv is not installed: installing it with 'python3 -m pip install uv'"
  python3 -m pip install --quiet uv
fi

preset=tiny
force=()
device=auto
root=outputs
base_flag="" filtered_flag=""
unlearned_flag=()
do_unlearn=1
do_relearn=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --preset) preset="$2"; shift 2 ;;
    --force) force=(--force); shift ;;
    --base) base_flag="$2"; shift 2 ;;
    --filtered) filtered_flag="$2"; shift 2 ;;
    --unlearned) unlearned_flag+=("$2"); shift 2 ;;
    --no-unlearn) do_unlearn=0; shift ;;
    --no-relearn) do_relearn=0; shift ;;
    --device) device="$2"; shift 2 ;;
    --output-root) root="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "error: unknown argument '$1' (see ./pipeline.sh --help)" >&2; exit 2 ;;
  esac
done

env_file="presets/${preset}.env"
[[ -f "$env_file" ]] || { echo "error: no preset file $env_file (known: $(ls presets | sed 's/\.env//' | tr '\n' ' '))" >&2; exit 2; }
# shellcheck disable=SC1090
source "$env_file"
BASE_MODEL="${base_flag:-$BASE_MODEL}"
FILTERED_MODEL="${filtered_flag:-$FILTERED_MODEL}"
# Tiny models are dominated by per-op overhead: one thread per process is faster, and on a shared
# machine it avoids oversubscribing the cores (presets set CPU_THREADS; unset = library default).
if [[ -n "${CPU_THREADS:-}" ]]; then
  export OMP_NUM_THREADS="$CPU_THREADS" MKL_NUM_THREADS="$CPU_THREADS" OPENBLAS_NUM_THREADS="$CPU_THREADS"
fi
dev=(--device "$device")
out=(--output-root "$root")
started=$(date +%s)

step() { echo; echo "== $*"; uv run "$@"; }
slug() { if [[ -d "$1" ]]; then basename "$(cd "$1" && pwd)"; else echo "${1//\//_}"; fi; }

# --- 1. Data: forget/retain texts, questions and (tiny world) the pretraining corpora -------------
step create_datasets.py --source "$DATA_SOURCE" --outdir "$DATA_DIR" "${force[@]}"

# --- 2. The tiny world trains its base and filtered models from one initialisation ---------------
if [[ "$preset" == tiny && -z "$base_flag" ]]; then
  step pretrain.py --corpus "$DATA_DIR/corpus/full.txt" --outdir "$BASE_MODEL" --device "$device" "${force[@]}"
  step pretrain.py --corpus "$DATA_DIR/corpus/filtered.txt" --tokenizer-corpus "$DATA_DIR/corpus/full.txt" \
    --outdir "$FILTERED_MODEL" --device "$device" "${force[@]}"
fi

# --- 3. Unlearned models: ours (one per method) plus the preset's published ones ------------------
if [[ $do_unlearn == 1 && ${#unlearned_flag[@]} == 0 ]]; then
  # UNLEARN_ARGS (preset) holds extra unlearn.py flags, e.g. tofu's --forget-format pairs
  # shellcheck disable=SC2086
  ./create_all_unlearning_models.sh --preset "$preset" "${force[@]}" -- --device "$device" ${UNLEARN_ARGS:-}
fi
unlearned=("${unlearned_flag[@]}")
if [[ ${#unlearned_flag[@]} == 0 ]]; then
  for m in ${PUBLISHED_UNLEARNED:-}; do unlearned+=("$m"); done
  for d in unlearned_models/"$(slug "$BASE_MODEL")"__*/; do
    [[ -f "$d/config.json" ]] && unlearned+=("${d%/}")
  done
fi
echo "unlearned models: ${unlearned[*]:-(none)}"

# --- 4. Every diagnostic for base->filtered and base->each unlearned model ------------------------
texts=(--forget-file "$DATA_DIR/forget.txt" --retain-file "$DATA_DIR/retain.txt" \
       --max-samples "$MAX_SAMPLES" --max-length "$MAX_LENGTH")
compare() {
  local a="$1" b="$2"
  # weight space: streamed tensor pairs, no model loaded
  step collect_param_stats.py --model-a "$a" --model-b "$b" "${out[@]}" "${force[@]}"
  step plot_param_stats.py --model-a "$a" --model-b "$b" "${out[@]}" "${force[@]}"
  step analyze_mlp_vs_attn.py --model-a "$a" --model-b "$b" "${out[@]}" "${force[@]}"
  step null_space_analysis.py --model-a "$a" --model-b "$b" "${out[@]}" "${force[@]}"
  step mlp_nullspace_alignment.py --model-a "$a" --model-b "$b" "${out[@]}" "${force[@]}"
  # activation space: one cached forward pass per (model, split) shared by every step
  step collect_activation_norms.py --model-a "$a" --model-b "$b" "${texts[@]}" "${dev[@]}" "${out[@]}" "${force[@]}"
  step plot_activation_norms.py --model-a "$a" --model-b "$b" "${out[@]}" "${force[@]}"
  step activation_separation_analysis.py --model-a "$a" --model-b "$b" "${texts[@]}" "${dev[@]}" "${out[@]}" "${force[@]}"
  step activation_covariance_analysis.py --model-a "$a" --model-b "$b" "${texts[@]}" "${dev[@]}" "${out[@]}" "${force[@]}"
  step row_space_projection_analysis.py --model-a "$a" --model-b "$b" "${texts[@]}" "${dev[@]}" "${out[@]}" "${force[@]}"
  step local_lipschitzness_analysis.py --model-a "$a" --model-b "$b" "${texts[@]}" "${dev[@]}" "${out[@]}" "${force[@]}"
}
compare "$BASE_MODEL" "$FILTERED_MODEL"
for u in "${unlearned[@]}"; do compare "$BASE_MODEL" "$u"; done

# --- 5. Per model: knowledge (evaluation), where it is readable (probes), how fast it returns -----
for m in "$BASE_MODEL" "$FILTERED_MODEL" "${unlearned[@]}"; do
  if [[ -d "$DATA_DIR/questions" ]]; then
    step evaluate.py --model "$m" --data-dir "$DATA_DIR" "${dev[@]}" "${out[@]}" "${force[@]}"
  fi
done
# probes after the comparisons: they read the activation cache those passes filled
for m in "$BASE_MODEL" "$FILTERED_MODEL" "${unlearned[@]}"; do
  step linear_probe_analysis.py --model "$m" "${texts[@]}" "${dev[@]}" "${out[@]}" "${force[@]}"
done
if [[ $do_relearn == 1 && -f "$DATA_DIR/attack/hazard_train.txt" ]]; then
  for m in "$BASE_MODEL" "$FILTERED_MODEL" "${unlearned[@]}"; do
    for attack in hazard benign; do
      step relearn.py --model "$m" --attack "$attack" --preset "$preset" --data-dir "$DATA_DIR" \
        --base "$BASE_MODEL" --filtered "$FILTERED_MODEL" "${dev[@]}" "${out[@]}" "${force[@]}"
    done
  done
fi

# --- 6. Layer-wise forgetting: unlearned vs the model it came from and a model that never knew ----
if [[ ${#unlearned[@]} -gt 0 ]]; then
  lw=(--reference "${REFERENCE_MODEL:-$FILTERED_MODEL}" --finetuned "$BASE_MODEL" --unlearned "${unlearned[@]}" --n-samples all)
  if [[ "$DATA_SOURCE" == tofu ]]; then
    lw+=(--tofu-dir "$DATA_DIR/qa")
  else
    # our questions are cloze prompts ("... answer :"), so no "Answer briefly:" wrapper
    lw+=(--questions "$DATA_DIR/questions/hazard_eval.jsonl" --template "{question}")
  fi
  step layerwise_forgetting.py "${lw[@]}" "${dev[@]}" "${out[@]}" "${force[@]}"
fi

# --- 7. The report: signatures beside brittleness ------------------------------------------------
step report.py --preset "$preset" --base "$BASE_MODEL" --filtered "$FILTERED_MODEL" ${unlearned[@]:+--unlearned "${unlearned[@]}"} "${out[@]}"
echo
echo "pipeline finished in $(( $(date +%s) - started )) s; report: $root/report.md"
