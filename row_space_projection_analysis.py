"""Step 11: do forget-text activations fall in the input directions that the update changed?

For each MLP input matrix (GPT-NeoX dense_h_to_4h, Llama gate_proj and up_proj, GPT-2 c_fc, found
from the model, not by name), ΔW = W_b − W_a is read from the checkpoints (float32, one pair in
memory) and its top-k right singular vectors V_k (input side, the "row space") are taken from the
eigenvectors of ΔWᵀΔW (float64). The fraction of MLP-input activation energy on them,
tr(V_kᵀ M V_k) / tr(M) with M = Σ x xᵀ over all non-pad tokens, is measured on forget and retain
text, with the activations of model A and of model B (both from the shared activation cache).
selectivity_ratio = fraction(forget) / fraction(retain): above 1, the update sits where forget
text puts its energy. random_baseline = k/d is the expected fraction of a random k-dimensional
subspace for any activations. Intervals: 95 % bootstrap over text groups (--moment-groups).

    uv run row_space_projection_analysis.py --model-a models/tiny/tiny-base --model-b models/tiny/tiny-filtered

Writes <output-root>/<a>__vs__<b>/row_space_projection/: row_space_projection.csv,
row_space_projection.png, run_meta.json, _DONE.json.
"""

from __future__ import annotations

import sys

from brittle import cli
from brittle.errors import UserError

STEP = "row_space_projection"


def build_parser(argv=None):
    p = cli.parser(__doc__)
    cli.add_preset_arg(p)
    cli.add_pair_args(p)
    p.add_argument("--top-k", type=cli.positive_int, default=16, help="right singular vectors of ΔW that span the row space")
    cli.add_text_args(p, argv)
    cli.add_capture_args(p)
    cli.add_runtime_args(p)
    cli.add_output_args(p)
    return p


def _matches(checkpoint_name: str, module: str) -> bool:
    """Checkpoint names may carry or drop a wrapper prefix relative to the loaded module path."""
    full = module + ".weight"
    return checkpoint_name == full or checkpoint_name.endswith("." + full) or full.endswith("." + checkpoint_name)


def fractions(inside, total, weights) -> tuple[float, object]:
    """Pooled fraction Σ inside / Σ total over text groups and its bootstrap replicates
    (weights (B, G) @ inside / weights @ total): energies are additive over groups."""
    import numpy as np

    with np.errstate(invalid="ignore", divide="ignore"):
        return float(inside.sum() / total.sum()), (weights @ inside) / (weights @ total)


def body(args, argv) -> int:
    import numpy as np
    import pandas as pd

    from brittle.activation_steps import open_step
    from brittle.io import save_figure, write_csv
    from brittle.metrics.distributions import subspace_energy
    from brittle.metrics.subspaces import top_right_singular_vectors
    from brittle.plotting.activations import row_space
    from brittle.stats import percentile_ci, resample_counts
    from brittle.weights import WeightPairs

    if args.moment_groups < 1:
        raise UserError("row-space projection needs MLP-input moments: use --moment-groups 1 or more")
    opened = open_step(args, argv, STEP)
    if opened is None:
        return 0
    run, caps, splits = opened.run, opened.captures, opened.splits
    meta = caps.models[0]["forget"].meta
    d_in = meta["mlp_input_size"]
    slot_of = {name: slot for slot, names in enumerate(meta["mlp_modules"]) for name in names}
    block_of = {name: block for block, names in zip(meta["mlp_blocks"], meta["mlp_modules"]) for name in names}
    moments = {(m, s): caps.models[i][s].moments("mlp") for i, m in enumerate("ab") for s in splits}
    weights = {s: resample_counts(len(moments[("a", s)]["count"]), args.n_bootstrap, args.seed + k)
               for k, s in enumerate(splits)}
    pairs = WeightPairs(args.model_a, args.model_b, args.revision_a, args.revision_b, matrices_only=True,
                        select=lambda name, shape: any(_matches(name, q) for q in slot_of))
    if len(pairs) == 0:
        raise UserError(f"none of the MLP input matrices {sorted(slot_of)[:3]}... found in the checkpoints")
    rows = []
    with run.timed("projections"):
        for name, w_a, w_b in pairs:
            module = next(q for q in slot_of if _matches(name, q))
            dw = w_b - w_a
            del w_a, w_b
            if dw.shape[1] != d_in and dw.shape[0] == d_in:  # GPT-2 Conv1D stores (in, out)
                dw = dw.T
            basis, rank, energy = top_right_singular_vectors(dw, args.top_k)
            k = basis.shape[1]
            for m in "ab":
                row = {"block": block_of[module], "module": module, "module_kind": module.split(".")[-1],
                       "activations_of": m, "k": k, "d_in": d_in, "random_baseline": k / d_in,
                       "dW_fro": float(dw.norm()), "dW_rank": rank, "dW_top_k_energy": energy}
                frac = {}
                for s in splits:
                    if k:
                        inside, total = subspace_energy(moments[(m, s)]["sq"][:, slot_of[module]].numpy(), basis)
                        frac[s] = fractions(inside, total, weights[s])
                    else:   # ΔW = 0: no row space, no fraction
                        frac[s] = (np.nan, np.full(args.n_bootstrap, np.nan))
                    lo, hi = percentile_ci(frac[s][1])
                    row[f"fraction_{s}"], row[f"fraction_{s}_ci_low"], row[f"fraction_{s}_ci_high"] = frac[s][0], lo, hi
                with np.errstate(invalid="ignore", divide="ignore"):
                    row["selectivity_ratio"] = frac["forget"][0] / frac["retain"][0]
                    lo, hi = percentile_ci(frac["forget"][1] / frac["retain"][1])
                row["selectivity_ratio_ci_low"], row["selectivity_ratio_ci_high"] = lo, hi
                rows.append(row)
    results = pd.DataFrame(rows).sort_values(["block", "module", "activations_of"]).reset_index(drop=True)
    write_csv(run.path("row_space_projection.csv"), results)
    save_figure(run.path("row_space_projection.png"), row_space(results))
    unchanged = int((results["dW_fro"] == 0).sum() // 2)
    if unchanged:
        print(f"note: {unchanged} MLP input matrices are identical in A and B (fractions are NaN there)")
    run.finish(models={"a": args.model_a, "b": args.model_b}, forward_tokens=caps.forward_tokens,
               modules=len(results) // 2)
    print(f"wrote {run.outdir}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(lambda args: body(args, argv), build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
