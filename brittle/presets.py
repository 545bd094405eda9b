"""Presets: small ``KEY=value`` files under ``presets/`` naming models, data, sizes and settings.

The same files are ``source``d by ``pipeline.sh``; here they are parsed without a shell. Every
script takes ``--preset`` and fills the flags the user left unset from it (:func:`fill`), so a
script run alone and the pipeline compute the same result with the same files and sizes.

Keys (see docs/presets.md): PRESET, DATA_SOURCE, DATA_DIR, BASE_MODEL, FILTERED_MODEL,
REFERENCE_MODEL, PUBLISHED_UNLEARNED, ACTIVATION_RETAIN, UNLEARN_METHODS, UNLEARN_PROFILE, UNLEARN_ARGS, MAX_SAMPLES,
MAX_LENGTH, QA_FORMAT, RELEARN_LR, RELEARN_BATCH_SIZE, RELEARN_STEPS, RELEARN_EVAL_BATCH_SIZE, CPU_THREADS.
"""

from __future__ import annotations

import shlex
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from brittle.errors import UserError

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


def known_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.env"))


@lru_cache(maxsize=16)
def load_preset(name_or_path: str) -> dict[str, str]:
    """Parse ``presets/<name>.env`` (or a path to such a file) into a dict of strings."""
    path = Path(name_or_path)
    if not path.is_file():
        path = PRESET_DIR / f"{name_or_path}.env"
    if not path.is_file():
        raise UserError(f"unknown preset {name_or_path!r}; known: {', '.join(known_presets())} "
                        "(or give the path of a .env file)")
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, raw = line.split("=", 1)
        parts = shlex.split(raw) if raw else []
        values[key.strip()] = " ".join(parts)
    values.setdefault("PRESET", path.stem)
    return values


def data_dir(preset: dict[str, str]) -> Path:
    """The preset's data folder (``DATA_DIR``), written by ``create_datasets.py``."""
    return Path(preset.get("DATA_DIR") or f"data/{preset['PRESET']}")


def number(preset: dict[str, str], key: str, kind: Callable[[str], Any] = int):
    """``preset[key]`` as a number, or a :class:`UserError` naming the key and the file's value."""
    if key not in preset or preset[key] == "":
        raise UserError(f"preset {preset['PRESET']} sets no {key}")
    try:
        return kind(preset[key])
    except ValueError:
        raise UserError(f"preset {preset['PRESET']}: {key}={preset[key]!r} is not a number") from None


# Flags filled from the preset when left unset: flag attribute -> value from the preset.
TEXT_DEFAULTS: dict[str, Callable[[dict[str, str]], Any]] = {
    "forget_file": lambda p: str(data_dir(p) / "forget.txt"),
    # The activation steps' retain split: ACTIVATION_RETAIN names a file of the data folder (the
    # tiny world compares forget text with near-domain retain text, which shares its vocabulary).
    "retain_file": lambda p: str(data_dir(p) / (p.get("ACTIVATION_RETAIN") or "retain.txt")),
    "max_samples": lambda p: number(p, "MAX_SAMPLES"),
    "max_length": lambda p: number(p, "MAX_LENGTH"),
}


def fill(args, defaults: dict[str, Callable[[dict[str, str]], Any]]) -> dict[str, str]:
    """Set every attribute of ``args`` named in ``defaults`` that is still None from the preset
    ``args.preset``; return the preset."""
    preset = load_preset(args.preset)
    for attr, value_of in defaults.items():
        if getattr(args, attr, None) is None:
            setattr(args, attr, value_of(preset))
    return preset
