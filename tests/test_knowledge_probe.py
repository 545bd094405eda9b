"""The knowledge probe (brittle/knowledge_probe.py, knowledge_probe_analysis.py) against planted
signals and their negative controls.

* A value code planted in one hidden state is read there (up to the ceiling: a class never seen in
  training cannot be named) and nowhere else; the shuffled-label control stays at chance.
* Entity-identity features let a probe memorise entity -> value when train and test share
  entities, and give chance under the entity-grouped folds (the leak the folds exist to close).
* Through the script on a tiny GPT-NeoX: a code planted by a hook at the last real prompt token of
  right-padded batches is read at the final hidden state only; planted at the first token instead,
  nothing is read (the step takes the answer position, not the first or a padded one).
"""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest

from brittle.data import synthetic as syn
from brittle.errors import UserError
from brittle.knowledge_probe import (
    TEST_TEMPLATES,
    TRAIN_TEMPLATES,
    fold_rows,
    probe_family,
    probe_items,
    restricted_predictions,
    shuffled_within_relation,
    value_counts,
)
from brittle.probes import entity_folds

WORLD = syn.build_world(seed=0, n_scored=24, n_format=2)


def _hazard():
    items = probe_items(WORLD.facts)
    return items.subset(items.family == "hazard")


def _chance_and_ceiling(items, folds=5, seed=0):
    """Independent oracles: chance = mean 1/|values of the relation| over test prompts (values
    counted from the world's facts), ceiling = share of test prompts whose (relation, value) some
    training prompt of their fold carries."""
    values = {}
    for f in WORLD.facts:
        values.setdefault(f.relation, set()).add(f.value)
    chance, seen = [], []
    for train, test in fold_rows(items.entity, items.template, folds, seed):
        known = set(zip(items.relation[train], items.value[train]))
        for i in test:
            chance.append(1 / len(values[items.relation[i]]))
            seen.append((items.relation[i], items.value[i]) in known)
    return float(np.mean(chance)), float(np.mean(seen))


def test_folds_hold_out_entities_and_templates():
    items = _hazard()
    splits = fold_rows(items.entity, items.template, folds=5, seed=3)
    tested = np.concatenate([test for _, test in splits])
    assert len(splits) == 5 and len(tested) == len(set(tested))          # each test prompt scored once
    assert set(items.entity[tested]) == set(items.entity)                # every entity held out once
    for train, test in splits:
        assert not set(items.entity[train]) & set(items.entity[test])    # no entity on both sides
        assert set(items.template[train]) == set(TRAIN_TEMPLATES)
        assert set(items.template[test]) == set(TEST_TEMPLATES)
    assert len(entity_folds(["a", "b", "c"], folds=5)) == 3               # capped by the entities
    with pytest.raises(UserError):
        entity_folds(["a", "a"])


def test_shuffled_labels_keep_each_relations_labels_and_each_facts_consistency():
    items = _hazard()
    labels = np.unique(items.value, return_inverse=True)[1]
    train, _ = fold_rows(items.entity, items.template, folds=4, seed=0)[0]
    out = shuffled_within_relation(labels, items.entity, items.relation, train, np.random.default_rng(0))
    others = np.setdiff1d(np.arange(len(labels)), train)
    assert (out[others] == labels[others]).all()
    for rel in np.unique(items.relation):
        sel = train[items.relation[train] == rel]
        assert sorted(out[sel]) == sorted(labels[sel])                     # a permutation within the relation
        for entity in np.unique(items.entity[sel]):
            assert len(set(out[sel][items.entity[sel] == entity])) == 1    # one label per fact
    assert (out[train] != labels[train]).mean() > 0.5


def test_predictions_stay_within_the_prompts_relation():
    # classes 0, 1 belong to relation 0, class 2 to relation 1; class 2 dominates every score
    x_train = np.array([[0.0, 0], [1, 0], [0, 1], [0, 1.1], [5, 5], [5.1, 5]])
    y_train = np.array([0, 0, 1, 1, 2, 2])
    class_relation = np.array([0, 0, 1])
    pred = restricted_predictions(x_train, y_train, np.array([[5.0, 5], [5.0, 5]]), np.array([0, 1]), class_relation)
    assert pred[0] in (0, 1) and pred[1] == 2
    # one training class: it is the answer for its relation, and no answer (-1) for another
    one = restricted_predictions(x_train[:2], y_train[:2], x_train[:2], np.array([0, 1]), class_relation)
    assert one.tolist() == [0, -1]


def test_planted_value_code_is_read_at_its_hidden_state_only():
    items = _hazard()
    rng = np.random.default_rng(0)
    classes = np.unique(np.char.add(items.relation, items.value), return_inverse=True)[1]
    code = rng.normal(size=(classes.max() + 1, 16))
    states = rng.normal(size=(len(items.prompts), 3, 16))
    states[:, 1] += 3 * code[classes]                        # the value, linearly, in hidden state 1 only
    rows = pd.DataFrame(probe_family(states, items, value_counts(WORLD.facts), n_boot=30))
    chance, ceiling = _chance_and_ceiling(items)
    np.testing.assert_allclose(rows["chance"], chance)
    np.testing.assert_allclose(rows["ceiling"], ceiling)
    assert ceiling > 0.6
    planted = rows.set_index("hidden_state").loc[1]
    assert planted["accuracy"] >= ceiling - 0.02 and planted["accuracy_ci_low"] > chance + 0.3
    assert (rows.loc[rows.hidden_state != 1, "accuracy"] < chance + 0.08).all()   # noise only: chance
    assert planted["shuffled_accuracy"] < chance + 0.08                            # the control, same features
    assert (rows.n_test == 24 * 5 * len(TEST_TEMPLATES)).all()


def test_entity_identity_features_leak_only_without_entity_grouping():
    """A lookup table is not knowledge: features naming the entity and the relation (the same on
    every template) let a probe memorise values when the test entities were in training; the
    entity-grouped folds leave it at chance."""
    items = _hazard()
    rng = np.random.default_rng(1)
    entity_code = {e: rng.normal(size=32) for e in np.unique(items.entity)}
    relation_code = {r: rng.normal(size=8) for r in np.unique(items.relation)}
    x = np.stack([np.r_[entity_code[e], relation_code[r]] for e, r in zip(items.entity, items.relation)])
    rows = pd.DataFrame(probe_family(x[:, None, :], items, value_counts(WORLD.facts), n_boot=0))
    chance, _ = _chance_and_ceiling(items)
    assert rows.loc[0, "accuracy"] < chance + 0.08
    # negative control of the guard: the same probe with every entity on both sides reads the table
    _, first, labels = np.unique(np.char.add(items.relation, items.value), return_index=True, return_inverse=True)
    relation_id = np.unique(items.relation, return_inverse=True)[1]
    class_relation = relation_id[first]
    train, test = np.isin(items.template, TRAIN_TEMPLATES), np.isin(items.template, TEST_TEMPLATES)
    pred = restricted_predictions(x[train], labels[train], x[test], relation_id[test], class_relation, c=100.0)
    assert (pred == labels[test]).mean() > 0.9


# ------------------------------------------------------------------ through the script

@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    import create_datasets
    from brittle.tokenizer import train_word_tokenizer
    from tests.tiny_models import make_tiny_model, save_tiny

    root = tmp_path_factory.mktemp("knowledge")
    data = root / "data"
    assert create_datasets.main(["--outdir", str(data), "--n-scored", "24", "--n-format", "2"]) == 0
    tok = train_word_tokenizer((data / "corpus" / "full.txt").read_text().splitlines())
    model = save_tiny(make_tiny_model("gpt_neox", vocab_size=len(tok), layers=2), root / "tiny", tok)
    return root, data, model, tok


def _planting_loader(tok, where: str, padded: list):
    """brittle.models.load_model, plus hooks that add a code of the fact's (relation, value) to the
    final norm's output (hidden state L only) at the last real token (``where="last"``) or the first
    token of each prompt; the prompt is recognised by its token ids, built here from the world."""
    import torch

    from brittle import models

    rng = np.random.default_rng(0)
    code_of, by_class = {}, {}
    for f in WORLD.facts:
        if f.role == "scored":
            vec = by_class.setdefault((f.relation, f.value), torch.tensor(rng.normal(size=32) * 5, dtype=torch.float32))
            for t in TRAIN_TEMPLATES + TEST_TEMPLATES:
                prompt = syn.cloze_prompt(WORLD.templates(f.domain, f.relation)[t], f.entity)
                code_of[tuple(tok(prompt)["input_ids"])] = vec
    original = models.load_model

    def load(*args, **kwargs):
        model = original(*args, **kwargs)
        seen = {}
        model.gpt_neox.register_forward_pre_hook(lambda _m, _a, kw: seen.update(kw), with_kwargs=True)

        def plant(_m, _a, out):
            out = out.clone()
            mask = seen["attention_mask"]
            padded.append(bool((mask == 0).any()))
            for row, ids in enumerate(seen["input_ids"]):
                n = int(mask[row].sum())
                out[row, n - 1 if where == "last" else 0] += code_of[tuple(ids[:n].tolist())]
            return out

        model.gpt_neox.final_layer_norm.register_forward_hook(plant)
        return model

    return load


@pytest.mark.parametrize("where", ["last", "first"])
def test_script_reads_the_answer_position_of_right_padded_batches(tiny_world, where, monkeypatch, capsys):
    import knowledge_probe_analysis
    from brittle import models
    from brittle.report_numbers import knowledge_probe_hazard

    # imported before the patch: a module that first binds load_model while the patch is active
    # (brittle.capture.forward imports it by name) would keep the planting loader for good
    import brittle.capture.forward  # noqa: F401

    root, data, model, tok = tiny_world
    padded: list[bool] = []
    monkeypatch.setattr(models, "load_model", _planting_loader(tok, where, padded))
    out = root / f"out_{where}"
    assert knowledge_probe_analysis.main(["--model", str(model), "--data-dir", str(data), "--output-root", str(out),
                                          "--device", "cpu", "--n-bootstrap", "20", "--folds", "3",
                                          "--batch-size", "16"]) == 0
    assert any(padded)                                   # batches really carried right padding
    folder = out / "tiny" / "knowledge_probe"
    results = pd.read_csv(folder / "knowledge_probe.csv")
    summary = pd.read_csv(folder / "knowledge_probe_summary.csv").set_index("family")
    assert set(results.family) == {"hazard", "near", "far"} and set(results.hidden_state) == {0, 1, 2}
    last = results[results.hidden_state == 2]
    early = results[results.hidden_state < 2]
    assert (early.accuracy < early.chance + 0.1).all()   # a random model's own states: chance
    if where == "last":
        assert (last.accuracy >= last.ceiling - 0.05).all() and (last.ceiling > 0.5).all()
        assert (summary.best_hidden_state == 2).all()
    else:                                                # the code sits where the probe must not look
        assert (last.accuracy < last.chance + 0.1).all()
    assert (results.shuffled_accuracy < results.chance + 0.1).all()
    assert (folder / "knowledge_probe.png").stat().st_size > 0
    # the report's number is the summary's hazard row, beside its chance and control
    hazard = summary.loc["hazard"]
    assert knowledge_probe_hazard(folder / "knowledge_probe_summary.csv", "tiny") == {
        "knowledge_probe_hazard": pytest.approx(hazard.accuracy),
        "knowledge_probe_hazard_chance": pytest.approx(hazard.chance),
        "knowledge_probe_hazard_control": pytest.approx(hazard.max_shuffled_accuracy)}


def test_a_data_folder_without_facts_is_a_one_line_error(tiny_world, tmp_path, capsys):
    import knowledge_probe_analysis

    _, _, model, _ = tiny_world
    assert knowledge_probe_analysis.main(["--model", str(model), "--data-dir", str(tmp_path), "--output-root",
                                          str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "facts.csv" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    with open(tmp_path / "facts.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["domain", "entity"], ["hazard", "x"]])
    assert knowledge_probe_analysis.main(["--model", str(model), "--data-dir", str(tmp_path)]) == 2
    assert "lacks column" in capsys.readouterr().err


def test_help(capsys):
    import knowledge_probe_analysis

    with pytest.raises(SystemExit) as exc:
        knowledge_probe_analysis.main(["--help"])
    assert exc.value.code == 0 and "uv run knowledge_probe_analysis.py" in capsys.readouterr().out
