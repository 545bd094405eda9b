"""Benchmark: `--help` of every root script against importing torch and transformers, in one run.

A script that imports its heavy libraries before parsing its arguments pays torch's and
transformers' import on every `--help` and every bad flag (4-16 s of wall time on a busy 2-core
machine); the scripts here import them inside their body. For each root script this runs
`python <script> --help` and, as the named baseline, `python -c "import torch, transformers"`
(what `--help` cost when the imports came first), alternating, and prints the median wall times
and their ratio.

    uv run python benchmarks/bench_help.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    baseline_cmd = [sys.executable, "-c", "import torch, transformers"]
    scripts = sorted(p.name for p in ROOT.glob("*.py"))
    help_times: dict[str, list[float]] = {s: [] for s in scripts}
    baseline: list[float] = []
    for _ in range(args.repeats):
        for script in scripts:        # alternate with the baseline so that load affects both alike
            help_times[script].append(wall([sys.executable, script, "--help"]))
            baseline.append(wall(baseline_cmd))
    base = statistics.median(baseline)
    print(f"baseline (import torch, transformers): median {base:.2f} s over {len(baseline)} runs")
    print(f"{'script':<36} {'--help median s':>16} {'baseline / --help':>18}")
    for script, times in help_times.items():
        med = statistics.median(times)
        print(f"{script:<36} {med:>16.2f} {base / med:>17.1f}x")
    slowest = max(statistics.median(t) for t in help_times.values())
    print(f"slowest --help {slowest:.2f} s; baseline is {base / slowest:.1f}x that")
    return 0


if __name__ == "__main__":
    sys.exit(main())
