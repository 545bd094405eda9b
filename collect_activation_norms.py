"""Steps 4 (collect): per-layer activation norms of two models and the norm of their difference.

Runs model A and model B in lockstep on the forget and retain texts (one shared, cached forward
pass per model and split, see brittle/activations.py) and reports, for every hidden-state layer
(0 = embeddings, last = final-normed output), the mean per-token L1 and L2 norms of each model's
hidden states and the mean per-token norm of their difference ‖h_b − h_a‖. Means are token-
weighted over non-pad tokens; 95 % CIs come from a seeded bootstrap over texts.

    uv run collect_activation_norms.py --model-a models/tiny/tiny-base --model-b models/tiny/tiny-filtered

Writes <output-root>/<a>__vs__<b>/activation_stats/: activation_stats.csv, run_meta.json, _DONE.json.
"""

from __future__ import annotations

import sys

import pandas as pd

from brittle import cli
from brittle.activations import (CaptureConfig, ModelSpec, add_capture_args, cache_root, ensure_captures,
                                 split_texts, step_params)
from brittle.io import StepRun, write_csv
from brittle.stats import ratio_ci


def build_parser():
    p = cli.parser(__doc__)
    cli.add_pair_args(p)
    add_capture_args(p)
    cli.add_runtime_args(p)
    cli.add_output_args(p)
    return p


def body(args, argv) -> int:
    splits = split_texts(args)
    run = StepRun(cli.step_dir(args, "activation_stats", args.model_a, args.model_b),
                  step_params(args, splits), argv)
    if run.should_skip(args.force):
        return 0
    with run.timed("capture"):
        caps = ensure_captures([ModelSpec(args.model_a, args.revision_a), ModelSpec(args.model_b, args.revision_b)],
                               splits, CaptureConfig.from_args(args), cache_root(args), pair=True)
    frames = []
    for k, split in enumerate(splits):
        cap_a, cap_b, pair = caps.models[0][split], caps.models[1][split], caps.pair[split]
        tokens = cap_a.n_tokens
        sums = {"model_a_norm_L1": cap_a.norm_sums[0], "model_a_norm_L2": cap_a.norm_sums[1],
                "model_b_norm_L1": cap_b.norm_sums[0], "model_b_norm_L2": cap_b.norm_sums[1],
                "mean_dh_L1": pair.dh_l1, "mean_dh_L2": pair.dh_l2}
        frame = pd.DataFrame({"layer": range(sums["mean_dh_L1"].shape[1]), "split": split})
        for col, per_text in sums.items():
            # Token-weighted mean = Σ_texts (sum over the text's tokens) / Σ_texts tokens; the same
            # bootstrap seed for every column, so the intervals are over the same resampled texts.
            est, lo, hi = ratio_ci(per_text, tokens[:, None].repeat(per_text.shape[1], 1),
                                   args.n_boot, args.seed + k)
            frame[col], frame[f"{col}_ci_low"], frame[f"{col}_ci_high"] = est, lo, hi
        frame["n_texts"], frame["n_tokens"] = len(tokens), int(tokens.sum())
        frames.append(frame)
    stats = pd.concat(frames, ignore_index=True)
    main_cols = ["layer", "split", "model_a_norm_L1", "model_a_norm_L2", "model_b_norm_L1", "model_b_norm_L2",
                 "mean_dh_L1", "mean_dh_L2"]
    ci_cols = [f"{c}_ci_{s}" for c in main_cols[2:] for s in ("low", "high")]
    write_csv(run.path("activation_stats.csv"), stats[main_cols + ci_cols + ["n_texts", "n_tokens"]])
    run.finish(models={"a": args.model_a, "b": args.model_b}, forward_tokens=caps.forward_tokens)
    print(f"wrote {run.path('activation_stats.csv')}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(lambda args: body(args, argv), build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
