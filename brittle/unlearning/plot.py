"""The loss plot of an unlearning run, drawn from its ``training_log.csv`` frame."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from brittle.io import save_figure

_NOT_PLOTTED = {"step", "seconds"}


def plot_training_log(log: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """One panel per logged quantity (total loss first) against the step; PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [c for c in log.columns if c not in _NOT_PLOTTED]
    ncols = min(3, len(columns))
    nrows = math.ceil(len(columns) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.8 * nrows), squeeze=False)
    for ax, col in zip(axes.flat, columns):
        ax.plot(log["step"], log[col], lw=1.2)
        ax.set_title(col, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(path, fig)
