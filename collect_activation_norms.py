"""Step 4 (collect): per-hidden-state activation norms of two models and the norm of their difference.

Runs model A and model B in lockstep on the forget and retain texts (one shared, cached forward
pass per model and split, see brittle/capture/) and reports, for every hidden state (0 =
embeddings, i = output of block i-1, the last after the final norm), the mean per-token L1 and L2
norms of each model's hidden states and the mean per-token norm of their difference ‖h_b − h_a‖.
Means are token-weighted over non-pad tokens; 95 % intervals come from a seeded bootstrap over texts.

    uv run collect_activation_norms.py --model-a models/tiny/tiny-base --model-b models/tiny/tiny-filtered

Writes <output-root>/<a>__vs__<b>/activation_stats/: activation_stats.csv, run_meta.json, _DONE.json
(columns: docs/columns.md, or `uv run python -m brittle.steps show activation_stats`).
"""

from __future__ import annotations

import sys

from brittle import cli

STEP = "activation_stats"
NORMS = {"model_a_norm_L1": (0, 0), "model_a_norm_L2": (0, 1), "model_b_norm_L1": (1, 0), "model_b_norm_L2": (1, 1)}


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
    import pandas as pd

    from brittle.activation_steps import open_step
    from brittle.io import write_csv
    from brittle.stats import ratio_ci

    opened = open_step(args, argv, STEP)
    if opened is None:
        return 0
    run, caps = opened.run, opened.captures
    frames = []
    for k, split in enumerate(opened.splits):
        models, pair = [caps.models[0][split], caps.models[1][split]], caps.pair[split]
        tokens = models[0].n_tokens
        sums = {col: models[m].norm_sums[norm] for col, (m, norm) in NORMS.items()}
        sums.update(mean_dh_L1=pair.dh_l1, mean_dh_L2=pair.dh_l2)
        frame = pd.DataFrame({"hidden_state": range(pair.dh_l1.shape[1]), "split": split})
        for col, per_text in sums.items():
            # Token-weighted mean = Σ_texts (sum over the text's tokens) / Σ_texts tokens; the same
            # bootstrap seed for every column, so the intervals are over the same resampled texts.
            est, lo, hi = ratio_ci(per_text, tokens[:, None].repeat(per_text.shape[1], 1),
                                   args.n_bootstrap, args.seed + k)
            frame[col], frame[f"{col}_ci_low"], frame[f"{col}_ci_high"] = est, lo, hi
        frame["n_texts"], frame["n_tokens"] = len(tokens), int(tokens.sum())
        frames.append(frame)
    # The seed's column order: the estimates first, then their intervals.
    ci_cols = [f"{c}_ci_{end}" for c in sums for end in ("low", "high")]
    stats = pd.concat(frames, ignore_index=True)
    write_csv(run.path("activation_stats.csv"), stats[["hidden_state", "split", *sums, *ci_cols, "n_texts", "n_tokens"]])
    run.finish(models={"a": args.model_a, "b": args.model_b}, forward_tokens=caps.forward_tokens)
    print(f"wrote {run.outdir / 'activation_stats.csv'}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(body, build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
