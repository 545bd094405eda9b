"""Representation similarity: how alike are A's and B's hidden states on the same tokens (linear CKA)?

For every hidden state with cross-moments in the cache (--moment-layers: all of them unless the
model has more than 7 hidden states; 0 = embeddings, i = output of block i-1, the last after the
final norm) and split, linear CKA between model A's and model B's states over all non-pad tokens:
CKA = ‖XᵀY‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) on centred states (Kornblith et al. 2019), 1 when B's
representation is A's up to rotation and scale. "Unlearning isn't deletion" (ICML 2026) reads a
CKA near 1 on forget text as the knowledge still being there, reversibly hidden.

Computed from the shared activation cache (no forward pass when it is filled): each model's
moments and the pair's cross-moments Σ h_a h_bᵀ per text group. Beside every value: a 95 %
bootstrap interval over text groups (--moment-groups) and the permutation null, what CKA would be
with the token pairing destroyed (a floor, about d_eff/N). Read the forget value beside the retain
value of the same pair (untouched text) and beside base → filtered (a model that never learned the
domain); 1 − CKA is the part of the representation that changed.

    uv run representation_similarity_analysis.py --model-a models/tiny/tiny-base --model-b models/tiny/tiny-filtered

Writes <output-root>/<a>__vs__<b>/representation_similarity/: representation_similarity.csv,
representation_similarity_summary.csv, representation_similarity.png, run_meta.json, _DONE.json
(columns: docs/columns.md, or `uv run python -m brittle.steps show representation_similarity`).
"""

from __future__ import annotations

import sys

from brittle import cli
from brittle.errors import UserError

STEP = "representation_similarity"


def build_parser(argv=None):
    p = cli.parser(__doc__)
    cli.add_preset_arg(p)
    cli.add_pair_args(p)
    cli.add_text_args(p, argv)
    cli.add_capture_args(p)
    cli.add_runtime_args(p)
    cli.add_output_args(p)
    return p


def body(args, argv) -> int:
    import numpy as np
    import pandas as pd
    from tqdm.auto import tqdm

    from brittle.activation_steps import open_step
    from brittle.io import model_slug, save_figure, write_csv
    from brittle.metrics.cka import grouped_linear_cka
    from brittle.plotting.activations import cka_curves
    from brittle.stats import percentile_ci, resample_counts

    if args.moment_groups < 1:
        raise UserError("CKA needs moments: use --moment-groups 1 or more")
    opened = open_step(args, argv, STEP)
    if opened is None:
        return 0
    run, caps, splits = opened.run, opened.captures, opened.splits
    n_states = caps.models[0]["forget"].meta["n_hidden_states"]
    # Cross-moments exist at the moment layers only (--moment-layers); the others are named, never filled in.
    layers = caps.pair["forget"].meta["moment_layers"]
    skipped = sorted(set(range(n_states)) - set(layers))
    if skipped:
        print(f"note: hidden states {','.join(map(str, skipped))} have no cross-moments "
              f"(--moment-layers {args.moment_layers}): no CKA rows for them; min and mean are over "
              f"{','.join(map(str, layers))}")
    rows, summary = [], []
    with run.timed("cka"):
        for k, s in enumerate(splits):
            counts = caps.pair[s].cross_moments(layers[0])["count"].numpy()
            # The same groups in both models and the pair (one partition of the same texts), so one
            # resampling of the groups per split serves every hidden state: the minimum over
            # hidden states is then taken inside each replicate.
            weights = resample_counts(len(counts), args.n_bootstrap, args.seed + k)
            reps = np.full((args.n_bootstrap, n_states), np.nan)
            for index in tqdm(layers, desc=f"cka {s}", leave=False):
                a, b = caps.models[0][s].moments("hidden", index), caps.models[1][s].moments("hidden", index)
                cross = caps.pair[s].cross_moments(index)
                if not (np.array_equal(a["count"], cross["count"]) and np.array_equal(b["count"], cross["count"])):
                    raise UserError(f"the cached groups of {s} texts differ between the models and the pair "
                                    f"({caps.pair[s].path}); remove that entry and rerun")
                moments = (cross["count"], a["sum"], b["sum"], a["sq"], b["sq"], cross["cross"])
                point = grouped_linear_cka(*moments)
                boot = grouped_linear_cka(*moments, weights=weights)
                reps[:, index] = boot["cka"]
                lo, hi = percentile_ci(boot["cka"])
                rows.append({"hidden_state": index, "split": s, "n_tokens": int(counts.sum()), "cka": point["cka"],
                             "cka_ci_low": float(lo), "cka_ci_high": float(hi), "cka_null": point["null"]})
            table = pd.DataFrame([r for r in rows if r["split"] == s])
            worst = int(table["cka"].idxmin())
            lo, hi = percentile_ci(np.nanmin(reps, axis=1))
            summary.append({"split": s, "min_cka": float(table["cka"].min()), "min_cka_ci_low": float(lo),
                            "min_cka_ci_high": float(hi), "min_cka_hidden_state": int(table.loc[worst, "hidden_state"]),
                            "mean_cka": float(table["cka"].mean()), "max_cka_null": float(table["cka_null"].max()),
                            "n_groups": len(counts), "n_tokens": int(counts.sum())})
    table, summary = pd.DataFrame(rows), pd.DataFrame(summary)
    write_csv(run.path("representation_similarity.csv"), table)
    write_csv(run.path("representation_similarity_summary.csv"), summary)
    save_figure(run.path("representation_similarity.png"),
                cka_curves(table, model_slug(args.model_a), model_slug(args.model_b)))
    run.finish(models={"a": args.model_a, "b": args.model_b}, forward_tokens=caps.forward_tokens,
               **({"hidden_states_without_moments": skipped} if skipped else {}),
               cka="linear CKA over non-pad tokens from cached group moments (brittle/metrics/cka.py)")
    print(summary.to_string(index=False))
    print(f"wrote {run.outdir}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(body, build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
