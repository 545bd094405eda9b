"""Figures of the weight-space steps (1–2, 6, 7, 10), drawn from their CSVs only.

Each function takes DataFrames as written by the step and returns a matplotlib Figure; the
caller saves it with :func:`brittle.io.save_figure`. Only transformer-block rows (a block index,
group attn/mlp) are drawn per block; embeddings and the head sit in the CSVs.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

GROUP_STYLE = {"attn": {"color": "tab:blue", "marker": "o"}, "mlp": {"color": "tab:orange", "marker": "s"}}


def _block_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["block"].notna() & df["group"].isin(GROUP_STYLE)]


def _per_group_lines(ax, df: pd.DataFrame, column: str, label_suffix: str = "", **kw) -> None:
    for group, g in _block_rows(df).groupby("group"):
        g = g.sort_values("block")
        ax.plot(g["block"], g[column], label=f"{group}{label_suffix}", **GROUP_STYLE[group], **kw)


def _finish(ax, title: str, ylabel: str, log: bool = False) -> None:
    ax.set_title(title)
    ax.set_xlabel("block")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()


def _wants_log(values: pd.Series) -> bool:
    """Log scale only when every value is positive and they span more than 1.5 decades (a zero,
    e.g. an untouched block, must stay visible)."""
    v = values.dropna()
    return bool(len(v) and (v > 0).all() and v.max() / v.min() > 30)


def layer_locality(per_layer: pd.DataFrame, title: str = "") -> plt.Figure:
    """Relative Frobenius norm of ΔW per block, MLP vs attention (where is the change?)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    _per_group_lines(ax, per_layer, "dW_fro_layer_rel")
    _finish(ax, f"Layer locality {title}".strip(), "||dW||_F / ||W||_F",
            log=_wants_log(per_layer["dW_fro_layer_rel"]))
    return fig


def spectral_norm_by_block(per_layer: pd.DataFrame, title: str = "") -> plt.Figure:
    """Largest σ₁(ΔW)/σ₁(W) per block and group (worst-case amplification)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    _per_group_lines(ax, per_layer, "max_dW_spectral_rel")
    _finish(ax, f"Spectral norm {title}".strip(), "max sigma_1(dW) / max sigma_1(W)",
            log=_wants_log(per_layer["max_dW_spectral_rel"]))
    return fig


def stable_rank_by_block(per_matrix: pd.DataFrame, title: str = "") -> plt.Figure:
    """Mean stable rank of ΔW (solid) and of W (dashed) per block and group."""
    means = (_block_rows(per_matrix).groupby(["block", "group"])[["dW_stable_rank", "W_stable_rank"]]
             .mean().reset_index())
    fig, ax = plt.subplots(figsize=(7, 4))
    _per_group_lines(ax, means, "dW_stable_rank", " dW")
    _per_group_lines(ax, means, "W_stable_rank", " W", linestyle="--", alpha=0.6)
    _finish(ax, f"Stable rank {title}".strip(), "||.||_F^2 / sigma_1^2")
    return fig


def rank_comparison(per_matrix: pd.DataFrame, title: str = "") -> plt.Figure:
    """Per matrix: rank of W against rank of ΔW (stable rank; empirical 99 % rank too if present).
    Points below the diagonal are updates of fewer directions than the weight they change."""
    kinds = [("stable", "W_stable_rank", "dW_stable_rank")]
    if "dW_empirical_rank" in per_matrix:
        kinds.append(("empirical (99% energy)", "W_empirical_rank", "dW_empirical_rank"))
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4.5), squeeze=False)
    blocks = _block_rows(per_matrix)
    for ax, (label, wcol, dcol) in zip(axes[0], kinds):
        for group, g in blocks.groupby("group"):
            ax.scatter(g[wcol], g[dcol], s=14, alpha=0.7, label=group, color=GROUP_STYLE[group]["color"])
        hi = float(np.nanmax(blocks[[wcol, dcol]].to_numpy())) if len(blocks) else 1.0
        ax.plot([0, hi], [0, hi], color="grey", linewidth=0.8, label="y = x")
        ax.set_xlabel(f"W {label} rank")
        ax.set_ylabel(f"dW {label} rank")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"W vs dW rank {title}".strip())
    return fig


def relatedness(per_layer: pd.DataFrame, title: str = "") -> plt.Figure:
    """cos(W_a, W_b) per block and group: ≈1 for an edit of A, ≈0 for separately trained weights."""
    fig, ax = plt.subplots(figsize=(7, 4))
    _per_group_lines(ax, per_layer, "W_cosine_layer")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_ylim(-0.05, 1.05)
    _finish(ax, f"Relatedness of W_a and W_b {title}".strip(), "cos(W_a, W_b)")
    return fig


def mlp_attn_ratio(by_block: pd.DataFrame, title: str = "") -> plt.Figure:
    """Per block: MLP/attention ratio of the relative Frobenius change (log scale, 1 = equal)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ok = by_block[np.isfinite(by_block["mlp_attn_ratio"]) & (by_block["mlp_attn_ratio"] > 0)]
    ax.bar(ok["block"], ok["mlp_attn_ratio"], color="tab:purple")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    if len(ok):
        ax.set_yscale("log")
    ax.set_title(f"MLP / attention change per block {title}".strip())
    ax.set_xlabel("block")
    ax.set_ylabel("rel. ||dW||_F (mlp) / rel. ||dW||_F (attn)")
    ax.grid(alpha=0.3)
    return fig


def null_space_summary(results: pd.DataFrame, title: str = "") -> plt.Figure:
    """Step 7: each metric per sampled matrix against its random baseline (dashes); the geodesic
    distances also against their norm-matched null (grey, ± one standard deviation)."""
    panels = [("dW_top10_energy", "dW_top10_energy_random", "top-10 energy share of dW"),
              ("dW_effective_rank_frac", "dW_effective_rank_frac_random", "99% effective rank / min(m, n)"),
              ("out_geodesic", "out_geodesic_random", "geodesic distance, output side"),
              ("in_geodesic", "in_geodesic_random", "geodesic distance, input side")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4))
    x = np.arange(len(results))
    colors = [GROUP_STYLE.get(g, {"color": "grey"})["color"] for g in results["group"]]
    for ax, (col, base, label) in zip(axes, panels):
        ax.scatter(x, results[col], s=14, c=colors)
        ax.scatter(x, results[base], s=30, marker="_", color="black", label="random baseline")
        if col.endswith("_geodesic"):
            ax.errorbar(x, results[f"{col}_null"], yerr=results[f"{col}_null_std"], fmt="none", ecolor="grey",
                        elinewidth=1, capsize=2, label="norm-matched null")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("sampled matrix")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[2].legend(fontsize=7)
    fig.suptitle(f"Null space & subspace analysis {title} (blue attn, orange mlp)".strip())
    return fig


def mlp_nullspace(results: pd.DataFrame, title: str = "") -> plt.Figure:
    """Step 10: share of ΔW's energy in W's column space per MLP matrix, output and input side,
    with the random baseline r/m or r/n; bars on a matrix's uninformative (shorter) side in grey."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    res = results.sort_values(["block", "name"]).reset_index(drop=True)
    x = np.arange(len(res))
    for ax, side, label in [(axes[0], "out", "output side (column space of W)"),
                            (axes[1], "in", "input side (row space of W)")]:
        headline = res["side"] == {"out": "output", "in": "input"}[side]
        ax.bar(x, res[f"{side}_col_frac"], color=np.where(headline, "tab:orange", "lightgrey"),
               label="dW energy in W's subspace (grey: uninformative side)")
        ax.scatter(x, res[f"{side}_random_col_frac"], marker="_", s=200, color="black", label="random baseline r/d")
        ax.set_xticks(x, [f"{block}:{n.split('.')[-2]}" for block, n in zip(res["block"], res["name"])],
                      rotation=90, fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_title(label)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("fraction of ||dW||_F^2")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"MLP dW: column space vs null space {title}".strip())
    return fig


def energy_share(by_block: pd.DataFrame, title: str = "") -> plt.Figure:
    """Per block: MLP share of ‖ΔW‖² (bars) against the MLP share of ‖W‖² (the baseline of a
    change proportional to W)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(by_block["block"], by_block["mlp_dW_energy_share"], color="tab:orange", label="MLP share of ||dW||^2")
    ax.plot(by_block["block"], by_block["mlp_W_energy_share"], color="black", marker="_", markersize=14,
            linestyle="none", label="MLP share of ||W||^2 (baseline)")
    ax.set_ylim(0, 1.05)
    _finish(ax, f"MLP share of the change {title}".strip(), "share")
    return fig
