"""Circuit breakers by representation rerouting (``cb``).

On forget text the representations at the target blocks are pushed to be orthogonal to the
frozen model's; on retain text all hidden states are kept where they were:

    L_t = c_s(t) · mean ReLU(cos(h_θ, h_frozen))[forget, target blocks]
        + c_r(t) · mean ‖h_θ − h_frozen‖₂[retain, all hidden states]
    c_s(t) = α · (1 − t/(2T)),  c_r(t) = α · t/(2T)

(Zou et al. 2024, "Improving Alignment and Robustness with Circuit Breakers", arXiv:2406.04313,
Alg. 1; reference GraySwanAI/circuit-breakers ``lorra_circuit_breaker.py``, whose progress
``step/300`` over 150 steps is this t/(2T)). LoRA on every linear projection of blocks
0..max(target) by default (merged at save); ``--lora-r 0`` fine-tunes every parameter instead.
The retain term reads ``output_hidden_states`` (embeddings + every block, as the reference).
"""

from __future__ import annotations

import torch

from brittle.unlearning.hooks import capture_block_outputs
from brittle.unlearning.hparams import int_list
from brittle.unlearning.lora import add_lora, merge_lora
from brittle.unlearning.losses import reroute_loss, retain_l2
from brittle.unlearning.trainer import Method

# Reference (Llama-3-8B / Mistral-7B): hidden_states 10 and 20 (= outputs of blocks 9 and 19),
# LoRA r 16, α_LoRA 16, dropout 0.05, lr 1e-4, batch 16, 150 steps, lorra_alpha 10.
REFERENCE = dict(steps=150, lr=1e-4, batch_size=16, max_length=512, max_grad_norm=1.0, weight_decay=0.0,
                 alpha=10.0, target_layers="9,19", lora_r=16, lora_alpha=16.0, lora_dropout=0.05)
TINY = dict(steps=100, lr=1e-2, batch_size=16, max_length=64, max_grad_norm=1.0, weight_decay=0.0,
            alpha=10.0, target_layers="1", lora_r=8, lora_alpha=16.0, lora_dropout=0.0)


def prepare_adapters(method: Method, trainer) -> list[torch.nn.Parameter]:
    """LoRA on blocks 0..max(target) (or all parameters with ``lora_r == 0``)."""
    method.targets = int_list(method.hp["target_layers"])
    if method.hp["lora_r"] <= 0:
        return list(trainer.model.parameters())
    return add_lora(trainer, range(max(method.targets) + 1), method.hp["lora_r"],
                    method.hp["lora_alpha"], method.hp["lora_dropout"])


def stacked(acts: dict[int, torch.Tensor], layers) -> torch.Tensor:
    return torch.stack([acts[l] for l in layers])


class CircuitBreakers(Method):
    name = "cb"
    defaults = {"reference": REFERENCE, "tiny": TINY}
    forget_form = "texts"

    def prepare(self, trainer):
        return prepare_adapters(self, trainer)

    def coefficients(self, step) -> tuple[float, float]:
        progress = step.index / (2 * step.total)
        return self.hp["alpha"] * (1 - progress), self.hp["alpha"] * progress

    def loss(self, trainer, step):
        c_s, c_r = self.coefficients(step)
        f = trainer.texts(step.forget)
        r = trainer.texts(step.retain)
        with capture_block_outputs(trainer.core, self.targets) as acts:
            trainer.frozen_forward(f)
            h_ref = stacked(acts, self.targets)
            trainer.forward(f)
            h = stacked(acts, self.targets)
        r_ref = torch.stack(trainer.frozen_forward(r, output_hidden_states=True).hidden_states)
        r_h = torch.stack(trainer.forward(r, output_hidden_states=True).hidden_states)
        reroute = reroute_loss(h, h_ref, f.attention_mask)
        retain = retain_l2(r_h, r_ref, r.attention_mask)
        return c_s * reroute + c_r * retain, {"reroute_cos": reroute.item(), "retain_l2": retain.item(),
                                              "coef_reroute": c_s, "coef_retain": c_r}

    def finalize(self, model):
        return merge_lora(model)
