"""Evaluate a causal LM: multiple-choice accuracy (cloze and MCQA) and retain perplexity.

Multiple choice in the two forms deep-ignorance reports: *cloze* (each choice scored on its own by
its length-normalised log-likelihood given the question; the form small models can answer) and
*MCQA* (all four lettered choices in the prompt, the answer letter scored, as
lm-evaluation-harness's ``wmdp_bio`` task). Retain perplexity is per token, padding masked.

    uv run evaluate.py --model models/tiny/tiny-base
    uv run evaluate.py --model models/tiny/tiny-filtered --split val --formats cloze
    uv run evaluate.py --model EleutherAI/deep-ignorance-unfiltered --data-dir data/deep-ignorance \
        --ids robust_mcqa_ids.txt --formats mcqa --max-length 1024

Reads <data-dir>/questions/{hazard,benign}_<split>.jsonl (those present) and <data-dir>/retain.txt.
Writes <output-root>/<model>/evaluation/ (or --outdir): scores.csv (one row per question and
format), accuracy.csv (one row per question set and format), summary.json, run_meta.json, _DONE.json.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from brittle.cli import UserError, add_output_args, add_runtime_args, parser, run_main, step_dir
from brittle.io import StepRun, file_digest, weights_fingerprint, write_csv, write_json

FORMATS = ("cloze", "mcqa")


def build_parser():
    p = parser(__doc__)
    p.add_argument("--model", required=True, help="Hub id or local model folder")
    p.add_argument("--revision", default=None, help="Hub revision of the model")
    p.add_argument("--data-dir", default="data/tiny", help="data folder written by create_datasets.py")
    p.add_argument("--split", choices=["eval", "val"], default="eval",
                   help="question split: eval (reported numbers) or val (for tuning)")
    p.add_argument("--questions", nargs="*", default=None,
                   help="question files to use instead of <data-dir>/questions/*_<split>.jsonl")
    p.add_argument("--formats", default="cloze,mcqa", help="comma-separated: cloze, mcqa")
    p.add_argument("--normalization", choices=["chars", "tokens", "none"], default="chars",
                   help="cloze length normalisation (chars = lm-evaluation-harness acc_norm)")
    p.add_argument("--ids", default=None, help="file of question ids to keep (one per line or a JSON list)")
    p.add_argument("--max-questions", type=int, default=None, help="first N questions per set (quick checks)")
    p.add_argument("--retain-file", default=None, help="texts for retain perplexity (default <data-dir>/retain.txt)")
    p.add_argument("--max-retain", type=int, default=200, help="retain texts scored (0 skips perplexity)")
    p.add_argument("--max-length", type=int, default=512, help="tokens per sequence (context truncated on the left)")
    add_runtime_args(p, batch_size=16)
    add_output_args(p)
    return p


def question_sets(args) -> dict[str, Path]:
    if args.questions:
        paths = [Path(q) for q in args.questions]
    else:
        paths = [Path(args.data_dir) / "questions" / f"{d}_{args.split}.jsonl" for d in ("hazard", "benign")]
        paths = [p for p in paths if p.is_file()]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"question file(s) not found: {', '.join(missing)}")
    return {p.stem: p for p in paths}


def body(args, argv=None) -> int:
    import pandas as pd

    from brittle import evaluation as ev
    from brittle.models import load_model, load_tokenizer
    from brittle.runtime import resolve_device, resolve_dtype, seed_everything

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

    params = {k: v for k, v in vars(args).items() if k not in {"output_root", "batch_size", "device"}}
    params.update(model_fingerprint=weights_fingerprint(args.model),
                  question_sha256={name: file_digest(p) for name, p in sets.items()},
                  retain_sha256=file_digest(retain) if args.max_retain else None,
                  ids_sha256=file_digest(Path(args.ids)) if args.ids else None)
    run = StepRun(step_dir(args, "evaluation", args.model), params, argv=argv)
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
        texts = [t for t in retain.read_text(encoding="utf-8").splitlines() if t.strip()][: args.max_retain]
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
    return run_main(lambda args: body(args, argv), build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
