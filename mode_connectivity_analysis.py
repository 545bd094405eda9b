"""Linear mode connectivity: is there a loss ridge on the straight line from model A to model B?

Evaluates the mean next-token loss (nats per predicted token) on the forget and the retain texts
at 11 evenly spaced points of θ(α) = (1 − α)θ_a + αθ_b, α = 0, 0.1, …, 1, and reports per split
the loss barrier max_α [L(α) − ((1 − α)L(0) + αL(1))] (how far the path rises above the chord
between its ends) with a 95 % bootstrap interval over texts, and the weight distance ‖θ_b − θ_a‖.
Siddiqui et al. (2025) found both to predict how well an unlearned model resists relearning: an
edit that stays in the base model's basin (barrier ≈ 0, small distance) is easy to undo.
Read the forget barrier beside the retain barrier of the same path, and beside base → filtered.

The interpolated model is rebuilt in place for each α from the two float32 endpoints (three copies
of the weights in memory, never eleven); each text's loss is computed once per α and the bootstrap
resamples texts over those. Cost: 11 × (forget + retain texts) forward passes.

    uv run mode_connectivity_analysis.py --model-a models/tiny/tiny-base --model-b unlearned_models/tiny-base__ga

Writes <output-root>/<a>__vs__<b>/mode_connectivity/: connectivity_curve.csv,
connectivity_summary.csv, connectivity.png, run_meta.json, _DONE.json
(columns: docs/columns.md, or `uv run python -m brittle.steps show mode_connectivity`).
"""

from __future__ import annotations

import sys

from brittle import cli

STEP = "mode_connectivity"


def build_parser(argv=None):
    p = cli.parser(__doc__)
    cli.add_preset_arg(p)
    cli.add_pair_args(p)
    p.add_argument("--n-points", type=cli.positive_int, default=11,
                   help="evenly spaced points of the path, both models included (at least 3)")
    cli.add_text_args(p, argv)
    # Not cli.add_capture_args: its --device-map would do nothing here (one working model, moved whole).
    p.add_argument("--n-bootstrap", type=cli.non_negative_int, default=200, help="bootstrap replicates of every interval")
    # Small texts, no stored activations: big batches keep the 11 passes per text cheap.
    cli.add_runtime_args(p, batch_size=32)
    cli.add_output_args(p)
    return p


def body(args, argv) -> int:
    import time

    import numpy as np
    import pandas as pd
    import torch
    from tqdm.auto import tqdm

    from brittle import model_results
    from brittle.activation_steps import open_step
    from brittle.capture import tokenize_texts
    from brittle.errors import UserError, require_finite
    from brittle.evaluation import per_text_nll
    from brittle.io import json_digest, model_slug, save_figure, write_csv
    from brittle.metrics.connectivity import barrier, excess_over_chord, path_losses
    from brittle.mode_connectivity import check_compatible, float32_state, set_interpolation, weight_distance
    from brittle.models import load_model, load_tokenizer
    from brittle.padding import pad_id
    from brittle.plotting.connectivity import connectivity
    from brittle.runtime import resolve_device, resolve_dtype
    from brittle.stats import percentile_ci, resample_counts

    if args.n_points < 3:
        raise UserError("--n-points must be at least 3 (a barrier needs a point between the two models)")
    # Interpolated weights are no cached activations: this step runs its own passes.
    opened = open_step(args, argv, STEP, capture=False)
    if opened is None:
        return 0
    run, splits = opened.run, opened.splits
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    tokenizer = load_tokenizer(args.model_a, args.revision_a, args.trust_remote_code)
    token_ids = {s: tokenize_texts(tokenizer, texts, args.max_length) for s, texts in splits.items()}
    # Rounded so that α = 0.7 is 0.7 in the CSVs, not 0.7000000000000001 (ends stay exactly 0 and 1).
    alphas = np.linspace(0.0, 1.0, args.n_points).round(12)

    with run.timed("load"):
        # The endpoints are float32 whatever --dtype says: 16-bit interpolation rounds Δθ away.
        load = dict(dtype=torch.float32, device="cpu", trust_remote_code=args.trust_remote_code)
        model_b = load_model(args.model_b, revision=args.revision_b, **load)
        state_b = float32_state(model_b)
        del model_b
        work = load_model(args.model_a, revision=args.revision_a, **load)
        state_a = float32_state(work)
        check_compatible(state_a, state_b, args.model_a, args.model_b)
        distance, norm_a = weight_distance(state_a, state_b, [n for n, _ in work.named_parameters()])
        work = work.to(device=device, dtype=dtype)

    # nll[split]: (points, texts) summed nats; every text's tokens counted once (the same at every α).
    nll = {s: np.zeros((len(alphas), len(ids))) for s, ids in token_ids.items()}
    tokens, forward_tokens, t0 = {}, 0, time.time()
    def losses(alpha: float) -> dict:
        """Per split, per-text summed NLL (nats) and predicted tokens of θ(α)."""
        nonlocal forward_tokens
        set_interpolation(work, state_a, state_b, alpha)
        out = {}
        for s, ids in token_ids.items():
            forward_tokens += sum(len(x) for x in ids)
            out[s], out[f"{s}_tokens"] = per_text_nll(work, ids, pad_id(tokenizer), args.batch_size, device,
                                                      progress=True, desc=f"α={alpha:.2f} {s}")
        return out

    # θ(0) is model A itself (lerp returns θ_a exactly, on A's own architecture): its losses are
    # stored on disk (brittle/model_results.py), so the pipeline's pairs that share A compute the
    # start of their path once. Batch size is in the key: it could change the bits on a GPU.
    start_spec = {"ids": {s: json_digest(ids) for s, ids in token_ids.items()}, "dtype": str(dtype),
                  "device": device.type, "batch_size": args.batch_size}
    with run.timed("path"):
        for j, alpha in enumerate(tqdm(alphas, desc="path")):
            if j == 0:
                point = model_results.cached(args.output_root, STEP + "_start", args.model_a, args.revision_a,
                                             start_spec, lambda: losses(0.0))
            else:
                point = losses(float(alpha))
            for s in token_ids:
                nll[s][j], tokens[s] = point[s], point[f"{s}_tokens"]
                require_finite(nll[s][j], f"the loss at alpha {alpha:.2f} on {s} texts",
                               "the interpolated model overflows (try --dtype float32)")
    del work

    curves, summary = [], []
    for k, s in enumerate(splits):
        curve = path_losses(nll[s], tokens[s])
        # One resampling of the texts per split, applied to every α: each replicate is a whole curve.
        reps = path_losses(nll[s], tokens[s], resample_counts(len(tokens[s]), args.n_bootstrap, args.seed + k))
        lo, hi = percentile_ci(reps)
        b_lo, b_hi = percentile_ci(barrier(alphas, reps))
        excess = excess_over_chord(alphas, curve)
        curves.append(pd.DataFrame({"alpha": alphas, "split": s, "loss": curve, "loss_ci_low": lo,
                                    "loss_ci_high": hi, "excess_over_chord": excess}))
        summary.append({"split": s, "barrier": float(excess.max()), "barrier_ci_low": float(b_lo),
                        "barrier_ci_high": float(b_hi), "barrier_alpha": float(alphas[int(excess.argmax())]),
                        "loss_a": float(curve[0]), "loss_b": float(curve[-1]),
                        "l2_distance": distance, "l2_distance_rel": distance / norm_a if norm_a > 0 else np.nan,
                        "n_texts": len(tokens[s]), "n_tokens": int(tokens[s].sum())})
    curves, summary = pd.concat(curves, ignore_index=True), pd.DataFrame(summary)
    write_csv(run.path("connectivity_curve.csv"), curves)
    write_csv(run.path("connectivity_summary.csv"), summary)
    save_figure(run.path("connectivity.png"), connectivity(curves, model_slug(args.model_a), model_slug(args.model_b)))
    run.finish(models={"a": args.model_a, "b": args.model_b}, forward_tokens=forward_tokens,
               seconds_forward=round(time.time() - t0, 3), device=str(device), dtype=str(dtype),
               interpolation="torch.lerp of float32 weights, cast to dtype for the forward pass")
    print(summary[["split", "barrier", "barrier_ci_low", "barrier_ci_high", "loss_a", "loss_b",
                   "l2_distance"]].to_string(index=False))
    print(f"wrote {run.outdir}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(body, build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
