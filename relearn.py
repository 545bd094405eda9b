"""Relearning attack: fine-tune a model briefly and measure how fast removed knowledge returns.

Two attacks, run on any model (filtered, unlearned, base):

* ``hazard``: fine-tune on hazard-domain text that is disjoint from the facts scored
  (``<data-dir>/attack/hazard_train.txt``), score the held-out hazard questions
  (``attack/hazard_eval.jsonl``). Knowledge that was only hidden comes back on facts the attack
  never showed; knowledge that was never learned (the filtered model) does not.
* ``benign``: the control. Fine-tune on benign retain text (``attack/benign_train.txt``) and score
  the same hazard questions: how much of the "recovery" is just fine-tuning disturbing whatever the
  unlearning did, with no hazard data at all.

The model is evaluated at log-spaced checkpoints (0, 1, 2, 5, 10, 20, 50, 100, ...): cloze accuracy
on the hazard, near- and far-domain questions and retain perplexity (brittle/relearning.py). Master weights
are float32 (``--dtype`` only sets the autocast compute dtype on a GPU). Each seed restarts from
the saved model; ``--seeds N`` runs seeds seed..seed+N-1 and reports Student-t intervals.

Settings come from the preset (RELEARN_LR, RELEARN_BATCH_SIZE, RELEARN_STEPS, MAX_LENGTH):
deep-ignorance follows the paper's tampering attack (full fine-tuning, AdamW, lr 2e-5, batch 16;
the paper goes to 10,000 steps, here 1,000); the tiny world uses lr 3e-4, batch 16, 100 steps (at
lr 1e-3 even the base model forgets facts and benign-only fine-tuning "recovers" most of the
hazard knowledge, so the attack no longer separates relearning from generic disturbance).

Recovery summaries need the base and filtered accuracies on the same questions: give
``--base/--filtered`` (scored here) or ``--base-acc/--filtered-acc``. Checkpoint numbers go to
Weights & Biases when WANDB_API_KEY is set (silent otherwise).

Example (tiny world):
    uv run relearn.py --model unlearned_models/tiny-base__grad_diff --attack hazard \\
        --base models/tiny/tiny-base --filtered models/tiny/tiny-filtered --seeds 3

Writes <output-root>/<model>/relearning/<attack>/: curve.csv, training_log.csv, summary.csv,
summary.json (intervals over seeds, definitions), reference.json, recovery_curve.png,
run_meta.json, _DONE.json (columns: `uv run python -m brittle.steps show relearning`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from brittle import cli

STEP = "relearning"


def build_parser(argv=None):
    p = cli.parser(__doc__)
    cli.add_model_arg(p, "model to attack: Hub id or local folder")
    p.add_argument("--attack", choices=["benign", "hazard"], default="hazard", help="what to fine-tune on")
    cli.add_preset_arg(p)
    p.add_argument("--data-dir", default=None, help=f"data folder (default: {cli.from_preset(argv, 'DATA_DIR')})")
    p.add_argument("--train-file", default=None, help="training texts, one per line (default: the attack's file)")
    p.add_argument("--eval-file", default=None, help="hazard questions scored (default: <data-dir>/attack/hazard_eval.jsonl)")
    p.add_argument("--steps", type=cli.non_negative_int, default=None,
                   help=f"optimiser steps, the attack budget (default: {cli.from_preset(argv, 'RELEARN_STEPS')})")
    p.add_argument("--lr", type=cli.positive_float, default=None,
                   help=f"AdamW learning rate (default: {cli.from_preset(argv, 'RELEARN_LR')})")
    p.add_argument("--max-length", type=cli.positive_int, default=None,
                   help=f"tokens per training text (default: {cli.from_preset(argv, 'MAX_LENGTH')})")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    p.add_argument("--warmup-steps", type=cli.non_negative_int, default=0, help="linear learning-rate warm-up steps")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="clip the global gradient norm to this (0: no clipping)")
    p.add_argument("--lora", action="store_true", help="LoRA fine-tuning (peft) instead of full fine-tuning")
    p.add_argument("--lora-rank", type=cli.positive_int, default=16, help="LoRA rank r")
    p.add_argument("--lora-alpha", type=float, default=32.0, help="LoRA scaling alpha")
    p.add_argument("--eval-steps", default=None,
                   help="comma-separated checkpoint steps (default: 0 and the 1-2-5 series up to --steps)")
    p.add_argument("--seeds", type=cli.positive_int, default=1, help="number of seeds (seed, seed+1, ...); >1 gives intervals")
    p.add_argument("--eval-batch-size", type=cli.positive_int, default=None,
                   help=f"questions per scoring forward pass (default: {cli.from_preset(argv, 'RELEARN_EVAL_BATCH_SIZE')})")
    p.add_argument("--max-retain", type=cli.non_negative_int, default=200,
                   help="retain texts for the perplexity: the first N lines of retain.txt not in the training texts")
    p.add_argument("--base", default=None, help="base model: scored for the recovery reference")
    p.add_argument("--filtered", default=None, help="filtered model: scored for the recovery reference")
    p.add_argument("--base-acc", type=float, default=None, help="base accuracy on the eval questions (instead of --base)")
    p.add_argument("--filtered-acc", type=float, default=None,
                   help="filtered accuracy on the eval questions (instead of --filtered)")
    cli.add_runtime_args(p, batch_size=None)
    for action in p._actions:
        if action.dest == "batch_size":
            action.help = f"training texts per step (default: {cli.from_preset(argv, 'RELEARN_BATCH_SIZE')})"
    cli.add_output_args(p)
    return p


def run_attack(args, argv) -> int:
    import pandas as pd

    from brittle import relearning, steps
    from brittle.io import StepRun, model_slug, save_figure, write_csv, write_json
    from brittle.plotting.recovery import plot_recovery_curves
    from brittle.presets import load_preset
    from brittle.runtime import load_env, resolve_device, resolve_dtype
    from brittle.tracking import start_run

    load_env()
    s = relearning.resolve_settings(args, load_preset(args.preset))
    outdir = Path(args.outdir) if args.outdir else steps.folder(STEP, args.output_root, model=args.model) / args.attack
    params = {k: v for k, v in vars(args).items() if k not in {"eval_batch_size"}}
    params.update(s.as_params())
    # A model retrained under the same folder, or regenerated data, must not be skipped as done.
    run = StepRun(outdir, params, argv, models={"model": args.model, "base": args.base, "filtered": args.filtered},
                  files={"train_file": s.train_file, "eval_file": s.eval_file, "retain_file": s.retain_file,
                         **{f"{k}_questions": p for k, p in s.benign_files.items()}})
    if run.should_skip(args.force):
        return 0
    device = resolve_device(args.device)
    compute_dtype = resolve_dtype(args.dtype, device)
    with run.timed("load_data"):
        data = relearning.load_attack_data(s, args.max_retain)
    with run.timed("references"):
        # cached across attacks and runs under <output-root>/_reference_cache (keyed by weights and questions)
        refs = relearning.reference_accuracies(args, data["hazard"], device, compute_dtype, s.eval_batch_size,
                                               cache_dir=Path(args.output_root) / "_reference_cache")

    # wandb when WANDB_API_KEY is set (brittle.tracking), a silent null tracker otherwise.
    tracker = start_run("relearn", name=f"{model_slug(args.model)}-{args.attack}", config=params)
    rows, logs = [], []
    with tracker:
        for seed in range(args.seed, args.seed + args.seeds):
            print(f"[relearn] {args.model} attack={args.attack} seed={seed} steps={s.steps} lr={s.lr} "
                  f"batch={s.batch_size}{' lora' if args.lora else ''}")
            with run.timed("attack"):
                seed_rows, seed_log = relearning.attack_one_seed(args, s, seed, data, device, compute_dtype, tracker)
            rows += seed_rows
            logs += seed_log

    curve = pd.DataFrame(rows)
    table, summary = relearning.summarise(curve, refs, args.model, s)
    summary["lora"] = {"rank": args.lora_rank, "alpha": args.lora_alpha} if args.lora else None
    write_csv(run.path("curve.csv"), curve)
    write_csv(run.path("training_log.csv"), pd.DataFrame(logs)[["seed", "step", "loss", "grad_norm", "lr"]])
    write_csv(run.path("summary.csv"), table)
    write_json(run.path("summary.json"), summary)
    write_json(run.path("reference.json"), refs)
    fig = plot_recovery_curves(curve, references={"base": refs.get("base_acc"), "filtered": refs.get("filtered_acc")},
                               title=f"{model_slug(args.model)}: {args.attack} attack")
    save_figure(run.path("recovery_curve.png"), fig)
    mean = summary["mean_curve"]
    print(f"[relearn] hazard acc {mean['acc_start']:.3f} -> {mean['acc_final']:.3f} after {s.steps} "
          f"steps; steps to half gap: {mean['steps_to_half_gap']}; wrote {outdir}")
    run.finish(models={"model": args.model, "base": args.base, "filtered": args.filtered},
               device=str(device), dtype=str(compute_dtype), seeds=list(range(args.seed, args.seed + args.seeds)))
    return 0


def main(argv=None) -> int:
    return cli.run_main(run_attack, build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
