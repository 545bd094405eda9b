"""Benchmark: the pipeline's independent jobs two at a time (``--jobs 2``) against one at a time.

``pipeline.sh`` runs independent jobs side by side (unlearning methods, comparisons, evaluation,
attacks). This measures what that buys on this machine with one kind of job, the relearning
attack (``relearn.py --attack hazard``, one thread each, the tiny preset's settings): the same N
attacks, each into its own fresh output folder, first one after another (the baseline, what
``--jobs 1`` does), then at most two at a time, in one run. It prints both wall times and their
ratio. Run it in a folder where the pipeline has built the tiny world (models and data):

    uv run python benchmarks/bench_pipeline_jobs.py --models 4
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def attacks(models: list[str], out: Path) -> list[list[str]]:
    return [[sys.executable, "relearn.py", "--model", m, "--attack", "hazard", "--base", "models/tiny/tiny-base",
             "--filtered", "models/tiny/tiny-filtered", "--device", "cpu", "--output-root", str(out / Path(m).name),
             "--force"] for m in models]


def run_all(commands: list[list[str]], at_once: int) -> float:
    """Wall seconds to run ``commands`` with at most ``at_once`` running; fails loudly if one fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    t0, pending, running = time.time(), list(commands), []
    while pending or running:
        while pending and len(running) < at_once:
            running.append(subprocess.Popen(pending.pop(0), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        for p in list(running):
            if p.poll() is not None:
                running.remove(p)
                if p.returncode != 0:
                    sys.exit(f"a job failed: {p.args}\n{p.stderr.read().decode()[-1000:]}")
        time.sleep(0.2)
    return time.time() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=int, default=4, help="how many unlearned models to attack (jobs per mode)")
    args = p.parse_args()
    models = sorted(str(d) for d in Path("unlearned_models").glob("tiny-base__*") if (d / "config.json").is_file())
    if len(models) < args.models or not Path("models/tiny/tiny-base").is_dir():
        sys.exit("run this in a folder where ./pipeline.sh has built the tiny world (models/, unlearned_models/)")
    models = models[:args.models]
    with tempfile.TemporaryDirectory() as tmp:
        sequential = run_all(attacks(models, Path(tmp) / "one"), 1)
        parallel = run_all(attacks(models, Path(tmp) / "two"), 2)
    cores = os.cpu_count()
    print(f"{len(models)} hazard attacks on {cores} cores; load average now {os.getloadavg()[0]:.2f}")
    print(f"one at a time (baseline): {sequential:.1f} s")
    print(f"two at a time:            {parallel:.1f} s")
    print(f"ratio (baseline / two at a time): {sequential / parallel:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
