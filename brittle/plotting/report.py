"""The report's scatter grid: each signature number against recovery, one point per model."""

from __future__ import annotations

import math

import pandas as pd


def signature_scatter(table: pd.DataFrame, keys: list[str], speed: str, eligible: pd.Series, titles: dict[str, str]):
    """One panel per signature ``key``: x = the signature, y = ``speed`` (a recovery column).
    Unlearned models in the correlation are blue; the references, in no correlation, are the
    filtered model (orange square) and the control edits (green triangles); unlearned models left
    out (they never hid the knowledge) are grey crosses. ``titles[key]`` is the panel's statistic line.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    keys = [k for k in keys if k in table.columns and table[k].notna().any()]
    if not keys:
        return None
    ncols = min(4, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.1 * nrows), squeeze=False)
    groups = [("unlearned", eligible & (table["role"] == "unlearned"), "tab:blue", "o"),
              ("filtered (reference)", table["role"] == "filtered", "tab:orange", "s"),
              ("control edit (reference)", table["role"] == "control", "tab:green", "^"),
              ("not unlearned (excluded)", ~eligible & (table["role"] == "unlearned"), "grey", "x")]
    for ax, key in zip(axes.flat, keys):
        for name, mask, color, marker in groups:
            sub = table[mask & table[key].notna() & table[speed].notna()]
            ax.scatter(sub[key], sub[speed], c=color, marker=marker, s=28, label=name)
            for _, row in sub.iterrows():
                ax.annotate(str(row["model"]), (row[key], row[speed]), fontsize=6, xytext=(3, 2),
                            textcoords="offset points")
        ax.set_title(f"{key}\n{titles.get(key, '')}", fontsize=8)
        ax.set_ylabel(speed if ax in axes[:, 0] else "", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6, loc="best")
    fig.tight_layout()
    return fig
