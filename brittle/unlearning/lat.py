"""Targeted latent adversarial training for unlearning (``lat``).

Each step, an adversary perturbs the residual stream at the chosen hidden states
(``--adv-hidden-states``; i = output of block i − 1) with per-token
perturbations of L2 norm ≤ ε, trained for a few Adam steps to make the forget text *more* likely
(it lowers the forget NLL: the knowledge an attacker would try to elicit). The model is then
updated to push the forget text away *under that perturbation* while keeping retain text likely
without it:

    δ* ≈ argmin_{‖δ_t‖ ≤ ε} NLL(forget | δ)
    L = mean −log(1 − p(forget token | δ*)) + α · NLL(retain)

(Sheshadri et al. 2024, "Latent Adversarial Training Improves Robustness to Persistent Harmful
Behaviors in LLMs", arXiv:2407.15549; reference aengusl/latent-adversarial-training:
``GDAdversary``, ``log_1_minus_p_loss`` as the "away" loss, SFT on retain data without the
adversary). LoRA on every block with the reference profile (rank 64, as the reference); the tiny
profile fine-tunes every parameter (``--lora-rank 0``).
"""

from __future__ import annotations

from brittle.capture.hooks import add_to_residual, check_indices
from brittle.unlearning.adversary import ball_attack
from brittle.unlearning.hparams import int_list
from brittle.unlearning.lora import add_lora, merge_lora
from brittle.unlearning.losses import log_one_minus_p_loss, mean_nll
from brittle.unlearning.trainer import Method


class LAT(Method):
    name = "lat"
    forget_form = "texts"

    def prepare(self, trainer):
        self.adv_states = int_list(self.hp["adv_hidden_states"])
        check_indices(trainer.core, self.adv_states, "lat: --adv-hidden-states")
        if self.hp["lora_rank"] <= 0:
            return list(trainer.model.parameters())
        return add_lora(trainer, range(trainer.core.config.num_hidden_layers),
                        self.hp["lora_rank"], self.hp["lora_alpha"], self.hp["lora_dropout"])

    def loss(self, trainer, step):
        f = trainer.texts(step.forget)
        r = trainer.texts(step.retain)
        deltas, nll_clean, nll_attacked = ball_attack(trainer, f, self.adv_states, self.hp["epsilon"],
                                                      self.hp["adv_steps"], self.hp["adv_lr"])
        with add_to_residual(trainer.core, deltas):
            away = log_one_minus_p_loss(trainer.forward(f).logits, f.labels, self.hp["away_threshold"])
        nll_r = mean_nll(trainer.forward(r).logits, r.labels)
        return away + self.hp["alpha"] * nll_r, {
            "away_loss": away.item(), "retain_nll": nll_r.item(),
            "adv_forget_nll_clean": nll_clean, "adv_forget_nll_attacked": nll_attacked}

    def finalize(self, model):
        return merge_lora(model)
