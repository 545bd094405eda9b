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
# Each script owns its skip logic (a _DONE.json marker with matching parameters and inputs), so a
# step behaves the same alone and here; this file only sequences them. The comparison steps and
# whether each runs a model come from the step registry (uv run python -m brittle.steps).
set -euo pipefail
cd "$(dirname "$0")"

usage() { sed -n '2,15p' "$0"; }
fail() { echo "error: $*" >&2; exit 2; }
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
    --preset|--base|--filtered|--unlearned|--device|--output-root)
      [[ $# -ge 2 && "$2" != --* ]] || fail "$1 needs a value (see ./pipeline.sh --help)"
      case "$1" in
        --preset) preset="$2" ;;
        --base) base_flag="$2" ;;
        --filtered) filtered_flag="$2" ;;
        --unlearned) unlearned_flag+=("$2") ;;
        --device) device="$2" ;;
        --output-root) root="$2" ;;
      esac
      shift 2 ;;
    --force) force=(--force); shift ;;
    --no-unlearn) do_unlearn=0; shift ;;
    --no-relearn) do_relearn=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) fail "unknown argument '$1' (see ./pipeline.sh --help)" ;;
  esac
done

env_file="presets/${preset}.env"
[[ -f "$env_file" ]] || fail "no preset file $env_file (known: $(ls presets | sed 's/\.env//' | tr '\n' ' '))"
# shellcheck disable=SC1090
source "$env_file"
BASE_MODEL="${base_flag:-$BASE_MODEL}"
FILTERED_MODEL="${filtered_flag:-$FILTERED_MODEL}"

if ! command -v uv >/dev/null 2>&1; then
  echo "uv is not installed: installing it with 'python3 -m pip install uv'"
  python3 -m pip install --quiet uv
fi
# Tiny models are dominated by per-op overhead: one thread per process is faster, and on a shared
# machine it avoids oversubscribing the cores (presets set CPU_THREADS; unset = library default).
if [[ -n "${CPU_THREADS:-}" ]]; then
  export OMP_NUM_THREADS="$CPU_THREADS" MKL_NUM_THREADS="$CPU_THREADS" OPENBLAS_NUM_THREADS="$CPU_THREADS"
fi
common=(--preset "$preset" --output-root "$root" "${force[@]}")
started=$(date +%s)
stage_names=() stage_seconds=()
stage_began=$started
stage_loads=()
load_average() { cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?"; }
stage() {  # close the previous stage's timer (with the machine's 1-minute load average), open the next
  local now; now=$(date +%s)
  if [[ ${#stage_names[@]} -gt 0 ]]; then stage_seconds+=($(( now - stage_began ))); stage_loads+=("$(load_average)"); fi
  stage_names+=("$1"); stage_began=$now
  echo; echo "######## $1"
}
step() { echo; echo "== $*"; uv run "$@"; }
# Independent jobs: background NAME CMD... starts one with its output in $root/_logs/NAME.log;
# wait_background waits for all, prints a line per job and stops the pipeline if one failed.
jobs_started=()
background() {
  local name="$1"; shift
  mkdir -p "$root/_logs"
  echo "== [started] $name: $*"
  ( "$@" >"$root/_logs/$name.log" 2>&1 ) &
  jobs_started+=("$name:$!")
}
wait_background() {
  local entry name pid failed=0
  for entry in "${jobs_started[@]}"; do
    name="${entry%%:*}" pid="${entry##*:}"
    if wait "$pid"; then
      echo "== [done] $name ($(tail -n 1 "$root/_logs/$name.log"))"
    else
      echo "== [failed] $name; the end of $root/_logs/$name.log:" >&2
      tail -n 5 "$root/_logs/$name.log" >&2
      failed=1
    fi
  done
  jobs_started=()
  [[ $failed == 0 ]] || fail "a background job failed (see above)"
}
slug() { if [[ -d "$1" ]]; then basename "$(cd "$1" && pwd)"; else echo "${1//\//_}"; fi; }

stage "data and models"
# --- 1. Data: forget/retain texts, questions and (tiny world) the pretraining corpora -------------
step create_datasets.py --preset "$preset" "${force[@]}"

# --- 2. The tiny world trains its base and filtered models from one initialisation ---------------
# The thread count changes the last bits of the trained weights (and so every later number): pin it.
# The two trainings are independent: they run at once, one core each, logs under $root/_logs/.
if [[ "$DATA_SOURCE" == synthetic && -z "$base_flag" ]]; then
  threads=(--threads "${CPU_THREADS:-auto}")
  background pretrain_base uv run pretrain.py --corpus "$DATA_DIR/corpus/full.txt" --outdir "$BASE_MODEL" \
    --device "$device" "${threads[@]}" --quiet "${force[@]}"
  background pretrain_filtered uv run pretrain.py --corpus "$DATA_DIR/corpus/filtered.txt" \
    --tokenizer-corpus "$DATA_DIR/corpus/full.txt" --outdir "$FILTERED_MODEL" --device "$device" "${threads[@]}" \
    --quiet "${force[@]}"
  wait_background
fi

# --- 3. Unlearned models: ours (one per method) plus the preset's published ones ------------------
stage "unlearning"
if [[ $do_unlearn == 1 && ${#unlearned_flag[@]} == 0 ]]; then
  # UNLEARN_ARGS (preset) holds extra unlearn.py flags, e.g. tofu's --forget-format pairs
  # shellcheck disable=SC2086
  ./create_all_unlearning_models.sh --preset "$preset" --base "$BASE_MODEL" "${force[@]}" -- --device "$device" ${UNLEARN_ARGS:-}
fi
# The control edit: a benign fine-tune on retain text, as large a weight change as the median
# unlearned model; every step runs on it and the report shows it beside the unlearned models.
if [[ $do_unlearn == 1 && ${#unlearned_flag[@]} == 0 ]]; then
  made=()
  for d in unlearned_models/"$(slug "$BASE_MODEL")"__*/; do
    [[ -f "$d/config.json" && "$d" != *__control/ ]] && made+=("${d%/}")
  done
  if [[ ${#made[@]} -gt 0 ]]; then
    step unlearn.py --method control --preset "$preset" --model "$BASE_MODEL" --match-dw-norm "${made[@]}" \
      --outdir "unlearned_models/$(slug "$BASE_MODEL")__control" --device "$device" --no-progress "${force[@]}"
  fi
fi
unlearned=("${unlearned_flag[@]}")
if [[ ${#unlearned_flag[@]} == 0 ]]; then
  for m in ${PUBLISHED_UNLEARNED:-}; do unlearned+=("$m"); done
  for d in unlearned_models/"$(slug "$BASE_MODEL")"__*/; do
    [[ -f "$d/config.json" ]] && unlearned+=("${d%/}")
  done
fi
echo "unlearned models: ${unlearned[*]:-(none)}"

# --- 4. Every comparison step for base->filtered and base->each unlearned model -------------------
stage "comparisons"
mapfile -t comparison_steps < <(uv run python -m brittle.steps scripts comparison)
[[ ${#comparison_steps[@]} -gt 0 ]] || fail "the step registry listed no comparison steps (uv run python -m brittle.steps)"
compare() {
  local a="$1" b="$2" script kind
  for entry in "${comparison_steps[@]}"; do
    script="${entry%%$'\t'*}" kind="${entry##*$'\t'}"
    if [[ "$kind" == device ]]; then
      step "$script" --model-a "$a" --model-b "$b" --device "$device" "${common[@]}"
    else
      step "$script" --model-a "$a" --model-b "$b" "${common[@]}"
    fi
  done
}
compare "$BASE_MODEL" "$FILTERED_MODEL"
for u in "${unlearned[@]}"; do compare "$BASE_MODEL" "$u"; done

# --- 5. Per model: knowledge (evaluation), where it is readable (probes), how fast it returns -----
stage "evaluation and probes"
for m in "$BASE_MODEL" "$FILTERED_MODEL" "${unlearned[@]}"; do
  if [[ -d "$DATA_DIR/questions" ]]; then
    step evaluate.py --model "$m" --device "$device" "${common[@]}"
  fi
  # probes after the comparisons: they read the activation cache those passes filled
  step linear_probe_analysis.py --model "$m" --device "$device" "${common[@]}"
  # the knowledge probe needs the facts behind the questions: the tiny world's facts.csv
  if [[ -f "$DATA_DIR/facts.csv" ]]; then
    step knowledge_probe_analysis.py --model "$m" --device "$device" "${common[@]}"
  fi
done
stage "relearning attacks"
if [[ $do_relearn == 1 && -f "$DATA_DIR/attack/hazard_train.txt" ]]; then
  for m in "$BASE_MODEL" "$FILTERED_MODEL" "${unlearned[@]}"; do
    for attack in hazard benign; do
      step relearn.py --model "$m" --attack "$attack" --base "$BASE_MODEL" --filtered "$FILTERED_MODEL" \
        --device "$device" "${common[@]}"
    done
  done
fi

# --- 6. Layer-wise forgetting: unlearned vs the model it came from and a model that never knew ----
stage "layer-wise forgetting"
if [[ ${#unlearned[@]} -gt 0 ]]; then
  step layerwise_forgetting.py --reference "${REFERENCE_MODEL:-$FILTERED_MODEL}" --finetuned "$BASE_MODEL" \
    --unlearned "${unlearned[@]}" --device "$device" "${common[@]}"
fi

# --- 7. The report: signatures beside brittleness ------------------------------------------------
stage "report"
step report.py --base "$BASE_MODEL" --filtered "$FILTERED_MODEL" ${unlearned[@]:+--unlearned "${unlearned[@]}"} \
  --preset "$preset" --output-root "$root"
stage_seconds+=($(( $(date +%s) - stage_began ))); stage_loads+=("$(load_average)")
echo
echo "pipeline finished in $(( $(date +%s) - started )) s on $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?') cores; report: $root/report.md"
printf '  %-24s %8s %s\n' stage seconds "load average at its end"
for i in "${!stage_names[@]}"; do
  printf '  %-24s %6d s %s\n' "${stage_names[$i]}" "${stage_seconds[$i]}" "${stage_loads[$i]}"
done
