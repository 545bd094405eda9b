"""Step 7: is ΔW low-rank, and do the dominant subspaces of W move?

For a seeded sample of weight matrices (attention and MLP, default 50) it computes the full
spectrum of ΔW = W_b − W_a and the top-k singular subspaces of W_a and W_b, and reports
  - the share of ‖ΔW‖_F² in ΔW's 10 largest singular directions (high: a very low-rank update),
  - ΔW's effective rank (fewest directions holding 99 % of ‖ΔW‖_F²),
  - the principal angles between the top-k subspaces of W_a and W_b on the output side (left
    singular vectors) and the input side (right singular vectors), as the geodesic Grassmann
    distance sqrt(Σθ²), the chordal distance sqrt(Σ sin²θ) (so named) and the mean cos²θ,
each beside what chance gives: a Gaussian matrix of the same shape for the spectrum metrics (one
seeded draw), uniformly random k-subspaces for the angles (seeded Monte Carlo, 20 draws; k/d exact
for mean cos²). Against random subspaces any update smaller than W looks "aligned", so the geodesic
distance also stands beside its norm-matched null: how far W_a's top-k subspaces turn under a
Gaussian ΔW of the same Frobenius norm (mean and spread over --null-draws seeded draws, default 8),
and the ratio real / null (≈ 1: no more than an unstructured change of that size; > 1: the update
is aimed at W's dominant directions). Each draw costs one top-k SVD of a matrix of W's shape: 8 draws
add up to about 45 s per 16384×4096 matrix on 2 CPU cores (0.4 s Gaussian + 5.1 s SVD with a flat
spectrum, the worst case) against ~20 s for the rest of the step. Streams the weights; only
sampled matrices are read.

Example:
    uv run null_space_analysis.py --model-a models/tiny/tiny-base --model-b unlearned_models/tiny-base__npo

Writes to <output-root>/<slug_a>__vs__<slug_b>/null_space_analysis/ (or --outdir):
    null_space_results.csv  one row per sampled matrix, every number beside its chance level
    null_space_summary.csv  per group (attn, mlp, all): median of each metric and of its baseline,
                            and of the geodesic distance's norm-matched null and ratio
    null_space.png          every metric per sampled matrix with its random baseline
    run_meta.json, _DONE.json
"""

from __future__ import annotations

import sys

from brittle import cli
from brittle.errors import UserError

STEP = "null_space_analysis"
SUMMARY_METRICS = ["dW_top10_energy", "dW_effective_rank_frac", "out_geodesic", "in_geodesic",
                   "out_mean_cos2", "in_mean_cos2"]
NULL_METRICS = ["out_geodesic_null", "out_geodesic_over_null", "in_geodesic_null", "in_geodesic_over_null"]


def build_parser(argv=None):
    p = cli.parser(__doc__)
    cli.add_preset_arg(p, used=False)
    cli.add_pair_args(p)
    cli.add_output_args(p)
    p.add_argument("--n-matrices", type=cli.positive_int, default=50, help="how many attention/MLP matrices to sample")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample and of the random baselines")
    p.add_argument("--k", type=cli.positive_int, default=10, help="dimension of the top singular subspaces compared")
    p.add_argument("--energy", type=float, default=0.99, help="energy share that defines the effective rank")
    p.add_argument("--null-draws", type=int, default=8,
                   help="seeded Gaussian perturbations of norm ||dW||_F per matrix for the angle's null (>= 2; "
                        "each costs one top-k SVD; 8 puts the null mean's standard error near a third of its spread)")
    return p


def summary_table(results):
    """Per group (attn, mlp, all): the median of each summary metric and of its chance level."""
    import pandas as pd

    rows = []
    for group, g in [*results.groupby("group"), ("all", results)]:
        rec = {"group": group, "n_matrices": len(g)}
        for m in SUMMARY_METRICS:
            rec[f"median_{m}"] = float(g[m].median())
            rec[f"median_{m}_random"] = float(g[f"{m}_random"].median())
        for m in NULL_METRICS:   # the ratio is NaN for unchanged matrices; the median skips them
            rec[f"median_{m}"] = float(g[m].median())
        rows.append(rec)
    return pd.DataFrame(rows)


def body(args, argv) -> int:
    import pandas as pd
    from tqdm import tqdm

    from brittle import steps
    from brittle.io import StepRun, save_figure, write_csv
    from brittle.plotting import weights as plots
    from brittle.weight_geometry import null_space_row, sample_names
    from brittle.weights import WeightPairs, stored_transposed

    if not 0 < args.energy <= 1:
        raise UserError("--energy must be in (0, 1]")
    if args.null_draws < 2:
        raise UserError("--null-draws must be 2 or more (the null's spread needs two draws)")
    outdir = steps.outdir(args, STEP, model_a=args.model_a, model_b=args.model_b)
    params = {k: getattr(args, k) for k in ("model_a", "model_b", "revision_a", "revision_b",
                                            "n_matrices", "seed", "k", "energy", "null_draws")}
    step = StepRun(outdir, params, argv, models={"a": args.model_a, "b": args.model_b})
    if step.should_skip(args.force):
        return 0

    every = WeightPairs(args.model_a, args.model_b, args.revision_a, args.revision_b, matrices_only=True)
    chosen = set(sample_names(every.shapes, args.n_matrices, args.seed))
    if not chosen:
        raise UserError(f"no attention or MLP weight matrices found in {args.model_a}")
    pairs = WeightPairs(args.model_a, args.model_b, args.revision_a, args.revision_b, matrices_only=True,
                        select=lambda name, shape: name in chosen)
    rows = []
    with step.timed("stream_and_svd"):
        for name, w_a, w_b in tqdm(pairs, total=len(pairs), desc="null space", unit="matrix"):
            if stored_transposed(pairs.config, name):  # GPT-2 Conv1D: make rows the outputs
                w_a, w_b = w_a.T, w_b.T
            rows.append(null_space_row(name, w_a, w_b, args.k, args.energy, args.seed, args.null_draws))
            del w_a, w_b
    results = pd.DataFrame(rows)
    write_csv(step.path("null_space_results.csv"), results)
    write_csv(step.path("null_space_summary.csv"), summary_table(results))
    save_figure(step.path("null_space.png"), plots.null_space_summary(results, f"({outdir.parent.name})"))
    print(f"wrote {len(results)} matrices to {outdir}")
    step.finish(models={"a": args.model_a, "b": args.model_b}, sampled=sorted(chosen), device="cpu",
                dtype="float32", baselines="Gaussian matrix of the same shape (1 seeded draw); "
                "random k-subspaces (20 seeded draws); mean cos^2 closed form k/d; geodesic null: "
                f"W_a + Gaussian of norm ||dW||_F ({args.null_draws} seeded draws)")
    return 0


def main(argv=None) -> int:
    return cli.run_main(body, build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
