"""The brittleness report: every model's signature numbers beside how fast its knowledge came back.

:func:`collect` reads, for each model, every source in :data:`brittle.signatures.SOURCES` and the
relearning summaries, recording a missing file as a missing step rather than dropping the model.
:func:`prediction_table` tests each seed prediction two ways:

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
the correlations (and listed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brittle.io import model_slug
from brittle.signatures import PREDICTIONS, SOURCES, MissingSource, relearning

ATTACKS = ("hazard", "benign")
SPEED = "hazard_auc_recovery_log"


@dataclass
class ModelEntry:
    """One model in the report: ``role`` is base, filtered or unlearned; ``label`` a short name."""

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
            entries.append(ModelEntry("unlearned", model, slug, short_label(slug, base_slug)))
    return entries


def source_path(output_root: Path, source, base_slug: str, slug: str) -> Path:
    if source.scope == "comparison":
        return output_root / f"{base_slug}__vs__{slug}" / source.file
    if source.scope == "model":
        return output_root / slug / source.file
    return output_root / "layerwise_forgetting" / base_slug / source.file


def collect(entries: list[ModelEntry], output_root: str | Path) -> Collected:
    """Read every source for every model; see the module docstring."""
    root = Path(output_root)
    base_slug = next(e.slug for e in entries if e.role == "base")
    rows, missing, curves = [], [], {a: [] for a in ATTACKS}
    references: dict[str, float | None] = {}
    for entry in entries:
        row = {"model": entry.label, "slug": entry.slug, "role": entry.role}
        for source in SOURCES:
            if entry.role == "base" and source.scope != "model":
                continue  # the base is the reference of every comparison
            if entry.role == "filtered" and source.scope == "layerwise":
                continue  # the filtered model is the layer-wise analysis's reference
            path = source_path(root, source, base_slug, entry.slug)
            try:
                row.update(source.read(path, entry.slug))
            except MissingSource as exc:
                missing.append((entry.label, source.step, str(exc.path)))
        for attack in ATTACKS:
            folder = root / entry.slug / "relearning" / attack
            try:
                row.update(relearning(folder / "summary.csv", entry.slug, prefix=attack))
            except MissingSource as exc:
                if entry.role != "base":  # attacking the base is optional
                    missing.append((entry.label, f"relearning/{attack}", str(exc.path)))
                continue
            if (folder / "curve.csv").is_file():
                curves[attack].append(pd.read_csv(folder / "curve.csv").assign(model=entry.label))
            if attack == "hazard" and not references and (folder / "summary.csv").is_file():
                summary = pd.read_csv(folder / "summary.csv")
                references = {"base": _first(summary, "base_acc"), "filtered": _first(summary, "filtered_acc")}
        rows.append(row)
    return Collected(pd.DataFrame(rows), missing,
                     {a: pd.concat(c, ignore_index=True) for a, c in curves.items() if c}, references)


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


EXACT_MAX_N = 8  # up to 8! = 40,320 orderings: exact permutation p-value; above, scipy's t approximation


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
