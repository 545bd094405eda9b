"""Benchmark: a step script's start-up with the libraries' bytecode compiled, against without.

Every step process imports torch, transformers (and the GPT-NeoX model code), pandas, matplotlib
and scikit-learn. Where ``PYTHONDONTWRITEBYTECODE`` is set (as on the development machines) and
the environment was installed without compiled bytecode, Python recompiles every one of those
modules in every process; ``pipeline.sh`` therefore runs ``uv sync --compile-bytecode`` once. This
measures what that buys, in one run on the same environment: the baseline points Python's bytecode
lookup at an empty folder (``-X pycache_prefix``), which is what an environment without compiled
bytecode gives; the other uses the compiled ``__pycache__`` folders. Alternating, median of N.

    uv sync --compile-bytecode && uv run python benchmarks/bench_startup.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

IMPORTS = ("import torch, transformers, pandas, matplotlib.pyplot, sklearn.linear_model\n"
           "from transformers import GPTNeoXForCausalLM\n")


def one_start(env: dict, extra: list[str]) -> float:
    t0 = time.time()
    subprocess.run([sys.executable, *extra, "-c", IMPORTS], env=env, check=True)
    return time.time() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="starts per mode (alternating)")
    args = p.parse_args()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    compiled, uncompiled = [], []
    with tempfile.TemporaryDirectory() as empty:
        one_start(env, [])                       # warm the page cache for both modes alike
        for _ in range(args.repeats):
            uncompiled.append(one_start(env, ["-X", f"pycache_prefix={empty}"]))
            compiled.append(one_start(env, []))
    a, b = statistics.median(uncompiled), statistics.median(compiled)
    print(f"{args.repeats} starts each, alternating; load average now {os.getloadavg()[0]:.2f}")
    print(f"without compiled bytecode (baseline): median {a:.2f} s  {[round(x, 2) for x in uncompiled]}")
    print(f"with compiled bytecode:               median {b:.2f} s  {[round(x, 2) for x in compiled]}")
    print(f"ratio (baseline / compiled): {a / b:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
