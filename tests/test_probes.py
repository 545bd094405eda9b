"""Grouped folds and the lexical baseline (brittle.probes): planted signals with negative controls."""

import numpy as np
import pytest

from brittle.errors import UserError
from brittle.probes import fold_splits, lexical_auc, out_of_fold_scores, probe_metrics


def _entity_world(n_entities=20, per_entity=10, seed=0):
    """Texts whose class is marked only by the entity they name: each entity belongs to one class,
    every other word is drawn from one shared pool."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(30)]
    pos, neg, g_pos, g_neg = [], [], [], []
    for e in range(n_entities):
        for _ in range(per_entity):
            text = f"ent{e} " + " ".join(rng.choice(words, 6)) + " ."
            (pos if e % 2 else neg).append(text)
            (g_pos if e % 2 else g_neg).append(f"ent{e}")
    return pos, neg, g_pos + g_neg


def test_group_folds_never_split_a_group():
    y = np.r_[np.ones(40, int), np.zeros(40, int)]
    groups = np.repeat(np.arange(16), 5)
    splits = fold_splits(y, 5, 0, groups)
    assert len(splits) == 5
    tested = np.concatenate([test for _, test in splits])
    assert sorted(tested) == list(range(80))                      # every text scored exactly once
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
    # without groups the same call mixes groups across folds (the negative control)
    assert any(set(groups[tr]) & set(groups[te]) for tr, te in fold_splits(y, 5, 0))
    with pytest.raises(UserError):
        fold_splits(y, 5, 0, groups[:10])


def test_grouping_removes_what_entity_names_give():
    """Ungrouped folds let the classifier memorise which entity is which class (high AUC); grouped
    folds score every text by a classifier that never saw its entity (AUC near 0.5)."""
    pos, neg, groups = _entity_world()
    assert lexical_auc(pos, neg) > 0.95
    assert abs(lexical_auc(pos, neg, groups=groups) - 0.5) < 0.15


def test_lexical_auc_finds_a_planted_word_and_not_noise():
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(30)]
    make = lambda marker: [" ".join([*rng.choice(words, 5), marker]) for _ in range(60)]   # noqa: E731
    assert lexical_auc(make("alpha"), make("beta")) > 0.99                 # a class word
    assert abs(lexical_auc(make("gamma"), make("gamma")) - 0.5) < 0.15      # nothing to find
    # bigrams count: same words, different order
    a = [" ".join([*rng.choice(words, 4), "red", "car"]) for _ in range(60)]
    b = [" ".join([*rng.choice(words, 4), "car", "red"]) for _ in range(60)]
    assert lexical_auc(a, b) > 0.99


def test_grouped_probe_on_activations():
    """A planted class direction is found through grouped folds; a group-only signal is not."""
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(20), 6)
    y = (groups % 2).astype(int)
    offsets = rng.normal(size=(20, 8)) * 3                        # each group has its own mean
    x = offsets[groups] + rng.normal(size=(120, 8))
    assert abs(probe_metrics(y, out_of_fold_scores(x, y, groups=groups))["auc"] - 0.5) < 0.25
    x[:, 0] = 4 * y + rng.normal(size=120)                         # a class signal shared by all groups
    assert probe_metrics(y, out_of_fold_scores(x, y, groups=groups))["auc"] > 0.9


def test_resampled_auc_is_the_auc_of_each_expanded_replicate_bit_for_bit():
    """Every replicate equals :func:`auc` on the rows repeated by its counts (the old loop), to
    the bit, and sklearn's weighted ROC AUC (an independent reference) to rounding; scores with
    many ties, where the ½ rule matters. Negative control: ignoring the counts gives other AUCs."""
    from sklearn.metrics import roc_auc_score

    from brittle.probes import auc, resampled_auc
    from brittle.stats import resample_counts

    rng = np.random.default_rng(3)
    y = np.r_[np.ones(60, int), np.zeros(40, int)]
    scores = np.round(rng.standard_normal(100) + 0.5 * y, 1)      # rounded: many tied values
    counts = np.concatenate([resample_counts(60, 50, 1), resample_counts(40, 50, 2)], axis=1).astype(int)
    got = resampled_auc(y, scores, counts)
    expanded = np.array([auc(np.repeat(y, row), np.repeat(scores, row)) for row in counts])
    assert np.array_equal(got, expanded)
    weighted = np.array([roc_auc_score(y, scores, sample_weight=row) for row in counts])
    np.testing.assert_allclose(got, weighted, rtol=1e-12)
    assert not np.allclose(got, auc(y, scores))
