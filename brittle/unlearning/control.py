"""The control edit (``control``): an ordinary benign fine-tune, no unlearning.

L = NLL(retain). Any gradient update lies in the span of the inputs it was trained on, so a
diagnostic such as "the update leans into W's column space" or "into the row space forget text
uses" reads as a signature of unlearning only if an edit of the same size that unlearns nothing
does not show it. This method makes that edit: it fine-tunes the base model on the retain texts
only, and with ``target_dw_norm`` > 0 it stops at the first step where ‖θ − θ₀‖₂ (all trained
parameters) reaches that size; ``unlearn.py --match-dw-norm`` sets it to the median of the
unlearned models' ‖θ − θ₀‖₂, so the control is as large an edit as a typical unlearned model.
The pipeline trains it after the unlearning methods and runs every step on it; the report shows it
as the ``control`` row and keeps it out of the correlations.
"""

from __future__ import annotations

import math

import torch

from brittle.unlearning.losses import mean_nll
from brittle.unlearning.trainer import Method


class BenignFineTune(Method):
    name = "control"
    forget_form = "texts"

    def loss(self, trainer, step):
        r = trainer.retain_batch(step.retain)
        nll_r = mean_nll(trainer.forward(r).logits, r.labels)
        return nll_r, {"retain_nll": nll_r.item(), "dw_norm": self.dw_norm(trainer)}

    @staticmethod
    def dw_norm(trainer) -> float:
        """‖θ − θ₀‖₂ over the trained parameters (float64 sum of squares), before this step's update."""
        with torch.no_grad():
            return math.sqrt(sum(float(((p.detach() - p0).double() ** 2).sum()) for p, p0 in trainer.originals))

    def finished(self, trainer) -> bool:
        target = self.hp["target_dw_norm"]
        self.reached = self.dw_norm(trainer)    # after this step's update
        return target > 0 and self.reached >= target

    def summary(self) -> str:
        target, reached = self.hp["target_dw_norm"], getattr(self, "reached", 0.0)
        if target <= 0:
            return f"control: weight change {reached:.4g} (no target)"
        verdict = "reached" if reached >= target else "NOT reached: raise --lr or --steps"
        return f"control: weight change {reached:.4g} for a target of {target:.4g}, {verdict}"
