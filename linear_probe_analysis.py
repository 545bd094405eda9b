"""Step 13: where is the forget/retain distinction linearly readable in one model?

For each hidden state (0 = embeddings, last = after the final norm) a logistic-regression probe
classifies the last non-pad token's state of a text as forget (1) or retain (0). Scores are out
of fold (stratified 5-fold; grouped by entity where the data folder has ``<texts>.groups.txt``, so
memorising an entity earns nothing), so accuracy and AUC are held out; selectivity = accuracy minus
the majority-class rate. Two controls: a probe trained on shuffled labels (what chance gives on
these very features) and ``lexical_auc``, the same protocol on word unigram and bigram counts with
no model (what the vocabulary alone gives). 95 % intervals: seeded bootstrap over texts of the held-out scores. States come
from the shared activation cache (no forward pass if a comparison step already ran the model).

    uv run linear_probe_analysis.py --model models/tiny/tiny-base

Writes <output-root>/<model>/linear_probes/: probe_results.csv, summary.json, probe_results.png,
run_meta.json, _DONE.json.
"""

from __future__ import annotations

import sys

from brittle import cli

STEP = "linear_probes"


def build_parser(argv=None):
    p = cli.parser(__doc__)
    cli.add_preset_arg(p)
    cli.add_model_arg(p, "model to probe: Hub id or local folder")
    p.add_argument("--C", type=cli.positive_float, default=1.0, help="inverse L2 regularisation strength of the probe")
    p.add_argument("--max-iter", type=cli.positive_int, default=1000, help="solver iterations of the probe")
    p.add_argument("--folds", type=cli.positive_int, default=5, help="cross-validation folds")
    cli.add_text_args(p, argv)
    cli.add_capture_args(p)
    cli.add_runtime_args(p)
    cli.add_output_args(p)
    return p


def body(args, argv) -> int:
    import numpy as np
    import pandas as pd

    from brittle.activation_steps import open_step
    from brittle.io import model_slug, save_figure, write_csv, write_json
    from brittle.plotting.activations import probe_results
    from brittle.probes import out_of_fold_scores, probe_metric_cis, probe_metrics

    opened = open_step(args, argv, STEP, pair=False)
    if opened is None:
        return 0
    run, caps = opened.run, opened.captures
    forget, retain = caps.models[0]["forget"].last_token, caps.models[0]["retain"].last_token
    groups = opened.fold_groups()
    y = np.r_[np.ones(len(forget), int), np.zeros(len(retain), int)]
    shuffled = np.random.default_rng(args.seed).permutation(y)
    with run.timed("lexical baseline"):
        lexical = opened.lexical_auc(args.folds, args.seed)
    rows = []
    with run.timed("probes"):
        for index in range(forget.shape[1]):
            x = np.concatenate([forget[:, index], retain[:, index]]).astype(np.float64)
            fit = dict(c=args.C, max_iter=args.max_iter, folds=args.folds, seed=args.seed, groups=groups)
            scores = out_of_fold_scores(x, y, **fit)
            row = {"hidden_state": index, "n_forget": len(forget), "n_retain": len(retain), **probe_metrics(y, scores)}
            for name, (lo, hi) in probe_metric_cis(y, scores, args.n_bootstrap, args.seed + index).items():
                row[f"{name}_ci_low"], row[f"{name}_ci_high"] = lo, hi
            row["auc_shuffled_labels"] = probe_metrics(shuffled, out_of_fold_scores(x, shuffled, **fit))["auc"]
            row["lexical_auc"] = lexical
            rows.append(row)
    results = pd.DataFrame(rows)
    cols = ["hidden_state", "n_forget", "n_retain", "accuracy", "accuracy_ci_low", "accuracy_ci_high",
            "majority_baseline", "selectivity", "selectivity_ci_low", "selectivity_ci_high", "auc", "auc_ci_low",
            "auc_ci_high", "auc_shuffled_labels", "lexical_auc"]
    write_csv(run.path("probe_results.csv"), results[cols])
    best = results.loc[results["auc"].idxmax()]
    write_json(run.path("summary.json"), {
        "model": args.model, "n_forget": len(forget), "n_retain": len(retain), "n_hidden_states": len(results),
        "probe": {"C": args.C, "max_iter": args.max_iter, "folds": args.folds, "features": "last non-pad token state",
                  "fold_groups": "entity" if groups else None},
        "lexical_auc": lexical,
        "best_hidden_state_by_auc": int(best["hidden_state"]), "best_auc": float(best["auc"]),
        "best_auc_ci": [float(best["auc_ci_low"]), float(best["auc_ci_high"])],
        "best_hidden_state_by_selectivity": int(results.loc[results["selectivity"].idxmax(), "hidden_state"]),
        "max_selectivity": float(results["selectivity"].max()),
        "mean_auc": float(results["auc"].mean()), "max_auc_shuffled_labels": float(results["auc_shuffled_labels"].max()),
    })
    save_figure(run.path("probe_results.png"), probe_results(results, model_slug(args.model)))
    run.finish(model=args.model, forward_tokens=caps.forward_tokens)
    print(f"wrote {run.outdir} (best hidden state {int(best['hidden_state'])}, AUC {best['auc']:.3f})")
    return 0


def main(argv=None) -> int:
    return cli.run_main(body, build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
