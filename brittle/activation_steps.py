"""The common start of every activation-space step: texts, skip decision, capture.

Each step (4, 8, 9, 11, 12, 13) reads the forget and retain texts the preset names, decides from
its marker whether its result is current (parameters, model weights and text files), and gets
the shared activation cache filled for its model(s).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from brittle.errors import UserError
from brittle.io import StepRun, groups_path, read_groups, read_lines
from brittle.presets import TEXT_DEFAULTS, fill


@dataclass
class Opened:
    """An activation step that has work to do: its run, texts and (unless ``capture=False``) captures."""

    run: StepRun
    splits: dict[str, list[str]]
    captures: object = None   # brittle.capture.Captures
    groups: dict[str, list[str]] | None = None   # per split, the group of each text (both files have them)

    def fold_groups(self) -> list[str] | None:
        """Group labels of forget then retain texts (the order of the probes' rows), for folds
        that never split an entity; None when the data folder has no groups."""
        return None if self.groups is None else self.groups["forget"] + self.groups["retain"]

    def lexical_auc(self, folds: int = 5, seed: int = 0) -> float:
        """The words-only baseline on these very texts and folds (``brittle.probes.lexical_auc``)."""
        from brittle.probes import lexical_auc

        return lexical_auc(self.splits["forget"], self.splits["retain"], self.fold_groups(), folds, seed)


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
    files = {"forget": args.forget_file, "retain": args.retain_file}
    files.update({f"{k}_groups": groups_path(p) for k, p in list(files.items())})  # absent: fingerprint None
    run = StepRun(outdir, params, argv, models=models, files=files)
    if run.should_skip(args.force):
        return None
    groups = {name: read_groups(getattr(args, f"{name}_file"), args.max_samples) for name in splits}
    opened = Opened(run, splits, groups=groups if all(g is not None for g in groups.values()) else None)
    if capture:
        from brittle.capture import CaptureConfig, ModelSpec, cache_root, ensure_captures

        specs = ([ModelSpec(args.model_a, args.revision_a), ModelSpec(args.model_b, args.revision_b)] if pair
                 else [ModelSpec(args.model, args.revision)])
        with run.timed("capture"):
            opened.captures = ensure_captures(specs, splits, CaptureConfig.from_args(args), cache_root(args), pair=pair)
    return opened
