"""Step 10: does the MLP update ΔW lie in the null space of the original W?

For every MLP weight matrix it splits ΔW = W_b − W_a into the part inside W_a's column space and
the part in its null space, on both sides of the matrix:
  output side  ‖UᵀΔW‖²/‖ΔW‖² (column space of W, what W writes) vs the rest (null space of Wᵀ)
  input side   ‖ΔW V‖²/‖ΔW‖² (row space of W, what W reads) vs the rest (null space of W)
with U, V the top-r singular vectors of W_a. Trained weights are full rank, so the exact null
space is empty on W's smaller side and every split there would trivially be 1/0: the numerical
rank r is the fewest singular directions holding --energy (default 99 %) of ‖W_a‖_F². A random
direction puts r/m (output) or r/n (input) of its energy into those subspaces; that baseline is
printed beside every fraction. On-manifold (column-space) changes interfere with what W computes;
null-space changes add directions W ignored.

Only one side of each matrix is informative: r <= min(m, n), so on the shorter side the baseline
r/min(m, n) is close to 1 (0.80–0.88 in the tiny world) and nearly any update lands in the
"column space". The headline (columns side, col_frac, null_frac, random_col_frac, col_over_random,
and the summary's "informative" row) is therefore the longer side: output for an up-projection
(d_ff × d), input for a down-projection (d × d_ff). Both sides stay in out_* / in_*.

Example:
    uv run mlp_nullspace_alignment.py --model-a models/tiny/tiny-base --model-b unlearned_models/tiny-base__npo

Writes to <output-root>/<slug_a>__vs__<slug_b>/mlp_nullspace/ (or --outdir):
    mlp_nullspace.csv          one row per MLP matrix: the informative side's split, then both
                               sides', each beside r/m and r/n
    mlp_nullspace_summary.csv  per side (output, input, informative): col_frac, null_frac,
                               random_col_frac pooled over all MLP matrices, weighted by ‖ΔW‖_F²
    mlp_nullspace.png          column-space share per matrix and side against r/m, r/n
    run_meta.json, _DONE.json
"""

from __future__ import annotations

import sys

from brittle import cli
from brittle.errors import UserError

STEP = "mlp_nullspace"


def build_parser(argv=None):
    p = cli.parser(__doc__)
    cli.add_preset_arg(p, used=False)
    cli.add_pair_args(p)
    cli.add_output_args(p)
    p.add_argument("--energy", type=float, default=0.99,
                   help="share of ||W||_F^2 the numerical column/row space must hold (sets the rank r)")
    return p


def body(args, argv) -> int:
    import pandas as pd
    from tqdm import tqdm

    from brittle import steps
    from brittle.io import StepRun, save_figure, write_csv
    from brittle.models import classify_param
    from brittle.plotting import weights as plots
    from brittle.weight_geometry import nullspace_split_row, pooled_split
    from brittle.weights import WeightPairs, stored_transposed

    if not 0 < args.energy < 1:
        raise UserError("--energy must be in (0, 1): at 1 the subspace is all of W's span")
    outdir = steps.outdir(args, STEP, model_a=args.model_a, model_b=args.model_b)
    params = {k: getattr(args, k) for k in ("model_a", "model_b", "revision_a", "revision_b", "energy")}
    step = StepRun(outdir, params, argv, models={"a": args.model_a, "b": args.model_b})
    if step.should_skip(args.force):
        return 0

    pairs = WeightPairs(args.model_a, args.model_b, args.revision_a, args.revision_b, matrices_only=True,
                        select=lambda name, shape: classify_param(name)[1] == "mlp")
    if len(pairs) == 0:
        raise UserError(f"no MLP weight matrices found in {args.model_a} (layer/group discovery found none)")
    rows = []
    with step.timed("stream_and_split"):
        for name, w_a, w_b in tqdm(pairs, total=len(pairs), desc="mlp null space", unit="matrix"):
            if stored_transposed(pairs.config, name):  # GPT-2 Conv1D: make rows the outputs
                w_a, w_b = w_a.T, w_b.T
            rows.append(nullspace_split_row(name, w_a, w_b, args.energy))
            del w_a, w_b
    results = pd.DataFrame(rows)
    summary = pd.DataFrame(pooled_split(results, results["dW_fro"].to_numpy() ** 2))
    write_csv(step.path("mlp_nullspace.csv"), results)
    write_csv(step.path("mlp_nullspace_summary.csv"), summary)
    save_figure(step.path("mlp_nullspace.png"), plots.mlp_nullspace(results, f"({outdir.parent.name})"))
    for s in summary.itertuples():
        print(f"{s.side} side{' (headline)' if s.side == 'informative' else ''}: {s.col_frac:.3f} of ||dW||^2 in W's column space, {s.null_frac:.3f} in its "
              f"null space (random direction: {s.random_col_frac:.3f})")
    step.finish(models={"a": args.model_a, "b": args.model_b}, device="cpu", dtype="float32",
                rank_rule=f"numerical rank = fewest singular directions holding {args.energy:.0%} of ||W_a||_F^2")
    return 0


def main(argv=None) -> int:
    return cli.run_main(body, build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
