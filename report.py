"""The brittleness report: each model's mechanistic signature beside how fast it broke.

Reads the CSVs every other step wrote for a preset's models (filtered, and every unlearned model
``<unlearned-dir>/<base_slug>__*`` plus the preset's published ones) and writes one markdown page:
what the run found (first, in plain sentences), a table of evaluation and relearning numbers,
recovery measured three ways with intervals over attack seeds, a table of signature numbers
(relative ΔW, attention share, block spread, stable rank, low-rank energy, null-space fraction,
activation change, row-space selectivity, Lipschitz change, probe AUC, layer-wise pattern), the
recovery curves of all models, each signature against recovery (Spearman ρ, partial ρ on the
pre-attack accuracy, within-method ρ, each with a bootstrap interval over methods; Holm-corrected
verdicts), whether the signatures together predict recovery for a held-out method beyond the
pre-attack accuracy (leave-one-method-out ridge R²), and sentences stating which of the seed
experiment's predictions held on this run. A step whose output is
missing is named in the report, never silently skipped. How each number is formed is in
brittle/report_numbers.py (one documented reader per source file) and repeated at the end of the page.

Runs last in the pipeline and is always rebuilt (it only reads CSVs: seconds), so there is
no skip logic; --force is accepted for the pipeline's sake.

Example:
    uv run report.py --preset tiny

Writes to <output-root>/ (or --outdir):
    report.md                                   the report
    report_figures/recovery_<attack>.png        recovery curves of every model (hazard, benign attacks)
    report_figures/signatures_vs_recovery.png   scatter grid, one panel per signature number
    report_table.csv                            every number of the report, one row per model
    report_predictions.csv                      one row per seed prediction: correlations, contrast, verdict
"""

from __future__ import annotations

import sys
from pathlib import Path

from brittle import cli
from brittle.errors import UserError

FIGURES = "report_figures"


def build_parser(argv=None):
    p = cli.parser(__doc__)
    cli.add_preset_arg(p)
    p.add_argument("--base", default=None, help="base model (default: the preset's BASE_MODEL)")
    p.add_argument("--filtered", default=None, help="filtered model (default: the preset's FILTERED_MODEL)")
    p.add_argument("--unlearned-dir", default="unlearned_models",
                   help="folder of unlearned models; every <base_slug>__* folder in it is reported unless "
                        "--unlearned names the models")
    p.add_argument("--unlearned", nargs="*", default=None,
                   help="exactly these unlearned models and controls, the folder not scanned (pipeline.sh passes "
                        "its run's models, so a population and a default run in one folder stay apart); given "
                        "without models: the folder's and no published ones (default: the folder's models and the "
                        "preset's PUBLISHED_UNLEARNED)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="family-wise level: a prediction holds when its Holm-corrected bootstrap p is below it "
                        "and its 95%% interval excludes 0")
    p.add_argument("--recovery", choices=["auc", "final", "pre_unlearning"], default="auc",
                   help="the recovery the correlations use: recovery AUC over log steps, share of the gap "
                        "recovered after the budget, or accuracy after / base accuracy (default: auc)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples of the methods (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples")
    p.add_argument("--data-dir", default=None,
                   help="the preset's data folder: steps its data cannot feed are not missing (default: the preset's DATA_DIR)")
    cli.add_output_args(p)
    return p


def build_report(args) -> int:
    from brittle.io import model_slug, save_figure, write_csv, write_text
    from brittle.plotting.recovery import plot_recovery_curves, plot_time_to_recovery
    from brittle.plotting.report import signature_scatter
    from brittle.population import RECOVERY, predictive_power
    from brittle.presets import data_dir, load_preset
    from brittle.report import (
        collect,
        discover_models,
        not_applicable,
        prediction_table,
        relearning_eligible,
        report_markdown,
        scatter_titles,
        scatter_keys,
    )

    preset = load_preset(args.preset)
    base = args.base or preset.get("BASE_MODEL")
    filtered = args.filtered or preset.get("FILTERED_MODEL") or None
    if not base:
        raise UserError("no base model: pass --base or use a preset with BASE_MODEL")
    if args.n_boot < 100:
        raise UserError(f"--n-boot {args.n_boot} is too few for a 95% interval (use at least 100)")
    extra = args.unlearned if args.unlearned is not None else preset.get("PUBLISHED_UNLEARNED", "").split()
    root = Path(args.output_root)
    outdir = Path(args.outdir) if args.outdir else root
    entries = discover_models(base, filtered, None if args.unlearned else args.unlearned_dir, extra)
    if not any(e.role == "unlearned" for e in entries):
        print(f"warning: no unlearned models under {args.unlearned_dir}/{model_slug(base)}__*", file=sys.stderr)

    # Gather every number; a missing file becomes a named missing step, a wrong schema an error.
    got = collect(entries, root)
    not_applicable(got, Path(args.data_dir) if args.data_dir else data_dir(preset))
    table = got.table
    recovery = RECOVERY[args.recovery]
    preds = prediction_table(table, args.alpha, recovery, args.n_boot, args.seed)
    eligible = relearning_eligible(table)
    unl = table[eligible & (table["role"] == "unlearned")]
    keys = [k for k in scatter_keys() if k in table.columns]
    cv = predictive_power(unl, keys, recovery) if recovery in table and len(unl) else {}

    figures = {}
    for attack, curve in got.curves.items():
        # Both attacks are scored on the same hazard questions, so the same reference levels apply.
        fig = plot_recovery_curves(curve, references=got.references,
                                   title=f"{attack} attack: hazard accuracy on held-out facts")
        figures[attack] = save_figure(outdir / FIGURES / f"recovery_{attack}.png", fig)
        fig = plot_time_to_recovery(table, attack)
        if fig is not None:
            figures[f"time_{attack}"] = save_figure(outdir / FIGURES / f"time_to_recovery_{attack}.png", fig)
    if recovery in table.columns:
        fig = signature_scatter(table, keys, recovery, eligible, scatter_titles(unl, keys, recovery, args.n_boot, args.seed))
        if fig is not None:
            figures["scatter"] = save_figure(outdir / FIGURES / "signatures_vs_recovery.png", fig)

    text = report_markdown(preset.get("PRESET", args.preset), args.output_root, entries, got, preds, eligible, figures,
                           outdir, args.alpha, cv, recovery)
    write_text(outdir / "report.md", text)
    write_csv(outdir / "report_table.csv", table)
    write_csv(outdir / "report_predictions.csv", preds)
    print(f"[report] {len(entries)} models, {len(got.missing)} missing step output(s); wrote {outdir / 'report.md'}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(lambda args, argv: build_report(args), build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
