"""Benchmark: the compute of five comparison steps, this checkout against an older commit.

Steps: local_lipschitzness_analysis, layerwise_forgetting (one unlearned model),
mode_connectivity_analysis, row_space_projection_analysis and activation_separation_analysis, for
one pair A → B1 and then a second pair A → B2 with the same A (as the pipeline runs them: one base
model against every unlearned model). Each measurement is a child process running one checkout
(the baseline: a git worktree of --baseline, made here; or this checkout) that first imports the
heavy libraries and the model code (process start-up is not what is measured here), then runs
the steps in turn, each timed in CPU seconds of the process (``time.process_time``; the machine is
shared, so wall seconds are reported beside them but are noisy) into a fresh output root. Both
checkouts read the same activation cache (--world's outputs/_activation_cache), so neither
captures. Runs alternate baseline, new, baseline, new, ...; the table gives the median of
--repeats runs and the ratio baseline / new per step and pair, and checks that both checkouts
wrote byte-identical CSVs.

    OMP_NUM_THREADS=1 uv run python benchmarks/bench_comparison_steps.py --world /path/to/a/tiny/run

--world is a folder holding a finished tiny-world run's models/, unlearned_models/, data/ and
outputs/_activation_cache (e.g. a pipeline run, or symbolic links to one).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = [("local_lipschitzness_analysis", "lipschitzness"), ("layerwise_forgetting", "layerwise_forgetting"),
         ("mode_connectivity_analysis", "mode_connectivity"), ("row_space_projection_analysis", "row_space_projection"),
         ("activation_separation_analysis", "activation_separation")]


def _argv(module: str, a: str, b: str, out: Path, world: Path) -> list[str]:
    common = ["--device", "cpu", "--preset", "tiny", "--output-root", str(out)]
    if module == "layerwise_forgetting":
        return ["--unlearned", b, *common]
    extra = ["--cache-dir", str(world / "outputs" / "_activation_cache")] if module in (
        "row_space_projection_analysis", "activation_separation_analysis") else []
    return ["--model-a", a, "--model-b", b, *common, *extra]


def child(code: Path, world: Path, out: Path, a: str, pairs: list[str]) -> None:
    """Run every step for every pair with the checkout at ``code``; print one JSON line of timings."""
    sys.path.insert(0, str(code))
    os.chdir(world)
    import importlib

    import torch

    torch.set_num_threads(1)
    # Start-up, not measured: the libraries and the model code every step imports.
    import matplotlib.pyplot  # noqa: F401
    import pandas  # noqa: F401
    import scipy.stats  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import transformers.models.gpt_neox.modeling_gpt_neox  # noqa: F401

    modules = {m: importlib.import_module(m) for m, _ in STEPS}
    timings = {}
    for b in pairs:
        for module, _ in STEPS:
            cpu, wall = time.process_time(), time.perf_counter()
            if modules[module].main(_argv(module, a, b, out, world)) != 0:
                raise SystemExit(f"{module} failed for {b}")
            timings[f"{Path(b).name}/{module}"] = (time.process_time() - cpu, time.perf_counter() - wall)
    print("TIMINGS " + json.dumps(timings), flush=True)


def _measure(code: Path, world: Path, out: Path, a: str, pairs: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg",
           "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, __file__, "--child", str(code), "--world", str(world), "--out", str(out),
                           "--model-a", a, "--pairs", *pairs], env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("TIMINGS ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"child for {code} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("TIMINGS "))


def _identical(old: Path, new: Path) -> list[str]:
    """CSV files that differ (or are missing) between the two output roots."""
    bad = []
    for f in sorted(old.rglob("*.csv")):
        if "_model_results" in f.parts or "_activation_cache" in f.parts:
            continue
        g = new / f.relative_to(old)
        if not g.is_file() or not filecmp.cmp(f, g, shallow=False):
            bad.append(str(f.relative_to(old)))
    return bad


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", type=Path, default=ROOT, help="folder of a finished tiny-world run")
    p.add_argument("--baseline", default="7758f1f", help="commit measured against")
    p.add_argument("--model-a", default="models/tiny/tiny-base")
    p.add_argument("--pairs", nargs="+", default=["unlearned_models/tiny-base__npo", "unlearned_models/tiny-base__ga"],
                   help="model B of each pair, all against --model-a, in this order")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.world.resolve(), args.out, args.model_a, args.pairs)
        return 0
    world = args.world.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old_code = tmp / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(old_code), args.baseline],
                       check=True)
        try:
            runs = {"baseline": [], "new": []}
            for r in range(args.repeats):
                for name, code in (("baseline", old_code), ("new", ROOT)):
                    out = tmp / f"out-{name}-{r}"
                    runs[name].append(_measure(code, world, out, args.model_a, args.pairs))
                    print(f"run {r + 1} {name}: {sum(c for c, _ in runs[name][-1].values()):.1f} CPU s", flush=True)
            differ = _identical(tmp / "out-baseline-0", tmp / "out-new-0")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_code)], check=False)
    keys = list(runs["new"][0])

    def med(name, key, i):
        return statistics.median(run[key][i] for run in runs[name])

    print(f"\nbaseline {args.baseline} vs this checkout; A = {args.model_a}; median of {args.repeats} alternating "
          "runs; CPU seconds (wall seconds in brackets)")
    print(f"{'pair / step':<58} {'baseline':>16} {'new':>16} {'ratio':>6}")
    totals = {}
    for key in keys:
        old, new = med("baseline", key, 0), med("new", key, 0)
        pair = key.split("/")[0]
        t = totals.setdefault(pair, [0.0, 0.0])
        t[0] += old
        t[1] += new
        print(f"{key:<58} {old:>7.2f} ({med('baseline', key, 1):>6.1f}) {new:>7.2f} ({med('new', key, 1):>6.1f}) "
              f"{old / new:>5.2f}x")
    for pair, (old, new) in totals.items():
        print(f"{'all five, pair ' + pair:<58} {old:>7.2f} {'':>8} {new:>7.2f} {'':>8} {old / new:>5.2f}x")
    old_all, new_all = sum(t[0] for t in totals.values()), sum(t[1] for t in totals.values())
    print(f"{'all five, both pairs':<58} {old_all:>7.2f} {'':>8} {new_all:>7.2f} {'':>8} {old_all / new_all:>5.2f}x")
    print("CSV outputs identical between baseline and new (first runs): "
          + ("yes" if not differ else f"NO, {len(differ)} differ: {', '.join(differ[:5])}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
