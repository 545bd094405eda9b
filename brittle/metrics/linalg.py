"""Norms, ranks and spectra of single weight matrices (and of a weight difference ΔW).

All functions take a 2-D float32 ``torch.Tensor`` of shape ``(m, n)`` (rows = output features
for ``nn.Linear``) on the CPU and return Python floats/ints or float64 tensors. Nothing here
copies a matrix more than once: the largest weights of a 7B model are 0.8 GB in float32.

Cost model (2-core CPU, 4096×16384 float32, see DESIGN §5): Frobenius 0.01 s; σ₁ by ARPACK
0.3–1.5 s; all singular values through the smaller Gram matrix 4–6 s. So σ₁ is iterative with
a convergence test, and full spectra are computed only when a metric needs them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigsh

# ARPACK's stopping rule on the Gram operator WᵀW is |residual| <= tol * |Ritz value|, which
# bounds the relative error of σ₁² by tol and that of σ₁ by tol/2: 1e-4 gives σ₁ to 5e-5, a
# margin of 20 under the 1e-3 target, also on flat spectra. (scipy's ``svds`` passes tol² to
# ARPACK, which drives a float32 problem to exhaustion: 5x slower for no useful accuracy.)
SPECTRAL_TOL = 1e-4
# Below this smaller dimension a dense eigensolve is cheaper than setting up Lanczos.
EXACT_BELOW = 16


def frobenius(w: torch.Tensor) -> float:
    """‖W‖_F = sqrt(Σ w_ij²). ``w``: any shape, float32 (reduced with torch's pairwise sum)."""
    return float(torch.linalg.vector_norm(w))


def spectral_norm(w: torch.Tensor, tol: float = SPECTRAL_TOL, seed: int = 0,
                  exact_below: int = EXACT_BELOW) -> float:
    """σ₁(W), the largest singular value, as sqrt of the largest eigenvalue of the smaller Gram
    operator (WᵀW or WWᵀ, applied as two matrix-vector products, never formed) by implicitly
    restarted Lanczos (ARPACK ``eigsh``), relative tolerance ``tol`` on σ₁².

    ``w``: (m, n) float32. The start vector is seeded, so the result is deterministic. A zero
    matrix gives 0.0; a matrix whose smaller side is below ``exact_below`` (or where ARPACK does
    not converge) gets the exact value from its Gram eigenvalues.
    """
    if w.ndim != 2:
        raise ValueError(f"spectral_norm needs a matrix, got shape {tuple(w.shape)}")
    if not torch.any(w):
        return 0.0
    if min(w.shape) <= max(exact_below, 2):
        return math.sqrt(float(gram_eigenvalues(w)[0]))
    a = w.detach().cpu().numpy()
    d = min(a.shape)
    if a.shape[0] >= a.shape[1]:
        gram = LinearOperator((d, d), matvec=lambda x: a.T @ (a @ x), dtype=a.dtype)
    else:
        gram = LinearOperator((d, d), matvec=lambda x: a @ (a.T @ x), dtype=a.dtype)
    v0 = np.random.default_rng(seed).standard_normal(d).astype(a.dtype)
    try:
        lam = eigsh(gram, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
        return math.sqrt(max(float(lam[0]), 0.0))
    except (ArpackNoConvergence, ArpackError):
        return math.sqrt(float(gram_eigenvalues(w)[0]))


def gram_eigenvalues(w: torch.Tensor) -> torch.Tensor:
    """All squared singular values σ_i² of W, descending, float64 tensor of length min(m, n).

    Computed as the eigenvalues of the smaller Gram matrix (WᵀW or WWᵀ, float32, symmetric
    ``eigvalsh``): 2–10x faster than ``svdvals`` on a wide matrix. Tiny negative round-off is
    clipped to 0. The largest values carry float32 relative accuracy; values below ~1e-7·σ₁² are
    noise, which does not matter for energy fractions.
    """
    g = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    ev = torch.linalg.eigvalsh(g).double().clamp_min(0.0)
    return ev.flip(0)


def stable_rank(fro: float, sigma1: float) -> float:
    """Stable rank ‖W‖_F² / σ₁², in [1, min(m, n)] (Rudelson & Vershynin 2007).

    NaN for a zero matrix (undefined). A value below 1 can only come from an inexact σ₁; it is
    returned unchanged so that such an error stays visible.
    """
    if sigma1 <= 0.0:
        return float("nan")
    return (fro / sigma1) ** 2


def energy_rank(energies: torch.Tensor, energy: float = 0.99) -> int:
    """Smallest k with Σ_{i<=k} σ_i² >= energy · Σ σ_i² ("empirical"/"effective" rank).

    ``energies``: σ_i², descending (as from :func:`gram_eigenvalues`). 0 for a zero matrix.
    """
    total = float(energies.sum())
    if total <= 0.0:
        return 0
    cum = torch.cumsum(energies.double(), 0)
    # Subtracting a relative epsilon makes an exact 99% boundary count as reached.
    return int(torch.searchsorted(cum, energy * total * (1 - 1e-12)).item()) + 1


def top_k_energy(energies: torch.Tensor, k: int = 10) -> float:
    """Σ_{i<=k} σ_i² / Σ σ_i²: the share of ‖W‖_F² in the top-k singular directions (NaN if W = 0)."""
    total = float(energies.sum())
    if total <= 0.0:
        return float("nan")
    return float(energies[:k].sum()) / total


def cosine_from_norms(fro_a: float, fro_b: float, fro_diff: float) -> float:
    """cos(W_a, W_b) = ⟨W_a, W_b⟩_F / (‖W_a‖_F ‖W_b‖_F), from three Frobenius norms.

    Uses ⟨a, b⟩ = (‖a‖² + ‖b‖² − ‖a − b‖²) / 2, so 1 − cos is resolved down to the accuracy of
    ‖ΔW‖ (a float32 dot product of 10⁸ entries would not resolve 1 − cos ≈ 1e-6). Two unrelated
    matrices of equal norm give cos ≈ 0 and ‖ΔW‖/‖W_a‖ ≈ √2. NaN if either matrix is zero.
    """
    if fro_a <= 0.0 or fro_b <= 0.0:
        return float("nan")
    cos = (fro_a ** 2 + fro_b ** 2 - fro_diff ** 2) / (2.0 * fro_a * fro_b)
    return max(-1.0, min(1.0, cos))


def zero_fraction(w: torch.Tensor) -> float:
    """Fraction of entries that are exactly 0 (for ΔW: entries that 16-bit storage rounded away)."""
    n = w.numel()
    return float(n - torch.count_nonzero(w)) / n if n else float("nan")
