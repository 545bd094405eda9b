"""Step 13: where is the forget/retain distinction linearly readable in one model?

For each hidden-state layer (0 = embeddings, last = final-normed output) a logistic-regression
probe classifies the last non-pad token's state of a text as forget (1) or retain (0). Scores are
out of fold (stratified 5-fold), so accuracy and AUC are held out; selectivity = accuracy minus
the majority-class rate. A control probe trained on shuffled labels shows what chance gives on
these very features. 95 % CIs: seeded bootstrap over texts of the held-out scores. States come
from the shared activation cache (no forward pass if a comparison step already ran the model).

    uv run linear_probe_analysis.py --model models/tiny/tiny-base

Writes <output-root>/<model>/linear_probes/: probe_results.csv, summary.json, probe_results.png,
run_meta.json, _DONE.json.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from brittle import cli
from brittle.activations import (CaptureConfig, ModelSpec, add_capture_args, cache_root, ensure_captures,
                                 split_texts, step_params)
from brittle.io import StepRun, model_slug, save_figure, write_csv, write_json
from brittle.plotting.activations import probe_results
from brittle.probes import out_of_fold_scores, probe_metric_cis, probe_metrics


def build_parser():
    p = cli.parser(__doc__)
    p.add_argument("--model", required=True, help="model to probe: Hub id or local folder")
    p.add_argument("--revision", default=None, help="Hub revision")
    p.add_argument("--C", type=float, default=1.0, help="inverse L2 regularisation strength of the probe")
    p.add_argument("--max-iter", type=int, default=1000, help="solver iterations of the probe")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    add_capture_args(p)
    cli.add_runtime_args(p)
    cli.add_output_args(p)
    return p


def body(args, argv) -> int:
    splits = split_texts(args)
    run = StepRun(cli.step_dir(args, "linear_probes", args.model), step_params(args, splits), argv)
    if run.should_skip(args.force):
        return 0
    with run.timed("capture"):
        caps = ensure_captures([ModelSpec(args.model, args.revision)], splits, CaptureConfig.from_args(args),
                               cache_root(args))
    forget, retain = caps.models[0]["forget"].last_token, caps.models[0]["retain"].last_token
    y = np.r_[np.ones(len(forget), int), np.zeros(len(retain), int)]
    shuffled = np.random.default_rng(args.seed).permutation(y)
    rows = []
    with run.timed("probes"):
        for layer in range(forget.shape[1]):
            x = np.concatenate([forget[:, layer], retain[:, layer]]).astype(np.float64)
            fit = dict(c=args.C, max_iter=args.max_iter, folds=args.folds, seed=args.seed)
            scores = out_of_fold_scores(x, y, **fit)
            row = {"layer": layer, "n_forget": len(forget), "n_retain": len(retain), **probe_metrics(y, scores)}
            for name, (lo, hi) in probe_metric_cis(y, scores, args.n_boot, args.seed + layer).items():
                row[f"{name}_ci_low"], row[f"{name}_ci_high"] = lo, hi
            row["auc_shuffled_labels"] = probe_metrics(shuffled, out_of_fold_scores(x, shuffled, **fit))["auc"]
            rows.append(row)
    results = pd.DataFrame(rows)
    cols = ["layer", "n_forget", "n_retain", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "majority_baseline",
            "selectivity", "selectivity_ci_low", "selectivity_ci_high", "auc", "auc_ci_low", "auc_ci_high",
            "auc_shuffled_labels"]
    write_csv(run.path("probe_results.csv"), results[cols])
    best = results.loc[results["auc"].idxmax()]
    write_json(run.path("summary.json"), {
        "model": args.model, "n_forget": len(forget), "n_retain": len(retain), "n_layers": len(results),
        "probe": {"C": args.C, "max_iter": args.max_iter, "folds": args.folds, "features": "last non-pad token state"},
        "best_layer_by_auc": int(best["layer"]), "best_auc": float(best["auc"]),
        "best_auc_ci": [float(best["auc_ci_low"]), float(best["auc_ci_high"])],
        "best_layer_by_selectivity": int(results.loc[results["selectivity"].idxmax(), "layer"]),
        "max_selectivity": float(results["selectivity"].max()),
        "mean_auc": float(results["auc"].mean()), "max_auc_shuffled_labels": float(results["auc_shuffled_labels"].max()),
    })
    save_figure(run.path("probe_results.png"), probe_results(results, model_slug(args.model)))
    run.finish(model=args.model, forward_tokens=caps.forward_tokens)
    print(f"wrote {run.outdir} (best layer {int(best['layer'])}, AUC {best['auc']:.3f})")
    return 0


def main(argv=None) -> int:
    return cli.run_main(lambda args: body(args, argv), build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
