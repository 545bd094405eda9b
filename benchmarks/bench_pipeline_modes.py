"""Benchmark: the pipeline's stages after model making, old mode against new mode, in one run.

Old mode (the baseline): ``pipeline.sh`` of an earlier commit (default 7758f1f, the last one before
several models per invocation), ``--jobs 1``: one process per (step, model), one at a time, the
libraries' bytecode not compiled (as that commit left its environment). New mode: this checkout's
``pipeline.sh`` with its defaults: one process per group of models for all its steps, one group
per core, bytecode compiled once. Both run on the same prepared inputs (data, base, filtered and N unlearned
models copied, modification times kept, from a finished tiny-world run given by ``--source``),
``--no-unlearn``, each into a fresh git worktree and output folder, so every stage after unlearning
runs in full: comparisons, evaluation, probes, both attacks, layer-wise forgetting and the report.
It prints both wall times, their ratio, and whether the two runs' report tables agree.

    uv run python benchmarks/bench_pipeline_modes.py --source /work/run6 --models npo rmu

Takes about 15 minutes on the 2-core machine with two unlearned models (the old mode is most of it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sh(cmd: list[str], cwd: Path, log: Path | None = None, env: dict | None = None) -> float:
    """Run ``cmd`` in ``cwd``; wall seconds; exits with the log's end when it fails."""
    t0 = time.time()
    with open(log or os.devnull, "w") as out:
        rc = subprocess.call(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if rc != 0:
        tail = log.read_text()[-2000:] if log else ""
        sys.exit(f"failed ({rc}): {' '.join(cmd)} in {cwd}\n{tail}")
    return time.time() - t0


def prepare(tree: Path, commit: str, source: Path, models: list[str], compile_bytecode: bool) -> None:
    """A worktree of ``commit`` at ``tree`` with the source run's inputs and a synced environment."""
    sh(["git", "worktree", "add", "--detach", str(tree), commit], REPO)
    for folder in ("data", "models"):
        shutil.copytree(source / folder, tree / folder, symlinks=True)      # copy2: keeps mtimes
    for m in models:
        shutil.copytree(source / "unlearned_models" / f"tiny-base__{m}", tree / "unlearned_models" / f"tiny-base__{m}")
    sh(["uv", "sync", "--frozen", "--quiet", *(["--compile-bytecode"] if compile_bytecode else [])], tree)


def compare_results(old: Path, new: Path) -> tuple[int, list[str]]:
    """How many of the step CSVs both runs wrote hold the same numbers (to 1e-9 relative; columns of
    elapsed time left out), and which differ. The report's own tables are left out: the new report
    may have new columns."""
    import numpy as np
    import pandas as pd

    same, differ = 0, []
    for f in sorted(old.rglob("*.csv")):
        rel = f.relative_to(old)
        if rel.parts[0].startswith("_") or rel.parent == Path(".") or not (new / rel).is_file():
            continue
        a, b = pd.read_csv(f), pd.read_csv(new / rel)
        timing = [c for c in a.columns if "elapsed" in c or "seconds" in c]
        a, b = a.drop(columns=timing), b.drop(columns=timing, errors="ignore")
        numeric = a.select_dtypes("number").columns
        equal = (list(a.columns) == list(b.columns) and a.shape == b.shape
                 and a.drop(columns=numeric).astype(str).equals(b.drop(columns=numeric).astype(str))
                 and np.allclose(a[numeric].to_numpy(float), b[numeric].to_numpy(float), rtol=1e-9, atol=0,
                                 equal_nan=True))
        if equal:
            same += 1
        else:
            differ.append(str(rel))
    return same, differ


def stage_times(log: Path) -> str:
    lines = log.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("pipeline finished")), None)
    return "\n".join(lines[start:]) if start is not None else "(no stage table)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", type=Path, required=True, help="a folder where ./pipeline.sh built the tiny world")
    p.add_argument("--models", nargs="+", default=["npo", "rmu"], help="unlearned models (methods) to include")
    p.add_argument("--old", default="7758f1f", help="commit of the old mode's pipeline")
    p.add_argument("--keep", action="store_true", help="keep the worktrees (printed) for inspection")
    args = p.parse_args()
    source = args.source.resolve()
    for m in args.models:
        if not (source / "unlearned_models" / f"tiny-base__{m}" / "config.json").is_file():
            sys.exit(f"error: {source}/unlearned_models/tiny-base__{m} is not a finished model")
    work = Path(tempfile.mkdtemp(prefix="bench_modes_"))
    old_tree, new_tree = work / "old", work / "new"
    new_commit = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=REPO, text=True).strip()
    print(f"old: {args.old} --jobs 1; new: {new_commit[:7]} default jobs; models: base, filtered, {args.models}")
    prepare(old_tree, args.old, source, args.models, compile_bytecode=False)
    prepare(new_tree, new_commit, source, args.models, compile_bytecode=True)
    unlearned = [a for m in args.models for a in ("--unlearned", f"unlearned_models/tiny-base__{m}")]
    old_s = sh(["./pipeline.sh", "--jobs", "1", "--no-unlearn", *unlearned], old_tree, work / "old.log")
    new_s = sh(["./pipeline.sh", "--no-unlearn", *unlearned], new_tree, work / "new.log")
    same, differ = compare_results(old_tree / "outputs", new_tree / "outputs")
    print(f"on {os.cpu_count()} cores, load average at the end {os.getloadavg()[0]:.2f}")
    print(f"old mode (baseline): {old_s:.0f} s\n{stage_times(work / 'old.log')}")
    print(f"new mode:            {new_s:.0f} s\n{stage_times(work / 'new.log')}")
    print(f"ratio (old / new): {old_s / new_s:.2f}x")
    print(f"result CSVs present in both runs: {same + len(differ)}, byte-identical: {same}"
          + (f"; differing: {', '.join(differ)}" if differ else ""))
    if args.keep:
        print(f"worktrees kept under {work}")
    else:
        for tree in (old_tree, new_tree):
            subprocess.call(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
