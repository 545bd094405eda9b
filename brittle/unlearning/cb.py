"""Circuit breakers by representation rerouting (``cb``).

On forget text the representations at the target blocks are pushed to be orthogonal to the
frozen model's; on retain text the hidden states up to the last target block's output are kept
where they were:

    L_t = c_s(t) · mean ReLU(cos(h_θ, h_frozen))[forget, target blocks]
        + c_r(t) · mean ‖h_θ − h_frozen‖₂[retain, hidden states 0..max(target) + 1]
    c_s(t) = α · (1 − t/(2T)),  c_r(t) = α · t/(2T)

(Zou et al. 2024, "Improving Alignment and Robustness with Circuit Breakers", arXiv:2406.04313,
Alg. 1; reference GraySwanAI/circuit-breakers ``lorra_circuit_breaker.py``, whose progress
``step/300`` over 150 steps is this t/(2T)). The target hidden states (``--target-hidden-states``,
the reference's indices) are read as raw block outputs. LoRA on every linear projection of
blocks 0..max(target) by default (merged at save; ``--lora-modules``); ``--lora-rank 0`` fine-tunes every
parameter instead. The retain term reads ``output_hidden_states`` up to the output of block
max(target), where the reference truncates the model (``drop_layers_after``); its last state there
has the final norm applied, ours is the raw block output.
"""

from __future__ import annotations

import torch

from brittle.capture.hooks import check_indices, record_residual
from brittle.errors import UserError
from brittle.unlearning.hparams import int_list
from brittle.unlearning.lora import add_lora, merge_lora
from brittle.unlearning.losses import reroute_loss, retain_l2
from brittle.unlearning.trainer import Method


def prepare_adapters(method: Method, trainer) -> list[torch.nn.Parameter]:
    """LoRA on blocks 0..max(target) (as the references; see ``brittle.unlearning.lora``), or all
    parameters with ``lora_rank == 0``."""
    method.targets = int_list(method.hp["target_hidden_states"])
    check_indices(trainer.core, method.targets, f"{method.name}: --target-hidden-states")
    if 0 in method.targets:
        raise UserError(f"{method.name}: hidden state 0 is the embedding; target block outputs (1 or more)")
    if method.hp["lora_rank"] <= 0:
        return list(trainer.model.parameters())
    blocks = range(min(max(method.targets) + 1, trainer.core.config.num_hidden_layers))
    return add_lora(trainer, blocks, method.hp["lora_rank"], method.hp["lora_alpha"], method.hp["lora_dropout"],
                    method.hp.get("lora_modules", "all-linear"))


def stacked(acts: dict[int, torch.Tensor], indices) -> torch.Tensor:
    return torch.stack([acts[i] for i in indices])


class CircuitBreakers(Method):
    name = "cb"
    forget_form = "texts"

    def prepare(self, trainer):
        return prepare_adapters(self, trainer)

    def coefficients(self, step) -> tuple[float, float]:
        progress = step.index / (2 * step.total)
        return self.hp["alpha"] * (1 - progress), self.hp["alpha"] * progress

    def loss(self, trainer, step):
        c_s, c_r = self.coefficients(step)
        f = trainer.texts(step.forget)
        r = trainer.retain_batch(step.retain)
        with record_residual(trainer.core, self.targets, final_norm=False) as acts:
            trainer.frozen_forward(f)
            h_ref = stacked(acts, self.targets)
            trainer.forward(f)
            h = stacked(acts, self.targets)
        # The reference truncates the model after the last target block, so its retain term reads
        # hidden states 0..max(target) + 1 only; later blocks take no part in training.
        kept = slice(0, max(self.targets) + 2)
        r_ref = torch.stack(trainer.frozen_forward(r, output_hidden_states=True).hidden_states[kept])
        r_h = torch.stack(trainer.forward(r, output_hidden_states=True).hidden_states[kept])
        reroute = reroute_loss(h, h_ref, f.attention_mask)
        retain = retain_l2(r_h, r_ref, r.attention_mask)
        return c_s * reroute + c_r * retain, {"reroute_cos": reroute.item(), "retain_l2": retain.item(),
                                              "coef_reroute": c_s, "coef_retain": c_r}

    def finalize(self, model):
        return merge_lora(model)
