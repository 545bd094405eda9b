"""The population study: which signatures go with recovery across many unlearned models.

Works on the report's table (one row per model, a ``method`` column naming its cluster) restricted
to the unlearned models that hid the knowledge. :func:`correlate` gives, for one signature, the
three rank correlations of :mod:`brittle.population_stats` (across the population, partial on the
pre-attack hazard accuracy, within method) with method-cluster bootstrap intervals;
:func:`judge` Holm-corrects a family of them and gives each its verdict; :func:`predictive_power`
asks whether the signatures together predict recovery beyond the pre-attack accuracy
(:mod:`brittle.population_cv`).

Recovery can be measured three ways (:data:`RECOVERY`), all from the hazard attack's summary.csv
and all at the end of the same attack budget except the AUC, which integrates the whole curve.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from brittle import population_cv as pcv
from brittle import population_stats as ps

# --recovery choice -> report_table.csv column
RECOVERY = {"auc": "hazard_auc_recovery_log", "final": "hazard_recovered_final",
            "pre_unlearning": "hazard_pre_unlearning_frac"}
PRE_ATTACK = "hazard_acc_start"     # hazard accuracy before the attack: how much was forgotten
METHOD = "method"
N_BOOT = 2000
FEW_CLUSTERS = 20   # below this many methods the percentile interval is known to under-cover


def _finite_rows(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    ok = np.ones(len(frame), dtype=bool)
    for c in columns:
        ok &= np.isfinite(pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float))
    return frame[ok]


def correlate(frame: pd.DataFrame, key: str, recovery: str, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """For signature ``key``: rho, partial_rho (on :data:`PRE_ATTACK`), within_rho, each with
    ``*_low``/``*_high`` (95 % method-cluster bootstrap) and ``*_p_boot``; n models, n_methods.
    Rows lacking any of the three numbers are left out."""
    rows = _finite_rows(frame, [key, recovery, PRE_ATTACK])
    x, y, z = (rows[c].to_numpy(dtype=float) for c in (key, recovery, PRE_ATTACK))
    groups = rows[METHOD].astype(str).to_numpy()
    weights = ps.cluster_weights(groups, n_boot, seed)   # the same resamples for every signature
    stats = {
        "rho": lambda w: ps.rank_corrs(x, y, w),
        "partial_rho": lambda w: ps.partial_rank_corrs(x, y, z, w),
        "within_rho": lambda w: ps.within_rank_corrs(x, y, groups, w),
    }
    needed = {"rho": ps.MIN_PAIRS, "partial_rho": ps.MIN_PAIRS + 1, "within_rho": ps.MIN_PAIRS}
    out = {"n": len(rows), "n_methods": int(np.unique(groups).size)}
    for name, fn in stats.items():
        point = float(fn(np.ones((1, len(rows))))[0]) if len(rows) >= needed[name] else math.nan
        reps = fn(weights) if math.isfinite(point) else np.full(n_boot, np.nan)
        low, high = ps.interval(reps)
        out.update({name: point, f"{name}_low": low, f"{name}_high": high, f"{name}_p_boot": ps.bootstrap_p(reps)})
    return out


def judge(results: list[dict], brittle_if: list[int], alpha: float = 0.05) -> list[dict]:
    """Holm-correct each statistic's bootstrap p over the family ``results`` (one per prediction
    tested; untestable ones stay out of the family) and give each the verdict of its population
    ρ (``verdict``) and of its partial ρ (``verdict_partial``); see population_stats.verdict."""
    out = [dict(r) for r in results]
    for name, label in (("rho", "verdict"), ("partial_rho", "verdict_partial")):
        adjusted = ps.holm([r.get(f"{name}_p_boot", math.nan) for r in results])
        for r, p, sign in zip(out, adjusted, brittle_if):
            r[f"{name}_p_holm"] = float(p)
            r[label] = ps.verdict(r.get(f"{name}_low", math.nan), r.get(f"{name}_high", math.nan), p, sign, alpha)
    return out


def predictive_power(frame: pd.DataFrame, keys: list[str], recovery: str) -> dict:
    """Leave-one-method-out ridge R² of ``recovery`` from: the pre-attack accuracy alone
    (``r2_pre_attack``), the signatures ``keys`` alone (``r2_signatures``) and both
    (``r2_both``). Signatures missing for any model are left out (``dropped``), so every score is
    on the same models (``n``, ``n_methods``)."""
    usable = [k for k in keys if k in frame and np.isfinite(pd.to_numeric(frame[k], errors="coerce")).all()]
    rows = _finite_rows(frame, [recovery, PRE_ATTACK, *usable])
    y = rows[recovery].to_numpy(dtype=float)
    groups = rows[METHOD].astype(str).to_numpy()
    pre = rows[[PRE_ATTACK]].to_numpy(dtype=float)
    sig = rows[usable].to_numpy(dtype=float)
    return {"n": len(rows), "n_methods": int(np.unique(groups).size), "features": usable,
            "dropped": [k for k in keys if k not in usable],
            "r2_pre_attack": pcv.lomo_r2(pre, y, groups),
            "r2_signatures": pcv.lomo_r2(sig, y, groups) if usable else math.nan,
            "r2_both": pcv.lomo_r2(np.hstack([sig, pre]), y, groups) if usable else math.nan}
