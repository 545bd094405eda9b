"""Several root scripts in one process, one after another:

    python -m brittle.run_scripts evaluate.py --model M --- relearn.py --model M --attack hazard

Each script's ``main(argv)`` runs exactly as ``uv run evaluate.py --model M`` would run it (the same
``sys.argv``, so the same ``run_meta.json``, folders and skip logic); what one process saves is the
start of the others: importing torch, transformers and the rest costs 3-5 s of CPU per process on a
2-core machine, and a group of the pipeline runs some twenty steps. The scripts draw every random
number from their own seeded generators (``--seed``), so running after another script changes no
result (tests/test_run_scripts.py compares the files byte for byte).

Stops at the first script that fails and exits with its status (2 for a user error, as the
script would).
"""
from __future__ import annotations

import gc
import importlib.util
import sys
import time
from pathlib import Path
from typing import Sequence

SEPARATOR = "---"
ROOT = Path(__file__).resolve().parent.parent
USAGE = (f"usage: python -m brittle.run_scripts SCRIPT.py [ARGS...] [{SEPARATOR} SCRIPT.py [ARGS...]]...\n"
         "runs each root script's main(ARGS) in this one process, in order; stops at the first failure")


def split_calls(argv: Sequence[str]) -> list[list[str]]:
    """``[script, *args]`` per call, the calls separated by ``---``; empty calls dropped.

    >>> split_calls(["a.py", "--x", "1", "---", "b.py"])
    [['a.py', '--x', '1'], ['b.py']]
    """
    calls, current = [], []
    for token in argv:
        if token == SEPARATOR:
            calls.append(current)
            current = []
        else:
            current.append(token)
    calls.append(current)
    return [c for c in calls if c]


def script_path(name: str) -> Path:
    """The root script ``name`` (``evaluate.py``, or a path to it); ``ValueError`` when it is not one."""
    path = Path(name)
    if not path.is_absolute() and not path.is_file():
        path = ROOT / path
    if path.suffix != ".py" or not path.is_file():
        raise ValueError(f"no script {name!r} (root scripts: {', '.join(sorted(p.name for p in ROOT.glob('*.py')))})")
    return path


def load_script(path: Path):
    """The script as a module (not as ``__main__``: its ``if __name__ == "__main__"`` block stays
    unrun); a script already loaded in this process is reused."""
    name = f"_brittle_script_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_call(script: str, args: list[str]) -> int:
    """Run one script's ``main(args)`` with ``sys.argv`` as its own process would have it."""
    module = load_script(script_path(script))
    saved_argv = sys.argv
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    sys.argv = [script, *args]
    try:
        return int(module.main(args) or 0)
    except SystemExit as exc:   # argparse's --help and usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        sys.argv = saved_argv
        restore_process_state(threads)


def restore_process_state(threads: int | None) -> None:
    """Leave the process as the next script would find a fresh one: the thread count a script may
    have set (pretrain.py --threads) back as it was, and what the finished script held freed
    before the next one loads its models."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is None:
        return
    if threads is not None:
        torch.set_num_threads(threads)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_command_line(argv: Sequence[str] | None = None) -> int:
    calls = split_calls(sys.argv[1:] if argv is None else list(argv))
    if not calls or calls[0][0] in ("-h", "--help"):
        print(USAGE)
        return 0 if calls else 2
    try:
        for script, *_ in calls:
            script_path(script)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for script, *args in calls:
        print(f"\n== {script} {' '.join(args)}", flush=True)
        began = time.perf_counter()
        status = run_call(script, args)
        print(f"== {script}: {'done' if status == 0 else f'failed (status {status})'} in "
              f"{time.perf_counter() - began:.0f} s", flush=True)
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(run_command_line())
