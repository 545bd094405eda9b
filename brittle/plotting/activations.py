"""Figures of the activation steps, drawn from their CSVs only (never from live models)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

SPLIT_STYLE = {"forget": "-", "retain": "--"}
MODEL_COLOR = {"a": "tab:blue", "b": "tab:orange"}


def _band(ax, x, frame: pd.DataFrame, col: str, **kw):
    """Line of ``col`` with its ``col_ci_low``/``col_ci_high`` band when the CSV has them."""
    line, = ax.plot(x, frame[col], **kw)
    if f"{col}_ci_low" in frame:
        ax.fill_between(x, frame[f"{col}_ci_low"], frame[f"{col}_ci_high"], color=line.get_color(), alpha=0.15)
    return line


def activation_norms(stats: pd.DataFrame, label_a: str, label_b: str):
    """Mean per-token L1 and L2 norms per layer, A vs B, forget vs retain (``activation_stats.csv``)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, norm in zip(axes, ("L1", "L2")):
        for split, frame in stats.groupby("split"):
            frame = frame.sort_values("layer")
            for model, label in (("a", label_a), ("b", label_b)):
                _band(ax, frame["layer"], frame, f"model_{model}_norm_{norm}", color=MODEL_COLOR[model],
                      linestyle=SPLIT_STYLE.get(split, ":"), marker="o", ms=3, label=f"{label} / {split}")
        ax.set(xlabel="hidden-state layer (0 = embeddings)", ylabel=f"mean per-token {norm} norm",
               title=f"{norm} norm of hidden states")
        ax.legend(fontsize=7)
    return fig


def activation_diffs(stats: pd.DataFrame, label_a: str, label_b: str):
    """Mean per-token ‖h_b − h_a‖ per layer, forget vs retain."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, norm in zip(axes, ("L1", "L2")):
        for split, frame in stats.groupby("split"):
            frame = frame.sort_values("layer")
            _band(ax, frame["layer"], frame, f"mean_dh_{norm}", linestyle=SPLIT_STYLE.get(split, ":"),
                  marker="o", ms=3, label=split)
        ax.set(xlabel="hidden-state layer (0 = embeddings)", ylabel=f"mean per-token ‖Δh‖ ({norm})",
               title=f"{label_b} − {label_a}")
        ax.legend(fontsize=7)
    return fig
