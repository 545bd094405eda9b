"""The step registry: for every step, its script, its output folder, its files and their columns,
where its numbers are computed and where they are tested.

Everything that names a step takes the name from here: the scripts (their default output folder),
``pipeline.sh`` (which scripts run for a comparison or a model, through ``python -m brittle.steps``),
``report.py`` (where each file it reads lives), and ``docs/columns.md`` (generated from this file,
and held against it by a test). Adding a step means adding one :class:`Step` here and writing its
script; adding a report number means one reader in ``brittle/report_numbers.py``.

Find anything in a few seconds::

    uv run python -m brittle.steps                  # every step: number, script, folder
    uv run python -m brittle.steps show lipschitzness   # files, columns, code, test, report numbers

Layer numbering, the same in every file (see docs/columns.md):

* ``block``: the transformer block a weight matrix belongs to, 0-based; empty for weights outside
  the blocks (embeddings, final norm, output head).
* ``hidden_state``: the hidden-state index as transformers numbers ``output_hidden_states``:
  0 = the embeddings (input of block 0), i = the output of block i−1, and the last index (the
  number of blocks) is the last block's output *after the model's final norm*.

This module imports nothing heavy: the pipeline queries it between steps.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from brittle.errors import UserError
from brittle.io import model_slug, require_step

# Where a step's folder lives (``folder``): per comparison of two models, per model, or at the
# root of the results; the model-making steps write where their --outdir says.
COMPARISON, MODEL, ROOT, MADE = "comparison", "model", "root", "made"


@dataclass(frozen=True)
class Column:
    """One CSV column. ``name`` may hold ``<j>`` for a numbered family (``loglik_<j>``)."""

    name: str
    meaning: str
    optional: bool = False   # written only with some flags

    def matches(self, column: str) -> bool:
        if "<" not in self.name:
            return column == self.name
        parts = re.split(r"(<[a-z_]+>)", self.name)
        pattern = "".join(r"\d+" if p == "<j>" else r"[A-Za-z0-9_]+" if p.startswith("<") else re.escape(p)
                          for p in parts)
        return re.fullmatch(pattern, column) is not None


@dataclass(frozen=True)
class File:
    """One file a step writes; ``columns`` for CSVs (None: not a table, or free-form columns)."""

    name: str
    meaning: str
    columns: tuple[Column, ...] | None = None


@dataclass(frozen=True)
class Step:
    name: str            # the output folder's name (the seed's names where it gives them)
    script: str          # root script that writes it
    scope: str           # COMPARISON, MODEL, ROOT or MADE
    question: str        # what the step answers, one line
    files: tuple[File, ...]
    code: str            # where the numbers are computed
    test: str            # where they are checked against an oracle
    number: str = ""     # the seed experiment's step number
    device: bool = False     # runs a model (takes --device)
    reads: tuple[str, ...] = ()   # steps whose outputs it reads

    def file(self, name: str) -> File:
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(f"step {self.name} writes no file {name}")


def ci(name: str, meaning: str) -> tuple[Column, ...]:
    """A statistic and its 95 % bootstrap interval: ``name``, ``name_ci_low``, ``name_ci_high``."""
    return (Column(name, meaning), Column(f"{name}_ci_low", f"lower end of the 95 % interval of {name}"),
            Column(f"{name}_ci_high", f"upper end of the 95 % interval of {name}"))


BLOCK = Column("block", "transformer block the matrix belongs to (0-based); empty outside the blocks "
                        "(embeddings, final norm, output head)")
LEXICAL_AUC = Column("lexical_auc", "the same classifier and folds on word unigram+bigram counts, no model: "
                                    "what the vocabulary alone separates (0.5: nothing)")
HIDDEN_STATE = Column("hidden_state", "hidden-state index as in transformers: 0 = embeddings, i = output of "
                                      "block i-1, last = last block's output after the final norm")
GROUP = Column("group", "attn (attention), mlp (feed-forward) or other (embeddings, norms, head)")
NAME = Column("name", "parameter name, e.g. gpt_neox.layers.10.mlp.dense_h_to_4h.weight")
SHAPE = (Column("shape0", "rows of the matrix (output features)"),
         Column("shape1", "columns of the matrix (input features)"))
SPLIT = Column("split", "forget or retain texts")
MODEL_AB = Column("model", "a (the reference model, the base) or b (the modified model)")
PNG = "figure"
_NORMS = (("model_a_norm_L1", "mean ‖h‖₁ per token, model A"), ("model_a_norm_L2", "mean ‖h‖₂ per token, model A"),
          ("model_b_norm_L1", "mean ‖h‖₁ per token, model B"), ("model_b_norm_L2", "mean ‖h‖₂ per token, model B"),
          ("mean_dh_L1", "mean ‖h_b − h_a‖₁ per token (both models on the same tokens)"),
          ("mean_dh_L2", "mean ‖h_b − h_a‖₂ per token"))
_NORM_COLUMNS = tuple(Column(name, meaning) for name, meaning in _NORMS)


STEPS: tuple[Step, ...] = (
    Step("param_stats", "collect_param_stats.py", COMPARISON, "how large is ΔW, where is it, how many directions?",
         number="1", code="brittle/param_stats.py, brittle/param_stats_run.py, brittle/metrics/linalg.py, brittle/metrics/rowblocks.py",
         test="tests/test_param_stats.py", files=(
             File("per_matrix.csv", "one row per 2-D weight matrix", (
                 NAME, BLOCK, GROUP, *SHAPE,
                 Column("dW_fro", "‖ΔW‖_F, Frobenius norm of W_b − W_a"),
                 Column("W_fro", "‖W‖_F of the base weight W = W_a"),
                 Column("dW_fro_rel", "‖ΔW‖_F / ‖W‖_F"),
                 Column("dW_spectral", "σ₁(ΔW), largest singular value (ARPACK, relative tolerance 1e-4 on σ₁²)"),
                 Column("W_spectral", "σ₁(W)"),
                 Column("dW_spectral_rel", "σ₁(ΔW) / σ₁(W)"),
                 Column("dW_stable_rank", "‖ΔW‖_F² / σ₁(ΔW)²: 1 for a rank-1 update, up to min(shape0, shape1)"),
                 Column("W_stable_rank", "‖W‖_F² / σ₁(W)²"),
                 Column("dW_empirical_rank", "fewest singular directions holding 99 % of ‖ΔW‖_F²", optional=True),
                 Column("W_empirical_rank", "the same for W", optional=True),
                 Column("W_cosine", "cosine of W_a and W_b: near 1 when B edits A, near 0 for weights trained "
                                    "separately (base → filtered), whose ΔW is then no edit"),
                 Column("dW_zero_frac", "share of ΔW entries exactly 0 (16-bit storage rounds small updates away)"))),
             File("per_layer.csv", "one row per (block, group): pooled over the group's matrices", (
                 BLOCK, GROUP,
                 Column("dW_fro_layer", "√(Σ ‖ΔW_i‖_F²) over the group's matrices"),
                 Column("W_fro_layer", "√(Σ ‖W_i‖_F²)"),
                 Column("dW_fro_layer_rel", "dW_fro_layer / W_fro_layer"),
                 Column("max_dW_spectral", "largest σ₁(ΔW) in the group"),
                 Column("max_W_spectral", "largest σ₁(W) in the group"),
                 Column("max_dW_spectral_rel", "max_dW_spectral / max_W_spectral"),
                 Column("mean_dW_stable_rank", "mean stable rank of ΔW (matrices with ΔW = 0 skipped)"),
                 Column("mean_dW_empirical_rank", "mean empirical rank of ΔW", optional=True),
                 Column("count_mats", "matrices in the group"),
                 Column("W_cosine_layer", "cosine of the group's concatenated W_a and W_b"),
                 Column("dW_zero_frac_layer", "share of exactly-zero ΔW entries in the group"))))),
    Step("param_plots", "plot_param_stats.py", COMPARISON, "figures of step 1 (reads its CSVs, never the models)",
         number="2", code="brittle/plotting/weights.py", test="tests/test_param_stats.py", reads=("param_stats",),
         files=(File("layer_locality.png", PNG), File("spectral_norm.png", PNG), File("stable_rank.png", PNG),
                File("rank_comparison.png", PNG), File("relatedness.png", PNG))),
    Step("activation_stats", "collect_activation_norms.py", COMPARISON,
         "how large are the hidden states of A and B, and their difference, on forget and retain text?",
         number="4", device=True, code="brittle/capture/, collect_activation_norms.py",
         test="tests/test_activations.py", files=(
             File("activation_stats.csv", "one row per (hidden state, split); token-weighted means over non-pad tokens", (
                 HIDDEN_STATE, SPLIT,
                 *_NORM_COLUMNS,
                 *[c for name, _ in _NORMS for c in ci(name, "")[1:]],
                 Column("n_texts", "texts of the split"), Column("n_tokens", "non-pad tokens of the split"))),)),
    Step("activation_plots", "plot_activation_norms.py", COMPARISON, "figures of step 4 (reads its CSV only)",
         number="5", code="brittle/plotting/activations.py", test="tests/test_activations.py",
         reads=("activation_stats",),
         files=(File("activation_norms.png", PNG), File("activation_diffs.png", PNG))),
    Step("mlp_attn_analysis", "analyze_mlp_vs_attn.py", COMPARISON, "is ΔW in the MLPs or in attention?",
         number="6", code="brittle/mlp_attn.py", test="tests/test_weight_steps.py", reads=("param_stats",), files=(
             File("mlp_attn_by_block.csv", "one row per block with both attention and MLP matrices", (
                 BLOCK,
                 Column("attn_dW_fro_rel", "‖ΔW‖/‖W‖ pooled over the block's attention matrices"),
                 Column("mlp_dW_fro_rel", "‖ΔW‖/‖W‖ pooled over the block's MLP matrices"),
                 Column("mlp_attn_ratio", "mlp_dW_fro_rel / attn_dW_fro_rel (> 1: the MLP changed more, relative to its size)"),
                 Column("attn_max_dW_spectral_rel", "largest σ₁(ΔW)/σ₁(W) among attention matrices"),
                 Column("mlp_max_dW_spectral_rel", "largest σ₁(ΔW)/σ₁(W) among MLP matrices"),
                 Column("mlp_attn_spectral_ratio", "mlp_max_dW_spectral_rel / attn_max_dW_spectral_rel"),
                 Column("mlp_dW_energy_share", "‖ΔW_mlp‖² / (‖ΔW_mlp‖² + ‖ΔW_attn‖²)"),
                 Column("mlp_W_energy_share", "the same share of ‖W‖²: what a change proportional to W gives"))),
             File("mlp_attn_summary.csv", "one row pooled over all blocks", (
                 Column("n_blocks", "blocks with both groups"),
                 Column("attn_dW_fro_rel", "‖ΔW‖/‖W‖ pooled over all attention matrices"),
                 Column("mlp_dW_fro_rel", "‖ΔW‖/‖W‖ pooled over all MLP matrices"),
                 Column("mlp_attn_ratio", "mlp_dW_fro_rel / attn_dW_fro_rel"),
                 Column("mlp_dW_energy_share", "MLP share of ‖ΔW‖² (attention + MLP)"),
                 Column("mlp_W_energy_share", "MLP share of ‖W‖² (the baseline)"),
                 Column("n_blocks_mlp_dominant", "blocks with mlp_attn_ratio > 1"),
                 Column("top_block_mlp", "block whose MLP changed most, relative to its size"),
                 Column("top_block_attn", "block whose attention changed most, relative to its size"))),
             File("mlp_attn_ratio.png", PNG), File("energy_share.png", PNG))),
    Step("null_space_analysis", "null_space_analysis.py", COMPARISON,
         "is ΔW low-rank, and do W's dominant subspaces turn?", number="7",
         code="brittle/weight_geometry.py, brittle/metrics/subspaces.py", test="tests/test_weight_steps.py", files=(
             File("null_space_results.csv", "one row per sampled attention/MLP matrix, each number beside its chance level", (
                 NAME, BLOCK, GROUP, *SHAPE,
                 Column("max_rank", "min(shape0, shape1)"),
                 Column("dW_fro_rel", "‖ΔW‖_F / ‖W‖_F"),
                 Column("dW_top10_energy", "share of ‖ΔW‖_F² in ΔW's 10 largest singular directions"),
                 Column("dW_top10_energy_random", "the same for a seeded Gaussian matrix of this shape"),
                 Column("dW_effective_rank", "fewest directions holding 99 % of ‖ΔW‖_F² (--energy)"),
                 Column("dW_effective_rank_random", "the same for the Gaussian matrix"),
                 Column("dW_effective_rank_frac", "dW_effective_rank / max_rank"),
                 Column("dW_effective_rank_frac_random", "the same for the Gaussian matrix"),
                 Column("W_effective_rank", "fewest directions holding 99 % of ‖W_a‖_F²"),
                 Column("k", "dimension of the top singular subspaces compared"),
                 *[column for side, where in (("out", "output side (left singular vectors)"),
                                              ("in", "input side (right singular vectors)"))
                   for column in (
                       *[Column(f"{side}_{metric}{suffix}", text + (" between random k-subspaces" if suffix else ""))
                         for metric, what in (("geodesic", "geodesic Grassmann distance √Σθ² (radians)"),
                                              ("chordal", "chordal distance √Σsin²θ"),
                                              ("mean_cos2", "mean cos²θ (1 = same subspace; random: k/d)"))
                         for suffix, text in (("", f"{what} of W_a's and W_b's top-k subspaces, {where}"),
                                              ("_random", f"{what}, {where},"))],
                       Column(f"{side}_geodesic_null", f"norm-matched null, {where}: mean geodesic distance (radians) "
                                                       "between W_a's top-k subspace and that of W_a + G, G Gaussian "
                                                       "with ‖G‖_F = ‖ΔW‖_F (--null-draws seeded draws; 0 if ΔW = 0)"),
                       Column(f"{side}_geodesic_null_std", "sample standard deviation of the null over the draws"),
                       Column(f"{side}_geodesic_over_null", f"{side}_geodesic / {side}_geodesic_null: ≈ 1 the update "
                                                            "turns W's top subspace no more than an unstructured "
                                                            "change of its size, > 1 aimed at it; empty if ΔW = 0"))])),
             File("null_space_summary.csv", "per group (attn, mlp, all): medians over the sampled matrices", (
                 GROUP, Column("n_matrices", "sampled matrices in the group"),
                 Column("median_<metric>", "median of a null_space_results.csv column"),
                 Column("median_<metric>_random", "median of its chance level"),
                 *[Column(f"median_{side}_geodesic{suffix}", f"median of {side}_geodesic{suffix} ({what})")
                   for side in ("out", "in")
                   for suffix, what in (("_null", "the norm-matched null"),
                                        ("_over_null", "real over null; unchanged matrices left out"))])),
             File("null_space.png", PNG))),
    Step("activation_separation", "activation_separation_analysis.py", COMPARISON,
         "how far apart are forget and retain texts inside each model, and did B change that?",
         number="8", device=True, code="activation_separation_analysis.py, brittle/metrics/similarity.py, brittle/probes.py",
         test="tests/test_activation_steps.py", files=(
             File("separation_metrics.csv", "one row per (hidden state, model); features: each text's last non-pad token state", (
                 HIDDEN_STATE, MODEL_AB, Column("model_id", "the model's Hub id or folder"),
                 *ci("cosine_distance", "1 − cos between the forget and the retain centroid"),
                 *ci("auc", "held-out AUC of a logistic-regression forget-vs-retain classifier (5-fold; grouped by "
                            "entity where the data folder has <texts>.groups.txt)"),
                 *ci("variance_ratio", "between-class / within-class variance (trace form of Fisher's criterion)"),
                 LEXICAL_AUC)),
             File("separation_change.csv", "one row per (hidden state, metric): B − A with a paired bootstrap interval", (
                 HIDDEN_STATE, Column("metric", "cosine_distance, auc or variance_ratio"),
                 Column("model_a_value", "the metric for model A"), Column("model_b_value", "the metric for model B"),
                 Column("change_b_minus_a", "model_b_value − model_a_value"),
                 Column("ci_low", "lower end of the paired 95 % interval of the change"),
                 Column("ci_high", "upper end of the paired 95 % interval of the change"))),
             File("separation.png", PNG))),
    Step("activation_covariance", "activation_covariance_analysis.py", COMPARISON,
         "did B change the shape of the activation distribution, and more on forget text?",
         number="9", device=True, code="activation_covariance_analysis.py, brittle/moments.py, brittle/metrics/distributions.py",
         test="tests/test_activation_steps.py", files=(
             File("covariance_metrics.csv", "one row per (hidden state with moments, split, model): every "
                  "hidden state unless --moment-layers drops some", (
                 HIDDEN_STATE, SPLIT, MODEL_AB, Column("n_tokens", "non-pad tokens of the split"),
                 *ci("effective_rank", "exp(H(p)) of the covariance spectrum p = λ/Σλ"),
                 *ci("spectral_entropy", "H(p) in nats"),
                 *ci("total_variance", "Σλ, the trace of the covariance"))),
             File("covariance_comparison.csv", "one row per hidden state with moments: A's spectrum against B's", (
                 HIDDEN_STATE,
                 *ci("wasserstein_forget", "W₁ between A's and B's eigenvalue distributions on forget text"),
                 *ci("wasserstein_retain", "the same on retain text"),
                 *ci("wasserstein_shape_forget", "W₁ on forget text after dividing each spectrum by its mean eigenvalue "
                                                 "(sum / d): change of shape, scale removed; dimensionless, 0..2, "
                                                 "0 when B's spectrum is a multiple of A's"),
                 *ci("wasserstein_shape_retain", "the same on retain text"),
                 *ci("selectivity_ratio", "wasserstein_forget / wasserstein_retain (> 1: the change concentrates on "
                                          "forget text); ∞ or NaN where retain W₁ is 0: read selectivity_diff"),
                 *ci("selectivity_diff", "wasserstein_forget / λ̄_A(forget) − wasserstein_retain / λ̄_A(retain), λ̄_A = "
                                         "A's mean eigenvalue on the split: > 0 the change concentrates on forget "
                                         "text, 0 even or none, < 0 on retain; finite where the ratio is not"))),
             File("eigenspectra.csv", "every covariance eigenvalue", (
                 HIDDEN_STATE, SPLIT, MODEL_AB, Column("rank", "1 = largest eigenvalue"),
                 Column("eigenvalue", "covariance eigenvalue"))),
             File("covariance.png", PNG))),
    Step("mlp_nullspace", "mlp_nullspace_alignment.py", COMPARISON,
         "does the MLP update lie in W's column space or in its numerical null space?", number="10",
         code="brittle/weight_geometry.py, brittle/metrics/subspaces.py", test="tests/test_weight_steps.py", files=(
             File("mlp_nullspace.csv", "one row per MLP matrix", (
                 NAME, BLOCK, GROUP, *SHAPE,
                 Column("dW_fro", "‖ΔW‖_F"), Column("dW_fro_rel", "‖ΔW‖_F / ‖W‖_F"),
                 Column("rank", "numerical rank r of W_a: fewest singular directions holding 99 % of ‖W_a‖_F² (--energy)"),
                 Column("rank_frac", "rank / min(shape0, shape1)"),
                 Column("side", "the informative side, the headline: output if shape0 > shape1, else input (on the "
                                "shorter side the baseline r/min(shape) is near 1 and the split says nothing)"),
                 Column("col_frac", "share of ΔW in W's column (side output) or row (side input) space: "
                                    "out_col_frac or in_col_frac of the informative side"),
                 Column("null_frac", "1 − col_frac: share in the numerical null space on the informative side"),
                 Column("random_col_frac", "r / max(shape0, shape1): the random-direction baseline of col_frac"),
                 Column("col_over_random", "col_frac / random_col_frac (> 1: ΔW leans into what W uses; "
                                           "< 1: into its null space)"),
                 Column("out_col_frac", "‖UᵀΔW‖²/‖ΔW‖²: share of ΔW in W's column space (what W writes)"),
                 Column("out_null_frac", "1 − out_col_frac: share in the null space of Wᵀ"),
                 Column("out_random_col_frac", "r / shape0: what a random direction puts in the column space"),
                 Column("in_col_frac", "‖ΔW V‖²/‖ΔW‖²: share of ΔW in W's row space (what W reads)"),
                 Column("in_null_frac", "1 − in_col_frac: share in W's null space"),
                 Column("in_random_col_frac", "r / shape1: the random-direction baseline"),
                 Column("out_col_over_random", "out_col_frac / out_random_col_frac"),
                 Column("in_col_over_random", "in_col_frac / in_random_col_frac"))),
             File("mlp_nullspace_summary.csv", "per side, pooled over MLP matrices weighted by ‖ΔW‖_F²", (
                 Column("side", "output, input, or informative (each matrix on its informative side: the headline)"),
                 Column("n_matrices", "MLP matrices"),
                 Column("col_frac", "share of the MLP update in W's column (output) or row (input) space"),
                 Column("null_frac", "share in the numerical null space"),
                 Column("random_col_frac", "what a random update gives"))),
             File("mlp_nullspace.png", PNG))),
    Step("row_space_projection", "row_space_projection_analysis.py", COMPARISON,
         "do forget-text activations fall in the input directions the update changed?", number="11", device=True,
         code="row_space_projection_analysis.py, brittle/metrics/subspaces.py, brittle/metrics/distributions.py, "
              "brittle/capture/accumulators.py",
         test="tests/test_activation_steps.py, tests/test_activation_metrics.py, tests/test_activations.py", files=(
             File("row_space_projection.csv", "one row per (MLP matrix, model whose activations are projected)", (
                 BLOCK, Column("module", "qualified module name"),
                 Column("module_kind", "last part of the module name (dense_h_to_4h, gate_proj, up_proj, c_fc; "
                                       "dense_4h_to_h, down_proj, c_proj)"),
                 Column("mlp_role", "input (reads the block's MLP input, width d; energies from the activation "
                                    "cache, or from the step's own pass for blocks without cached moments, "
                                    "--moment-layers) or output (the output projection, reads the intermediate activations, "
                                    "width d_ff; energies from the step's own pass)"),
                 Column("activations_of", "a or b: whose activations (the matrix's inputs) are projected"),
                 Column("k", "right singular vectors of ΔW kept (≤ --top-k and ≤ its numerical rank)"),
                 Column("d_in", "input width of the matrix (d or d_ff)"),
                 Column("random_baseline", "k / d_in: the share a random k-dimensional subspace captures"),
                 Column("dW_fro", "‖ΔW‖_F"),
                 Column("dW_rank", "numerical rank of ΔW: σ_i > σ₁·max(shape)·ε_float32 (numpy's matrix_rank)"),
                 Column("dW_top_k_energy", "share of ‖ΔW‖_F² in the k directions"),
                 *ci("fraction_forget", "share of the matrix's forget-text input energy on ΔW's top-k row space"),
                 *ci("fraction_retain", "the same on retain text"),
                 *ci("selectivity_ratio", "fraction_forget / fraction_retain (> 1: the update reads what forget text uses)"))),
             File("row_space_projection.png", PNG))),
    Step("lipschitzness", "local_lipschitzness_analysis.py", COMPARISON,
         "did B become rougher or smoother around forget text than A?", number="12", device=True,
         code="brittle/sensitivity.py", test="tests/test_lipschitz_numerics.py, tests/test_activation_steps.py", files=(
             File("lipschitz_per_text.csv", "one row per (split, model, text)", (
                 SPLIT, MODEL_AB, Column("text_index", "line of the text in its file (0-based)"),
                 Column("n_tokens", "non-pad tokens of the text"),
                 Column("lipschitz", "mean over perturbations of ‖Δ log p‖_F / ‖δ‖_F (ε-ball around the input embeddings)"),
                 Column("grad_norm", "‖∂NLL/∂embeddings‖_F of the text's summed next-token loss"),
                 Column("grad_norm_per_token", "grad_norm / (n_tokens − 1): the gradient norm of the text's mean "
                                               "per-token loss (removes the length dependence, not the loss level's)"),
                 Column("output_variance", "variance of the log-probabilities over the perturbations (nats², "
                                           "mean over real positions and vocabulary)"))),
             File("lipschitz_summary.csv", "one row per (split, model): means over texts", (
                 SPLIT, MODEL_AB, Column("model_id", "the model's Hub id or folder"), Column("n_texts", "texts"),
                 *ci("lipschitz", "mean local Lipschitz estimate"), *ci("grad_norm", "mean gradient norm"),
                 *ci("grad_norm_per_token", "mean per-token gradient norm"),
                 *ci("output_variance", "mean output variance"))),
             File("lipschitz_change.csv", "one row per (split, metric): B over A with a paired bootstrap interval", (
                 SPLIT, Column("metric", "lipschitz, grad_norm, grad_norm_per_token or output_variance"),
                 Column("model_a_value", "mean for model A"), Column("model_b_value", "mean for model B"),
                 Column("ratio_b_over_a", "model_b_value / model_a_value (> 1: rougher after the intervention)"),
                 Column("ci_low", "lower end of the paired 95 % interval of the ratio"),
                 Column("ci_high", "upper end of the paired 95 % interval of the ratio"))),
             File("lipschitz.png", PNG))),
    Step("mode_connectivity", "mode_connectivity_analysis.py", COMPARISON,
         "is there a loss ridge on the straight line from A to B, and how far apart are they in weight space?",
         device=True, code="brittle/metrics/connectivity.py, brittle/mode_connectivity.py, brittle/evaluation.py",
         test="tests/test_mode_connectivity.py", files=(
             File("connectivity_curve.csv", "one row per (point of the path θ(α) = (1−α)θ_a + αθ_b, split)", (
                 Column("alpha", "position on the path: 0 = model A, 1 = model B"), SPLIT,
                 *ci("loss", "mean next-token NLL per predicted token (nats) of θ(α), pooled over the split's texts"),
                 Column("excess_over_chord", "loss − ((1−α)·loss at 0 + α·loss at 1): the rise above the chord"))),
             File("connectivity_summary.csv", "one row per split", (
                 SPLIT,
                 *ci("barrier", "max over α of excess_over_chord: 0 = no ridge between A and B (linearly connected)"),
                 Column("barrier_alpha", "α where the barrier is reached"),
                 Column("loss_a", "loss of model A (α = 0)"), Column("loss_b", "loss of model B (α = 1)"),
                 Column("l2_distance", "‖θ_b − θ_a‖₂ over all parameters (the same on both rows)"),
                 Column("l2_distance_rel", "l2_distance / ‖θ_a‖₂"),
                 Column("n_texts", "texts of the split"), Column("n_tokens", "predicted tokens of the split"))),
             File("connectivity.png", PNG))),
    Step("representation_similarity", "representation_similarity_analysis.py", COMPARISON,
         "how alike are A's and B's hidden states on the same tokens, on forget and on retain text (linear CKA)?",
         device=True, code="brittle/metrics/cka.py, brittle/capture/", test="tests/test_representation_similarity.py",
         files=(
             File("representation_similarity.csv", "one row per (hidden state with moments, split); all non-pad tokens", (
                 HIDDEN_STATE, SPLIT, Column("n_tokens", "non-pad tokens of the split"),
                 *ci("cka", "linear CKA of A's and B's centred states on the same tokens (1: the same up to "
                            "rotation and scale); interval: text groups resampled"),
                 Column("cka_null", "expected CKA with the token pairing randomly permuted: the chance floor"))),
             File("representation_similarity_summary.csv", "one row per split: over hidden states", (
                 SPLIT, *ci("min_cka", "lowest CKA over the hidden states with moments (--moment-layers; every one "
                                       "unless the model has more than 7) (interval: minimum within each replicate)"),
                 Column("min_cka_hidden_state", "hidden state of the lowest CKA"),
                 Column("mean_cka", "mean CKA over those hidden states"),
                 Column("max_cka_null", "largest permutation null over those hidden states"),
                 Column("n_groups", "text groups (--moment-groups) the interval resamples"),
                 Column("n_tokens", "non-pad tokens of the split"))),
             File("representation_similarity.png", PNG))),
    Step("linear_probes", "linear_probe_analysis.py", MODEL,
         "where is the forget/retain distinction linearly readable in one model?", number="13", device=True,
         code="brittle/probes.py", test="tests/test_activation_steps.py", files=(
             File("probe_results.csv", "one row per hidden state; held-out (5-fold, grouped by entity where the data "
                  "folder has <texts>.groups.txt) scores of a logistic-regression probe", (
                 HIDDEN_STATE, Column("n_forget", "forget texts"), Column("n_retain", "retain texts"),
                 *ci("accuracy", "held-out accuracy"),
                 Column("majority_baseline", "accuracy of always guessing the larger class"),
                 *ci("selectivity", "accuracy − majority_baseline"),
                 *ci("auc", "held-out AUC"),
                 Column("auc_shuffled_labels", "AUC of the same probe on shuffled labels (chance on these features)"),
                 LEXICAL_AUC)),
             File("summary.json", "best hidden state by AUC and by selectivity, settings"),
             File("probe_results.png", PNG))),
    Step("knowledge_probe", "knowledge_probe_analysis.py", MODEL,
         "is a fact's answer still linearly readable at the answer position where the output no longer gives it?",
         device=True, code="brittle/knowledge_probe.py, brittle/probes.py", test="tests/test_knowledge_probe.py", files=(
             File("knowledge_probe.csv", "one row per (fact family, hidden state); tiny world only (reads facts.csv). "
                  "A multinomial logistic-regression probe reads the fact's value from the last cloze-prompt token's "
                  "state; trained on templates 0-4 of some entities, tested on templates 6-7 of the other entities "
                  "(entity-grouped folds)", (
                 Column("family", "fact family: hazard, near or far"), HIDDEN_STATE,
                 Column("n_entities", "scored entities of the family"),
                 Column("n_train", "training prompts per fold (mean over folds)"),
                 Column("n_test", "test prompts, each scored once by the fold that held its entity out"),
                 *ci("accuracy", "held-out accuracy reading the value (argmax over the relation's values); 95 % "
                                 "interval by bootstrap over test entities"),
                 Column("chance", "mean over test prompts of 1 / number of values of the relation"),
                 Column("ceiling", "share of test prompts whose value occurs among the fold's training labels "
                                   "(the most even a perfect value code can give)"),
                 *ci("shuffled_accuracy", "accuracy of the same pipeline trained on values permuted among the "
                                          "training facts of each relation (what the relation alone gives)"))),
             File("knowledge_probe_summary.csv", "one row per fact family: its best hidden state", (
                 Column("family", "fact family"), Column("best_hidden_state", "hidden state of highest accuracy"),
                 Column("accuracy", "accuracy there"), Column("accuracy_ci_low", "lower end of its 95 % interval"),
                 Column("accuracy_ci_high", "upper end"), Column("chance", "chance level"),
                 Column("ceiling", "ceiling there"), Column("shuffled_accuracy", "shuffled-label control there"),
                 Column("max_shuffled_accuracy", "highest control accuracy over all hidden states (the fair "
                                                 "comparison for a maximum over hidden states)"),
                 Column("n_test", "test prompts"))),
             File("knowledge_probe.png", PNG))),
    Step("evaluation", "evaluate.py", MODEL, "what does the model know: multiple-choice accuracy and retain perplexity",
         device=True, code="brittle/evaluation.py", test="tests/test_evaluation.py", files=(
             File("scores.csv", "one row per (question set, format, question)", (
                 Column("question_set", "question file stem, e.g. hazard_eval"), Column("format", "cloze or mcqa"),
                 Column("id", "question id"), Column("answer", "index of the correct choice"),
                 Column("prediction", "index of the chosen choice"), Column("correct", "prediction == answer"),
                 Column("domain", "hazard, near or far (tiny world)", optional=True),
                 Column("relation", "the fact's relation (tiny world)", optional=True),
                 Column("subset", "A or B: attack subsets of the hazard facts (tiny world)", optional=True),
                 Column("template", "question template index (tiny world)", optional=True),
                 Column("loglik_<j>", "log-likelihood of choice j (nats)"),
                 Column("score_<j>", "the score compared: length-normalised log-likelihood (cloze) or loglik_<j> (mcqa)"))),
             File("accuracy.csv", "one row per (question set, format)", (
                 Column("question_set", "question file stem"), Column("format", "cloze or mcqa"),
                 Column("n_questions", "questions scored"), Column("accuracy", "share answered correctly"),
                 Column("stderr", "binomial standard error √(acc(1 − acc)/n)"),
                 Column("chance", "1 / number of choices"))),
             File("summary.json", "accuracies by set/format and retain perplexity"))),
    Step("relearning", "relearn.py", MODEL, "how fast does removed knowledge come back under fine-tuning?",
         device=True, code="brittle/relearning.py, brittle/recovery.py", test="tests/test_relearn.py, tests/test_recovery.py",
         files=(
             File("curve.csv", "one row per (seed, checkpoint step); folder relearning/<attack>/", (
                 Column("model", "the attacked model"), Column("attack", "hazard or benign"), Column("seed", "seed"),
                 Column("step", "optimiser steps done"), Column("examples_seen", "step × batch size"),
                 Column("hazard_acc", "cloze accuracy on the held-out hazard questions (attack/hazard_eval.jsonl)"),
                 Column("near_acc", "cloze accuracy on questions/near_eval.jsonl (near-domain benign)"),
                 Column("far_acc", "cloze accuracy on questions/far_eval.jsonl (far-domain benign)"),
                 Column("retain_ppl", "perplexity on retain texts the attack does not train on"),
                 Column("train_loss", "mean training loss since the previous checkpoint (nats/token)"),
                 Column("elapsed_s", "seconds since the attack started"))),
             File("training_log.csv", "one row per (seed, optimiser step)", (
                 Column("seed", "seed"), Column("step", "optimiser step (1-based)"),
                 Column("loss", "training loss (nats/token)"), Column("grad_norm", "gradient norm before clipping"),
                 Column("lr", "learning rate"))),
             File("summary.csv", "recovery numbers per seed and for the seed-mean curve (seed = mean)", (
                 Column("model", "the attacked model"), Column("attack", "hazard or benign"),
                 Column("seed", "a seed, or mean for the seed-mean curve"), Column("steps_budget", "optimiser steps"),
                 Column("base_acc", "the base model's accuracy on the same questions"),
                 Column("filtered_acc", "the filtered model's accuracy on them"),
                 Column("acc_start", "hazard accuracy before the attack"), Column("acc_final", "after the budget"),
                 Column("acc_max", "highest over the checkpoints"),
                 Column("auc_acc_log", "mean hazard accuracy over log-spaced time (area over log(1+step)/log(1+budget))"),
                 Column("half_gap_threshold", "filtered_acc + (base_acc − filtered_acc)/2"),
                 Column("steps_to_half_gap", "first checkpoint at or above the threshold (empty: not within the budget)"),
                 Column("recovered_half_gap", "whether the threshold was reached"),
                 Column("recovered_final", "(acc_final − filtered_acc) / (base_acc − filtered_acc)"),
                 Column("auc_recovery_log", "the recovered fraction's mean over log-spaced time: 0 = stayed at the "
                                            "filtered level, 1 = at the base level from the start"),
                 Column("near_acc_start", "near-domain accuracy before"), Column("near_acc_final", "after"),
                 Column("far_acc_start", "far-domain accuracy before"), Column("far_acc_final", "after"),
                 Column("retain_ppl_start", "retain perplexity before"), Column("retain_ppl_final", "after"))),
             File("summary.json", "the same with Student-t intervals over seeds, definitions and settings"),
             File("reference.json", "base and filtered accuracies used and where they came from"),
             File("recovery_curve.png", PNG))),
    Step("layerwise_forgetting", "layerwise_forgetting.py", MODEL,
         "at which depth is an unlearned model closer to a model that never knew than to its origin?",
         device=True, code="brittle/layerwise.py, brittle/capture/prompts.py", test="tests/test_layerwise.py",
         files=(
             File("distances.csv", "one row per (unlearned model, question, hidden state); folder of the fine-tuned model", (
                 Column("unlearned_model", "unlearned model's name"), Column("question_idx", "question (0-based)"),
                 HIDDEN_STATE,
                 *[Column(f"{metric}_{pair}", f"{what} between {desc}")
                   for pair, desc in (("to_reference", "the unlearned and the reference model's states"),
                                      ("to_finetuned", "the unlearned and the fine-tuned model's states"),
                                      ("finetuned_to_reference", "the fine-tuned and the reference model's states (baseline)"))
                   for metric, what in (("cosine", "cosine distance 1 − cos"), ("l2", "Euclidean distance"))])),
             File("per_hidden_state.csv", "one row per (unlearned model, hidden state): statistics over questions", (
                 Column("unlearned_model", "unlearned model's name"), HIDDEN_STATE,
                 Column("region", "early, middle or late third of the block outputs; embeddings for hidden state 0"),
                 Column("<metric>_<pair>_<stat>", "mean, std, min or max over questions of a distances.csv column"),
                 Column("forgetting_ratio", "d_ft / (d_ref + d_ft) of the question-mean cosine distances: "
                                            "> 0.5 closer to the reference (forgotten here)"),
                 Column("forgetting_ratio_l2", "the same with L2 distances"),
                 Column("closer_to", "reference or finetuned"))),
             File("regions.csv", "one row per (unlearned model, region)", (
                 Column("unlearned_model", "unlearned model's name"), Column("region", "early, middle or late"),
                 Column("first_hidden_state", "first hidden state of the region"),
                 Column("last_hidden_state", "last hidden state of the region"),
                 Column("n_hidden_states", "hidden states in the region"),
                 Column("forgetting_ratio", "mean of the per-hidden-state ratios over the region"),
                 Column("ci_low", "lower end of its 95 % bootstrap interval (questions resampled)"),
                 Column("ci_high", "upper end"), Column("ci_excludes_half", "the interval excludes 0.5"),
                 Column("forgetting_ratio_l2", "the same with L2 distances"),
                 Column("model_pattern", "true_unlearning, obfuscation, no_effect or mixed (early and late ratios)"))),
             File("per_question.csv", "one row per (unlearned model, question)", (
                 Column("unlearned_model", "unlearned model's name"), Column("question_idx", "question (0-based)"),
                 Column("question", "question text"),
                 Column("early_ratio", "the question's forgetting ratio over the early region"),
                 Column("middle_ratio", "over the middle region"), Column("late_ratio", "over the late region"),
                 Column("pattern", "the question's pattern"))),
             File("results.json", "everything above summarised per unlearned model"),
             File("layerwise_<model>.png", PNG))),
    Step("report", "report.py", ROOT, "each model's mechanistic signature beside how fast it broke",
         code="brittle/report.py, brittle/report_numbers.py, brittle/population.py",
         test="tests/test_report.py, tests/test_population.py",
         reads=("param_stats", "mlp_attn_analysis", "null_space_analysis", "mlp_nullspace", "activation_stats",
                "row_space_projection", "lipschitzness", "mode_connectivity", "representation_similarity",
                "linear_probes", "knowledge_probe", "layerwise_forgetting", "evaluation",
                "relearning"), files=(
             File("report.md", "the report"),
             File("report_table.csv", "one row per model, one column per report number (see report_numbers.py), "
                                      "and the model's method, seed, strength and reached (brittle/model_identity.py)"),
             File("report_predictions.csv", "one row per prediction of the seed experiment", (
                 Column("prediction", "short name"), Column("signature", "the report number tested"),
                 Column("brittle_if", "+1: larger values predicted more brittle; −1: smaller"),
                 Column("claim", "the prediction in words"),
                 Column("recovery", "the report_table.csv column used as recovery (--recovery)"),
                 Column("rho_unlearned", "Spearman ρ between the number and recovery across unlearned models"),
                 Column("p_unlearned", "its uncorrected p-value (exact permutation test up to 8 models; "
                                       "descriptive, not used in the verdict)"),
                 Column("n_unlearned", "unlearned models with both numbers"),
                 Column("rho_all", "the same including the filtered model"), Column("p_all", "its p-value"),
                 Column("n_all", "models"),
                 Column("n", "models with the number, recovery and the pre-attack accuracy"),
                 Column("n_methods", "methods among them: the clusters of the bootstrap"),
                 Column("rho_low", "95 % method-cluster bootstrap interval of ρ, lower end"),
                 Column("rho_high", "upper end"),
                 Column("rho_p_boot", "two-sided bootstrap p of ρ = 0 (twice the smaller tail)"),
                 Column("rho_p_holm", "rho_p_boot Holm-corrected over the predictions tested"),
                 Column("partial_rho", "partial Spearman ρ controlling for hazard_acc_start (pre-attack accuracy)"),
                 Column("partial_rho_low", "its 95 % interval, lower end"), Column("partial_rho_high", "upper end"),
                 Column("partial_rho_p_boot", "its bootstrap p"), Column("partial_rho_p_holm", "Holm-corrected"),
                 Column("within_rho", "Spearman ρ of the number and recovery, each centred on its method's mean "
                                      "(empty with one model per method)"),
                 Column("within_rho_low", "its 95 % interval, lower end"), Column("within_rho_high", "upper end"),
                 Column("within_rho_p_boot", "its bootstrap p"),
                 Column("filtered_value", "the filtered model's number"),
                 Column("unlearned_median", "median over unlearned models"),
                 Column("contrast", "consistent, opposite or n/a: the filtered model against the unlearned median"),
                 Column("verdict", "held (interval of ρ on the predicted side of 0 and Holm p < --alpha), reversed "
                                   "(the same on the other side), not supported or not tested"),
                 Column("verdict_partial", "the same rule applied to the partial ρ"),
                 Column("reason", "the numbers behind the verdict"))),
             File("report_figures/", "recovery curves and signature-vs-recovery scatter plots"))),
    Step("datasets", "create_datasets.py", MADE, "the forget/retain texts, questions and attack sets of a preset",
         code="brittle/data/", test="tests/test_data_synthetic.py, tests/test_data_loaders.py", files=(
             File("manifest.json", "line counts and SHA-256 of every file, seeds, the split and (tiny world) "
                                   "the lexical baseline: out-of-fold AUC of a bag-of-words classifier, forget vs "
                                   "near-domain retain, folds grouped by entity"),
             File("facts.csv", "every fact of the tiny world (synthetic source only)", (
                 Column("domain", "hazard, near or far"), Column("entity", "fictitious entity"),
                 Column("relation", "relation"), Column("value", "the fact's answer"),
                 Column("role", "scored (evaluated) or format (trained on every template, never scored)"),
                 Column("subset", "A or B for scored hazard facts (attack / held-out)"))))),
    Step("pretrain", "pretrain.py", MADE, "a small GPT-NeoX trained from scratch (tiny world base and filtered models)",
         code="brittle/pretraining.py", test="tests/test_pretrain.py", files=(
             File("training_log.csv", "one row per optimiser step", (
                 Column("step", "optimiser step (1-based)"), Column("loss", "mean nats per predicted token"),
                 Column("lr", "learning rate"), Column("tokens", "predicted tokens so far"))),
             File("training_loss.png", PNG))),
    Step("unlearn", "unlearn.py", MADE, "an unlearned model: one unlearning method run on a base model",
         device=True, code="brittle/unlearning/",
         test="tests/test_unlearning_methods.py, tests/test_unlearning_losses.py, tests/test_calibration.py",
         files=(
             File("hyperparameters.json", "the method, its profile and every hyperparameter used"),
             File("training_log.csv", "one row per optimiser step", (
                 Column("step", "optimiser step (0-based)"), Column("loss", "the total loss"),
                 Column("<term>", "each term of the method's loss, as named in its module"),
                 Column("grad_norm", "gradient norm before clipping"), Column("seconds", "since training began"))),
             File("training_loss.png", PNG))),
)

_BY_NAME = {s.name: s for s in STEPS}


def step(name: str) -> Step:
    """The registered step ``name`` (its output folder's name)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no step {name!r}; known: {', '.join(_BY_NAME)}") from None


def comparison_dir(root: str | Path, model_a: str, model_b: str) -> Path:
    """``<root>/<slug_a>__vs__<slug_b>``: the folder of one model-pair comparison."""
    return Path(root) / f"{model_slug(model_a)}__vs__{model_slug(model_b)}"


def folder(name: str, root: str | Path = "outputs", model_a: str | None = None, model_b: str | None = None,
           model: str | None = None) -> Path:
    """Default output folder of step ``name``: ``<root>/<a>__vs__<b>/<name>`` for a comparison,
    ``<root>/<model>/<name>`` for a per-model step, ``<root>`` for the report."""
    s = step(name)
    if s.scope == COMPARISON:
        if model_a is None or model_b is None:
            raise ValueError(f"{name} is a comparison step: give model_a and model_b")
        return comparison_dir(root, model_a, model_b) / name
    if s.scope == MODEL:
        if model is None:
            raise ValueError(f"{name} is a per-model step: give model")
        return Path(root) / model_slug(model) / name
    if s.scope == ROOT:
        return Path(root)
    raise ValueError(f"{name} writes where its --outdir says")


def outdir(args, name: str, **models: str) -> Path:
    """The folder a script writes: ``--outdir`` if given, else :func:`folder` under ``--output-root``."""
    if getattr(args, "outdir", None):
        return Path(args.outdir)
    return folder(name, getattr(args, "output_root", "outputs"), **models)


def param_stats_dirs(args, out_step: str) -> tuple[Path, Path]:
    """``(param_stats folder, output folder)`` of a step that reads step 1's CSVs: from
    ``--param-stats``/``--outdir``, or from the model pair; the default output is ``out_step``'s
    folder beside param_stats. A missing or unfinished param_stats folder is a UserError."""
    if args.param_stats:
        stats = Path(args.param_stats)
    elif args.model_a and args.model_b:
        stats = folder("param_stats", args.output_root, model_a=args.model_a, model_b=args.model_b)
    else:
        raise UserError("give --model-a and --model-b, or --param-stats")
    how = (f"uv run collect_param_stats.py --model-a {args.model_a} --model-b {args.model_b}"
           if args.model_a and args.model_b else "collect_param_stats.py for this pair")
    require_step(stats, ["per_matrix.csv", "per_layer.csv"], how)
    return stats, Path(args.outdir) if args.outdir else stats.parent / out_step


# ------------------------------------------------------------------------------------ docs and query
def _where(s: Step) -> str:
    """Where step ``s`` writes, as a path pattern under the default ``outputs/``."""
    return {COMPARISON: f"outputs/<a>__vs__<b>/{s.name}/", MODEL: f"outputs/<model>/{s.name}/",
            ROOT: "outputs/", MADE: "--outdir"}[s.scope]


def columns_markdown() -> str:
    """The column reference (docs/columns.md), generated from :data:`STEPS`."""
    lines = ["# Steps, files and columns", "",
             "Generated from `brittle/steps.py` by `uv run python -m brittle.steps markdown > docs/columns.md`; "
             "a test fails when the two differ. Layer numbering in every file: `block` is the transformer block "
             "a weight matrix belongs to (0-based; empty outside the blocks); `hidden_state` is the index "
             "transformers gives `output_hidden_states` (0 = embeddings, i = output of block i−1, the last one "
             "after the final norm). Columns ending in `_ci_low`/`_ci_high` are 95 % bootstrap intervals "
             "(texts resampled; seeded). `<j>` stands for a number, `<metric>`, `<pair>`, `<stat>`, `<term>` "
             "for the names listed beside them.", ""]
    for s in STEPS:
        where = f"`{_where(s)}`" if s.scope != MADE else "its `--outdir`"
        number = f"step {s.number}: " if s.number else ""
        lines += [f"## `{s.name}` ({number}`{s.script}`)", "", f"{s.question[0].upper()}{s.question[1:]}", "",
                  f"Folder {where}. Computed in {', '.join(f'`{c.strip()}`' for c in s.code.split(','))}; "
                  f"tested in {', '.join(f'`{t.strip()}`' for t in s.test.split(','))}."
                  + (f" Reads {', '.join(f'`{r}`' for r in s.reads)}." if s.reads else ""), ""]
        for f in s.files:
            if f.columns is None:
                lines.append(f"- `{f.name}`: {f.meaning}")
        lines.append("")
        for f in s.files:
            if f.columns is None:
                continue
            lines += [f"### `{s.name}/{f.name}`", "", f"{f.meaning[0].upper()}{f.meaning[1:]}.", "",
                      "| column | meaning |", "|---|---|"]
            lines += [f"| `{c.name}` | {c.meaning}{' (only with some flags)' if c.optional else ''} |" for c in f.columns]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _show(s: Step) -> str:
    out = [f"{s.name}: {s.question}",
           f"  script   {s.script}" + (f" (seed step {s.number})" if s.number else ""),
           f"  folder   {_where(s)}",
           f"  code     {s.code}", f"  test     {s.test}"]
    if s.reads:
        out.append(f"  reads    {', '.join(s.reads)}")
    for f in s.files:
        out.append(f"  file     {f.name}: {f.meaning}")
        for c in f.columns or ():
            out.append(f"             {c.name:<28} {c.meaning}")
    from brittle.report_numbers import READERS

    for reader in READERS:
        if reader.step == s.name:
            for n in reader.numbers:
                out.append(f"  report   {n.key} ({n.label}) from {reader.file}, read by "
                           f"brittle/report_numbers.py:{reader.read.__name__}")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m brittle.steps", description="Query the step registry.")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("list", help="every step: number, name, script (default)")
    show = sub.add_parser("show", help="one step in full: files, columns, code, test, report numbers")
    show.add_argument("name")
    scripts = sub.add_parser("scripts", help="the scripts of one scope in pipeline order, each with 'device' "
                             "(runs a model: takes --device) or 'cpu' (for pipeline.sh)")
    scripts.add_argument("scope", choices=[COMPARISON, MODEL])
    sub.add_parser("markdown", help="the column reference (docs/columns.md)")
    args = p.parse_args(argv)
    if args.command == "show":
        if args.name not in _BY_NAME:
            by_script = {s.script: s for s in STEPS}
            if args.name not in by_script:
                print(f"error: no step or script {args.name!r}; known: {', '.join(_BY_NAME)}", file=sys.stderr)
                return 2
            args.name = by_script[args.name].name
        print(_show(step(args.name)))
    elif args.command == "scripts":
        for s in STEPS:
            if s.scope == args.scope:
                print(f"{s.script}\t{'device' if s.device else 'cpu'}")
    elif args.command == "markdown":
        sys.stdout.write(columns_markdown())
    else:
        for s in STEPS:
            print(f"{s.number or '-':>3}  {s.name:<22} {s.script:<36} {s.question}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
