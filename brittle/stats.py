"""Safe ratios and seeded bootstrap confidence intervals, in numpy only (the steps that read
CSVs import this without torch; streamed moments are in :mod:`brittle.moments`).

Bootstrap CIs resample *texts*, not tokens: tokens of one text are strongly correlated, so a token
bootstrap would give intervals that are far too narrow. Resampling is expressed as a matrix of
multinomial counts ``W`` (n_boot × n_texts), so any statistic that is a ratio of per-text sums
becomes two matrix products (Efron & Tibshirani 1993, ch. 13, percentile interval).
"""

from __future__ import annotations

import warnings

import numpy as np


def safe_ratio(num, den):
    """``num / den`` where ``den > 0``, NaN elsewhere: a ratio with nothing below it is undefined,
    not infinite and not an error. Scalars give a float, arrays (or Series) an array."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


def resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) matrix: row b counts how often each of n units is drawn in replicate b.

    With fewer than 2 units there is nothing to resample: the rows are NaN, so every interval
    computed from them is NaN rather than a zero-width interval that looks like certainty.
    """
    if n < 2:
        return np.full((n_boot, n), np.nan)
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def percentile_ci(replicates: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 of ``replicates``; NaN/inf replicates are ignored."""
    reps = np.where(np.isfinite(replicates), replicates, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, by design
        lo = np.nanquantile(reps, alpha / 2, axis=0)
        hi = np.nanquantile(reps, 1 - alpha / 2, axis=0)
    return lo, hi


def ratio_ci(num: np.ndarray, den: np.ndarray, n_boot: int, seed: int, alpha: float = 0.05):
    """Point estimate and CI of ``Σ num / Σ den`` with texts (rows) resampled.

    ``num``, ``den``: (n_texts,) or (n_texts, k). Returns ``(estimate, low, high)`` of shape (k,)
    (or scalars). Used for token-weighted means: num = per-text sum, den = per-text token count.
    """
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    est = num.sum(0) / den.sum(0)
    w = resample_counts(num.shape[0], n_boot, seed)
    with np.errstate(all="ignore"):
        reps = (w @ num.reshape(num.shape[0], -1)) / (w @ den.reshape(den.shape[0], -1))
    lo, hi = percentile_ci(reps.reshape((n_boot,) + est.shape), alpha)
    return est, lo, hi
