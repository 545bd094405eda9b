"""The brittleness report: every model's signature numbers beside how fast its knowledge came back.

:func:`collect` reads, for each model, every reader of :mod:`brittle.report_numbers` at the
folder the step registry gives, recording a missing file as a missing step rather than dropping
the model, and each model's identity (method, seed, strength: :mod:`brittle.model_identity`).
:func:`prediction_table` tests each seed prediction across the unlearned models (the population
study, :mod:`brittle.population`):

* Spearman ρ between the signature and recovery (by default ``hazard_auc_recovery_log``, the area
  under the recovered-fraction curve over log steps), the partial ρ controlling for the hazard
  accuracy before the attack, and the within-method ρ, each with a 95 % bootstrap interval that
  resamples *methods* (every model of a drawn method enters). The prediction *held* when the
  interval of ρ lies on the predicted side of 0 and its bootstrap p, Holm-corrected over the
  predictions tested, is below ``alpha``; *reversed* the same on the other side; *not supported*
  otherwise. ``verdict_partial`` applies the same rule to the partial ρ.
* filtered vs unlearned: whether the median unlearned model lies on the predicted brittle side of
  the filtered model. Base -> filtered is a comparison of two models trained from scratch, so its
  weight-space numbers describe unrelated weights, not an intervention; the contrast is reported
  but never counted.

Models whose hazard accuracy before the attack is already above the half-gap threshold did not
hide the knowledge in the first place; their "recovery" is not relearning, so they are left out of
the correlations (and listed). Control edits (``<base>__control``, ``<base>__control<k>``) and the
filtered model are references on every scatter, never in a correlation. :func:`report_markdown`
writes the markdown page.
"""

from __future__ import annotations

import inspect
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brittle import steps
from brittle.io import model_slug
from brittle.markdown import fmt as _fmt
from brittle.markdown import markdown_table
from brittle.model_identity import read_identity
from brittle.population import METHOD, N_BOOT, PRE_ATTACK, correlate, judge
from brittle.report_numbers import PREDICTIONS, READERS, MissingSource, numbers
from brittle.report_population import (
    RECOVERY_WORDS,
    calibration_section,
    correlation_table,
    method_recovery_section,
    findings,
    predictive_section,
    recovery_section,
)

ATTACKS = ("hazard", "benign")
SPEED = "hazard_auc_recovery_log"
CONTROL = re.compile(r"control\d*(__.*)?")   # unlearn.py's benign fine-tunes: <base>__control, __control<k>
EXACT_MAX_N = 8  # up to 8! = 40,320 orderings: exact permutation p-value; above, scipy's t approximation


@dataclass
class ModelEntry:
    """One model in the report: ``role`` is base, filtered, unlearned or control (the benign
    fine-tune of matched size, ``<base>__control``); ``label`` a short name."""

    role: str
    model: str
    slug: str
    label: str
    identity: dict = field(default_factory=dict)   # method, seed, strength, reached (unlearned/control)


@dataclass
class Collected:
    table: pd.DataFrame                       # one row per model, one column per number
    missing: list[tuple[str, str, str]] = field(default_factory=list)   # (model label, step, path)
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)       # attack -> concatenated curve.csv
    references: dict[str, float | None] = field(default_factory=dict)   # base/filtered hazard accuracy
    not_applicable: dict[str, str] = field(default_factory=dict)       # step -> data file it needs


def short_label(slug: str, base_slug: str) -> str:
    """``tiny-base__npo`` -> ``npo``; any other slug unchanged."""
    prefix = f"{base_slug}__"
    return slug[len(prefix):] if slug.startswith(prefix) else slug


def discover_models(base: str, filtered: str | None, unlearned_dir: str | Path | None,
                    extra_unlearned: list[str] = ()) -> list[ModelEntry]:
    """Base, filtered, every ``<unlearned_dir>/<base_slug>__*`` folder with a config.json (sorted),
    and any extra (e.g. published) unlearned models."""
    base_slug = model_slug(base)
    entries = [ModelEntry("base", base, base_slug, "base")]
    if filtered:
        entries.append(ModelEntry("filtered", filtered, model_slug(filtered), "filtered"))
    found = []
    if unlearned_dir and Path(unlearned_dir).is_dir():
        found = sorted(str(p) for p in Path(unlearned_dir).glob(f"{base_slug}__*") if (p / "config.json").is_file())
    for model in [*found, *extra_unlearned]:
        slug = model_slug(model)
        if slug not in {e.slug for e in entries}:
            label = short_label(slug, base_slug)
            ident = read_identity(model, label)
            role = "control" if CONTROL.fullmatch(label) or ident.method == "control" else "unlearned"
            entries.append(ModelEntry(role, model, slug, label, {
                METHOD: ident.method, "seed": ident.seed, "strength": ident.strength, "reached": ident.reached}))
    return entries


def calibration_records(entries: list[ModelEntry]) -> dict[str, dict]:
    """label -> the model folder's ``calibration.json``, for the calibrated models among ``entries``."""
    from brittle.io import read_json

    out = {}
    for e in entries:
        path = Path(e.model) / "calibration.json"
        if e.role == "unlearned" and path.is_file():
            out[e.label] = read_json(path)
    return out


def source_path(root: Path, step: str, file: str, base: ModelEntry, entry: ModelEntry) -> Path:
    """Where a reader's file is for one model, from the step registry."""
    if steps.step(step).scope == steps.COMPARISON:
        return steps.folder(step, root, model_a=base.model, model_b=entry.model) / file
    return steps.folder(step, root, model=entry.model) / file


def collect(entries: list[ModelEntry], output_root: str | Path) -> Collected:
    """Read every reader's file for every model it applies to; see the module docstring."""
    root = Path(output_root)
    base = next(e for e in entries if e.role == "base")
    rows, missing, curves = [], [], {a: [] for a in ATTACKS}
    references: dict[str, float | None] = {}
    for entry in entries:
        row = {"model": entry.label, "slug": entry.slug, "role": entry.role, **entry.identity}
        for reader in READERS:
            if entry.role not in reader.roles:
                continue
            path = source_path(root, reader.step, reader.file, base, entry)
            try:
                row.update(reader.read(path, entry.slug))
            except MissingSource as exc:
                if entry.role not in reader.optional:
                    sub = Path(reader.file).parent.as_posix()
                    missing.append((entry.label, reader.step if sub == "." else f"{reader.step}/{sub}", str(exc.path)))
        for attack in ATTACKS:
            folder = steps.folder("relearning", root, model=entry.model) / attack
            if (folder / "curve.csv").is_file():
                curves[attack].append(pd.read_csv(folder / "curve.csv").assign(model=entry.label))
            if attack == "hazard" and not references and (folder / "summary.csv").is_file():
                summary = pd.read_csv(folder / "summary.csv")
                references = {"base": _first(summary, "base_acc"), "filtered": _first(summary, "filtered_acc")}
        rows.append(row)
    return Collected(pd.DataFrame(rows), missing,
                     {a: pd.concat(c, ignore_index=True) for a, c in curves.items() if c}, references)


# Steps the pipeline runs only when the data folder has what they read; without it they are not
# applicable to this preset (deep-ignorance and TOFU have no facts behind their questions).
NEEDS_DATA = {"knowledge_probe": "facts.csv"}


def not_applicable(got: Collected, data_dir: Path) -> None:
    """In place: move steps whose data input ``data_dir`` lacks from ``got.missing`` to
    ``got.not_applicable`` (step -> the file it needs)."""
    for step, needed in NEEDS_DATA.items():
        if not (Path(data_dir) / needed).exists():
            got.not_applicable[step] = needed
    got.missing = [m for m in got.missing if m[1] not in got.not_applicable]


def _first(frame: pd.DataFrame, column: str) -> float | None:
    if column not in frame or frame[column].isna().all():
        return None
    return float(frame[column].dropna().iloc[0])


def relearning_eligible(table: pd.DataFrame) -> pd.Series:
    """True for filtered/unlearned models with a hazard curve that started below the half-gap
    threshold (the knowledge was hidden before the attack), and for models calibrated to the weak
    strength: their level (halfway between the base's and the matched target, so always above the
    half-gap threshold) was set by design, and the partial ρ on the pre-attack accuracy is there to
    separate how much was forgotten from how it was forgotten."""
    needed = {SPEED, "hazard_acc_start", "hazard_half_gap_threshold"}
    if not needed <= set(table.columns):
        return pd.Series(False, index=table.index)
    weak = table["strength"].eq("weak") if "strength" in table.columns else pd.Series(False, index=table.index)
    return (table["role"].isin(["filtered", "unlearned"]) & table[SPEED].notna()
            & ((table["hazard_acc_start"] < table["hazard_half_gap_threshold"]) | weak))


def spearman(x, y) -> tuple[float, float, int]:
    """``(rho, two-sided p, n)`` over the pairs where both are finite; NaNs when n < 3 or constant.

    With few models (n <= 8) the p-value is exact: the share of all n! orderings of y whose |rho|
    reaches the observed one (scipy's t approximation is far too small there: it gives 1e-24 for a
    perfect ranking of 5 points, whose exact p is 2/120). Ties are mid-ranked (scipy.stats.rankdata).
    """
    from itertools import permutations

    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return math.nan, math.nan, n
    res = stats.spearmanr(x[ok], y[ok])
    rho = float(res.statistic)
    if n > EXACT_MAX_N:
        return rho, float(res.pvalue), n
    rx, ry = stats.rankdata(x[ok]), stats.rankdata(y[ok])
    perms = np.array(list(permutations(ry)))                       # [n!, n]
    rx_c, perms_c = rx - rx.mean(), perms - perms.mean(axis=1, keepdims=True)
    rhos = perms_c @ rx_c / (np.linalg.norm(perms_c, axis=1) * np.linalg.norm(rx_c))
    p = float(np.mean(np.abs(rhos) >= abs(rho) - 1e-12))
    return rho, p, n


def prediction_table(table: pd.DataFrame, alpha: float = 0.05, recovery: str = SPEED, n_boot: int = N_BOOT,
                     seed: int = 0) -> pd.DataFrame:
    """One row per seed prediction: the population correlations with their method-cluster
    intervals and Holm-corrected verdicts, the plain Spearman ρ and permutation p (descriptive,
    also with the filtered model), and the filtered-vs-unlearned contrast (see module docstring)."""
    eligible = table[relearning_eligible(table)]
    unlearned = eligible[eligible["role"] == "unlearned"]
    if METHOD not in unlearned:
        unlearned = unlearned.assign(**{METHOD: unlearned["model"]})
    filtered = table[table["role"] == "filtered"]
    rows = []
    for pred in PREDICTIONS:
        rec = {"prediction": pred.name, "signature": pred.key, "brittle_if": pred.brittle_if, "claim": pred.claim,
               "recovery": recovery}
        if pred.key not in table.columns or recovery not in table.columns:
            rec.update(reason=f"no {pred.key if pred.key not in table else recovery} values")
            rows.append(rec)
            continue
        rho, p, n = spearman(unlearned[pred.key], unlearned[recovery])
        rho_all, p_all, n_all = spearman(eligible[pred.key], eligible[recovery])
        rec.update(rho_unlearned=rho, p_unlearned=p, n_unlearned=n, rho_all=rho_all, p_all=p_all, n_all=n_all)
        corr = correlate(unlearned, pred.key, recovery, n_boot, seed) if PRE_ATTACK in unlearned else {}
        corr.pop("rho", None)   # = rho_unlearned, where the pre-attack accuracy is known for every model
        rec.update(corr)
        f_value = float(filtered[pred.key].iloc[0]) if len(filtered) and pd.notna(filtered[pred.key].iloc[0]) else math.nan
        u_median = float(unlearned[pred.key].median()) if len(unlearned) else math.nan
        rec.update(filtered_value=f_value, unlearned_median=u_median)
        if math.isfinite(f_value) and math.isfinite(u_median) and u_median != f_value:
            rec["contrast"] = "consistent" if np.sign(u_median - f_value) == pred.brittle_if else "opposite"
        else:
            rec["contrast"] = "n/a"
        if not math.isfinite(rho):
            rec["reason"] = f"{n} unlearned model(s) with both numbers (need >= 3, not constant)"
        rows.append(rec)
    rows = judge(rows, [r["brittle_if"] for r in rows], alpha)
    for r in rows:
        if "reason" not in r:
            r["reason"] = (f"rho = {r['rho_unlearned']:+.2f}, 95 % interval [{_fmt(r.get('rho_low'), 2)}, "
                           f"{_fmt(r.get('rho_high'), 2)}] over {r.get('n_methods', 0)} methods, "
                           f"Holm p = {_fmt(r.get('rho_p_holm'), 2)}, n = {r['n_unlearned']}")
    # The registry's column order (brittle/steps.py), whatever rows were testable.
    order = [c.name for c in steps.step("report").file("report_predictions.csv").columns]
    return pd.DataFrame(rows).reindex(columns=order)


def prediction_sentences(preds: pd.DataFrame) -> list[str]:
    """Plain sentences, one per prediction, stating whether it held on this run."""
    out = []
    for r in preds.itertuples():
        claim = r.claim[0].upper() + r.claim[1:]
        if r.verdict == "not tested":
            out.append(f"**{r.prediction} -> brittle: not tested.** {claim}; {r.reason}.")
            continue
        contrast = {"consistent": "the filtered model does sit on the robust side of the unlearned median",
                    "opposite": "the filtered model sits on the brittle side of the unlearned median",
                    "n/a": "no filtered-vs-unlearned contrast is available"}[r.contrast]
        verb = {"held": "held", "reversed": "did not hold (the relation runs the other way)",
                "not supported": "did not hold (no clear relation)"}[r.verdict]
        partial = getattr(r, "partial_rho", math.nan)
        partial_text = (f"; after accounting for the pre-attack accuracy, partial ρ = {partial:+.2f} "
                        f"[{_fmt(r.partial_rho_low, 2)}, {_fmt(r.partial_rho_high, 2)}] ({r.verdict_partial})"
                        if isinstance(partial, float) and math.isfinite(partial) else "")
        out.append(f"**{r.prediction} -> brittle: {verb}.** {claim}: between `{r.signature}` and recovery "
                   f"across unlearned models, {r.reason}{partial_text}; {contrast} "
                   f"({_fmt(r.filtered_value)} vs {_fmt(r.unlearned_median)}).")
    return out


# --- the page -----------------------------------------------------------------------------------

def signature_columns() -> dict[str, str]:
    """The signature table: each signature number, its baseline in brackets, and the pattern."""
    cols = {"model": "model", "w_cosine": numbers()["w_cosine"].label}
    for n in numbers().values():
        if n.signature or n.baseline:
            cols[n.key] = f"({n.label})" if n.baseline else n.label
    cols["layerwise_pattern"] = numbers()["layerwise_pattern"].label
    return cols


def scatter_keys() -> list[str]:
    return [n.key for n in numbers().values() if n.signature]


def scatter_titles(unlearned: pd.DataFrame, keys: list[str], recovery: str, n_boot: int = N_BOOT,
                   seed: int = 0) -> dict[str, str]:
    """Each scatter panel's statistic line: ρ with its method-bootstrap interval and the counts."""
    out = {}
    for key in keys:
        c = correlate(unlearned, key, recovery, n_boot, seed) if len(unlearned) and PRE_ATTACK in unlearned else {}
        rho = c.get("rho", math.nan)
        out[key] = (f"ρ={rho:+.2f} [{_fmt(c['rho_low'], 2)}, {_fmt(c['rho_high'], 2)}], {c['n_methods']} methods"
                    if math.isfinite(rho) else f"ρ n/a (n={c.get('n', 0)})")
    return out


def budget(table: pd.DataFrame) -> str:
    if "hazard_steps_budget" in table and table["hazard_steps_budget"].notna().any():
        return "/".join(str(int(v)) for v in sorted({int(v) for v in table["hazard_steps_budget"].dropna()}))
    return "N"


def claims(table: pd.DataFrame, got: Collected) -> list[str]:
    """Plain statements of what the relearning curves show (seed means; the numbers as they are)."""
    if got.curves.get("hazard") is None:
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


def report_markdown(preset_name: str, output_root: str, entries: list[ModelEntry], got: Collected, preds: pd.DataFrame,
                    eligible: pd.Series, figures: dict[str, Path], outdir: Path, alpha: float, cv: dict,
                    recovery: str = SPEED) -> str:
    """The markdown page: what the run found, missing steps, knowledge and brittleness, recovery
    three ways, signatures, recovery curves, signatures against recovery with their intervals,
    whether the signatures predict recovery together, the predictions' verdicts, and how each
    number is formed."""
    table = got.table
    steps_done = budget(table)
    labels = {k: n.label for k, n in numbers().items()}
    lines = [f"# Brittleness report: preset `{preset_name}`", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from `{output_root}/`. "
             f"Base `{entries[0].model}`; filtered `{next((e.model for e in entries if e.role == 'filtered'), '–')}`; "
             f"{sum(e.role == 'unlearned' for e in entries)} unlearned model(s): "
             + (", ".join(f"`{e.label}`" for e in entries if e.role == "unlearned") or "none") + "."
             + (" Control: `control`, a benign fine-tune on retain text only, stopped at the median unlearned "
                "model's weight-change norm (`unlearn.py --method control`): a signature an unlearned model "
                "shares with it is a property of any edit of that size, not of unlearning; it is not in the "
                "correlations." if any(e.role == "control" for e in entries) else ""), ""]
    lines += ["## What this run found", "", *findings(preds, cv, table, recovery, alpha)]

    lines += ["## Missing steps", ""]
    if got.missing:
        lines += ["These outputs were not found, so their numbers are blank (–) below:", ""]
        by_step: dict[tuple[str, str], list[str]] = {}
        for label, step, path in got.missing:
            by_step.setdefault((step, Path(path).name), []).append(label)
        for (step, name), models in sorted(by_step.items()):
            lines.append(f"- **{step}** (`{name}`) missing for: {', '.join(f'`{m}`' for m in models)}")
    else:
        lines.append("None: every step's output was found for every model.")
    for step, needed in sorted(got.not_applicable.items()):
        lines += ["", f"Not applicable to this data (no `{needed}` in the data folder): **{step}**."]
    lines.append("")

    lines += ["## Knowledge and brittleness", "",
              f"Evaluation: cloze accuracy on the held-out evaluation questions and retain perplexity "
              f"(`evaluate.py`). Relearning (`relearn.py`): hazard accuracy on the attack's held-out facts "
              f"before and after {steps_done} fine-tuning steps on *other* hazard facts (hazard attack) or on "
              f"benign text (benign attack); steps to half gap = first checkpoint at which the model recovered "
              f"half of the base-vs-filtered accuracy gap; recovery AUC = area under the recovered fraction "
              f"over log steps (0 = stayed at the filtered level, 1 = at the base level throughout).", ""]
    lines.append(markdown_table(table, {
        "model": "model", "role": "role", "eval_hazard_acc": labels["eval_hazard_acc"],
        "eval_near_acc": labels["eval_near_acc"], "eval_far_acc": labels["eval_far_acc"],
        "eval_retain_ppl": labels["eval_retain_ppl"],
        "hazard_acc_start": "attack: acc before", "hazard_acc_final": f"acc after {steps_done}",
        "hazard_steps_to_half_gap": "steps to half gap", "hazard_auc_recovery_log": "recovery AUC",
        "benign_acc_final": f"benign attack: acc after {steps_done}", "benign_auc_recovery_log": "benign-attack AUC",
        "layerwise_pattern": labels["layerwise_pattern"]}))
    lines += ["", *claims(table, got), ""]
    excluded = table[(table["role"] == "unlearned") & ~eligible]
    if len(excluded):
        lines += [f"Left out of the correlations (hazard accuracy before the attack already above the half-gap "
                  f"threshold, i.e. the knowledge was never hidden; models calibrated to the weak strength stay in): "
                  f"{', '.join(f'`{m}`' for m in excluded['model'])}.", ""]

    lines += calibration_section(calibration_records(entries))
    lines += method_recovery_section(table)
    lines += recovery_section(table)

    lines += ["## Signatures", "", "Each unlearned model, the control edit and the filtered model against the base. "
              "Bracketed columns are baselines (what a change proportional to W, or a random update, gives). "
              "Base → filtered compares two models trained from scratch (see cos(W_a, W_b)): its weight-space "
              "numbers describe unrelated weights, not an edit.", ""]
    lines += [markdown_table(table[table["role"] != "base"], signature_columns()), ""]

    lines += ["## Recovery curves", ""]
    for attack in ATTACKS:
        if attack in figures:
            lines += [f"![{attack} attack]({figures[attack].relative_to(outdir).as_posix()})", ""]
        else:
            lines += [f"No `{attack}` relearning curves found.", ""]
        if f"time_{attack}" in figures:
            lines += [f"Steps until half the base-minus-filtered gap came back, on a log axis (open triangles: "
                      f"not within the budget, so slow is not drawn as robust):", "",
                      f"![{attack} time to recovery]({figures[f'time_{attack}'].relative_to(outdir).as_posix()})", ""]

    lines += ["## Signatures against recovery", "",
              f"Recovery = the hazard attack's {RECOVERY_WORDS.get(recovery, recovery)}. Spearman rank correlation "
              "across the unlearned models that hid the knowledge (ρ), the same after accounting for each model's "
              "hazard accuracy before the attack (partial ρ: a signature that only tracks how much was forgotten has "
              "a partial ρ near 0), and within methods (each model's numbers minus its method's mean). Intervals: "
              f"95 % percentile bootstrap over {N_BOOT} resamples of whole methods (seeded). A prediction holds when "
              f"the interval of ρ lies on the predicted side of 0 and its bootstrap p, Holm-corrected over the "
              f"predictions tested, is below {alpha}; reversed, the same on the other side. The control edit(s) and "
              "the filtered model are drawn on every panel as references and are in no correlation.", ""]
    if "scatter" in figures:
        lines += [f"![signatures vs recovery]({figures['scatter'].relative_to(outdir).as_posix()})", ""]
    if len(preds):
        lines.append(correlation_table(preds))
    lines += ["", *predictive_section(cv)]
    lines += ["", "## Which seed predictions held on this run", ""]
    lines += [f"- {s}" for s in prediction_sentences(preds)] if len(preds) else ["No predictions could be tested."]
    lines += ["", "## How each number is formed", ""]
    for reader in READERS:
        doc = " ".join(inspect.cleandoc(reader.read.__doc__ or "").split())
        lines.append(f"- **{reader.step}** — `{reader.file}`: {doc}")
    return "\n".join(lines) + "\n"
