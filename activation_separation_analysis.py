"""Step 8: how far apart are forget and retain texts inside each model, and did B change that?

Per hidden state (0 = embeddings, last = after the final norm) and model, on each text's last
non-pad token state: the cosine distance between the forget and retain centroids, the held-out
AUC of a logistic-regression classifier (stratified 5-fold, out-of-fold scores; folds grouped by
entity where the data folder has ``<texts>.groups.txt``, so a text is scored by a classifier that
never saw its entity), and the between/within-class variance ratio (trace form of Fisher's
criterion). Beside the AUC, ``lexical_auc``: the same classifier and folds on the texts' word
unigram and bigram counts, with no model at all. An activation AUC at that level says no more
than the vocabulary does. The change B − A of each
metric uses a paired bootstrap (both models are evaluated on the same resampled texts); all
intervals are 95 % percentile intervals from a seeded bootstrap over texts. Reads the shared
activation cache; runs the models (in lockstep) only for what is missing.

    uv run activation_separation_analysis.py --model-a models/tiny/tiny-base --model-b models/tiny/tiny-filtered

Writes <output-root>/<a>__vs__<b>/activation_separation/: separation_metrics.csv,
separation_change.csv, separation.png, run_meta.json, _DONE.json.
"""

from __future__ import annotations

import sys

from brittle import cli

STEP = "activation_separation"
METRICS = ("cosine_distance", "auc", "variance_ratio")


def build_parser(argv=None):
    p = cli.parser(__doc__)
    cli.add_preset_arg(p)
    cli.add_pair_args(p)
    p.add_argument("--C", type=cli.positive_float, default=1.0, help="inverse regularisation of the AUC classifier")
    p.add_argument("--max-iter", type=cli.positive_int, default=1000, help="solver iterations of the classifier")
    cli.add_text_args(p, argv)
    cli.add_capture_args(p)
    cli.add_runtime_args(p)
    cli.add_output_args(p)
    return p


def layer_replicates(f, r, scores, wf, wr):
    """(n_boot, 3) bootstrap replicates of the three metrics for one hidden state of one model.

    ``wf``/``wr``: resampling counts of forget/retain texts; the classifier's out-of-fold
    ``scores`` (forget first) are resampled with the same counts (no refit)."""
    import numpy as np

    from brittle.metrics.similarity import centroid_cosine_distance, variance_ratio
    from brittle.probes import resampled_auc

    y = np.r_[np.ones(len(f)), np.zeros(len(r))]
    w = np.concatenate([wf, wr], axis=1).astype(int)
    return np.stack([centroid_cosine_distance(f, r, wf, wr), resampled_auc(y, scores, w),
                     variance_ratio(f, r, wf, wr)], axis=1)


def model_metrics(forget, retain, groups, wf, wr, args) -> dict:
    """One model's metrics at every hidden state: ``points`` (L+1, 3) and bootstrap ``replicates``
    (L+1, n_boot, 3), from its last-token states ``forget`` (n_f, L+1, d) and ``retain``."""
    import numpy as np

    from brittle.metrics.similarity import centroid_cosine_distance, variance_ratio
    from brittle.probes import auc, out_of_fold_scores

    y = np.r_[np.ones(len(forget), int), np.zeros(len(retain), int)]
    points, reps = [], []
    for index in range(forget.shape[1]):
        f, r = forget[:, index].astype(np.float64), retain[:, index].astype(np.float64)
        scores = out_of_fold_scores(np.concatenate([f, r]), y, args.C, args.max_iter, seed=args.seed, groups=groups)
        points.append([centroid_cosine_distance(f, r), auc(y, scores), variance_ratio(f, r)])
        reps.append(layer_replicates(f, r, scores, wf, wr))
    return {"points": np.array(points), "replicates": np.stack(reps)}


def body(args, argv) -> int:
    import pandas as pd

    from brittle import model_results
    from brittle.activation_steps import open_step
    from brittle.io import json_digest, model_slug, save_figure, write_csv
    from brittle.plotting.activations import separation
    from brittle.stats import percentile_ci, resample_counts

    opened = open_step(args, argv, STEP)
    if opened is None:
        return 0
    run, caps = opened.run, opened.captures
    groups = opened.fold_groups()
    # The words-only baseline depends on the texts alone, a model's metrics on its own states: both
    # are stored (brittle/model_results.py), so the pipeline's pairs with one model A fit A's
    # classifiers once, and every pair shares one lexical baseline.
    texts = {"forget": json_digest(opened.splits["forget"]), "retain": json_digest(opened.splits["retain"]),
             "groups": json_digest(groups), "seed": args.seed}
    with run.timed("lexical baseline"):
        lexical = float(model_results.cached(args.output_root, STEP + "_lexical", None, None, texts,
                                             lambda: {"auc": opened.lexical_auc(seed=args.seed)})["auc"])
    states = [(c["forget"].last_token, c["retain"].last_token) for c in caps.models]
    n_f, n_r = len(states[0][0]), len(states[0][1])
    # One resampling of the texts shared by both models and all hidden states: the change B − A is
    # then a paired difference, and hidden states are comparable replicate by replicate.
    wf = resample_counts(n_f, args.n_bootstrap, args.seed)
    wr = resample_counts(n_r, args.n_bootstrap, args.seed + 1)
    rows, changes = [], []
    with run.timed("metrics"):
        per_model = []
        for (model, revision), (f, r) in zip(((args.model_a, args.revision_a), (args.model_b, args.revision_b)), states):
            spec = {"states": model_results.array_digest(f, r), "groups": texts["groups"], "C": args.C,
                    "max_iter": args.max_iter, "seed": args.seed, "n_bootstrap": args.n_bootstrap}
            per_model.append(model_results.cached(args.output_root, STEP, model, revision, spec,
                                                  lambda f=f, r=r: model_metrics(f, r, groups, wf, wr, args)))
        for index in range(states[0][0].shape[1]):
            points = [m["points"][index] for m in per_model]
            reps = [m["replicates"][index] for m in per_model]
            for m in range(2):
                lo, hi = percentile_ci(reps[m])
                row = {"hidden_state": index, "model": "ab"[m], "model_id": [args.model_a, args.model_b][m]}
                for k, name in enumerate(METRICS):
                    row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"] = points[m][k], lo[k], hi[k]
                row["lexical_auc"] = lexical
                rows.append(row)
            lo, hi = percentile_ci(reps[1] - reps[0])
            for k, name in enumerate(METRICS):
                changes.append({"hidden_state": index, "metric": name, "model_a_value": points[0][k],
                                "model_b_value": points[1][k], "change_b_minus_a": points[1][k] - points[0][k],
                                "ci_low": lo[k], "ci_high": hi[k]})
    metrics = pd.DataFrame(rows)
    write_csv(run.path("separation_metrics.csv"), metrics)
    write_csv(run.path("separation_change.csv"), pd.DataFrame(changes))
    save_figure(run.path("separation.png"), separation(metrics, model_slug(args.model_a), model_slug(args.model_b)))
    run.finish(models={"a": args.model_a, "b": args.model_b}, n_forget=n_f, n_retain=n_r,
               features="last non-pad token state", folds="grouped by entity" if groups else "stratified",
               lexical_auc=lexical, forward_tokens=caps.forward_tokens)
    print(f"wrote {run.outdir} (lexical baseline AUC {lexical:.3f})")
    return 0


def main(argv=None) -> int:
    return cli.run_main(body, build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
