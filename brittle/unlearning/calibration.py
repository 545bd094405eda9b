"""Calibrated unlearning: stop a method at a target forgetting level, measured on validation questions.

A population of unlearned models is comparable only if its members forgot about as much: a method
that stops at hazard accuracy 0.15 and one that stops at 0.45 differ in strength before they differ
in mechanism. ``unlearn.py --calibrate matched|weak`` therefore trains with a :class:`Monitor` that
scores cloze accuracy on the *validation* hazard questions (``questions/hazard_val.jsonl``; the
evaluation questions are never read) every ``check_every`` steps and stops at the first checkpoint
within ``tolerance`` of the target:

* ``matched``: the filtered model's validation hazard accuracy + 0.05 (:data:`MATCHED_MARGIN`);
* ``weak``: halfway between the base model's validation hazard accuracy and the matched target.

Where the step budget ends above the band, or the first checkpoint below it already lies under
it, one strength knob per method (:data:`KNOBS`) is raised or lowered and the method retrained
from the base model (:func:`next_knob`: ×2 or ÷2 until the band is bracketed, then the geometric
mean of the two nearest tries), for at most ``max_tries`` tries. The model kept is the checkpoint
closest to the target over all tries; ``reached`` says whether it lies within the tolerance.

Accuracies are fractions in [0, 1]; steps are 0-based optimizer-step indices (checkpoint ``k``
is the model after ``k + 1`` updates). :mod:`brittle.unlearning.calibrated_run` runs this search
for ``unlearn.py`` on real models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from brittle.errors import UserError

STRENGTHS = ("matched", "weak")
MATCHED_MARGIN = 0.05
VAL_SETS = ("hazard", "near", "far")

# The knob calibration turns when steps alone do not reach the band. The learning rate for every
# method: it scales each method's per-step change without changing what the method optimises (a
# retain or forget weight would change the trade-off the tiny profile chose, and the step count is
# already what the checkpoints search over). cb and cb_lat schedule their coefficients over the
# step budget, so for them too the budget stays and only the rate moves.
KNOBS: dict[str, str] = {name: "lr" for name in (
    "ga_simple", "ga", "grad_diff", "dpo", "npo", "simnpo", "rmu", "cb", "lat", "cb_lat")}
KNOB_FACTOR = 2.0


def target_hazard(strength: str, base_val: float, filtered_val: float, margin: float = MATCHED_MARGIN) -> float:
    """The target validation hazard accuracy of ``strength``: ``filtered + margin`` (matched), or
    the midpoint of the base's accuracy and that (weak)."""
    matched = filtered_val + margin
    if strength == "matched":
        return matched
    if strength == "weak":
        return (base_val + matched) / 2
    raise UserError(f"unknown strength {strength!r}; choose from {', '.join(STRENGTHS)}")


def validation_paths(data_dir: str | Path) -> dict[str, Path]:
    """``{set: <data_dir>/questions/<set>_val.jsonl}`` for hazard, near and far; hazard is required.
    Only ``_val`` files are named here, so calibration cannot read an evaluation question."""
    folder = Path(data_dir) / "questions"
    paths = {name: folder / f"{name}_val.jsonl" for name in VAL_SETS}
    if not paths["hazard"].is_file():
        raise UserError(f"calibration needs validation questions: {paths['hazard']} not found "
                        "(create_datasets.py writes them)")
    return {name: p for name, p in paths.items() if p.is_file()}


def in_band(acc: float, target: float, tolerance: float) -> bool:
    # a tiny slack so that an accuracy exactly on the band's edge (k/200 vs a decimal target)
    # is not lost to float rounding
    return abs(acc - target) <= tolerance + 1e-9


@dataclass
class Try:
    """One training run at one knob value: its checkpoints ``[(step, val_hazard)]`` and how it
    ended: ``reached`` (a checkpoint in the band), ``overshot`` (a checkpoint fell below the band
    before any was in it) or ``short`` (the budget ended above the band)."""

    knob_value: float
    checks: list[tuple[int, float]] = field(default_factory=list)
    outcome: str = "short"
    seconds: float = 0.0

    def best(self, target: float) -> tuple[int, float]:
        """The checkpoint closest to ``target`` (the earliest of equals)."""
        return min(self.checks, key=lambda c: abs(c[1] - target))

    def as_dict(self, knob: str) -> dict[str, Any]:
        return {knob: self.knob_value, "outcome": self.outcome, "seconds": round(self.seconds, 3),
                "checks": [{"step": s, "val_hazard": a} for s, a in self.checks]}


def next_knob(tries: list[Try], factor: float = KNOB_FACTOR) -> float | None:
    """The knob value of the next try, or None when the last try reached the band.

    ``short`` means too weak (raise), ``overshot`` too strong per step (lower: checkpoints then
    lie closer together along the way down). Values are searched on a log scale: by ``factor``
    until a short and an overshot try bracket the band, then the geometric mean of the closest pair.
    """
    last = tries[-1]
    if last.outcome == "reached":
        return None
    k = last.knob_value
    if last.outcome == "short":
        above = [t.knob_value for t in tries if t.outcome == "overshot" and t.knob_value > k]
        return math.sqrt(k * min(above)) if above else k * factor
    below = [t.knob_value for t in tries if t.outcome == "short" and t.knob_value < k]
    return math.sqrt(k * max(below)) if below else k / factor


def check_steps(total: int, every: int) -> set[int]:
    """0-based steps after which the monitor scores: every ``every``-th update and the last."""
    return set(range(every - 1, total, every)) | {total - 1}


def auto_check_every(steps: int, checks: int = 20) -> int:
    """About ``checks`` checkpoints per try (at least one step apart)."""
    return max(1, math.ceil(steps / checks))


class Monitor:
    """Called by the trainer after every step (``monitor(trainer, index)``); at a checkpoint it
    scores ``evaluate(model) -> val hazard accuracy`` with the model in eval mode and without
    gradients, keeps a CPU copy of the trained parameters at the checkpoint closest to the target,
    and returns True (stop) at the first checkpoint in the band or below it."""

    def __init__(self, evaluate: Callable[[Any], float], target: float, tolerance: float,
                 steps: int, every: int, knob_value: float):
        self.evaluate = evaluate
        self.target = target
        self.tolerance = tolerance
        self.at = check_steps(steps, every)
        self.attempt = Try(knob_value)
        self.best_step: int | None = None
        self._best_params: list | None = None

    def __call__(self, trainer, index: int) -> bool:
        import torch

        if index not in self.at:
            return False
        core = trainer.core
        was_training = core.training
        core.eval()
        try:
            with torch.no_grad():
                acc = float(self.evaluate(core))
        finally:
            core.train(was_training)
        self.attempt.checks.append((index, acc))
        if self.attempt.best(self.target) == (index, acc):
            self.best_step = index
            self._best_params = [p.detach().to("cpu", copy=True) for p in trainer.params]
        if in_band(acc, self.target, self.tolerance):
            self.attempt.outcome = "reached"
            return True
        if acc < self.target - self.tolerance:
            self.attempt.outcome = "overshot"
            return True
        return False

    def restore_best(self, trainer) -> None:
        """Put the best checkpoint's parameters back (a no-op when training stopped there)."""
        import torch

        if self._best_params is None:
            return
        with torch.no_grad():
            for p, saved in zip(trainer.params, self._best_params):
                p.copy_(saved.to(p.device))


@dataclass
class Calibrated:
    """What :func:`run_tries` keeps: the finalised model of the best checkpoint over all tries,
    the training log up to that checkpoint, every try, and which try and step were chosen."""

    model: Any
    log: Any
    tries: list[Try]
    chosen_try: int
    step: int
    val_hazard: float


def run_tries(train: Callable[[float, Monitor], Any], start: float, evaluate: Callable[[Any], float],
              target: float, tolerance: float, steps: int, every: int, max_tries: int = 4,
              factor: float = KNOB_FACTOR, on_try: Callable[[int, Try], None] | None = None) -> Calibrated:
    """Train (``train(knob_value, monitor) -> (trainer, log)``, each call from the base model)
    until a checkpoint lies in the band or ``max_tries`` runs are spent; keep the best.

    Only one try's model and the best one so far are held at a time.
    """
    import time

    if max_tries < 1:
        raise UserError("--max-tries must be at least 1")
    tries: list[Try] = []
    best: Calibrated | None = None
    value: float | None = start
    while value is not None and len(tries) < max_tries:
        monitor = Monitor(evaluate, target, tolerance, steps, every, value)
        t0 = time.time()
        trainer, log = train(value, monitor)
        monitor.attempt.seconds = time.time() - t0
        tries.append(monitor.attempt)
        if on_try is not None:
            on_try(len(tries) - 1, monitor.attempt)
        step, acc = monitor.attempt.best(target)
        if best is None or abs(acc - target) < abs(best.val_hazard - target):
            monitor.restore_best(trainer)
            kept_log = log[log["step"] <= step].reset_index(drop=True)
            best = Calibrated(trainer.trained_model(), kept_log, tries, len(tries) - 1, step, acc)
        del trainer
        value = next_knob(tries, factor)
    return best


def calibration_verdict(report: dict) -> str:
    """One line: whether the target was reached, and what was kept."""
    kept = (f"val hazard {report['val_hazard']:.3f} after {report['steps_trained']} steps at "
            f"{report['knob']} {report['chosen']:.4g} (try {report['chosen_try'] + 1} of {len(report['tries'])})")
    band = f"{report['target_hazard']:.3f} ± {report['tolerance']}"
    if report["reached"]:
        return f"calibration ({report['strength']}): reached {band}: {kept}"
    return f"calibration ({report['strength']}): NOT reached {band}; kept the closest checkpoint: {kept}"
