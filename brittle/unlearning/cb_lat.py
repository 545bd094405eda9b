"""Circuit breakers trained against a latent adversary (``cb_lat``), as in deep ignorance.

Each step: frozen-model representations of the forget and retain batches are taken first
(clean); then an adversary (steering vector + 32-token soft prefix at the embedding and at the
MLP outputs of ``adv_layers``, unconstrained, a few AdamW steps) is trained to make the forget
text *more* likely for the current model; with the adversary in place, the model is trained with
the circuit-breaker terms

    L_t = remove_coef · (1 − s/4) · mean ReLU(cos(h_θ, h_frozen))[forget, target blocks]
        + α · s · mean ‖h_θ − h_frozen‖₂[retain, all hidden states],   s = t / T

(O'Brien et al. 2025, "Deep Ignorance", arXiv:2508.06601, CB-LAT; reference EleutherAI/unlearn
``unlearn/cas/unlearning.py``, alg ``rr-lat``: the schedule, the adversary, and the retain pass
also running under the adversary are taken from there; circuit breakers: Zou et al. 2024,
arXiv:2406.04313). Differences: the adversary is fit on the whole forget batch (the reference
uses 2 examples to save memory) and its gradients never reach the model's parameters.
"""

from __future__ import annotations

import torch

from brittle.unlearning.adversary import applied, steering_attack
from brittle.unlearning.cb import prepare_adapters, stacked
from brittle.unlearning.hooks import capture_block_outputs
from brittle.unlearning.hparams import int_list
from brittle.unlearning.lora import merge_lora
from brittle.unlearning.losses import reroute_loss, retain_l2
from brittle.unlearning.trainer import Method

# deep-ignorance CB-LAT on the 6.9B GPT-NeoX: lr 2e-3, adv lr 2e-3, 4 attack steps, remove 300,
# retain 5, LoRA r 16 (α 16, dropout 0.05), 2000 examples at effective batch 32 (≈62 steps),
# layers [5, 10, 15, 20, 25, 30]: hidden_states indices for rerouting (= outputs of blocks
# 4, 9, ..., 29) and block indices for the adversary's MLP perturbations.
REFERENCE = dict(steps=62, lr=2e-3, batch_size=32, max_length=512, max_grad_norm=1.0, weight_decay=0.01,
                 alpha=5.0, remove_coef=300.0, target_layers="4,9,14,19,24,29", adv_layers="5,10,15,20,25,30",
                 adv_steps=4, adv_lr=2e-3, lora_r=16, lora_alpha=16.0, lora_dropout=0.05)
TINY = dict(steps=200, lr=2e-3, batch_size=16, max_length=64, max_grad_norm=1.0, weight_decay=0.0,
            alpha=10.0, remove_coef=10.0, target_layers="1", adv_layers="0", adv_steps=4, adv_lr=2e-2,
            lora_r=8, lora_alpha=16.0, lora_dropout=0.0)


class CircuitBreakersLAT(Method):
    name = "cb_lat"
    defaults = {"reference": REFERENCE, "tiny": TINY}
    forget_form = "texts"

    def prepare(self, trainer):
        self.adv_layers = int_list(self.hp["adv_layers"])
        return prepare_adapters(self, trainer)

    def loss(self, trainer, step):
        s = min(1.0, step.index / step.total)
        c_r, c_s = self.hp["alpha"] * s, self.hp["remove_coef"] * (1 - 0.25 * s)
        f = trainer.texts(step.forget)
        r = trainer.texts(step.retain)
        with capture_block_outputs(trainer.core, self.targets) as acts:
            trainer.frozen_forward(f)
            h_ref = stacked(acts, self.targets)
        r_ref = torch.stack(trainer.frozen_forward(r, output_hidden_states=True).hidden_states)
        sites, advs, nll_clean, nll_attacked = steering_attack(
            trainer, f, self.adv_layers, self.hp["adv_steps"], self.hp["adv_lr"])
        with applied(sites, advs):
            with capture_block_outputs(trainer.core, self.targets) as acts:
                trainer.forward(f)
                h = stacked(acts, self.targets)
            r_h = torch.stack(trainer.forward(r, output_hidden_states=True).hidden_states)
        reroute = reroute_loss(h, h_ref, f.attention_mask)
        retain = retain_l2(r_h, r_ref, r.attention_mask)
        return c_s * reroute + c_r * retain, {
            "reroute_cos": reroute.item(), "retain_l2": retain.item(), "coef_reroute": c_s, "coef_retain": c_r,
            "adv_forget_nll_clean": nll_clean, "adv_forget_nll_attacked": nll_attacked}

    def finalize(self, model):
        return merge_lora(model)
