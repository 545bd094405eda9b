"""Pure metric functions of the activation steps against closed forms and scipy/sklearn/numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance
from sklearn.metrics import roc_auc_score

from brittle.metrics.distributions import (effective_rank, selectivity_difference, spectral_entropy,
                                           spectrum_shape_wasserstein, spectrum_wasserstein, subspace_energy)
from brittle.metrics.similarity import centroid_cosine_distance, variance_ratio
from brittle.probes import auc, out_of_fold_scores, probe_metric_cis, probe_metrics
from brittle.moments import pooled_covariance_eigs
from brittle.stats import ratio_ci, resample_counts


def test_spectrum_metrics_closed_forms_and_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.exponential(size=20), rng.exponential(size=20) * 3
    assert spectrum_wasserstein(a, b) == pytest.approx(wasserstein_distance(a, b))
    assert spectrum_wasserstein(a, a[::-1]) == 0.0  # order does not matter
    assert effective_rank(np.r_[5.0, np.zeros(9)]) == pytest.approx(1.0)
    assert effective_rank(np.ones(16)) == pytest.approx(16.0)
    assert spectral_entropy(np.ones(16)) == pytest.approx(np.log(16))
    np.testing.assert_allclose(effective_rank(np.stack([np.ones(4), np.r_[1.0, 0, 0, 0]])), [4.0, 1.0])


def test_shape_wasserstein_ignores_a_pure_rescaling():
    rng = np.random.default_rng(2)
    a = rng.exponential(size=32)
    for c in (0.1, 3.0):
        assert spectrum_wasserstein(a, c * a) == pytest.approx(abs(c - 1) * a.mean())   # closed form, > 0
        assert spectrum_shape_wasserstein(a, c * a) == pytest.approx(0.0, abs=1e-12)
    b = rng.exponential(size=32) ** 2                                # a different shape
    d = len(a)
    ref = wasserstein_distance(d * a / a.sum(), d * b / b.sum())     # scipy on the normalised spectra
    assert spectrum_shape_wasserstein(a, 7 * b) == pytest.approx(ref) and ref > 0.1
    # the bound: one direction holding all variance against an isotropic spectrum, (2d − 2)/d
    assert spectrum_shape_wasserstein(np.r_[1.0, np.zeros(d - 1)], np.ones(d)) == pytest.approx(2 - 2 / d)
    np.testing.assert_allclose(spectrum_shape_wasserstein(np.stack([a, a]), np.stack([2 * a, b])), [0.0, ref])


def test_selectivity_difference_is_finite_and_separates_forget_from_retain_changes():
    """Planted spectra: A has the same spectrum on both splits up to scale (retain activations 10x
    larger); B changes forget only, retain only (negative control), or both alike."""
    rng = np.random.default_rng(3)
    forget_a = rng.exponential(size=16)
    retain_a = 10 * forget_a

    def changed(lam):                                             # a planted reshaping
        return lam * np.linspace(2.0, 0.5, lam.size)

    def sel(forget_b, retain_b):
        w_f, w_r = spectrum_wasserstein(forget_a, forget_b), spectrum_wasserstein(retain_a, retain_b)
        return selectivity_difference(w_f, w_r, forget_a.mean(), retain_a.mean()), w_f, w_r

    forget_only, w_f, w_r = sel(changed(forget_a), retain_a)
    assert w_r == 0 and np.isfinite(forget_only)                  # the ratio w_f / w_r would be inf
    assert forget_only == pytest.approx(w_f / forget_a.mean()) and forget_only > 0.2
    retain_only, _, _ = sel(forget_a, changed(retain_a))
    assert retain_only == pytest.approx(-forget_only)             # negative control: low (negative)
    both, _, _ = sel(changed(forget_a), changed(retain_a))
    assert both == pytest.approx(0.0, abs=1e-12)                  # same relative change: scale cancels
    assert sel(forget_a, retain_a)[0] == 0.0                      # nothing changed: 0, not NaN
    tiny, _, _ = sel(forget_a * (1 + 1e-6), retain_a)
    assert 0 < tiny < 1e-5                                        # a negligible change stays negligible


def test_random_subspace_energy_fraction_is_k_over_d():
    rng = np.random.default_rng(1)
    d, k = 12, 3
    x = rng.normal(size=(200, d)) * np.linspace(0.1, 5, d)  # strongly anisotropic activations
    m = x.T @ x

    def fraction(basis):
        inside, total = subspace_energy(m, basis)
        return inside / total

    fractions = [fraction(np.linalg.qr(rng.normal(size=(d, k)))[0]) for _ in range(3000)]
    assert np.mean(fractions) == pytest.approx(k / d, abs=0.01)
    top = np.linalg.eigh(m)[1][:, -k:]  # the top eigenvectors hold far more than k/d
    assert fraction(top) > 2 * k / d
    # oracle: ||X V||_F^2 / ||X||_F^2 straight from the activations
    assert fraction(top) == pytest.approx(np.linalg.norm(x @ top) ** 2 / np.linalg.norm(x) ** 2)


def test_subspace_energy_is_additive_over_groups():
    """The step pools text groups and resamples them by weights: sums of per-group energies."""
    rng = np.random.default_rng(4)
    groups = [rng.normal(size=(30, 6)) for _ in range(4)]
    basis = np.linalg.qr(rng.normal(size=(6, 2)))[0]
    inside, total = subspace_energy(np.stack([g.T @ g for g in groups]), basis)   # (G,), (G,)
    pooled = np.vstack(groups)
    assert inside.sum() == pytest.approx(np.linalg.norm(pooled @ basis) ** 2)
    assert total.sum() == pytest.approx(np.linalg.norm(pooled) ** 2)
    assert subspace_energy(np.eye(6), np.zeros((6, 0)))[0] == 0.0       # k = 0: nothing inside


def test_separation_metrics_against_numpy_and_resampling():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(15, 4)) + 2.0, rng.normal(size=(11, 4))
    mu = np.vstack([x, y]).mean(0)
    between = 15 * ((x.mean(0) - mu) ** 2).sum() + 11 * ((y.mean(0) - mu) ** 2).sum()
    within = ((x - x.mean(0)) ** 2).sum() + ((y - y.mean(0)) ** 2).sum()
    assert variance_ratio(x, y) == pytest.approx(between / within)
    cos = x.mean(0) @ y.mean(0) / np.linalg.norm(x.mean(0)) / np.linalg.norm(y.mean(0))
    assert centroid_cosine_distance(x, y) == pytest.approx(1 - cos)
    # A weighted replicate equals the metric on the explicitly resampled rows.
    wx, wy = resample_counts(15, 3, 0), resample_counts(11, 3, 1)
    for b in range(3):
        rx, ry = np.repeat(x, wx[b].astype(int), 0), np.repeat(y, wy[b].astype(int), 0)
        assert variance_ratio(x, y, wx, wy)[b] == pytest.approx(variance_ratio(rx, ry))
        assert centroid_cosine_distance(x, y, wx, wy)[b] == pytest.approx(centroid_cosine_distance(rx, ry))


def test_probe_finds_planted_direction_and_not_shuffled_labels():
    rng = np.random.default_rng(3)
    n, d = 120, 20
    y = np.r_[np.ones(n // 2, int), np.zeros(n // 2, int)]
    x = rng.normal(size=(n, d))
    x[:, 7] += 4.0 * (2 * y - 1)  # planted separable direction
    m = probe_metrics(y, out_of_fold_scores(x, y))
    assert m["auc"] > 0.98 and m["selectivity"] > 0.4
    cis = probe_metric_cis(y, out_of_fold_scores(x, y), 100, 0)
    assert cis["auc"][0] > 0.95
    shuffled = [probe_metrics(p, out_of_fold_scores(x, p))["auc"] for p in (rng.permutation(y) for _ in range(6))]
    assert abs(np.mean(shuffled) - 0.5) < 0.12
    noise = rng.normal(size=(n, d))  # negative control: no signal in the features
    assert abs(probe_metrics(y, out_of_fold_scores(noise, y))["auc"] - 0.5) < 0.2


def test_auc_matches_sklearn_with_ties():
    y = np.array([1, 0, 1, 1, 0, 0, 1])
    s = np.array([0.3, 0.3, 0.9, -1.0, 0.1, 0.2, 0.3])
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s))


def test_ratio_ci_and_pooled_covariance():
    rng = np.random.default_rng(4)
    counts = rng.integers(1, 10, size=30).astype(float)
    sums = counts * rng.normal(3.0, 0.5, size=30)
    est, lo, hi = ratio_ci(sums, counts, 500, 0)
    assert est == pytest.approx(sums.sum() / counts.sum()) and lo < est < hi
    x = rng.normal(size=(90, 5))
    groups = np.array_split(x, 3)
    count = torch.tensor([len(g) for g in groups], dtype=torch.float64)
    total = torch.tensor(np.stack([g.sum(0) for g in groups]))
    sq = torch.tensor(np.stack([g.T @ g for g in groups]))
    np.testing.assert_allclose(pooled_covariance_eigs(count, total, sq), np.linalg.eigvalsh(np.cov(x.T)), rtol=1e-10)
    reps = pooled_covariance_eigs(count, total, sq, np.array([[2.0, 0.0, 1.0]]))
    np.testing.assert_allclose(reps[0], np.linalg.eigvalsh(np.cov(np.vstack([groups[0], groups[0], groups[2]]).T)),
                               rtol=1e-10)


def _planted(shape, sigmas, seed=0) -> np.ndarray:
    """float32 U diag(σ) Vᵀ of the given shape with orthonormal U, V (a planted spectrum)."""
    rng = np.random.default_rng(seed)
    r = len(sigmas)
    u = np.linalg.qr(rng.normal(size=(shape[0], r)))[0]
    v = np.linalg.qr(rng.normal(size=(shape[1], r)))[0]
    return ((u * sigmas) @ v.T).astype(np.float32)


@pytest.mark.parametrize("shape", [(48, 32), (32, 96)])   # tall (input side is the Gram side) and wide
def test_dw_rank_is_numpys_matrix_rank_from_sigma(shape):
    from brittle.metrics.subspaces import top_right_singular_vectors

    # σ = 1e-4·σ₁ is a real direction (far above max(shape)·ε₃₂ ≈ 1e-5) that a rule on σ² misses:
    # σ² = 1e-8·σ₁² is below σ₁²·d·ε₃₂ ≈ 4e-6·σ₁².
    small = _planted(shape, [1.0, 0.5, 1e-4])
    gram = np.linalg.eigvalsh(small.astype(np.float64).T @ small.astype(np.float64))
    assert (gram > gram.max() * min(shape) * np.finfo(np.float32).eps).sum() == 2   # the old rule miscounts
    rng = np.random.default_rng(3)
    exact = (rng.normal(size=(shape[0], 5)) @ rng.normal(size=(5, shape[1]))).astype(np.float32)
    full = rng.normal(size=shape).astype(np.float32)
    for dw, want in ((small, 3), (exact, 5), (full, min(shape))):
        assert np.linalg.matrix_rank(dw) == want
        assert top_right_singular_vectors(torch.from_numpy(dw), 4)[1] == want
    basis, rank, share = top_right_singular_vectors(torch.zeros(shape), 4)
    assert basis.shape == (shape[1], 0) and rank == 0 and np.isnan(share)


@pytest.mark.parametrize("shape", [(40, 24), (24, 72)])
def test_top_right_singular_vectors_span_numpys(shape):
    from brittle.metrics.subspaces import top_right_singular_vectors

    dw = _planted(shape, np.linspace(3.0, 0.2, 12), seed=1)
    basis, _, share = top_right_singular_vectors(torch.from_numpy(dw), 4)
    _, s, vt = np.linalg.svd(dw.astype(np.float64))
    np.testing.assert_allclose(basis.T @ basis, np.eye(4), atol=1e-9)
    np.testing.assert_allclose(basis @ basis.T, vt[:4].T @ vt[:4], atol=1e-6)   # same projector
    assert share == pytest.approx((s[:4] ** 2).sum() / (s ** 2).sum(), rel=1e-9)


def test_top_right_singular_vectors_stay_on_the_smaller_side(monkeypatch):
    """A wide ΔW (an MLP output projection, d_in = d_ff) never forms its d_in × d_in Gram matrix."""
    from brittle.metrics.subspaces import top_right_singular_vectors

    seen, eigh = [], torch.linalg.eigh
    monkeypatch.setattr(torch.linalg, "eigh", lambda a, *args, **kw: seen.append(a.shape) or eigh(a, *args, **kw))
    dw = torch.from_numpy(_planted((8, 3000), [2.0, 1.0, 0.5]))
    basis, rank, _ = top_right_singular_vectors(dw, 2)
    assert seen == [(8, 8)] and basis.shape == (3000, 2) and rank == 3
