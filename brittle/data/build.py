"""Assemble and write a ``data/<preset>/`` folder (the layout every later step reads).

Each builder returns the folder's files as ``{relative path: text}`` plus a description of how it
was made; :func:`write_folder` writes them atomically with a ``manifest.json`` of line counts and
sha256 hashes. Nothing time- or machine-dependent goes into the files, so the same arguments give
the same bytes.

Layout (files a source cannot provide are absent and listed in the manifest's ``missing``)::

    forget.txt, retain.txt                      one text per line
    <texts>.groups.txt                          optional: the group (entity) of each line of <texts>.txt,
                                                for folds that never split a group (tiny world)
    retain_near.txt                             near-domain retain texts (tiny world)
    forget_qa.jsonl                             {"prompt", "answer", ...}: text = prompt + " " + answer
    retain_qa.jsonl                             {"prompt", "answer"}: the retain texts as pairs (TOFU only)
    idk.txt                                     refusal answers, one per line
    questions/{hazard,near,far}_{eval,val}.jsonl  {"id", "question", "choices", "answer", ...}
    attack/hazard_train.txt                     relearning text, disjoint from attack/hazard_eval.jsonl
    attack/hazard_eval.jsonl, attack/benign_train.txt
    corpus/full.txt, corpus/filtered.txt        pretraining corpora (synthetic only)
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
from pathlib import Path

from brittle.data import synthetic as syn
from brittle.data.hub import jsonl_text
from brittle.errors import UserError
from brittle.io import write_json, write_text

# Question sets, one per fact family, as questions/<set>_{eval,val}.jsonl: the forget domain, then
# near- and far-domain benign (evaluate.py and relearn.py score those a data folder has).
QUESTION_SETS = syn.DOMAINS

LAYOUT = ["forget.txt", "retain.txt", "forget_qa.jsonl", "idk.txt",
          *[f"questions/{q}_{split}.jsonl" for q in QUESTION_SETS for split in ("eval", "val")],
          "attack/hazard_train.txt", "attack/hazard_eval.jsonl", "attack/benign_train.txt"]


def lines_text(lines: list[str]) -> str:
    return "".join(" ".join(line.split()) + "\n" for line in lines)


def synthetic_files(seed: int = 0, n_scored: int = 40, n_format: int = 40,
                    filler_per_word: int = 3) -> tuple[dict[str, str], dict]:
    """The tiny world (see :mod:`brittle.data.synthetic`), with the lexical baseline of its
    forget/near-domain retain pair in the returned description."""
    from brittle.probes import lexical_auc

    world = syn.build_world(seed, n_scored, n_format, filler_per_word)
    rng = random.Random(seed + 1)
    scored = {d: [f for f in world.facts if f.domain == d and f.role == "scored"] for d in syn.DOMAINS}
    train_t = list(range(syn.N_TRAIN_TEMPLATES))

    def sentences(facts) -> list[tuple[str, str]]:
        """(sentence, entity) pairs, shuffled: consumers that take the first N lines get every
        entity and relation."""
        out = [(s, f.entity) for f in facts for s in syn.fact_sentences(world, f, train_t)]
        rng.shuffle(out)
        return out

    def texts(pairs) -> str:
        return lines_text([s for s, _ in pairs])

    def groups(pairs) -> str:
        return lines_text([e for _, e in pairs])

    def a_quarter(facts):
        entities = list(dict.fromkeys(f.entity for f in facts))  # generation order
        keep = set(entities[: max(1, len(entities) // 4)])
        return [f for f in facts if f.entity in keep]

    forget, near = sentences(scored["hazard"]), sentences(scored["near"])
    retain = sentences(scored["near"] + scored["far"])
    qa = [{"prompt": syn.cloze_prompt(t, f.entity), "answer": f.value, "relation": f.relation,
           "entity": f.entity, "subset": f.subset}
          for f in scored["hazard"] for t in world.templates("hazard", f.relation)[: syn.N_TRAIN_TEMPLATES]]
    rng.shuffle(qa)
    q = syn.questions
    files = {
        "corpus/full.txt": lines_text(syn.corpus(world, True, seed)),
        "corpus/filtered.txt": lines_text(syn.corpus(world, False, seed)),
        "forget.txt": texts(forget), "forget.groups.txt": groups(forget),
        "retain.txt": texts(retain), "retain.groups.txt": groups(retain),
        "retain_near.txt": texts(near), "retain_near.groups.txt": groups(near),
        "forget_qa.jsonl": jsonl_text(qa),
        "idk.txt": lines_text(world.idk),
        **{f"questions/{d}_{split}.jsonl": jsonl_text(q(world, d, templates, seed))
           for d in QUESTION_SETS
           for split, templates in (("eval", syn.EVAL_TEMPLATES), ("val", (syn.VAL_TEMPLATE,)))},
        "attack/hazard_train.txt": lines_text(s for s, _ in sentences([f for f in scored["hazard"] if f.subset == "A"])),
        "attack/hazard_eval.jsonl": jsonl_text(q(world, "hazard", syn.EVAL_TEMPLATES, seed, subset="B")),
        "attack/benign_train.txt": texts(sentences(a_quarter(scored["near"]) + a_quarter(scored["far"]))),
        "facts.csv": _facts_csv(world),
    }
    lexical = lexical_auc([s for s, _ in forget], [s for s, _ in near],
                          groups=[e for _, e in forget] + [e for _, e in near], seed=seed)
    info = {"source": "synthetic", "seed": seed,
            "sizes": {"n_scored": n_scored, "n_format": n_format, "filler_per_word": filler_per_word},
            "templates": {"train": train_t, "val": [syn.VAL_TEMPLATE], "eval": list(syn.EVAL_TEMPLATES)},
            "families": {"hazard": "forget domain (pathogens); removed from corpus/filtered.txt",
                         "near": "near-domain benign: other pathogens, same relations, templates and values",
                         "far": "far-domain benign: towns, another schema"},
            "retain": {"retain.txt": "near + far scored facts (unlearning's retain loss)",
                       "retain_near.txt": "near scored facts (the activation steps' retain split)",
                       "attack/benign_train.txt": "a quarter of the near and of the far scored entities"},
            "lexical_baseline": {"auc": round(lexical, 6), "texts": "forget.txt vs retain_near.txt",
                                 "classifier": "word unigram+bigram counts, logistic regression",
                                 "folds": "5, grouped by entity (out-of-fold scores)"},
            "split": "hazard scored entities: first half subset A (attack/hazard_train.txt), second half "
                     "subset B (attack/hazard_eval.jsonl); format entities are trained on all templates "
                     "and never scored"}
    return files, info


def _facts_csv(world: syn.World) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["domain", "entity", "relation", "value", "role", "subset"])
    for f in world.facts:
        writer.writerow([f.domain, f.entity, f.relation, f.value, f.role, f.subset])
    return buf.getvalue()


def read_facts(path: str | Path) -> list[syn.Fact]:
    """The facts of a tiny-world data folder's ``facts.csv`` (written by :func:`_facts_csv`).

    A missing file or column is a :class:`UserError`: only the synthetic source writes facts.csv,
    so its absence means the folder belongs to another preset."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found: the knowledge probe needs the tiny world's facts "
                        "(create_datasets.py --source synthetic writes it)")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = ["domain", "entity", "relation", "value", "role", "subset"]
        missing = [f for f in fields if f not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path} lacks column(s) {', '.join(missing)}")
        return [syn.Fact(**{f: row[f] for f in fields}) for row in reader]


def hf_files(seed: int = 0, eval_fraction: float = 0.5, n_val: int = 200, max_retain: int = 1000,
             wikitext_split: str = "test", wmdp_dir=None, wikitext_dir=None,
             forget_corpus: bool = False, forget_corpus_dir=None, max_forget_docs: int = 1000
             ) -> tuple[dict[str, str], dict]:
    """deep-ignorance data: WMDP-Bio questions split into a forget part and a held-out evaluation
    part; retain text from WikiText-2."""
    from brittle.data import wikitext, wmdp

    questions = wmdp.load_wmdp_bio(wmdp_dir)
    forget_part, heldout = wmdp.split_questions(questions, eval_fraction, seed)
    val = random.Random(seed + 2).sample(forget_part, min(n_val, len(forget_part)))
    val.sort(key=lambda r: int(r["id"].rsplit("-", 1)[1]))
    forget_lines = [wmdp.question_text(r) for r in forget_part]
    if forget_corpus:
        forget_lines = wmdp.load_forget_corpus(max_forget_docs, forget_corpus_dir)
    paras = wikitext.paragraphs(wikitext.load_wikitext(wikitext_split, wikitext_dir))
    pairs = {}
    if not forget_corpus:
        # The pairs are the forget texts cut at the answer, so preference and text methods unlearn
        # the same documents. With the forget corpus there are no pairs: every method trains on
        # the corpus documents (npo/simnpo on whole texts, dpo on texts split in half).
        pairs["forget_qa.jsonl"] = jsonl_text({"prompt": r["question"], "answer": r["choices"][r["answer"]],
                                               "id": r["id"]} for r in forget_part)
    files = {**pairs,
        "forget.txt": lines_text(forget_lines),
        "retain.txt": lines_text(paras[:max_retain]),
        "idk.txt": lines_text(syn.IDK_ANSWERS),
        "questions/hazard_eval.jsonl": jsonl_text(heldout),
        "questions/hazard_val.jsonl": jsonl_text(val),
        "attack/hazard_train.txt": lines_text([wmdp.question_text(r) for r in forget_part]),
        "attack/hazard_eval.jsonl": jsonl_text(heldout),
        "attack/benign_train.txt": lines_text(paras[max_retain: 2 * max_retain]),
    }
    info = {"source": "hf", "seed": seed,
            "sizes": {"eval_fraction": eval_fraction, "n_val": n_val, "max_retain": max_retain,
                      "wikitext_split": wikitext_split, "max_forget_docs": max_forget_docs},
            "forget_text": "cais/wmdp-bio-forget-corpus" if forget_corpus else "WMDP-Bio forget-part questions",
            "split": {"wmdp_bio_questions": len(questions), "forget_part": len(forget_part),
                      "heldout_eval": len(heldout), "val_from_forget_part": len(val),
                      "heldout_ids": [r["id"] for r in heldout]},
            "note": "no benign multiple-choice source: questions/near_*.jsonl and far_*.jsonl are absent"}
    return files, info


def tofu_files(tofu_dir=None, forget: str = "forget10", retain: str = "retain90",
               holdout: str = "holdout10", max_retain: int | None = None) -> tuple[dict[str, str], dict]:
    """TOFU: forget/retain text from the QA pairs, the IdkDPO refusals, the raw QA files."""
    from brittle.data import tofu

    f_rows, r_rows, h_rows = (tofu.load_tofu(c, tofu_dir) for c in (forget, retain, holdout))
    r_text = [tofu.qa_text(r) for r in r_rows][:max_retain]
    files = {
        "forget.txt": lines_text([tofu.qa_text(r) for r in f_rows]),
        "retain.txt": lines_text(r_text),
        "forget_qa.jsonl": jsonl_text({"prompt": r["question"], "answer": r["answer"]} for r in f_rows),
        "retain_qa.jsonl": jsonl_text({"prompt": r["question"], "answer": r["answer"]} for r in r_rows[:max_retain]),
        "idk.txt": lines_text(tofu.load_idk(tofu_dir)),
        f"qa/{forget}.jsonl": jsonl_text({"question": r["question"], "answer": r["answer"]} for r in f_rows),
        f"qa/{retain}.jsonl": jsonl_text({"question": r["question"], "answer": r["answer"]} for r in r_rows),
        f"qa/{holdout}.jsonl": jsonl_text({"question": r["question"], "answer": r["answer"]} for r in h_rows),
    }
    info = {"source": "tofu", "configs": {"forget": forget, "retain": retain, "holdout": holdout},
            "sizes": {"max_retain": max_retain},
            "note": "TOFU has no multiple-choice questions: questions/ and attack/ are absent"}
    return files, info


def write_folder(outdir: str | Path, files: dict[str, str], info: dict) -> dict:
    """Write every file atomically, then ``manifest.json`` (counts, hashes, how it was made)."""
    outdir = Path(outdir)
    for rel, text in sorted(files.items()):
        write_text(outdir / rel, text)
    manifest = {
        **info,
        "files": {rel: {"lines": text.count("\n"), "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
                  for rel, text in sorted(files.items())},
        "missing": [rel for rel in LAYOUT if rel not in files],
    }
    write_json(outdir / "manifest.json", manifest)
    return manifest
