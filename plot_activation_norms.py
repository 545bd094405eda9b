"""Step 5 (plot): figures of the activation norms collected by collect_activation_norms.py.

Reads activation_stats.csv (never the models) and draws the per-layer L1/L2 norms of both
models on forget and retain texts, and the per-layer norm of their difference, with 95 % bands.

    uv run plot_activation_norms.py --model-a models/tiny/tiny-base --model-b models/tiny/tiny-filtered

Writes <output-root>/<a>__vs__<b>/activation_plots/: activation_norms.png, activation_diffs.png,
run_meta.json, _DONE.json.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pandas as pd

from brittle import cli
from brittle.io import StepRun, model_slug, save_figure
from brittle.plotting.activations import activation_diffs, activation_norms


def build_parser():
    p = cli.parser(__doc__)
    cli.add_pair_args(p)
    p.add_argument("--stats", default=None,
                   help="activation_stats.csv to plot (default: the comparison's activation_stats/ folder)")
    cli.add_output_args(p)
    return p


def body(args, argv) -> int:
    stats_path = Path(args.stats) if args.stats else (
        cli.step_dir(argparse_without_outdir(args), "activation_stats", args.model_a, args.model_b)
        / "activation_stats.csv")
    if not stats_path.is_file():
        raise cli.UserError(f"{stats_path} not found: run collect_activation_norms.py first")
    stats = pd.read_csv(stats_path)
    if stats.empty:
        raise cli.UserError(f"{stats_path} has no rows")
    # The plots depend on the CSV's content, so its hash is a parameter: a recollected CSV replots.
    params = {"model_a": args.model_a, "model_b": args.model_b,
              "stats_sha": hashlib.sha256(stats_path.read_bytes()).hexdigest()[:16]}
    run = StepRun(cli.step_dir(args, "activation_plots", args.model_a, args.model_b), params, argv)
    if run.should_skip(args.force):
        return 0
    label_a, label_b = model_slug(args.model_a), model_slug(args.model_b)
    save_figure(run.path("activation_norms.png"), activation_norms(stats, label_a, label_b))
    save_figure(run.path("activation_diffs.png"), activation_diffs(stats, label_a, label_b))
    run.finish(models={"a": args.model_a, "b": args.model_b}, source=str(stats_path))
    print(f"wrote {run.outdir}")
    return 0


def argparse_without_outdir(args):
    """``args`` with ``--outdir`` cleared: the input lives in the default folder of another step."""
    import argparse

    return argparse.Namespace(**{**vars(args), "outdir": None})


def main(argv=None) -> int:
    return cli.run_main(lambda args: body(args, argv), build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
