"""Figures of the activation steps, drawn from their CSVs only (never from live models)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

SPLIT_STYLE = {"forget": "-", "retain": "--"}
MODEL_COLOR = {"a": "tab:blue", "b": "tab:orange"}
HIDDEN_STATE_AXIS = "hidden state (0 = embeddings, i = output of block i-1)"


def _band(ax, x, frame: pd.DataFrame, col: str, **kw):
    """Line of ``col`` with its ``col_ci_low``/``col_ci_high`` band when the CSV has them."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # indices are integers
    line, = ax.plot(x, frame[col], **kw)
    if f"{col}_ci_low" in frame:
        ax.fill_between(x, frame[f"{col}_ci_low"], frame[f"{col}_ci_high"], color=line.get_color(), alpha=0.15)
    return line


def activation_norms(stats: pd.DataFrame, label_a: str, label_b: str):
    """Mean per-token L1 and L2 norms per hidden state, A vs B, forget vs retain (``activation_stats.csv``)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, norm in zip(axes, ("L1", "L2")):
        for split, frame in stats.groupby("split"):
            frame = frame.sort_values("hidden_state")
            for model, label in (("a", label_a), ("b", label_b)):
                _band(ax, frame["hidden_state"], frame, f"model_{model}_norm_{norm}", color=MODEL_COLOR[model],
                      linestyle=SPLIT_STYLE.get(split, ":"), marker="o", ms=3, label=f"{label} / {split}")
        ax.set(xlabel=HIDDEN_STATE_AXIS, ylabel=f"mean per-token {norm} norm",
               title=f"{norm} norm of hidden states")
        ax.legend(fontsize=7)
    return fig


def activation_diffs(stats: pd.DataFrame, label_a: str, label_b: str):
    """Mean per-token ‖h_b − h_a‖ per hidden state, forget vs retain."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, norm in zip(axes, ("L1", "L2")):
        for split, frame in stats.groupby("split"):
            frame = frame.sort_values("hidden_state")
            _band(ax, frame["hidden_state"], frame, f"mean_dh_{norm}", linestyle=SPLIT_STYLE.get(split, ":"),
                  marker="o", ms=3, label=split)
        ax.set(xlabel=HIDDEN_STATE_AXIS, ylabel=f"mean per-token ‖Δh‖ ({norm})",
               title=f"{label_b} − {label_a}")
        ax.legend(fontsize=7)
    return fig


def probe_results(results: pd.DataFrame, label: str):
    """Held-out probe AUC and selectivity per hidden state (``probe_results.csv``), with the shuffled-label control."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = results["hidden_state"]
    _band(axes[0], x, results, "auc", marker="o", ms=3, label="probe")
    axes[0].plot(x, results["auc_shuffled_labels"], color="grey", linestyle=":", label="shuffled labels")
    if "lexical_auc" in results:
        axes[0].axhline(results["lexical_auc"].iloc[0], color="tab:red", linestyle="--", lw=1,
                        label=f"words only (lexical AUC {results['lexical_auc'].iloc[0]:.2f})")
    axes[0].axhline(0.5, color="black", lw=0.5)
    axes[0].set(xlabel=HIDDEN_STATE_AXIS, ylabel="held-out AUC", ylim=(0.0, 1.05),
                title=f"{label}: forget vs retain probe")
    axes[0].legend(fontsize=7)
    _band(axes[1], x, results, "selectivity", marker="o", ms=3)
    axes[1].axhline(0.0, color="black", lw=0.5)
    axes[1].set(xlabel=HIDDEN_STATE_AXIS, ylabel="accuracy − majority baseline",
                title="selectivity")
    return fig


def knowledge_probe_curves(results: pd.DataFrame, label: str):
    """Held-out accuracy of the knowledge probe per hidden state, one panel per fact family
    (``knowledge_probe.csv``), with chance, the ceiling and the shuffled-label control."""
    families = list(dict.fromkeys(results["family"]))
    fig, axes = plt.subplots(1, len(families), figsize=(4.5 * len(families), 4), squeeze=False)
    for ax, family in zip(axes[0], families):
        frame = results[results["family"] == family].sort_values("hidden_state")
        x = frame["hidden_state"]
        _band(ax, x, frame, "accuracy", marker="o", ms=3, label="probe (held-out entities)")
        _band(ax, x, frame, "shuffled_accuracy", color="grey", linestyle=":", label="shuffled-label control")
        ax.plot(x, frame["chance"], color="black", lw=0.8, linestyle="--", label="chance")
        ax.plot(x, frame["ceiling"], color="tab:green", lw=0.8, linestyle="-.",
                label="ceiling (value seen in training)")
        ax.set(ylabel="accuracy reading the answer", ylim=(0.0, 1.05), title=f"{label}: {family}")
    fig.supxlabel(HIDDEN_STATE_AXIS, fontsize=10)   # one axis label: per panel they overlap
    axes[0][0].legend(fontsize=7)
    return fig


def separation(metrics: pd.DataFrame, label_a: str, label_b: str):
    """Centroid cosine distance, probe AUC and variance ratio per hidden state for A and B (``separation_metrics.csv``)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, col in zip(axes, ("cosine_distance", "auc", "variance_ratio")):
        for model, label in (("a", label_a), ("b", label_b)):
            frame = metrics[metrics["model"] == model].sort_values("hidden_state")
            _band(ax, frame["hidden_state"], frame, col, color=MODEL_COLOR[model], marker="o", ms=3, label=label)
        if col == "auc" and "lexical_auc" in metrics:
            ax.axhline(metrics["lexical_auc"].iloc[0], color="tab:red", linestyle="--", lw=1,
                       label=f"words only ({metrics['lexical_auc'].iloc[0]:.2f})")
        ax.set(xlabel=HIDDEN_STATE_AXIS, ylabel=col.replace("_", " "),
               title=f"forget vs retain: {col.replace('_', ' ')}")
        ax.legend(fontsize=7)
    return fig


def covariance(metrics: pd.DataFrame, comparison: pd.DataFrame, label_a: str, label_b: str):
    """Effective rank per hidden state (A/B × forget/retain), the spectral Wasserstein distances and
    the selectivity difference."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for (model, split), frame in metrics.groupby(["model", "split"]):
        frame = frame.sort_values("hidden_state")
        _band(axes[0], frame["hidden_state"], frame, "effective_rank", color=MODEL_COLOR[model],
              linestyle=SPLIT_STYLE.get(split, ":"), marker="o", ms=3,
              label=f"{label_a if model == 'a' else label_b} / {split}")
    axes[0].set(xlabel=HIDDEN_STATE_AXIS, ylabel="effective rank", title="covariance effective rank")
    axes[0].legend(fontsize=7)
    comparison = comparison.sort_values("hidden_state")
    for split in ("forget", "retain"):
        _band(axes[1], comparison["hidden_state"], comparison, f"wasserstein_{split}", linestyle=SPLIT_STYLE[split],
              marker="o", ms=3, label=split)
    axes[1].set(xlabel=HIDDEN_STATE_AXIS, ylabel="W₁ between eigenvalue spectra",
                title=f"spectrum change {label_a} → {label_b}")
    axes[1].legend(fontsize=7)
    _band(axes[2], comparison["hidden_state"], comparison, "selectivity_diff", marker="o", ms=3)
    axes[2].axhline(0.0, color="black", lw=0.5)
    axes[2].set(xlabel=HIDDEN_STATE_AXIS, ylabel="W₁(forget)/λ̄_A − W₁(retain)/λ̄_A",
                title="selectivity (> 0: forget-targeted)")
    return fig


def row_space(results: pd.DataFrame):
    """Energy fraction of each MLP matrix's inputs on ΔW's top-k row space (forget vs retain) and
    selectivity; one random k/d_in line per input width (d for the input matrices, d_ff for the
    output projections)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    frame = results[results["activations_of"] == "a"]
    for module, part in frame.groupby("module_kind"):
        part = part.sort_values("block")
        for split in ("forget", "retain"):
            _band(axes[0], part["block"], part, f"fraction_{split}", linestyle=SPLIT_STYLE[split], marker="o",
                  ms=3, label=f"{module} / {split}")
        _band(axes[1], part["block"], part, "selectivity_ratio", marker="o", ms=3, label=module)
    for role, part in frame[frame["k"] > 0].groupby("mlp_role"):
        axes[0].axhline(part["random_baseline"].median(), color="grey", linestyle=":", label=f"random k/d ({role})")
    axes[0].set(xlabel="block", ylabel="fraction of input energy on top-k row space of ΔW",
                title="row-space projection (model A activations)")
    axes[0].legend(fontsize=7)
    axes[1].axhline(1.0, color="black", lw=0.5)
    axes[1].set(xlabel="block", ylabel="fraction(forget) / fraction(retain)", title="selectivity")
    axes[1].legend(fontsize=7)
    return fig


def lipschitz(summary: pd.DataFrame, label_a: str, label_b: str):
    """Per-split bars of each sensitivity metric for A and B with 95 % CIs (``lipschitz_summary.csv``)."""
    metrics = ("lipschitz", "grad_norm", "output_variance")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, metric in zip(axes, metrics):
        for j, (model, label) in enumerate((("a", label_a), ("b", label_b))):
            frame = summary[summary["model"] == model].set_index("split").reindex(["forget", "retain"])
            x = [i + 0.4 * j for i in range(len(frame))]
            err = [frame[metric] - frame[f"{metric}_ci_low"], frame[f"{metric}_ci_high"] - frame[metric]]
            ax.bar(x, frame[metric], width=0.4, yerr=err, color=MODEL_COLOR[model], label=label, capsize=3)
        ax.set_xticks([0.2, 1.2], ["forget", "retain"])
        ax.set(ylabel=metric.replace("_", " "), title=metric.replace("_", " "))
        ax.legend(fontsize=7)
    return fig


def cka_curves(table: pd.DataFrame, label_a: str, label_b: str):
    """Linear CKA of A's and B's hidden states per hidden state, forget vs retain, with 95 % CIs
    and the token-permutation null (``representation_similarity.csv``)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for split, frame in table.groupby("split"):
        frame = frame.sort_values("hidden_state")
        line = _band(ax, frame["hidden_state"], frame, "cka", linestyle=SPLIT_STYLE.get(split, ":"), marker="o",
                     ms=3, label=f"CKA {split}")
        ax.plot(frame["hidden_state"], frame["cka_null"], color=line.get_color(), linestyle=":", linewidth=0.8,
                label=f"permutation null {split}")
    ax.set(xlabel=HIDDEN_STATE_AXIS, ylabel="linear CKA", ylim=(-0.02, 1.02),
           title=f"{label_a} vs {label_b}: linear CKA of hidden states")
    ax.legend(fontsize=7)
    return fig
