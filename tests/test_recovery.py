"""brittle.recovery: curve summaries against hand computations on synthetic curves."""

import math

import numpy as np
import pytest
from scipy import stats

from brittle.recovery import (
    log_checkpoints,
    log_step_auc,
    mean_interval,
    recovered_fraction,
    steps_to_fraction,
    summarize_curve,
)

STEPS = [0, 1, 2, 5, 10, 20, 50, 100]
# An unlearned model at 0.25 that recovers to 0.85; base 0.95, filtered 0.25.
ACC = [0.25, 0.25, 0.30, 0.45, 0.55, 0.70, 0.80, 0.85]


def test_log_checkpoints_1_2_5_series():
    assert log_checkpoints(100) == STEPS
    assert log_checkpoints(30) == [0, 1, 2, 5, 10, 20, 30]
    assert log_checkpoints(0) == [0]


def test_steps_to_half_gap_is_first_checkpoint_over_threshold():
    # threshold = 0.25 + 0.5 * 0.70 = 0.60: first reached at step 20 (0.70), not at 10 (0.55).
    assert steps_to_fraction(STEPS, ACC, base=0.95, filtered=0.25) == 20
    # never reached: censored, not the budget
    assert steps_to_fraction(STEPS, [0.25] * 8, base=0.95, filtered=0.25) is None
    # already above threshold before the attack
    assert steps_to_fraction(STEPS, [0.9] * 8, base=0.95, filtered=0.25) == 0


def test_log_step_auc_equals_hand_trapezoid():
    # Hand computation: x_i = ln(1+s_i)/ln(101), trapezoids of the recovered fraction.
    x = [math.log(1 + s) / math.log(101) for s in STEPS]
    r = [(a - 0.25) / 0.70 for a in ACC]
    hand = sum((x[i + 1] - x[i]) * (r[i + 1] + r[i]) / 2 for i in range(len(x) - 1))
    assert log_step_auc(STEPS, r) == pytest.approx(hand, abs=1e-12)
    # closed forms: a constant curve has area equal to the constant; a curve equal to x has area 1/2
    assert log_step_auc(STEPS, [0.3] * 8) == pytest.approx(0.3)
    assert log_step_auc(STEPS, x) == pytest.approx(0.5)  # the trapezoid rule is exact on a line
    assert log_step_auc([0, 10], [0.0, 1.0]) == pytest.approx(0.5)


def test_summarize_curve_matches_hand_numbers():
    out = summarize_curve(STEPS, ACC, base=0.95, filtered=0.25)
    assert out["acc_start"] == 0.25 and out["acc_final"] == 0.85 and out["acc_max"] == 0.85
    assert out["half_gap_threshold"] == pytest.approx(0.60)
    assert out["steps_to_half_gap"] == 20 and out["recovered_half_gap"] is True
    assert out["recovered_final"] == pytest.approx((0.85 - 0.25) / 0.70)
    assert out["auc_recovery_log"] == pytest.approx(log_step_auc(STEPS, recovered_fraction(ACC, 0.95, 0.25)))
    # auc of raw accuracy = filtered + gap * auc of the recovered fraction (linearity of the area)
    assert out["auc_acc_log"] == pytest.approx(0.25 + 0.70 * out["auc_recovery_log"])
    # without references, the reference-based numbers are absent rather than invented
    bare = summarize_curve(STEPS, ACC)
    assert bare["steps_to_half_gap"] is None and bare["auc_recovery_log"] is None
    assert bare["auc_acc_log"] == pytest.approx(out["auc_acc_log"])


def test_faster_recovery_has_larger_area_negative_control():
    slow = [0.25, 0.25, 0.25, 0.25, 0.30, 0.40, 0.60, 0.85]
    fast = summarize_curve(STEPS, ACC, 0.95, 0.25)["auc_recovery_log"]
    assert summarize_curve(STEPS, slow, 0.95, 0.25)["auc_recovery_log"] < fast
    # filtered-like curve staying at the filtered level: area 0
    assert summarize_curve(STEPS, [0.25] * 8, 0.95, 0.25)["auc_recovery_log"] == pytest.approx(0.0)


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        recovered_fraction([0.5], base=0.25, filtered=0.25)
    with pytest.raises(ValueError):
        log_step_auc([1, 2], [0.1, 0.2])  # must start at step 0
    with pytest.raises(ValueError):
        log_step_auc([0, 2, 2], [0.1, 0.2, 0.3])


def test_mean_interval_equals_scipy_t_interval():
    values = np.array([0.6, 0.7, 0.8, 0.75])
    mean, low, high = mean_interval(values)
    ref = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert mean == pytest.approx(values.mean())
    assert (low, high) == pytest.approx(ref)
    one = mean_interval([0.5, np.nan])
    assert one[0] == 0.5 and math.isnan(one[1]) and math.isnan(one[2])


def test_time_to_recovery_draws_censored_models_at_the_budget_not_as_crossings():
    import pandas as pd

    from brittle.plotting.recovery import plot_time_to_recovery

    table = pd.DataFrame({
        "role": ["unlearned", "unlearned", "unlearned", "filtered", "base"],
        "method": ["npo", "npo", "rmu", None, None],
        "strength": ["matched", "weak", "matched", None, None],
        "hazard_steps_to_half_gap": [20.0, float("nan"), 5.0, float("nan"), 0.0],
        "hazard_steps_budget": [400.0, 400.0, 400.0, 400.0, 400.0],
    })
    fig = plot_time_to_recovery(table, "hazard")
    ax = fig.axes[0]
    points = [(c.get_offsets()[0][1], c.get_paths()[0]) for c in ax.collections]
    ys = sorted(y for y, _ in points)
    assert ys == [5.0, 20.0, 400.0, 400.0]           # two crossings, two censored at the budget; no base
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["npo", "rmu", "filtered"]
    # a table without relearning results gives no figure rather than an empty one
    assert plot_time_to_recovery(table.drop(columns=["hazard_steps_budget"]), "hazard") is None
