"""report.py, brittle.report and brittle.report_numbers on a small outputs/ tree built in-test.

The CSVs carry the column names the pipeline's steps write. Planted relations between signature
numbers and recovery speed give known verdicts; one step's output is deleted for one model and must
be named as missing.
"""

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from brittle.recovery import summarize_curve

BASE = "tiny-base"
METHODS = ["ga", "grad_diff", "npo", "rmu", "simnpo", "cb"]
STEPS = [0, 1, 2, 5, 10, 20, 50, 100]
BASE_ACC, FILT_ACC = 0.95, 0.25


def _curve(speed: float) -> list[float]:
    """Hazard accuracy rising from 0.25 with rate ``speed`` per log-step (saturating at 0.95)."""
    return [min(BASE_ACC, FILT_ACC + speed * math.log1p(s)) for s in STEPS]


def _write(path, frame):
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def _write_model(root, slug, role, speed, rel, attn_share, rank, acc_start=None):
    comp = root / f"{BASE}__vs__{slug}"
    energies = [rel * 0.5, rel * 0.3, rel * 0.2]
    # step 1: per_layer.csv (2 groups x 3 blocks); W norms 1 per row
    rows = []
    for block, e in enumerate(energies):
        dm, da = e * (1 - attn_share), e * attn_share
        rows += [{"block": block, "group": "mlp", "dW_fro_layer": math.sqrt(dm), "W_fro_layer": 1.0,
                  "dW_fro_layer_rel": math.sqrt(dm), "max_dW_spectral": 0.1, "max_W_spectral": 1.0,
                  "max_dW_spectral_rel": 0.1, "mean_dW_stable_rank": rank, "count_mats": 2,
                  "W_cosine_layer": 0.99, "dW_zero_frac_layer": 0.0},
                 {"block": block, "group": "attn", "dW_fro_layer": math.sqrt(da), "W_fro_layer": 1.0,
                  "dW_fro_layer_rel": math.sqrt(da), "max_dW_spectral": 0.1, "max_W_spectral": 1.0,
                  "max_dW_spectral_rel": 0.1, "mean_dW_stable_rank": rank, "count_mats": 2,
                  "W_cosine_layer": 0.99, "dW_zero_frac_layer": 0.0}]
    _write(comp / "param_stats" / "per_layer.csv", pd.DataFrame(rows))
    _write(comp / "param_stats" / "per_matrix.csv", pd.DataFrame([
        {"name": f"gpt_neox.layers.{i}.mlp.dense_h_to_4h.weight", "block": i, "group": g, "shape0": 512,
         "shape1": 128, "dW_fro": 0.1, "W_fro": 1.0, "dW_fro_rel": 0.1, "dW_spectral": 0.05, "W_spectral": 0.5,
         "dW_spectral_rel": 0.1, "dW_stable_rank": rank + 0.1 * i, "W_stable_rank": 30.0, "W_cosine": 0.99,
         "dW_zero_frac": 0.0} for i in range(3) for g in ("mlp", "attn")]))
    _write(comp / "mlp_attn_analysis" / "mlp_attn_summary.csv", pd.DataFrame([{
        "n_blocks": 3, "attn_dW_fro_rel": 0.1, "mlp_dW_fro_rel": 0.1, "mlp_attn_ratio": 1.0,
        "mlp_dW_energy_share": 1 - attn_share, "mlp_W_energy_share": 0.66, "n_blocks_mlp_dominant": 1,
        "top_block_mlp": 0, "top_block_attn": 0}]))
    _write(comp / "null_space_analysis" / "null_space_summary.csv", pd.DataFrame([
        {"group": g, "n_matrices": 3, "median_dW_top10_energy": 0.5, "median_dW_top10_energy_random": 0.1}
        for g in ("attn", "mlp", "all")]))
    _write(comp / "mlp_nullspace" / "mlp_nullspace_summary.csv", pd.DataFrame([
        {"side": side, "n_matrices": 6, "col_frac": 1 - null, "null_frac": null, "random_col_frac": rand}
        for side, null, rand in (("output", 0.3, 0.8), ("input", 0.2, 0.8), ("informative", 0.6, 0.25))]))
    _write(comp / "activation_stats" / "activation_stats.csv", pd.DataFrame([
        {"hidden_state": index, "split": split, "model_a_norm_L1": 10.0, "model_a_norm_L2": 2.0, "model_b_norm_L1": 10.0,
         "model_b_norm_L2": 2.0, "mean_dh_L1": 1.0, "mean_dh_L2": 0.2 if split == "forget" else 0.1}
        for index in range(4) for split in ("forget", "retain")]))
    if role == "filtered" or slug.endswith("__ga"):  # evaluate.py's files, for two models only
        _write(root / slug / "evaluation" / "accuracy.csv", pd.DataFrame([
            {"question_set": qs, "format": fmt, "n_questions": 400, "accuracy": acc, "stderr": 0.02, "chance": 0.25}
            for qs, acc in (("hazard_eval", 0.26), ("near_eval", 0.93), ("far_eval", 0.97)) for fmt in ("cloze", "mcqa")]))
        (root / slug / "evaluation" / "summary.json").write_text(json.dumps(
            {"model": slug, "accuracy": {}, "retain_perplexity": 12.5, "retain_tokens": 1000}))
    # relearning: the hazard attack at the planted speed, the benign attack at a tenth of it
    for attack, s in (("hazard", speed), ("benign", speed / 10)):
        acc = _curve(s)
        if acc_start is not None:
            acc = [max(a, acc_start) for a in acc]
        folder = root / slug / "relearning" / attack
        _write(folder / "curve.csv", pd.DataFrame({"model": slug, "attack": attack, "seed": 0, "step": STEPS,
                                                   "hazard_acc": acc, "near_acc": 0.9, "far_acc": 0.9, "retain_ppl": 20.0,
                                                   "train_loss": 1.0}))
        summ = summarize_curve(STEPS, acc, BASE_ACC, FILT_ACC)
        _write(folder / "summary.csv", pd.DataFrame([{"model": slug, "attack": attack, "seed": seed,
                                                      "steps_budget": 100, "base_acc": BASE_ACC,
                                                      "filtered_acc": FILT_ACC, **summ}
                                                     for seed in ("0", "mean")]))


@pytest.fixture
def tree(tmp_path):
    """outputs/ and unlearned_models/ for a filtered and six unlearned models.

    Planted: recovery speed falls with rel_dW (small -> brittle: held) and with stable rank falling
    (low-rank -> brittle: reversed), attention share is unrelated (not supported). "cb" starts above
    the half-gap threshold (never hid the knowledge) and must be excluded from the correlations.
    """
    out, models = tmp_path / "outputs", tmp_path / "unlearned_models"
    speeds = [0.30, 0.25, 0.20, 0.15, 0.10, 0.05]
    attn = [0.5, 0.2, 0.6, 0.1, 0.4, 0.3]
    for i, method in enumerate(METHODS):
        slug = f"{BASE}__{method}"
        (models / slug).mkdir(parents=True)
        (models / slug / "config.json").write_text("{}")
        _write_model(out, slug, "unlearned", speed=speeds[i], rel=0.01 * (i + 1), attn_share=attn[i],
                     rank=6.0 - i, acc_start=0.9 if method == "cb" else None)
    _write_model(out, "tiny-filtered", "filtered", speed=0.0, rel=2.0, attn_share=0.34, rank=50.0)
    (models / "other-base__ga").mkdir()  # a different base's model: not in this report
    (models / "other-base__ga" / "config.json").write_text("{}")
    # the deliberately missing step: no row-space... and no activation stats for npo
    (out / f"{BASE}__vs__{BASE}__npo" / "activation_stats" / "activation_stats.csv").unlink()
    return tmp_path


def _argv(tree, *extra):
    for name in ("tiny-base", "tiny-filtered"):  # model folders, so their slugs are their names
        (tree / "models" / name).mkdir(parents=True, exist_ok=True)
    return ["--base", str(tree / "models" / "tiny-base"), "--filtered", str(tree / "models" / "tiny-filtered"),
            "--unlearned-dir", str(tree / "unlearned_models"), "--unlearned",
            "--output-root", str(tree / "outputs"), *extra]


def test_report_builds_names_missing_steps_and_planted_verdicts(tree):
    import report

    assert report.main(_argv(tree)) == 0
    text = (tree / "outputs" / "report.md").read_text()
    # the missing step is named, with the model it is missing for
    missing = text.split("## Missing steps")[1].split("##")[0]
    assert "**activation_stats**" in missing and "`npo`" in missing.split("**activation_stats**")[1].split("\n")[0]
    # steps never run for any model are named too (row-space projection, Lipschitz, probes, evaluation)
    for step in ("row_space_projection", "lipschitzness", "linear_probes", "evaluation"):
        assert f"**{step}**" in missing
    evaluation_line = missing.split("**evaluation**")[1].split("\n")[0]
    assert "`npo`" in evaluation_line and "`ga`" not in evaluation_line and "`filtered`" not in evaluation_line
    assert "other-base" not in text
    preds = pd.read_csv(tree / "outputs" / "report_predictions.csv").set_index("prediction")
    assert preds.loc["small", "verdict"] == "held"
    assert preds.loc["low-rank", "verdict"] == "reversed"
    assert preds.loc["attention-localised", "verdict"] == "not supported"
    assert preds.loc["untargeted", "verdict"] == "not tested"   # its step never ran
    # the sentences state each verdict in words
    assert "small -> brittle: held" in text and "low-rank -> brittle: did not hold" in text
    # one sentence per attacked model, hazard and benign attack side by side (planted ga: 0.25 -> 0.95)
    assert "- `ga` (unlearned): hazard accuracy 0.25 before the attack, 0.95 after 100 steps" in text
    assert "benign-only attack: 0.39 after the same budget" in text
    for name in ("recovery_hazard.png", "recovery_benign.png", "signatures_vs_recovery.png"):
        assert (tree / "outputs" / "report_figures" / name).stat().st_size > 0
        assert f"report_figures/{name}" in text


def test_correlations_equal_scipy_and_exclude_models_that_never_unlearned(tree):
    import report

    report.main(_argv(tree))
    table = pd.read_csv(tree / "outputs" / "report_table.csv").set_index("model")
    preds = pd.read_csv(tree / "outputs" / "report_predictions.csv").set_index("prediction")
    # cb started above the half-gap threshold: excluded; the other five are the sample
    kept = [m for m in METHODS if m != "cb"]
    expected = stats.spearmanr(table.loc[kept, "rel_dW"], table.loc[kept, "hazard_auc_recovery_log"])
    assert preds.loc["small", "rho_unlearned"] == pytest.approx(expected.statistic)
    assert preds.loc["small", "n_unlearned"] == 5
    # the planted relation: speed strictly decreasing in rel_dW; exact p of a perfect ranking = 2/5!
    assert preds.loc["small", "rho_unlearned"] == pytest.approx(-1.0)
    assert preds.loc["small", "p_unlearned"] == pytest.approx(2 / 120)
    # filtered vs unlearned contrast: filtered rel_dW (2.0 pooled) above every unlearned one
    assert preds.loc["small", "contrast"] == "consistent"


def test_control_edit_is_reported_beside_the_unlearned_models_and_kept_out_of_the_correlations(tree):
    """A <base>__control folder is the control role: it has its own row in the signature table,
    is named in the header, and leaves every correlation exactly as without it, although its
    planted numbers would break the perfect ranking if it were counted."""
    import report

    report.main(_argv(tree))
    before = pd.read_csv(tree / "outputs" / "report_predictions.csv").set_index("prediction")
    slug = f"{BASE}__control"
    (tree / "unlearned_models" / slug).mkdir(parents=True)
    (tree / "unlearned_models" / slug / "config.json").write_text("{}")
    _write_model(tree / "outputs", slug, "control", speed=0.5, rel=0.5, attn_share=0.5, rank=1.0)
    report.main(_argv(tree))
    table = pd.read_csv(tree / "outputs" / "report_table.csv").set_index("model")
    assert table.loc["control", "role"] == "control" and table.loc["control", "rel_dW"] > 0
    after = pd.read_csv(tree / "outputs" / "report_predictions.csv").set_index("prediction")
    pd.testing.assert_frame_equal(before, after)
    text = (tree / "outputs" / "report.md").read_text()
    assert "Control: `control`" in text
    signatures = text.split("## Signatures")[1].split("##")[0]
    assert any(line.startswith("| control |") for line in signatures.splitlines())


@pytest.mark.parametrize("seed", [0, 1])
def test_spearman_exact_p_equals_enumerated_permutations(seed):
    from brittle.report import spearman

    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=6), rng.normal(size=6)
    y[:3] += 2 * x[:3]
    rho, p, n = spearman(np.append(x, np.nan), np.append(y, 1.0))  # the NaN pair is dropped
    observed = stats.spearmanr(x, y).statistic
    # reference: scipy's rho over every one of the 6! pairings, counted by hand
    null = [stats.spearmanr(x, y[list(order)]).statistic for order in itertools.permutations(range(6))]
    assert n == 6 and rho == pytest.approx(observed)
    assert p == pytest.approx(np.mean(np.abs(null) >= abs(observed) - 1e-12))


def test_signature_readers_match_hand_computation(tree):
    from brittle.report_numbers import activation_change, evaluation, mlp_attn_share, nullspace_fraction, param_magnitude

    comp = tree / "outputs" / f"{BASE}__vs__{BASE}__ga"
    mag = param_magnitude(comp / "param_stats" / "per_layer.csv", "x")
    # rel = sqrt(total dW energy = 0.01) / sqrt(6 rows of W norm 1)
    assert mag["rel_dW"] == pytest.approx(math.sqrt(0.01) / math.sqrt(6))
    e = np.array([0.5, 0.3, 0.2])
    assert mag["layer_spread"] == pytest.approx(e.sum() ** 2 / (3 * (e ** 2).sum()))
    assert mlp_attn_share(comp / "mlp_attn_analysis" / "mlp_attn_summary.csv", "x")["attn_share"] == pytest.approx(0.5)
    ev = evaluation(tree / "outputs" / f"{BASE}__ga" / "evaluation" / "accuracy.csv", "x")
    assert ev == {"eval_hazard_acc": 0.26, "eval_near_acc": 0.93, "eval_far_acc": 0.97, "eval_hazard_mcqa": 0.26,
                  "eval_retain_ppl": 12.5}
    act = activation_change(comp / "activation_stats" / "activation_stats.csv", "x")
    assert act["act_change_forget"] == pytest.approx(0.1) and act["act_change_selectivity"] == pytest.approx(2.0)
    # the headline is the informative side's row, beside that row's baseline, not the input side's
    ns = nullspace_fraction(comp / "mlp_nullspace" / "mlp_nullspace_summary.csv", "x")
    assert ns == pytest.approx({"nullspace_frac": 0.6, "nullspace_frac_random": 0.75, "nullspace_frac_in": 0.2,
                                "nullspace_frac_out": 0.3})


def test_row_space_reader_pools_input_and_output_matrices(tmp_path):
    """An update confined to the MLP output projections (RMU) gets a number: unchanged input
    matrices (w = 0, NaN fractions) drop out, the output rows pool by w = dW_fro², and the chance
    level is the same weighted mean of k/d_in."""
    from brittle.report_numbers import row_space_selectivity

    nan = float("nan")
    rows = pd.DataFrame({
        "mlp_role": ["input", "output", "output", "output"], "activations_of": ["a", "a", "a", "b"],
        "dW_fro": [0.0, 1.0, 2.0, 2.0], "random_baseline": [0.0, 16 / 512, 8 / 512, 8 / 512],
        "fraction_forget": [nan, 0.2, 0.1, 0.9], "fraction_retain": [nan, 0.1, 0.1, 0.1]})
    rows.to_csv(tmp_path / "rs.csv", index=False)
    got = row_space_selectivity(tmp_path / "rs.csv", "x")
    forget, retain = (1 * 0.2 + 4 * 0.1) / 5, (1 * 0.1 + 4 * 0.1) / 5
    assert got["rowspace_frac_forget"] == pytest.approx(forget)
    assert got["rowspace_selectivity"] == pytest.approx(forget / retain)
    assert got["rowspace_frac_random"] == pytest.approx((16 / 512 + 4 * 8 / 512) / 5)
    rows.assign(dW_fro=0.0).to_csv(tmp_path / "rs.csv", index=False)   # nothing changed: NaN, not 0/0 noise
    assert all(np.isnan(v) for v in row_space_selectivity(tmp_path / "rs.csv", "x").values())


def test_missing_column_is_an_error_not_a_missing_step(tree, capsys):
    import report

    path = tree / "outputs" / f"{BASE}__vs__{BASE}__ga" / "mlp_attn_analysis" / "mlp_attn_summary.csv"
    pd.read_csv(path).drop(columns=["mlp_dW_energy_share"]).to_csv(path, index=False)
    assert report.main(_argv(tree)) == 2
    err = capsys.readouterr().err
    assert "mlp_dW_energy_share" in err and "mlp_attn_summary.csv" in err


def test_help():
    import report

    with pytest.raises(SystemExit) as exc:
        report.main(["--help"])
    assert exc.value.code == 0


def test_a_step_the_data_cannot_feed_is_not_applicable_rather_than_missing(tree):
    """The knowledge probe needs the tiny world's facts.csv: with a data folder that lacks it (as
    deep-ignorance's and TOFU's do) the report names it once as not applicable and not among the
    missing steps; with facts.csv present (negative control) its absence is a missing step."""
    import report

    data = tree / "data"
    data.mkdir()
    report.main(_argv(tree, "--data-dir", str(data)))
    missing = (tree / "outputs" / "report.md").read_text().split("## Missing steps")[1].split("##")[0]
    assert "**knowledge_probe**" in missing and "Not applicable to this data (no `facts.csv`" in missing
    assert "(`knowledge_probe_summary.csv`) missing for" not in missing
    (data / "facts.csv").write_text("domain,entity,relation,value,role,subset\\n")
    report.main(_argv(tree, "--data-dir", str(data)))
    missing = (tree / "outputs" / "report.md").read_text().split("## Missing steps")[1].split("##")[0]
    assert "(`knowledge_probe_summary.csv`) missing for" in missing and "Not applicable" not in missing


def test_population_identity_clusters_and_seed_intervals(tree):
    """A second ga model (seed 1, calibrated) joins ga's cluster: n models grows, n methods does
    not; a __control2 folder is a control (in no correlation); the hazard attack's three recovery
    measures get Student-t intervals over the summary's seed rows (oracle: scipy.stats.t by hand);
    the page opens with what the run found and names how few clusters it had."""
    import report

    out, models = tree / "outputs", tree / "unlearned_models"
    for slug, meta in ((f"{BASE}__ga__s1__matched", {"method": "ga", "seed": 1}),
                       (f"{BASE}__control2", {"method": "control", "seed": 2})):
        (models / slug).mkdir()
        (models / slug / "config.json").write_text("{}")
        (models / slug / "run_meta.json").write_text(json.dumps({"params": meta}))
        _write_model(out, slug, "unlearned", speed=0.28, rel=0.015, attn_share=0.3, rank=5.5)
    (models / f"{BASE}__ga__s1__matched" / "calibration.json").write_text(json.dumps(
        {"strength": "matched", "target_hazard": 0.3, "tolerance": 0.05, "reached": True}))
    # three attack seeds for npo: acc_final 0.80, 0.85, 0.90; recovered_final and AUC per seed
    path = out / f"{BASE}__npo" / "relearning" / "hazard" / "summary.csv"
    summary = pd.read_csv(path, dtype={"seed": str})
    seed_row = summary[summary["seed"] == "0"].iloc[0]
    finals = np.array([0.80, 0.85, 0.90])
    rows = [seed_row.to_dict() | {"seed": str(i), "acc_final": a, "recovered_final": (a - FILT_ACC) / (BASE_ACC - FILT_ACC),
                                  "auc_recovery_log": seed_row["auc_recovery_log"] + 0.01 * i}
            for i, a in enumerate(finals)]
    mean = rows[0] | {"seed": "mean", "acc_final": finals.mean(), "recovered_final": np.mean([r["recovered_final"] for r in rows]),
                      "auc_recovery_log": np.mean([r["auc_recovery_log"] for r in rows])}
    pd.DataFrame([*rows, mean]).to_csv(path, index=False)

    assert report.main(_argv(tree, "--n-boot", "300")) == 0
    table = pd.read_csv(out / "report_table.csv").set_index("model")
    assert table.loc["ga__s1__matched", "method"] == "ga" and table.loc["ga__s1__matched", "strength"] == "matched"
    assert bool(table.loc["ga__s1__matched", "reached"]) is True and table.loc["ga", "strength"] == "default"
    assert table.loc["control2", "role"] == "control"
    frac = finals / BASE_ACC
    half = stats.t.ppf(0.975, 2) * frac.std(ddof=1) / math.sqrt(3)
    assert table.loc["npo", "hazard_pre_unlearning_frac"] == pytest.approx(frac.mean())
    assert table.loc["npo", "hazard_pre_unlearning_frac_low"] == pytest.approx(frac.mean() - half)
    assert table.loc["npo", "hazard_pre_unlearning_frac_high"] == pytest.approx(frac.mean() + half)
    assert table.loc["npo", "hazard_n_seeds"] == 3 and np.isnan(table.loc["ga", "hazard_recovered_final_low"])
    preds = pd.read_csv(out / "report_predictions.csv").set_index("prediction")
    assert preds.loc["small", "n_unlearned"] == 6 and preds.loc["small", "n_methods"] == 5   # cb excluded
    assert np.isfinite(preds.loc["small", "rho_low"]) and preds.loc["small", "rho_low"] <= preds.loc["small", "rho_high"]
    text = (out / "report.md").read_text()
    assert text.index("## What this run found") < text.index("## Missing steps")
    found = text.split("## What this run found")[1].split("##")[0]
    assert "from 5 methods" in found and "5 clusters are few" in found and "Within-method correlations rest on the 1 method" in found
    assert "## Recovery, three ways" in text and "## Do the signatures together predict recovery?" in text


@pytest.mark.parametrize("pre, sig, both, expected", [
    (-1.6, 0.02, 0.015, "nothing predicts recovery"),          # run6 --recovery final: no model beats the mean
    (0.1, 0.8, 0.85, "add predictive power beyond"),
    (0.8, 0.1, 0.82, "add nothing clear beyond"),
    (0.8, -0.5, 0.3, "makes held-out prediction worse")])
def test_gain_sentence_reads_the_r2s(pre, sig, both, expected):
    from brittle.report_population import gain_sentence

    cv = {"n": 10, "n_methods": 10, "features": ["a", "b"], "r2_pre_attack": pre, "r2_signatures": sig, "r2_both": both}
    assert expected in gain_sentence(cv)


def test_named_unlearned_models_are_exactly_the_report(tree):
    """--unlearned M names the report's models: the folder's other <base>__* models stay out (a
    population and a default run in one folder), while --unlearned without models scans the folder."""
    import pandas as pd

    import report

    argv = _argv(tree)
    i = argv.index("--unlearned")
    one = str(tree / "unlearned_models" / f"{BASE}__npo")
    assert report.main(argv[:i + 1] + [one] + argv[i + 1:]) == 0
    named = pd.read_csv(tree / "outputs" / "report_table.csv")["slug"].tolist()
    assert sorted(named) == sorted(["tiny-base", "tiny-filtered", f"{BASE}__npo"])
    assert report.main(argv) == 0
    scanned = pd.read_csv(tree / "outputs" / "report_table.csv")["slug"].tolist()
    assert len(scanned) > len(named) and f"{BASE}__npo" in scanned


def test_calibration_section_counts_per_strength_and_names_the_misses():
    from brittle.report_population import calibration_section

    def rec(strength, reached, val, outcomes=("reached",)):
        return {"strength": strength, "reached": reached, "target_hazard": 0.38, "tolerance": 0.05,
                "val_hazard": val, "tries": [{"outcome": o} for o in outcomes]}

    lines = calibration_section({"npo__s0__matched": rec("matched", True, 0.41),
                                 "rmu__s0__matched": rec("matched", False, 0.52, ("short", "short")),
                                 "ga__s0__matched": rec("matched", True, 0.35),
                                 "ga__s0__weak": rec("weak", True, 0.70)})
    text = "\n".join(lines)
    assert "- matched: 2 of 3 within the tolerance (67 %)." in text
    assert "- weak: 1 of 1 within the tolerance (100 %)." in text
    assert "`rmu__s0__matched` not reached: validation hazard 0.520 against 0.380 ± 0.05 after 2 tries (short, short)" in text
    assert "npo__s0__matched` not" not in text
    assert calibration_section({}) == []          # nothing calibrated: no section


def test_weak_calibrated_models_stay_in_the_correlations_and_unhidden_ones_do_not():
    import pandas as pd

    from brittle.report import relearning_eligible

    table = pd.DataFrame({"role": ["unlearned"] * 3 + ["base"],
                          "strength": ["matched", "weak", "default", None],
                          "hazard_auc_recovery_log": [0.3, 0.8, 0.9, 1.0],
                          "hazard_acc_start": [0.38, 0.69, 0.70, 1.0],
                          "hazard_half_gap_threshold": [0.625] * 4})
    assert relearning_eligible(table).tolist() == [True, True, False, False]


def test_recovery_per_method_is_the_mean_over_seeds_with_a_t_interval():
    import numpy as np
    import pandas as pd
    from scipy import stats

    from brittle.report_population import method_recovery_table

    auc = [0.2, 0.4, 0.3, 0.9]
    table = pd.DataFrame({"role": ["unlearned"] * 4 + ["control"], "method": ["npo"] * 3 + ["rmu", "control"],
                          "strength": ["matched"] * 4 + [None], "hazard_auc_recovery_log": auc + [0.99]})
    per = method_recovery_table(table).set_index("method")
    assert per.loc["npo", "n_models"] == 3 and per.loc["rmu", "n_models"] == 1 and "control" not in per.index
    low, high = stats.t.interval(0.95, 2, loc=np.mean(auc[:3]), scale=stats.sem(auc[:3]))
    assert per.loc["npo", "hazard_auc_recovery_log"] == pytest.approx(0.3)
    assert per.loc["npo", "hazard_auc_recovery_log_low"] == pytest.approx(low)
    assert per.loc["npo", "hazard_auc_recovery_log_high"] == pytest.approx(high)
    assert np.isnan(per.loc["rmu", "hazard_auc_recovery_log_low"])    # one model: no interval


def test_recovery_per_method_section_shows_the_references():
    """The per-method recoveries come with the filtered model's and the controls' under the same attack."""
    import pandas as pd

    from brittle.report_population import method_recovery_section

    table = pd.DataFrame({"role": ["filtered", "unlearned", "unlearned", "control"],
                          "method": [None, "npo", "npo", "control"], "strength": [None, "matched", "weak", None],
                          "hazard_auc_recovery_log": [0.03, 0.4, 0.6, 0.98]})
    text = "\n".join(method_recovery_section(table))
    assert "## Recovery per method and strength" in text
    assert "the filtered model 0.03" in text and "the control edit(s) 0.98" in text
    assert "| npo | matched |" in text and "| npo | weak |" in text
    assert method_recovery_section(table[table["role"] != "unlearned"]) == []
