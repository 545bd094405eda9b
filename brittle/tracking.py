"""Experiment tracking: Weights & Biases when ``WANDB_API_KEY`` is set, a silent null object
otherwise. Tracking never stops a run: if wandb cannot start, a warning is printed and the run
goes on untracked.

Use::

    tracker = start_run("unlearn", name="tiny-base__npo", config=hp)
    tracker.log({"loss": 0.3}, step=10)
    tracker.finish()
"""

from __future__ import annotations

import os
import sys
from typing import Any


class NullTracker:
    """Accepts every call and does nothing."""

    enabled = False

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        pass

    def summary(self, **values: Any) -> None:
        pass

    def finish(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.finish()


class WandbTracker(NullTracker):
    """Thin wrapper over a ``wandb`` run."""

    enabled = True

    def __init__(self, run):
        self.run = run

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.run.log(metrics, step=step)

    def summary(self, **values: Any) -> None:
        self.run.summary.update(values)

    def finish(self) -> None:
        self.run.finish()


def wandb_enabled() -> bool:
    """True when a key is configured and wandb is not switched off (``WANDB_MODE=disabled``)."""
    return bool(os.environ.get("WANDB_API_KEY")) and os.environ.get("WANDB_MODE", "") != "disabled"


def start_run(job_type: str, name: str, config: dict[str, Any] | None = None,
              project: str | None = None, enabled: bool | None = None) -> NullTracker:
    """A tracker for one run: wandb (project ``$WANDB_PROJECT`` or "brittle") when enabled, else
    a :class:`NullTracker`. ``enabled=None`` decides from the environment."""
    if not (wandb_enabled() if enabled is None else enabled):
        return NullTracker()
    try:
        import wandb

        run = wandb.init(project=project or os.environ.get("WANDB_PROJECT", "brittle"), name=name,
                         job_type=job_type, config=config or {}, reinit=True)
        return WandbTracker(run)
    except Exception as exc:  # network, auth, version: tracking is optional
        print(f"warning: wandb disabled for this run ({type(exc).__name__}: {exc})", file=sys.stderr)
        return NullTracker()
