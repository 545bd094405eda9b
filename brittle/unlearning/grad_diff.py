"""Gradient difference (``grad_diff``).

L = γ · (−NLL(forget)) + α · NLL(retain): ascend on the forget set, descend on the retain set
(Liu et al. 2022, "Continual Learning and Private Unlearning", arXiv:2203.12817; TOFU's
``grad_diff``, Maini et al. 2024, arXiv:2401.06121).
"""

from __future__ import annotations

from brittle.unlearning.losses import mean_nll
from brittle.unlearning.trainer import Method


class GradDiff(Method):
    name = "grad_diff"
    forget_form = "texts"

    def loss(self, trainer, step):
        f = self.forget_batch(trainer, step)
        r = trainer.retain_batch(step.retain)
        nll_f = mean_nll(trainer.forward(f).logits, f.labels)
        nll_r = mean_nll(trainer.forward(r).logits, r.labels)
        loss = -self.hp["gamma"] * nll_f + self.hp["alpha"] * nll_r
        return loss, {"forget_nll": nll_f.item(), "retain_nll": nll_r.item()}
