"""Do the signatures together predict recovery? Leave-one-method-out cross-validated ridge R².

Each method's models are held out in turn; a ridge regression fitted on the other methods'
models predicts them. Features are standardised on the training fold only (mean 0, population
standard deviation 1; a feature constant on the fold is dropped there), the intercept is not
penalised, and the penalty alpha is chosen per outer fold by an inner leave-one-method-out over
:data:`ALPHAS` (smallest inner squared error; ties go to the larger alpha, the simpler model). With
fewer than 3 training methods there is no inner split and alpha is :data:`FALLBACK_ALPHA`.

The score is the out-of-fold R² = 1 − Σ(y − ŷ)² / Σ(y − ȳ)² over every model, ȳ the mean of all y.
It is 0 for a model no better than the mean and negative for a worse one; it is not bounded below.
Comparing the score of all signatures (with and without the pre-attack accuracy) against that of
the pre-attack accuracy alone says whether mechanism adds anything beyond how much was forgotten.
Pure numpy: arrays in, numbers out.
"""

from __future__ import annotations

import math

import numpy as np

ALPHAS = tuple(float(a) for a in np.logspace(-2, 3, 11))   # 0.01 ... 1000, half-decade steps
FALLBACK_ALPHA = 1.0


def ridge_fit(X: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Ridge on standardised features. ``X``: (n, p), ``y``: (n,). Returns (mean, scale, coef,
    intercept) with ŷ = ((X − mean) / scale) @ coef + intercept; constant columns get coef 0."""
    X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
    mean, scale = X.mean(axis=0), X.std(axis=0)
    keep = scale > 1e-12 * np.maximum(1.0, np.abs(mean))
    scale = np.where(keep, scale, 1.0)
    Z = ((X - mean) / scale)[:, keep]
    coef = np.zeros(X.shape[1])
    yc = y - y.mean()
    if Z.shape[1]:
        coef[keep] = np.linalg.solve(Z.T @ Z + alpha * np.eye(Z.shape[1]), Z.T @ yc)
    return mean, scale, coef, float(y.mean())


def ridge_predict(fit: tuple[np.ndarray, np.ndarray, np.ndarray, float], X: np.ndarray) -> np.ndarray:
    mean, scale, coef, intercept = fit
    return ((np.asarray(X, dtype=float) - mean) / scale) @ coef + intercept


def _held_out_predictions(X: np.ndarray, y: np.ndarray, groups: np.ndarray, alpha: float | None) -> np.ndarray:
    """Out-of-fold predictions, one fold per group; ``alpha=None``: choose it by inner CV."""
    pred = np.empty(y.size)
    for g in np.unique(groups):
        test = groups == g
        a = alpha if alpha is not None else choose_alpha(X[~test], y[~test], groups[~test])
        pred[test] = ridge_predict(ridge_fit(X[~test], y[~test], a), X[test])
    return pred


def choose_alpha(X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """The alpha of :data:`ALPHAS` with the smallest leave-one-group-out squared error."""
    if np.unique(groups).size < 3:
        return FALLBACK_ALPHA
    errors = [float(np.sum((y - _held_out_predictions(X, y, groups, a)) ** 2)) for a in ALPHAS]
    best = min(errors)
    return max(a for a, e in zip(ALPHAS, errors) if e <= best * (1 + 1e-9))


def cv_r2(y, pred) -> float:
    """Out-of-fold R² = 1 − Σ(y − pred)² / Σ(y − ȳ)²; NaN when y is constant."""
    y, pred = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
    total = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - pred) ** 2)) / total if total > 0 else math.nan


def lomo_r2(X, y, groups) -> float:
    """Leave-one-method-out R² of ridge (alpha by inner CV) predicting ``y`` (n,) from ``X`` (n, p);
    ``groups`` (n,) the method of each model. NaN with fewer than 3 methods (a fold's model would
    be fitted on one method)."""
    X, y, groups = np.asarray(X, dtype=float), np.asarray(y, dtype=float), np.asarray(groups)
    if X.ndim == 1:
        X = X[:, None]
    if np.unique(groups).size < 3:
        return math.nan
    return cv_r2(y, _held_out_predictions(X, y, groups, None))
