"""Linear mode connectivity: the loss along the straight line between two weight sets, and its barrier.

Along θ(α) = (1 − α)θ_a + αθ_b the loss barrier is the largest rise of the loss curve above the
chord joining its two ends (Frankle et al. 2020, "Linear mode connectivity and the lottery ticket
hypothesis", sec. 2; Siddiqui et al. 2025 relate it, with ‖θ_b − θ_a‖, to relearning resistance):

    barrier = max_α [ L(α) − ((1 − α) L(0) + α L(1)) ]

It is 0 when the curve never rises above its chord (e.g. a linear or convex curve) and positive
when a ridge separates the two models. Losses are nats per predicted token.
"""

from __future__ import annotations

import numpy as np


def path_losses(nll: np.ndarray, tokens: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean NLL per predicted token at each point of the path, pooled over texts.

    Args:
        nll: (A, n) per-text *summed* NLL in nats at each of A points.
        tokens: (n,) predicted tokens per text (the same at every point).
        weights: optional (B, n) resampling counts of the texts (``brittle.stats.resample_counts``).

    Returns (A,) or (B, A): Σ_t w_t nll[α, t] / Σ_t w_t tokens[t] (token-weighted, so a long text
    counts by its tokens, as in the mean over all predicted tokens).
    """
    nll, tokens = np.asarray(nll, np.float64), np.asarray(tokens, np.float64)
    w = np.ones((1, nll.shape[1])) if weights is None else np.atleast_2d(weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        curve = (w @ nll.T) / (w @ tokens)[:, None]
    return curve[0] if weights is None else curve


def excess_over_chord(alphas: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """L(α) − chord(α), the chord computed as L(0) + α(L(1) − L(0)) so a constant curve gives
    exactly 0. ``alphas`` (A,) from 0 to 1; ``curve`` (..., A). Same shape as ``curve``."""
    alphas, curve = np.asarray(alphas, np.float64), np.asarray(curve, np.float64)
    if alphas[0] != 0 or alphas[-1] != 1:
        raise ValueError("the path must start at alpha 0 and end at alpha 1")
    start, end = curve[..., :1], curve[..., -1:]
    return curve - (start + alphas * (end - start))


def barrier(alphas: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """Loss barrier, max over α of :func:`excess_over_chord`: (...,) from ``curve`` (..., A).
    Never negative (the excess is 0 at both ends)."""
    return excess_over_chord(alphas, curve).max(-1)
