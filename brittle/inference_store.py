"""The sweep results of ``infer.py``: one CSV per prompt, named by the prompt's SHA-256.

Naming the file by the hash means the same prompt always lands in the same file (whatever its
length or characters), so sweeps run at different times over different model sets accumulate in
one table. Rows are keyed by ``model_path``: a later sweep replaces that model's row and keeps
every other one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from brittle.io import write_csv

COLUMNS = ["prompt", "model", "model_path", "output"]


def prompt_sha256(prompt: str) -> str:
    """Hex SHA-256 of the prompt's UTF-8 bytes (64 characters)."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def sweep_csv_path(outdir: str | Path, prompt: str) -> Path:
    """``<outdir>/<sha256 of prompt>.csv``."""
    return Path(outdir) / f"{prompt_sha256(prompt)}.csv"


def upsert_outputs(path: str | Path, rows: list[dict]) -> pd.DataFrame:
    """Add ``rows`` (dicts with :data:`COLUMNS`) to the CSV at ``path``, replacing rows with the
    same ``model_path``; write it atomically and return the whole table.

    Existing rows for other models keep their place; new models are appended in the given order.
    """
    path = Path(path)
    records: list[dict] = []
    if path.exists():
        # keep_default_na=False: an empty output stays an empty string, not NaN.
        old = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = set(COLUMNS) - set(old.columns)
        if missing:
            raise ValueError(f"{path} is not an inference sweep table (missing {sorted(missing)})")
        records = old[COLUMNS].to_dict("records")
    position = {rec["model_path"]: i for i, rec in enumerate(records)}
    for row in rows:
        row = {col: str(row[col]) for col in COLUMNS}
        if row["model_path"] in position:
            records[position[row["model_path"]]] = row
        else:
            position[row["model_path"]] = len(records)
            records.append(row)
    table = pd.DataFrame(records, columns=COLUMNS)
    write_csv(path, table)
    return table
