"""The brittleness report: each model's mechanistic signature beside how fast it broke.

Reads the CSVs every other step wrote for a preset's models (filtered, and every unlearned model
``<unlearned-dir>/<base_slug>__*`` plus the preset's published ones) and writes one markdown page:
a table of evaluation and relearning numbers, a table of signature numbers (relative ΔW, attention
share, block spread, stable rank, low-rank energy, null-space fraction, activation change,
row-space selectivity, Lipschitz change, probe AUC, layer-wise pattern), the recovery curves of all
models, each signature against recovery speed with its Spearman rank correlation, and sentences
stating which of the seed experiment's predictions held on this run. A step whose output is
missing is named in the report, never silently skipped. How each number is formed is in
brittle/report_numbers.py (one documented reader per source file) and repeated at the end of the page.

Runs last in the pipeline and is always rebuilt (it only reads CSVs: about a second), so there is
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
                   help="folder of unlearned models; every <base_slug>__* folder in it is reported")
    p.add_argument("--unlearned", nargs="*", default=None,
                   help="further unlearned models (default: the preset's PUBLISHED_UNLEARNED)")
    p.add_argument("--alpha", type=float, default=0.1, help="p-value below which a rank correlation counts")
    p.add_argument("--data-dir", default=None,
                   help="the preset's data folder: steps its data cannot feed are not missing (default: the preset's DATA_DIR)")
    cli.add_output_args(p)
    return p


def build_report(args) -> int:
    from brittle.io import model_slug, save_figure, write_csv, write_text
    from brittle.plotting.recovery import plot_recovery_curves
    from brittle.plotting.report import signature_scatter
    from brittle.presets import data_dir, load_preset
    from brittle.report import (
        SPEED,
        collect,
        discover_models,
        not_applicable,
        prediction_table,
        relearning_eligible,
        report_markdown,
        scatter_keys,
        spearman,
    )

    preset = load_preset(args.preset)
    base = args.base or preset.get("BASE_MODEL")
    filtered = args.filtered or preset.get("FILTERED_MODEL") or None
    if not base:
        raise UserError("no base model: pass --base or use a preset with BASE_MODEL")
    extra = args.unlearned if args.unlearned is not None else preset.get("PUBLISHED_UNLEARNED", "").split()
    root = Path(args.output_root)
    outdir = Path(args.outdir) if args.outdir else root
    entries = discover_models(base, filtered, args.unlearned_dir, extra)
    if not any(e.role == "unlearned" for e in entries):
        print(f"warning: no unlearned models under {args.unlearned_dir}/{model_slug(base)}__*", file=sys.stderr)

    # Gather every number; a missing file becomes a named missing step, a wrong schema an error.
    got = collect(entries, root)
    not_applicable(got, Path(args.data_dir) if args.data_dir else data_dir(preset))
    table = got.table
    preds = prediction_table(table, args.alpha)
    eligible = relearning_eligible(table)

    figures = {}
    for attack, curve in got.curves.items():
        # Both attacks are scored on the same hazard questions, so the same reference levels apply.
        fig = plot_recovery_curves(curve, references=got.references,
                                   title=f"{attack} attack: hazard accuracy on held-out facts")
        figures[attack] = save_figure(outdir / FIGURES / f"recovery_{attack}.png", fig)
    if SPEED in table.columns:
        unl = table[eligible & (table["role"] == "unlearned")]
        keys = [k for k in scatter_keys() if k in table.columns]
        rho = {k: spearman(unl[k], unl[SPEED]) for k in keys}
        fig = signature_scatter(table, keys, SPEED, eligible, rho)
        if fig is not None:
            figures["scatter"] = save_figure(outdir / FIGURES / "signatures_vs_recovery.png", fig)

    text = report_markdown(preset.get("PRESET", args.preset), args.output_root, entries, got, preds, eligible, figures,
                  outdir, args.alpha)
    write_text(outdir / "report.md", text)
    write_csv(outdir / "report_table.csv", table)
    write_csv(outdir / "report_predictions.csv", preds)
    print(f"[report] {len(entries)} models, {len(got.missing)} missing step output(s); wrote {outdir / 'report.md'}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(lambda args, argv: build_report(args), build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
