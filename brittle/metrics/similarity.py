"""Separation of two sets of representations (forget vs retain): centroid cosine distance and the
between/within variance ratio, optionally for many bootstrap weightings at once.

Inputs are ``x`` (n, d) arrays of one layer's per-text vectors. ``w`` is an optional (B, n) matrix
of resampling counts (``brittle.stats.resample_counts``) whose rows sum to n; with it every
function returns B values (one per replicate) from matrix products, without copying the data.
"""

from __future__ import annotations

import numpy as np


def _weighted(x: np.ndarray, w: np.ndarray | None):
    """(centroid, Σ‖x‖², n) per replicate: shapes (B, d), (B,), scalar."""
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    w = np.ones((1, n)) if w is None else np.atleast_2d(w)
    return (w @ x) / n, w @ np.einsum("ij,ij->i", x, x), n


def centroid_cosine_distance(x: np.ndarray, y: np.ndarray, wx=None, wy=None) -> np.ndarray:
    """1 − cos(μ_x, μ_y) of the two centroids; 0 = same direction, 1 = orthogonal, 2 = opposite."""
    mx, _, _ = _weighted(x, wx)
    my, _, _ = _weighted(y, wy)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.einsum("bd,bd->b", mx, my) / (np.linalg.norm(mx, axis=1) * np.linalg.norm(my, axis=1))
    return _squeeze(1.0 - cos, wx, wy)


def variance_ratio(x: np.ndarray, y: np.ndarray, wx=None, wy=None) -> np.ndarray:
    """Between-class over within-class sum of squares (the trace form of Fisher's criterion):

    between = n_x‖μ_x − μ‖² + n_y‖μ_y − μ‖²,  within = Σ_i ‖x_i − μ_x‖² + Σ_j ‖y_j − μ_y‖²,
    with μ the pooled mean. 0 = identical centroids; large = classes far apart relative to spread.
    """
    mx, sx, nx = _weighted(x, wx)
    my, sy, ny = _weighted(y, wy)
    mu = (nx * mx + ny * my) / (nx + ny)
    between = nx * ((mx - mu) ** 2).sum(1) + ny * ((my - mu) ** 2).sum(1)
    # Σ‖x‖² − n‖μ‖² can round to a tiny negative number when all points coincide.
    within = np.maximum((sx - nx * (mx ** 2).sum(1)) + (sy - ny * (my ** 2).sum(1)), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):  # identical points: 0/0 -> NaN
        return _squeeze(between / within, wx, wy)


def _squeeze(values: np.ndarray, wx, wy):
    return values[0] if wx is None and wy is None else values
