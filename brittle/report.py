"""The brittleness report: every model's signature numbers beside how fast its knowledge came back.

:func:`collect` reads, for each model, every reader of :mod:`brittle.report_numbers` at the
folder the step registry gives, recording a missing file as a missing step rather than dropping
the model. :func:`prediction_table` tests each seed prediction two ways:

* across unlearned models: Spearman rank correlation between the signature and recovery speed
  (``hazard_auc_recovery_log``, the area under the recovered-fraction curve over log steps). The
  prediction *held* when the correlation has the predicted sign with p < ``alpha``, *reversed* when
  it has the other sign with p < ``alpha``, and is *not supported* otherwise (including too few
  models: Spearman needs >= 4 for any p below 0.1).
* filtered vs unlearned: whether the median unlearned model lies on the predicted brittle side of
  the filtered model. Base -> filtered is a comparison of two models trained from scratch, so its
  weight-space numbers describe unrelated weights, not an intervention; the contrast is reported
  but a prediction is only counted as held on the correlation.

Models whose hazard accuracy before the attack is already above the half-gap threshold did not
hide the knowledge in the first place; their "recovery" is not relearning, so they are left out of
the correlations (and listed). :func:`report_markdown` writes the markdown page.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brittle import steps
from brittle.io import model_slug
from brittle.report_numbers import PREDICTIONS, READERS, MissingSource, numbers

ATTACKS = ("hazard", "benign")
SPEED = "hazard_auc_recovery_log"
CONTROL = "control"   # unlearn.py's benign fine-tune: the edit every signature is read against
EXACT_MAX_N = 8  # up to 8! = 40,320 orderings: exact permutation p-value; above, scipy's t approximation


@dataclass
class ModelEntry:
    """One model in the report: ``role`` is base, filtered, unlearned or control (the benign
    fine-tune of matched size, ``<base>__control``); ``label`` a short name."""

    role: str
    model: str
    slug: str
    label: str


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
            role = "control" if slug == f"{base_slug}__{CONTROL}" else "unlearned"
            entries.append(ModelEntry(role, model, slug, short_label(slug, base_slug)))
    return entries


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
        row = {"model": entry.label, "slug": entry.slug, "role": entry.role}
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
    threshold (the knowledge was hidden before the attack)."""
    needed = {SPEED, "hazard_acc_start", "hazard_half_gap_threshold"}
    if not needed <= set(table.columns):
        return pd.Series(False, index=table.index)
    return (table["role"].isin(["filtered", "unlearned"]) & table[SPEED].notna()
            & (table["hazard_acc_start"] < table["hazard_half_gap_threshold"]))


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


def prediction_table(table: pd.DataFrame, alpha: float = 0.1) -> pd.DataFrame:
    """One row per seed prediction: correlation across unlearned models, across all eligible
    models, the filtered-vs-unlearned contrast and the verdict (see module docstring)."""
    eligible = table[relearning_eligible(table)]
    unlearned = eligible[eligible["role"] == "unlearned"]
    filtered = table[table["role"] == "filtered"]
    rows = []
    for pred in PREDICTIONS:
        rec = {"prediction": pred.name, "signature": pred.key, "brittle_if": pred.brittle_if, "claim": pred.claim}
        if pred.key not in table.columns or SPEED not in table.columns:
            rec.update(verdict="not tested", reason=f"no {pred.key if pred.key not in table else SPEED} values")
            rows.append(rec)
            continue
        rho, p, n = spearman(unlearned[pred.key], unlearned[SPEED])
        rho_all, p_all, n_all = spearman(eligible[pred.key], eligible[SPEED])
        rec.update(rho_unlearned=rho, p_unlearned=p, n_unlearned=n, rho_all=rho_all, p_all=p_all, n_all=n_all)
        f_value = float(filtered[pred.key].iloc[0]) if len(filtered) and pd.notna(filtered[pred.key].iloc[0]) else math.nan
        u_median = float(unlearned[pred.key].median()) if len(unlearned) else math.nan
        rec.update(filtered_value=f_value, unlearned_median=u_median)
        if math.isfinite(f_value) and math.isfinite(u_median) and u_median != f_value:
            rec["contrast"] = "consistent" if np.sign(u_median - f_value) == pred.brittle_if else "opposite"
        else:
            rec["contrast"] = "n/a"
        if not math.isfinite(rho):
            rec.update(verdict="not tested", reason=f"{n} unlearned model(s) with both numbers (need >= 3, not constant)")
        elif p < alpha and np.sign(rho) == pred.brittle_if:
            rec.update(verdict="held", reason=f"rho = {rho:+.2f}, p = {p:.2g}, n = {n}")
        elif p < alpha:
            rec.update(verdict="reversed", reason=f"rho = {rho:+.2f}, p = {p:.2g}, n = {n}")
        else:
            rec.update(verdict="not supported", reason=f"rho = {rho:+.2f}, p = {p:.2g}, n = {n}")
        rows.append(rec)
    return pd.DataFrame(rows)


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
        out.append(f"**{r.prediction} -> brittle: {verb}.** {claim}: across unlearned models "
                   f"{r.reason} between `{r.signature}` and recovery speed; {contrast} "
                   f"({_fmt(r.filtered_value)} vs {_fmt(r.unlearned_median)}).")
    return out


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    value = float(value)
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.{digits}g}"


def markdown_table(frame: pd.DataFrame, columns: dict[str, str]) -> str:
    """A GitHub markdown table of ``frame``'s ``columns`` (name -> header); absent columns as '–'."""
    head = "| " + " | ".join(columns.values()) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = [head, rule]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_fmt(row.get(c)) if c in row else "–" for c in columns) + " |")
    return "\n".join(lines)


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
           eligible: pd.Series, figures: dict[str, Path], outdir: Path, alpha: float) -> str:
    """The markdown page: missing steps, knowledge and brittleness, signatures, recovery curves,
    signatures against recovery speed, the predictions' verdicts, and how each number is formed."""
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
                  f"threshold, i.e. the knowledge was never hidden): {', '.join(f'`{m}`' for m in excluded['model'])}.", ""]

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

    lines += ["## Signatures against recovery speed", "",
              "Recovery speed = hazard-attack recovery AUC. Spearman rank correlation across the unlearned "
              f"models that hid the knowledge; a prediction holds when the sign is as predicted with p < {alpha}.", ""]
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
    for reader in READERS:
        doc = " ".join(inspect.cleandoc(reader.read.__doc__ or "").split())
        lines.append(f"- **{reader.step}** — `{reader.file}`: {doc}")
    return "\n".join(lines) + "\n"
