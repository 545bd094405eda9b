"""Mechanistic signature numbers, one small reader per CSV the pipeline's steps write.

Each reader takes the path of one output file and the slug of the model the row is about, and
returns a dict of named numbers. The reader *is* the documentation of how a number is formed from
its source. A missing file raises :class:`MissingSource` (the report lists it as a missing step);
a file without a column the reader needs raises :class:`SchemaError`: the writer and this module
disagree, and silently reporting "missing" would hide that.

Where a file lives (``SOURCES``):
  comparison  <output-root>/<base>__vs__<model>/<step>/<file>   (weight and activation steps)
  model       <output-root>/<model>/<step>/<file>               (probes, evaluation, relearning)
  layerwise   <output-root>/layerwise_forgetting/<base>/<file>  (one file for every unlearned model)

The seed experiment's predictions (``PREDICTIONS``) say in which direction each signature should
go for a brittle intervention; ``brittle_if=+1`` means "larger value, more brittle".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from brittle.cli import UserError


class MissingSource(Exception):
    """The step that writes this file has not run (or wrote elsewhere)."""

    def __init__(self, path: Path):
        super().__init__(str(path))
        self.path = Path(path)


class SchemaError(UserError):
    """A step's file lacks a column a reader needs: the two disagree on the schema."""


def read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    """Read a CSV, check it has ``columns``. Raises MissingSource / SchemaError."""
    path = Path(path)
    if not path.is_file():
        raise MissingSource(path)
    frame = pd.read_csv(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(f"{path} lacks column(s) {', '.join(missing)} (has: {', '.join(frame.columns)}); "
                          "the step's writer and brittle/signatures.py disagree")
    return frame


def _one_row(frame: pd.DataFrame, path: Path, **match) -> pd.Series:
    sel = frame
    for col, value in match.items():
        sel = sel[sel[col].astype(str) == str(value)]
    if len(sel) != 1:
        raise SchemaError(f"{path}: expected one row with {match}, found {len(sel)}")
    return sel.iloc[0]


# --- weight space -------------------------------------------------------------------------------

def param_magnitude(path: Path, model: str) -> dict:
    """Step 1 ``param_stats/per_layer.csv``.

    rel_dW: ‖ΔW‖_F / ‖W‖_F over every matrix of the model, pooled (root-sum-square of
        dW_fro_layer over all rows, divided by the same for W_fro_layer), so big matrices weigh
        by their size rather than one vote each.
    layer_spread: participation ratio of the per-layer ΔW energy e_l = Σ_groups dW_fro_layer²
        (transformer layers only), divided by the number of layers: (Σe)² / (L·Σe²). 1 = the change
        is spread evenly over the layers; 1/L = all of it in one layer.
    """
    df = read_table(path, ["layer", "group", "dW_fro_layer", "W_fro_layer"])
    rel = float(np.sqrt((df["dW_fro_layer"] ** 2).sum()) / np.sqrt((df["W_fro_layer"] ** 2).sum()))
    blocks = df[(df["layer"] >= 0) & df["group"].isin(["attn", "mlp"])]
    energy = blocks.groupby("layer")["dW_fro_layer"].apply(lambda s: float((s ** 2).sum())).to_numpy()
    spread = float(energy.sum() ** 2 / (len(energy) * (energy ** 2).sum())) if energy.sum() > 0 else np.nan
    return {"rel_dW": rel, "layer_spread": spread}


def param_rank(path: Path, model: str) -> dict:
    """Step 1 ``param_stats/per_matrix.csv``, attention and MLP matrices only.

    stable_rank: median of dW_stable_rank = ‖ΔW‖_F²/σ₁(ΔW)² (1 for a rank-1 update).
    stable_rank_frac: median of dW_stable_rank / min(shape0, shape1) (comparable across sizes).
    w_cosine: median cosine between W_a and W_b; near 1 for an edit of the base, near 0 for a model
        trained separately (base -> filtered), whose ΔW is then no intervention.
    """
    df = read_table(path, ["group", "shape0", "shape1", "dW_stable_rank", "W_cosine"])
    blocks = df[df["group"].isin(["attn", "mlp"])]
    if blocks.empty:
        raise SchemaError(f"{path} has no attention or MLP rows")
    frac = blocks["dW_stable_rank"] / np.minimum(blocks["shape0"], blocks["shape1"])
    return {"stable_rank": float(blocks["dW_stable_rank"].median()), "stable_rank_frac": float(frac.median()),
            "w_cosine": float(blocks["W_cosine"].median())}


def mlp_attn_share(path: Path, model: str) -> dict:
    """Step 6 ``mlp_attn_analysis/mlp_attn_summary.csv``.

    attn_share: attention's share of the ΔW energy of attention + MLP, 1 − mlp_dW_energy_share.
    attn_share_baseline: attention's share of ‖W‖², what a change proportional to W would give.
    """
    row = read_table(path, ["mlp_dW_energy_share", "mlp_W_energy_share"]).iloc[0]
    return {"attn_share": 1.0 - float(row["mlp_dW_energy_share"]),
            "attn_share_baseline": 1.0 - float(row["mlp_W_energy_share"])}


def low_rank_energy(path: Path, model: str) -> dict:
    """Step 7 ``null_space_analysis/null_space_summary.csv``, row group == "all".

    top10_energy: median over sampled matrices of the share of ‖ΔW‖_F² in ΔW's 10 largest
        singular directions; top10_energy_random: the same for a Gaussian matrix of the same shape.
    """
    df = read_table(path, ["group", "median_dW_top10_energy", "median_dW_top10_energy_random"])
    row = _one_row(df, path, group="all")
    return {"top10_energy": float(row["median_dW_top10_energy"]),
            "top10_energy_random": float(row["median_dW_top10_energy_random"])}


def nullspace_fraction(path: Path, model: str) -> dict:
    """Step 10 ``mlp_nullspace/mlp_nullspace_summary.csv`` (pooled over MLP matrices, ‖ΔW‖²-weighted).

    nullspace_frac: input side: share of ΔW's energy in the numerical null space of W_a (directions
        W reads nothing from), null_frac of side "input"; nullspace_frac_random: 1 − random_col_frac,
        what a random update would put there. nullspace_frac_out: the same on the output side.
    """
    df = read_table(path, ["side", "null_frac", "random_col_frac"])
    row_in, row_out = _one_row(df, path, side="input"), _one_row(df, path, side="output")
    return {"nullspace_frac": float(row_in["null_frac"]),
            "nullspace_frac_random": 1.0 - float(row_in["random_col_frac"]),
            "nullspace_frac_out": float(row_out["null_frac"])}


# --- activation space ---------------------------------------------------------------------------

def activation_change(path: Path, model: str) -> dict:
    """Steps 4-5 ``activation_stats/activation_stats.csv``.

    act_change_forget / act_change_retain: mean over layers of mean_dh_L2 / model_a_norm_L2, the
        size of the activation change relative to the base model's activations, on forget and on
        retain text. act_change_selectivity: their ratio (forget / retain; > 1 = targeted).
    """
    df = read_table(path, ["layer", "split", "model_a_norm_L2", "mean_dh_L2"])
    rel = df["mean_dh_L2"] / df["model_a_norm_L2"]
    by_split = rel.groupby(df["split"]).mean()
    for split in ("forget", "retain"):
        if split not in by_split:
            raise SchemaError(f"{path} has no rows with split == {split!r}")
    return {"act_change_forget": float(by_split["forget"]), "act_change_retain": float(by_split["retain"]),
            "act_change_selectivity": float(by_split["forget"] / by_split["retain"])}


def row_space_selectivity(path: Path, model: str) -> dict:
    """Step 11 ``row_space_projection/row_space_projection.csv``, rows activations_of == "a" (the
    base model's MLP-input activations: what the update was applied to).

    rowspace_selectivity: pooled forget / retain share of MLP-input activation energy on the top-k
        right singular vectors of ΔW: Σ w·fraction_forget / Σ w·fraction_retain over MLP input
        matrices with w = dW_fro² (bigger updates weigh more). > 1: the update reads directions that
        forget text uses more than retain text; 1: untargeted.
    rowspace_frac_forget: the pooled forget fraction itself; rowspace_frac_random: mean k/d, what a
        random k-dimensional subspace captures.
    """
    df = read_table(path, ["activations_of", "dW_fro", "fraction_forget", "fraction_retain", "random_baseline"])
    rows = df[df["activations_of"].astype(str) == "a"]
    if rows.empty:
        raise SchemaError(f"{path} has no rows with activations_of == 'a'")
    w = rows["dW_fro"].to_numpy(dtype=float) ** 2
    forget = float((w * rows["fraction_forget"]).sum() / w.sum()) if w.sum() > 0 else np.nan
    retain = float((w * rows["fraction_retain"]).sum() / w.sum()) if w.sum() > 0 else np.nan
    return {"rowspace_selectivity": forget / retain if retain else np.nan, "rowspace_frac_forget": forget,
            "rowspace_frac_random": float(rows["random_baseline"].mean())}


def lipschitz_change(path: Path, model: str) -> dict:
    """Step 12 ``lipschitzness/lipschitz_change.csv``, rows metric == "lipschitz".

    lipschitz_change_forget / _retain: ratio_b_over_a, model B's mean local Lipschitz estimate
        (output change per unit input change under ε-ball perturbations of the input embeddings) over
        model A's, on forget and on retain text. > 1 = rougher after the intervention.
    """
    df = read_table(path, ["split", "metric", "ratio_b_over_a"])
    df = df[df["metric"] == "lipschitz"]
    return {"lipschitz_change_forget": float(_one_row(df, path, split="forget")["ratio_b_over_a"]),
            "lipschitz_change_retain": float(_one_row(df, path, split="retain")["ratio_b_over_a"])}


def probe_auc(path: Path, model: str) -> dict:
    """Step 13 ``linear_probes/probe_results.csv`` (per model).

    probe_auc_max: the highest held-out AUC of a forget-vs-retain logistic-regression probe over
        layers; probe_best_layer: where it is reached; probe_auc_mean: the mean over layers.
    """
    df = read_table(path, ["layer", "auc"])
    best = df.loc[df["auc"].idxmax()]
    return {"probe_auc_max": float(best["auc"]), "probe_best_layer": int(best["layer"]),
            "probe_auc_mean": float(df["auc"].mean())}


def layerwise_pattern(path: Path, model: str) -> dict:
    """Layer-wise forgetting ``layerwise_forgetting/<base>/regions.csv``.

    layerwise_pattern: true_unlearning / obfuscation / no_effect / mixed for this unlearned model;
    early_ratio, late_ratio: forgetting ratio d_ft/(d_ref + d_ft) of the early and late thirds
    (> 0.5: closer to the model that never learned the facts). Models the analysis did not include
    (the filtered model is its reference) count as missing.
    """
    df = read_table(path, ["unlearned_model", "region", "forgetting_ratio", "model_pattern"])
    rows = df[df["unlearned_model"].astype(str) == model]
    if rows.empty:
        raise MissingSource(path)
    ratio = rows.set_index("region")["forgetting_ratio"]
    return {"layerwise_pattern": str(rows["model_pattern"].iloc[0]),
            "early_ratio": float(ratio.get("early", np.nan)), "late_ratio": float(ratio.get("late", np.nan))}


# --- knowledge and brittleness ------------------------------------------------------------------

def evaluation(path: Path, model: str) -> dict:
    """evaluate.py ``evaluation/accuracy.csv`` and the ``summary.json`` beside it, the model as it
    is (no attack), on the evaluation split.

    eval_hazard_acc / eval_benign_acc: cloze accuracy on hazard_eval / benign_eval (chance 0.25);
    eval_hazard_mcqa: MCQA accuracy on hazard_eval where it was computed; eval_retain_ppl: retain
    perplexity (summary.json ``retain_perplexity``).
    """
    import json

    df = read_table(path, ["question_set", "format", "accuracy"])
    out = {}
    for key, qset, fmt in (("eval_hazard_acc", "hazard_eval", "cloze"), ("eval_benign_acc", "benign_eval", "cloze"),
                           ("eval_hazard_mcqa", "hazard_eval", "mcqa")):
        sel = df[(df["question_set"] == qset) & (df["format"] == fmt)]
        out[key] = float(sel["accuracy"].iloc[0]) if len(sel) else np.nan
    summary = Path(path).with_name("summary.json")
    if not summary.is_file():
        raise MissingSource(summary)
    data = json.loads(summary.read_text())
    if "retain_perplexity" not in data:
        raise SchemaError(f"{summary} lacks key retain_perplexity")
    out["eval_retain_ppl"] = float(data["retain_perplexity"]) if data["retain_perplexity"] is not None else np.nan
    return out


def relearning(path: Path, model: str, prefix: str = "hazard") -> dict:
    """``relearning/<attack>/summary.csv`` (relearn.py), its seed == "mean" row (the seed-mean
    curve): acc_start, acc_final, steps_to_half_gap (NaN = not reached), auc_recovery_log,
    recovered_final, half_gap_threshold; keys prefixed with the attack name."""
    cols = ["seed", "acc_start", "acc_final", "steps_to_half_gap", "auc_recovery_log", "recovered_final",
            "half_gap_threshold", "steps_budget"]
    row = _one_row(read_table(path, cols), path, seed="mean")
    return {f"{prefix}_{c}": (float(row[c]) if pd.notna(row[c]) else np.nan) for c in cols[1:]}


@dataclass(frozen=True)
class Source:
    """One file the report reads: which step writes it, where, and its reader."""

    step: str
    scope: str       # "comparison", "model" or "layerwise"
    file: str        # path inside the step folder
    read: Callable[[Path, str], dict]


SOURCES = [
    Source("param_stats", "comparison", "param_stats/per_layer.csv", param_magnitude),
    Source("param_stats", "comparison", "param_stats/per_matrix.csv", param_rank),
    Source("mlp_attn_analysis", "comparison", "mlp_attn_analysis/mlp_attn_summary.csv", mlp_attn_share),
    Source("null_space_analysis", "comparison", "null_space_analysis/null_space_summary.csv", low_rank_energy),
    Source("mlp_nullspace", "comparison", "mlp_nullspace/mlp_nullspace_summary.csv", nullspace_fraction),
    Source("activation_stats", "comparison", "activation_stats/activation_stats.csv", activation_change),
    Source("row_space_projection", "comparison", "row_space_projection/row_space_projection.csv",
           row_space_selectivity),
    Source("lipschitzness", "comparison", "lipschitzness/lipschitz_change.csv", lipschitz_change),
    Source("linear_probes", "model", "linear_probes/probe_results.csv", probe_auc),
    Source("layerwise_forgetting", "layerwise", "regions.csv", layerwise_pattern),
    Source("evaluation", "model", "evaluation/accuracy.csv", evaluation),
]


@dataclass(frozen=True)
class Prediction:
    """A seed prediction: signature ``key`` goes with brittleness in direction ``brittle_if``."""

    name: str
    key: str
    brittle_if: int   # +1: larger -> more brittle; -1: smaller -> more brittle
    claim: str


PREDICTIONS = [
    Prediction("small", "rel_dW", -1, "smaller updates (relative ‖ΔW‖) are more brittle"),
    Prediction("attention-localised", "attn_share", +1,
               "updates concentrated in attention rather than the MLPs are more brittle"),
    Prediction("low-rank", "stable_rank", -1, "lower-rank updates (stable rank of ΔW) are more brittle"),
    Prediction("null-space", "nullspace_frac", +1,
               "updates lying in W's null space (off-manifold) are more brittle"),
    Prediction("minimal activation change", "act_change_forget", -1,
               "smaller activation change on forget text goes with brittleness"),
    Prediction("untargeted", "rowspace_selectivity", -1,
               "less targeted updates (row-space selectivity forget/retain) are more brittle"),
    Prediction("rougher", "lipschitz_change_forget", +1,
               "models made rougher on forget text (Lipschitz ratio > 1) are more brittle"),
]
