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
