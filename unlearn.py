"""Create an unlearned model: run one unlearning method on a base model, save an HF folder.

Methods (one module each in brittle/unlearning/, paper in its docstring): ga_simple, ga,
grad_diff, dpo (IdkDPO), npo, simnpo, rmu, cb (circuit breakers), lat (targeted latent
adversarial training), cb_lat (circuit breakers against a latent adversary, as deep ignorance);
and control, the comparison for all of them: a benign fine-tune on retain text only, as large an
edit as the unlearned models (--match-dw-norm), which unlearns nothing.
Hyperparameters default to the method's profile (brittle/unlearning/profiles.py): the preset's
UNLEARN_PROFILE, "tiny" (tuned on the tiny world's validation questions) or "reference" (the
paper's values); any flag below overrides one, and a flag the method does not use is an error.
`uv run unlearn.py --method rmu --help` shows the defaults rmu will use.

Examples:
    uv run unlearn.py --method npo                                   # tiny world, CPU, ~1 min
    uv run unlearn.py --method rmu --steering-coeff 10 --force
    uv run unlearn.py --preset deep-ignorance --method cb_lat        # one GPU
    uv run accelerate launch unlearn.py --preset deep-ignorance --method rmu   # data parallel
    uv run unlearn.py --preset deep-ignorance --method npo --device-map auto   # one model over GPUs

Forget data: --forget-file (texts, every token a target) and --forget-qa ({"prompt","answer"} per
line, only answer tokens are targets). dpo, npo and simnpo train on the pairs where the data
folder has them (else npo/simnpo on whole texts, dpo on texts split in half); the other methods
on texts. --forget-format overrides. --retain-file: retain texts; methods that train on pairs use
the retain pairs instead where the data folder has them (--retain-qa; TOFU). --idk: IdkDPO's
refusals. --qa-format: how a pair is written (the preset's QA_FORMAT; tofu: the Llama-3 chat tags
open-unlearning trains its TOFU checkpoints with).

--calibrate matched|weak: stop at a validation hazard accuracy, as docs/unlearning.md describes.
Writes <outdir> (default <unlearned-dir>/<base>__<method>/): the model (safetensors, float32
unless --save-dtype), tokenizer, hyperparameters.json, training_log.csv (one row per step: every
loss term), training_loss.png, run_meta.json, _DONE.json. Skipped when done with the same
parameters and inputs (--force redoes). Logs to wandb when WANDB_API_KEY is set.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from brittle import cli
from brittle.errors import UserError
from brittle.unlearning import calibrated_run
from brittle.unlearning.hparams import SPECS, add_hyperparameter_flags, profile_name
from brittle.unlearning.profiles import METHOD_NAMES


def build_parser(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--method", required=True, choices=list(METHOD_NAMES), help="unlearning method")
    cli.add_preset_arg(p)
    p.add_argument("--model", default=None, help="base model: Hub id or folder (default: the preset's BASE_MODEL)")
    p.add_argument("--revision", default=None, help="Hub revision of the base model")
    p.add_argument("--data-dir", default=None, help="data folder (default: the preset's DATA_DIR)")
    p.add_argument("--forget-file", default=None, help="forget texts (default: <data-dir>/forget.txt)")
    p.add_argument("--retain-file", default=None, help="retain texts (default: <data-dir>/retain.txt)")
    p.add_argument("--forget-qa", default=None,
                   help="forget prompt/answer pairs (default: <data-dir>/forget_qa.jsonl if present)")
    p.add_argument("--retain-qa", default=None,
                   help="retain prompt/answer pairs for pair-trained methods (default: <data-dir>/retain_qa.jsonl if present)")
    p.add_argument("--idk", default=None, help="IdkDPO refusals (default: <data-dir>/idk.txt if present)")
    p.add_argument("--qa-format", default=None,
                   help=f"how prompt/answer pairs are written: plain or llama3-tofu (default: "
                        f"{cli.from_preset(argv, 'QA_FORMAT')}; plain when unset)")
    p.add_argument("--forget-format", choices=["auto", "texts", "pairs"], default="auto",
                   help="what ga/grad_diff/npo/simnpo train on: whole texts or the answers of prompt/answer pairs")
    p.add_argument("--match-dw-norm", nargs="+", default=None, metavar="MODEL",
                   help="control only: stop once the weight change is as large as the median of these models' "
                        "(their L2 distance to the base model, all parameters)")
    p.add_argument("--profile", choices=["auto", "tiny", "reference"], default="auto",
                   help="hyperparameter defaults (auto: the preset's UNLEARN_PROFILE, else reference)")
    p.add_argument("--outdir", default=None, help="output folder (default: <unlearned-dir>/<base>__<method>)")
    calibrated_run.add_flags(p, argv)
    p.add_argument("--unlearned-dir", default="unlearned_models", help="folder of unlearned model folders")
    p.add_argument("--force", action="store_true", help="retrain even if a finished model with the same inputs exists")
    p.add_argument("--device-map", default=None, help="e.g. 'auto': spread one model over all GPUs (single process)")
    p.add_argument("--save-dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="dtype of the saved weights (float32 keeps small updates exact)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    cli.add_runtime_args(p, batch_size=None)
    add_hyperparameter_flags(p, argv)
    return p


def main(argv=None) -> int:
    return cli.run_main(body, build_parser(argv), argv)


def body(args, argv=None) -> int:
    import torch

    from brittle.io import StepRun, model_slug, read_lines, write_csv, write_json
    from brittle.models import load_model, load_tokenizer
    from brittle.presets import data_dir, load_preset
    from brittle.runtime import load_env, resolve_device, resolve_dtype, seed_everything
    from brittle.tracking import NullTracker, start_run
    from brittle.unlearning.data import DEFAULT_IDK, forget_form, qa_format, read_pairs, split_text
    from brittle.unlearning.plot import plot_training_log
    from brittle.unlearning.registry import get_method
    from brittle.unlearning.trainer import Trainer, UnlearnData

    load_env()
    preset = load_preset(args.preset)
    model_id = args.model or preset.get("BASE_MODEL")
    if not model_id:
        raise UserError(f"preset {args.preset} names no BASE_MODEL; pass --model")
    folder = Path(args.data_dir) if args.data_dir else data_dir(preset)
    forget_path = Path(args.forget_file or folder / "forget.txt")
    retain_path = Path(args.retain_file or folder / "retain.txt")
    qa_path = Path(args.forget_qa) if args.forget_qa else folder / "forget_qa.jsonl"
    retain_qa_path = Path(args.retain_qa) if args.retain_qa else folder / "retain_qa.jsonl"
    idk_path = Path(args.idk) if args.idk else folder / "idk.txt"
    fmt_name = args.qa_format or preset.get("QA_FORMAT") or "plain"
    fmt = qa_format(fmt_name)
    for path in (forget_path, retain_path):
        if not path.is_file():
            raise UserError(f"{path} not found: run create_datasets.py --preset {args.preset} first, or pass the file")
    for flag, given, path in (("--forget-qa", args.forget_qa, qa_path), ("--retain-qa", args.retain_qa, retain_qa_path),
                              ("--idk", args.idk, idk_path)):
        if given and not path.is_file():
            raise UserError(f"{flag} {path} not found")

    # Hyperparameters: the method's profile, then the user's flags.
    profile = profile_name(preset, args.profile)
    overrides = {name: getattr(args, name) for name in SPECS}
    if args.match_dw_norm:
        if args.method != "control":
            raise UserError("--match-dw-norm applies to --method control only")
        if args.target_dw_norm is not None:
            raise UserError("give --match-dw-norm or --target-dw-norm, not both")
        from statistics import median

        from brittle.weights import parameter_distance
        overrides["target_dw_norm"] = median(
            parameter_distance(model_id, m, revision_a=args.revision) for m in args.match_dw_norm)
        print(f"control: target weight change {overrides['target_dw_norm']:.4g} (median of {len(args.match_dw_norm)})")
    method = get_method(args.method, profile, overrides)
    method.forget_form = forget_form(args.method, method.forget_form, args.forget_format, qa_path.is_file())
    calib = calibrated_run.settings(args, preset, folder, method.hp["steps"])
    name = f"{model_slug(model_id)}__{args.method}{calibrated_run.name_suffix(args)}"
    outdir = Path(args.outdir) if args.outdir else Path(args.unlearned_dir) / name
    compute_dtype = resolve_dtype(args.dtype, resolve_device(args.device))
    uses_qa = method.forget_form == "pairs" and qa_path.is_file()
    retain_pairs = method.forget_form == "pairs" and retain_qa_path.is_file()
    params = {"model": str(model_id), "revision": args.revision, "method": args.method, "profile": profile,
              "hyperparameters": method.hp, "forget_form": method.forget_form, "seed": args.seed,
              "compute_dtype": str(compute_dtype).replace("torch.", ""), "save_dtype": args.save_dtype}
    if method.forget_form == "pairs" and fmt_name != "plain":   # only then: plain runs keep their parameters
        params["qa_format"] = fmt_name
    inputs = {"forget": forget_path, "retain": retain_qa_path if retain_pairs else retain_path,
              "forget_qa": qa_path if uses_qa else None, "idk": idk_path if args.method == "dpo" else None}
    models = {"base": model_id, **calibrated_run.record(calib, params, inputs)}
    run = StepRun(outdir, params, argv, models=models, files=inputs)
    accelerator = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import Accelerator

        accelerator = Accelerator()
    is_main = accelerator is None or accelerator.is_main_process
    # Only the main process writes: it begins the run (and fails here, before any training, when
    # the output folder cannot be written); the other ranks only read the marker.
    if (run.should_skip(args.force) if is_main else (not args.force and run.is_done())):
        return 0

    # Data. Pairs come from forget_qa.jsonl when the preset has it, else from the texts.
    forget_texts = read_lines(forget_path, what="forget texts")
    pairs = read_pairs(qa_path) if qa_path.is_file() else [split_text(t) for t in forget_texts]
    idk = read_lines(idk_path, what="refusal answers") if idk_path.is_file() else DEFAULT_IDK
    retain = read_pairs(retain_qa_path) if retain_pairs else read_lines(retain_path, what="retain texts")
    data = UnlearnData(forget_texts, retain, pairs, idk, fmt)

    device = accelerator.device if accelerator else resolve_device(args.device)
    seed_everything(args.seed)
    tokenizer = load_tokenizer(model_id, revision=args.revision, trust_remote_code=args.trust_remote_code)
    # float32 master weights whatever the compute dtype (bf16 runs under autocast).
    model = load_model(model_id, dtype=torch.float32, device=device, revision=args.revision,
                       trust_remote_code=args.trust_remote_code, device_map=args.device_map)

    tracker = start_run("unlearn", outdir.name, {**params, "argv": sys.argv}) if is_main else NullTracker()
    trainer = Trainer(model, tokenizer, method, data, seed=args.seed, compute_dtype=compute_dtype,
                      accelerator=accelerator, tracker=tracker, progress=not args.no_progress)
    with run.timed("train"):   # calibrated: tries until the target, the kept model's method and report
        log, final, method, report = calibrated_run.train(trainer, calib, model_id, args) if calib else (
            trainer.run(), trainer.trained_model(), method, None)
    tracker.finish()

    if accelerator:
        accelerator.wait_for_everyone()
    if not is_main:
        return 0
    with run.timed("save"):
        final = final.to(getattr(torch, args.save_dtype))
        final.save_pretrained(run.dir)
        if report is not None:
            write_json(run.path("calibration.json"), report)
        tokenizer.save_pretrained(run.dir)
        write_json(run.path("hyperparameters.json"), {"method": args.method, "profile": profile,
                                                     "forget_form": method.forget_form, **method.hp})
        write_csv(run.path("training_log.csv"), log)
        plot_training_log(log, run.path("training_loss.png"), title=f"{model_slug(model_id)} · {args.method}")
    last, note = log.iloc[-1].to_dict(), method.summary()
    run.finish(models={"base": str(model_id), "revision": args.revision}, device=str(device),
               compute_dtype=params["compute_dtype"], final_step=last, **({"summary": note} if note else {}))
    print(f"saved {outdir} ({len(log)} steps, final loss {last['loss']:.4f}){'; ' + note if note else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
