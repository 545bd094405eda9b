"""Step 1: how large is ΔW = W_b − W_a, where is it, and how many directions does it use?

Streams every weight matrix of two checkpoints of one architecture (one pair in memory, shard by
shard, upcast to float32 before subtracting) and writes, per matrix, the Frobenius and spectral
norms of ΔW and W (= W_a), their ratios, stable ranks ‖·‖_F²/σ₁² and, with --empirical-rank, the
number of singular directions holding 99 % of the energy. σ₁ comes from ARPACK (Lanczos) with a
convergence tolerance, not a fixed number of power iterations; full spectra are only computed for
--empirical-rank (eigenvalues of the smaller Gram matrix).

Two columns go beyond the seed: W_cosine, the cosine of W_a and W_b (near 1 when B is an edit of
A; near 0 when B was trained separately, e.g. base -> filtered, whose ΔW is then no intervention),
and dW_zero_frac, the share of ΔW entries that are exactly 0 (16-bit checkpoints round small
updates away; a warning is printed when it is high).

Example:
    uv run collect_param_stats.py --model-a models/tiny/tiny-base --model-b unlearned_models/tiny-base__npo

Writes to <output-root>/<slug_a>__vs__<slug_b>/param_stats/ (or --outdir):
    per_matrix.csv   one row per 2-D weight matrix (block = the transformer block it belongs to)
    per_layer.csv    one row per (block, group), pooled over the group's matrices
    run_meta.json, _DONE.json
Columns: docs/columns.md, or `uv run python -m brittle.steps show param_stats`.
"""

from __future__ import annotations

import sys

from brittle import cli

STEP = "param_stats"
# Above this share of exact zeros in the ΔW of changed matrices, ΔW is mostly 16-bit rounding.
ZERO_WARN = 0.5


def build_parser(argv=None):
    p = cli.parser(__doc__)
    cli.add_preset_arg(p, used=False)
    cli.add_pair_args(p)
    cli.add_output_args(p)
    p.add_argument("--empirical-rank", action="store_true",
                   help="also compute the 99%%-energy rank of dW and W (full spectra: ~5 s per 4096x16384 matrix)")
    p.add_argument("--spectral-tol", type=cli.positive_float, default=None,
                   help="ARPACK relative tolerance on sigma_1^2, sigma_1 is accurate to about half of it "
                        "(default: brittle.metrics.linalg.SPECTRAL_TOL, 1e-4)")
    p.add_argument("--workers", type=cli.positive_int, default=None,
                   help="threads running the eigen-solves, one torch thread each (default: torch's thread "
                        "count, i.e. OMP_NUM_THREADS or the cores; 1 = in order with torch's own threading). "
                        "The numbers do not depend on it")
    return p


def body(args, argv) -> int:
    import torch
    from tqdm import tqdm

    from brittle import steps
    from brittle.errors import UserError
    from brittle.io import StepRun, write_csv
    from brittle.metrics.linalg import SPECTRAL_TOL
    from brittle.param_stats import (
        describe_relatedness,
        per_layer,
        per_matrix_frame,
        public,
        relatedness_summary,
    )
    from brittle.param_stats_run import collect_rows
    from brittle.weights import WeightPairs

    outdir = steps.outdir(args, STEP, model_a=args.model_a, model_b=args.model_b)
    args.spectral_tol = args.spectral_tol or SPECTRAL_TOL
    params = {"model_a": args.model_a, "model_b": args.model_b, "revision_a": args.revision_a,
              "revision_b": args.revision_b, "empirical_rank": args.empirical_rank,
              "spectral_tol": args.spectral_tol}
    step = StepRun(outdir, params, argv, models={"a": args.model_a, "b": args.model_b})
    if step.should_skip(args.force):
        return 0

    pairs = WeightPairs(args.model_a, args.model_b, args.revision_a, args.revision_b, matrices_only=True)
    if len(pairs) == 0:
        raise UserError(f"{args.model_a} holds no 2-D weight matrices to compare")
    workers = args.workers or torch.get_num_threads()
    with step.timed("stream_and_stats"), tqdm(total=len(pairs), desc="param stats", unit="matrix") as bar:
        rows = collect_rows(pairs, args.empirical_rank, args.spectral_tol, workers=workers, on_row=bar.update)

    df = per_matrix_frame(rows)
    write_csv(step.path("per_matrix.csv"), public(df))
    write_csv(step.path("per_layer.csv"), per_layer(df))

    # Say how to read ΔW before anyone interprets it.
    summary = relatedness_summary(df)
    print(describe_relatedness(summary))
    warnings = []
    dtypes = sorted(set().union(*pairs.stored_dtypes))
    if summary["changed_zero_frac"] > ZERO_WARN:
        warnings.append(
            f"{summary['changed_zero_frac']:.0%} of the dW entries of the {summary['n_changed']} changed "
            f"matrices are exactly 0 (stored dtypes {dtypes}): small updates round to zero in 16-bit "
            "storage, so dW may be mostly rounding noise")
    if summary["n_changed"] == 0:
        sixteen = " (16-bit storage: updates below its resolution vanish)" if {"BF16", "F16"} & set(dtypes) else ""
        warnings.append(f"the two checkpoints hold identical weights{sixteen}")
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"wrote {len(df)} matrices to {outdir}")
    step.finish(models={"a": args.model_a, "b": args.model_b},
                revisions={"a": args.revision_a, "b": args.revision_b},
                stored_dtypes=[sorted(d) for d in pairs.stored_dtypes], device="cpu",
                dtype="float32 (upcast before subtracting)", relatedness=summary,
                relatedness_text=describe_relatedness(summary), warnings=warnings)
    return 0


def main(argv=None) -> int:
    return cli.run_main(body, build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
