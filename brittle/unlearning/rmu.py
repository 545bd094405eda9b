"""Representation misdirection for unlearning (``rmu``).

At the output of block ℓ (``--block``), push the forget activations towards a fixed random
direction and keep the retain activations where the frozen model had them:

    L = mean_t ‖h_ℓ(forget) − c·u‖² / D + α · mean_t ‖h_ℓ(retain) − h_ℓ^frozen(retain)‖² / D

(Li et al. 2024, "The WMDP Benchmark", arXiv:2403.03218, Alg. 1; reference: centerforaisafety/
wmdp ``rmu/unlearn.py``). As in the reference: u is drawn uniformly from [0, 1)^D, normalised to
unit length and scaled by c (one vector for all tokens and steps); only the MLP output projection
weights (``down_proj`` / ``dense_4h_to_h``) of blocks ℓ−2, ℓ−1, ℓ train; both terms are MSE over
tokens and hidden units. Padding is masked out of both terms here (the reference averages over it).
"""

from __future__ import annotations

import torch

from brittle.capture.hooks import record_residual
from brittle.models import check_blocks, mlp_output_linears
from brittle.unlearning.losses import masked_mse
from brittle.unlearning.trainer import Method


def control_vector(hidden: int, coeff: float, seed: int) -> torch.Tensor:
    """c · u/‖u‖ with u ~ Uniform[0, 1)^D from a generator seeded with ``seed``: (1, 1, D) float32."""
    u = torch.rand(1, 1, hidden, generator=torch.Generator().manual_seed(seed))
    return u / u.norm() * coeff


class RMU(Method):
    name = "rmu"
    forget_form = "texts"

    def prepare(self, trainer):
        block = self.hp["block"]
        check_blocks(trainer.core, [block], "rmu: --block")
        self.trained_blocks = list(range(max(0, block - 2), block + 1))
        linears = [(i, name, mod) for i, name, mod in mlp_output_linears(trainer.core) if i in self.trained_blocks]
        self.control = control_vector(trainer.core.config.hidden_size, self.hp["steering_coeff"],
                                      trainer.seed).to(trainer.device)
        return [mod.weight for _, _, mod in linears]

    def loss(self, trainer, step):
        # The output of block ℓ is hidden state ℓ + 1, read raw (the reference hooks the block).
        state = self.hp["block"] + 1
        f = trainer.texts(step.forget)
        r = trainer.retain_batch(step.retain)
        with record_residual(trainer.core, [state], final_norm=False) as acts:
            trainer.forward(f)
            h_f = acts[state]
            trainer.forward(r)
            h_r = acts[state]
            trainer.frozen_forward(r)
            h_r_ref = acts[state]
        forget = masked_mse(h_f, self.control, f.attention_mask)
        retain = masked_mse(h_r, h_r_ref, r.attention_mask)
        # The steering coefficient only means something against the activations it replaces: the
        # reference's c = 6.5 was set for Zephyr-7B's block-7 outputs. Logged so that a run on
        # another model shows at step 0 how c compares with that model's own activation norm.
        mask = f.attention_mask.to(torch.float32)
        norm = float((h_f.detach().float().norm(dim=-1) * mask).sum() / mask.sum().clamp_min(1))
        return forget + self.hp["alpha"] * retain, {"forget_mse": forget.item(), "retain_mse": retain.item(),
                                                    "forget_act_norm": norm,
                                                    "steering_over_norm": self.hp["steering_coeff"] / max(norm, 1e-12)}
