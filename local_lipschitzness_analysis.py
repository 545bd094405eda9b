"""Step 12: did model B become rougher or smoother around forget text than model A?

Perturbs the input embeddings of every text within an ε-ball (each token's perturbation has norm
ε times its embedding norm, random direction; R draws) and measures, per text and model: the
output change per unit input change ‖Δ log p‖ / ‖δ‖ (a local Lipschitz estimate), the variance of
the output log-probabilities over the R perturbations, and the norm of the gradient of the text's
negative log-likelihood with respect to its embeddings (see brittle/sensitivity.py for the exact
definitions), also per predicted token. Unlike the other activation steps this one needs its own
forward and backward passes (perturbed inputs cannot be served from a cache); each model is loaded
once. Whatever --dtype says, the numbers are computed in float32: --dtype sets the precision the
weights are loaded in (as in every step; a bfloat16 run measures the bf16-rounded model), then the
model is upcast, because an ε = 0.01 finite difference computed in bfloat16 is rounding noise
(brittle/sensitivity.py). run_meta.json records both (dtype, compute_dtype).
Summaries are means over texts with 95 % bootstrap intervals; the change B/A is a paired bootstrap
(the same resampled texts for both models).

    uv run local_lipschitzness_analysis.py --model-a models/tiny/tiny-base --model-b models/tiny/tiny-filtered

Writes <output-root>/<a>__vs__<b>/lipschitzness/: lipschitz_per_text.csv, lipschitz_summary.csv,
lipschitz_change.csv, lipschitz.png, run_meta.json, _DONE.json.
"""

from __future__ import annotations

import sys

from brittle import cli
from brittle.errors import UserError

STEP = "lipschitzness"
METRICS = ("lipschitz", "grad_norm", "grad_norm_per_token", "output_variance")


def build_parser(argv=None):
    p = cli.parser(__doc__)
    cli.add_preset_arg(p)
    cli.add_pair_args(p)
    p.add_argument("--epsilon", type=cli.positive_float, default=0.01,
                   help="perturbation radius relative to each token's embedding norm")
    p.add_argument("--n-perturbations", type=int, default=8, help="random perturbations per text (at least 2)")
    cli.add_text_args(p, argv)
    cli.add_capture_args(p, cache=False)
    cli.add_runtime_args(p)
    cli.add_output_args(p)
    return p


def body(args, argv) -> int:
    import time

    import pandas as pd
    import torch
    from tqdm.auto import tqdm

    from brittle import model_results
    from brittle.activation_steps import open_step
    from brittle.capture import tokenize_texts
    from brittle.errors import require_finite
    from brittle.io import json_digest, model_slug, save_figure, write_csv
    from brittle.models import load_model, load_tokenizer
    from brittle.padding import pad_id, right_pad
    from brittle.plotting.activations import lipschitz
    from brittle.runtime import resolve_device, resolve_dtype
    from brittle.sensitivity import COMPUTE_DTYPE, for_sensitivity, perturbation_stats
    from brittle.stats import percentile_ci, resample_counts

    if args.n_perturbations < 2:
        raise UserError("--n-perturbations must be at least 2 (the output variance needs two draws)")
    # Not a flag: it joins the run's parameters so that results computed before the step upcast to
    # float32 (bf16 differences, identical flags) are redone rather than skipped as current.
    args.compute_dtype = str(COMPUTE_DTYPE).removeprefix("torch.")
    # Perturbed inputs cannot be served from the activation cache: this step runs its own passes.
    opened = open_step(args, argv, STEP, capture=False)
    if opened is None:
        return 0
    run, splits = opened.run, opened.splits
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    tokenizer = load_tokenizer(args.model_a, args.revision_a, args.trust_remote_code)
    token_ids = {s: tokenize_texts(tokenizer, texts, args.max_length) for s, texts in splits.items()}
    pad = pad_id(tokenizer)
    forward_tokens, t0 = 0, time.time()

    def model_stats(model_id, revision, m) -> dict:
        """Per text of each split (forget texts first, each split in text order): its tokens and
        the four statistics, from one model's own perturbed passes (the model is loaded once)."""
        nonlocal forward_tokens
        model = for_sensitivity(load_model(model_id, dtype=dtype, device=device, revision=revision,
                                           trust_remote_code=args.trust_remote_code, device_map=args.device_map))
        out = {"split": [], "text_index": [], "n_tokens": [], **{k: [] for k in METRICS}}
        for s, ids_list in token_ids.items():
            # Seeded per (split, text batch), not per model: A and B see the same perturbation directions.
            order = sorted(range(len(ids_list)), key=lambda i: -len(ids_list[i]))
            for start in tqdm(range(0, len(order), args.batch_size), desc=f"{'ab'[m]} {s}", leave=False):
                chunk = order[start:start + args.batch_size]
                ids, mask = right_pad([ids_list[i] for i in chunk], pad)
                gen = torch.Generator().manual_seed(args.seed * 1_000_003 + start + (0 if s == "forget" else 500_009))
                stats = perturbation_stats(model, ids, mask, args.epsilon, args.n_perturbations, gen)
                for k in METRICS:
                    require_finite(stats[k], f"{k} of {model_id} on {s} texts",
                                   "the model's outputs are not finite under perturbation (try a smaller --epsilon)")
                forward_tokens += ids.numel() * (args.n_perturbations + 1)
                out["split"] += [s] * len(chunk)
                out["text_index"] += chunk
                out["n_tokens"] += mask.sum(1).tolist()
                for k in METRICS:
                    out[k] += stats[k].tolist()
        del model
        return out

    # A model's statistics do not depend on the other model (the noise is seeded by split and
    # batch): they are stored (brittle/model_results.py), so the pipeline's pairs that share model
    # A perturb A once. Batch size is in the key, as it seeds the noise.
    spec = {"ids": {s: json_digest(ids) for s, ids in token_ids.items()}, "epsilon": args.epsilon,
            "n_perturbations": args.n_perturbations, "batch_size": args.batch_size, "seed": args.seed,
            "dtype": str(dtype), "compute_dtype": args.compute_dtype, "device": device.type,
            "device_map": args.device_map}
    frames = []
    for m, (model_id, revision) in enumerate(((args.model_a, args.revision_a), (args.model_b, args.revision_b))):
        def compute(model_id=model_id, revision=revision, m=m):
            return model_stats(model_id, revision, m)
        stored = model_results.cached(args.output_root, STEP, model_id, revision, spec, compute)
        frames.append(pd.DataFrame({"split": stored["split"].astype(str), "model": "ab"[m],
                                    "text_index": stored["text_index"].astype(int),
                                    "n_tokens": stored["n_tokens"].astype(int),
                                    **{k: stored[k].astype(float) for k in METRICS}}))
    per_text = pd.concat(frames, ignore_index=True).sort_values(["split", "model", "text_index"]).reset_index(drop=True)
    summary, change = [], []
    for k, s in enumerate(splits):
        part = per_text[per_text.split == s]
        vals = {m: part[part.model == m].sort_values("text_index")[list(METRICS)].to_numpy() for m in "ab"}
        w = resample_counts(len(vals["a"]), args.n_bootstrap, args.seed + k)
        reps = {m: (w @ vals[m]) / len(vals[m]) for m in "ab"}  # (n_boot, len(METRICS)) means over resampled texts
        for m in "ab":
            lo, hi = percentile_ci(reps[m])
            row = {"split": s, "model": m, "model_id": [args.model_a, args.model_b]["ab".index(m)], "n_texts": len(vals[m])}
            for j, metric in enumerate(METRICS):
                row[metric], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = vals[m][:, j].mean(), lo[j], hi[j]
            summary.append(row)
        lo, hi = percentile_ci(reps["b"] / reps["a"])
        for j, metric in enumerate(METRICS):
            change.append({"split": s, "metric": metric, "model_a_value": vals["a"][:, j].mean(),
                           "model_b_value": vals["b"][:, j].mean(),
                           "ratio_b_over_a": vals["b"][:, j].mean() / vals["a"][:, j].mean(),
                           "ci_low": lo[j], "ci_high": hi[j]})
    summary = pd.DataFrame(summary)
    write_csv(run.path("lipschitz_per_text.csv"), per_text)
    write_csv(run.path("lipschitz_summary.csv"), summary)
    write_csv(run.path("lipschitz_change.csv"), pd.DataFrame(change))
    save_figure(run.path("lipschitz.png"), lipschitz(summary, model_slug(args.model_a), model_slug(args.model_b)))
    run.finish(models={"a": args.model_a, "b": args.model_b}, forward_tokens=forward_tokens,
               seconds_forward=round(time.time() - t0, 3), device=str(device), dtype=str(dtype),
               compute_dtype=str(COMPUTE_DTYPE))
    print(f"wrote {run.outdir}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(body, build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
