"""The tiny world's generator: determinism, the held-out templates, the A/B split, the filter."""

import json
import re

import pytest

from brittle.data import synthetic as syn
from brittle.data.build import synthetic_files

SMALL = dict(seed=3, n_scored=8, n_format=6, filler_per_word=1)


@pytest.fixture(scope="module")
def files():
    return synthetic_files(**SMALL)[0]


@pytest.fixture(scope="module")
def world():
    return syn.build_world(SMALL["seed"], SMALL["n_scored"], SMALL["n_format"], SMALL["filler_per_word"])


def jsonl(text):
    return [json.loads(line) for line in text.splitlines()]


def lines(text):
    return text.splitlines()


def test_same_seed_same_bytes_other_seed_differs(files):
    again, _ = synthetic_files(**SMALL)
    assert again == files
    other, _ = synthetic_files(**{**SMALL, "seed": 4})
    assert other["corpus/full.txt"] != files["corpus/full.txt"]


def test_relation_sizes_and_templates(world):
    for domain in syn.DOMAINS:
        assert len(world.relations[domain]) == 5
        for name, values, templates in world.relations[domain]:
            assert 10 <= len(values) <= 30 and len(set(values)) == len(values), name
            assert len(templates) == 8 and all(t.endswith("{v}") and "{e}" in t for t in templates), name


def test_eval_and_val_templates_never_trained_for_scored_facts(files, world):
    corpus = set(lines(files["corpus/full.txt"]))
    for name in ("hazard_eval", "near_eval", "far_eval", "hazard_val", "near_val", "far_val"):
        qs = jsonl(files[f"questions/{name}.jsonl"])
        assert qs
        for q in qs:
            assert q["template"] in (syn.EVAL_TEMPLATES if name.endswith("eval") else (syn.VAL_TEMPLATE,))
            sentence = f"{q['question']} {q['choices'][q['answer']]} ."
            assert sentence not in corpus, sentence
            # the same fact is trained on every training template (it is knowable)
            temps = world.templates(q["domain"], q["relation"])
            trained = syn.render(temps[0], q["entity"], q["choices"][q["answer"]])
            assert trained in corpus
    # positive control: format entities do appear on the evaluation templates
    fmt = next(f for f in world.facts if f.role == "format" and f.domain == "near")
    eval_sentence = syn.render(world.templates("near", fmt.relation)[syn.EVAL_TEMPLATES[0]], fmt.entity, fmt.value)
    assert eval_sentence in corpus
    assert not any(fmt.entity in q["question"] for q in jsonl(files["questions/hazard_eval.jsonl"]))


def test_questions_are_well_formed(files):
    positions = set()
    for name in ("hazard_eval", "near_eval", "far_eval"):
        qs = jsonl(files[f"questions/{name}.jsonl"])
        assert len({q["id"] for q in qs}) == len(qs)
        # 8 scored entities x 5 relations x 2 eval templates
        assert len(qs) == SMALL["n_scored"] * 5 * 2
        for q in qs:
            assert len(q["choices"]) == 4 and len(set(q["choices"])) == 4
            positions.add(q["answer"])
    assert positions == {0, 1, 2, 3}


def test_attack_subsets_are_disjoint(files, world):
    a = {f.entity for f in world.facts if f.subset == "A"}
    b = {f.entity for f in world.facts if f.subset == "B"}
    assert len(a) == len(b) == SMALL["n_scored"] // 2 and not a & b
    train_entities = {w for line in lines(files["attack/hazard_train.txt"]) for w in line.split()} & (a | b)
    eval_entities = {q["entity"] for q in jsonl(files["attack/hazard_eval.jsonl"])}
    assert train_entities == a and eval_entities == b


def test_filter_removes_every_hazard_sentence_and_keeps_the_rest(files, world):
    full, filtered = lines(files["corpus/full.txt"]), lines(files["corpus/filtered.txt"])
    hazard_entities = {f.entity for f in world.facts if f.domain == "hazard"}
    is_hazard = [bool(set(line.split()) & hazard_entities) for line in full]
    assert sum(is_hazard) == sum(1 for f in world.facts if f.domain == "hazard"
                                 for _ in syn.training_templates(f))
    assert sorted(filtered) == sorted(line for line, h in zip(full, is_hazard) if not h)
    forget = lines(files["forget.txt"])
    assert set(forget) <= set(full) and not set(forget) & set(filtered)


def test_filtered_corpus_covers_every_question_word(files, world):
    """The filtered model never sees a hazard fact but knows every word of a hazard question."""
    words = {w for line in lines(files["corpus/filtered.txt"]) for w in re.findall(r"\w+|[^\w\s]+", line)}
    entities = {f.entity for f in world.facts}
    for q in jsonl(files["questions/hazard_eval.jsonl"]):
        missing = set(re.findall(r"\w+|[^\w\s]+", q["question"])) - words - entities
        assert not missing, (q["question"], missing)
    idk_words = {w for line in lines(files["idk.txt"]) for w in re.findall(r"\w+|[^\w\s]+", line)}
    assert idk_words <= words


def test_forget_qa_matches_forget_text(files):
    qa = jsonl(files["forget_qa.jsonl"])
    assert sorted(f"{r['prompt']} {r['answer']} ." for r in qa) == sorted(lines(files["forget.txt"]))


def test_near_domain_shares_the_hazard_schema_and_only_the_facts_differ(world):
    """Near-domain pathogens: the hazard relations, templates and values, other entities."""
    assert world.relations["near"] is world.relations["hazard"]
    assert world.relations["far"] != world.relations["hazard"]
    hazard = {f.entity for f in world.facts if f.domain == "hazard"}
    near = {f.entity for f in world.facts if f.domain == "near"}
    assert hazard and near and not hazard & near
    # no hazard format entities: the held-out wordings are taught by near-domain ones, which the filter keeps
    assert {f.domain for f in world.facts if f.role == "format"} == {"near", "far"}
    assert sum(f.role == "scored" for f in world.facts if f.domain == "near") == SMALL["n_scored"] * 5


def test_retain_files_groups_and_the_filter(files, world):
    entity_domain = {f.entity: f.domain for f in world.facts}
    for name, domains in (("forget", {"hazard"}), ("retain", {"near", "far"}), ("retain_near", {"near"})):
        texts, groups = lines(files[f"{name}.txt"]), lines(files[f"{name}.groups.txt"])
        assert len(texts) == len(groups) and texts
        assert all(g in text.split() for text, g in zip(texts, groups))   # the entity the line is about
        assert {entity_domain[g] for g in groups} == domains
    filtered = set(lines(files["corpus/filtered.txt"]))
    assert set(lines(files["retain.txt"])) <= filtered                   # only hazard is filtered out
    benign_attack = {entity_domain[w] for line in lines(files["attack/benign_train.txt"])
                     for w in line.split() if w in entity_domain}
    assert benign_attack == {"near", "far"}


def test_lexical_baseline_is_recorded_and_low():
    """The default world: a bag-of-words classifier with entity-grouped folds cannot tell forget
    from near-domain retain text (the first world, with disjoint vocabularies, gave 1.000)."""
    _, info = synthetic_files(seed=0, n_scored=12, n_format=4, filler_per_word=1)
    lexical = info["lexical_baseline"]
    assert lexical["texts"] == "forget.txt vs retain_near.txt"
    assert 0.3 < lexical["auc"] <= 0.75
