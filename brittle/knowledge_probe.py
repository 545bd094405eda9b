"""The knowledge probe: is a fact's answer linearly readable at the answer position of a model?

A model that knows a fact predicts its value right after the cloze prompt ("the natural reservoir
of fenlix is" -> "boars"), so the hidden states at the prompt's last token must carry the value.
Unlearning may hide it only from the output: then a linear probe still reads the value from the
hidden states while the model's answers are at chance (the obfuscation signature). A model that
never learned the facts (filtered) leaves nothing to read.

Protocol, per fact family (hazard, near, far) and hidden state (0 = embeddings, i = output of block
i - 1, last = after the final norm):

* features: the state at the last prompt token (``brittle.capture.prompts``), standardised inside
  each fold on the training rows only;
* labels: the fact's value; one multinomial logistic regression per family (fixed C, seeded folds)
  over every (relation, value) class, its prediction restricted to the values of the prompt's own
  relation. One probe rather than one per relation because the value is one readout of one state
  (as the unembedding is), and five times the training rows leave fewer classes with a single
  example; the restriction makes the question the same as per relation ("which value of this
  relation?", the template names the relation), so chance is 1/n_values(relation) exactly;
* split by template *and* entity: train on the training templates (0-4) of the training entities,
  test on the held-out evaluation templates (6-7) of the other entities. With shared entities the
  probe could learn an entity -> value table itself from entity-identity features, and a model that
  never learned the facts would score well; across entities it can only use a value code the model
  computed, the same for every entity with that value;
* comparisons beside every accuracy: chance, mean over test rows of 1/n_values(relation), where
  n_values counts the relation's distinct values in facts.csv; the ceiling, the share of test rows
  whose value occurs among their fold's training labels (a probe cannot name a class it never saw,
  so even a perfect code reads at most this); and a shuffled-label control, the same pipeline with
  each training fact's value replaced by another training fact's value of the same relation (all
  templates of a fact keep one label), which keeps what the relation alone tells and nothing an
  entity tells.

Intervals: 95 % percentile bootstrap over test entities (an entity's facts and templates are
correlated, so resampling prompts would be too narrow).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from brittle.data import synthetic as syn
from brittle.errors import UserError
from brittle.probes import entity_folds
from brittle.stats import ratio_ci

TRAIN_TEMPLATES = tuple(range(syn.N_TRAIN_TEMPLATES))
TEST_TEMPLATES = tuple(syn.EVAL_TEMPLATES)


@dataclass(frozen=True)
class ProbeItems:
    """One row per (scored fact, template) prompt, training and evaluation templates; arrays (n,)."""

    prompts: list[str]
    family: np.ndarray
    entity: np.ndarray
    relation: np.ndarray
    value: np.ndarray
    template: np.ndarray

    def subset(self, keep: np.ndarray) -> "ProbeItems":
        """The rows where the boolean mask ``keep`` (n,) is true."""
        return ProbeItems([p for p, k in zip(self.prompts, keep) if k], self.family[keep], self.entity[keep],
                          self.relation[keep], self.value[keep], self.template[keep])


def probe_items(facts: Sequence[syn.Fact]) -> ProbeItems:
    """The cloze prompts of every scored fact on the training and evaluation templates
    (``synthetic.cloze_prompt``: the text before the value slot). Format facts are left out: they
    are trained on every template, so no template of theirs is held out."""
    rows = []
    for f in facts:
        if f.role != "scored":
            continue
        try:
            templates = syn.schema_templates(f.domain, f.relation)
        except KeyError as exc:
            raise UserError(f"facts.csv names {exc.args[0]}: it was written by another version of the tiny world")
        for t in TRAIN_TEMPLATES + TEST_TEMPLATES:
            rows.append((syn.cloze_prompt(templates[t], f.entity), f.domain, f.entity, f.relation, f.value, t))
    if not rows:
        raise UserError("facts.csv holds no scored facts")
    prompts, *cols = zip(*rows)
    return ProbeItems(list(prompts), *(np.asarray(c) for c in cols[:-1]), np.asarray(cols[-1], dtype=int))


def value_counts(facts: Sequence[syn.Fact]) -> dict[str, int]:
    """Distinct values of each relation over every fact (all families and roles): the number of
    answers a relation can have, whose inverse is a guess's chance of being right."""
    values: dict[str, set] = {}
    for f in facts:
        values.setdefault(f.relation, set()).add(f.value)
    return {rel: len(v) for rel, v in values.items()}


# The solver's stopping tolerance (lbfgs, on the gradient's largest entry). sklearn's default 1e-4 made
# the probe the slowest per-model step (210 fits, 54 s a model on the tiny world); at 1e-3 the fits
# take half the time and the best-state accuracies of base -> npo moved by 0.007-0.024 (hazard 0.302
# -> 0.295, near 0.432 -> 0.417, far 0.642 -> 0.618, all far outside the shuffled control's 0.07-0.11;
# measured 2026-12-02, docs/steps.md). The accuracy depends on where lbfgs stops either way: even
# fitting to 1e-10 changes a few predictions against 1e-4.
TOL = 1e-3


def fold_rows(entity: np.ndarray, template: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, test rows) per entity-grouped fold: training templates of the other entities,
    evaluation templates of the fold's held-out entities (``brittle.probes.entity_folds``)."""
    is_train, is_test = np.isin(template, TRAIN_TEMPLATES), np.isin(template, TEST_TEMPLATES)
    out = []
    for held_out in entity_folds(entity, folds, seed):
        heldout = np.isin(entity, held_out)
        out.append((np.flatnonzero(is_train & ~heldout), np.flatnonzero(is_test & heldout)))
    return out


def shuffled_within_relation(labels: np.ndarray, entity: np.ndarray, relation: np.ndarray, rows: np.ndarray,
                             rng: np.random.Generator) -> np.ndarray:
    """A copy of ``labels`` whose ``rows`` carry permuted labels: the facts (entity, relation) among
    ``rows`` trade their labels with other facts of the same relation, every row of a fact keeping
    one label. Label frequencies per relation are unchanged; the entity -> label link is broken."""
    out = labels.copy()
    for rel in np.unique(relation[rows]):
        sel = rows[relation[rows] == rel]
        facts, first, inverse = np.unique(entity[sel], return_index=True, return_inverse=True)
        out[sel] = labels[sel][first][rng.permutation(len(facts))][inverse]
    return out


def restricted_predictions(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, test_relation: np.ndarray,
                           class_relation: np.ndarray, c: float = 1.0, max_iter: int = 1000,
                           tol: float = TOL) -> np.ndarray:
    """Predicted class (n_test,) int of a multinomial ``LogisticRegression(C=c)`` on standardised
    features, the argmax taken over the classes of each test row's relation only.

    ``x_train`` (n_train, d), ``y_train`` (n_train,) int class ids, ``x_test`` (n_test, d),
    ``test_relation`` (n_test,) int relation ids, ``class_relation`` (n_classes_total,) the relation
    of each class id. A row whose relation has no training class gets -1 (always wrong).
    """
    from threadpoolctl import threadpool_limits

    # single-threaded BLAS, as in brittle.probes: many small products, slower multi-threaded
    with threadpool_limits(1, user_api="blas"):
        return _restricted_predictions(x_train, y_train, x_test, test_relation, class_relation, c, max_iter, tol)


def _restricted_predictions(x_train, y_train, x_test, test_relation, class_relation, c, max_iter, tol) -> np.ndarray:
    """:func:`restricted_predictions` in the caller's BLAS thread setting (entering
    ``threadpool_limits`` costs about 10 ms, a few percent of a fit, so loops enter it once)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes = np.unique(y_train)
    if len(classes) == 1:   # nothing to fit: the one class is the answer wherever it is allowed
        scores = np.zeros((len(x_test), 1))
    else:
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, tol=tol))
        probe.fit(x_train, y_train)
        scores = probe.decision_function(x_test)
        if scores.ndim == 1:   # two classes: sklearn returns the logit of the second
            scores = np.stack([np.zeros_like(scores), scores], axis=1)
    allowed = class_relation[classes][None, :] == test_relation[:, None]
    scores = np.where(allowed, scores, -np.inf)
    return np.where(allowed.any(1), classes[scores.argmax(1)], -1)


def probe_family(states: np.ndarray, items: ProbeItems, n_values: dict[str, int], folds: int = 5,
                 c: float = 1.0, max_iter: int = 1000, seed: int = 0, n_boot: int = 200, tol: float = TOL,
                 tick: Callable[[], None] | None = None) -> list[dict]:
    """One row per hidden state for one family's prompts (see the module docstring).

    ``states`` (n, H, d) float: hidden states at the last prompt token of ``items``' rows (one
    family); ``n_values``: :func:`value_counts`. Row keys: hidden_state, n_entities, n_train (mean
    training prompts per fold), n_test (test prompts, each scored once), accuracy (+ _ci_low,
    _ci_high), chance, ceiling, shuffled_accuracy (+ interval). ``tick`` is called once per hidden
    state (a progress bar).
    """
    n, n_states, _ = states.shape
    pairs = np.char.add(np.char.add(items.relation.astype(str), "\t"), items.value.astype(str))
    class_names, labels = np.unique(pairs, return_inverse=True)
    relations, relation_id = np.unique(items.relation, return_inverse=True)
    class_relation = np.searchsorted(relations, [name.split("\t", 1)[0] for name in class_names])
    splits = fold_rows(items.entity, items.template, folds, seed)
    rng = np.random.default_rng(seed)
    shuffled = [shuffled_within_relation(labels, items.entity, items.relation, train, rng) for train, _ in splits]
    test_rows = np.concatenate([test for _, test in splits])
    if len(test_rows) == 0:
        raise UserError("no evaluation-template prompts to test the knowledge probe on")
    seen = np.concatenate([np.isin(labels[test], labels[train]) for train, test in splits])
    chance = float(np.mean([1.0 / n_values[r] for r in items.relation[test_rows]]))
    entities, entity_of_test = np.unique(items.entity[test_rows], return_inverse=True)
    counts = np.bincount(entity_of_test, minlength=len(entities)).astype(float)

    def interval(correct: np.ndarray, offset: int) -> tuple[float, float, float]:
        per_entity = np.bincount(entity_of_test, weights=correct.astype(float), minlength=len(entities))
        est, lo, hi = ratio_ci(per_entity, counts, n_boot, seed + offset)
        return float(est), float(lo), float(hi)

    from threadpoolctl import threadpool_limits

    rows = []
    for index in range(n_states):
        x = states[:, index].astype(np.float64)
        correct, control = [], []
        with threadpool_limits(1, user_api="blas"):   # once per state, not once per fit
            for (train, test), y_shuffled in zip(splits, shuffled):
                for target, out in ((labels, correct), (y_shuffled, control)):
                    pred = _restricted_predictions(x[train], target[train], x[test], relation_id[test],
                                                   class_relation, c, max_iter, tol)
                    out.append(pred == labels[test])   # the control is scored against the true values
        acc, lo, hi = interval(np.concatenate(correct), index)
        s_acc, s_lo, s_hi = interval(np.concatenate(control), 1000 + index)
        rows.append({"hidden_state": index, "n_entities": len(np.unique(items.entity)),
                     "n_train": float(np.mean([len(train) for train, _ in splits])), "n_test": int(len(test_rows)),
                     "accuracy": acc, "accuracy_ci_low": lo, "accuracy_ci_high": hi, "chance": chance,
                     "ceiling": float(seen.mean()), "shuffled_accuracy": s_acc, "shuffled_accuracy_ci_low": s_lo,
                     "shuffled_accuracy_ci_high": s_hi})
        if tick is not None:
            tick()
    return rows


def best_per_family(results: pd.DataFrame) -> pd.DataFrame:
    """Per family: the hidden state of highest accuracy, its row's numbers, and the highest
    shuffled-control accuracy over all hidden states (the fair comparison for a maximum: picking
    the best of H states on the test scores favours the probe by as much as it favours the control)."""
    out = []
    for family, frame in results.groupby("family", sort=False):
        best = frame.loc[frame["accuracy"].idxmax()]
        out.append({"family": family, "best_hidden_state": int(best["hidden_state"]),
                    **{k: best[k] for k in ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "chance", "ceiling",
                                            "shuffled_accuracy")},
                    "max_shuffled_accuracy": float(frame["shuffled_accuracy"].max()), "n_test": int(best["n_test"])})
    return pd.DataFrame(out)
