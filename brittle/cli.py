"""Shared command-line flags and the one-line error convention of every script.

Scripts build their parser from these helpers and wrap their body with :func:`run_main`, so a bad
input prints ``error: <reason>`` and exits with status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence


class UserError(Exception):
    """A problem the user can fix (bad path, mismatched models, missing data): shown as one line."""


def parser(description: str | None) -> argparse.ArgumentParser:
    """A parser whose help shows the script's docstring verbatim and every default."""

    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass

    return argparse.ArgumentParser(description=description, formatter_class=Formatter)


def add_pair_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-a", required=True, help="reference model (the base): Hub id or local folder")
    p.add_argument("--model-b", required=True, help="modified model (filtered or unlearned): Hub id or local folder")
    p.add_argument("--revision-a", default=None, help="Hub revision of model A")
    p.add_argument("--revision-b", default=None, help="Hub revision of model B")


def add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--outdir", default=None,
                   help="folder this step writes into (default: <output-root>/<comparison or model>/<step>)")
    p.add_argument("--output-root", default="outputs", help="root of all results")
    p.add_argument("--force", action="store_true", help="recompute even if a finished result with the same parameters exists")


def step_dir(args: argparse.Namespace, step: str, model_a: str, model_b: str | None = None) -> Path:
    """The step's output folder: ``--outdir`` if given, else
    ``<output-root>/<slug_a>__vs__<slug_b>/<step>`` for a pair or ``<output-root>/<slug>/<step>``."""
    from brittle.io import comparison_dir, model_slug

    if getattr(args, "outdir", None):
        return Path(args.outdir)
    root = Path(getattr(args, "output_root", "outputs"))
    base = comparison_dir(root, model_a, model_b) if model_b is not None else root / model_slug(model_a)
    return base / step


def add_runtime_args(p: argparse.ArgumentParser, batch_size: int = 8) -> None:
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on a capable GPU, else fp32), float32, bfloat16, float16")
    p.add_argument("--batch-size", type=int, default=batch_size, help="texts per forward pass")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the Hub (off by default)")


def run_main(body: Callable[[argparse.Namespace], int], p: argparse.ArgumentParser,
             argv: Sequence[str] | None) -> int:
    """Parse ``argv``, run ``body(args)`` and turn :class:`UserError` into a one-line message."""
    args = p.parse_args(None if argv is None else list(argv))
    try:
        return int(body(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
