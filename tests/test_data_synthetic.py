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
    for domain in ("hazard", "benign"):
        assert len(world.relations[domain]) == 5
        for name, values, templates in world.relations[domain]:
            assert 10 <= len(values) <= 30 and len(set(values)) == len(values), name
            assert len(templates) == 8 and all(t.endswith("{v}") and "{e}" in t for t in templates), name


def test_eval_and_val_templates_never_trained_for_scored_facts(files, world):
    corpus = set(lines(files["corpus/full.txt"]))
    for name in ("hazard_eval", "benign_eval", "hazard_val", "benign_val"):
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
    fmt = next(f for f in world.facts if f.role == "format" and f.domain == "hazard")
    eval_sentence = syn.render(world.templates("hazard", fmt.relation)[syn.EVAL_TEMPLATES[0]], fmt.entity, fmt.value)
    assert eval_sentence in corpus
    assert not any(fmt.entity in q["question"] for q in jsonl(files["questions/hazard_eval.jsonl"]))


def test_questions_are_well_formed(files):
    positions = set()
    for name in ("hazard_eval", "benign_eval"):
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
