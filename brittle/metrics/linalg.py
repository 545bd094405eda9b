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

# ARPACK's stopping rule on a Gram matrix/operator is |residual| <= tol * |Ritz value|, which
# bounds the distance of the Ritz value to *an* eigenvalue by tol (σ₁ to tol/2 = 5e-5, a margin
# of 20 under the 1e-3 target) but not that it is the top one. (scipy's ``svds`` passes tol² to
# ARPACK, which drives a float32 problem to exhaustion: 5x slower for no useful accuracy.)
SPECTRAL_TOL = 1e-4
# Lanczos vectors kept across ARPACK restarts (scipy's default for k = 1 is 20). With 20 (and 32),
# σ₁ of one seeded 768×768 Gaussian matrix (the flat-spectrum worst case, top eigenvalues nearly
# degenerate) came out 4.3e-4 low: the Ritz value settled on the second eigenvalue. 40 gave
# 3e-7 on it and on 35 other Gaussian 768×768/2304×768/300×300 matrices, at no measurable extra
# time (50k×768: 1.9 vs 2.0 s; 16384×4096: 2.28 vs 2.26 s; 768×768: same).
LANCZOS_VECTORS = 40
# Below this smaller dimension a dense eigensolve is cheaper than setting up Lanczos.
EXACT_BELOW = 16
# Form the d×d Gram matrix explicitly (one GEMM, 2·m·n·d flops) when d = min(m, n) is at most
# this and the matrix is at least FORM_GRAM_MIN_ELEMENTS large; otherwise apply WᵀW as two
# matrix-vector products per Lanczos step. See spectral_norm for the measurements.
FORM_GRAM_MAX_SIDE = 768
FORM_GRAM_MIN_ELEMENTS = 1 << 24


def frobenius(w: torch.Tensor) -> float:
    """‖W‖_F = sqrt(Σ w_ij²). ``w``: any shape, float32 (reduced with torch's pairwise sum)."""
    return float(torch.linalg.vector_norm(w))


def spectral_norm(w: torch.Tensor, tol: float = SPECTRAL_TOL, seed: int = 0,
                  exact_below: int = EXACT_BELOW) -> float:
    """σ₁(W), the largest singular value, as sqrt of the largest eigenvalue of the smaller Gram
    matrix G (WᵀW or WWᵀ, d×d with d = min(m, n)) by implicitly restarted Lanczos (ARPACK
    ``eigsh``), relative tolerance ``tol`` on σ₁².

    ``w``: (m, n) float32. The start vector is seeded, so the result is deterministic. A zero
    matrix gives 0.0; a matrix whose smaller side is below ``exact_below`` (or where ARPACK does
    not converge) gets the exact value from its Gram eigenvalues.

    How G is applied (measured on the 2-core CPU, float32, Gaussian = flat-spectrum worst case):

    * Every product runs in torch (MKL/OpenMP), with ARPACK's vectors wrapped zero-copy. Doing
      them in numpy instead made each 768×768 matrix-vector product 24 ms instead of 0.1 ms in
      a process that also runs torch: numpy's OpenBLAS threads and torch's OpenMP threads spin
      against each other on two cores (σ₁ of a 768×768 matrix 0.76 s instead of 0.003 s).
    * By default G is an operator, x ↦ Wᵀ(Wx), never formed: each Lanczos step reads W twice.
      This wins for every 6.9B shape (4096×16384: ~0.3–1.5 s against ~10 s for the
      550-GFLOP GEMM that forms G) and for small matrices that stay in cache.
    * G is formed explicitly when d <= FORM_GRAM_MAX_SIDE and W has at least
      FORM_GRAM_MIN_ELEMENTS entries, i.e. the 50k×768 (un)embeddings of Pythia-160M: on a flat
      (Gaussian) spectrum Lanczos needs many steps, each streaming 300 MB from memory, while the
      59-GFLOP GEMM is compute bound and Lanczos on the 768×768 G is then nearly free (0.95 s
      against 1.5 s). It does not pay beyond that: with a clear gap the operator is faster
      (0.5 s against 1.0 s at 50k×768), and at 50k×1024 (1.2 vs 1.7 s), 50k×2048 (3.7 vs 6.0 s),
      2048×8192 (0.55 vs 1.06 s) and 4096×16384 (2.3 vs 8.3 s) the operator wins even when flat.
    """
    if w.ndim != 2:
        raise ValueError(f"spectral_norm needs a matrix, got shape {tuple(w.shape)}")
    if not torch.any(w):
        return 0.0
    d = min(w.shape)
    if d <= max(exact_below, 2):
        return math.sqrt(float(gram_eigenvalues(w)[0]))
    w = w.detach().cpu()
    tall = w.shape[0] >= w.shape[1]
    if d <= FORM_GRAM_MAX_SIDE and w.numel() >= FORM_GRAM_MIN_ELEMENTS:
        g = w.T @ w if tall else w @ w.T
        apply = g.mv
    elif tall:
        apply = lambda x: w.T.mv(w.mv(x))  # noqa: E731
    else:
        apply = lambda x: w.mv(w.T.mv(x))  # noqa: E731
    lam = top_gram_eigenvalue(apply, d, tol=tol, seed=seed)
    if lam is None:
        return math.sqrt(float(gram_eigenvalues(w)[0]))
    return math.sqrt(lam)


def top_gram_eigenvalue(apply, d: int, tol: float = SPECTRAL_TOL, seed: int = 0) -> float | None:
    """Largest eigenvalue of a symmetric positive semi-definite d×d operator by ARPACK Lanczos
    (``eigsh``, LANCZOS_VECTORS vectors, relative tolerance ``tol``, seeded start vector).

    ``apply``: float32 torch vector (d,) -> float32 torch vector (d,), G·x. Returns None when ARPACK
    fails (the caller falls back to an exact eigensolve). The same ``apply`` and seed give the
    same Lanczos sequence whoever builds the operator (whole matrix or row blocks)."""

    def matvec(x: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32).reshape(-1))
        return apply(x).numpy()

    gram = LinearOperator((d, d), matvec=matvec, dtype=np.float32)
    v0 = np.random.default_rng(seed).standard_normal(d).astype(np.float32)
    try:
        lam = eigsh(gram, k=1, which="LA", tol=tol, v0=v0, ncv=min(LANCZOS_VECTORS, d),
                   return_eigenvectors=False)
    except (ArpackNoConvergence, ArpackError):
        return None
    return max(float(lam[0]), 0.0)


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
