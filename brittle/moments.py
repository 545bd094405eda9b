"""Streamed first and second moments of activations, and covariances from them.

Activation statistics are accumulated batch by batch so memory never grows with the number of
texts: :class:`StreamingMoments` keeps a token count, a float64 sum and a float64 sum of outer
products (``Σ x xᵀ``), from which mean and covariance follow exactly (no Welford drift: the sums
are float64 and the inputs are at most a few thousand tokens per update).
"""

from __future__ import annotations

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


def pack_symmetric(sq: torch.Tensor) -> torch.Tensor:
    """The upper triangle (diagonal included) of symmetric matrices (..., d, d), row by row
    (``torch.triu_indices`` order): (..., d(d+1)/2). Lossless for a symmetric Σxxᵀ and half its
    size; :func:`unpack_symmetric` inverts it."""
    d = sq.shape[-1]
    rows, cols = torch.triu_indices(d, d, device=sq.device)
    return sq[..., rows, cols]


def unpack_symmetric(packed: torch.Tensor, dim: int) -> torch.Tensor:
    """Symmetric matrices (..., dim, dim) from :func:`pack_symmetric`'s (..., dim(dim+1)/2), in
    ``packed``'s dtype."""
    rows, cols = torch.triu_indices(dim, dim, device=packed.device)
    if packed.shape[-1] != len(rows):
        raise ValueError(f"expected (..., {len(rows)}) packed entries for width {dim}, got {tuple(packed.shape)}")
    out = packed.new_zeros(*packed.shape[:-1], dim, dim)
    out[..., rows, cols] = packed
    out[..., cols, rows] = packed
    return out
