"""Singular subspaces of weight matrices: principal angles, Grassmann distances, and how a
weight difference ΔW splits between W's column space and its numerical null space.

Matrices are 2-D float32 ``torch.Tensor`` of shape ``(m, n)`` = (output features, input
features). Orthonormal bases are float32 tensors with orthonormal *columns*: ``(m, k)`` for the
output side (column space, left singular vectors), ``(n, k)`` for the input side (row space,
right singular vectors).

Every statistic comes with what a random subspace of the same dimensions gives, because a
projection fraction or an angle means nothing without its chance level.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, svds

from brittle.metrics.linalg import energy_rank, gram_eigenvalues


def top_singular_subspaces(w: torch.Tensor, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(U_k, V_k)``: orthonormal bases (m, k) and (n, k) of W's top-k left and right singular
    vectors. ARPACK (``svds``, seeded start vector) when k is small against min(m, n), else a
    dense SVD. ``k`` is clipped to min(m, n)."""
    m, n = w.shape
    k = min(k, m, n)
    if m < n:
        # ARPACK on a wide matrix took 11.5 s for 4096×16384 against 5.1 s on its transpose (top-10,
        # flat Gaussian spectrum, 2 cores): solve the tall view (free) and swap the sides back.
        v, u = top_singular_subspaces(w.T, k, seed)
        return u, v
    if 3 * k < min(m, n) and min(m, n) > 16:
        a = w.detach().cpu().numpy()
        v0 = np.random.default_rng(seed).standard_normal(min(m, n)).astype(a.dtype)
        try:
            # svds hands tol² to ARPACK: 1e-3 here is a 1e-6 residual on the Gram eigenproblem.
            u, s, vt = svds(a, k=k, tol=1e-3, v0=v0, solver="arpack")
            order = np.argsort(-s)
            return torch.from_numpy(u[:, order].copy()), torch.from_numpy(vt[order].T.copy())
        except (ArpackNoConvergence, ArpackError):
            pass
    u, _, vh = torch.linalg.svd(w, full_matrices=False)
    return u[:, :k].contiguous(), vh[:k].T.contiguous()


def principal_angles(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """Principal angles θ_1 <= ... <= θ_k (radians, float64) between span(q1) and span(q2).

    ``q1``, ``q2``: (d, k) with orthonormal columns. cos θ_i are the singular values of q1ᵀq2 and
    sin θ_i those of (I − q1q1ᵀ)q2 (Björck & Golub 1973); θ = atan2(sin, cos) keeps small angles
    accurate, where arccos of a cosine near 1 would turn round-off into angles of ~1e-3.
    """
    q1, q2 = q1.double(), q2.double()
    inner = q1.T @ q2
    cos = torch.linalg.svdvals(inner)                       # descending -> angles ascending
    sin = torch.linalg.svdvals(q2 - q1 @ inner).flip(0)     # ascending
    k = min(cos.numel(), sin.numel())
    return torch.atan2(sin[:k], cos[:k]).clamp(0.0, torch.pi / 2)


def geodesic_distance(theta: torch.Tensor) -> float:
    """Geodesic (arc-length) distance on the Grassmannian: sqrt(Σ θ_i²); 0 .. sqrt(k)·π/2
    (Edelman, Arias & Smith 1998)."""
    return float(torch.sqrt((theta ** 2).sum()))


def chordal_distance(theta: torch.Tensor) -> float:
    """Chordal (projection Frobenius) distance sqrt(Σ sin² θ_i) = ‖P₁ − P₂‖_F / √2; 0 .. sqrt(k).
    Not the geodesic distance: it saturates for large angles."""
    return float(torch.sqrt((torch.sin(theta) ** 2).sum()))


def mean_cos2(theta: torch.Tensor) -> float:
    """Mean squared cosine (1/k) Σ cos² θ_i = ‖q1ᵀq2‖_F² / k: 1 for equal subspaces; a random
    k-subspace of R^d gives k/d in expectation."""
    return float((torch.cos(theta) ** 2).mean())


@dataclass(frozen=True)
class RandomSubspaceBaseline:
    """What two independent uniformly random k-subspaces of R^d give (seeded Monte Carlo)."""

    geodesic: float
    geodesic_std: float
    chordal: float
    mean_cos2: float          # closed form k/d


@lru_cache(maxsize=64)
def random_subspace_baseline(d: int, k: int, draws: int = 20, seed: int = 0) -> RandomSubspaceBaseline:
    """Mean geodesic and chordal distance between a fixed k-subspace of R^d and ``draws``
    uniformly random ones (QR of Gaussian matrices, seeded). By rotation invariance the fixed
    subspace can be the first k coordinate axes. ``mean_cos2`` is the exact expectation k/d."""
    k = min(k, d)
    gen = torch.Generator().manual_seed(seed)
    geo, cho = [], []
    for _ in range(draws):
        q, _ = torch.linalg.qr(torch.randn(d, k, generator=gen, dtype=torch.float64))
        cos = torch.linalg.svdvals(q[:k, :]).clamp(0.0, 1.0)   # e_1..e_k against q
        theta = torch.arccos(cos)
        geo.append(geodesic_distance(theta))
        cho.append(chordal_distance(theta))
    return RandomSubspaceBaseline(float(np.mean(geo)), float(np.std(geo)), float(np.mean(cho)), k / d)


@dataclass(frozen=True)
class NormMatchedNull:
    """How far W's top-k subspaces turn under a Gaussian perturbation as large as the real ΔW:
    geodesic distances √Σθ² (radians) over ``draws`` seeded draws, their mean and sample standard
    deviation, per side (``out``: left singular vectors, ``in``: right singular vectors)."""

    out_mean: float
    out_std: float
    in_mean: float
    in_std: float
    draws: int


def norm_matched_rotation(w: torch.Tensor, u: torch.Tensor, v: torch.Tensor, fro: float, draws: int = 8,
                          seed: int = 0) -> NormMatchedNull:
    """The null of the subspace angle for an update of a given size: the geodesic distance between
    W's top-k subspaces and those of W + G, where G is an m×n Gaussian matrix rescaled to
    ‖G‖_F = ``fro`` (the real ‖ΔW‖_F), over ``draws`` seeded draws.

    ``w`` (m, n) float32 is W_a; ``u`` (m, k) and ``v`` (n, k) its top-k left and right singular
    bases from :func:`top_singular_subspaces` (same ``seed``, so both sides of the comparison carry
    the same solver round-off). Uniformly random k-subspaces are the wrong chance level for an
    update: any ΔW much smaller than W leaves the top subspaces nearly in place, so every update
    looks "aligned" against them. A norm-matched G answers instead: does ΔW turn W's dominant
    directions more (ratio > 1: it is aimed at them) or less (< 1: it avoids them, e.g. rescales
    within them or sits in W's tail) than an unstructured change of the same size? The angle
    depends on how G's energy lands on the couplings u_jᵀ G v_i (i <= k < j) relative to the gaps
    σ_i − σ_j, so a near-degenerate σ_k ≈ σ_{k+1} gives a large null as well as a large real angle.

    ``fro`` = 0 returns zeros without computing anything (W + 0 = W). Draws come from one
    ``torch.Generator`` seeded with ``seed``, so the result is deterministic. Cost per draw: one m×n
    Gaussian (0.4 s for 4096×16384) and one top-k SVD of W + G (3.6–5.1 s at k = 10 for 12288×4096
    and 16384×4096 on 2 cores with a flat spectrum, the slow case for ARPACK); memory: one more m×n
    float32 matrix.
    """
    if draws < 2:
        raise ValueError("norm_matched_rotation needs at least 2 draws for a spread")
    if fro <= 0.0:
        return NormMatchedNull(0.0, 0.0, 0.0, 0.0, draws)
    k = u.shape[1]
    gen = torch.Generator().manual_seed(seed)
    out, inp = [], []
    for _ in range(draws):
        g = torch.randn(w.shape, generator=gen, dtype=w.dtype)
        g.mul_(fro / float(torch.linalg.vector_norm(g))).add_(w)         # W + G, in place: one extra matrix
        ug, vg = top_singular_subspaces(g, k, seed)
        del g
        out.append(geodesic_distance(principal_angles(u, ug)))
        inp.append(geodesic_distance(principal_angles(v, vg)))
    return NormMatchedNull(float(np.mean(out)), float(np.std(out, ddof=1)), float(np.mean(inp)),
                           float(np.std(inp, ddof=1)), draws)


@lru_cache(maxsize=16)
def gaussian_spectrum(m: int, n: int, seed: int = 0) -> torch.Tensor:
    """σ_i² (descending, float64) of one seeded m×n standard Gaussian matrix: the spectrum of an
    unstructured, full-rank "update" of that shape, the chance level for energy concentration.
    One draw suffices: for large m, n the spectrum concentrates (Marchenko–Pastur)."""
    gen = torch.Generator().manual_seed(seed)
    return gram_eigenvalues(torch.randn(m, n, generator=gen))


@dataclass(frozen=True)
class EnergySubspace:
    """W's dominant subspaces at an energy threshold: rank r (the numerical rank), bases
    u (m, r) and v (n, r) of its top-r left/right singular vectors."""

    r: int
    u: torch.Tensor
    v: torch.Tensor


def energy_subspace(w: torch.Tensor, energy: float = 0.99) -> EnergySubspace:
    """Top-r singular subspaces of W, r = the fewest directions holding ``energy`` of ‖W‖_F².

    The exact null space of a trained (full-rank) matrix is {0} on its smaller side, which makes
    every column/null split trivial; an energy criterion gives a numerical rank r < min(m, n)
    instead. Computed from the eigendecomposition of the smaller Gram matrix (float32) and
    W·v/σ for the other side (about 15 s for a 16384×4096 matrix on 2 cores).
    """
    m, n = w.shape
    tall = m >= n
    g = w.T @ w if tall else w @ w.T
    ev, vec = torch.linalg.eigh(g)
    ev, vec = ev.flip(0).double().clamp_min(0.0), vec.flip(1)
    r = energy_rank(ev, energy)
    if r == 0:
        return EnergySubspace(0, w.new_zeros(m, 0), w.new_zeros(n, 0))
    small = vec[:, :r]                                  # basis on the smaller side
    sigma = ev[:r].sqrt().to(w.dtype)
    # The matching singular vectors W v / σ. No re-orthonormalisation: at 99 % energy σ_r is
    # rarely below 1e-3 σ₁, so float32 round-off stays ~1e-4 and a QR of a 16384×4000 basis
    # would cost more than the rest of the step.
    other = (w @ small if tall else w.T @ small) / sigma
    u, v = (other, small) if tall else (small, other)
    return EnergySubspace(r, u.contiguous(), v.contiguous())


def column_null_split(dw: torch.Tensor, sub: EnergySubspace) -> dict[str, float]:
    """Energy fractions of ΔW inside W's numerical column space and null space, on both sides.

    Output side: ‖UᵀΔW‖_F² / ‖ΔW‖_F² (in col(W)) and ‖(I − UUᵀ)ΔW‖_F² / ‖ΔW‖_F² (in the null
    space of Wᵀ); input side: the same with ΔW·V (row space of W) and its complement (null(W)).
    Each pair sums to 1. Baselines: a random direction puts r/m (output) or r/n (input) of its
    energy into an r-dimensional subspace in expectation. NaN fractions if ΔW = 0.
    """
    m, n = dw.shape
    total = float(torch.linalg.vector_norm(dw)) ** 2
    if total <= 0.0:
        nan = float("nan")
        out_col = in_col = out_null = in_null = nan
    else:
        proj_out = sub.u.T @ dw                          # (r, n)
        proj_in = dw @ sub.v                             # (m, r)
        out_col = float(torch.linalg.vector_norm(proj_out)) ** 2 / total
        in_col = float(torch.linalg.vector_norm(proj_in)) ** 2 / total
        out_null = float(torch.linalg.vector_norm(dw - sub.u @ proj_out)) ** 2 / total
        in_null = float(torch.linalg.vector_norm(dw - proj_in @ sub.v.T)) ** 2 / total
    return {
        "rank": sub.r,
        "out_col_frac": out_col, "out_null_frac": out_null, "out_random_col_frac": sub.r / m,
        "in_col_frac": in_col, "in_null_frac": in_null, "in_random_col_frac": sub.r / n,
    }


def top_right_singular_vectors(dw: torch.Tensor, k: int) -> tuple[np.ndarray, int, float]:
    """``(V (d_in, k'), numerical rank, share of ‖ΔW‖_F² in the k' directions)`` for ΔW (d_out, d_in).

    V are the top right singular vectors (the row space ΔW reads from), float64 with orthonormal
    columns; k' = min(k, numerical rank): beyond the rank, singular vectors are arbitrary. A zero ΔW
    gives k' = 0 and a NaN share.

    Numerical rank: the count of σ_i > σ₁ · max(d_out, d_in) · ε_float32, the rule of
    ``numpy.linalg.matrix_rank`` for a float32 matrix (ΔW is float32, so smaller σ are rounding).
    Thresholding the eigenvalues σ² of the Gram matrix by the same factor would instead demand
    σ_i > σ₁·√(max·ε) (2e-3·σ₁ at width 32) and drop small but real directions.

    The σ and vectors come from the eigendecomposition of the *smaller* Gram matrix in float64
    (ΔWᵀΔW for a tall ΔW; ΔWΔWᵀ for a wide one, with V = ΔWᵀU/σ), so memory and time go with
    min(d_out, d_in)²: for an MLP output projection at the 6.9B layout (4096 × 16384) that is a
    4096² Gram (128 MB) instead of 16384² (2 GB). Float64 resolves σ down to about
    σ₁·√(ε_float64·min) (6e-7·σ₁ at 4096), far below the float32 tolerance above; V = ΔWᵀU/σ
    loses about ε_float64·σ₁/σ_i of orthonormality, nothing for the σ kept.
    """
    d_out, d_in = dw.shape
    a = dw.double()
    tall = d_out >= d_in
    eigvals, eigvecs = torch.linalg.eigh(a.T @ a if tall else a @ a.T)  # ascending; eigenvalues are σ²
    sigma = eigvals.flip(0).clamp_min(0).sqrt()
    eigvecs = eigvecs.flip(1)
    total = float((sigma ** 2).sum())
    if total == 0.0:
        return np.zeros((d_in, 0)), 0, float("nan")
    rank = int((sigma > sigma[0] * max(d_out, d_in) * torch.finfo(torch.float32).eps).sum())
    kk = min(k, rank)
    v = eigvecs[:, :kk] if tall else (a.T @ eigvecs[:, :kk]) / sigma[:kk]
    return v.numpy(), rank, float((sigma[:kk] ** 2).sum()) / total


__all__ = [
    "top_singular_subspaces", "principal_angles", "geodesic_distance", "chordal_distance", "mean_cos2",
    "RandomSubspaceBaseline", "random_subspace_baseline", "NormMatchedNull", "norm_matched_rotation",
    "gaussian_spectrum", "EnergySubspace",
    "energy_subspace", "column_null_split", "top_right_singular_vectors",
]
