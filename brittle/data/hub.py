"""Reading Hub datasets (with a clear one-line error) and JSON Lines files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from brittle.errors import UserError
from brittle.runtime import hf_token


def load_hub_rows(path: str, name: str | None, split: str, token: bool = True) -> list[dict]:
    """Rows of a Hub dataset split as plain dicts (``datasets.load_dataset``); network, auth or a
    missing config become a :class:`UserError` that suggests the ``--local-dir`` override."""
    try:
        from datasets import load_dataset

        ds = load_dataset(path, name, split=split, token=hf_token() if token else None)
    except Exception as exc:  # offline, gated, renamed: all fixable by the user
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot load {path} ({name or 'default'}, {split}) from the Hub: {first}; "
                        "pass --local-dir with an offline copy") from None
    return [dict(row) for row in ds]


def require_file(folder: str | Path, *names: str) -> Path:
    """The first of ``names`` that exists in ``folder``, else a :class:`UserError` listing them."""
    folder = Path(folder)
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise UserError(f"{folder} has none of: {', '.join(names)}")


def jsonl_text(rows: Iterable[dict]) -> str:
    """JSON Lines text (UTF-8 kept, one object per line, trailing newline)."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
