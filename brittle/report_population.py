"""The report's population-study text: what the run found, recovery three ways, the
correlations with their intervals, and whether the signatures predict recovery together.

Reads only the prediction table (:func:`brittle.report.prediction_table`), the predictive-power
dict (:func:`brittle.population.predictive_power`) and the report table; writes markdown lines.
"""

from __future__ import annotations

import math

import pandas as pd

from brittle.markdown import fmt, markdown_table
from brittle.population import FEW_CLUSTERS, RECOVERY

RECOVERY_WORDS = {
    "hazard_auc_recovery_log": "recovery AUC (mean recovered fraction of the base-vs-filtered gap over log steps)",
    "hazard_recovered_final": "recovered fraction of the base-vs-filtered gap after the attack budget",
    "hazard_pre_unlearning_frac": "accuracy after the attack over the base model's (Deeb & Roger 2024)",
}
# A change in out-of-fold R² smaller than this is not read as a gain or a loss. A set margin, not
# a derived one: the R² values are point estimates without an interval.
R2_MARGIN = 0.1


def _interval(low, high) -> str:
    return f"[{fmt(low, 2)}, {fmt(high, 2)}]" if math.isfinite(low) and math.isfinite(high) else "–"


def _names(preds: pd.DataFrame, column: str, verdict: str) -> str:
    names = preds.loc[preds[column] == verdict, "prediction"].tolist() if column in preds else []
    return ", ".join(f"*{n}*" for n in names)


def gain_sentence(cv: dict) -> str:
    """Whether the signatures add predictive power beyond the pre-attack accuracy, in words."""
    both, pre, sig = cv.get("r2_both", math.nan), cv.get("r2_pre_attack", math.nan), cv.get("r2_signatures", math.nan)
    if not (math.isfinite(both) and math.isfinite(pre)):
        return "Whether the signatures predict recovery could not be tested (fewer than 3 methods with every number)."
    diff = both - pre
    if max(both, pre, sig if math.isfinite(sig) else -math.inf) <= R2_MARGIN:
        verdict = (f"nothing predicts recovery for a held-out method better than the mean (every R² at most "
                   f"{R2_MARGIN}), so the signatures add nothing measurable beyond how much was forgotten")
    elif diff > R2_MARGIN and both > R2_MARGIN:
        verdict = "the signatures add predictive power beyond how much was forgotten"
    elif diff < -R2_MARGIN:
        verdict = "adding the signatures makes held-out prediction worse"
    else:
        verdict = "the signatures add nothing clear beyond how much was forgotten"
    return (f"Predicting recovery for a held-out method (leave-one-method-out ridge regression, "
            f"{cv['n']} models of {cv['n_methods']} methods): out-of-fold R² {fmt(pre, 2)} from the pre-attack "
            f"hazard accuracy alone, {fmt(sig, 2)} from the {len(cv['features'])} signatures alone, {fmt(both, 2)} "
            f"from both; {verdict} (difference {diff:+.2f}; a point estimate, no interval).")


def brittleness_sentence(table: pd.DataFrame, recovery: str) -> list[str]:
    """The range of recovery over the unlearned models beside the filtered model's and the controls'."""
    if recovery not in table:
        return []
    values = {role: pd.to_numeric(table.loc[table["role"] == role, recovery], errors="coerce").dropna()
              for role in ("unlearned", "filtered", "control")}
    if values["unlearned"].empty:
        return []
    text = (f"The {len(values['unlearned'])} unlearned models reached {values['unlearned'].min():.2f} to "
            f"{values['unlearned'].max():.2f}")
    if not values["filtered"].empty:
        above = int((values["unlearned"] > values["filtered"].max()).sum())
        text += (f", the filtered model {values['filtered'].max():.2f} ({above} of {len(values['unlearned'])} "
                 f"unlearned models above it)")
    if not values["control"].empty:
        text += f", the control edit(s) {', '.join(f'{v:.2f}' for v in values['control'])}"
    return [text + "."]


def findings(preds: pd.DataFrame, cv: dict, table: pd.DataFrame, recovery: str, alpha: float) -> list[str]:
    """The page's opening paragraph: what this run found and how sure it is, in plain sentences."""
    tested = preds[preds["verdict"] != "not tested"] if "verdict" in preds else preds.iloc[0:0]
    unlearned = table[table["role"] == "unlearned"]
    n_methods = int(tested["n_methods"].max()) if "n_methods" in tested and len(tested) else 0
    n_models = int(tested["n"].max()) if "n" in tested and len(tested) else 0
    out = [f"Recovery here is the hazard attack's {RECOVERY_WORDS.get(recovery, recovery)}."]
    out += brittleness_sentence(table, recovery)
    if not len(tested):
        out.append("No seed prediction could be tested on this run (too few unlearned models with the numbers).")
    else:
        held, rev = _names(tested, "verdict", "held"), _names(tested, "verdict", "reversed")
        n_held, n_rev = int((tested["verdict"] == "held").sum()), int((tested["verdict"] == "reversed").sum())
        out.append(f"Across {n_models} unlearned models from {n_methods} methods, {len(tested)} seed predictions "
                   f"were tested: {n_held} held{f' ({held})' if held else ''}, {n_rev} reversed"
                   f"{f' ({rev})' if rev else ''}, {len(tested) - n_held - n_rev} not supported. A prediction "
                   f"holds only when the 95 % interval of its rank correlation lies on the predicted side of 0 "
                   f"and its Holm-corrected p (over the {len(tested)} tested) is below {alpha}.")
        p_held, p_rev = _names(tested, "verdict_partial", "held"), _names(tested, "verdict_partial", "reversed")
        out.append("Controlling for the hazard accuracy before the attack (partial ρ), "
                   + (f"held: {p_held}; " if p_held else "none held; ")
                   + (f"reversed: {p_rev}." if p_rev else "none reversed."))
    out.append(gain_sentence(cv))
    sure = (f"How sure: every interval resamples the {n_methods} methods as clusters. "
            if n_methods else "How sure: no intervals were computed. ")
    if 0 < n_methods < FEW_CLUSTERS:
        sure += (f"{n_methods} clusters are few: the percentile bootstrap then tends to give intervals that are too "
                 f"narrow (it only reshuffles the methods at hand); read a 'held' as provisional and a 'not supported' as "
                 f"weak evidence either way. ")
    if "within_rho" in tested and len(tested) and not tested["within_rho"].notna().any():
        sure += "Within-method correlations are not estimable: no method has two or more models here."
    elif "method" in unlearned:
        multi = int((unlearned.groupby("method").size() >= 2).sum())
        sure += f"Within-method correlations rest on the {multi} method(s) with two or more models."
    out.append(sure.strip())
    return [" ".join(out), ""]


def recovery_section(table: pd.DataFrame) -> list[str]:
    """Recovery three ways per attacked model, each with its interval over attack seeds."""
    rows = table[table["role"] != "base"].copy()
    if "hazard_recovered_final" not in rows:
        return ["## Recovery, three ways", "", "No hazard relearning summaries found.", ""]
    for m in ("recovered_final", "auc_recovery_log", "pre_unlearning_frac"):
        lo, hi = rows.get(f"hazard_{m}_low"), rows.get(f"hazard_{m}_high")
        rows[f"{m}_ci"] = [_interval(a, b) for a, b in zip(lo, hi)] if lo is not None else "–"
    n_seeds = sorted({int(v) for v in rows.get("hazard_n_seeds", pd.Series(dtype=float)).dropna()})
    cols = {"model": "model", "role": "role", "method": "method", "seed": "seed", "strength": "strength",
            "reached": "reached", "hazard_recovered_final": "gap recovered (final)", "recovered_final_ci": "95 % (seeds)",
            "hazard_auc_recovery_log": "recovery AUC", "auc_recovery_log_ci": "95 % (seeds)",
            "hazard_pre_unlearning_frac": "acc after / base acc", "pre_unlearning_frac_ci": "95 % (seeds)",
            "hazard_n_seeds": "attack seeds"}
    note = ("Intervals are Student-t over attack seeds; with one seed there is none (–)."
            if n_seeds != [1] else "Each model was attacked with one seed, so there are no seed intervals (–): "
            "the numbers carry the attack's own seed-to-seed noise, unmeasured here.")
    return ["## Recovery, three ways", "",
            "The hazard attack's result measured three ways, the same for every model: the share of the "
            "base-vs-filtered accuracy gap recovered after the budget; its area over log steps (recovery AUC); "
            "and the accuracy after the attack over the base model's accuracy (the fraction of pre-unlearning "
            f"accuracy recovered, Deeb & Roger 2024). `--recovery` ({', '.join(RECOVERY)}) picks the one the "
            f"correlations use. {note}", "", markdown_table(rows, cols), ""]


def correlation_table(preds: pd.DataFrame) -> str:
    shown = preds.assign(
        direction=preds["brittle_if"].map({1: "higher → brittle", -1: "lower → brittle"}),
        rho_ci=[_interval(a, b) for a, b in zip(preds.get("rho_low", [math.nan] * len(preds)),
                                                 preds.get("rho_high", [math.nan] * len(preds)))],
        partial_ci=[_interval(a, b) for a, b in zip(preds.get("partial_rho_low", [math.nan] * len(preds)),
                                                     preds.get("partial_rho_high", [math.nan] * len(preds)))],
        within_ci=[_interval(a, b) for a, b in zip(preds.get("within_rho_low", [math.nan] * len(preds)),
                                                    preds.get("within_rho_high", [math.nan] * len(preds)))])
    return markdown_table(shown, {
        "prediction": "prediction", "signature": "signature", "direction": "predicted",
        "rho_unlearned": "ρ", "rho_ci": "95 %", "rho_p_holm": "Holm p", "partial_rho": "partial ρ",
        "partial_ci": "95 %", "within_rho": "within-method ρ", "within_ci": "95 %", "n_unlearned": "models",
        "n_methods": "methods", "rho_all": "ρ (incl. filtered)", "filtered_value": "filtered",
        "unlearned_median": "unlearned median", "contrast": "contrast", "verdict": "verdict",
        "verdict_partial": "verdict (partial)"})


def predictive_section(cv: dict) -> list[str]:
    dropped = (f" Left out (missing for some model): {', '.join(f'`{k}`' for k in cv['dropped'])}."
               if cv.get("dropped") else "")
    return ["## Do the signatures together predict recovery?", "",
            gain_sentence(cv) + " Features are standardised on each training fold; the ridge penalty is chosen "
            "per fold by an inner leave-one-method-out over 0.01–1000; R² = 1 − Σ(y − ŷ)²/Σ(y − ȳ)² over the "
            "held-out predictions (0 = no better than the mean, negative = worse). Signatures used: "
            + (", ".join(f"`{k}`" for k in cv.get("features", [])) or "none") + "." + dropped, ""]


def calibration_section(records: dict[str, dict]) -> list[str]:
    """How many calibrated models landed within the tolerance of their target, per strength, and
    which did not and why. ``records``: model label -> its ``calibration.json`` (``unlearn.py
    --calibrate``: strength, target_hazard, tolerance, reached, val_hazard, chosen, tries with each
    try's ``outcome``: reached, overshot (fell below the band before a check landed in it) or short
    (the step budget ended above it)). Empty when no model was calibrated."""
    if not records:
        return []
    lines = ["## Calibration", "",
             "Calibrated models (`unlearn.py --calibrate`) stop at the first validation checkpoint within the "
             "tolerance of their target hazard accuracy (matched: the filtered model's + 0.05; weak: halfway "
             "from the base's); evaluation questions are never used for it.", ""]
    for strength in sorted({r.get("strength") for r in records.values()}, key=str):
        group = {m: r for m, r in records.items() if r.get("strength") == strength}
        hit = sum(bool(r.get("reached")) for r in group.values())
        lines.append(f"- {strength}: {hit} of {len(group)} within the tolerance ({100 * hit / len(group):.0f} %).")
    missed = {m: r for m, r in records.items() if not r.get("reached")}
    for m, r in sorted(missed.items()):
        tries = r.get("tries", [])
        outcomes = ", ".join(str(t.get("outcome")) for t in tries)
        lines.append(f"- `{m}` not reached: validation hazard {r.get('val_hazard', float('nan')):.3f} against "
                     f"{r.get('target_hazard', float('nan')):.3f} ± {r.get('tolerance', float('nan')):.2f} after "
                     f"{len(tries)} tries ({outcomes}); the closest checkpoint was kept.")
    return lines + [""]


PER_METHOD = (("hazard_acc_start", "acc before"), ("hazard_acc_final", "acc after the budget"),
              ("hazard_recovered_final", "gap recovered"), ("hazard_auc_recovery_log", "recovery AUC"))


def method_recovery_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per (method, strength) of the calibrated unlearned models: how many models (seeds), and for
    each of ``PER_METHOD`` the mean over them with a 95 % Student-t interval over the models
    (``brittle.recovery.mean_interval``; none with one model). Columns: method, strength, n_models,
    then ``<column>`` and ``<column>_low``/``_high`` per measure. Empty without calibrated models."""
    from brittle.recovery import mean_interval

    if not {"method", "strength"} <= set(table.columns):
        return pd.DataFrame()
    rows = table[(table["role"] == "unlearned") & table["strength"].isin(["matched", "weak"])]
    out = []
    for (method, strength), g in rows.groupby(["method", "strength"], sort=True):
        rec = {"method": method, "strength": strength, "n_models": len(g)}
        for column, _ in PER_METHOD:
            if column in g:
                rec[column], rec[f"{column}_low"], rec[f"{column}_high"] = mean_interval(g[column].to_numpy(float))
        out.append(rec)
    return pd.DataFrame(out)


def method_recovery_section(table: pd.DataFrame) -> list[str]:
    """The hazard attack's result per method and strength, mean over the method's seeds with its
    interval: the population's answer to "which methods' forgetting comes back", at equal strength."""
    per = method_recovery_table(table)
    if per.empty:
        return []
    shown = per[["method", "strength", "n_models"]].copy()
    cols = {"method": "method", "strength": "strength", "n_models": "models"}
    for column, name in PER_METHOD:
        if column in per:
            shown[column] = [f"{fmt(m)} {_interval(lo, hi)}" for m, lo, hi in
                             zip(per[column], per[f"{column}_low"], per[f"{column}_high"])]
            cols[column] = name
    return ["## Recovery per method and strength", "",
            "Calibrated models only, grouped by method and strength: the mean over the method's models (one per "
            "unlearning seed) with a 95 % Student-t interval over them. " + reference_recovery(table), "",
            markdown_table(shown, cols), ""]


def reference_recovery(table: pd.DataFrame) -> str:
    """The recovery AUC of the filtered model and of the control edits: what "recovers little" and
    "recovers fully" look like under the same attack."""
    column = "hazard_auc_recovery_log"
    if column not in table:
        return ""
    parts = []
    for role, name in (("filtered", "the filtered model"), ("control", "the control edit(s)")):
        values = table.loc[table["role"] == role, column].dropna()
        if len(values):
            parts.append(f"{name} {', '.join(fmt(v) for v in values)}")
    return f"For reference, recovery AUC of {' and of '.join(parts)}." if parts else ""
