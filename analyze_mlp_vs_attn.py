"""Step 6: is ΔW concentrated in the MLPs (where facts are thought to be stored, Geva et al.
2021) or in attention (routing)? Reads step 1's per_layer.csv; loads no model.

Per layer it compares the relative Frobenius change of the MLP matrices with that of the
attention matrices (a ratio of pooled norms), and the MLP share of ‖ΔW‖² with the MLP share of
‖W‖², the share a change proportional to W would have. The summary pools all layers.

Example:
    uv run analyze_mlp_vs_attn.py --model-a models/tiny/tiny-base --model-b unlearned_models/tiny-base__npo

Reads <output-root>/<slug_a>__vs__<slug_b>/param_stats/per_layer.csv (or --param-stats) and
writes to the sibling mlp_attn_analysis/ (or --outdir):
    mlp_attn_by_layer.csv  layer, attn_dW_fro_rel, mlp_dW_fro_rel, mlp_attn_ratio,
                           attn_max_dW_spectral_rel, mlp_max_dW_spectral_rel, mlp_attn_spectral_ratio,
                           mlp_dW_energy_share, mlp_W_energy_share
    mlp_attn_summary.csv   n_layers, attn_dW_fro_rel, mlp_dW_fro_rel, mlp_attn_ratio,
                           mlp_dW_energy_share, mlp_W_energy_share, n_layers_mlp_dominant,
                           top_layer_mlp, top_layer_attn
    mlp_attn_ratio.png     mlp_attn_ratio per layer (log scale; 1 = equal relative change)
    energy_share.png       mlp_dW_energy_share per layer against mlp_W_energy_share
    run_meta.json, _DONE.json
"""

from __future__ import annotations

import sys

import pandas as pd

from brittle import cli
from brittle.io import StepRun, file_digest, save_figure, write_csv
from brittle.mlp_attn import by_layer, summary
from brittle.param_stats import add_input_args, input_output_dirs
from brittle.plotting import weights as plots


def build_parser():
    p = cli.parser(__doc__)
    add_input_args(p)
    cli.add_output_args(p)
    return p


def run(args) -> int:
    stats, outdir = input_output_dirs(args, "mlp_attn_analysis")
    step = StepRun(outdir, {"per_layer.csv": file_digest(stats / "per_layer.csv")})
    if step.should_skip(args.force):
        return 0
    per_layer = pd.read_csv(stats / "per_layer.csv")
    layers = by_layer(per_layer)
    if layers.empty:
        raise cli.UserError(f"{stats}/per_layer.csv has no layer with both attention and MLP matrices; "
                            "check the group column (layer discovery found no attn/mlp weights)")
    summ = summary(per_layer, layers)
    write_csv(step.path("mlp_attn_by_layer.csv"), layers)
    write_csv(step.path("mlp_attn_summary.csv"), summ)
    title = f"({stats.parent.name})"
    save_figure(step.path("mlp_attn_ratio.png"), plots.mlp_attn_ratio(layers, title))
    save_figure(step.path("energy_share.png"), plots.energy_share(layers, title))
    s = summ.iloc[0]
    print(f"relative change: mlp {s.mlp_dW_fro_rel:.4g}, attn {s.attn_dW_fro_rel:.4g} (ratio {s.mlp_attn_ratio:.3g}); "
          f"MLP share of ||dW||^2 {s.mlp_dW_energy_share:.3f} vs {s.mlp_W_energy_share:.3f} of ||W||^2")
    step.finish(inputs={"param_stats": str(stats)})
    return 0


def main(argv=None) -> int:
    return cli.run_main(run, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
