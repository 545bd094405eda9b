"""Streaming moments and seeded bootstrap confidence intervals.

Activation statistics are accumulated batch by batch so memory never grows with the number of
texts: :class:`StreamingMoments` keeps a token count, a float64 sum and a float64 sum of outer
products (``Σ x xᵀ``), from which mean and covariance follow exactly (no Welford drift: the sums
are float64 and the inputs are at most a few thousand tokens per update).

Bootstrap CIs resample *texts*, not tokens: tokens of one text are strongly correlated, so a token
bootstrap would give intervals that are far too narrow. Resampling is expressed as a matrix of
multinomial counts ``W`` (n_boot × n_texts), so any statistic that is a ratio of per-text sums
becomes two matrix products (Efron & Tibshirani 1993, ch. 13, percentile interval).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


class StreamingMoments:
    """Running count, sum and uncentred second moment of row vectors, in float64.

    ``update(x)`` takes ``x`` of shape (n, d) in any float dtype on any device; the sums live on
    ``device`` (default: the first input's device). Two accumulators merge with ``+=``.
    """

    def __init__(self, dim: int, device: torch.device | str | None = None):
        self.dim = dim
        self.device = device
        self.count = 0
        self.sum: torch.Tensor | None = None
        self.sq: torch.Tensor | None = None

    def _alloc(self, device) -> None:
        self.sum = torch.zeros(self.dim, dtype=torch.float64, device=device)
        self.sq = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=device)

    def update(self, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected (n, {self.dim}), got {tuple(x.shape)}")
        if self.sum is None:
            self._alloc(self.device if self.device is not None else x.device)
        x = x.to(device=self.sum.device, dtype=torch.float64)
        self.count += x.shape[0]
        self.sum += x.sum(0)
        self.sq += x.T @ x

    def __iadd__(self, other: "StreamingMoments") -> "StreamingMoments":
        if other.sum is None:
            return self
        if self.sum is None:
            self._alloc(other.sum.device)
        self.count += other.count
        self.sum += other.sum.to(self.sum.device)
        self.sq += other.sq.to(self.sq.device)
        return self

    def mean(self) -> torch.Tensor:
        return self.sum / self.count

    def covariance(self, ddof: int = 1) -> torch.Tensor:
        return covariance_from_sums(self.count, self.sum, self.sq, ddof)


def covariance_from_sums(count, total: torch.Tensor, sq: torch.Tensor, ddof: int = 1) -> torch.Tensor:
    """Covariance (d, d) from ``count``, ``Σx`` (d,) and ``Σxxᵀ`` (d, d): (Σxxᵀ − n μμᵀ)/(n − ddof)."""
    total, sq = total.double(), sq.double()
    mean = total / count
    return (sq - count * torch.outer(mean, mean)) / (count - ddof)


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


def pooled_covariance_eigs(count: torch.Tensor, total: torch.Tensor, sq: torch.Tensor,
                           weights: np.ndarray | None = None, ddof: int = 1) -> np.ndarray:
    """Eigenvalues (ascending) of the covariance pooled from per-group moments.

    ``count`` (G,), ``total`` (G, d), ``sq`` (G, d, d) are one layer's group sums (float64).
    ``weights`` (B, G) resampling counts give B bootstrap replicates, (B, d); without, (d,).
    Replicates are solved one at a time so memory stays at one d × d matrix.
    """
    rows = np.ones((1, len(count))) if weights is None else np.atleast_2d(weights)
    out = []
    for w in rows:
        wt = torch.as_tensor(w, dtype=torch.float64)
        n = float(wt @ count.double())
        cov = covariance_from_sums(n, torch.einsum("g,gd->d", wt, total), torch.einsum("g,gde->de", wt, sq), ddof)
        out.append(torch.linalg.eigvalsh(cov).numpy())
    eigs = np.stack(out)
    return eigs[0] if weights is None else eigs
