"""Linear probes: logistic regression on per-text vectors, scored out of fold.

Every text gets a score from a probe that did not see it in training (stratified k-fold), so
accuracy and AUC are held-out numbers and their bootstrap CIs can resample the texts' scores
without refitting. Features are standardised inside each fold (fit on the training part only).
"""

from __future__ import annotations

import numpy as np

from brittle.errors import UserError
from brittle.stats import percentile_ci


def out_of_fold_scores(x: np.ndarray, y: np.ndarray, c: float = 1.0, max_iter: int = 1000,
                       folds: int = 5, seed: int = 0) -> np.ndarray:
    """Decision scores (n,) of ``LogisticRegression(C=c)`` for each row, from the fold it was held out of.

    ``x`` (n, d) float, ``y`` (n,) in {0, 1}. Folds are capped by the smaller class size.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    y = np.asarray(y)
    smallest = np.bincount(y, minlength=2).min()
    if smallest < 2:
        raise UserError(f"a probe needs at least 2 texts of each class (got {np.bincount(y, minlength=2).tolist()})")
    scores = np.zeros(len(y))
    splitter = StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=seed)
    # Single-threaded BLAS: L-BFGS makes many small matrix-vector products, and a multi-threaded
    # BLAS next to torch's thread pool made each fit ~40x slower on this 2-core machine.
    with threadpool_limits(1, user_api="blas"):
        for train, test in splitter.split(x, y):
            probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
            probe.fit(x[train], y[train])
            scores[test] = probe.decision_function(x[test])
    return scores


def auc(y: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC = P(score of a random positive > score of a random negative), ties count 1/2."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    ranks = rankdata(scores)
    n_pos, n_neg = y.sum(), (~y).sum()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


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
