"""Per-matrix rows of steps 7 (null space & subspace analysis) and 10 (MLP null-space split).

Both take one streamed pair ``w_a``, ``w_b`` of shape (m, n) = (out_features, in_features),
float32, and return a dict (one CSV row) whose every statistic sits beside its random baseline.
"""

from __future__ import annotations

import numpy as np
import torch

from brittle.metrics import linalg, subspaces
from brittle.models import classify_param


def sample_names(shapes: dict[str, tuple[int, ...]], n: int, seed: int) -> list[str]:
    """A seeded sample (without replacement) of ``n`` transformer-block matrices (attn or mlp),
    returned in the order given (on-disk order, so streaming them stays sequential)."""
    candidates = sorted(name for name, shape in shapes.items()
                        if len(shape) == 2 and classify_param(name)[1] in ("attn", "mlp"))
    if n >= len(candidates):
        chosen = set(candidates)
    else:
        chosen = set(np.random.default_rng(seed).choice(candidates, size=n, replace=False).tolist())
    return [name for name in shapes if name in chosen]


def _angles(prefix: str, qa: torch.Tensor, qb: torch.Tensor, d: int, k: int) -> dict:
    theta = subspaces.principal_angles(qa, qb)
    base = subspaces.random_subspace_baseline(d, k)
    return {f"{prefix}_geodesic": subspaces.geodesic_distance(theta), f"{prefix}_geodesic_random": base.geodesic,
            f"{prefix}_chordal": subspaces.chordal_distance(theta), f"{prefix}_chordal_random": base.chordal,
            f"{prefix}_mean_cos2": subspaces.mean_cos2(theta), f"{prefix}_mean_cos2_random": base.mean_cos2}


def null_space_row(name: str, w_a: torch.Tensor, w_b: torch.Tensor, k: int = 10, energy: float = 0.99,
                   seed: int = 0) -> dict:
    """Step 7 for one matrix: energy concentration of ΔW and the shift of W's top-k subspaces.

    - ``dW_top10_energy``: share of ‖ΔW‖_F² in its 10 largest singular directions; baseline: the
      same for a seeded Gaussian matrix of this shape (an unstructured full-rank change).
    - ``dW_effective_rank``: directions holding ``energy`` of ‖ΔW‖_F² (and ``_frac`` = / min(m, n));
      baseline: the Gaussian matrix's.
    - ``out_*`` / ``in_*``: principal angles between the top-k left (output side, R^m) or right
      (input side, R^n) singular subspaces of W_a and W_b, as geodesic Grassmann distance
      sqrt(Σθ²) (0 = same subspace, random ≈ sqrt(k)·π/2 for k ≪ d), chordal distance
      sqrt(Σ sin²θ) and mean cos²θ; baselines from random k-subspaces (Monte Carlo; k/d exact).
    """
    block, group = classify_param(name)
    m, n = w_a.shape
    k = min(k, m, n)
    dw = w_b - w_a
    ev = linalg.gram_eigenvalues(dw)
    gauss = subspaces.gaussian_spectrum(m, n)
    eff, eff_rand = linalg.energy_rank(ev, energy), linalg.energy_rank(gauss, energy)
    row = {"name": name, "block": block, "group": group, "shape0": m, "shape1": n, "max_rank": min(m, n),
           "dW_fro_rel": linalg.frobenius(dw) / max(linalg.frobenius(w_a), 1e-30),
           "dW_top10_energy": linalg.top_k_energy(ev, 10),
           "dW_top10_energy_random": linalg.top_k_energy(gauss, 10),
           "dW_effective_rank": eff, "dW_effective_rank_random": eff_rand,
           "dW_effective_rank_frac": eff / min(m, n), "dW_effective_rank_frac_random": eff_rand / min(m, n),
           "W_effective_rank": linalg.energy_rank(linalg.gram_eigenvalues(w_a), energy),
           "k": k}
    del dw
    ua, va = subspaces.top_singular_subspaces(w_a, k, seed)
    ub, vb = subspaces.top_singular_subspaces(w_b, k, seed)
    row.update(_angles("out", ua, ub, m, k))
    row.update(_angles("in", va, vb, n, k))
    return row


def nullspace_split_row(name: str, w_a: torch.Tensor, w_b: torch.Tensor, energy: float = 0.99) -> dict:
    """Step 10 for one matrix: energy of ΔW inside W_a's numerical column space (output side) and
    row space (input side) and in their complements, the numerical rank r being the fewest
    singular directions holding ``energy`` of ‖W_a‖_F². Baselines r/m and r/n.
    ``*_col_over_random`` > 1 means ΔW leans into the directions W uses; < 1, into its null space."""
    block, group = classify_param(name)
    m, n = w_a.shape
    sub = subspaces.energy_subspace(w_a, energy)
    dw = w_b.sub_(w_a)
    split = subspaces.column_null_split(dw, sub)
    fro_d = linalg.frobenius(dw)
    row = {"name": name, "block": block, "group": group, "shape0": m, "shape1": n, "dW_fro": fro_d,
           "dW_fro_rel": fro_d / max(linalg.frobenius(w_a), 1e-30), "rank": split.pop("rank")}
    row["rank_frac"] = row["rank"] / min(m, n)
    row.update(split)
    for side in ("out", "in"):
        row[f"{side}_col_over_random"] = row[f"{side}_col_frac"] / row[f"{side}_random_col_frac"] \
            if row[f"{side}_random_col_frac"] > 0 else float("nan")
    return row


def pooled_split(rows, weights: np.ndarray) -> list[dict]:
    """Energy-weighted pooling of step 10's fractions over matrices (weights = ‖ΔW‖_F²): the
    share of the whole MLP update in column vs null space, per side, with the pooled baseline."""
    out = []
    w = np.asarray(weights, dtype=float)
    total = w.sum()
    for side in ("out", "in"):
        rec = {"side": {"out": "output", "in": "input"}[side], "n_matrices": int(len(rows))}
        for col in ("col_frac", "null_frac", "random_col_frac"):
            vals = rows[f"{side}_{col}"].to_numpy(dtype=float)
            ok = np.isfinite(vals) & (w > 0)
            rec[col] = float((vals[ok] * w[ok]).sum() / w[ok].sum()) if total > 0 and ok.any() else float("nan")
        out.append(rec)
    return out
