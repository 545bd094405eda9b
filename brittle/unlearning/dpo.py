"""IdkDPO (``dpo``): direct preference optimisation towards "I don't know".

For each forget prompt x, the preferred answer is a refusal y_idk (from ``idk.txt``) and the
rejected answer the original y. With sequence-summed log-probabilities and the frozen model as
reference,

    L = −(2/β) · mean log σ(β · [(log πθ − log π_ref)(y_idk|x) − (log πθ − log π_ref)(y|x)])
        + α · NLL(retain),

as TOFU's ``idk``-DPO (Maini et al. 2024, arXiv:2401.06121; DPO: Rafailov et al. 2023,
arXiv:2305.18290; the 2/β scaling follows the TOFU and open-unlearning code). Always trains on
(prompt, answer) pairs: ``forget_qa.jsonl`` where the preset has one, else forget texts split in
half (:func:`brittle.unlearning.data.split_text`).
"""

from __future__ import annotations

from brittle.unlearning.losses import dpo_loss, mean_nll, sequence_logprob
from brittle.unlearning.trainer import Method


class IdkDPO(Method):
    name = "dpo"
    forget_form = "pairs"

    def loss(self, trainer, step):
        prompts = [p for p, _ in step.forget]
        win = trainer.pairs(prompts, step.idk)
        lose = trainer.pairs(prompts, [a for _, a in step.forget])
        r = trainer.retain_batch(step.retain)
        lp_win = sequence_logprob(trainer.forward(win).logits, win.labels)
        lp_lose = sequence_logprob(trainer.forward(lose).logits, lose.labels)
        ref_win = sequence_logprob(trainer.frozen_forward(win).logits, win.labels)
        ref_lose = sequence_logprob(trainer.frozen_forward(lose).logits, lose.labels)
        pref = dpo_loss(lp_win, lp_lose, ref_win, ref_lose, self.hp["beta"])
        nll_r = mean_nll(trainer.forward(r).logits, r.labels)
        return pref + self.hp["alpha"] * nll_r, {
            "dpo_loss": pref.item(), "retain_nll": nll_r.item(),
            "logratio_idk": (lp_win - ref_win).mean().item(), "logratio_forget": (lp_lose - ref_lose).mean().item()}
