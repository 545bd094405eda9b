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


def _angles(prefix: str, qa: torch.Tensor, qb: torch.Tensor, d: int, k: int, null_mean: float,
            null_std: float) -> dict:
    theta = subspaces.principal_angles(qa, qb)
    base = subspaces.random_subspace_baseline(d, k)
    geodesic = subspaces.geodesic_distance(theta)
    return {f"{prefix}_geodesic": geodesic, f"{prefix}_geodesic_random": base.geodesic,
            f"{prefix}_chordal": subspaces.chordal_distance(theta), f"{prefix}_chordal_random": base.chordal,
            f"{prefix}_mean_cos2": subspaces.mean_cos2(theta), f"{prefix}_mean_cos2_random": base.mean_cos2,
            f"{prefix}_geodesic_null": null_mean, f"{prefix}_geodesic_null_std": null_std,
            # ΔW = 0 has a null of exactly 0 and a real angle of solver round-off (~1e-6): no ratio.
            f"{prefix}_geodesic_over_null": geodesic / null_mean if null_mean > 0 else float("nan")}


def null_space_row(name: str, w_a: torch.Tensor, w_b: torch.Tensor, k: int = 10, energy: float = 0.99,
                   seed: int = 0, null_draws: int = 8) -> dict:
    """Step 7 for one matrix: energy concentration of ΔW and the shift of W's top-k subspaces.

    - ``dW_top10_energy``: share of ‖ΔW‖_F² in its 10 largest singular directions; baseline: the
      same for a seeded Gaussian matrix of this shape (an unstructured full-rank change).
    - ``dW_effective_rank``: directions holding ``energy`` of ‖ΔW‖_F² (and ``_frac`` = / min(m, n));
      baseline: the Gaussian matrix's.
    - ``out_*`` / ``in_*``: principal angles between the top-k left (output side, R^m) or right
      (input side, R^n) singular subspaces of W_a and W_b, as geodesic Grassmann distance
      sqrt(Σθ²) (0 = same subspace, random ≈ sqrt(k)·π/2 for k ≪ d), chordal distance
      sqrt(Σ sin²θ) and mean cos²θ; baselines from random k-subspaces (Monte Carlo; k/d exact).
    - ``*_geodesic_null`` (``_std``): the geodesic distance a Gaussian ΔW of the same Frobenius
      norm would give, mean and spread over ``null_draws`` seeded draws
      (:func:`subspaces.norm_matched_rotation`), and ``*_geodesic_over_null``, the real distance
      over that mean: ≈ 1 for an update that turns W's top subspaces no more than chance, > 1 for
      one aimed at them. The random-subspace baseline only says whether the subspace was kept at
      all; this says whether the update was directed.
    """
    block, group = classify_param(name)
    m, n = w_a.shape
    k = min(k, m, n)
    dw = w_b - w_a
    ev = linalg.gram_eigenvalues(dw)
    gauss = subspaces.gaussian_spectrum(m, n)
    eff, eff_rand = linalg.energy_rank(ev, energy), linalg.energy_rank(gauss, energy)
    fro_d = linalg.frobenius(dw)
    row = {"name": name, "block": block, "group": group, "shape0": m, "shape1": n, "max_rank": min(m, n),
           "dW_fro_rel": fro_d / max(linalg.frobenius(w_a), 1e-30),
           "dW_top10_energy": linalg.top_k_energy(ev, 10),
           "dW_top10_energy_random": linalg.top_k_energy(gauss, 10),
           "dW_effective_rank": eff, "dW_effective_rank_random": eff_rand,
           "dW_effective_rank_frac": eff / min(m, n), "dW_effective_rank_frac_random": eff_rand / min(m, n),
           "W_effective_rank": linalg.energy_rank(linalg.gram_eigenvalues(w_a), energy),
           "k": k}
    del dw
    ua, va = subspaces.top_singular_subspaces(w_a, k, seed)
    ub, vb = subspaces.top_singular_subspaces(w_b, k, seed)
    null = subspaces.norm_matched_rotation(w_a, ua, va, fro_d, null_draws, seed)
    row.update(_angles("out", ua, ub, m, k, null.out_mean, null.out_std))
    row.update(_angles("in", va, vb, n, k, null.in_mean, null.in_std))
    return row


def informative_side(m: int, n: int) -> str:
    """The side of an (m, n) = (out, in) matrix on which a column/null split can tell anything:
    "output" if m > n, else "input" (a square matrix: both are equal, input kept by convention).

    The numerical rank r is at most min(m, n), so on the *shorter* side the subspace holds r of
    min(m, n) dimensions and the random baseline r/min(m, n) is close to 1 for trained weights
    (0.80–0.88 for the tiny world's MLPs): nearly every update lands "in the column space" there.
    On the longer side the baseline is r/max(m, n) <= min(m, n)/max(m, n) (1/4 for a 4x MLP), so
    the split has room to differ from chance: the output side of an up-projection (d_ff × d),
    the input side of a down-projection (d × d_ff).
    """
    return "output" if m > n else "input"


def nullspace_split_row(name: str, w_a: torch.Tensor, w_b: torch.Tensor, energy: float = 0.99) -> dict:
    """Step 10 for one matrix: energy of ΔW inside W_a's numerical column space (output side) and
    row space (input side) and in their complements, the numerical rank r being the fewest
    singular directions holding ``energy`` of ‖W_a‖_F². Baselines r/m and r/n.
    ``*_col_over_random`` > 1 means ΔW leans into the directions W uses; < 1, into its null space.
    ``side``, ``col_frac``, ``null_frac``, ``random_col_frac``, ``col_over_random``: the same on
    the matrix's informative side (:func:`informative_side`), the headline."""
    block, group = classify_param(name)
    m, n = w_a.shape
    sub = subspaces.energy_subspace(w_a, energy)
    dw = w_b.sub_(w_a)
    split = subspaces.column_null_split(dw, sub)
    fro_d = linalg.frobenius(dw)
    row = {"name": name, "block": block, "group": group, "shape0": m, "shape1": n, "dW_fro": fro_d,
           "dW_fro_rel": fro_d / max(linalg.frobenius(w_a), 1e-30), "rank": split.pop("rank")}
    row["rank_frac"] = row["rank"] / min(m, n)
    sides = dict(split)
    for side in ("out", "in"):
        sides[f"{side}_col_over_random"] = sides[f"{side}_col_frac"] / sides[f"{side}_random_col_frac"] \
            if sides[f"{side}_random_col_frac"] > 0 else float("nan")
    row["side"] = informative_side(m, n)
    prefix = {"output": "out", "input": "in"}[row["side"]]
    for col in ("col_frac", "null_frac", "random_col_frac", "col_over_random"):
        row[col] = sides[f"{prefix}_{col}"]
    row.update(sides)
    return row


def pooled_split(rows, weights: np.ndarray) -> list[dict]:
    """Energy-weighted pooling of step 10's fractions over matrices (weights = ‖ΔW‖_F²): the
    share of the whole MLP update in column vs null space, per side, with the pooled baseline;
    side "informative" pools each matrix on its own informative side (the headline)."""
    out = []
    w = np.asarray(weights, dtype=float)
    total = w.sum()
    for side in ("out", "in", ""):
        rec = {"side": {"out": "output", "in": "input", "": "informative"}[side], "n_matrices": int(len(rows))}
        for col in ("col_frac", "null_frac", "random_col_frac"):
            vals = rows[f"{side}_{col}" if side else col].to_numpy(dtype=float)
            ok = np.isfinite(vals) & (w > 0)
            rec[col] = float((vals[ok] * w[ok]).sum() / w[ok].sum()) if total > 0 and ok.any() else float("nan")
        out.append(rec)
    return out
