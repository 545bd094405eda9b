"""Step 2: plot step 1's parameter statistics (reads param_stats/*.csv only, never the models).

Draws where ΔW is concentrated (relative Frobenius norm per block, MLP vs attention), its
worst-case amplification (σ₁(ΔW)/σ₁(W) per block), how many directions it uses (stable rank of
ΔW and W per block), each matrix's W rank against its ΔW rank, and how related W_a and W_b are.

Example:
    uv run plot_param_stats.py --model-a models/tiny/tiny-base --model-b unlearned_models/tiny-base__npo

Reads <output-root>/<slug_a>__vs__<slug_b>/param_stats/ (or --param-stats) and writes to the
sibling param_plots/ (or --outdir):
    layer_locality.png    dW_fro_layer_rel per block, attn and mlp
    spectral_norm.png     max_dW_spectral_rel per block
    stable_rank.png       mean stable rank of dW (solid) and W (dashed) per block
    rank_comparison.png   per matrix W rank vs dW rank (stable; empirical too if collected)
    relatedness.png       W_cosine_layer per block (1 = B edits A, 0 = unrelated weights)
    run_meta.json, _DONE.json
"""

from __future__ import annotations

import sys

from brittle import cli, steps

STEP = "param_plots"


def build_parser(argv=None):
    p = cli.parser(__doc__)
    cli.add_preset_arg(p, used=False)
    cli.add_param_stats_input(p)
    cli.add_output_args(p)
    return p


def body(args, argv) -> int:
    import pandas as pd

    from brittle.errors import UserError
    from brittle.io import StepRun, save_figure
    from brittle.plotting import weights as plots

    stats, outdir = steps.param_stats_dirs(args, STEP)
    # The plots depend only on the CSVs: their digests are the inputs.
    step = StepRun(outdir, {}, argv, files={f: stats / f for f in ("per_matrix.csv", "per_layer.csv")})
    if step.should_skip(args.force):
        return 0
    per_matrix = pd.read_csv(stats / "per_matrix.csv")
    per_layer = pd.read_csv(stats / "per_layer.csv")
    if not (per_matrix["block"].notna() & per_matrix["group"].isin(["attn", "mlp"])).any():
        raise UserError(f"{stats}/per_matrix.csv has no attention or MLP matrices to plot")
    title = f"({stats.parent.name})"
    save_figure(step.path("layer_locality.png"), plots.layer_locality(per_layer, title))
    save_figure(step.path("spectral_norm.png"), plots.spectral_norm_by_block(per_layer, title))
    save_figure(step.path("stable_rank.png"), plots.stable_rank_by_block(per_matrix, title))
    save_figure(step.path("rank_comparison.png"), plots.rank_comparison(per_matrix, title))
    save_figure(step.path("relatedness.png"), plots.relatedness(per_layer, title))
    print(f"wrote plots to {outdir}")
    step.finish(inputs={"param_stats": str(stats)})
    return 0


def main(argv=None) -> int:
    return cli.run_main(body, build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
