"""Presets: small ``KEY=value`` files under ``presets/`` naming models, data sources and sizes.

The same files are ``source``d by ``pipeline.sh``; here they are parsed without a shell.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from brittle.cli import UserError

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


def load_preset(name_or_path: str) -> dict[str, str]:
    """Parse ``presets/<name>.env`` (or a path to such a file) into a dict of strings."""
    path = Path(name_or_path)
    if not path.is_file():
        path = PRESET_DIR / f"{name_or_path}.env"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.env")))
        raise UserError(f"unknown preset {name_or_path!r} (known: {known})")
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, raw = line.split("=", 1)
        parts = shlex.split(raw) if raw else []
        values[key.strip()] = " ".join(parts)
    return values
