"""Question files for prompt-based analyses: TOFU ``{"question", "answer"}``, forget_qa
``{"prompt", "answer"}`` and multiple-choice ``{"question", "choices", "answer": index}`` records,
as JSON Lines (or one JSON array in a ``.json`` file)."""

from __future__ import annotations

import json
from pathlib import Path

from brittle.errors import UserError
from brittle.io import read_jsonl


def read_records(path: str | Path) -> list[dict]:
    """The records of a ``.jsonl`` file (one object per line) or a ``.json`` array."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"questions file not found: {path}")
    if path.suffix == ".json":
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: not valid JSON ({exc.msg})") from None
    return read_jsonl(path, what="questions file")


def question_and_answer(record: dict) -> tuple[str, str | None]:
    """``(question, answer text or None)`` of a TOFU, forget_qa or multiple-choice record."""
    question = record.get("question") or record.get("prompt")
    if not question:
        raise UserError(f"record has no 'question' or 'prompt' field: {sorted(record)}")
    answer = record.get("answer")
    if isinstance(answer, int) and not isinstance(answer, bool) and "choices" in record:
        answer = record["choices"][answer]
    return str(question), (str(answer) if isinstance(answer, str) else None)
