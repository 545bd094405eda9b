"""Gradient ascent on the forget set (``ga_simple``).

Maximises the forget negative log-likelihood: L = −NLL(forget). The baseline of Jang et al.
2023 ("Knowledge Unlearning for Mitigating Privacy Risks in Language Models", arXiv:2210.01504)
and of TOFU (Maini et al. 2024, arXiv:2401.06121, ``grad_ascent``). Unbounded below: it destroys
the model if run long, which is why every other method adds a retain or a bounded term.
"""

from __future__ import annotations

from brittle.unlearning.losses import mean_nll
from brittle.unlearning.trainer import Method


class GASimple(Method):
    name = "ga_simple"
    forget_form = "texts"

    def loss(self, trainer, step):
        f = self.forget_batch(trainer, step)
        nll = mean_nll(trainer.forward(f).logits, f.labels)
        return -nll, {"forget_nll": nll.item()}
