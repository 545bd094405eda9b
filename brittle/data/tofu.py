"""TOFU (``locuslab/TOFU``): question-answer pairs about 200 fictitious authors.

Configs used here: ``forget10`` (400 pairs about 20 authors), ``retain90`` (3,600 pairs),
``holdout10`` (400 pairs about authors in neither), plus the 100 "I don't know" answers that
IdkDPO trains towards. Offline: ``local_dir`` holds ``<config>.jsonl`` (one ``{"question",
"answer", ...}`` per line) and ``idontknow.txt`` (one answer per line).
"""

from __future__ import annotations

import sys
from pathlib import Path

from brittle.data.hub import load_hub_rows
from brittle.errors import UserError
from brittle.io import nonblank_lines, read_jsonl

IDK_URL = "https://raw.githubusercontent.com/locuslab/tofu/main/data/idontknow.jsonl"


def load_tofu(config: str, local_dir: str | Path | None = None) -> list[dict]:
    """The rows of one TOFU config as dicts with at least ``question`` and ``answer``."""
    if local_dir is not None:
        path = Path(local_dir) / f"{config}.jsonl"
        if not path.is_file():
            raise UserError(f"{path} not found (offline TOFU needs <config>.jsonl)")
        rows = read_jsonl(path)
    else:
        rows = load_hub_rows("locuslab/TOFU", config, "train")
    for i, row in enumerate(rows):
        if "question" not in row or "answer" not in row:
            raise UserError(f"TOFU {config} row {i} lacks question/answer fields")
    return rows


def load_idk(local_dir: str | Path | None = None) -> list[str]:
    """The "I don't know"-style answers: ``idontknow.txt`` (or the upstream ``idontknow.jsonl``,
    plain text despite its name) in ``local_dir``; without one, the upstream file from GitHub;
    if that fails too, the tiny world's own refusals (with a warning)."""
    if local_dir is not None:
        for name in ("idontknow.txt", "idontknow.jsonl", "idk.jsonl"):
            path = Path(local_dir) / name
            if path.is_file():
                return nonblank_lines(path.read_text(encoding="utf-8"))
        raise UserError(f"{local_dir} has no idontknow.txt")
    try:
        from urllib.request import urlopen

        with urlopen(IDK_URL, timeout=20) as response:
            return nonblank_lines(response.read().decode("utf-8"))
    except OSError as exc:
        from brittle.data.synthetic import IDK_ANSWERS

        print(f"warning: cannot fetch TOFU's idontknow answers ({exc}); using built-in refusals",
              file=sys.stderr)
        return list(IDK_ANSWERS)


def qa_text(row: dict) -> str:
    """A question-answer pair as one line of text."""
    return " ".join(f"Question: {row['question']} Answer: {row['answer']}".split())
