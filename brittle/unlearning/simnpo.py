"""SimNPO (``simnpo``): reference-free, length-normalised NPO.

    L = w · −(2/β) · mean log σ(−(β/|y|) · log πθ(y|x) − γ) + α · NLL(retain)

(Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM
Unlearning", arXiv:2410.07163, eq. 4; ``simnpo_grad_diff`` in their code). |y| is the number of
target tokens. The reference code writes the margin as β·δ inside the sigmoid; γ here = β·δ
(``--margin``). The forget weight w (``--gamma``, as open-unlearning names it) is 0.125 in
open-unlearning's SimNPO config and 0.1375 in the SimNPO repository's TOFU script; the reference
profile takes open-unlearning's, the tiny profile 1 (tuned on the tiny world).
Forget data as for :mod:`brittle.unlearning.npo`: pairs where ``forget_qa.jsonl`` exists, else texts.
"""

from __future__ import annotations

from brittle.unlearning.losses import answer_lengths, mean_nll, sequence_logprob, simnpo_loss
from brittle.unlearning.trainer import Method


class SimNPO(Method):
    name = "simnpo"
    forget_form = "pairs"   # unlearn.py falls back to whole texts when the preset has no forget_qa.jsonl

    def loss(self, trainer, step):
        f = self.forget_batch(trainer, step)
        r = trainer.retain_batch(step.retain)
        logp = sequence_logprob(trainer.forward(f).logits, f.labels)
        forget = simnpo_loss(logp, answer_lengths(f.labels), self.hp["beta"], self.hp["margin"])
        nll_r = mean_nll(trainer.forward(r).logits, r.labels)
        return self.hp["gamma"] * forget + self.hp["alpha"] * nll_r, {
            "simnpo_loss": forget.item(), "retain_nll": nll_r.item(),
            "forget_logp_per_token": (logp / answer_lengths(f.labels)).mean().item()}
