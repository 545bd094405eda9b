"""Linear CKA between two representations of the same tokens, from streamed moments only.

For centred X (N, d) and Y (N, e) whose rows are the same N tokens seen by two models,

    CKA(X, Y) = ‖XᵀY‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)        (Kornblith et al. 2019, "Similarity of neural
                                                     network representations revisited", eq. 5)

in [0, 1]; 1 when Y = c·X·Q for an orthogonal Q and a scalar c ≠ 0. Centring needs no per-token
data: XᵀY = Σxyᵀ − (Σx)(Σy)ᵀ/N, so CKA follows from N, Σx, Σy, Σxxᵀ, Σyyᵀ and the cross-moment
Σxyᵀ, which the activation cache holds per text group (``brittle.capture``).

Bootstrap over G text groups with resampling counts w (B, G): the pooled centred cross-moment
C(w) = Σ_g w_g S_g − s(w) t(w)ᵀ / n(w) has

    ‖C(w)‖² = wᵀKw − 2/n(w) · Σ_{ghk} w_g w_h w_k T_ghk + (wᵀPw)(wᵀQw)/n(w)²

with K_gh = ⟨S_g, S_h⟩, T_ghk = s_hᵀ S_g t_k, P = s sᵀ, Q = t tᵀ (s_g = Σx, t_g = Σy of group g).
These G×G(×G) tensors cost O(G²d²) once per layer; every replicate is then O(G³), instead of
O(G d²) per replicate for re-pooling the d × d matrices.

All inputs are float64 torch tensors or numpy arrays; outputs are numpy float64.
"""

from __future__ import annotations

import numpy as np


def _np(x) -> np.ndarray:
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x, np.float64)


def _gram_terms(sxy: np.ndarray, sx: np.ndarray, sy: np.ndarray):
    """(K, T, P, Q) of one cross-moment family: ``sxy`` (G, d, e), ``sx`` (G, d), ``sy`` (G, e)."""
    flat = sxy.reshape(len(sxy), -1)
    k = flat @ flat.T                                             # (G, G)
    t = np.einsum("hd,gdk->ghk", sx, np.einsum("gde,ke->gdk", sxy, sy))   # (G, G, G)
    return k, t, sx @ sx.T, sy @ sy.T


def _centred_sq_norm(terms, count: np.ndarray, w: np.ndarray) -> np.ndarray:
    """‖C(w)‖²_F per row of ``w`` (B, G), clipped at 0 (cancellation can leave −1e-16·scale)."""
    k, t, p, q = terms
    n = w @ count
    quad = lambda m: np.einsum("bg,gh,bh->b", w, m, w)  # noqa: E731 - a one-line quadratic form
    cubic = np.einsum("bg,bh,bk,ghk->b", w, w, w, t)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.maximum(quad(k) - 2.0 * cubic / n + quad(p) * quad(q) / n ** 2, 0.0)


def _centred_trace(sxx: np.ndarray, sx: np.ndarray, count: np.ndarray, w: np.ndarray) -> np.ndarray:
    """tr(C_xx(w)) = Σ w_g tr(S_g) − ‖s(w)‖²/n(w), per row of ``w``."""
    s = w @ sx
    with np.errstate(divide="ignore", invalid="ignore"):
        return w @ np.einsum("gdd->g", sxx) - (s * s).sum(1) / (w @ count)


def grouped_linear_cka(count, sum_x, sum_y, sxx, syy, sxy, weights=None) -> dict[str, np.ndarray]:
    """Linear CKA of two models' states on the same tokens, pooled over text groups.

    Args:
        count: (G,) tokens per group.
        sum_x, sum_y: (G, d), (G, e) per-group Σx, Σy.
        sxx, syy: (G, d, d), (G, e, e) per-group Σxxᵀ, Σyyᵀ (uncentred).
        sxy: (G, d, e) per-group cross-moment Σxyᵀ over the same tokens.
        weights: optional (B, G) resampling counts (``brittle.stats.resample_counts``).

    Returns ``{"cka": ..., "null": ...}``, each a float (no weights) or (B,) array:

    - ``cka``: ‖C_xy‖²/(‖C_xx‖‖C_yy‖), NaN where a representation is constant (‖C‖ = 0).
    - ``null``: its expectation when the token pairing is destroyed (rows of Y randomly permuted):
      E‖XᵀΠY‖² = tr(XᵀX)·tr(YᵀY)/(N − 1) for centred X, Y, so
      null = tr(C_xx) tr(C_yy) / ((N − 1)‖C_xx‖ ‖C_yy‖). It depends only on the two spectra and N
      (roughly d_eff/N): the value two unrelated representations give by chance.
    """
    count, sx, sy = _np(count), _np(sum_x), _np(sum_y)
    sxx, syy, sxy = _np(sxx), _np(syy), _np(sxy)
    w = np.ones((1, len(count))) if weights is None else np.atleast_2d(weights)
    xy = _centred_sq_norm(_gram_terms(sxy, sx, sy), count, w)
    xx = np.sqrt(_centred_sq_norm(_gram_terms(sxx, sx, sx), count, w))
    yy = np.sqrt(_centred_sq_norm(_gram_terms(syy, sy, sy), count, w))
    n = w @ count
    with np.errstate(divide="ignore", invalid="ignore"):
        cka = np.where((xx > 0) & (yy > 0), xy / (xx * yy), np.nan)
        null = (_centred_trace(sxx, sx, count, w) * _centred_trace(syy, sy, count, w)) / ((n - 1) * xx * yy)
        null = np.where((xx > 0) & (yy > 0), null, np.nan)
    if weights is None:
        return {"cka": float(cka[0]), "null": float(null[0])}
    return {"cka": cka, "null": null}
