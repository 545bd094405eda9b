"""Step 6: is ΔW concentrated in the MLPs (where facts are thought to be stored, Geva et al.
2021) or in attention (routing)? Reads step 1's per_layer.csv; loads no model.

Per block it compares the relative Frobenius change of the MLP matrices with that of the
attention matrices (a ratio of pooled norms), and the MLP share of ‖ΔW‖² with the MLP share of
‖W‖², the share a change proportional to W would have. The summary pools all blocks.

Example:
    uv run analyze_mlp_vs_attn.py --model-a models/tiny/tiny-base --model-b unlearned_models/tiny-base__npo

Reads <output-root>/<slug_a>__vs__<slug_b>/param_stats/per_layer.csv (or --param-stats) and
writes to the sibling mlp_attn_analysis/ (or --outdir):
    mlp_attn_by_block.csv  one row per block: relative change of each group, their ratio, energy shares
    mlp_attn_summary.csv   the same pooled over all blocks, and the blocks that changed most
    mlp_attn_ratio.png     mlp_attn_ratio per block (log scale; 1 = equal relative change)
    energy_share.png       mlp_dW_energy_share per block against mlp_W_energy_share
    run_meta.json, _DONE.json
"""

from __future__ import annotations

import sys

from brittle import cli, steps

STEP = "mlp_attn_analysis"


def build_parser(argv=None):
    p = cli.parser(__doc__)
    cli.add_preset_arg(p, used=False)
    cli.add_param_stats_input(p)
    cli.add_output_args(p)
    return p


def body(args, argv) -> int:
    import pandas as pd

    from brittle.errors import UserError
    from brittle.io import StepRun, save_figure, write_csv
    from brittle.mlp_attn import by_block, summary
    from brittle.plotting import weights as plots

    stats, outdir = steps.param_stats_dirs(args, STEP)
    step = StepRun(outdir, {}, argv, files={"per_layer.csv": stats / "per_layer.csv"})
    if step.should_skip(args.force):
        return 0
    per_layer = pd.read_csv(stats / "per_layer.csv")
    blocks = by_block(per_layer)
    if blocks.empty:
        raise UserError(f"{stats}/per_layer.csv has no block with both attention and MLP matrices; "
                        "check the group column (layer discovery found no attn/mlp weights)")
    summ = summary(per_layer, blocks)
    write_csv(step.path("mlp_attn_by_block.csv"), blocks)
    write_csv(step.path("mlp_attn_summary.csv"), summ)
    title = f"({stats.parent.name})"
    save_figure(step.path("mlp_attn_ratio.png"), plots.mlp_attn_ratio(blocks, title))
    save_figure(step.path("energy_share.png"), plots.energy_share(blocks, title))
    s = summ.iloc[0]
    print(f"relative change: mlp {s.mlp_dW_fro_rel:.4g}, attn {s.attn_dW_fro_rel:.4g} (ratio {s.mlp_attn_ratio:.3g}); "
          f"MLP share of ||dW||^2 {s.mlp_dW_energy_share:.3f} vs {s.mlp_W_energy_share:.3f} of ||W||^2")
    step.finish(inputs={"param_stats": str(stats)})
    return 0


def main(argv=None) -> int:
    return cli.run_main(body, build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
