"""Step 11: do forget-text activations fall in the input directions that the update changed?

For every MLP matrix, found from the model, not by name: the input matrices (GPT-NeoX
dense_h_to_4h, Llama gate_proj and up_proj, GPT-2 c_fc; mlp_role "input", reading the block's MLP
input, width d) and the output projections (dense_4h_to_h, down_proj, GPT-2's MLP c_proj; mlp_role
"output", reading the intermediate activations, width d_ff; the only matrices RMU trains).
ΔW = W_b − W_a is read from the checkpoints (float32, one pair in memory) and its top-k right
singular vectors V_k (input side, the "row space") taken from the smaller Gram matrix (float64),
k capped at the numerical rank (σ_i > σ₁·max(shape)·ε_float32, as numpy's matrix_rank). The
fraction of input energy on them, tr(V_kᵀ M V_k) / tr(M) with M = Σ x xᵀ over all non-pad tokens,
is measured on forget and retain text, with the activations of model A and of model B. For the
input matrices M comes from the shared activation cache; the output projections' M would be
d_ff × d_ff per layer and group (1 GB each at the 6.9B layout), so one more pass per (model,
split) accumulates only Σ‖V_kᵀx‖² and Σ‖x‖² per text group instead. The same pass serves the
input matrices of blocks whose MLP input has no cached moments (--moment-layers; every block has
them unless the model has more than 6 blocks): the same quantity, computed token by token.
selectivity_ratio = fraction(forget) / fraction(retain): above 1, the update sits where forget
text puts its energy. random_baseline = k/d_in is the expected fraction of a random k-dimensional
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
    p.add_argument("--top-k", type=cli.positive_int, default=16,
                   help="right singular vectors of ΔW that span the row space (per MLP matrix)")
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


def _matrix_row(n_bootstrap: int, weights: dict, energy: dict | None, **fixed) -> dict:
    """One CSV row: ``fixed`` columns plus each split's fraction and the selectivity, with their
    intervals; ``energy`` is ``{split: (inside (G,), total (G,))}``, None where k = 0."""
    import numpy as np

    from brittle.stats import percentile_ci

    row, frac = dict(fixed), {}
    for s, w in weights.items():
        # ΔW = 0: no row space, no fraction
        frac[s] = fractions(*energy[s], w) if energy else (np.nan, np.full(n_bootstrap, np.nan))
        lo, hi = percentile_ci(frac[s][1])
        row[f"fraction_{s}"], row[f"fraction_{s}_ci_low"], row[f"fraction_{s}_ci_high"] = frac[s][0], lo, hi
    with np.errstate(invalid="ignore", divide="ignore"):
        row["selectivity_ratio"] = frac["forget"][0] / frac["retain"][0]
        row["selectivity_ratio_ci_low"], row["selectivity_ratio_ci_high"] = percentile_ci(
            frac["forget"][1] / frac["retain"][1])
    return row


def body(args, argv) -> int:
    import pandas as pd
    import torch

    from brittle.activation_steps import open_step
    from brittle.capture import CaptureConfig, ModelSpec, input_energies
    from brittle.io import save_figure, write_csv
    from brittle.metrics.distributions import subspace_energy
    from brittle.metrics.subspaces import top_right_singular_vectors
    from brittle.models import io_features, mlp_output_linears, model_skeleton
    from brittle.plotting.activations import row_space
    from brittle.stats import resample_counts
    from brittle.weights import WeightPairs

    if args.moment_groups < 1:
        raise UserError("row-space projection needs MLP-input moments: use --moment-groups 1 or more")
    opened = open_step(args, argv, STEP)
    if opened is None:
        return 0
    run, caps, splits = opened.run, opened.captures, opened.splits
    meta = caps.models[0]["forget"].meta
    slot_of = {name: slot for slot, names in enumerate(meta["mlp_modules"]) for name in names}
    block_of = {name: block for block, names in zip(meta["mlp_blocks"], meta["mlp_modules"]) for name in names}
    # The MLP output projections, found by structure on a weightless skeleton of A: their inputs
    # (width d_ff) are not in the cache, so their energies come from a pass of their own below.
    with run.timed("module discovery"):   # mostly transformers' one-time import of the model code
        skeleton = model_skeleton(args.model_a, args.revision_a, args.trust_remote_code)
        outputs = {name: (block, io_features(mod)) for block, name, mod in mlp_output_linears(skeleton)}
        del skeleton
    block_of.update({name: block for name, (block, _) in outputs.items()})
    # MLP-input moments exist for the blocks that read a moment layer (--moment-layers); the input
    # matrices of the other blocks join the output projections' pass below, so every matrix has its row.
    cached = set(caps.models[0]["forget"].moment_index("mlp"))
    weights = {s: resample_counts(caps.models[0][s].meta["moment_groups_written"], args.n_bootstrap, args.seed + k)
               for k, s in enumerate(splits)}
    pairs = WeightPairs(args.model_a, args.model_b, args.revision_a, args.revision_b, matrices_only=True,
                        select=lambda name, shape: any(_matches(name, q) for q in block_of))
    spaces = {}   # module -> (V_k (d_in, k), rank, top-k energy share, ‖ΔW‖_F, d_in)
    with run.timed("row spaces"):
        for name, w_a, w_b in pairs:
            module = next(q for q in block_of if _matches(name, q))
            dw = w_b - w_a
            del w_a, w_b
            d_in = outputs[module][1][0] if module in outputs else meta["mlp_input_size"]
            if dw.shape[1] != d_in and dw.shape[0] == d_in:  # GPT-2 Conv1D stores (in, out)
                dw = dw.T
            spaces[module] = (*top_right_singular_vectors(dw, args.top_k), float(dw.norm()), d_in)
    missing = sorted(set(block_of) - set(spaces))
    if missing:
        raise UserError(f"{len(missing)} MLP matrices not found in the checkpoints, e.g. {missing[0]}")
    # (model, split) -> {module: (inside (G,), total (G,))}; the input matrices' from the cached
    # moments, one slot at a time (memory-mapped: one d × d in memory)
    energies = {(m, s): {} for m in "ab" for s in splits}
    for slot in sorted(cached):
        modules = [q for q in slot_of if slot_of[q] == slot and spaces[q][0].shape[1]]
        for i, m in enumerate("ab"):
            for s in splits:
                sq = caps.models[i][s].moments("mlp", slot)["sq"].numpy() if modules else None
                energies[(m, s)].update({q: subspace_energy(sq, spaces[q][0]) for q in modules})
    # One pass per (model, split) projects every changed output projection's input x on V_k as it
    # streams: Σ‖V_kᵀx‖² and Σ‖x‖² per group, never a d_ff × d_ff moment; the same for the input
    # matrices of blocks without cached moments.
    wide = {q: torch.from_numpy(spaces[q][0]) for q in [*outputs, *(q for q in slot_of if slot_of[q] not in cached)]
            if spaces[q][0].shape[1]}
    if wide:
        with run.timed("output projection pass"):
            found = input_energies([ModelSpec(args.model_a, args.revision_a), ModelSpec(args.model_b, args.revision_b)],
                                   splits, wide, CaptureConfig.from_args(args))
        for i, m in enumerate("ab"):
            for s in splits:
                inside, total = found[i][s]
                assert inside.shape[0] == weights[s].shape[1], "the pass groups texts as the cache does"
                energies[(m, s)].update({q: (inside[:, j], total[:, j]) for j, q in enumerate(wide)})
    rows = []
    for module, (basis, rank, energy, fro, d_in) in spaces.items():
        k = basis.shape[1]
        for m in "ab":
            energy_of = {s: energies[(m, s)][module] for s in splits} if k else None
            rows.append(_matrix_row(args.n_bootstrap, weights, energy_of, block=block_of[module], module=module,
                                    module_kind=module.split(".")[-1],
                                    mlp_role="output" if module in outputs else "input", activations_of=m, k=k,
                                    d_in=d_in, random_baseline=k / d_in, dW_fro=fro, dW_rank=rank,
                                    dW_top_k_energy=energy))
    results = pd.DataFrame(rows).sort_values(["block", "mlp_role", "module", "activations_of"]).reset_index(drop=True)
    write_csv(run.path("row_space_projection.csv"), results)
    save_figure(run.path("row_space_projection.png"), row_space(results))
    unchanged = int((results["dW_fro"] == 0).sum() // 2)
    if unchanged:
        print(f"note: {unchanged} MLP matrices are identical in A and B (fractions are NaN there)")
    run.finish(models={"a": args.model_a, "b": args.model_b}, forward_tokens=caps.forward_tokens,
               modules=len(results) // 2)
    print(f"wrote {run.outdir}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(body, build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
