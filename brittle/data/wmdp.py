"""WMDP-Bio multiple-choice questions (``cais/wmdp``, config ``wmdp-bio``, split ``test``: 1,273
questions) and the optional gated forget corpus ``cais/wmdp-bio-forget-corpus``.

Offline: ``local_dir`` holds ``bio_questions.json`` (a JSON array of ``{question, choices,
answer}`` in Hub order) or ``wmdp-bio.jsonl``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from brittle.data.hub import load_hub_rows, require_file
from brittle.errors import UserError
from brittle.io import read_jsonl

N_QUESTIONS = 1273


def load_wmdp_bio(local_dir: str | Path | None = None) -> list[dict]:
    """The WMDP-Bio questions as ``{"id": "wmdp-bio-<row>", "question", "choices", "answer",
    "subject": "biology"}``; ids are row numbers in the published order."""
    if local_dir is not None:
        path = require_file(local_dir, "bio_questions.json", "wmdp-bio.jsonl")
        rows = json.loads(path.read_text(encoding="utf-8")) if path.suffix == ".json" else read_jsonl(path)
    else:
        rows = load_hub_rows("cais/wmdp", "wmdp-bio", "test")
    out = []
    for i, row in enumerate(rows):
        if len(row["choices"]) != 4 or not 0 <= int(row["answer"]) < 4:
            raise UserError(f"WMDP-Bio row {i} is malformed (need 4 choices and an answer 0-3)")
        out.append({"id": f"wmdp-bio-{i}", "question": row["question"].strip(),
                    "choices": [str(c) for c in row["choices"]], "answer": int(row["answer"]),
                    "subject": "biology"})
    return out


def split_questions(questions: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded split into ``(forget_part, heldout_part)``, each kept in the original order.

    The held-out part is only ever evaluated; the forget part may be trained or unlearned on.
    """
    if not 0 < eval_fraction < 1:
        raise UserError(f"--eval-fraction must be in (0, 1), got {eval_fraction}")
    order = list(range(len(questions)))
    random.Random(seed).shuffle(order)
    heldout = set(order[: round(len(questions) * eval_fraction)])
    return ([q for i, q in enumerate(questions) if i not in heldout],
            [q for i, q in enumerate(questions) if i in heldout])


def question_text(q: dict) -> str:
    """A question and its correct answer as one line of forget text."""
    return " ".join(f"{q['question']} Answer: {q['choices'][q['answer']]}".split())


def load_forget_corpus(max_docs: int | None = None, local_dir: str | Path | None = None) -> list[str]:
    """Texts of the gated ``cais/wmdp-bio-forget-corpus`` (needs an HF_TOKEN with access), or of
    ``bio_forget.jsonl`` (one ``{"text": ...}`` per line) in ``local_dir``."""
    if local_dir is not None:
        rows = read_jsonl(require_file(local_dir, "bio_forget.jsonl", "bio-forget-corpus.jsonl"))
    else:
        rows = load_hub_rows("cais/wmdp-bio-forget-corpus", None, "train")
    texts = [" ".join(str(r.get("text", "")).split()) for r in rows]
    texts = [t for t in texts if t]
    return texts[:max_docs] if max_docs else texts

