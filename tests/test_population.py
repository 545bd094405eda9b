"""The population study's statistics (brittle.population_stats, brittle.population_cv,
brittle.population) and the identity reader, each against an independent computation."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from brittle import population_cv as pcv
from brittle import population_stats as ps


def _population(seed, n_methods=8, per_method=3, ties=False):
    """Methods m0..m7 with three models each; ``ties``: x rounded to one decimal, so tied. (Not
    for centred values: centring turns equal differences into floats that tie or not by rounding.)"""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"m{i}" for i in range(n_methods)], per_method)
    x = rng.normal(size=groups.size)
    x = np.round(x, 1) if ties else x
    z = rng.normal(size=groups.size)
    y = 0.5 * x + z + rng.normal(size=groups.size)
    return x, y, z, groups


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_partial_rank_corr_equals_correlation_of_rank_regression_residuals(seed):
    """Oracle: ρ(x, y | z) as the Pearson correlation of the residuals of rank(x) and rank(y)
    each regressed (least squares, with intercept) on rank(z)."""
    x, y, z, _ = _population(seed, ties=True)
    rx, ry, rz = (stats.rankdata(v) for v in (x, y, z))
    design = np.column_stack([np.ones_like(rz), rz])
    res_x = rx - design @ np.linalg.lstsq(design, rx, rcond=None)[0]
    res_y = ry - design @ np.linalg.lstsq(design, ry, rcond=None)[0]
    assert ps.partial_rank_corr(x, y, z) == pytest.approx(np.corrcoef(res_x, res_y)[0, 1], abs=1e-10)
    assert ps.rank_corr(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_within_rank_corr_equals_spearman_of_explicitly_centred_values():
    x, y, _, groups = _population(3)
    frame = pd.DataFrame({"x": x, "y": y, "g": groups})
    centred = frame[["x", "y"]] - frame.groupby("g")[["x", "y"]].transform("mean")
    assert ps.within_rank_corr(x, y, groups) == pytest.approx(
        stats.spearmanr(centred["x"], centred["y"]).statistic, abs=1e-10)
    # negative control: one model per method leaves nothing within methods: NaN, not 0
    assert math.isnan(ps.within_rank_corr(x[:8], y[:8], [f"m{i}" for i in range(8)]))


def test_within_method_removes_a_planted_between_method_relation():
    """Planted: method means of x and y rise together (between-method ρ near 1) while inside every
    method y falls with x. The population ρ is positive, the within-method ρ is -1."""
    groups = np.repeat(np.arange(6), 4)
    offset = groups * 10.0
    inside = np.tile(np.arange(4.0), 6)
    x, y = offset + inside, offset - inside
    assert ps.rank_corr(x, y) > 0.8
    assert ps.within_rank_corr(x, y, groups) == pytest.approx(-1.0)


def test_cluster_bootstrap_equals_explicit_resampling_with_the_same_draws():
    """Oracle: for each replicate, expand the sample by hand (every model of each drawn method,
    once per draw) and compute scipy's Spearman ρ and the explicit-centring within-method ρ."""
    x, y, z, groups = _population(4, n_methods=5, per_method=3)
    groups = groups.copy()
    groups[-1] = "m9"                      # clusters of unequal size (3, 3, 3, 3, 2, 1)
    n_boot, seed = 40, 7
    weights = ps.cluster_weights(groups, n_boot, seed)
    labels = np.unique(groups)
    draws = ps.cluster_draws(labels.size, n_boot, seed)
    rho, within = ps.rank_corrs(x, y, weights), ps.within_rank_corrs(x, y, groups, weights)
    partial = ps.partial_rank_corrs(x, y, z, weights)
    for b, row in enumerate(draws):
        idx = np.concatenate([np.flatnonzero(groups == labels[k]) for k in row])
        assert rho[b] == pytest.approx(stats.spearmanr(x[idx], y[idx]).statistic, abs=1e-10)
        frame = pd.DataFrame({"x": x[idx], "y": y[idx], "g": groups[idx]})
        centred = frame[["x", "y"]] - frame.groupby("g")[["x", "y"]].transform("mean")
        assert within[b] == pytest.approx(stats.spearmanr(centred["x"], centred["y"]).statistic, abs=1e-9)
        assert partial[b] == pytest.approx(ps.partial_rank_corr(x[idx], y[idx], z[idx]), abs=1e-10)
    assert np.isnan(ps.cluster_weights(["only"] * 4, 5, 0)).all()   # one cluster: nothing to resample


def test_holm_matches_a_hand_example():
    # p sorted: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> monotone 0.06)
    got = ps.holm([0.03, 0.01, np.nan, 0.04, 0.02])
    assert got[[1, 4, 0, 3]] == pytest.approx([0.04, 0.06, 0.06, 0.06])
    assert np.isnan(got[2])
    assert ps.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])   # capped at 1


def test_bootstrap_p_is_twice_the_smaller_tail():
    assert ps.bootstrap_p([-1, 1, 2, 3, np.nan]) == pytest.approx(0.5)
    assert ps.bootstrap_p([1, 2, 3]) == 0.0 and ps.bootstrap_p([0, 0]) == 1.0


@pytest.mark.parametrize("low, high, p, sign, expected", [
    (0.2, 0.8, 0.01, +1, "held"), (-0.8, -0.2, 0.01, -1, "held"),
    (-0.8, -0.2, 0.01, +1, "reversed"), (0.2, 0.8, 0.01, -1, "reversed"),
    (-0.1, 0.8, 0.01, +1, "not supported"),      # interval touches 0
    (0.2, 0.8, 0.2, +1, "not supported"),        # interval clear of 0 but Holm p too large
    (math.nan, math.nan, math.nan, +1, "not tested")])
def test_verdict_rule_on_planted_intervals(low, high, p, sign, expected):
    assert ps.verdict(low, high, p, sign, 0.05) == expected


def test_ridge_fit_equals_sklearn_on_standardised_features():
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(15, 4)) * [1, 10, 0.1, 3], rng.normal(size=15)
    ref = make_pipeline(StandardScaler(), Ridge(alpha=2.5)).fit(X, y)
    X_new = rng.normal(size=(5, 4))
    assert pcv.ridge_predict(pcv.ridge_fit(X, y, 2.5), X_new) == pytest.approx(ref.predict(X_new), abs=1e-10)


def _planted(signal: bool, seed: int = 0):
    """12 methods x 3 models, 6 features; y = features @ beta + noise (signal) or pure noise."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(12), 3)
    X = rng.normal(size=(groups.size, 6))
    y = X @ np.array([1.0, -0.8, 0.5, 0, 0, 0]) + 0.3 * rng.normal(size=groups.size) if signal \
        else rng.normal(size=groups.size)
    return X, y, groups


def test_lomo_r2_is_high_on_a_planted_signal_and_near_zero_without_one():
    X, y, groups = _planted(signal=True)
    assert pcv.lomo_r2(X, y, groups) >= 0.7
    for seed in range(3):   # negative control: noise has nothing to predict
        X, y, groups = _planted(signal=False, seed=seed)
        assert pcv.lomo_r2(X, y, groups) <= 0.1
    assert math.isnan(pcv.lomo_r2(X[:6], y[:6], groups[:6]))    # two methods: no held-out fit


def test_predictive_power_sees_mechanism_beyond_forgetting_only_when_planted():
    """Planted: recovery = signature s1 + small noise, pre-attack accuracy unrelated: the
    signatures score high and the pre-attack accuracy alone does not; the reverse when recovery
    follows the pre-attack accuracy (negative control for the signatures)."""
    from brittle.population import PRE_ATTACK, predictive_power

    rng = np.random.default_rng(1)
    n = 36
    frame = pd.DataFrame({"method": np.repeat([f"m{i}" for i in range(12)], 3), "s1": rng.normal(size=n),
                          "s2": rng.normal(size=n), PRE_ATTACK: rng.normal(size=n), "s3": np.nan})
    frame["rec"] = frame["s1"] + 0.2 * rng.normal(size=n)
    got = predictive_power(frame, ["s1", "s2", "s3"], "rec")
    assert got["dropped"] == ["s3"] and got["n_methods"] == 12
    assert got["r2_signatures"] >= 0.7 and got["r2_both"] >= 0.7 and got["r2_pre_attack"] <= 0.1
    frame["rec"] = frame[PRE_ATTACK] + 0.2 * rng.normal(size=n)
    got = predictive_power(frame, ["s1", "s2"], "rec")
    assert got["r2_pre_attack"] >= 0.7 and got["r2_signatures"] <= 0.1


def test_correlate_and_judge_on_a_planted_population():
    """Signature a tracks recovery (held), b runs against it (reversed, predicted +), c is noise
    (not supported); with 12 methods of 3 models the intervals are clear of 0 for a and b only."""
    from brittle.population import PRE_ATTACK, correlate, judge

    rng = np.random.default_rng(2)
    n = 36
    rec = rng.normal(size=n)
    frame = pd.DataFrame({"method": np.repeat([f"m{i}" for i in range(12)], 3), "rec": rec,
                          "a": rec + 0.3 * rng.normal(size=n), "b": -rec + 0.3 * rng.normal(size=n),
                          "c": rng.normal(size=n), PRE_ATTACK: rng.normal(size=n)})
    results = [correlate(frame, k, "rec", n_boot=500, seed=0) for k in ("a", "b", "c")]
    judged = judge(results, [+1, +1, +1])
    assert [r["verdict"] for r in judged] == ["held", "reversed", "not supported"]
    assert judged[0]["rho"] == pytest.approx(stats.spearmanr(frame["a"], rec).statistic)
    assert judged[0]["n_methods"] == 12 and judged[0]["n"] == n


def test_pre_unlearning_fraction():
    from brittle.recovery import pre_unlearning_fraction

    assert pre_unlearning_fraction(0.8, 0.95) == pytest.approx(0.8 / 0.95)
    assert pre_unlearning_fraction([0.25, 0.95], 0.95) == pytest.approx([0.25 / 0.95, 1.0])
    with pytest.raises(ValueError):
        pre_unlearning_fraction(0.5, 0.0)


def test_identity_reader(tmp_path):
    from brittle.model_identity import read_identity

    folder = tmp_path / "tiny-base__npo__s3__matched"
    folder.mkdir()
    assert read_identity(folder, "npo__s3__matched").method == "npo__s3__matched"   # no run_meta: its label
    (folder / "run_meta.json").write_text(json.dumps({"params": {"method": "npo", "seed": 3}}))
    ident = read_identity(folder, "x")
    assert (ident.method, ident.seed, ident.strength, ident.reached) == ("npo", 3, "default", None)
    (folder / "calibration.json").write_text(json.dumps({"strength": "matched", "target_hazard": 0.3,
                                                          "tolerance": 0.05, "reached": False}))
    ident = read_identity(folder, "x")
    assert (ident.strength, ident.reached) == ("matched", False)
