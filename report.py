"""The brittleness report: each model's mechanistic signature beside how fast it broke.

Reads the CSVs every other step wrote for a preset's models (filtered, and every unlearned model
``<unlearned-dir>/<base_slug>__*`` plus the preset's published ones) and writes one markdown page:
a table of evaluation and relearning numbers, a table of signature numbers (relative ΔW, attention
share, layer spread, stable rank, low-rank energy, null-space fraction, activation change,
row-space selectivity, Lipschitz change, probe AUC, layer-wise pattern), the recovery curves of all
models, each signature against recovery speed with its Spearman rank correlation, and sentences
stating which of the seed experiment's predictions held on this run. A step whose output is
missing is named in the report, never silently skipped. How each number is formed is in
brittle/signatures.py (one documented reader per source file) and repeated at the end of the page.

Runs last in the pipeline and is always rebuilt (it only reads CSVs: about a second), so there is
no skip logic; --force is accepted for the pipeline's sake.

Example:
    uv run report.py --preset tiny

Writes to <output-root>/ (or --outdir):
    report.md                           the report
    report_figures/recovery_<attack>.png     recovery curves of every model (hazard, benign attacks)
    report_figures/signatures_vs_recovery.png   scatter grid, one panel per signature number
    report_table.csv                    every number of the report, one row per model
    report_predictions.csv              one row per seed prediction: correlations, contrast, verdict
"""

from __future__ import annotations

import inspect
import sys
import time
from pathlib import Path

import pandas as pd

from brittle import cli

FIGURES = "report_figures"
SIGNATURE_COLUMNS = {
    "model": "model", "w_cosine": "cos(W_a, W_b)", "rel_dW": "rel. ‖ΔW‖", "attn_share": "attn share of ΔW²",
    "attn_share_baseline": "(attn share of W²)", "layer_spread": "layer spread", "stable_rank": "stable rank ΔW",
    "top10_energy": "top-10 energy", "nullspace_frac": "null-space frac (in)",
    "nullspace_frac_random": "(random)", "act_change_forget": "Δact forget", "act_change_retain": "Δact retain",
    "rowspace_selectivity": "row-space selectivity", "lipschitz_change_forget": "Lipschitz B/A forget",
    "lipschitz_change_retain": "Lipschitz B/A retain", "probe_auc_max": "probe AUC (max)",
    "layerwise_pattern": "layer-wise pattern",
}
SCATTER_KEYS = ["rel_dW", "attn_share", "layer_spread", "stable_rank", "top10_energy", "nullspace_frac",
                "act_change_forget", "act_change_selectivity", "rowspace_selectivity", "lipschitz_change_forget",
                "probe_auc_max", "late_ratio"]


def build_parser():
    p = cli.parser(__doc__)
    p.add_argument("--preset", default="tiny", help="preset naming the base, filtered and published unlearned models")
    p.add_argument("--base", default=None, help="base model (default: the preset's BASE_MODEL)")
    p.add_argument("--filtered", default=None, help="filtered model (default: the preset's FILTERED_MODEL)")
    p.add_argument("--unlearned-dir", default="unlearned_models",
                   help="folder of unlearned models; every <base_slug>__* folder in it is reported")
    p.add_argument("--unlearned", nargs="*", default=None,
                   help="further unlearned models (default: the preset's PUBLISHED_UNLEARNED)")
    p.add_argument("--alpha", type=float, default=0.1, help="p-value below which a rank correlation counts")
    cli.add_output_args(p)
    return p


def main(argv=None) -> int:
    return cli.run_main(build_report, build_parser(), argv)


def build_report(args) -> int:
    from brittle.io import model_slug, save_figure, write_csv, write_text
    from brittle.plotting.recovery import plot_recovery_curves
    from brittle.plotting.report import signature_scatter
    from brittle.presets import load_preset
    from brittle.report import (SPEED, collect, discover_models, prediction_table, relearning_eligible,
                                spearman)

    preset = load_preset(args.preset)
    base = args.base or preset.get("BASE_MODEL")
    filtered = args.filtered or preset.get("FILTERED_MODEL") or None
    if not base:
        raise cli.UserError("no base model: pass --base or use a preset with BASE_MODEL")
    extra = args.unlearned if args.unlearned is not None else preset.get("PUBLISHED_UNLEARNED", "").split()
    root = Path(args.output_root)
    outdir = Path(args.outdir) if args.outdir else root
    entries = discover_models(base, filtered, args.unlearned_dir, extra)
    if not any(e.role == "unlearned" for e in entries):
        print(f"warning: no unlearned models under {args.unlearned_dir}/{model_slug(base)}__*", file=sys.stderr)

    # Gather every number; a missing file becomes a named missing step, a wrong schema an error.
    got = collect(entries, root)
    table = got.table
    preds = prediction_table(table, args.alpha)
    eligible = relearning_eligible(table)

    figures = {}
    for attack, curve in got.curves.items():
        # Both attacks are scored on the same hazard questions, so the same reference levels apply.
        fig = plot_recovery_curves(curve, references=got.references,
                                   title=f"{attack} attack: hazard accuracy on held-out facts")
        figures[attack] = save_figure(outdir / FIGURES / f"recovery_{attack}.png", fig)
    rho = {}
    if SPEED in table.columns:
        unl = table[eligible & (table["role"] == "unlearned")]
        rho = {k: spearman(unl[k], unl[SPEED]) for k in SCATTER_KEYS if k in table.columns}
        fig = signature_scatter(table, SCATTER_KEYS, SPEED, eligible, rho)
        if fig is not None:
            figures["scatter"] = save_figure(outdir / FIGURES / "signatures_vs_recovery.png", fig)

    text = render(args, preset, entries, got, preds, eligible, figures, outdir)
    write_text(outdir / "report.md", text)
    write_csv(outdir / "report_table.csv", table)
    write_csv(outdir / "report_predictions.csv", preds)
    print(f"[report] {len(entries)} models, {len(got.missing)} missing step output(s); wrote {outdir / 'report.md'}")
    return 0


def render(args, preset, entries, got, preds, eligible, figures, outdir: Path) -> str:
    """The markdown page (see the module docstring for its sections)."""
    from brittle.report import markdown_table, prediction_sentences
    from brittle.signatures import SOURCES, relearning

    table = got.table
    budget = _budget(table)
    lines = [f"# Brittleness report: preset `{preset.get('PRESET', args.preset)}`", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from `{args.output_root}/`. "
             f"Base `{entries[0].model}`; filtered `{next((e.model for e in entries if e.role == 'filtered'), '–')}`; "
             f"{sum(e.role == 'unlearned' for e in entries)} unlearned model(s): "
             + (", ".join(f"`{e.label}`" for e in entries if e.role == "unlearned") or "none") + ".", ""]

    lines += ["## Missing steps", ""]
    if got.missing:
        lines.append("These outputs were not found, so their numbers are blank (–) below:")
        lines.append("")
        by_step: dict[tuple[str, str], list[str]] = {}
        for label, step, path in got.missing:
            by_step.setdefault((step, str(Path(path).name)), []).append(label)
        for (step, name), labels in sorted(by_step.items()):
            lines.append(f"- **{step}** (`{name}`) missing for: {', '.join(f'`{m}`' for m in labels)}")
    else:
        lines.append("None: every step's output was found for every model.")
    lines.append("")

    lines += ["## Knowledge and brittleness", "",
              f"Evaluation: cloze accuracy on the held-out evaluation questions and retain perplexity "
              f"(`evaluate.py`). Relearning (`relearn.py`): hazard accuracy on the attack's held-out facts "
              f"before and after {budget} fine-tuning steps on *other* hazard facts (hazard attack) or on "
              f"benign text (benign attack); steps to half gap = first checkpoint at which the model recovered "
              f"half of the base-vs-filtered accuracy gap; recovery AUC = area under the recovered fraction "
              f"over log steps (0 = stayed at the filtered level, 1 = at the base level throughout).", ""]
    lines.append(markdown_table(table, {
        "model": "model", "role": "role", "eval_hazard_acc": "hazard acc", "eval_benign_acc": "benign acc",
        "eval_retain_ppl": "retain ppl", "hazard_acc_start": "attack: acc before",
        "hazard_acc_final": f"acc after {budget}", "hazard_steps_to_half_gap": "steps to half gap",
        "hazard_auc_recovery_log": "recovery AUC", "benign_acc_final": f"benign attack: acc after {budget}",
        "benign_auc_recovery_log": "benign-attack AUC", "layerwise_pattern": "layer-wise pattern"}))
    lines += ["", *claims(table, got), ""]
    excluded = table[(table["role"] == "unlearned") & ~eligible]
    if len(excluded):
        lines += [f"Left out of the correlations (hazard accuracy before the attack already above the half-gap "
                  f"threshold, i.e. the knowledge was never hidden): {', '.join(f'`{m}`' for m in excluded['model'])}.", ""]

    lines += ["## Signatures", "", "Each unlearned model and the filtered model against the base. "
              "Bracketed columns are baselines (what a change proportional to W, or a random update, gives). "
              "Base → filtered compares two models trained from scratch (see cos(W_a, W_b)): its weight-space "
              "numbers describe unrelated weights, not an edit.", ""]
    lines.append(markdown_table(table[table["role"] != "base"], SIGNATURE_COLUMNS))
    lines.append("")

    lines += ["## Recovery curves", ""]
    for attack in ("hazard", "benign"):
        if attack in figures:
            lines += [f"![{attack} attack]({figures[attack].relative_to(outdir).as_posix()})", ""]
        else:
            lines += [f"No `{attack}` relearning curves found.", ""]

    lines += ["## Signatures against recovery speed", "",
              "Recovery speed = hazard-attack recovery AUC. Spearman rank correlation across the unlearned "
              f"models that hid the knowledge; a prediction holds when the sign is as predicted with p < {args.alpha}.", ""]
    if "scatter" in figures:
        lines += [f"![signatures vs recovery]({figures['scatter'].relative_to(outdir).as_posix()})", ""]
    if len(preds):
        shown = preds.assign(direction=preds["brittle_if"].map({1: "higher → brittle", -1: "lower → brittle"}))
        lines.append(markdown_table(shown, {
            "prediction": "prediction", "signature": "signature", "direction": "predicted",
            "rho_unlearned": "ρ (unlearned)", "p_unlearned": "p", "n_unlearned": "n", "rho_all": "ρ (incl. filtered)",
            "filtered_value": "filtered", "unlearned_median": "unlearned median", "contrast": "contrast",
            "verdict": "verdict"}))
    lines += ["", "## Which seed predictions held on this run", ""]
    lines += [f"- {s}" for s in prediction_sentences(preds)] if len(preds) else ["No predictions could be tested."]
    lines += ["", "## How each number is formed", ""]
    for source in SOURCES:
        doc = inspect.cleandoc(source.read.__doc__ or "")
        lines += [f"- **{source.step}** — `{source.file}`: " + " ".join(doc.split())]
    lines += ["- **relearning** — `relearning/<attack>/summary.csv`: " + " ".join(inspect.cleandoc(relearning.__doc__).split()),
              ""]
    return "\n".join(lines)


def _budget(table: pd.DataFrame) -> str:
    if "hazard_steps_budget" in table and table["hazard_steps_budget"].notna().any():
        values = sorted({int(v) for v in table["hazard_steps_budget"].dropna()})
        return "/".join(str(v) for v in values)
    return "N"


def claims(table: pd.DataFrame, got) -> list[str]:
    """Plain statements of what the relearning curves show (seed means; the numbers as they are)."""
    curve = got.curves.get("hazard")
    if curve is None:
        return ["No hazard relearning curves: brittleness was not measured."]
    means = {attack: c.groupby(["model", "step"], as_index=False)["hazard_acc"].mean()
             for attack, c in got.curves.items()}
    out = []
    for _, row in table[table["model"].isin(set(means["hazard"]["model"]))].iterrows():
        grp = means["hazard"][means["hazard"]["model"] == row["model"]].sort_values("step")
        acc = grp["hazard_acc"].to_numpy()
        best = int(grp["step"].iloc[int(acc.argmax())])
        text = (f"- `{row['model']}` ({row['role']}): hazard accuracy {acc[0]:.2f} before the attack, "
                f"{acc[-1]:.2f} after {int(grp['step'].iloc[-1])} steps, between {acc.min():.2f} and "
                f"{acc.max():.2f} over all checkpoints (highest at step {best})")
        if "benign" in means and row["model"] in set(means["benign"]["model"]):
            ben = means["benign"][means["benign"]["model"] == row["model"]].sort_values("step")["hazard_acc"]
            text += f"; benign-only attack: {ben.iloc[-1]:.2f} after the same budget (highest {ben.max():.2f})"
        out.append(text + ".")
    return out


if __name__ == "__main__":
    sys.exit(main())
