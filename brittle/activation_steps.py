"""The common start of every activation-space step: texts, skip decision, capture.

Each step (4, 8, 9, 11, 12, 13) reads the forget and retain texts the preset names, decides from
its marker whether its result is current (parameters, model weights and text files), and gets
the shared activation cache filled for its model(s).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from brittle.errors import UserError
from brittle.io import StepRun, read_lines
from brittle.presets import TEXT_DEFAULTS, fill


@dataclass
class Opened:
    """An activation step that has work to do: its run, texts and (unless ``capture=False``) captures."""

    run: StepRun
    splits: dict[str, list[str]]
    captures: object = None   # brittle.capture.Captures


def read_splits(args) -> dict[str, list[str]]:
    """``{"forget": [...], "retain": [...]}``: the first ``--max-samples`` lines of each file.

    At least 2 texts per split: one text has no bootstrap interval, no classifier and no
    covariance. Fewer texts than ``--moment-groups`` gives fewer groups (a warning says so)."""
    splits = {"forget": read_lines(args.forget_file, args.max_samples, what="forget texts"),
              "retain": read_lines(args.retain_file, args.max_samples, what="retain texts")}
    for name, texts in splits.items():
        if len(texts) < 2:
            raise UserError(f"the {name} texts ({getattr(args, name + '_file')}) hold {len(texts)} line; "
                            "activation statistics need at least 2 texts per split")
        groups = getattr(args, "moment_groups", 0)
        if 0 < len(texts) < groups:
            print(f"warning: {len(texts)} {name} texts for {groups} moment groups: covariance intervals "
                  f"resample {len(texts)} groups of one text", file=sys.stderr)
    return splits


def open_step(args, argv, step: str, pair: bool = True, capture: bool = True) -> Opened | None:
    """Fill text flags from the preset, read the texts, and return the step's run with its
    captures; None when a current result exists (printed as a skip).

    ``pair``: a comparison of ``--model-a`` and ``--model-b`` (else ``--model`` alone)."""
    from brittle import steps

    fill(args, TEXT_DEFAULTS)
    splits = read_splits(args)
    if pair:
        models = {"a": args.model_a, "b": args.model_b}
        outdir = steps.outdir(args, step, model_a=args.model_a, model_b=args.model_b)
    else:
        models = {"model": args.model}
        outdir = steps.outdir(args, step, model=args.model)
    skip = {"force", "outdir", "output_root", "cache_dir"}
    params = {k: v for k, v in vars(args).items() if k not in skip}
    run = StepRun(outdir, params, argv, models=models, files={"forget": args.forget_file, "retain": args.retain_file})
    if run.should_skip(args.force):
        return None
    opened = Opened(run, splits)
    if capture:
        from brittle.capture import CaptureConfig, ModelSpec, cache_root, ensure_captures

        specs = ([ModelSpec(args.model_a, args.revision_a), ModelSpec(args.model_b, args.revision_b)] if pair
                 else [ModelSpec(args.model, args.revision)])
        with run.timed("capture"):
            opened.captures = ensure_captures(specs, splits, CaptureConfig.from_args(args), cache_root(args), pair=pair)
    return opened
