"""Every number of the brittleness report: one small reader per file a step writes.

A reader takes the path of one output file and the slug of the model the row is about, and
returns a dict of named numbers; the reader *is* the documentation of how each number is formed.
Readers register with :func:`reads`, which names the step (``brittle.steps``), the file, the models
it applies to and each number's label; where the file lives comes from the step registry. A missing
file raises :class:`MissingSource` (the report lists it as a missing step); a file without a column
a reader needs raises :class:`SchemaError` (the writer and this module disagree, and silently
reporting "missing" would hide that).

Adding a report number: a reader here (or a key in one), and, if it needs a column the step does
not write yet, that column in the step's script and in ``brittle/steps.py``.

The seed experiment's predictions (:data:`PREDICTIONS`) say in which direction each signature
should go for a brittle intervention; ``brittle_if=+1`` means "larger value, more brittle".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from brittle.errors import UserError

EDITED = ("filtered", "unlearned", "control")       # the models compared against the base
EVERY = ("base", "filtered", "unlearned", "control")


class MissingSource(Exception):
    """The step that writes this file has not run (or wrote elsewhere)."""

    def __init__(self, path: Path):
        super().__init__(str(path))
        self.path = Path(path)


class SchemaError(UserError):
    """A step's file lacks a column a reader needs: the two disagree on the schema."""


@dataclass(frozen=True)
class Number:
    """One report number: its key (a column of report_table.csv) and its table header.
    ``signature``: shown in the signature table and plotted against recovery speed; ``baseline``:
    shown in the signature table in brackets, as the chance level of the number before it."""

    key: str
    label: str
    signature: bool = False
    baseline: bool = False


@dataclass(frozen=True)
class Reader:
    step: str                  # the step's name in brittle.steps
    file: str                  # path inside the step's folder
    roles: tuple[str, ...]     # the models it applies to
    numbers: tuple[Number, ...]
    read: Callable[[Path, str], dict]
    optional: tuple[str, ...] = ()   # roles for which a missing file is not a missing step


READERS: list[Reader] = []


def reads(step: str, file: str, *numbers: Number, roles: tuple[str, ...] = EDITED, optional: tuple[str, ...] = ()):
    """Register the decorated function as the reader of ``<step folder>/<file>``."""
    def register(fn):
        READERS.append(Reader(step, file, roles, numbers, fn, optional))
        return fn
    return register


def read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    """Read a CSV, check it has ``columns``. Raises MissingSource / SchemaError."""
    path = Path(path)
    if not path.is_file():
        raise MissingSource(path)
    frame = pd.read_csv(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(f"{path} lacks column(s) {', '.join(missing)} (has: {', '.join(frame.columns)}); "
                          "the step's writer and brittle/report_numbers.py disagree")
    return frame


def _one_row(frame: pd.DataFrame, path: Path, **match) -> pd.Series:
    sel = frame
    for col, value in match.items():
        sel = sel[sel[col].astype(str) == str(value)]
    if len(sel) != 1:
        raise SchemaError(f"{path}: expected one row with {match}, found {len(sel)}")
    return sel.iloc[0]


# --- weight space -------------------------------------------------------------------------------

@reads("param_stats", "per_layer.csv", Number("rel_dW", "rel. ‖ΔW‖", signature=True),
       Number("layer_spread", "block spread", signature=True))
def param_magnitude(path: Path, model: str) -> dict:
    """rel_dW: ‖ΔW‖_F / ‖W‖_F over every matrix of the model, pooled (root-sum-square of
    dW_fro_layer over all rows, divided by the same for W_fro_layer), so big matrices weigh by
    their size rather than one vote each.
    layer_spread: participation ratio of the per-block ΔW energy e_b = Σ_groups dW_fro_layer²
    (attention and MLP of transformer blocks only), divided by the number of blocks:
    (Σe)² / (B·Σe²). 1 = the change is spread evenly over the blocks; 1/B = all of it in one block.
    """
    df = read_table(path, ["block", "group", "dW_fro_layer", "W_fro_layer"])
    rel = float(np.sqrt((df["dW_fro_layer"] ** 2).sum()) / np.sqrt((df["W_fro_layer"] ** 2).sum()))
    blocks = df[df["block"].notna() & df["group"].isin(["attn", "mlp"])]
    energy = blocks.groupby("block")["dW_fro_layer"].apply(lambda s: float((s ** 2).sum())).to_numpy()
    spread = float(energy.sum() ** 2 / (len(energy) * (energy ** 2).sum())) if energy.sum() > 0 else np.nan
    return {"rel_dW": rel, "layer_spread": spread}


@reads("param_stats", "per_matrix.csv", Number("w_cosine", "cos(W_a, W_b)"),
       Number("stable_rank", "stable rank ΔW", signature=True), Number("stable_rank_frac", "stable rank / size"))
def param_rank(path: Path, model: str) -> dict:
    """Attention and MLP matrices only.
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
    return {"w_cosine": float(blocks["W_cosine"].median()), "stable_rank": float(blocks["dW_stable_rank"].median()),
            "stable_rank_frac": float(frac.median())}


@reads("mlp_attn_analysis", "mlp_attn_summary.csv", Number("attn_share", "attn share of ΔW²", signature=True),
       Number("attn_share_baseline", "attn share of W²", baseline=True))
def mlp_attn_share(path: Path, model: str) -> dict:
    """attn_share: attention's share of the ΔW energy of attention + MLP, 1 − mlp_dW_energy_share.
    attn_share_baseline: attention's share of ‖W‖², what a change proportional to W would give.
    """
    row = read_table(path, ["mlp_dW_energy_share", "mlp_W_energy_share"]).iloc[0]
    return {"attn_share": 1.0 - float(row["mlp_dW_energy_share"]),
            "attn_share_baseline": 1.0 - float(row["mlp_W_energy_share"])}


@reads("null_space_analysis", "null_space_summary.csv", Number("top10_energy", "top-10 energy", signature=True),
       Number("top10_energy_random", "Gaussian top-10 energy", baseline=True))
def low_rank_energy(path: Path, model: str) -> dict:
    """Row group == "all". top10_energy: median over sampled matrices of the share of ‖ΔW‖_F² in
    ΔW's 10 largest singular directions; top10_energy_random: the same for a Gaussian matrix of
    the same shape.
    """
    df = read_table(path, ["group", "median_dW_top10_energy", "median_dW_top10_energy_random"])
    row = _one_row(df, path, group="all")
    return {"top10_energy": float(row["median_dW_top10_energy"]),
            "top10_energy_random": float(row["median_dW_top10_energy_random"])}


@reads("mlp_nullspace", "mlp_nullspace_summary.csv", Number("nullspace_frac", "null-space frac", signature=True),
       Number("nullspace_frac_random", "random", baseline=True), Number("nullspace_frac_in", "null-space frac (in)"),
       Number("nullspace_frac_out", "null-space frac (out)"))
def nullspace_fraction(path: Path, model: str) -> dict:
    """Pooled over MLP matrices, ‖ΔW‖²-weighted. nullspace_frac: share of ΔW's energy in the
    numerical null space of W_a, each matrix on its informative (longer) side, null_frac of side
    "informative" (on the shorter side nearly every update is "in the column space" by
    construction); nullspace_frac_random: 1 − its random_col_frac, what a random update would put
    there. nullspace_frac_in / nullspace_frac_out: every matrix on the input / output side.
    """
    df = read_table(path, ["side", "null_frac", "random_col_frac"])
    head = _one_row(df, path, side="informative")
    row_in, row_out = _one_row(df, path, side="input"), _one_row(df, path, side="output")
    return {"nullspace_frac": float(head["null_frac"]),
            "nullspace_frac_random": 1.0 - float(head["random_col_frac"]),
            "nullspace_frac_in": float(row_in["null_frac"]), "nullspace_frac_out": float(row_out["null_frac"])}


# --- activation space ---------------------------------------------------------------------------

@reads("activation_stats", "activation_stats.csv", Number("act_change_forget", "Δact forget", signature=True),
       Number("act_change_retain", "Δact retain"), Number("act_change_selectivity", "Δact forget/retain", signature=True))
def activation_change(path: Path, model: str) -> dict:
    """act_change_forget / act_change_retain: mean over hidden states of mean_dh_L2 /
    model_a_norm_L2, the size of the activation change relative to the base model's activations,
    on forget and on retain text. act_change_selectivity: their ratio (forget / retain; > 1 = targeted).
    """
    df = read_table(path, ["hidden_state", "split", "model_a_norm_L2", "mean_dh_L2"])
    rel = df["mean_dh_L2"] / df["model_a_norm_L2"]
    by_split = rel.groupby(df["split"]).mean()
    for split in ("forget", "retain"):
        if split not in by_split:
            raise SchemaError(f"{path} has no rows with split == {split!r}")
    return {"act_change_forget": float(by_split["forget"]), "act_change_retain": float(by_split["retain"]),
            "act_change_selectivity": float(by_split["forget"] / by_split["retain"])}


@reads("row_space_projection", "row_space_projection.csv",
       Number("rowspace_selectivity", "row-space selectivity", signature=True),
       Number("rowspace_frac_forget", "row-space frac forget"), Number("rowspace_frac_random", "random k/d"))
def row_space_selectivity(path: Path, model: str) -> dict:
    """Rows activations_of == "a" (the base model's activations: what the update was applied to),
    both MLP input matrices and MLP output projections (mlp_role), so an update confined to the
    output projections (RMU) has a number too. rowspace_selectivity: pooled forget / retain share of
    each matrix's input energy on the top-k right singular vectors of its ΔW: Σ w·fraction_forget /
    Σ w·fraction_retain over MLP matrices with w = dW_fro² (bigger updates weigh more). > 1: the
    update reads directions that forget text uses more than retain text; 1: untargeted.
    rowspace_frac_forget: the pooled forget fraction itself; rowspace_frac_random: Σ w·k/d_in / Σ w,
    what random k-dimensional subspaces give the pooled fraction (k/d_in differs between the
    d-wide and the d_ff-wide inputs).
    """
    df = read_table(path, ["activations_of", "dW_fro", "fraction_forget", "fraction_retain", "random_baseline"])
    rows = df[df["activations_of"].astype(str) == "a"]
    if rows.empty:
        raise SchemaError(f"{path} has no rows with activations_of == 'a'")
    w = rows["dW_fro"].to_numpy(dtype=float) ** 2
    if w.sum() <= 0:
        return {"rowspace_selectivity": np.nan, "rowspace_frac_forget": np.nan, "rowspace_frac_random": np.nan}
    forget = float((w * rows["fraction_forget"]).sum() / w.sum())
    retain = float((w * rows["fraction_retain"]).sum() / w.sum())
    return {"rowspace_selectivity": forget / retain if retain else np.nan, "rowspace_frac_forget": forget,
            "rowspace_frac_random": float((w * rows["random_baseline"]).sum() / w.sum())}


@reads("lipschitzness", "lipschitz_change.csv",
       Number("lipschitz_change_forget", "Lipschitz B/A forget", signature=True),
       Number("lipschitz_change_retain", "Lipschitz B/A retain"))
def lipschitz_change(path: Path, model: str) -> dict:
    """Rows metric == "lipschitz". lipschitz_change_forget / _retain: ratio_b_over_a, model B's
    mean local Lipschitz estimate (output change per unit input change under ε-ball perturbations
    of the input embeddings) over model A's, on forget and on retain text. > 1 = rougher after the
    intervention.
    """
    df = read_table(path, ["split", "metric", "ratio_b_over_a"])
    df = df[df["metric"] == "lipschitz"]
    return {"lipschitz_change_forget": float(_one_row(df, path, split="forget")["ratio_b_over_a"]),
            "lipschitz_change_retain": float(_one_row(df, path, split="retain")["ratio_b_over_a"])}


@reads("mode_connectivity", "connectivity_summary.csv",
       Number("lmc_barrier_forget", "LMC barrier forget", signature=True),
       Number("lmc_barrier_retain", "LMC barrier retain"), Number("lmc_l2_distance", "‖θ_b − θ_a‖"))
def mode_connectivity(path: Path, model: str) -> dict:
    """lmc_barrier_forget / _retain: the loss barrier (nats per token) on the straight weight-space
    path from the base to this model, max over α of L(α) − ((1−α)L(0) + αL(1)), on forget and on
    retain text; 0 = no ridge: the model stays in the base's basin (Siddiqui et al. 2025 found
    that easier to relearn from). The retain barrier of the same path is its control.
    lmc_l2_distance: ‖θ_b − θ_a‖₂ over all parameters.
    """
    df = read_table(path, ["split", "barrier", "l2_distance"])
    forget, retain = _one_row(df, path, split="forget"), _one_row(df, path, split="retain")
    return {"lmc_barrier_forget": float(forget["barrier"]), "lmc_barrier_retain": float(retain["barrier"]),
            "lmc_l2_distance": float(forget["l2_distance"])}


@reads("representation_similarity", "representation_similarity_summary.csv",
       Number("cka_min_forget", "min CKA forget", signature=True),
       Number("cka_null_forget", "CKA permutation null", baseline=True), Number("cka_min_retain", "min CKA retain"))
def representation_similarity(path: Path, model: str) -> dict:
    """cka_min_forget / _retain: the lowest linear CKA over hidden states between the base's and
    this model's hidden states on the same forget (retain) tokens; 1 = the same representation up
    to rotation and scale (the knowledge's geometry kept), the retain value is its control.
    cka_null_forget: max_cka_null of the forget row, the largest CKA a random token pairing gives.
    """
    df = read_table(path, ["split", "min_cka", "max_cka_null"])
    forget, retain = _one_row(df, path, split="forget"), _one_row(df, path, split="retain")
    return {"cka_min_forget": float(forget["min_cka"]), "cka_null_forget": float(forget["max_cka_null"]),
            "cka_min_retain": float(retain["min_cka"])}


@reads("linear_probes", "probe_results.csv", Number("probe_auc_max", "probe AUC (max)", signature=True),
       Number("probe_lexical_auc", "words-only AUC", baseline=True),
       Number("probe_best_hidden_state", "probe best hidden state"), Number("probe_auc_mean", "probe AUC (mean)"),
       roles=EVERY)
def probe_auc(path: Path, model: str) -> dict:
    """probe_auc_max: the highest held-out AUC of a forget-vs-retain logistic-regression probe over
    hidden states; probe_best_hidden_state: where it is reached; probe_auc_mean: the mean over them;
    probe_lexical_auc: the same protocol on the texts' word counts (NaN in outputs older than that
    column), what the vocabulary alone separates.
    """
    df = read_table(path, ["hidden_state", "auc"])
    best = df.loc[df["auc"].idxmax()]
    lexical = float(df["lexical_auc"].iloc[0]) if "lexical_auc" in df else np.nan
    return {"probe_auc_max": float(best["auc"]), "probe_best_hidden_state": int(best["hidden_state"]),
            "probe_auc_mean": float(df["auc"].mean()), "probe_lexical_auc": lexical}


@reads("knowledge_probe", "knowledge_probe_summary.csv",
       Number("knowledge_probe_hazard", "knowledge probe (hazard)", signature=True),
       Number("knowledge_probe_hazard_chance", "chance", baseline=True),
       Number("knowledge_probe_hazard_control", "knowledge probe (hazard), shuffled labels"), roles=EVERY)
def knowledge_probe_hazard(path: Path, model: str) -> dict:
    """Row family == "hazard". knowledge_probe_hazard: the best held-out accuracy over hidden states
    of a linear probe reading a hazard fact's value at the answer position, tested on entities and
    templates it was not trained on; knowledge_probe_hazard_chance: 1/number of values of the
    relation (mean over test prompts); knowledge_probe_hazard_control: the highest accuracy of the
    same probe trained on shuffled values. High here with a chance-level hazard accuracy (evaluate.py)
    is the obfuscation signature: the knowledge is present, only the output hides it.
    """
    row = _one_row(read_table(path, ["family", "accuracy", "chance", "max_shuffled_accuracy"]), path, family="hazard")
    return {"knowledge_probe_hazard": float(row["accuracy"]), "knowledge_probe_hazard_chance": float(row["chance"]),
            "knowledge_probe_hazard_control": float(row["max_shuffled_accuracy"])}


@reads("layerwise_forgetting", "regions.csv", Number("layerwise_pattern", "layer-wise pattern"),
       Number("early_ratio", "early ratio"), Number("late_ratio", "late ratio", signature=True), roles=("unlearned", "control"))
def layerwise_pattern(path: Path, model: str) -> dict:
    """layerwise_pattern: true_unlearning / obfuscation / no_effect / mixed for this unlearned
    model; early_ratio, late_ratio: forgetting ratio d_ft/(d_ref + d_ft) of the early and late
    thirds of the block outputs (> 0.5: closer to the model that never learned the facts).
    """
    df = read_table(path, ["unlearned_model", "region", "forgetting_ratio", "model_pattern"])
    rows = df[df["unlearned_model"].astype(str) == model]
    if rows.empty:
        raise MissingSource(path)
    ratio = rows.set_index("region")["forgetting_ratio"]
    return {"layerwise_pattern": str(rows["model_pattern"].iloc[0]),
            "early_ratio": float(ratio.get("early", np.nan)), "late_ratio": float(ratio.get("late", np.nan))}


# --- knowledge and brittleness ------------------------------------------------------------------

@reads("evaluation", "accuracy.csv", Number("eval_hazard_acc", "hazard acc"), Number("eval_near_acc", "near acc"),
       Number("eval_far_acc", "far acc"), Number("eval_hazard_mcqa", "hazard MCQA"),
       Number("eval_retain_ppl", "retain ppl"), roles=EVERY)
def evaluation(path: Path, model: str) -> dict:
    """evaluate.py's accuracy.csv and the summary.json beside it: the model as it is (no attack),
    on the evaluation split. eval_hazard_acc / eval_near_acc / eval_far_acc: cloze accuracy on
    hazard_eval / near_eval / far_eval (chance 0.25; NaN where the data has no such set); eval_hazard_mcqa: MCQA accuracy on hazard_eval where it was
    computed; eval_retain_ppl: retain perplexity (summary.json ``retain_perplexity``).
    """
    import json

    df = read_table(path, ["question_set", "format", "accuracy"])
    out = {}
    for key, qset, fmt in (("eval_hazard_acc", "hazard_eval", "cloze"), ("eval_near_acc", "near_eval", "cloze"),
                           ("eval_far_acc", "far_eval", "cloze"), ("eval_hazard_mcqa", "hazard_eval", "mcqa")):
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


RELEARNING_COLUMNS = ("acc_start", "acc_final", "steps_to_half_gap", "auc_recovery_log", "recovered_final",
                      "half_gap_threshold", "steps_budget")
# The three recovery measures, each with a Student-t interval over the attack seeds.
RECOVERY_MEASURES = ("recovered_final", "auc_recovery_log", "pre_unlearning_frac")


def relearning(path: Path, model: str, prefix: str = "hazard") -> dict:
    """relearn.py's ``summary.csv``, its seed == "mean" row (the seed-mean curve): acc_start,
    acc_final, steps_to_half_gap (NaN = not reached), auc_recovery_log, recovered_final,
    half_gap_threshold, steps_budget; pre_unlearning_frac = acc_final / base_acc, the share of the
    base (pre-unlearning) model's accuracy back after the attack (Deeb & Roger 2024). For
    recovered_final, auc_recovery_log and pre_unlearning_frac also ``_low``/``_high``: the 95 %
    Student-t interval of the mean over the per-seed rows (NaN with one seed), and n_seeds. Keys
    prefixed with the attack name."""
    from brittle.recovery import mean_interval, pre_unlearning_fraction

    frame = read_table(path, ["seed", "base_acc", *RELEARNING_COLUMNS])
    row = _one_row(frame, path, seed="mean")
    out = {f"{prefix}_{c}": (float(row[c]) if pd.notna(row[c]) else np.nan) for c in RELEARNING_COLUMNS}
    seeds = frame[frame["seed"].astype(str) != "mean"]
    per_seed = {"recovered_final": seeds["recovered_final"], "auc_recovery_log": seeds["auc_recovery_log"]}
    base = float(row["base_acc"]) if pd.notna(row["base_acc"]) else np.nan
    if base > 0:
        out[f"{prefix}_pre_unlearning_frac"] = pre_unlearning_fraction(float(row["acc_final"]), base)
        per_seed["pre_unlearning_frac"] = pd.Series(pre_unlearning_fraction(seeds["acc_final"].to_numpy(float), base))
    else:
        out[f"{prefix}_pre_unlearning_frac"] = np.nan
        per_seed["pre_unlearning_frac"] = pd.Series([np.nan])
    for measure in RECOVERY_MEASURES:
        _, low, high = mean_interval(pd.to_numeric(per_seed[measure], errors="coerce").to_numpy(float))
        out.update({f"{prefix}_{measure}_low": low, f"{prefix}_{measure}_high": high})
    out[f"{prefix}_n_seeds"] = float(len(seeds))
    return out


def _relearning_reader(attack: str):
    def read(path: Path, model: str) -> dict:
        return relearning(path, model, attack)
    read.__doc__ = relearning.__doc__
    return read


def _relearning_numbers(attack: str) -> list[Number]:
    label = f"{attack} attack:"
    return [*[Number(f"{attack}_{c}", f"{label} {c.replace('_', ' ')}") for c in RELEARNING_COLUMNS],
            Number(f"{attack}_pre_unlearning_frac", f"{label} acc after / base acc"),
            *[Number(f"{attack}_{m}_{end}", f"{label} {m.replace('_', ' ')} ({end}, seeds)")
              for m in RECOVERY_MEASURES for end in ("low", "high")],
            Number(f"{attack}_n_seeds", f"{label} seeds")]


for _attack in ("hazard", "benign"):
    # Attacking the base is optional: its missing relearning folder is not a missing step.
    reads("relearning", f"{_attack}/summary.csv", *_relearning_numbers(_attack),
          roles=EVERY, optional=("base",))(_relearning_reader(_attack))


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


def numbers() -> dict[str, Number]:
    """Every registered number by key."""
    return {n.key: n for r in READERS for n in r.numbers}
