#!/usr/bin/env bash
# Run the whole experiment for one preset, in order, skipping steps that already finished.
#
#   ./pipeline.sh                          # the tiny world: data, two models, unlearning, every step, report
#   ./pipeline.sh --preset deep-ignorance  # EleutherAI's 6.9B models (GPU + HuggingFace access)
#   ./pipeline.sh --preset tofu            # Llama-3.2-1B TOFU forget10: layer-wise forgetting of IdkDPO
#   ./pipeline.sh --force                  # recompute everything
#   ./pipeline.sh --base A --filtered B --unlearned C [--unlearned D ...] --no-unlearn   # your own models
#   ./pipeline.sh --jobs 1                 # one job at a time
#
# Options: --preset NAME, --force, --base M, --filtered M, --unlearned M (repeatable),
#          --no-unlearn (do not train unlearned models), --no-relearn (skip relearning attacks),
#          --device DEV (auto, cpu, cuda), --output-root DIR (default outputs),
#          --jobs N (independent jobs at once: default the core count for presets that pin one
#          thread per process, CPU_THREADS=1, else 1; logs per job in <output-root>/_logs/).
# Each script owns its skip logic (a _DONE.json marker with matching parameters and inputs), so a
# step behaves the same alone and here; this file only sequences them. The comparison steps and
# whether each runs a model come from the step registry (uv run python -m brittle.steps).
set -euo pipefail
cd "$(dirname "$0")"

usage() { sed -n '2,18p' "$0"; }
fail() { echo "error: $*" >&2; exit 2; }
preset=tiny
force=()
device=auto
root=outputs
base_flag="" filtered_flag=""
unlearned_flag=()
do_unlearn=1
do_relearn=1
jobs_max=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --preset|--base|--filtered|--unlearned|--device|--output-root|--jobs)
      [[ $# -ge 2 && "$2" != --* ]] || fail "$1 needs a value (see ./pipeline.sh --help)"
      case "$1" in
        --preset) preset="$2" ;;
        --base) base_flag="$2" ;;
        --filtered) filtered_flag="$2" ;;
        --unlearned) unlearned_flag+=("$2") ;;
        --device) device="$2" ;;
        --output-root) root="$2" ;;
        --jobs) [[ "$2" =~ ^[1-9][0-9]*$ ]] || fail "--jobs needs a positive integer, got '$2'"; jobs_max="$2" ;;
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
# Install the locked dependencies and compile their bytecode once (about 30 s the first time, under a
# second after): where PYTHONDONTWRITEBYTECODE is set, as on many shared machines, every script start
# would otherwise recompile some 4,000 library modules, about 8 s of CPU each time.
uv sync --frozen --compile-bytecode --quiet
# Tiny models are dominated by per-op overhead: one thread per process is faster, and on a shared
# machine it avoids oversubscribing the cores (presets set CPU_THREADS; unset = library default).
if [[ -n "${CPU_THREADS:-}" ]]; then
  export OMP_NUM_THREADS="$CPU_THREADS" MKL_NUM_THREADS="$CPU_THREADS" OPENBLAS_NUM_THREADS="$CPU_THREADS"
fi
cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
# One-thread jobs leave the other cores idle unless several run at once; GPU presets share one device.
if [[ -z "$jobs_max" ]]; then
  if [[ "${CPU_THREADS:-}" == 1 ]]; then jobs_max=$cores; else jobs_max=1; fi
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
# deal K ITEM...: the items dealt round-robin into K groups, one group per line (space-separated);
# model paths hold no spaces (unlearned folders are named <base>__<method>). Fewer lines when there are
# fewer items than groups.
deal() {
  local k="$1"; shift
  local i j line
  for (( i = 0; i < k && i < $#; i++ )); do
    line=""
    for (( j = i + 1; j <= $#; j += k )); do line+="${line:+ }${!j}"; done
    echo "$line"
  done
}
# Independent jobs: background NAME CMD... starts one (at most $jobs_max at once) with its output in
# $root/_logs/NAME.log and prints a line when it ends; wait_background waits for all and stops the
# pipeline if one failed. CMD may be a shell function (compare, per_model, ...).
jobs_started=()
background() {
  local name="$1"; shift
  mkdir -p "$root/_logs"
  while (( $(jobs -rp | wc -l) >= jobs_max )); do wait -n || true; done
  echo "== [started] $name"
  (
    set +e
    ( set -e; "$@" ) >"$root/_logs/$name.log" 2>&1   # its own subshell, so a failing step stops the job
    rc=$?
    echo "$rc" >"$root/_logs/$name.status"
    # the log's last line, after its last carriage return (progress bars redraw with \r)
    if [[ $rc == 0 ]]; then echo "== [done] $name ($(tail -n 1 "$root/_logs/$name.log" | tr '\r' '\n' | tail -n 1 | sed 's/^ *//'))"
    else echo "== [failed] $name (exit $rc); the end of $root/_logs/$name.log:" >&2; tail -n 5 "$root/_logs/$name.log" >&2; fi
    exit "$rc"
  ) &
  jobs_started+=("$name")
}
wait_background() {
  local name failed=()
  wait || true
  for name in "${jobs_started[@]}"; do
    [[ "$(cat "$root/_logs/$name.status" 2>/dev/null)" == 0 ]] || failed+=("$name")
  done
  jobs_started=()
  [[ ${#failed[@]} == 0 ]] || fail "background job(s) failed: ${failed[*]} (logs in $root/_logs/)"
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
  for method in ${UNLEARN_METHODS:-}; do
    # shellcheck disable=SC2086
    background "unlearn_$method" ./create_all_unlearning_models.sh --preset "$preset" --base "$BASE_MODEL" \
      --methods "$method" "${force[@]}" -- --device "$device" --no-progress ${UNLEARN_ARGS:-}
  done
  wait_background
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
compare() {  # compare A B...: every comparison step once, for all of B against A
  local a="$1" script kind; shift
  for entry in "${comparison_steps[@]}"; do
    script="${entry%%$'\t'*}" kind="${entry##*$'\t'}"
    if [[ "$kind" == device ]]; then
      step "$script" --model-a "$a" --model-b "$@" --device "$device" "${common[@]}"
    else
      step "$script" --model-a "$a" --model-b "$@" "${common[@]}"
    fi
  done
}
# base -> filtered first: it fills the base model's activation cache, which every other pair reads;
# then the unlearned models in one group per job, each step called once per group (a script takes
# several models B and runs them in one process: one start-up per step and group, not per pair).
compare "$BASE_MODEL" "$FILTERED_MODEL"
part=0
if [[ ${#unlearned[@]} -gt 0 ]]; then
  while read -r -a group; do
    part=$((part + 1))
    background "compare_part$part" compare "$BASE_MODEL" "${group[@]}"
  done < <(deal "$jobs_max" "${unlearned[@]}")
fi
wait_background

# --- 5. Per model: knowledge (evaluation), where it is readable (probes), how fast it returns -----
stage "evaluation and probes"
per_model() {  # per_model M...: evaluation and probes, each script once for all of M
  if [[ -d "$DATA_DIR/questions" ]]; then
    step evaluate.py --model "$@" --device "$device" "${common[@]}"
  fi
  # probes after the comparisons: they read the activation cache those passes filled
  step linear_probe_analysis.py --model "$@" --device "$device" "${common[@]}"
  # the knowledge probe needs the facts behind the questions: the tiny world's facts.csv
  if [[ -f "$DATA_DIR/facts.csv" ]]; then
    step knowledge_probe_analysis.py --model "$@" --device "$device" "${common[@]}"
  fi
}
part=0
while read -r -a group; do
  part=$((part + 1))
  background "models_part$part" per_model "${group[@]}"
done < <(deal "$jobs_max" "$BASE_MODEL" "$FILTERED_MODEL" "${unlearned[@]}")
wait_background
stage "relearning attacks"
if [[ $do_relearn == 1 && -f "$DATA_DIR/attack/hazard_train.txt" ]]; then
  for attack in hazard benign; do
    part=0
    while read -r -a group; do
      part=$((part + 1))
      background "relearn_${attack}_part$part" step relearn.py --model "${group[@]}" --attack "$attack" \
        --base "$BASE_MODEL" --filtered "$FILTERED_MODEL" --device "$device" "${common[@]}"
    done < <(deal "$jobs_max" "$BASE_MODEL" "$FILTERED_MODEL" "${unlearned[@]}")
  done
  wait_background
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
echo "pipeline finished in $(( $(date +%s) - started )) s on $cores cores, $jobs_max job(s) at once; report: $root/report.md"
printf '  %-24s %8s %s\n' stage seconds "load average at its end"
for i in "${!stage_names[@]}"; do
  printf '  %-24s %6d s %s\n' "${stage_names[$i]}" "${stage_seconds[$i]}" "${stage_loads[$i]}"
done
