"""Targeted latent adversarial training for unlearning (``lat``).

Each step, an adversary perturbs the residual stream after the chosen blocks with per-token
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
profile fine-tunes every parameter (``--lora-r 0``).
"""

from __future__ import annotations

from brittle.unlearning.adversary import ball_attack, residual_perturbation
from brittle.unlearning.hparams import int_list
from brittle.unlearning.lora import add_lora, merge_lora
from brittle.unlearning.losses import log_one_minus_p_loss, mean_nll
from brittle.unlearning.trainer import Method

# The reference's WMDP config (Zephyr-7B, notebooks/wmdp_ga_lat_config.yaml): adversary at block 7,
# ε = 2, 16 PGD steps at lr 5e-2; model lr 5e-5, batch 4, 200 steps, SFT weight 4, clip 0.5,
# log(1-p) away loss, LoRA rank 64. (Not reproduced: its 4 model steps per attack and its
# "toward" term on alternative text.)
REFERENCE = dict(steps=200, lr=5e-5, batch_size=4, max_length=512, max_grad_norm=0.5, weight_decay=0.0,
                 alpha=4.0, adv_layers="7", epsilon=2.0, adv_steps=16, adv_lr=5e-2, away_threshold=-5.0,
                 lora_r=64, lora_alpha=16.0, lora_dropout=0.0)
TINY = dict(steps=100, lr=3e-3, batch_size=16, max_length=64, max_grad_norm=1.0, weight_decay=0.0,
            alpha=1.0, adv_layers="0", epsilon=2.0, adv_steps=6, adv_lr=0.1, away_threshold=-5.0,
            lora_r=0, lora_alpha=16.0, lora_dropout=0.0)


class LAT(Method):
    name = "lat"
    defaults = {"reference": REFERENCE, "tiny": TINY}
    forget_form = "texts"

    def prepare(self, trainer):
        self.adv_layers = int_list(self.hp["adv_layers"])
        if self.hp["lora_r"] <= 0:
            return list(trainer.model.parameters())
        return add_lora(trainer, range(trainer.core.config.num_hidden_layers),
                        self.hp["lora_r"], self.hp["lora_alpha"], self.hp["lora_dropout"])

    def loss(self, trainer, step):
        f = trainer.texts(step.forget)
        r = trainer.texts(step.retain)
        deltas, nll_clean, nll_attacked = ball_attack(trainer, f, self.adv_layers, self.hp["epsilon"],
                                                      self.hp["adv_steps"], self.hp["adv_lr"])
        with residual_perturbation(trainer.core, deltas):
            away = log_one_minus_p_loss(trainer.forward(f).logits, f.labels, self.hp["away_threshold"])
        nll_r = mean_nll(trainer.forward(r).logits, r.labels)
        return away + self.hp["alpha"] * nll_r, {
            "away_loss": away.item(), "retain_nll": nll_r.item(),
            "adv_forget_nll_clean": nll_clean, "adv_forget_nll_attacked": nll_attacked}

    def finalize(self, model):
        return merge_lora(model)
