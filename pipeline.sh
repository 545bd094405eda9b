#!/usr/bin/env bash
# Run the whole experiment for one preset, in order, skipping steps that already finished.
#
#   ./pipeline.sh                          # the tiny world: data, two models, unlearning, every step, report
#   ./pipeline.sh --preset deep-ignorance  # EleutherAI's 6.9B models (GPU + HuggingFace access)
#   ./pipeline.sh --preset tofu            # Llama-3.2-1B TOFU forget10: layer-wise forgetting of IdkDPO
#   ./pipeline.sh --force                  # recompute everything
#   ./pipeline.sh --base A --filtered B --unlearned C [--unlearned D ...] --no-unlearn   # your own models
#   ./pipeline.sh --jobs 1                 # one job at a time
#   ./pipeline.sh --population             # every method x seed x strength, control edits, population report
#   ./pipeline.sh --population --part 3/60 # one group of the population's models (a cluster array task)
#
# Options: --preset NAME, --force, --base M, --filtered M, --unlearned M (repeatable),
#          --no-unlearn (do not train unlearned models), --no-relearn (skip relearning attacks),
#          --device DEV (auto, cpu, cuda), --output-root DIR (default outputs),
#          --jobs N (independent jobs at once: default the core count for presets that pin one
#          thread per process, CPU_THREADS=1, else 1; logs per job in <output-root>/_logs/),
#          --population (POPULATION_SEEDS x POPULATION_STRENGTHS per method, calibrated, plus
#          POPULATION_CONTROL_SEEDS control edits; docs/population.md), --setup-only (data, base,
#          filtered, base -> filtered, then stop), --part I/N (population: make group I of N and run
#          its steps, nothing else; after a --setup-only run; a last run without --part adds the
#          control edits and the report), --seeds "0 1" and --strengths "matched weak" (population:
#          instead of the preset's POPULATION_SEEDS and POPULATION_STRENGTHS).
# Each script owns its skip logic (a _DONE.json marker with matching parameters and inputs), so a
# step behaves the same alone and here; this file only sequences them. The comparison steps and
# whether each runs a model come from the step registry (uv run python -m brittle.steps).
set -euo pipefail
cd "$(dirname "$0")"

usage() { sed -n '2,26p' "$0"; }
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
population=0
setup_only=0
part_index="" part_count=""
seeds_flag="" strengths_flag=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --preset|--base|--filtered|--unlearned|--device|--output-root|--jobs|--part|--seeds|--strengths)
      [[ $# -ge 2 && "$2" != --* ]] || fail "$1 needs a value (see ./pipeline.sh --help)"
      case "$1" in
        --preset) preset="$2" ;;
        --base) base_flag="$2" ;;
        --filtered) filtered_flag="$2" ;;
        --unlearned) unlearned_flag+=("$2") ;;
        --device) device="$2" ;;
        --output-root) root="$2" ;;
        --jobs) [[ "$2" =~ ^[1-9][0-9]*$ ]] || fail "--jobs needs a positive integer, got '$2'"; jobs_max="$2" ;;
        --seeds) seeds_flag="$2" ;;
        --strengths) strengths_flag="$2" ;;
        --part) [[ "$2" =~ ^([1-9][0-9]*)/([1-9][0-9]*)$ && ${BASH_REMATCH[1]} -le ${BASH_REMATCH[2]} ]] \
                  || fail "--part needs I/N with 1 <= I <= N, got '$2'"
                part_index="${BASH_REMATCH[1]}" part_count="${BASH_REMATCH[2]}" ;;
      esac
      shift 2 ;;
    --force) force=(--force); shift ;;
    --no-unlearn) do_unlearn=0; shift ;;
    --no-relearn) do_relearn=0; shift ;;
    --population) population=1; shift ;;
    --setup-only) setup_only=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) fail "unknown argument '$1' (see ./pipeline.sh --help)" ;;
  esac
done

[[ -n "$part_index" && $population == 0 ]] && fail "--part splits the population: use it with --population"
[[ -n "$seeds_flag$strengths_flag" && $population == 0 ]] && fail "--seeds and --strengths span the population: use them with --population"
for s in $strengths_flag; do [[ "$s" == matched || "$s" == weak ]] || fail "--strengths takes matched and/or weak, got '$s'"; done
for s in $seeds_flag; do [[ "$s" =~ ^[0-9]+$ ]] || fail "--seeds takes integers, got '$s'"; done

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
part_count="${part_count:-$jobs_max}"
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
# Steps queued with queue_step run together in one process when run_queued is called
# (brittle/run_scripts.py: each script's main, as uv run would call it): a process start costs
# 3-5 s of CPU in imports, and a group of models goes through some twenty steps.
queued=()
queue_step() { queued+=("$@" ---); }
run_queued() {
  [[ ${#queued[@]} -gt 0 ]] || return 0
  local calls=("${queued[@]}")
  queued=()
  uv run python -m brittle.run_scripts "${calls[@]}"
}
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
    # the log's last line of output, after its last carriage return (progress bars redraw with \r),
    # not a step's "== script: done in N s" line
    if [[ $rc == 0 ]]; then echo "== [done] $name ($(tr '\r' '\n' < "$root/_logs/$name.log" | grep -v '^== ' | grep -v '^ *$' | tail -n 1 | sed 's/^ *//'))"
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

# --- 3. The models' steps, as functions over a group of models ------------------------------------
mapfile -t comparison_steps < <(uv run python -m brittle.steps scripts comparison)
[[ ${#comparison_steps[@]} -gt 0 ]] || fail "the step registry listed no comparison steps (uv run python -m brittle.steps)"
queue_comparisons() {  # queue_comparisons A B...: every comparison step once, for all of B against A
  local a="$1" script kind; shift
  for entry in "${comparison_steps[@]}"; do
    script="${entry%%$'\t'*}" kind="${entry##*$'\t'}"
    if [[ "$kind" == device ]]; then
      queue_step "$script" --model-a "$a" --model-b "$@" --device "$device" "${common[@]}"
    else
      queue_step "$script" --model-a "$a" --model-b "$@" "${common[@]}"
    fi
  done
}
compare() { queue_comparisons "$@"; run_queued; }  # compare A B...: the comparison steps, now
# model_steps M...: everything one model goes through after it is made, each script called once for
# the whole group (a script takes several models), all in one process: the comparisons with
# the base (the base itself has none; base -> filtered runs first, alone, since it fills the base
# model's activation cache that every other comparison reads), evaluation, probes (after the
# comparisons: they read the cache those passes filled), both relearning attacks, and layer-wise
# forgetting (unlearned models: against the model they came from and a model that never knew).
model_steps() {
  local m others=() edited=()
  for m in "$@"; do
    [[ "$m" != "$BASE_MODEL" ]] && others+=("$m")
    [[ "$m" != "$BASE_MODEL" && "$m" != "$FILTERED_MODEL" ]] && edited+=("$m")
  done
  [[ ${#others[@]} -gt 0 ]] && queue_comparisons "$BASE_MODEL" "${others[@]}"
  if [[ -d "$DATA_DIR/questions" ]]; then
    queue_step evaluate.py --model "$@" --device "$device" "${common[@]}"
  fi
  queue_step linear_probe_analysis.py --model "$@" --device "$device" "${common[@]}"
  # the knowledge probe needs the facts behind the questions: the tiny world's facts.csv
  if [[ -f "$DATA_DIR/facts.csv" ]]; then
    queue_step knowledge_probe_analysis.py --model "$@" --device "$device" "${common[@]}"
  fi
  if [[ $do_relearn == 1 && -f "$DATA_DIR/attack/hazard_train.txt" ]]; then
    for attack in hazard benign; do
      queue_step relearn.py --model "$@" --attack "$attack" --base "$BASE_MODEL" --filtered "$FILTERED_MODEL" \
        --device "$device" "${common[@]}"
    done
  fi
  if [[ ${#edited[@]} -gt 0 ]]; then
    queue_step layerwise_forgetting.py --reference "${REFERENCE_MODEL:-$FILTERED_MODEL}" --finetuned "$BASE_MODEL" \
      --unlearned "${edited[@]}" --device "$device" "${common[@]}"
  fi
  run_queued
}
# in_groups NAME M...: model_steps for M dealt into one group per job, the groups side by side
in_groups() {
  local name="$1" part=0 group; shift
  [[ $# -gt 0 ]] || return 0
  while read -r -a group; do
    part=$((part + 1))
    background "${name}_part$part" model_steps "${group[@]}"
  done < <(deal "$jobs_max" "$@")
  wait_background
}
# unlearn_one METHOD SEED STRENGTH OUTDIR [FLAGS...]: one unlearned model (skipped when finished)
unlearn_one() {
  local method="$1" seed="$2" strength="$3" outdir="$4"; shift 4
  local calibrate=()
  [[ "$strength" != default ]] && calibrate=(--calibrate "$strength" --filtered "$FILTERED_MODEL")
  # shellcheck disable=SC2086
  step unlearn.py --preset "$preset" --model "$BASE_MODEL" --method "$method" --seed "$seed" "${calibrate[@]}" \
    --outdir "$outdir" --device "$device" --no-progress "${force[@]}" ${UNLEARN_ARGS:-} "$@"
}
unlearn_group() {  # unlearn_group SPEC...: each SPEC method:seed:strength:outdir, one after another
  local spec method seed strength outdir
  for spec in "$@"; do
    IFS=: read -r method seed strength outdir <<< "$spec"
    unlearn_one "$method" "$seed" "$strength" "$outdir"
  done
}
base_slug="$(slug "$BASE_MODEL")"

# --- 4. base -> filtered first, alone: it fills the base model's activation cache -----------------
# (in the default run it goes alongside the unlearning, below; an array task of --part finds it
# done by the --setup-only job and skips the step starts)
if [[ $population == 1 || $setup_only == 1 ]] && [[ -z "$part_index" ]]; then
  stage "base and filtered"
  compare "$BASE_MODEL" "$FILTERED_MODEL"
fi
[[ $setup_only == 1 ]] && { echo "setup done (--setup-only): data, base, filtered and their comparison"; exit 0; }

if [[ $population == 0 ]]; then
  # --- 5. Unlearned models: ours (one per method) plus the preset's published ones ----------------
  stage "unlearning"
  # base -> filtered needs no unlearned model: it runs beside the unlearning, one job of the pool
  background base_vs_filtered compare "$BASE_MODEL" "$FILTERED_MODEL"
  unlearned=("${unlearned_flag[@]}")
  if [[ ${#unlearned_flag[@]} == 0 ]]; then
    specs=()
    for method in ${UNLEARN_METHODS:-}; do specs+=("$method:0:default:unlearned_models/${base_slug}__$method"); done
    if [[ $do_unlearn == 1 ]]; then   # one job per method (one process each in any case)
      for spec in "${specs[@]}"; do background "unlearn_${spec%%:*}" unlearn_group "$spec"; done
    fi
  fi
  wait_background
  if [[ ${#unlearned_flag[@]} == 0 ]]; then
    made=()
    for spec in "${specs[@]}"; do [[ -f "${spec##*:}/config.json" ]] && made+=("${spec##*:}"); done
    # The control edit: a benign fine-tune on retain text, as large a weight change as the median
    # unlearned model; every step runs on it and the report shows it beside the unlearned models.
    control="unlearned_models/${base_slug}__control"
    if [[ $do_unlearn == 1 && ${#made[@]} -gt 0 ]]; then
      step unlearn.py --method control --preset "$preset" --model "$BASE_MODEL" --match-dw-norm "${made[@]}" \
        --outdir "$control" --device "$device" --no-progress "${force[@]}"
    fi
    [[ -f "$control/config.json" ]] && made+=("$control")
    for m in ${PUBLISHED_UNLEARNED:-}; do made+=("$m"); done
    unlearned=("${made[@]}")
  fi
  echo "unlearned models: ${unlearned[*]:-(none)}"

  # --- 6. Every model's steps: comparisons, evaluation, probes, attacks, layer-wise forgetting ----
  stage "per-model steps"
  in_groups models "$BASE_MODEL" "$FILTERED_MODEL" "${unlearned[@]}"
else
  # --- 5'. The population: every method x seed x strength, then the control edits ---------------
  # POPULATION_SEEDS and POPULATION_STRENGTHS (preset) span it; each model is unlearned and then goes
  # through every step in the same job, so --part I/N (one group of N) is a cluster array task.
  read -r -a pop_seeds <<< "${seeds_flag:-${POPULATION_SEEDS:-0 1 2}}"
  read -r -a pop_strengths <<< "${strengths_flag:-${POPULATION_STRENGTHS:-matched weak}}"
  for strength in "${pop_strengths[@]}"; do
    [[ "$strength" == matched || "$strength" == weak ]] || fail "POPULATION_STRENGTHS takes matched and/or weak, got '$strength'"
  done
  specs=()
  for method in ${UNLEARN_METHODS:-}; do
    for seed in "${pop_seeds[@]}"; do
      for strength in "${pop_strengths[@]}"; do
        specs+=("$method:$seed:$strength:unlearned_models/${base_slug}__${method}__s${seed}__${strength}")
      done
    done
  done
  population_part() {  # population_part I SPEC...: make these models, then run their steps (part 1
    local spec made=()  # also runs the base's and the filtered model's: 2 models more of ~60)
    [[ "$1" == 1 ]] && made=("$BASE_MODEL" "$FILTERED_MODEL")
    shift
    unlearn_group "$@"
    for spec in "$@"; do made+=("${spec##*:}"); done
    model_steps "${made[@]}"
  }
  stage "population models"
  mapfile -t groups < <(deal "$part_count" "${specs[@]}")
  if [[ -n "$part_index" ]]; then
    [[ $part_index -le ${#groups[@]} ]] || fail "--part $part_index/$part_count: only ${#groups[@]} group(s) for ${#specs[@]} models"
    read -r -a group <<< "${groups[$((part_index - 1))]}"
    population_part "$part_index" "${group[@]}"
    echo "part $part_index/$part_count done: ${#group[@]} model(s)"
    exit 0
  fi
  [[ $part_count == "$jobs_max" ]] || fail "internal: parts $part_count != jobs $jobs_max"
  for i in "${!groups[@]}"; do
    read -r -a group <<< "${groups[$i]}"
    background "population_part$((i + 1))" population_part "$((i + 1))" "${group[@]}"
  done
  wait_background
  # Control edits: benign fine-tunes as large as the median matched model, one per control seed
  stage "control edits"
  matched=()
  for spec in "${specs[@]}"; do [[ "$spec" == *:matched:* ]] && matched+=("${spec##*:}"); done
  [[ ${#matched[@]} -gt 0 ]] || matched=("${specs[@]##*:}")
  controls=()
  for seed in ${POPULATION_CONTROL_SEEDS:-0 1 2}; do
    out="unlearned_models/${base_slug}__control__s$seed"
    step unlearn.py --method control --preset "$preset" --model "$BASE_MODEL" --seed "$seed" \
      --match-dw-norm "${matched[@]}" --outdir "$out" --device "$device" --no-progress "${force[@]}"
    controls+=("$out")
  done
  in_groups controls "${controls[@]}"
  unlearned=("${specs[@]##*:}" "${controls[@]}")
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
