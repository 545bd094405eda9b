"""The name registry of the unlearning methods: ``METHODS[name]`` is the method class.

Each method lives in its own module with its paper in the docstring; its defaults are in
:mod:`brittle.unlearning.profiles` (which, unlike this module, imports no torch).
"""

from __future__ import annotations

from typing import Any

from brittle.errors import UserError
from brittle.unlearning.cb import CircuitBreakers
from brittle.unlearning.cb_lat import CircuitBreakersLAT
from brittle.unlearning.control import BenignFineTune
from brittle.unlearning.dpo import IdkDPO
from brittle.unlearning.ga import GA
from brittle.unlearning.ga_simple import GASimple
from brittle.unlearning.grad_diff import GradDiff
from brittle.unlearning.hparams import resolve
from brittle.unlearning.lat import LAT
from brittle.unlearning.npo import NPO
from brittle.unlearning.rmu import RMU
from brittle.unlearning.simnpo import SimNPO
from brittle.unlearning.trainer import Method, StepData, Trainer, UnlearnData

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (
    GASimple, GA, GradDiff, IdkDPO, NPO, SimNPO, RMU, CircuitBreakers, LAT, CircuitBreakersLAT, BenignFineTune)}
# The unlearning methods proper; ``control`` (a benign fine-tune of matched size) is the comparison.
UNLEARNING_METHODS: tuple[str, ...] = tuple(m for m in METHODS if m != "control")


def get_method(name: str, profile: str = "tiny", overrides: dict[str, Any] | None = None) -> Method:
    """An instance of method ``name`` with the ``profile`` defaults updated by ``overrides``."""
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name](resolve(name, profile, overrides or {}))


__all__ = ["METHODS", "UNLEARNING_METHODS", "Method", "StepData", "Trainer", "UnlearnData", "get_method"]
