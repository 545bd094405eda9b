"""Rank correlations over a population of unlearned models, with methods as clusters.

A population is n models, each with a signature value x, a recovery value y, the hazard accuracy
before the attack z (how much was forgotten), and the method that made it. Models of one method
(different seeds or strengths) are not independent evidence about the method, so every interval
resamples *methods*: a bootstrap replicate draws as many methods as there are, with replacement,
and every model of a drawn method enters (Field & Welsh 2007, the cluster bootstrap).

Three correlations per signature, each Spearman's ρ (Pearson correlation of mid-ranks, so ties
count half):

* :func:`rank_corr`: ρ(x, y) across the population;
* :func:`partial_rank_corr`: ρ(x, y | z), the rank correlation left once the pre-attack accuracy
  is accounted for: r_xy·z = (r_xy − r_xz r_yz) / sqrt((1 − r_xz²)(1 − r_yz²)) on the ranks; a
  signature that only tracks how much was forgotten has a partial ρ near 0;
* :func:`within_rank_corr`: ρ of x and y after subtracting each method's mean from both, so only
  differences between models of the same method count (undefined with one model per method).

A resample is a row of counts (how often each model enters), so every statistic is computed for
all replicates at once as weighted ranks and weighted Pearson correlations (:func:`cluster_weights`
gives the counts; the expanded-sample definition is in :func:`weighted_ranks`).
:func:`bootstrap_p` turns the replicates into a two-sided p-value (twice the smaller share of
replicates on either side of 0: the level at which the percentile interval first touches 0), and
:func:`holm` corrects a family of them (Holm 1979). :func:`verdict` applies the report's rule.
All functions are pure: arrays in, numbers out.
"""

from __future__ import annotations

import math

import numpy as np

from brittle.stats import percentile_ci

MIN_PAIRS = 3   # fewer pairs than this carry no rank information


def weighted_ranks(v, weights) -> np.ndarray:
    """Mid-ranks of ``v`` (N,) in each resample of ``weights`` (B, N): row i counted w_bi times.

    Equal to scipy.stats.rankdata of the expanded sample (every row repeated w times), read back
    at each row: rank_i = Σ_j w_j [v_j < v_i] + (Σ_j w_j [v_j = v_i] + 1) / 2. Rows with weight 0
    get a rank too; they carry no weight in :func:`weighted_pearson`.
    """
    v = np.asarray(v, dtype=float)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    less = (v[None, :] < v[:, None]).astype(float)     # [i, j] = v_j < v_i
    equal = (v[None, :] == v[:, None]).astype(float)
    return w @ less.T + (w @ equal.T + 1.0) / 2.0


def weighted_pearson(a, b, weights) -> np.ndarray:
    """Pearson correlation of rows ``a``, ``b`` (B, N) with row weights ``weights`` (B, N): the
    correlation of the expanded samples; NaN where either has no spread."""
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    total = w.sum(axis=1, keepdims=True)
    a_c = a - (w * a).sum(axis=1, keepdims=True) / total
    b_c = b - (w * b).sum(axis=1, keepdims=True) / total
    saa, sbb, sab = (w * a_c * a_c).sum(1), (w * b_c * b_c).sum(1), (w * a_c * b_c).sum(1)
    den = np.sqrt(saa * sbb)
    # Relative floor: a constant column leaves rounding residue, not spread.
    scale = np.maximum(1.0, np.abs(a).max(1) * np.abs(b).max(1)) * total[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12 * scale, sab / den, np.nan)


def rank_corrs(x, y, weights) -> np.ndarray:
    """Spearman's ρ of ``x``, ``y`` (N,) in each resample of ``weights`` (B, N); shape (B,)."""
    return weighted_pearson(weighted_ranks(x, weights), weighted_ranks(y, weights), weights)


def partial_rank_corrs(x, y, z, weights) -> np.ndarray:
    """Partial Spearman ρ(x, y | z) in each resample: the three-correlation formula on mid-ranks;
    NaN where a correlation is undefined or |ρ(x, z)| or |ρ(y, z)| is 1 (nothing left)."""
    rx, ry, rz = (weighted_ranks(v, weights) for v in (x, y, z))
    rxy, rxz, ryz = (weighted_pearson(a, b, weights) for a, b in ((rx, ry), (rx, rz), (ry, rz)))
    den = (1 - rxz ** 2) * (1 - ryz ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12, (rxy - rxz * ryz) / np.sqrt(np.where(den > 0, den, 1.0)), np.nan)


def centre_by_group(v, groups) -> np.ndarray:
    """``v`` minus its group's mean; residues of rounding snapped to 0 so singleton groups tie."""
    v = np.asarray(v, dtype=float)
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    counts = np.bincount(g)
    out = v - (np.bincount(g, v) / counts)[g]
    out[np.abs(out) < 1e-12 * max(1.0, float(np.abs(v).max(initial=0.0)))] = 0.0
    return out


def within_rank_corrs(x, y, groups, weights) -> np.ndarray:
    """Spearman's ρ of x and y each centred on its group's mean, in each resample of whole groups.

    Resampling whole groups leaves each group's mean unchanged, so the centring is done once.
    With every group a singleton both centred vectors are 0 and the result is NaN (not
    estimable), not 0; groups of one model add only ties at 0.
    """
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    if not np.any(np.bincount(g) >= 2):
        return np.full(np.atleast_2d(weights).shape[0], np.nan)
    return rank_corrs(centre_by_group(x, groups), centre_by_group(y, groups), weights)


def _point(fn, n: int, needed: int, *args) -> float:
    """``fn`` on the population itself: one resample with every weight 1."""
    if n < needed:
        return math.nan
    return float(fn(*args, np.ones((1, n)))[0])


def rank_corr(x, y) -> float:
    """Spearman's ρ of 1-D arrays ``x``, ``y`` (same length n); NaN when n < 3 or either is constant."""
    return _point(rank_corrs, len(x), MIN_PAIRS, x, y)


def partial_rank_corr(x, y, z) -> float:
    """Partial Spearman ρ(x, y | z) of 1-D arrays (n,); NaN when n < 4 (z takes one degree of freedom)."""
    return _point(partial_rank_corrs, len(x), MIN_PAIRS + 1, x, y, z)


def within_rank_corr(x, y, groups) -> float:
    """Spearman's ρ of x and y centred on their group means (``groups``: one label per model)."""
    return _point(within_rank_corrs, len(x), MIN_PAIRS, x, y, groups)


def cluster_draws(n_clusters: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_clusters) int matrix: replicate b draws clusters ``draws[b]`` (with replacement)."""
    return np.random.default_rng(seed).integers(0, n_clusters, size=(n_boot, n_clusters))


def cluster_weights(clusters, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """(n_boot, N) counts: how often row i enters replicate b when whole clusters are resampled.

    ``clusters``: one label per row (model). Replicate b draws the clusters ``cluster_draws(C,
    n_boot, seed)[b]`` (labels in sorted order), and every row of a drawn cluster enters as often
    as its cluster was drawn. With fewer than 2 clusters there is nothing to resample: all NaN.
    """
    labels, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    if labels.size < 2:
        return np.full((n_boot, inverse.size), np.nan)
    draws = cluster_draws(labels.size, n_boot, seed)
    counts = np.stack([np.bincount(row, minlength=labels.size) for row in draws])   # (n_boot, C)
    return counts[:, inverse].astype(float)


def bootstrap_p(replicates) -> float:
    """Two-sided p-value of "the statistic is 0": 2 · min(share ≤ 0, share ≥ 0) of the finite
    replicates, capped at 1; NaN without finite replicates. Below α exactly when the (1 − α)
    percentile interval excludes 0 (up to the interval's interpolation)."""
    r = np.asarray(replicates, dtype=float)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return math.nan
    return float(min(1.0, 2 * min(np.mean(r <= 0), np.mean(r >= 0))))


def interval(replicates, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the finite replicates (NaN, NaN when fewer than half are finite:
    a statistic undefined in most resamples has no interval worth printing)."""
    r = np.asarray(replicates, dtype=float)
    if np.isfinite(r).sum() < max(1, r.size / 2):
        return math.nan, math.nan
    lo, hi = percentile_ci(r[:, None], 1 - level)
    return float(lo[0]), float(hi[0])


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), same order as given; NaNs are not
    in the family and stay NaN. Adjusted p_(i) = max over j <= i of min(1, (m − j + 1) p_(j))."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out


def verdict(low: float, high: float, p_holm: float, brittle_if: int, alpha: float = 0.05) -> str:
    """held: the interval lies wholly on the predicted side of 0 and the Holm-adjusted p < alpha;
    reversed: the same on the other side; not supported: otherwise; not tested: no interval."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "not tested"
    significant = math.isfinite(p_holm) and p_holm < alpha
    side = 1 if low > 0 else -1 if high < 0 else 0
    if side == 0 or not significant:
        return "not supported"
    return "held" if side == brittle_if else "reversed"
