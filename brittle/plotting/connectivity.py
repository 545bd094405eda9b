"""Figure of the mode-connectivity step, drawn from its CSV only."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from brittle.plotting.activations import SPLIT_STYLE  # noqa: E402


def connectivity(curve: pd.DataFrame, label_a: str, label_b: str):
    """Loss along θ(α) per split with its interval and the chord between the ends (left), and the
    excess over the chord, whose maximum is the barrier (right) (``connectivity_curve.csv``)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for split, frame in curve.groupby("split"):
        frame = frame.sort_values("alpha")
        style = SPLIT_STYLE.get(split, ":")
        line, = axes[0].plot(frame["alpha"], frame["loss"], linestyle=style, marker="o", ms=3, label=split)
        axes[0].fill_between(frame["alpha"], frame["loss_ci_low"], frame["loss_ci_high"], color=line.get_color(),
                             alpha=0.15)
        ends = frame.iloc[[0, -1]]
        axes[0].plot(ends["alpha"], ends["loss"], color=line.get_color(), linewidth=0.8, alpha=0.6)
        axes[1].plot(frame["alpha"], frame["excess_over_chord"], linestyle=style, marker="o", ms=3,
                     color=line.get_color(), label=split)
    axes[0].set(xlabel=f"α (0 = {label_a}, 1 = {label_b})", ylabel="mean NLL per token (nats)",
                title="loss along the linear path (thin: chord)")
    axes[1].axhline(0, color="grey", linewidth=0.8)
    axes[1].set(xlabel="α", ylabel="loss − chord (nats)", title="excess over the chord (max = barrier)")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
