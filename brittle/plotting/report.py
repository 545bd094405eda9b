"""The report's scatter grid: each signature number against recovery speed, one point per model."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def signature_scatter(table: pd.DataFrame, keys: list[str], speed: str, eligible: pd.Series,
                      rho: dict[str, tuple[float, float, int]]):
    """One panel per signature ``key``: x = the signature, y = ``speed``. Unlearned models that
    were eligible for the correlation are blue, the filtered model orange, unlearned models left
    out (they never hid the knowledge) grey crosses. ``rho[key] = (rho, p, n)`` goes in the title.
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
              ("filtered", table["role"] == "filtered", "tab:orange", "s"),
              ("not unlearned (excluded)", ~eligible & (table["role"] == "unlearned"), "grey", "x")]
    for ax, key in zip(axes.flat, keys):
        for name, mask, color, marker in groups:
            sub = table[mask & table[key].notna() & table[speed].notna()]
            ax.scatter(sub[key], sub[speed], c=color, marker=marker, s=28, label=name)
            for _, row in sub.iterrows():
                ax.annotate(str(row["model"]), (row[key], row[speed]), fontsize=6, xytext=(3, 2),
                            textcoords="offset points")
        r, p, n = rho.get(key, (math.nan, math.nan, 0))
        stat = f"ρ={r:+.2f} p={p:.2g} n={n}" if np.isfinite(r) else f"ρ n/a (n={n})"
        ax.set_title(f"{key}\n{stat}", fontsize=8)
        ax.set_ylabel("recovery AUC (log steps)" if ax in axes[:, 0] else "", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6, loc="best")
    fig.tight_layout()
    return fig
