"""Shape of an eigenvalue spectrum and distance between two spectra.

``eigs`` are the eigenvalues of a covariance matrix (d,), any order; tiny negative values from
rounding are clipped to 0. The normalised spectrum is p_i = λ_i / Σ_j λ_j.
"""

from __future__ import annotations

import numpy as np


def _normalised(eigs: np.ndarray) -> np.ndarray:
    lam = np.clip(np.asarray(eigs, np.float64), 0.0, None)
    return lam / lam.sum(-1, keepdims=True)


def spectral_entropy(eigs: np.ndarray) -> np.ndarray:
    """Shannon entropy H(p) = −Σ p_i ln p_i of the normalised spectrum, in nats (0 .. ln d)."""
    p = _normalised(eigs)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(-1)


def effective_rank(eigs: np.ndarray) -> np.ndarray:
    """exp(H(p)) (Roy & Vetterli 2007, "The effective rank"): 1 for a rank-1 covariance, d for an
    isotropic one; the number of equally strong directions with the same entropy."""
    return np.exp(spectral_entropy(eigs))


def spectrum_wasserstein(eigs_a: np.ndarray, eigs_b: np.ndarray) -> np.ndarray:
    """1-Wasserstein distance between the empirical distributions of the two sets of eigenvalues.

    Each spectrum is read as a distribution on the real line with mass 1/d at each of its d
    eigenvalues (variance per principal direction, in the activations' squared units). For two
    equal-size samples W₁ is the mean absolute difference of the sorted values (Villani 2009,
    ch. 2), which is what ``scipy.stats.wasserstein_distance`` computes. Works on (..., d).
    """
    a = np.sort(np.asarray(eigs_a, np.float64), axis=-1)
    b = np.sort(np.asarray(eigs_b, np.float64), axis=-1)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError("spectra of different length")
    return np.abs(a - b).mean(-1)


def spectrum_shape_wasserstein(eigs_a: np.ndarray, eigs_b: np.ndarray) -> np.ndarray:
    """W₁ between the two spectra after dividing each by its mean eigenvalue: the change of *shape*
    with the overall scale taken out. Dimensionless, in units of the mean eigenvalue, 0 .. 2; 0
    when B's spectrum is a multiple of A's (B = c·A gives 0 here, |c − 1|·mean(λ_A) raw).

    λ/mean(λ) = d·p with p = λ/Σλ, the normalised spectrum the entropy and effective rank read.
    Why the sum and not the largest eigenvalue: a transformer's top covariance direction often
    belongs to one outlier feature, so dividing by λ_max would make the whole comparison hinge on
    one direction; the trace is the total variance, stable under resampling. Why d·p and not p:
    W₁ of p shrinks as 1/d, so d·p keeps the number comparable across widths. Works on (..., d).
    """
    a, b = _normalised(eigs_a), _normalised(eigs_b)
    return spectrum_wasserstein(a * a.shape[-1], b * b.shape[-1])


def selectivity_difference(w_forget: np.ndarray, w_retain: np.ndarray, scale_forget: np.ndarray,
                           scale_retain: np.ndarray) -> np.ndarray:
    """How much more B changed the spectrum on forget text than on retain text:
    w_forget/scale_forget − w_retain/scale_retain, each raw W₁ (:func:`spectrum_wasserstein`) in
    units of its split's scale (pass A's mean eigenvalue on that split). Dimensionless; > 0: the
    change concentrates on forget text, 0: equal (or none), < 0: on retain text.

    A difference rather than the ratio w_forget/w_retain: where B barely touched retain text the
    ratio divides by a number near 0 and reads any forget change, however small, as unbounded
    selectivity (∞, or NaN at 0/0); the difference stays finite and small changes stay small,
    with no floor constant to choose. Each W₁ is scaled by its own split so a layer's overall
    activation size cancels and the number compares across hidden states; raw W₁ (not
    :func:`spectrum_shape_wasserstein`) so that a change of scale confined to forget text (the
    RMU signature) still counts as selective. Arrays broadcast (bootstrap replicates).
    """
    return np.asarray(w_forget) / np.asarray(scale_forget) - np.asarray(w_retain) / np.asarray(scale_retain)


def subspace_energy(second_moment: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(inside, total)``: activation energy inside span(basis), tr(Vᵀ M V), and in all, tr(M).

    ``second_moment`` M (..., d, d) is the uncentred Σ x xᵀ of the activations (e.g. one per text
    group); ``basis`` V (d, k) has orthonormal columns (k may be 0). Both are linear in M, so
    sums over groups give the pooled energies and bootstrap replicates are weighted sums. For a
    uniformly random k-dimensional subspace the expected fraction inside / total is exactly k/d,
    whatever M (E[V Vᵀ] = (k/d) I): the baseline to compare with.
    """
    m = np.asarray(second_moment, np.float64)
    v = np.asarray(basis, np.float64)
    inside = np.einsum("dk,...de,ek->...", v, m, v)
    return inside, np.trace(m, axis1=-2, axis2=-1)
