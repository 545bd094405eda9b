"""Targeted latent adversarial training for unlearning (``lat``).

Each step, an adversary perturbs the residual stream at the chosen hidden states
(``--adv-hidden-states``; i = output of block i − 1) with per-token perturbations of L2 norm
≤ ε, fitted for ``adv_steps`` AdamW steps to make the forget text likely and the retain text
unlikely (:func:`brittle.unlearning.adversary.ball_attack`). Holding that perturbation fixed, the
model then takes ``model_steps`` optimizer steps on the same batch, each on

    L = (ρ · NLL(retain | δ) + γ · away(forget | δ) + α · NLL(retain)) / (ρ + γ + α)

where away = mean −log(1 − p(token)) over the forget tokens still above ``away_threshold`` in
log p (the HarmBench "away" loss), and the last term is supervised fine-tuning without the
perturbation. The weights are normalised to sum 1, as the reference does.

Reference: Sheshadri et al. 2024, "Latent Adversarial Training Improves Robustness to Persistent
Harmful Behaviors in LLMs", arXiv:2407.15549; aengusl/latent-adversarial-training, its WMDP
config: adversary toward forget / away from retain (1 : 1), model toward retain 1, away from
forget 1, SFT 4, 4 model steps per adversary, model optimiser re-created every step
(``reset_optimizer``), clip 0.5, LoRA rank 64 on every block's q, k, v, up and down projections.
Its SFT corpus is Alpaca, separate from its WikiText retain corpus; here both terms read the
preset's retain texts (the same batch, with and without δ). The tiny profile fine-tunes every
parameter (``--lora-rank 0``).
"""

from __future__ import annotations

from brittle.capture.hooks import add_to_residual, check_indices
from brittle.unlearning.adversary import ball_attack, cut
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
        return add_lora(trainer, range(trainer.core.config.num_hidden_layers), self.hp["lora_rank"],
                        self.hp["lora_alpha"], self.hp["lora_dropout"], self.hp["lora_modules"])

    def adversary(self, trainer, step):
        """The fitted attack with the two tokenised batches, which the model's steps reuse."""
        f, r = trainer.texts(step.forget), trainer.retain_batch(step.retain)
        attack = ball_attack(trainer, f, self.adv_states, self.hp["epsilon"], self.hp["adv_steps"],
                             self.hp["adv_lr"], away=r, away_threshold=self.hp["away_threshold"])
        return attack, f, r

    def loss(self, trainer, step):
        attack, f, r = step.adversary
        with add_to_residual(trainer.core, cut(attack.deltas, f)):
            away = log_one_minus_p_loss(trainer.forward(f).logits, f.labels, self.hp["away_threshold"])
        with add_to_residual(trainer.core, cut(attack.deltas, r)):
            toward = mean_nll(trainer.forward(r).logits, r.labels)
        sft = mean_nll(trainer.forward(r).logits, r.labels)
        rho, gamma, alpha = self.hp["retain_adv_weight"], self.hp["gamma"], self.hp["alpha"]
        loss = (rho * toward + gamma * away + alpha * sft) / (rho + gamma + alpha)
        return loss, {"away_loss": away.item(), "retain_nll_attacked": toward.item(), "retain_nll": sft.item(),
                      "adv_forget_nll_clean": attack.nll_clean, "adv_forget_nll_attacked": attack.nll_attacked}

    def finalize(self, model):
        return merge_lora(model)
