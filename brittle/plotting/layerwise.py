"""The four-panel layer-wise forgetting figure, drawn from ``per_hidden_state.csv`` and ``regions.csv``.

Panels: (1) cosine distance of the unlearned model to the reference and to the fine-tuned model by
hidden state (mean with a +-1 std band) and the fine-tuned -> reference baseline; (2) the forgetting
ratio by hidden state; (3) the per-state ratios of each third (box) with the region ratio and its bootstrap
interval; (4) the early-vs-late signature plane with every unlearned model of the run, this one
highlighted.
"""

from __future__ import annotations

import pandas as pd

from brittle.layerwise import REGIONS

_QUADRANTS = ((0.25, 0.75, "OBFUSCATION\nearly kept, late hidden", "tab:red"),
              (0.75, 0.75, "TRUE UNLEARNING\nmoved at every depth", "tab:green"),
              (0.25, 0.25, "NO EFFECT\nstill fine-tuned", "tab:orange"),
              (0.75, 0.25, "MIXED\nearly moved, late kept", "tab:gray"))


def _span(first: int, last: int) -> str:
    return f"state {first}" if first == last else f"states {first}-{last}"


def plot_layerwise(per_state: pd.DataFrame, regions: pd.DataFrame, model: str, title: str | None = None):
    """Figure for ``model`` (a value of the ``unlearned_model`` column of both tables)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    pl = per_state[per_state["unlearned_model"] == model].sort_values("hidden_state")
    rg = regions[regions["unlearned_model"] == model].set_index("region")
    if pl.empty or rg.empty:
        raise ValueError(f"no rows for {model!r}")
    states = pl["hidden_state"].to_numpy()
    fig, axes = plt.subplots(2, 2, figsize=(13, 10))

    ax = axes[0, 0]
    for col, label, color, marker in (("cosine_to_reference", "unlearned -> reference", "tab:blue", "o"),
                                      ("cosine_to_finetuned", "unlearned -> fine-tuned", "tab:red", "s")):
        mean, std = pl[f"{col}_mean"].to_numpy(), pl[f"{col}_std"].to_numpy()
        ax.plot(states, mean, color=color, marker=marker, label=label)
        ax.fill_between(states, mean - std, mean + std, color=color, alpha=0.2)
    ax.plot(states, pl["cosine_finetuned_to_reference_mean"], "g--", alpha=0.7, label="fine-tuned -> reference (baseline)")
    ax.set(xlabel="hidden state (0 = embeddings)", ylabel="cosine distance", title="Distance by hidden state (mean +- 1 std)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    ax = axes[0, 1]
    ratio = pl["forgetting_ratio"].to_numpy()
    ax.bar(states, ratio, color=["tab:green" if r > 0.5 else "tab:red" for r in ratio], alpha=0.75)
    ax.axhline(0.5, color="black", ls="--", lw=1.5)
    for name, shade in zip(REGIONS, ("#eef", "#ffe", "#efe")):
        idx = pl.loc[pl["region"] == name, "hidden_state"]
        if len(idx):
            ax.axvspan(idx.min() - 0.5, idx.max() + 0.5, color=shade, zorder=0)
    ax.set(xlabel="hidden state", ylabel="forgetting ratio", ylim=(0, 1),
           title="Forgetting ratio by hidden state\n(> 0.5: closer to the reference, i.e. forgotten)")
    ax.grid(alpha=0.3)

    ax = axes[1, 0]
    groups = [pl.loc[pl["region"] == name, "forgetting_ratio"].to_numpy() for name in REGIONS]
    box = ax.boxplot(groups, patch_artist=True)
    for patch, color in zip(box["boxes"], ("lightblue", "lightyellow", "lightgreen")):
        patch.set_facecolor(color)
    est = rg.loc[list(REGIONS), "forgetting_ratio"].to_numpy()
    low = rg.loc[list(REGIONS), "ci_low"].to_numpy()
    high = rg.loc[list(REGIONS), "ci_high"].to_numpy()
    ax.errorbar(range(1, 4), est, yerr=[est - low, high - est], fmt="D", color="black", capsize=5,
                label="region ratio, 95 % bootstrap CI")
    ax.set_xticks(range(1, 4), [f"{n}\n({_span(rg.loc[n, 'first_hidden_state'], rg.loc[n, 'last_hidden_state'])})"
                                for n in REGIONS])
    ax.axhline(0.5, color="red", ls="--", lw=1.5)
    ax.set(ylabel="forgetting ratio", ylim=(0, 1), title="Forgetting ratio by region")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)

    ax = axes[1, 1]
    wide = regions.pivot(index="unlearned_model", columns="region", values=["forgetting_ratio", "ci_low", "ci_high"])
    for name, row in wide.iterrows():
        x, y = row[("forgetting_ratio", "early")], row[("forgetting_ratio", "late")]
        this = name == model
        ax.errorbar(x, y, xerr=[[x - row[("ci_low", "early")]], [row[("ci_high", "early")] - x]],
                    yerr=[[y - row[("ci_low", "late")]], [row[("ci_high", "late")] - y]],
                    fmt="*" if this else "o", ms=16 if this else 7, color="purple" if this else "gray",
                    alpha=1.0 if this else 0.6, capsize=3, zorder=5 if this else 3)
        ax.annotate(name, (x, y), fontsize=8 if this else 7, xytext=(6, 6), textcoords="offset points")
    for qx, qy, text, color in _QUADRANTS:
        ax.text(qx, qy, text, ha="center", va="center", fontsize=9, color=color, alpha=0.8)
    ax.axhline(0.5, color="gray", ls="--", alpha=0.5)
    ax.axvline(0.5, color="gray", ls="--", alpha=0.5)
    ax.set(xlabel="early-third forgetting ratio", ylabel="late-third forgetting ratio", xlim=(-0.03, 1.03),
           ylim=(-0.03, 1.03), title="Unlearning signature (every unlearned model; this one starred)")
    ax.grid(alpha=0.3)

    for ax in axes[0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title or f"Layer-wise forgetting: {model}")
    fig.tight_layout()
    return fig
