"""Benchmark: the per-model steps (evaluate.py, relearn.py, knowledge_probe_analysis.py) of this
checkout against a baseline commit (default 7758f1f, before batched scoring and the reference
cache), on one tiny-world model, in one run.

The baseline is checked out as a temporary ``git worktree``; both trees run with this checkout's
interpreter, one thread, the tiny preset, from a scratch folder that links the world's ``data/``,
``models/`` and ``unlearned_models/``. Rounds alternate baseline and new (median of ``--repeats``
each), every run into a fresh output folder, except the new code's reference cache
(``<output-root>/_reference_cache``), which is filled once before the timed rounds, as it is for
every attack of a pipeline after the first (the cold run is timed and printed apart). Afterwards it
checks that both trees wrote the same accuracies (exact) and log-likelihoods (within 1e-5).
Run it where the pipeline has built the tiny world:

    uv run python benchmarks/bench_per_model_steps.py --model unlearned_models/tiny-base__npo
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
STEPS = ("evaluate", "relearn", "knowledge_probe")


def command(tree: Path, step: str, model: str, out: Path) -> list[str]:
    common = ["--preset", "tiny", "--device", "cpu", "--output-root", str(out), "--force"]
    if step == "evaluate":
        return [sys.executable, str(tree / "evaluate.py"), "--model", model, *common]
    if step == "relearn":
        return [sys.executable, str(tree / "relearn.py"), "--model", model, "--attack", "hazard",
                "--base", "models/tiny/tiny-base", "--filtered", "models/tiny/tiny-filtered", *common]
    return [sys.executable, str(tree / "knowledge_probe_analysis.py"), "--model", model, *common]


def timed(cmd: list[str], cwd: Path) -> float:
    """Wall seconds of one run; exits with its error output if it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr.decode()[-2000:]}")
    return time.perf_counter() - t0


def same_outputs(old: Path, new: Path, model: str, steps: list[str]) -> list[str]:
    """Differences between the two trees' outputs: accuracies must be equal, log-likelihoods
    within 1e-5 (the new code batches differently, so float32 rounding differs)."""
    import numpy as np
    import pandas as pd

    slug, problems = Path(model).name, []
    if "evaluate" in steps:
        a, b = (pd.read_csv(r / slug / "evaluation" / "scores.csv") for r in (old, new))
        if not (a["correct"] == b["correct"]).all() or not (a["prediction"] == b["prediction"]).all():
            problems.append("evaluation: predictions differ")
        cols = [c for c in a if c.startswith("loglik_")]
        gap = float(np.nanmax(np.abs(a[cols].to_numpy() - b[cols].to_numpy())))
        if gap > 1e-5:
            problems.append(f"evaluation: log-likelihoods differ by {gap:.2e}")
        print(f"evaluation: largest log-likelihood difference {gap:.1e} nats")
    if "relearn" in steps:
        a, b = (pd.read_csv(r / slug / "relearning" / "hazard" / "curve.csv") for r in (old, new))
        for col in ("hazard_acc", "near_acc", "far_acc"):
            if not (a[col] == b[col]).all():
                problems.append(f"relearning: {col} differs")
        if not np.allclose(a["retain_ppl"], b["retain_ppl"], rtol=1e-6):
            problems.append("relearning: retain_ppl differs")
    if "knowledge_probe" in steps:
        a, b = (pd.read_csv(r / slug / "knowledge_probe" / "knowledge_probe.csv") for r in (old, new))
        if not a.equals(b):
            problems.append("knowledge probe: tables differ")
    return problems


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="unlearned_models/tiny-base__npo", help="model folder, relative to --world")
    p.add_argument("--world", default=".", help="folder holding data/, models/ and unlearned_models/")
    p.add_argument("--baseline", default="7758f1f", help="commit of the baseline")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds per tree (median reported)")
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {', '.join(STEPS)}")
    args = p.parse_args()
    steps = [s for s in args.steps.split(",") if s]
    world = Path(args.world).resolve()
    if not (world / args.model / "config.json").is_file() or not (world / "data" / "tiny").is_dir():
        sys.exit(f"no tiny world in {world} (data/tiny, {args.model})")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old_tree = tmp / "baseline"
        subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", str(old_tree), args.baseline],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            cwd = tmp / "run"
            cwd.mkdir()
            for name in ("data", "models", "unlearned_models"):
                (cwd / name).symlink_to(world / name)
            new_root = tmp / "new"
            cold = {s: timed(command(HERE, s, args.model, new_root), cwd) for s in steps}
            times = {tree: {s: [] for s in steps} for tree in ("baseline", "new")}
            for r in range(args.repeats):
                for tree, path in (("baseline", old_tree), ("new", HERE)):
                    root = tmp / f"{tree}{r}"
                    if tree == "new" and (new_root / "_reference_cache").is_dir():   # fresh folder, warm cache
                        shutil.copytree(new_root / "_reference_cache", root / "_reference_cache")
                    for s in steps:
                        times[tree][s].append(timed(command(path, s, args.model, root), cwd))
            problems = same_outputs(tmp / "baseline0", tmp / "new0", args.model, steps)
        finally:
            subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(old_tree)],
                           check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"{args.model}, {args.repeats} alternating rounds, median seconds; {os.cpu_count()} cores, "
          f"load average now {os.getloadavg()[0]:.2f}")
    total = {"baseline": 0.0, "new": 0.0}
    for s in steps:
        old, new = (statistics.median(times[t][s]) for t in ("baseline", "new"))
        total["baseline"] += old
        total["new"] += new
        print(f"  {s:<16} baseline {old:6.1f}  new {new:6.1f}  ratio {old / new:.2f}x   (new, cold cache: {cold[s]:.1f})")
    print(f"  {'together':<16} baseline {total['baseline']:6.1f}  new {total['new']:6.1f}  "
          f"ratio (baseline / new) {total['baseline'] / total['new']:.2f}x")
    print("outputs: " + ("identical (accuracies exact, log-likelihoods within 1e-5)" if not problems
                         else "; ".join(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
