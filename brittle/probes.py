"""Linear probes: logistic regression on per-text vectors, scored out of fold.

Every text gets a score from a probe that did not see it in training (stratified k-fold), so
accuracy and AUC are held-out numbers and their bootstrap CIs can resample the texts' scores
without refitting. Features are standardised inside each fold (fit on the training part only).

When the texts come with groups (the tiny world's entities, ``<texts>.groups.txt``), folds never
split a group: a text is scored by a probe that never saw its entity, so memorising names earns
nothing. :func:`lexical_auc` runs the same protocol on word counts instead of hidden states: the
baseline a probe on activations has to beat before it says anything beyond vocabulary.
"""

from __future__ import annotations

import numpy as np

from brittle.errors import UserError
from brittle.stats import percentile_ci


def fold_splits(y: np.ndarray, folds: int = 5, seed: int = 0, groups=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs of a stratified k-fold split; with ``groups`` (n,) a stratified
    *group* k-fold, so no group has texts on both sides. Folds are capped by the smaller class
    size (and by the number of groups of each class)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(y)
    counts = np.bincount(y, minlength=2)
    if counts.min() < 2:
        raise UserError(f"a probe needs at least 2 texts of each class (got {counts.tolist()})")
    if groups is None:
        splitter = StratifiedKFold(n_splits=min(folds, counts.min()), shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(len(y)), y))
    groups = np.asarray(groups)
    if len(groups) != len(y):
        raise UserError(f"{len(groups)} group labels for {len(y)} texts")
    per_class = min(len(np.unique(groups[y == k])) for k in (0, 1))
    if per_class < 2:
        raise UserError("grouped folds need at least 2 groups (entities) of each class")
    splitter = StratifiedGroupKFold(n_splits=min(folds, per_class), shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y, groups))


def entity_folds(groups, folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    """The held-out groups of each fold: the distinct values of ``groups`` (e.g. entity names),
    shuffled with ``seed`` and dealt into ``min(folds, number of groups)`` near-equal parts.

    Unlike :func:`fold_splits` there are no classes to stratify (a fact's answer has a dozen values,
    most seen a few times), so the split is over groups alone; every group is held out exactly once.
    Fewer than 2 groups is a :class:`UserError`: nothing would be left to train on.
    """
    distinct = np.unique(np.asarray(groups))
    if len(distinct) < 2:
        raise UserError(f"entity-grouped folds need at least 2 entities (got {len(distinct)})")
    order = np.random.default_rng(seed).permutation(distinct)
    return list(np.array_split(order, min(folds, len(distinct))))


def out_of_fold_scores(x: np.ndarray, y: np.ndarray, c: float = 1.0, max_iter: int = 1000,
                       folds: int = 5, seed: int = 0, groups=None, standardize: bool = True) -> np.ndarray:
    """Decision scores (n,) of ``LogisticRegression(C=c)`` for each row, from the fold it was held out of.

    ``x`` (n, d) float (dense or scipy sparse), ``y`` (n,) in {0, 1}, ``groups`` (n,) or None:
    see :func:`fold_splits`. ``standardize``: z-score the features inside each fold.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    y = np.asarray(y)
    scores = np.zeros(len(y))
    # Single-threaded BLAS: L-BFGS makes many small matrix-vector products, and a multi-threaded
    # BLAS next to torch's thread pool made each fit ~40x slower on this 2-core machine.
    with threadpool_limits(1, user_api="blas"):
        for train, test in fold_splits(y, folds, seed, groups):
            steps = [StandardScaler()] if standardize else []
            probe = make_pipeline(*steps, LogisticRegression(C=c, max_iter=max_iter))
            probe.fit(x[train], y[train])
            scores[test] = probe.decision_function(x[test])
    return scores


def lexical_scores(positive: list[str], negative: list[str], groups=None, folds: int = 5,
                   seed: int = 0) -> np.ndarray:
    """Out-of-fold scores (positives first) of a logistic regression on word unigram and bigram
    counts: what vocabulary alone says about which class a text belongs to. Words are
    whitespace-separated tokens, punctuation included (" ." ends every tiny-world line)."""
    from sklearn.feature_extraction.text import CountVectorizer

    texts = list(positive) + list(negative)
    y = np.r_[np.ones(len(positive), int), np.zeros(len(negative), int)]
    # The vocabulary is fitted on all texts: a word seen only in a held-out fold gets a zero weight
    # anyway, so this leaks nothing into the scores.
    counts = CountVectorizer(ngram_range=(1, 2), token_pattern=r"\S+", lowercase=True).fit_transform(texts)
    return out_of_fold_scores(counts.tocsr().astype(np.float64), y, folds=folds, seed=seed, groups=groups,
                              standardize=False)


def lexical_auc(positive: list[str], negative: list[str], groups=None, folds: int = 5, seed: int = 0) -> float:
    """Held-out AUC of :func:`lexical_scores` (0.5: the words say nothing about the class)."""
    y = np.r_[np.ones(len(positive), int), np.zeros(len(negative), int)]
    return auc(y, lexical_scores(positive, negative, groups, folds, seed))


def auc(y: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC = P(score of a random positive > score of a random negative), ties count 1/2."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    ranks = rankdata(scores)
    n_pos, n_neg = y.sum(), (~y).sum()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def resampled_auc(y: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """:func:`auc` of every bootstrap replicate at once: (n_boot,) float64.

    ``counts`` (n_boot, n) int: how often each row of ``y``/``scores`` (n,) is drawn in each
    replicate (``brittle.stats.resample_counts``); replicate r is the AUC of the rows repeated
    ``counts[r]`` times. Computed as the Mann–Whitney count over the distinct score values,
    U = Σ_v P_v (N_{<v} + N_v / 2) with P_v, N_v the positive and negative draws at value v, in
    integers (2U is exact in int64); the one division U / (n_pos n_neg) is then the very float
    operation :func:`auc` ends with, so both give the same bits, without a sort per replicate.
    """
    y = np.asarray(y).astype(bool)
    counts = np.asarray(counts, dtype=np.int64)
    _, value = np.unique(np.asarray(scores), return_inverse=True)   # (n,) rank of each distinct score
    k = int(value.max()) + 1
    at = np.zeros((2, counts.shape[0], k), dtype=np.int64)           # draws per value: [negatives, positives]
    for cls in (0, 1):
        rows = np.flatnonzero(y == cls)
        np.add.at(at[cls].T, value[rows], counts[:, rows].T)
    neg, pos = at
    below = np.cumsum(neg, axis=1) - neg                              # N_{<v}
    twice_u = (pos * (2 * below + neg)).sum(1)
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    return (twice_u / 2) / (n_pos * n_neg)


def probe_metrics(y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Held-out accuracy (score > 0), majority-class baseline, selectivity = accuracy − baseline, AUC."""
    y = np.asarray(y)
    accuracy = float(((scores > 0).astype(int) == y).mean())
    majority = float(max(y.mean(), 1 - y.mean()))
    return {"accuracy": accuracy, "majority_baseline": majority, "selectivity": accuracy - majority,
            "auc": auc(y, scores)}


def probe_metric_cis(y: np.ndarray, scores: np.ndarray, n_boot: int, seed: int,
                     alpha: float = 0.05) -> dict[str, tuple[float, float]]:
    """Percentile CIs of accuracy, selectivity and AUC, resampling texts within each class (the
    class sizes, hence the majority baseline, stay fixed)."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    reps = []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        m = probe_metrics(y[idx], scores[idx])
        reps.append([m["accuracy"], m["selectivity"], m["auc"]])
    lo, hi = percentile_ci(np.array(reps), alpha)
    return {k: (float(lo[i]), float(hi[i])) for i, k in enumerate(("accuracy", "selectivity", "auc"))}
