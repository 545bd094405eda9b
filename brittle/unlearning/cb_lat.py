"""Circuit breakers trained against a latent adversary (``cb_lat``), as in deep ignorance.

Each step: frozen-model representations of the forget and retain batches are taken first
(clean); then an adversary (steering vector + 32-token soft prefix at the embedding and at the
MLP outputs of the blocks ``adv_blocks``, unconstrained, a few AdamW steps) is trained to make the forget
text *more* likely for the current model; with the adversary in place, the model is trained with
the circuit-breaker terms

    L_t = remove_coef · (1 − s/4) · mean ReLU(cos(h_θ, h_frozen))[forget, target hidden states]
        + α · s · mean ‖h_θ − h_frozen‖₂[retain, all hidden states],   s = t / T

(O'Brien et al. 2025, "Deep Ignorance", arXiv:2508.06601, CB-LAT; reference EleutherAI/unlearn
``unlearn/cas/unlearning.py``, alg ``rr-lat``: the schedule, the adversary, and the retain pass
also running under the adversary are taken from there; circuit breakers: Zou et al. 2024,
arXiv:2406.04313). The adversary is fit on each micro-batch: the reference trains with one
example per device and accumulates 32 (``pdbs = 1``), so its adversary is fit per example, which
the reference profile reproduces with ``batch_size = 1, grad_accum = 32``; the tiny profile fits it
on batches of 16. Its gradients never reach the model's parameters.
"""

from __future__ import annotations

import torch

from brittle.capture.hooks import record_residual
from brittle.models import check_blocks
from brittle.unlearning.adversary import applied, steering_attack
from brittle.unlearning.cb import prepare_adapters, stacked
from brittle.unlearning.hparams import int_list
from brittle.unlearning.lora import merge_lora
from brittle.unlearning.losses import reroute_loss, retain_l2
from brittle.unlearning.trainer import Method


class CircuitBreakersLAT(Method):
    name = "cb_lat"
    forget_form = "texts"

    def prepare(self, trainer):
        self.adv_blocks = int_list(self.hp["adv_blocks"])
        check_blocks(trainer.core, self.adv_blocks, "cb_lat: --adv-blocks")
        return prepare_adapters(self, trainer)

    def loss(self, trainer, step):
        s = min(1.0, step.index / step.total)
        c_r, c_s = self.hp["alpha"] * s, self.hp["remove_coef"] * (1 - 0.25 * s)
        f = trainer.texts(step.forget)
        r = trainer.retain_batch(step.retain)
        with record_residual(trainer.core, self.targets, final_norm=False) as acts:
            trainer.frozen_forward(f)
            h_ref = stacked(acts, self.targets)
        r_ref = torch.stack(trainer.frozen_forward(r, output_hidden_states=True).hidden_states)
        sites, advs, nll_clean, nll_attacked = steering_attack(
            trainer, f, self.adv_blocks, self.hp["adv_steps"], self.hp["adv_lr"])
        with applied(sites, advs):
            with record_residual(trainer.core, self.targets, final_norm=False) as acts:
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
