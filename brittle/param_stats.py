"""Step 1's tables: per-matrix statistics of ΔW = W_b − W_a and their per-layer aggregates.

``matrix_row`` turns one streamed pair into one row of ``per_matrix.csv``; ``per_layer`` groups
those rows into ``per_layer.csv``. Column names follow the seed's CSV reference, with the
block a matrix belongs to in ``block`` (empty outside the blocks); beyond it, ``W_cosine``
(relatedness of W_a and W_b) and ``dW_zero_frac`` (entries of ΔW that are exactly 0). Columns
starting with ``_`` are bookkeeping for the aggregates and are not written (docs/columns.md).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from brittle.metrics import linalg, rowblocks
from brittle.models import classify_param
from brittle.stats import safe_ratio

ENERGY = 0.99  # empirical rank: fewest singular directions holding 99 % of ‖·‖_F²

PER_MATRIX_COLUMNS = ["name", "block", "group", "shape0", "shape1", "dW_fro", "W_fro", "dW_fro_rel",
                      "dW_spectral", "W_spectral", "dW_spectral_rel", "dW_stable_rank", "W_stable_rank"]
EMPIRICAL_COLUMNS = ["dW_empirical_rank", "W_empirical_rank"]
EXTRA_COLUMNS = ["W_cosine", "dW_zero_frac"]


def matrix_row(name: str, w_a: torch.Tensor, w_b: torch.Tensor, empirical_rank: bool = False,
               tol: float = linalg.SPECTRAL_TOL) -> dict:
    """Statistics of one matrix pair. ``w_a``, ``w_b``: (m, n) float32; **``w_b`` is overwritten
    with ΔW** (in place, so only two matrices are ever alive). W in the ``W_*`` columns is W_a.

    With ``empirical_rank`` the full spectra are computed (Gram eigenvalues) and σ₁ is read from
    them; otherwise σ₁ comes from ARPACK to relative tolerance ``tol`` on σ₁².
    """
    norms = norms_in_place(w_a, w_b)
    return assemble_row(name, tuple(w_a.shape), norms, spectrum(w_a, empirical_rank, tol),
                        spectrum(w_b, empirical_rank, tol))


def norms_in_place(w_a: torch.Tensor, w_b: torch.Tensor) -> dict:
    """‖W_a‖_F, ‖W_b‖_F, ‖ΔW‖_F and ΔW's exact-zero share of two (m, n) float32 matrices;
    **``w_b`` becomes ΔW** (in place)."""
    fro_a, fro_b = linalg.frobenius(w_a), linalg.frobenius(w_b)
    dw = w_b.sub_(w_a)
    return {"fro_a": fro_a, "fro_b": fro_b, "fro_d": linalg.frobenius(dw), "zero_frac": linalg.zero_fraction(dw)}


def blocked_norms(a: torch.Tensor, b: torch.Tensor, rows: int, check=None) -> dict:
    """:func:`norms_in_place` of stored (m, n) tensors ``a``, ``b`` (any float dtype, not modified),
    upcast ``rows`` rows at a time: the squares of the blocks' float32 norms add up in float64.
    ``check(block, which)`` (which: "a" or "b") is called on every float32 block before use."""
    sq = {"a": 0.0, "b": 0.0, "d": 0.0}
    zeros = 0
    for _, block_a, block_b in rowblocks.pair_blocks(a, b, rows):
        if check is not None:
            check(block_a, "a")
            check(block_b, "b")
        sq["a"] += float(torch.linalg.vector_norm(block_a)) ** 2
        sq["b"] += float(torch.linalg.vector_norm(block_b)) ** 2
        dw = block_b.sub_(block_a)
        sq["d"] += float(torch.linalg.vector_norm(dw)) ** 2
        zeros += dw.numel() - int(torch.count_nonzero(dw))
    n = a.numel()
    return {"fro_a": math.sqrt(sq["a"]), "fro_b": math.sqrt(sq["b"]), "fro_d": math.sqrt(sq["d"]),
            "zero_frac": zeros / n if n else float("nan")}


def spectrum(w: torch.Tensor | rowblocks.RowBlocks, empirical_rank: bool,
             tol: float = linalg.SPECTRAL_TOL) -> tuple[float, torch.Tensor | None]:
    """(σ₁, all σ_i² descending or None) of a float32 (m, n) matrix or of its row blocks: the Gram
    eigenvalues with ``empirical_rank`` (σ₁ read from them), else σ₁ alone by ARPACK."""
    blocked = isinstance(w, rowblocks.RowBlocks)
    if empirical_rank:
        ev = rowblocks.blocked_gram_eigenvalues(w) if blocked else linalg.gram_eigenvalues(w)
        return math.sqrt(float(ev[0])), ev
    return (rowblocks.blocked_spectral_norm(w, tol=tol) if blocked else linalg.spectral_norm(w, tol=tol)), None


def assemble_row(name: str, shape: tuple[int, int], norms: dict, spec_a: tuple, spec_d: tuple) -> dict:
    """One ``per_matrix.csv`` row from :func:`norms_in_place` (or :func:`blocked_norms`) and the
    :func:`spectrum` of W_a and of ΔW."""
    block, group = classify_param(name)
    (s_a, ev_a), (s_d, ev_d) = spec_a, spec_d
    fro_a, fro_b, fro_d = norms["fro_a"], norms["fro_b"], norms["fro_d"]
    row: dict = {"name": name, "block": block, "group": group, "shape0": int(shape[0]), "shape1": int(shape[1]),
                 "dW_fro": fro_d, "W_fro": fro_a, "dW_fro_rel": safe_ratio(fro_d, fro_a),
                 "dW_spectral": s_d, "W_spectral": s_a, "dW_spectral_rel": safe_ratio(s_d, s_a),
                 "dW_stable_rank": linalg.stable_rank(fro_d, s_d),
                 "W_stable_rank": linalg.stable_rank(fro_a, s_a)}
    if ev_a is not None:
        row["dW_empirical_rank"] = linalg.energy_rank(ev_d, ENERGY)
        row["W_empirical_rank"] = linalg.energy_rank(ev_a, ENERGY)
    row["W_cosine"] = linalg.cosine_from_norms(fro_a, fro_b, fro_d)
    row["dW_zero_frac"] = norms["zero_frac"]
    row["_Wb_fro"] = fro_b
    row["_numel"] = int(shape[0]) * int(shape[1])
    return row


def per_matrix_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows of :func:`matrix_row` as a DataFrame in the documented column order (``_`` columns last)."""
    df = pd.DataFrame(rows)
    df["block"] = df["block"].astype("Int64")   # integers, empty outside the blocks
    cols = PER_MATRIX_COLUMNS + [c for c in EMPIRICAL_COLUMNS if c in df] + EXTRA_COLUMNS
    return df[cols + [c for c in df.columns if c.startswith("_")]]


def public(df: pd.DataFrame) -> pd.DataFrame:
    """The frame without its bookkeeping (``_``) columns: what goes into the CSV."""
    return df[[c for c in df.columns if not c.startswith("_")]]


def per_layer(df: pd.DataFrame) -> pd.DataFrame:
    """Aggregate per (block, group), weights outside the blocks in one group of their own:
    root-sum-square Frobenius norms, max spectral norms, mean
    stable rank (NaN ranks of zero ΔW skipped), matrix count; the cosine of the concatenated
    weights Σ⟨W_a, W_b⟩ / sqrt(Σ‖W_a‖² Σ‖W_b‖²) and the pooled zero fraction when the
    bookkeeping columns are present."""
    out = []
    for (block, group), g in df.groupby(["block", "group"], sort=True, dropna=False):
        dw_fro = float(np.sqrt((g["dW_fro"] ** 2).sum()))
        w_fro = float(np.sqrt((g["W_fro"] ** 2).sum()))
        max_d, max_w = float(g["dW_spectral"].max()), float(g["W_spectral"].max())
        rec = {"block": block, "group": group, "dW_fro_layer": dw_fro, "W_fro_layer": w_fro,
               "dW_fro_layer_rel": safe_ratio(dw_fro, w_fro), "max_dW_spectral": max_d, "max_W_spectral": max_w,
               "max_dW_spectral_rel": safe_ratio(max_d, max_w),
               "mean_dW_stable_rank": _nanmean(g["dW_stable_rank"])}
        if "dW_empirical_rank" in g:
            rec["mean_dW_empirical_rank"] = float(g["dW_empirical_rank"].mean())
        rec["count_mats"] = len(g)
        if "_Wb_fro" in g:
            dot = ((g["W_fro"] ** 2 + g["_Wb_fro"] ** 2 - g["dW_fro"] ** 2) / 2).sum()
            rec["W_cosine_layer"] = safe_ratio(float(dot), w_fro * float(np.sqrt((g["_Wb_fro"] ** 2).sum())))
            rec["dW_zero_frac_layer"] = float((g["dW_zero_frac"] * g["_numel"]).sum() / g["_numel"].sum())
        out.append(rec)
    table = pd.DataFrame(out)
    table["block"] = table["block"].astype("Int64")
    return table


def _nanmean(s: pd.Series) -> float:
    s = s.dropna()
    return float(s.mean()) if len(s) else float("nan")


def relatedness_summary(df: pd.DataFrame) -> dict:
    """Whole-model relatedness of W_a and W_b (over every matrix) and ΔW's exact-zero share.

    ``cosine``: ⟨W_a, W_b⟩ / (‖W_a‖‖W_b‖) over all matrices concatenated; ``fro_rel``:
    ‖ΔW‖/‖W_a‖ (unrelated equal-norm weights give ≈ √2); ``changed_zero_frac``: share of exact
    zeros in ΔW over the matrices that changed at all (unchanged ones are frozen, not rounded).
    """
    wa2, wb2, d2 = (df["W_fro"] ** 2).sum(), (df["_Wb_fro"] ** 2).sum(), (df["dW_fro"] ** 2).sum()
    changed = df[df["dW_fro"] > 0]
    zeros = float((changed["dW_zero_frac"] * changed["_numel"]).sum() / changed["_numel"].sum()) \
        if len(changed) else float("nan")
    return {
        "cosine": safe_ratio(float(wa2 + wb2 - d2) / 2, float(np.sqrt(wa2 * wb2))),
        "fro_rel": safe_ratio(float(np.sqrt(d2)), float(np.sqrt(wa2))),
        "n_matrices": int(len(df)), "n_changed": int(len(changed)),
        "changed_zero_frac": zeros,
    }


def describe_relatedness(summary: dict) -> str:
    """One-line reading of :func:`relatedness_summary` for the console and run_meta.json."""
    cos = summary["cosine"]
    if math.isnan(cos):
        kind = "undefined (zero weights)"
    elif cos > 0.9:
        kind = "B is a modification of A: ΔW can be read as an intervention"
    elif cos < 0.3:
        kind = ("A and B are essentially unrelated weight sets (e.g. trained separately from scratch): "
                "ΔW is not an edit; compare magnitudes and ranks, not directions")
    else:
        kind = "A and B share part of their weights: read ΔW directions with care"
    return (f"relatedness cos(W_a, W_b) = {cos:.4f}, ||dW||/||W_a|| = {summary['fro_rel']:.4f} "
            f"(unrelated equal-norm weights give 0 and 1.414): {kind}")
