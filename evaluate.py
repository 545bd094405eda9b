"""Evaluate a causal LM: multiple-choice accuracy (cloze and MCQA) and retain perplexity.

Multiple choice in the two forms deep-ignorance reports: *cloze* (each choice scored on its own by
its length-normalised log-likelihood given the question; the form small models can answer) and
*MCQA* (all four lettered choices in the prompt, the answer letter scored, as
lm-evaluation-harness's ``wmdp_bio`` task). Retain perplexity is per token, padding masked.

    uv run evaluate.py --model models/tiny/tiny-base
    uv run evaluate.py --model models/tiny/tiny-filtered --split val --formats cloze
    uv run evaluate.py --model EleutherAI/deep-ignorance-unfiltered --data-dir data/deep-ignorance \
        --ids robust_mcqa_ids.txt --formats mcqa --max-length 1024

Reads <data-dir>/questions/{hazard,near,far}_<split>.jsonl (those present) and <data-dir>/retain.txt
(<data-dir>: the preset's DATA_DIR unless given).
Writes <output-root>/<model>/evaluation/ (or --outdir): scores.csv (one row per question and
format), accuracy.csv (one row per question set and format), summary.json, run_meta.json, _DONE.json.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from brittle import cli
from brittle.errors import UserError

STEP = "evaluation"
FORMATS = ("cloze", "mcqa")


def build_parser(argv=None):
    p = cli.parser(__doc__)
    cli.add_preset_arg(p)
    cli.add_model_arg(p, "Hub id or local model folder")
    p.add_argument("--data-dir", default=None,
                   help=f"data folder written by create_datasets.py (default: {cli.from_preset(argv, 'DATA_DIR')})")
    p.add_argument("--split", choices=["eval", "val"], default="eval",
                   help="question split: eval (reported numbers) or val (for tuning)")
    p.add_argument("--questions", nargs="*", default=None,
                   help="question files to use instead of <data-dir>/questions/*_<split>.jsonl")
    p.add_argument("--formats", default="cloze,mcqa", help="comma-separated: cloze, mcqa")
    p.add_argument("--normalization", choices=["chars", "tokens", "none"], default="chars",
                   help="cloze length normalisation (chars = lm-evaluation-harness acc_norm)")
    p.add_argument("--ids", default=None, help="file of question ids to keep (one per line or a JSON list)")
    p.add_argument("--max-questions", type=cli.positive_int, default=None, help="first N questions per set (quick checks)")
    p.add_argument("--retain-file", default=None, help="texts for retain perplexity (default: <data-dir>/retain.txt)")
    p.add_argument("--max-retain", type=cli.non_negative_int, default=200, help="retain texts scored (0 skips perplexity)")
    p.add_argument("--max-length", type=cli.positive_int, default=None,
                   help=f"tokens per sequence, context truncated on the left (default: {cli.from_preset(argv, 'MAX_LENGTH')})")
    cli.add_runtime_args(p, batch_size=16)
    cli.add_output_args(p)
    return p


def question_sets(args) -> dict[str, Path]:
    from brittle.data.build import QUESTION_SETS

    if args.questions:
        paths = [Path(q) for q in args.questions]
    else:
        paths = [Path(args.data_dir) / "questions" / f"{d}_{args.split}.jsonl" for d in QUESTION_SETS]
        paths = [p for p in paths if p.is_file()]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"question file(s) not found: {', '.join(missing)}")
    return {p.stem: p for p in paths}


def body(args, argv=None) -> int:
    import pandas as pd

    from brittle import evaluation as ev
    from brittle import steps
    from brittle.io import StepRun, read_lines, write_csv, write_json
    from brittle.models import load_model, load_tokenizer
    from brittle.presets import data_dir, load_preset, number
    from brittle.runtime import resolve_device, resolve_dtype, seed_everything

    preset = load_preset(args.preset)
    args.data_dir = args.data_dir or str(data_dir(preset))
    args.max_length = args.max_length or number(preset, "MAX_LENGTH")
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise UserError(f"unknown format(s) {unknown or formats}; choose from {', '.join(FORMATS)}")
    sets = question_sets(args)
    retain = Path(args.retain_file or Path(args.data_dir) / "retain.txt")
    if args.max_retain and not retain.is_file():
        raise UserError(f"retain texts not found: {retain} (or pass --max-retain 0)")
    if not sets and not args.max_retain:
        raise UserError(f"nothing to evaluate: no question files in {args.data_dir}/questions and --max-retain 0")
    ids = ev.read_id_list(args.ids) if args.ids else None

    params = {k: v for k, v in vars(args).items() if k not in {"batch_size", "device"}}
    run = StepRun(steps.outdir(args, STEP, model=args.model), params, argv, models={"model": args.model},
                  files={**sets, "retain": retain if args.max_retain else None, "ids": args.ids})
    if run.should_skip(args.force):
        return 0

    seed_everything(args.seed)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    with run.timed("load"):
        tokenizer = load_tokenizer(args.model, args.revision, args.trust_remote_code)
        model = load_model(args.model, dtype, device, args.revision, args.trust_remote_code)

    score_frames, acc_rows = [], []
    for name, path in sets.items():
        questions = ev.load_questions(path, ids)[: args.max_questions]
        if not questions:
            raise UserError(f"{path}: no questions left (check --ids)")
        for fmt in formats:
            with run.timed(fmt):
                if fmt == "cloze":
                    frame = ev.cloze_scores(model, tokenizer, questions, args.batch_size,
                                            args.normalization, args.max_length)
                else:
                    frame = ev.mcqa_scores(model, tokenizer, questions, args.batch_size,
                                           max_length=args.max_length)
            frame.insert(0, "format", fmt)
            frame.insert(0, "question_set", name)
            score_frames.append(frame)
            acc = float(frame["correct"].mean())
            n_choices = len(questions[0]["choices"])
            acc_rows.append({"question_set": name, "format": fmt, "n_questions": len(frame),
                             "accuracy": acc, "stderr": math.sqrt(acc * (1 - acc) / len(frame)),
                             "chance": 1 / n_choices})
            print(f"{name:<14} {fmt:<6} accuracy {acc:.3f}  (n={len(frame)}, chance {1 / n_choices:.2f})")

    perplexity = n_tokens = None
    if args.max_retain:
        texts = read_lines(retain, args.max_retain, what="retain texts")
        with run.timed("perplexity"):
            nll, n_tokens = ev.text_nll(model, tokenizer, texts, args.max_length, args.batch_size, progress=True)
        perplexity = math.exp(nll / n_tokens)
        print(f"retain perplexity {perplexity:.3f} ({n_tokens} tokens, {len(texts)} texts)")

    if score_frames:
        write_csv(run.path("scores.csv"), pd.concat(score_frames, ignore_index=True))
    accuracy = pd.DataFrame(acc_rows, columns=["question_set", "format", "n_questions", "accuracy", "stderr", "chance"])
    write_csv(run.path("accuracy.csv"), accuracy)
    write_json(run.path("summary.json"), {
        "model": args.model,
        "accuracy": {f"{r['question_set']}/{r['format']}": r["accuracy"] for r in acc_rows},
        "retain_perplexity": perplexity, "retain_tokens": n_tokens,
    })
    print(f"wrote {run.outdir}/")
    run.finish(model=args.model, revision=args.revision, device=str(device), dtype=str(dtype))
    return 0


def main(argv=None) -> int:
    return cli.run_main(body, build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
