"""``unlearn.py --calibrate``: its flags, its settings, the population's folder names, and the run.

The search itself (targets, checkpoints, the knob, the tries) is :mod:`brittle.unlearning.calibration`;
this module connects it to the script: which flags exist, what enters the run's parameters (so a
finished model is skipped only when its calibration matches), and the tries on real models with
the validation questions scored by :func:`brittle.evaluation.cloze_scores`.
"""

from __future__ import annotations

from pathlib import Path

from brittle.errors import UserError
from brittle.unlearning.calibration import (KNOBS, Monitor, Try, auto_check_every, in_band, run_tries,
                                            target_hazard, validation_paths, calibration_verdict)


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
    print(calibration_verdict(report))
    return result.log, result.model, retuned(method, knob, chosen), report
