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
is the model after ``k + 1`` updates).
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


def verdict(report: dict) -> str:
    """One line: whether the target was reached, and what was kept."""
    kept = (f"val hazard {report['val_hazard']:.3f} after {report['steps_trained']} steps at "
            f"{report['knob']} {report['chosen']:.4g} (try {report['chosen_try'] + 1} of {len(report['tries'])})")
    band = f"{report['target_hazard']:.3f} ± {report['tolerance']}"
    if report["reached"]:
        return f"calibration ({report['strength']}): reached {band}: {kept}"
    return f"calibration ({report['strength']}): NOT reached {band}; kept the closest checkpoint: {kept}"


# -- unlearn.py's calibration: flags, settings, the run record and the tries --------------------
def add_flags(p, argv) -> None:
    """unlearn.py's calibration flags (and --seeded-name, the population's other naming)."""
    from brittle import cli

    g = p.add_argument_group("calibration (stop at a target hazard accuracy on validation questions)")
    g.add_argument("--calibrate", choices=["matched", "weak"], default=None,
                   help="matched: the filtered model's validation hazard accuracy + 0.05; weak: halfway "
                        "between the base model's and that")
    g.add_argument("--filtered", default=None,
                   help=f"filtered model for the target (default: {cli.from_preset(argv, 'FILTERED_MODEL')})")
    g.add_argument("--target-hazard", type=float, default=None, help="target validation hazard accuracy (overrides)")
    g.add_argument("--tolerance", type=float, default=0.05, help="stop within this of the target")
    g.add_argument("--check-every", type=cli.positive_int, default=None,
                   help="steps between checkpoints (default: the step budget / 20, rounded up)")
    g.add_argument("--max-tries", type=cli.positive_int, default=4,
                   help="training runs at most (each from the base model, with the learning rate doubled or halved)")
    g.add_argument("--val-batch-size", type=cli.positive_int, default=64, help="questions' choices per scoring pass")
    g.add_argument("--seeded-name", action="store_true",
                   help="name the default folder <base>__<method>__s<seed> (a population without calibration)")


def settings(args, preset: dict, folder: Path, steps: int) -> dict | None:
    """The calibration's parameters (None without --calibrate); errors before any work."""
    given = [f for f, v in (("--filtered", args.filtered), ("--target-hazard", args.target_hazard),
                            ("--check-every", args.check_every)) if v is not None]
    if not args.calibrate:
        if given:
            raise UserError(f"{', '.join(given)} applies only with --calibrate matched|weak")
        return None
    if args.method not in KNOBS:
        raise UserError(f"--calibrate does not apply to {args.method} (it unlearns nothing)")
    if not 0 < args.tolerance < 1:
        raise UserError(f"--tolerance must lie between 0 and 1, not {args.tolerance}")
    if args.filtered and args.target_hazard is not None:
        raise UserError("give --filtered or --target-hazard, not both (the target overrides the filtered model)")
    filtered = None
    if args.target_hazard is None:
        filtered = args.filtered or preset.get("FILTERED_MODEL")
        if not filtered:
            raise UserError(f"preset {args.preset} names no FILTERED_MODEL; pass --filtered or --target-hazard")
    max_length = int(preset["MAX_LENGTH"]) if preset.get("MAX_LENGTH") else None
    return {"strength": args.calibrate, "target_hazard": args.target_hazard, "tolerance": args.tolerance,
            "check_every": args.check_every or auto_check_every(steps), "max_tries": args.max_tries,
            "knob": KNOBS[args.method], "val_batch_size": args.val_batch_size, "max_length": max_length,
            "filtered": filtered, "paths": validation_paths(folder)}



def name_suffix(args) -> str:
    """The population's folder name after <base>__<method>: __s<seed>[__<strength>], or ""."""
    if not (args.calibrate or args.seeded_name):
        return ""
    return f"__s{args.seed}" + (f"__{args.calibrate}" if args.calibrate else "")


def record(calib: dict | None, params: dict, files: dict) -> dict:
    """Add the calibration to a run's parameters and input files (nothing when uncalibrated, so
    earlier runs keep their parameters); returns the extra models whose weights matter."""
    if not calib:
        return {}
    params["calibration"] = {k: v for k, v in calib.items() if k not in ("paths", "filtered")}
    files.update({f"val_{k}": v for k, v in calib["paths"].items()})
    return {"filtered": calib["filtered"]} if calib["filtered"] else {}


def retuned(method, knob: str, value: float):
    """A fresh instance of ``method`` with ``knob`` set to ``value`` (same forget form)."""
    other = type(method)({**method.hp, knob: value})
    other.forget_form = method.forget_form
    return other


def train(trainer, calib: dict, model_id: str, args):
    """``unlearn.py --calibrate``: score the references, run the tries, score the kept model.

    ``trainer`` holds the base model as loaded and runs the first try; later tries reload the
    base. Returns ``(log, model, method, report)``: the kept checkpoint's training log and
    finalised model, its method (with the chosen knob value) and calibration.json.
    """
    import torch

    from brittle.evaluation import cloze_scores, load_questions
    from brittle.models import load_model
    from brittle.runtime import seed_everything
    from brittle.unlearning.trainer import Trainer

    questions = {name: load_questions(path) for name, path in calib["paths"].items()}
    device = trainer.device

    @torch.no_grad()
    def score(m, name: str = "hazard") -> float:
        frame = cloze_scores(m, trainer.tokenizer, questions[name], batch_size=calib["val_batch_size"],
                             max_length=calib["max_length"], progress=False)
        return float(frame["correct"].mean())

    trainer.model.eval()
    base_val = {name: score(trainer.model, name) for name in questions}
    filtered_val = None
    if calib["filtered"]:
        filtered = load_model(calib["filtered"], dtype=torch.float32, device=device,
                              trust_remote_code=args.trust_remote_code, device_map=args.device_map)
        filtered_val = score(filtered)
        del filtered
    target = calib["target_hazard"]
    if target is None:
        target = target_hazard(calib["strength"], base_val["hazard"], filtered_val)
    knob, method = calib["knob"], trainer.method
    print(f"calibration: target val hazard {target:.3f} ± {calib['tolerance']} (base {base_val['hazard']:.3f}"
          + (f", filtered {filtered_val:.3f}" if filtered_val is not None else "") + ")")

    def run(value: float, monitor: Monitor):
        seed_everything(args.seed)
        if not run.calls:   # the first try trains the model already loaded
            run.calls, t = 1, trainer
            t.method = retuned(method, knob, value)
            t.hp, t.monitor = t.method.hp, monitor
        else:   # wandb steps must increase, so only the first try is logged there
            base = load_model(model_id, dtype=torch.float32, device=device, revision=args.revision,
                              trust_remote_code=args.trust_remote_code, device_map=args.device_map)
            t = Trainer(base, trainer.tokenizer, retuned(method, knob, value), trainer.data, seed=args.seed,
                        compute_dtype=trainer.compute_dtype, accelerator=trainer.accelerator,
                        progress=trainer.progress, monitor=monitor)
        return t, t.run()
    run.calls = 0

    def said(i: int, t: Try) -> None:
        step, acc = t.checks[-1]
        print(f"calibration try {i + 1}: {knob} {t.knob_value:.4g}: {t.outcome} "
              f"(val hazard {acc:.3f} at step {step}, {t.seconds:.0f} s)")

    result = run_tries(run, method.hp[knob], score, target, calib["tolerance"], method.hp["steps"],
                       calib["check_every"], calib["max_tries"], on_try=said)
    result.model.eval()
    final = {name: score(result.model, name) for name in questions}
    chosen = result.tries[result.chosen_try].knob_value
    report = {
        "strength": calib["strength"], "target_hazard": target, "tolerance": calib["tolerance"],
        "reached": in_band(final["hazard"], target, calib["tolerance"]), "knob": knob,
        "chosen": chosen, "chosen_try": result.chosen_try,
        "step": result.step, "steps_trained": result.step + 1, "check_every": calib["check_every"],
        "val_hazard": final["hazard"], "val_near": final.get("near"), "val_far": final.get("far"),
        "checkpoint_val_hazard": result.val_hazard,
        "base_val_hazard": base_val["hazard"], "base_val_near": base_val.get("near"),
        "base_val_far": base_val.get("far"), "filtered_val_hazard": filtered_val,
        "tries": [t.as_dict(knob) for t in result.tries],
    }
    print(verdict(report))
    return result.log, result.model, retuned(method, knob, chosen), report
