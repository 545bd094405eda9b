"""Layer-wise forgetting: where in the network does an unlearned model part from the model it was
unlearned from?

Three models see the same prompts: the *fine-tuned* model (it learned the facts; unlearning started
from it), a *reference* that never learned them, and the *unlearned* model. At every hidden-state
index ``l`` (0 = embeddings, ``i`` = output of block ``i-1``; in transformers the last entry has
the final norm applied) and for every prompt we measure how far the unlearned state is from each:

    d_ref[p, l] = dist(h_unlearned[p, l], h_reference[p, l])
    d_ft[p, l]  = dist(h_unlearned[p, l], h_finetuned[p, l])
    forgetting ratio r = d_ft / (d_ref + d_ft)          in [0, 1]

``r > 0.5``: the unlearned model is closer to the reference (forgotten at that depth);
``r < 0.5``: closer to the fine-tuned model (still represented). Averaged over the early, middle
and late thirds of the blocks (the embeddings belong to none, see :func:`layer_regions`) the
ratios give a signature (after the V9 phase-2.7 analysis):

    early > 0.5, late > 0.5   true_unlearning  representations moved at every depth
    early < 0.5, late > 0.5   obfuscation      early layers still encode it, late layers hide it
    early < 0.5, late < 0.5   no_effect        still the fine-tuned model
    otherwise                 mixed            (includes a ratio of exactly 0.5)

All functions are pure numpy; distances are computed in float64.
"""

from __future__ import annotations

import numpy as np

from brittle.stats import percentile_ci, resample_counts

REGIONS = ("early", "middle", "late")
PATTERNS = ("true_unlearning", "obfuscation", "no_effect", "mixed")
# Below this d_ref + d_ft the two distances are rounding noise (both states are the same vector),
# and the ratio is undefined: it is reported as 0.5 (no preference).
ZERO_DISTANCE = 1e-9


def cosine_distance(a, b) -> np.ndarray:
    """``1 - cos(a, b)`` along the last axis. ``a``, ``b``: (..., d) arrays -> (...) float64 in
    [0, 2]. Identical vectors give exactly 0; a zero vector has distance 1 to any other vector."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    dot = (a * b).sum(-1)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dot / norms, 0.0)
    # 1 - cos of identical vectors is +-1e-16 after rounding; an unchanged layer must read as 0.
    return np.where(np.all(a == b, axis=-1), 0.0, np.clip(1.0 - cos, 0.0, 2.0))


def l2_distance(a, b) -> np.ndarray:
    """Euclidean distance ``||a - b||_2`` along the last axis: (..., d) -> (...) float64, in the
    units of the hidden states."""
    return np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1)


def distances(x, y) -> dict[str, np.ndarray]:
    """``{"cosine": (n_prompts, n_layers), "l2": (n_prompts, n_layers)}`` between two stacks of
    hidden states of shape (n_prompts, n_layers, d) taken on the same prompts."""
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape:
        raise ValueError(f"hidden-state stacks differ in shape: {x.shape} vs {y.shape}")
    return {"cosine": cosine_distance(x, y), "l2": l2_distance(x, y)}


def summarize(d: np.ndarray) -> dict[str, np.ndarray]:
    """Per-layer ``mean``, ``std`` (population, ddof=0), ``min``, ``max`` over prompts.
    ``d``: (n_prompts, n_layers) -> each (n_layers,)."""
    d = np.asarray(d, np.float64)
    return {"mean": d.mean(0), "std": d.std(0), "min": d.min(0), "max": d.max(0)}


def forgetting_ratio(d_ref, d_ft) -> np.ndarray:
    """``d_ft / (d_ref + d_ft)`` elementwise; 0.5 where ``d_ref + d_ft <= ZERO_DISTANCE``."""
    d_ref, d_ft = np.asarray(d_ref, np.float64), np.asarray(d_ft, np.float64)
    total = d_ref + d_ft
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > ZERO_DISTANCE, d_ft / np.where(total > 0, total, 1.0), 0.5)


def layer_regions(n_layers: int) -> dict[str, list[int]]:
    """Split the *block outputs* among hidden-state indices 0..n_layers-1 into thirds of the
    depth: with ``k = n_layers - 1`` blocks, early ``[1, k//3]``, middle ``(k//3, 2k//3]``, late
    ``(2k//3, k]`` (the late third gets the remainder).

    The embeddings (index 0) belong to no third: they are one token's lookup, not a layer of
    computation, and a method that does not train them would pin the early third at "unchanged"
    by construction. They are still reported per hidden state."""
    blocks = n_layers - 1
    if blocks < 3:
        raise ValueError(f"need at least 3 blocks (4 hidden states) to form thirds of the depth, got {n_layers} "
                         "hidden states")
    a, b = blocks // 3, 2 * blocks // 3
    return {"early": list(range(1, a + 1)), "middle": list(range(a + 1, b + 1)), "late": list(range(b + 1, blocks + 1))}


def layer_ratios(d_ref, d_ft) -> np.ndarray:
    """Model-level ratio per layer: the ratio of the prompt-mean distances.
    ``d_ref``, ``d_ft``: (n_prompts, n_layers) -> (n_layers,)."""
    return forgetting_ratio(np.mean(d_ref, 0), np.mean(d_ft, 0))


def region_ratios(d_ref, d_ft, regions: dict[str, list[int]]) -> dict[str, float]:
    """Model-level ratio per region: the mean of :func:`layer_ratios` over the region's layers."""
    per_layer = layer_ratios(d_ref, d_ft)
    return {name: float(per_layer[idx].mean()) for name, idx in regions.items()}


def question_region_ratios(d_ref, d_ft, regions: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """Per-prompt ratio per region: the ratio of the prompt's distances averaged over the region's
    layers. ``d_ref``, ``d_ft``: (n_prompts, n_layers) -> each (n_prompts,)."""
    d_ref, d_ft = np.asarray(d_ref, np.float64), np.asarray(d_ft, np.float64)
    return {name: forgetting_ratio(d_ref[:, idx].mean(1), d_ft[:, idx].mean(1)) for name, idx in regions.items()}


def classify(early, late):
    """Pattern name(s) from early and late ratios (scalars or arrays of equal shape)."""
    early, late = np.asarray(early, np.float64), np.asarray(late, np.float64)
    out = np.select([(early > 0.5) & (late > 0.5), (early < 0.5) & (late > 0.5), (early < 0.5) & (late < 0.5)],
                    list(PATTERNS[:3]), default=PATTERNS[3])
    return str(out) if out.ndim == 0 else out


def bootstrap_region_ratios(d_ref, d_ft, regions: dict[str, list[int]], n_boot: int = 1000, seed: int = 0,
                            alpha: float = 0.05) -> dict[str, tuple[float, float]]:
    """Percentile ``(low, high)`` interval of each region ratio, resampling prompts with
    replacement (the layer means, ratios and region averages are recomputed in every replicate;
    Efron & Tibshirani 1993, ch. 13). ``n_boot = 0`` gives NaN intervals."""
    d_ref, d_ft = np.asarray(d_ref, np.float64), np.asarray(d_ft, np.float64)
    if n_boot <= 0:
        return {name: (float("nan"), float("nan")) for name in regions}
    n = d_ref.shape[0]
    w = resample_counts(n, n_boot, seed) / n            # (n_boot, n_prompts), rows sum to 1
    per_layer = forgetting_ratio(w @ d_ref, w @ d_ft)   # (n_boot, n_layers)
    reps = np.stack([per_layer[:, idx].mean(1) for idx in regions.values()], axis=1)
    low, high = percentile_ci(reps, alpha)
    return {name: (float(low[i]), float(high[i])) for i, name in enumerate(regions)}
