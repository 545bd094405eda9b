"""Step 9: did model B change the *shape* of the activation distribution, and more on forget text?

For every hidden state with second moments in the cache (--moment-layers: all of them unless the
model has more than 7 hidden states; 0 = embeddings, last = after the final norm), split and model, the
eigenvalues of the per-token covariance of the hidden states (float64, all non-pad tokens of the
split, from the shared activation cache), and from them the effective rank exp(H(p)) and the
spectral entropy H(p) of the normalised spectrum p = λ/Σλ (nats). A's and B's spectra are then
compared with the 1-Wasserstein distance between their eigenvalue distributions (each of the d
eigenvalues carries mass 1/d: the distribution of variance over principal directions), per split;
beside it the same after dividing each spectrum by its mean eigenvalue (its sum / d), so that a pure
rescaling (B = c·A) does not read as a change of shape. Whether the change concentrates on forget
text: the selectivity difference W₁(forget)/λ̄_A(forget) − W₁(retain)/λ̄_A(retain) (λ̄_A: A's mean
eigenvalue on that split; > 0 forget-targeted), finite where the ratio W₁(forget) / W₁(retain),
also written, is not: the ratio divides by a W₁ near 0 wherever B left retain text alone.
Intervals: 95 % bootstrap over text groups (--moment-groups contiguous blocks of texts; the covariance
of a resample is pooled from the groups' moments).

    uv run activation_covariance_analysis.py --model-a models/tiny/tiny-base --model-b models/tiny/tiny-filtered

Writes <output-root>/<a>__vs__<b>/activation_covariance/: covariance_metrics.csv,
covariance_comparison.csv, eigenspectra.csv, covariance.png, run_meta.json, _DONE.json.
"""

from __future__ import annotations

import sys

from brittle import cli
from brittle.errors import UserError

STEP = "activation_covariance"


def build_parser(argv=None):
    p = cli.parser(__doc__)
    cli.add_preset_arg(p)
    cli.add_pair_args(p)
    cli.add_text_args(p, argv)
    cli.add_capture_args(p)
    cli.add_runtime_args(p)
    cli.add_output_args(p)
    return p


def _with_ci(row: dict, name: str, point: float, reps) -> None:
    from brittle.stats import percentile_ci

    lo, hi = percentile_ci(reps)
    row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"] = point, float(lo), float(hi)


def body(args, argv) -> int:
    import numpy as np
    import pandas as pd

    from brittle.activation_steps import open_step
    from brittle.io import model_slug, save_figure, write_csv
    from brittle.metrics.distributions import (effective_rank, selectivity_difference, spectral_entropy,
                                               spectrum_shape_wasserstein, spectrum_wasserstein)
    from brittle.plotting.activations import covariance
    from brittle.moments import pooled_covariance_eigs
    from brittle.stats import resample_counts

    if args.moment_groups < 1:
        raise UserError("covariance needs moments: use --moment-groups 1 or more")
    opened = open_step(args, argv, STEP)
    if opened is None:
        return 0
    run, caps, splits = opened.run, opened.captures, opened.splits
    # Second moments exist at the moment layers only (--moment-layers); the others are named, never
    # filled in. Each layer is read on its own (memory-mapped), so memory holds one d × d per (model, split).
    layers = caps.models[0]["forget"].moment_index("hidden")
    skipped = sorted(set(range(caps.models[0]["forget"].meta["n_hidden_states"])) - set(layers))
    if skipped:
        print(f"note: hidden states {','.join(map(str, skipped))} have no second moments "
              f"(--moment-layers {args.moment_layers}): no covariance rows for them")
    # Groups hold the same texts in A and B, so one resampling per split pairs the two models;
    # forget and retain are independent samples and are resampled independently.
    weights = {s: resample_counts(len(caps.models[0][s].moments("hidden", layers[0])["count"]), args.n_bootstrap,
                                  args.seed + k)
               for k, s in enumerate(splits)}
    metric_rows, comparison_rows, spectra = [], [], []
    with run.timed("spectra"):
        for index in layers:
            moments = {(m, s): caps.models[i][s].moments("hidden", index) for i, m in enumerate("ab") for s in splits}
            dist, shape, scale = {}, {}, {}
            for s in splits:
                eigs = {}
                for m in "ab":
                    mom = moments[(m, s)]
                    args_l = (mom["count"], mom["sum"], mom["sq"])
                    point, reps = pooled_covariance_eigs(*args_l), pooled_covariance_eigs(*args_l, weights[s])
                    eigs[m] = (point, reps)
                    row = {"hidden_state": index, "split": s, "model": m, "n_tokens": int(mom["count"].sum())}
                    _with_ci(row, "effective_rank", float(effective_rank(point)), effective_rank(reps))
                    _with_ci(row, "spectral_entropy", float(spectral_entropy(point)), spectral_entropy(reps))
                    _with_ci(row, "total_variance", float(point.sum()), reps.sum(1))
                    metric_rows.append(row)
                    spectra.append(pd.DataFrame({"hidden_state": index, "split": s, "model": m,
                                                 "rank": np.arange(1, len(point) + 1), "eigenvalue": point[::-1]}))
                dist[s] = (spectrum_wasserstein(eigs["a"][0], eigs["b"][0]),
                           spectrum_wasserstein(eigs["a"][1], eigs["b"][1]))
                shape[s] = (spectrum_shape_wasserstein(eigs["a"][0], eigs["b"][0]),
                            spectrum_shape_wasserstein(eigs["a"][1], eigs["b"][1]))
                scale[s] = (eigs["a"][0].mean(), eigs["a"][1].mean(-1))   # A's mean eigenvalue, per replicate
            row = {"hidden_state": index}
            for s in splits:
                _with_ci(row, f"wasserstein_{s}", float(dist[s][0]), dist[s][1])
            for s in splits:
                _with_ci(row, f"wasserstein_shape_{s}", float(shape[s][0]), shape[s][1])
            with np.errstate(divide="ignore", invalid="ignore"):
                # 0/0 (hidden states B did not change) is NaN: no change, no selectivity to speak of.
                _with_ci(row, "selectivity_ratio", float(dist["forget"][0] / dist["retain"][0]),
                         dist["forget"][1] / dist["retain"][1])
            point, reps = (selectivity_difference(dist["forget"][i], dist["retain"][i], scale["forget"][i],
                                                  scale["retain"][i]) for i in (0, 1))
            _with_ci(row, "selectivity_diff", float(point), reps)
            comparison_rows.append(row)
    metrics, comparison = pd.DataFrame(metric_rows), pd.DataFrame(comparison_rows)
    write_csv(run.path("covariance_metrics.csv"), metrics)
    write_csv(run.path("covariance_comparison.csv"), comparison)
    write_csv(run.path("eigenspectra.csv"), pd.concat(spectra, ignore_index=True))
    save_figure(run.path("covariance.png"), covariance(metrics, comparison, model_slug(args.model_a),
                                                       model_slug(args.model_b)))
    run.finish(models={"a": args.model_a, "b": args.model_b}, forward_tokens=caps.forward_tokens,
               **({"hidden_states_without_moments": skipped} if skipped else {}),
               wasserstein="W1 between the empirical distributions of the d covariance eigenvalues of A and B; "
                           "shape: each spectrum divided by its mean eigenvalue first",
               selectivity="selectivity_diff = W1(forget)/mean eig A(forget) - W1(retain)/mean eig A(retain)")
    print(f"wrote {run.outdir}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(body, build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
