"""Step 5 (plot): figures of the activation norms collected by collect_activation_norms.py.

Reads activation_stats.csv (never the models) and draws the per-hidden-state L1/L2 norms of both
models on forget and retain texts, and the norm of their difference, with 95 % bands.

    uv run plot_activation_norms.py --model-a models/tiny/tiny-base --model-b models/tiny/tiny-filtered

Reads <output-root>/<a>__vs__<b>/activation_stats/ (or --stats) and writes the sibling
activation_plots/ (or --outdir): activation_norms.png, activation_diffs.png, run_meta.json, _DONE.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

from brittle import cli
from brittle.errors import UserError

STEP = "activation_plots"


def build_parser(argv=None):
    p = cli.parser(__doc__)
    cli.add_preset_arg(p, used=False)
    cli.add_pair_args(p)
    p.add_argument("--stats", default=None,
                   help="activation_stats.csv to plot (default: the comparison's activation_stats/ folder)")
    cli.add_output_args(p)
    return p


def body(args, argv) -> int:
    import pandas as pd

    from brittle import steps
    from brittle.io import StepRun, model_slug, require_step, save_figure
    from brittle.plotting.activations import activation_diffs, activation_norms

    if args.stats:
        stats_path = Path(args.stats)
        if not stats_path.is_file():
            raise UserError(f"{stats_path} not found: run collect_activation_norms.py first")
    else:
        source = steps.folder("activation_stats", args.output_root, model_a=args.model_a, model_b=args.model_b)
        require_step(source, ["activation_stats.csv"],
                     f"uv run collect_activation_norms.py --model-a {args.model_a} --model-b {args.model_b}")
        stats_path = source / "activation_stats.csv"
    run = StepRun(steps.outdir(args, STEP, model_a=args.model_a, model_b=args.model_b), {}, argv,
                  files={"activation_stats": stats_path})
    if run.should_skip(args.force):
        return 0
    stats = pd.read_csv(stats_path)
    if stats.empty:
        raise UserError(f"{stats_path} has no rows")
    label_a, label_b = model_slug(args.model_a), model_slug(args.model_b)
    save_figure(run.path("activation_norms.png"), activation_norms(stats, label_a, label_b))
    save_figure(run.path("activation_diffs.png"), activation_diffs(stats, label_a, label_b))
    run.finish(models={"a": args.model_a, "b": args.model_b}, source=str(stats_path))
    print(f"wrote {run.outdir}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(body, build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
