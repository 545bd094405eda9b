"""Gradient ascent with a KL retain term (``ga``).

L = −NLL(forget) + α · KL(π_ref ‖ πθ) on retain text, the KL taken between next-token
distributions of the frozen reference and the trained model on the same retain batch (TOFU's
``KL`` method, Maini et al. 2024, arXiv:2401.06121; gradient ascent: Jang et al. 2023,
arXiv:2210.01504).
"""

from __future__ import annotations

from brittle.unlearning.losses import mean_nll, retain_kl
from brittle.unlearning.trainer import Method


class GA(Method):
    name = "ga"
    forget_form = "texts"

    def loss(self, trainer, step):
        f = self.forget_batch(trainer, step)
        r = trainer.retain_batch(step.retain)
        nll = mean_nll(trainer.forward(f).logits, f.labels)
        ref_logits = trainer.frozen_forward(r).logits
        kl = retain_kl(trainer.forward(r).logits, ref_logits, r.labels)
        return -nll + self.hp["alpha"] * kl, {"forget_nll": nll.item(), "retain_kl": kl.item()}
