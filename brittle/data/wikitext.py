"""WikiText-2 raw (``Salesforce/wikitext``, config ``wikitext-2-raw-v1``): benign retain text.

Offline: ``local_dir`` holds ``wiki.{train,valid,test}.raw`` with one Hub row per line.
"""

from __future__ import annotations

from pathlib import Path

from brittle.data.hub import load_hub_rows
from brittle.errors import UserError

_FILES = {"train": "wiki.train.raw", "validation": "wiki.valid.raw", "test": "wiki.test.raw"}


def load_wikitext(split: str = "test", local_dir: str | Path | None = None) -> list[str]:
    """The raw rows of one split (``train``, ``validation`` or ``test``), blank rows included."""
    if split not in _FILES:
        raise UserError(f"unknown WikiText split {split!r} (train, validation, test)")
    if local_dir is not None:
        path = Path(local_dir) / _FILES[split]
        if not path.is_file():
            raise UserError(f"{path} not found (offline WikiText-2 needs {_FILES[split]})")
        rows = path.read_text(encoding="utf-8").split("\n")
        return rows[:-1] if rows and rows[-1] == "" else rows  # the final newline ends the last row
    return [row["text"] for row in load_hub_rows("Salesforce/wikitext", "wikitext-2-raw-v1", split)]


def paragraphs(rows: list[str], min_words: int = 20) -> list[str]:
    """Body paragraphs: section headings (`` = Title = ``) and short rows dropped, whitespace
    collapsed (one paragraph per line of a text file)."""
    out = []
    for row in rows:
        text = " ".join(row.split())
        if not text or text.startswith("=") or len(text.split()) < min_words:
            continue
        out.append(text)
    return out
