"""Where in the network does forgetting happen? Compare an unlearned model, layer by layer, with the
model it was unlearned from (fine-tuned on the facts) and with a reference that never learned them.

    # TOFU preset: Llama-3.2-1B-Instruct (reference), its TOFU fine-tune, open-unlearning's IdkDPO model
    uv run layerwise_forgetting.py \\
        --reference meta-llama/Llama-3.2-1B-Instruct \\
        --finetuned open-unlearning/tofu_Llama-3.2-1B-Instruct_full \\
        --unlearned open-unlearning/unlearn_tofu_Llama-3.2-1B-Instruct_forget10_IdkDPO_lr2e-05_beta0.1_alpha1_epoch10 \\
        --tofu-dir data/tofu/qa --n-samples all
    # Tiny world: filtered = reference, base = fine-tuned, every unlearned model of the base at once
    uv run layerwise_forgetting.py --reference models/tiny/tiny-filtered --finetuned models/tiny/tiny-base \\
        --unlearned unlearned_models/tiny-base__* --questions data/tiny/questions/hazard_eval.jsonl \
        --n-samples all --template "{question}"

Every prompt ("Answer briefly: <question>", through the chat template when the tokenizer has one)
is tokenized once and fed to every model; each model's hidden states (0 = embeddings, i = output of
block i-1) at the last prompt token, or averaged over the answer's tokens (``--position
answer_mean``), are compared by cosine distance and L2. The forgetting ratio d_ft / (d_ref + d_ft)
is above 0.5 where the unlearned model is closer to the reference (forgotten) and below 0.5 where
it is closer to the fine-tuned model (retained). Averaged over the early / middle / late thirds of
the depth it classifies the model: true_unlearning (early and late > 0.5), obfuscation (early
< 0.5, late > 0.5), no_effect (both < 0.5) or mixed. Models are loaded one at a time.

Questions: TOFU forget10 by default (``brittle.data.tofu``), or ``--questions`` (a JSONL of
{"question", "answer"} as in TOFU, {"prompt", "answer"} as in forget_qa.jsonl, or our multiple-choice
{"question", "choices", "answer": index}); the first ``--n-samples`` (or all).

Files written to <output-root>/layerwise_forgetting/<finetuned slug>/ (or --outdir):
    distances.csv        one row per (unlearned model, question, layer): the four distances and the
                         fine-tuned -> reference baseline
    per_layer.csv        one row per (unlearned model, layer): mean/std/min/max of each distance,
                         forgetting ratio (cosine and L2), closer_to
    regions.csv          one row per (unlearned model, region): layers, ratio, bootstrap CI, pattern
    per_question.csv     one row per (unlearned model, question): region ratios and pattern
    results.json         everything above summarised, with pattern distributions and examples
    layerwise_<model>.png  the four-panel figure for each unlearned model
    run_meta.json, _DONE.json
"""

from __future__ import annotations

import gc
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from brittle import hidden_states, layerwise
from brittle.cli import UserError, add_output_args, add_runtime_args, parser, run_main
from brittle.io import StepRun, model_slug, save_figure, write_csv, write_json
from brittle.models import load_model, load_tokenizer
from brittle.plotting.layerwise import plot_layerwise
from brittle.runtime import load_env, resolve_device, resolve_dtype, seed_everything

# Column names: <metric>_<comparison>[_<stat>]; the baseline compares fine-tuned with reference.
COMPARISONS = ("to_reference", "to_finetuned")
BASELINE = "finetuned_to_reference"
METRICS = ("cosine", "l2")
STATS = ("mean", "std", "min", "max")
EXAMPLES_PER_PATTERN = 2


def build_parser():
    p = parser(__doc__)
    p.add_argument("--reference", required=True, help="model that never learned the facts (Hub id or folder)")
    p.add_argument("--finetuned", required=True, help="model that learned them; the unlearning started from it")
    p.add_argument("--unlearned", required=True, nargs="+", help="one or more unlearned models")
    p.add_argument("--questions", default=None,
                   help="JSONL of questions (e.g. data/tiny/questions/hazard_eval.jsonl); default: TOFU --tofu-split")
    p.add_argument("--tofu-split", default="forget10", help="TOFU subset used when --questions is not given")
    p.add_argument("--tofu-dir", default=None,
                   help="folder holding <tofu-split>.jsonl (e.g. data/tofu/qa written by create_datasets.py); default: the Hub")
    p.add_argument("--n-samples", default="20", help="use the first N questions, or 'all'")
    p.add_argument("--position", choices=hidden_states.POSITIONS, default="last",
                   help="state per layer: the last prompt token, or the mean over the answer's tokens")
    p.add_argument("--template", default="Answer briefly: {question}", help="prompt wrapped around each question")
    p.add_argument("--no-chat-template", action="store_true", help="do not apply the tokenizer's chat template")
    p.add_argument("--tokenizer", default=None, help="tokenizer for every model (default: the fine-tuned model's)")
    p.add_argument("--max-length", type=int, default=512, help="longest prompt (+ answer) in tokens")
    p.add_argument("--n-bootstrap", type=int, default=1000, help="bootstrap replicates for the region-ratio CIs (0: none)")
    add_runtime_args(p, batch_size=8)
    add_output_args(p)
    return p


def parse_n_samples(text: str) -> int | None:
    if text.lower() == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise UserError(f"--n-samples must be a positive integer or 'all', got {text!r}") from None
    if n < 1:
        raise UserError(f"--n-samples must be at least 1, got {n}")
    return n


def question_and_answer(record: dict) -> tuple[str, str | None]:
    """(question, answer text) from a TOFU, forget_qa or multiple-choice record."""
    question = record.get("question") or record.get("prompt")
    if not question:
        raise UserError(f"record has no 'question' or 'prompt' field: {sorted(record)}")
    answer = record.get("answer")
    if isinstance(answer, (int, np.integer)) and not isinstance(answer, bool) and "choices" in record:
        answer = record["choices"][int(answer)]
    return str(question), (str(answer) if isinstance(answer, str) else None)


def load_questions(args) -> tuple[list[str], list[str | None], str]:
    if args.questions:
        path = Path(args.questions)
        if not path.is_file():
            raise UserError(f"questions file not found: {path}")
        text = path.read_text(encoding="utf-8")
        records = json.loads(text) if path.suffix == ".json" else [json.loads(line) for line in text.splitlines() if line.strip()]
        source = str(path)
    else:
        from brittle.data.tofu import load_tofu

        records = load_tofu(args.tofu_split, local_dir=args.tofu_dir)
        source = f"TOFU {args.tofu_split}"
    n = parse_n_samples(args.n_samples)
    records = records[:n] if n else records
    if not records:
        raise UserError(f"no questions in {source}")
    pairs = [question_and_answer(r) for r in records]
    return [q for q, _ in pairs], [a for _, a in pairs], source


def capture_model(name: str, args, inputs, pad_id: int):
    """Load one model, take its hidden states, free it: only one model is ever in memory."""
    device = resolve_device(args.device)
    model = load_model(name, dtype=resolve_dtype(args.dtype, device), device=device,
                       trust_remote_code=args.trust_remote_code)
    try:
        return hidden_states.capture(model, inputs, pad_id, args.batch_size, desc=model_slug(name)).numpy()
    finally:
        del model
        gc.collect()


def per_layer_rows(model: str, dist: dict, base: dict, regions: dict) -> list[dict]:
    region_of = {layer: name for name, idx in regions.items() for layer in idx}
    summaries = {(m, c): layerwise.summarize(dist[c][m]) for m in METRICS for c in COMPARISONS}
    summaries.update({(m, BASELINE): layerwise.summarize(base[m]) for m in METRICS})
    ratio = {m: layerwise.layer_ratios(dist["to_reference"][m], dist["to_finetuned"][m]) for m in METRICS}
    rows = []
    for layer in range(len(ratio["cosine"])):
        row = {"unlearned_model": model, "layer": layer, "region": region_of[layer]}
        for (m, c), summary in summaries.items():
            for stat in STATS:
                row[f"{m}_{c}_{stat}"] = summary[stat][layer]
        row["forgetting_ratio"] = ratio["cosine"][layer]
        row["forgetting_ratio_l2"] = ratio["l2"][layer]
        row["closer_to"] = "reference" if ratio["cosine"][layer] > 0.5 else "finetuned"
        rows.append(row)
    return rows


def analyse(model: str, states: np.ndarray, ref: np.ndarray, ft: np.ndarray, base: dict, regions: dict,
            questions: list[str], args) -> dict:
    """Every table row and summary for one unlearned model's states."""
    dist = {"to_reference": layerwise.distances(states, ref), "to_finetuned": layerwise.distances(states, ft)}
    d_ref, d_ft = dist["to_reference"]["cosine"], dist["to_finetuned"]["cosine"]
    n_q, n_layers = d_ref.shape
    distance_rows = pd.DataFrame({
        "unlearned_model": model,
        "question_idx": np.repeat(np.arange(n_q), n_layers),
        "layer": np.tile(np.arange(n_layers), n_q),
        **{f"{m}_{c}": dist[c][m].ravel() for c in COMPARISONS for m in METRICS},
        **{f"{m}_{BASELINE}": base[m].ravel() for m in METRICS},
    })
    ratios = layerwise.region_ratios(d_ref, d_ft, regions)
    ratios_l2 = layerwise.region_ratios(dist["to_reference"]["l2"], dist["to_finetuned"]["l2"], regions)
    cis = layerwise.bootstrap_region_ratios(d_ref, d_ft, regions, args.n_bootstrap, args.seed)
    pattern = layerwise.classify(ratios["early"], ratios["late"])
    region_rows = [{"unlearned_model": model, "region": name, "first_layer": idx[0], "last_layer": idx[-1],
                    "n_layers": len(idx), "forgetting_ratio": ratios[name], "ci_low": cis[name][0],
                    "ci_high": cis[name][1], "ci_excludes_half": bool(cis[name][0] > 0.5 or cis[name][1] < 0.5),
                    "forgetting_ratio_l2": ratios_l2[name], "model_pattern": pattern}
                   for name, idx in regions.items()]

    q_ratios = layerwise.question_region_ratios(d_ref, d_ft, regions)
    q_patterns = layerwise.classify(q_ratios["early"], q_ratios["late"])
    question_rows = pd.DataFrame({"unlearned_model": model, "question_idx": np.arange(n_q), "question": questions,
                                  **{f"{name}_ratio": q_ratios[name] for name in regions}, "pattern": q_patterns})
    counts = Counter(q_patterns.tolist())
    examples = {p: [{"question_idx": int(r.question_idx), "question": r.question,
                     "early_ratio": float(r.early_ratio), "late_ratio": float(r.late_ratio)}
                    for r in question_rows[question_rows["pattern"] == p].head(EXAMPLES_PER_PATTERN).itertuples()]
                for p in layerwise.PATTERNS if counts.get(p)}
    summary = {
        "pattern": pattern,
        # The pattern rests on the early and late ratios' sides of 0.5; it is only supported by the
        # data when both bootstrap intervals stay on one side.
        "pattern_supported_by_ci": bool(all(cis[r][0] > 0.5 or cis[r][1] < 0.5 for r in ("early", "late"))),
        "early_closer_to": "reference" if ratios["early"] > 0.5 else "finetuned",
        "late_closer_to": "reference" if ratios["late"] > 0.5 else "finetuned",
        "region_forgetting_ratio": {name: {"ratio": ratios[name], "ci_low": cis[name][0], "ci_high": cis[name][1],
                                           "ratio_l2": ratios_l2[name]} for name in regions},
        "per_layer_forgetting_ratio": layerwise.layer_ratios(d_ref, d_ft).tolist(),
        "pattern_distribution": {p: counts.get(p, 0) for p in layerwise.PATTERNS},
        "pattern_fraction": {p: counts.get(p, 0) / n_q for p in layerwise.PATTERNS},
        "pattern_examples": examples,
    }
    return {"distances": distance_rows, "per_layer": per_layer_rows(model, dist, base, regions),
            "regions": region_rows, "questions": question_rows, "summary": summary}


def print_summary(model: str, per_layer: pd.DataFrame, summary: dict) -> None:
    caveat = "" if summary["pattern_supported_by_ci"] else " (an early or late CI contains 0.5)"
    print(f"\n=== {model}: {summary['pattern'].upper()}{caveat} ===")
    print(f"{'layer':>5}  {'-> reference':>12}  {'-> fine-tuned':>13}  {'ratio':>6}  closer to")
    for r in per_layer.itertuples():
        print(f"{r.layer:>5}  {r.cosine_to_reference_mean:>12.4f}  {r.cosine_to_finetuned_mean:>13.4f}  "
              f"{r.forgetting_ratio:>6.3f}  {r.closer_to}")
    for name, v in summary["region_forgetting_ratio"].items():
        print(f"  {name:<6} ratio {v['ratio']:.3f}  95% CI [{v['ci_low']:.3f}, {v['ci_high']:.3f}]")
    dist = ", ".join(f"{p} {n}" for p, n in summary["pattern_distribution"].items() if n)
    print(f"  per-question patterns: {dist}")


def body(args, argv=None) -> int:
    load_env()
    slugs = [model_slug(m) for m in args.unlearned]
    if len(set(slugs)) != len(slugs):
        raise UserError(f"--unlearned models must have distinct names, got {slugs}")
    outdir = Path(args.outdir) if args.outdir else Path(args.output_root) / "layerwise_forgetting" / model_slug(args.finetuned)
    # Everything that changes the numbers; device and batch size do not (padding is masked).
    params = {k: v for k, v in vars(args).items() if k not in {"device", "batch_size", "output_root", "force", "outdir"}}
    run = StepRun(outdir, params, argv)
    if run.should_skip(args.force):
        return 0
    seed_everything(args.seed)

    questions, answers, source = load_questions(args)
    tokenizer = load_tokenizer(args.tokenizer or args.finetuned, trust_remote_code=args.trust_remote_code)
    inputs = hidden_states.build_inputs(tokenizer, questions, answers, template=args.template,
                                        chat_template=not args.no_chat_template, position=args.position,
                                        max_length=args.max_length)
    print(f"[layerwise] {len(questions)} questions from {source}; position={args.position}")

    with run.timed("capture"):
        ref = capture_model(args.reference, args, inputs, tokenizer.pad_token_id)
        ft = capture_model(args.finetuned, args, inputs, tokenizer.pad_token_id)
    if ref.shape != ft.shape:
        raise UserError(f"reference and fine-tuned models differ in depth or width: {ref.shape[1:]} vs {ft.shape[1:]}")
    regions = layerwise.layer_regions(ref.shape[1])
    base = layerwise.distances(ft, ref)

    results = {}
    tables = {"distances": [], "per_layer": [], "regions": [], "questions": []}
    for name, slug in zip(args.unlearned, slugs):
        with run.timed("capture"):
            states = capture_model(name, args, inputs, tokenizer.pad_token_id)
        if states.shape != ref.shape:
            raise UserError(f"{name} differs in depth or width from the reference: {states.shape[1:]} vs {ref.shape[1:]}")
        out = analyse(slug, states, ref, ft, base, regions, questions, args)
        tables["distances"].append(out["distances"])
        tables["per_layer"].append(pd.DataFrame(out["per_layer"]))
        tables["regions"].append(pd.DataFrame(out["regions"]))
        tables["questions"].append(out["questions"])
        results[slug] = {"model": name, **out["summary"]}
        print_summary(slug, tables["per_layer"][-1], out["summary"])

    frames = {k: pd.concat(v, ignore_index=True) for k, v in tables.items()}
    write_csv(run.path("distances.csv"), frames["distances"])
    write_csv(run.path("per_layer.csv"), frames["per_layer"])
    write_csv(run.path("regions.csv"), frames["regions"])
    write_csv(run.path("per_question.csv"), frames["questions"])
    # The figures are drawn from the tables just written, as a reader of the CSVs would.
    per_layer_csv, regions_csv = pd.read_csv(run.path("per_layer.csv")), pd.read_csv(run.path("regions.csv"))
    for slug in slugs:
        save_figure(run.path(f"layerwise_{slug}.png"), plot_layerwise(per_layer_csv, regions_csv, slug))

    baseline = layerwise.summarize(base["cosine"])
    write_json(run.path("results.json"), {
        "experiment": "layer-wise forgetting",
        "reference": args.reference, "finetuned": args.finetuned,
        "questions": source, "n_questions": len(questions), "position": args.position,
        "template": args.template, "chat_template": not args.no_chat_template and bool(tokenizer.chat_template),
        "n_layers": int(ref.shape[1]), "layer_0": "embeddings (last entry: final norm applied)",
        "layer_regions": regions, "n_bootstrap": args.n_bootstrap,
        "baseline_finetuned_to_reference_cosine_mean": baseline["mean"].tolist(),
        "models": results,
    })
    run.finish(models={"reference": args.reference, "finetuned": args.finetuned, "unlearned": args.unlearned},
               device=str(resolve_device(args.device)), dtype=str(resolve_dtype(args.dtype, resolve_device(args.device))),
               seed=args.seed)
    print(f"\n[layerwise] wrote {outdir}")
    return 0


def main(argv=None) -> int:
    return run_main(lambda args: body(args, argv), build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
