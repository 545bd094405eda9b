"""Negative preference optimisation (``npo``).

    L = −(2/β) · mean log σ(−β · (log πθ(y|x) − log π_ref(y|x))) + α · NLL(retain)

with sequence-summed log-probabilities of the forget sequence y and the frozen model as
reference (Zhang et al. 2024, "Negative Preference Optimization", arXiv:2404.05868, eq. 3 and
the ``npo_grad_diff`` variant of their code). At initialisation the forget term is (2/β)·ln 2;
it is bounded below by 0, unlike gradient ascent, which slows the collapse it is meant to avoid.
Trains on (prompt, answer) pairs where the preset has ``forget_qa.jsonl`` (y = the answer, as in
the paper's TOFU experiments), otherwise on whole forget texts (x empty, y = the text).
"""

from __future__ import annotations

from brittle.unlearning.losses import mean_nll, npo_loss, sequence_logprob
from brittle.unlearning.trainer import Method


class NPO(Method):
    name = "npo"
    forget_form = "pairs"   # unlearn.py falls back to whole texts when the preset has no forget_qa.jsonl

    def loss(self, trainer, step):
        f = self.forget_batch(trainer, step)
        r = trainer.retain_batch(step.retain)
        logp = sequence_logprob(trainer.forward(f).logits, f.labels)
        logp_ref = sequence_logprob(trainer.frozen_forward(f).logits, f.labels)
        forget = npo_loss(logp, logp_ref, self.hp["beta"])
        nll_r = mean_nll(trainer.forward(r).logits, r.labels)
        return forget + self.hp["alpha"] * nll_r, {
            "npo_loss": forget.item(), "retain_nll": nll_r.item(), "logratio_forget": (logp - logp_ref).mean().item()}
