"""Step 6's tables: how ΔW divides between MLP and attention, per block and overall.

Input is step 1's ``per_layer.csv``. Ratios are formed from pooled norms (root-sum-square over the
matrices of a group), never by averaging per-matrix ratios; energy shares (‖ΔW‖² of MLP over
‖ΔW‖² of MLP + attention) come with their baseline, the MLP share of ‖W‖², which is what a
change proportional to W everywhere would give.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brittle.stats import safe_ratio


def by_block(per_layer: pd.DataFrame) -> pd.DataFrame:
    """One row per transformer block with both an attn and an mlp group.

    Columns: block; attn_dW_fro_rel, mlp_dW_fro_rel (‖ΔW‖/‖W‖ pooled over the group);
    mlp_attn_ratio = mlp_dW_fro_rel / attn_dW_fro_rel (> 1: MLP changed more, relative to its size);
    attn_max_dW_spectral_rel, mlp_max_dW_spectral_rel, mlp_attn_spectral_ratio;
    mlp_dW_energy_share = ‖ΔW_mlp‖² / (‖ΔW_mlp‖² + ‖ΔW_attn‖²) and its baseline mlp_W_energy_share.
    """
    blocks = per_layer[per_layer["block"].notna() & per_layer["group"].isin(["attn", "mlp"])]
    wide = blocks.pivot(index="block", columns="group")
    if "attn" not in wide.columns.get_level_values(1) or "mlp" not in wide.columns.get_level_values(1):
        return pd.DataFrame()
    wide = wide.dropna(subset=[("dW_fro_layer", "attn"), ("dW_fro_layer", "mlp")])
    d_attn, d_mlp = wide[("dW_fro_layer", "attn")], wide[("dW_fro_layer", "mlp")]
    w_attn, w_mlp = wide[("W_fro_layer", "attn")], wide[("W_fro_layer", "mlp")]
    out = pd.DataFrame({
        "block": wide.index.astype(int),
        "attn_dW_fro_rel": safe_ratio(d_attn, w_attn),
        "mlp_dW_fro_rel": safe_ratio(d_mlp, w_mlp),
    })
    out["mlp_attn_ratio"] = safe_ratio(out["mlp_dW_fro_rel"], out["attn_dW_fro_rel"])
    out["attn_max_dW_spectral_rel"] = wide[("max_dW_spectral_rel", "attn")].to_numpy()
    out["mlp_max_dW_spectral_rel"] = wide[("max_dW_spectral_rel", "mlp")].to_numpy()
    out["mlp_attn_spectral_ratio"] = safe_ratio(out["mlp_max_dW_spectral_rel"], out["attn_max_dW_spectral_rel"])
    out["mlp_dW_energy_share"] = safe_ratio(d_mlp ** 2, d_mlp ** 2 + d_attn ** 2)
    out["mlp_W_energy_share"] = safe_ratio(w_mlp ** 2, w_mlp ** 2 + w_attn ** 2)
    return out.reset_index(drop=True)


def summary(per_layer: pd.DataFrame, by_blocks: pd.DataFrame) -> pd.DataFrame:
    """One row over all transformer blocks: pooled relative change of each group, their ratio,
    MLP energy share against its W baseline, how many blocks have mlp_attn_ratio > 1, and the
    blocks where each group changed most (relative)."""
    blocks = per_layer[per_layer["block"].notna() & per_layer["group"].isin(["attn", "mlp"])]
    pooled = {}
    for group in ("attn", "mlp"):
        g = blocks[blocks["group"] == group]
        pooled[group] = (float((g["dW_fro_layer"] ** 2).sum()), float((g["W_fro_layer"] ** 2).sum()))
    (da, wa), (dm, wm) = pooled["attn"], pooled["mlp"]
    attn_rel, mlp_rel = safe_ratio(np.sqrt(da), np.sqrt(wa)), safe_ratio(np.sqrt(dm), np.sqrt(wm))
    finite = by_blocks[np.isfinite(by_blocks["mlp_attn_ratio"])]
    return pd.DataFrame([{
        "n_blocks": len(by_blocks),
        "attn_dW_fro_rel": attn_rel, "mlp_dW_fro_rel": mlp_rel,
        "mlp_attn_ratio": safe_ratio(mlp_rel, attn_rel),
        "mlp_dW_energy_share": safe_ratio(dm, dm + da), "mlp_W_energy_share": safe_ratio(wm, wm + wa),
        "n_blocks_mlp_dominant": int((finite["mlp_attn_ratio"] > 1).sum()),
        "top_block_mlp": int(by_blocks.loc[by_blocks["mlp_dW_fro_rel"].idxmax(), "block"]) if len(by_blocks) else None,
        "top_block_attn": int(by_blocks.loc[by_blocks["attn_dW_fro_rel"].idxmax(), "block"]) if len(by_blocks) else None,
    }])
