"""Relearning curves: hazard, near- and far-domain accuracy and retain perplexity against attack steps.

Input is the tidy ``curve.csv`` that ``relearn.py`` writes (one row per model, seed, step). Each
model is drawn as its seed mean with a Student-t 95 % band when it has several seeds. The step axis
is symmetric-log (linear below 1) so step 0 sits on the axis beside the log-spaced checkpoints.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brittle.recovery import mean_interval

PANELS = (("hazard_acc", "hazard accuracy (attack eval)"), ("near_acc", "near-domain accuracy"),
          ("far_acc", "far-domain accuracy"), ("retain_ppl", "retain perplexity"))


def seed_mean(curve: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per step: ``mean``, ``low``, ``high`` (t-interval over seeds; NaN with one seed), ``n``."""
    rows = []
    for step, grp in curve.groupby("step", sort=True):
        mean, low, high = mean_interval(grp[column].to_numpy())
        rows.append({"step": step, "mean": mean, "low": low, "high": high, "n": int(grp[column].notna().sum())})
    return pd.DataFrame(rows)


def plot_recovery_curves(curves: pd.DataFrame, label_column: str = "model",
                         references: dict[str, float] | None = None, title: str | None = None,
                         panels=PANELS):
    """One row of panels (one per metric), one line per value of ``label_column``.

    ``references`` maps a name (e.g. "base", "filtered") to a hazard accuracy drawn as a dashed
    horizontal line on the first panel. Returns the matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels = [(c, t) for c, t in panels if c in curves.columns and curves[c].notna().any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    labels = sorted(curves[label_column].unique(), key=str)
    palette = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    for i, label in enumerate(labels):
        grp = curves[curves[label_column] == label]
        # the two references keep fixed colours so that they read the same in every figure
        color = {"base": "black", "filtered": "tab:red"}.get(str(label), palette(i % palette.N))
        for ax, (column, _) in zip(axes[0], panels):
            stats = seed_mean(grp, column)
            ax.plot(stats["step"], stats["mean"], marker="o", ms=3, color=color, label=str(label))
            if np.isfinite(stats["low"]).any():
                ax.fill_between(stats["step"], stats["low"], stats["high"], color=color, alpha=0.2, lw=0)
    for ax, (column, name) in zip(axes[0], panels):
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("attack step")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    styles = iter(["--", ":", "-."])
    for name, value in (references or {}).items():
        if value is not None and np.isfinite(value):
            axes[0][0].axhline(value, color="grey", ls=next(styles, "--"), lw=1, label=f"{name} ({value:.2f})")
    axes[0][0].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_time_to_recovery(table: pd.DataFrame, attack: str = "hazard"):
    """Steps until half the base-minus-filtered gap came back, per model, on a log axis, grouped by
    method (x) and strength (marker), so that models that recover in 2 steps and in 500 both stay
    readable. A model that never crossed within the budget is drawn at the budget with an upward
    triangle (right-censored: it would take longer), never as if it had crossed there. The filtered
    model and the control edits sit at the right as references.

    ``table``: the report table (one row per model; columns ``role``, ``method``, ``strength``,
    ``<attack>_steps_to_half_gap`` (NaN: not reached), ``<attack>_steps_budget``). Returns the figure,
    or None when no model has a relearning result for ``attack``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    steps_col, budget_col = f"{attack}_steps_to_half_gap", f"{attack}_steps_budget"
    if steps_col not in table.columns or budget_col not in table.columns:
        return None
    rows = table[table[budget_col].notna() & table["role"].isin(["unlearned", "filtered", "control"])]
    if rows.empty:
        return None
    groups = sorted(rows.loc[rows["role"] == "unlearned", "method"].dropna().unique().tolist())
    groups += [g for g in ("control", "filtered") if (rows["role"] == g).any()]
    x_of = {g: i for i, g in enumerate(groups)}
    markers = {"matched": "o", "weak": "s", "default": "D"}
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(groups) + 2), 3.8))
    jitter = np.random.default_rng(0)   # fixed: the same table gives the same picture
    for _, r in rows.iterrows():
        group = r["role"] if r["role"] in ("control", "filtered") else r["method"]
        if group not in x_of:
            continue
        x = x_of[group] + jitter.uniform(-0.15, 0.15)
        censored = not np.isfinite(r[steps_col])
        y = max(float(r[budget_col] if censored else r[steps_col]), 1.0)   # step 0 drawn at 1 on the log axis
        color = {"filtered": "tab:red", "control": "tab:green"}.get(r["role"], "tab:blue")
        marker = "^" if censored else markers.get(str(r.get("strength", "default")), "o")
        ax.scatter([x], [y], marker=marker, color=color, alpha=0.75, s=28,
                   facecolors="none" if censored else color)
    budget = float(rows[budget_col].max())
    ax.axhline(budget, color="grey", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=45, ha="right")
    ax.set_ylabel("steps to half the gap (log)")
    handles = [plt.Line2D([], [], ls="", marker=m, color="tab:blue", label=s) for s, m in markers.items()
               if (rows.get("strength", pd.Series(dtype=str)) == s).any()]
    handles.append(plt.Line2D([], [], ls="", marker="^", color="grey", markerfacecolor="none",
                              label=f"not within the budget ({budget:.0f} steps)"))
    ax.legend(handles=handles, fontsize=7, loc="best")
    ax.set_title(f"{attack} attack: time to recovery per model")
    fig.tight_layout()
    return fig
