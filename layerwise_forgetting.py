"""Where in the network does forgetting happen? Compare an unlearned model, hidden state by hidden
state, with the model it was unlearned from (fine-tuned on the facts) and with a reference that
never learned them.

    # tiny world: reference = filtered, fine-tuned = base (both from the preset), every unlearned model
    uv run layerwise_forgetting.py --unlearned unlearned_models/tiny-base__*
    # TOFU preset: Llama-3.2-1B-Instruct (reference), its TOFU fine-tune, open-unlearning's IdkDPO model
    uv run layerwise_forgetting.py --preset tofu \\
        --unlearned open-unlearning/unlearn_tofu_Llama-3.2-1B-Instruct_forget10_IdkDPO_lr2e-05_beta0.1_alpha1_epoch10

Every prompt (``--template`` around each question, through the chat template when the tokenizer
has one) is tokenized once and fed to every model; each model's hidden states (0 = embeddings,
i = output of block i-1) at the last prompt token, or averaged over the answer's tokens
(``--position answer_mean``), are compared by cosine distance and L2. The forgetting ratio
d_ft / (d_ref + d_ft) is above 0.5 where the unlearned model is closer to the reference
(forgotten) and below 0.5 where it is closer to the fine-tuned model (retained). Averaged over the
early / middle / late thirds of the hidden states it classifies the model: true_unlearning (early
and late > 0.5), obfuscation (early < 0.5, late > 0.5), no_effect (both < 0.5) or mixed. Models
are loaded one at a time; the reference and fine-tuned models once for all unlearned models, and
each model's states are stored in <output-root>/_model_results/ (brittle/model_results.py), so a
later call with other unlearned models, or a rerun, does not run them again.

Questions: the preset's LAYERWISE_QUESTIONS (a JSONL of {"question", "answer"} as in TOFU,
{"prompt", "answer"} as in forget_qa.jsonl, or our multiple-choice {"question", "choices",
"answer": index}), or --questions, or TOFU from --tofu-dir; the first --max-questions (default all).

Writes, per unlearned model, <output-root>/<unlearned>/layerwise_forgetting/ (or --outdir with
one unlearned model): distances.csv, per_hidden_state.csv, regions.csv, per_question.csv,
results.json, layerwise_<model>.png, run_meta.json, _DONE.json
(columns: `uv run python -m brittle.steps show layerwise_forgetting`).
"""

from __future__ import annotations

import sys

from brittle import cli
from brittle.errors import UserError

STEP = "layerwise_forgetting"
POSITIONS = ("last", "answer_mean")


def build_parser(argv=None):
    p = cli.parser(__doc__)
    cli.add_preset_arg(p)
    p.add_argument("--reference", default=None, help="model that never learned the facts "
                   "(default: the preset's REFERENCE_MODEL, else its FILTERED_MODEL)")
    p.add_argument("--finetuned", default=None, help="model that learned them; the unlearning started from it "
                   "(default: the preset's BASE_MODEL)")
    p.add_argument("--unlearned", required=True, nargs="+", help="one or more unlearned models")
    p.add_argument("--questions", default=None,
                   help=f"JSONL of questions (default: {cli.from_preset(argv, 'LAYERWISE_QUESTIONS')})")
    p.add_argument("--tofu-dir", default=None, help="read TOFU --tofu-split from this folder instead (e.g. data/tofu/qa)")
    p.add_argument("--tofu-split", default="forget10", help="TOFU subset used with --tofu-dir")
    p.add_argument("--max-questions", type=cli.positive_int, default=None, help="use the first N questions (default: all)")
    p.add_argument("--position", choices=POSITIONS, default="last",
                   help="state per hidden state: the last prompt token, or the mean over the answer's tokens")
    p.add_argument("--template", default=None,
                   help=f"prompt wrapped around each question (default: {cli.from_preset(argv, 'LAYERWISE_TEMPLATE')})")
    p.add_argument("--no-chat-template", action="store_true", help="do not apply the tokenizer's chat template")
    p.add_argument("--tokenizer", default=None, help="tokenizer for every model (default: the fine-tuned model's)")
    p.add_argument("--max-length", type=cli.positive_int, default=None,
                   help=f"longest prompt (+ answer) in tokens (default: {cli.from_preset(argv, 'MAX_LENGTH')})")
    p.add_argument("--n-bootstrap", type=cli.non_negative_int, default=1000,
                   help="bootstrap replicates for the region-ratio intervals (0: none)")
    cli.add_runtime_args(p, batch_size=8)
    cli.add_output_args(p)
    return p


def read_prompts(args) -> tuple[list[str], list[str | None], str]:
    """Questions, answer texts and a description of their source."""
    from pathlib import Path

    from brittle.data.questions import question_and_answer, read_records

    if args.tofu_dir:
        from brittle.data.tofu import load_tofu

        records, source = load_tofu(args.tofu_split, local_dir=args.tofu_dir), f"TOFU {args.tofu_split}"
    else:
        records, source = read_records(Path(args.questions)), str(args.questions)
    records = records[:args.max_questions] if args.max_questions else records
    if not records:
        raise UserError(f"no questions in {source}")
    if len(records) < 2:
        print(f"warning: one question in {source}: the region ratios have no bootstrap interval", file=sys.stderr)
    pairs = [question_and_answer(r) for r in records]
    return [q for q, _ in pairs], [a for _, a in pairs], source


def body(args, argv=None) -> int:
    import gc

    import pandas as pd

    from brittle import model_results, steps
    from brittle.capture.prompts import build_inputs, capture
    from brittle.io import StepRun, json_digest, model_slug, save_figure, write_csv, write_json
    from brittle.layerwise_tables import analyse, console_summary
    from brittle.models import load_model, load_tokenizer
    from brittle.padding import pad_id
    from brittle.plotting.layerwise import plot_layerwise
    from brittle.presets import load_preset, number
    from brittle.runtime import load_env, resolve_device, resolve_dtype, seed_everything

    load_env()
    preset = load_preset(args.preset)
    args.reference = args.reference or preset.get("REFERENCE_MODEL") or preset.get("FILTERED_MODEL")
    args.finetuned = args.finetuned or preset.get("BASE_MODEL")
    args.questions = args.questions or preset.get("LAYERWISE_QUESTIONS")
    args.template = args.template or preset.get("LAYERWISE_TEMPLATE") or "Answer briefly: {question}"
    args.max_length = args.max_length or number(preset, "MAX_LENGTH")
    if not (args.reference and args.finetuned):
        raise UserError(f"preset {args.preset} names no reference or fine-tuned model; pass --reference and --finetuned")
    if not (args.questions or args.tofu_dir):
        raise UserError(f"preset {args.preset} names no LAYERWISE_QUESTIONS; pass --questions or --tofu-dir")
    slugs = [model_slug(m) for m in args.unlearned]
    if len(set(slugs)) != len(slugs):
        raise UserError(f"--unlearned models must have distinct names, got {slugs}")
    if args.outdir and len(args.unlearned) > 1:
        raise UserError("--outdir names one folder: give one --unlearned model with it (several write one folder each)")

    # One step run per unlearned model: each folder holds that model's result, so analysing a
    # subset never overwrites the others. Device and batch size do not change the numbers.
    shared = {k: v for k, v in vars(args).items() if k not in {"device", "batch_size", "unlearned", "force"}}
    runs = {}
    for name in args.unlearned:
        run = StepRun(steps.outdir(args, STEP, model=name), {**shared, "unlearned": name}, argv,
                      models={"reference": args.reference, "finetuned": args.finetuned, "unlearned": name},
                      files={"questions": args.questions})
        if not run.should_skip(args.force):
            runs[name] = run
    if not runs:
        return 0
    seed_everything(args.seed)
    questions, answers, source = read_prompts(args)
    tokenizer = load_tokenizer(args.tokenizer or args.finetuned, trust_remote_code=args.trust_remote_code)
    inputs = build_inputs(tokenizer, questions, answers, template=args.template,
                          chat_template=not args.no_chat_template, position=args.position, max_length=args.max_length)
    print(f"[layerwise] {len(questions)} questions from {source}; position={args.position}")
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)

    # A model's states depend on its weights and these prompts only: stored on disk
    # (brittle/model_results.py), the reference's and the fine-tuned model's are computed once for
    # every call that analyses other unlearned models, and a rerun computes none.
    spec = {"ids": json_digest(inputs.ids), "spans": json_digest(inputs.spans), "dtype": str(dtype),
            "device": device.type, "batch_size": args.batch_size}   # padding width could change GPU bits

    def states_of(name: str):
        """One model's hidden states, from the store or from a pass of its own (one model in memory)."""
        def compute():
            model = load_model(name, dtype=dtype, device=device, trust_remote_code=args.trust_remote_code)
            size = sum(p.numel() * p.element_size() for p in model.parameters())
            try:
                return {"states": capture(model, inputs, pad_id(tokenizer), args.batch_size,
                                          desc=model_slug(name)).numpy()}
            finally:
                del model
                # A full collection frees a model that reference cycles keep alive before the next
                # is loaded, but walks every object of the process (about 1 s once transformers is
                # imported): worth it for a model of a GiB or more, not for the tiny world's.
                if size >= 2 ** 30:
                    gc.collect()
        return model_results.cached(args.output_root, STEP, name, None, spec, compute)["states"]

    ref, ft = states_of(args.reference), states_of(args.finetuned)
    if ref.shape != ft.shape:
        raise UserError(f"reference and fine-tuned models differ in depth or width: {ref.shape[1:]} vs {ft.shape[1:]}")
    analyses = {}
    for name in runs:
        states = states_of(name)
        if states.shape != ref.shape:
            raise UserError(f"{name} differs in depth or width from the reference: {states.shape[1:]} vs {ref.shape[1:]}")
        analyses[name] = analyse(model_slug(name), states, ref, ft, questions, args.n_bootstrap, args.seed)
        print(console_summary(model_slug(name), analyses[name]))

    # The signature plane of each figure shows every unlearned model of this call, done earlier or now.
    done = [steps.folder(STEP, args.output_root, model=n) / "regions.csv" for n in args.unlearned if n not in runs]
    all_regions = pd.concat([a.regions for a in analyses.values()]
                            + [pd.read_csv(p) for p in done if p.is_file()], ignore_index=True)
    for name, run in runs.items():
        a, slug = analyses[name], model_slug(name)
        write_csv(run.path("distances.csv"), a.distances)
        write_csv(run.path("per_hidden_state.csv"), a.per_hidden_state)
        write_csv(run.path("regions.csv"), a.regions)
        write_csv(run.path("per_question.csv"), a.questions)
        save_figure(run.path(f"layerwise_{slug}.png"), plot_layerwise(a.per_hidden_state, all_regions, slug))
        write_json(run.path("results.json"), {
            "experiment": "layer-wise forgetting", "unlearned": name, "reference": args.reference,
            "finetuned": args.finetuned, "questions": source, "n_questions": len(questions),
            "position": args.position, "template": args.template,
            "chat_template": not args.no_chat_template and bool(tokenizer.chat_template),
            "n_hidden_states": int(ref.shape[1]),
            "hidden_state_numbering": "0 = embeddings, i = output of block i-1, last after the final norm",
            "n_bootstrap": args.n_bootstrap, **a.summary})
        run.finish(models={"reference": args.reference, "finetuned": args.finetuned, "unlearned": name},
                   device=str(device), dtype=str(dtype), seed=args.seed)
        print(f"[layerwise] wrote {run.outdir}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(body, build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
