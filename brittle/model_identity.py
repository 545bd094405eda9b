"""Who an unlearned model is: method, seed and calibrated strength, read from its folder.

``unlearn.py`` writes ``run_meta.json`` (``params.method``, ``params.seed``); a calibrated model
also has ``calibration.json`` (``strength``: matched or weak, ``reached``: whether the target
hazard level was hit). A folder without calibration.json was run at the method's default
strength. Models of one method at several seeds or strengths are named
``<base>__<method>__s<seed>__<strength>``; the default run keeps ``<base>__<method>``. A model
without run_meta.json (a published one, a Hub id) is its own method: its label.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from brittle.errors import UserError

DEFAULT_STRENGTH = "default"


@dataclass(frozen=True)
class Identity:
    method: str
    seed: int | None          # None: unknown (no run_meta.json)
    strength: str             # matched, weak or default
    reached: bool | None      # None: not calibrated


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None


def read_identity(folder: str | Path, label: str) -> Identity:
    """The identity of the model in ``folder``; ``label`` names it when run_meta.json is absent."""
    folder = Path(folder)
    params = _load(folder / "run_meta.json").get("params", {}) if (folder / "run_meta.json").is_file() else {}
    method = str(params.get("method") or label)
    seed = params.get("seed")
    strength, reached = DEFAULT_STRENGTH, None
    if (folder / "calibration.json").is_file():
        cal = _load(folder / "calibration.json")
        strength = str(cal.get("strength", DEFAULT_STRENGTH))
        reached = bool(cal["reached"]) if cal.get("reached") is not None else None
    return Identity(method, int(seed) if seed is not None else None, strength, reached)
