"""Representation misdirection for unlearning (``rmu``).

At block ℓ, push the forget activations towards a fixed random direction and keep the retain
activations where the frozen model had them:

    L = mean_t ‖h_ℓ(forget) − c·u‖² / D + α · mean_t ‖h_ℓ(retain) − h_ℓ^frozen(retain)‖² / D

(Li et al. 2024, "The WMDP Benchmark", arXiv:2403.03218, Alg. 1; reference: centerforaisafety/
wmdp ``rmu/unlearn.py``). As in the reference: u is drawn uniformly from [0, 1)^D, normalised to
unit length and scaled by c (one vector for all tokens and steps); only the MLP output projection
weights (``down_proj`` / ``dense_4h_to_h``) of blocks ℓ−2, ℓ−1, ℓ train; both terms are MSE over
tokens and hidden units. Padding is masked out of both terms here (the reference averages over it).
"""

from __future__ import annotations

import torch

from brittle.cli import UserError
from brittle.unlearning.hooks import capture_block_outputs, mlp_output_linears
from brittle.unlearning.losses import masked_mse
from brittle.unlearning.trainer import Method

# WMDP, Zephyr-7B: layer 7, c = 6.5, α = 1200, lr 5e-5, batch 4, 150 batches, 512 tokens.
REFERENCE = dict(steps=150, lr=5e-5, batch_size=4, max_length=512, max_grad_norm=0.0, weight_decay=0.0,
                 layer=7, steering_coeff=6.5, alpha=1200.0)
TINY = dict(steps=250, lr=3e-3, batch_size=16, max_length=64, max_grad_norm=0.0, weight_decay=0.0,
            layer=1, steering_coeff=50.0, alpha=0.3)


def control_vector(hidden: int, coeff: float, seed: int) -> torch.Tensor:
    """c · u/‖u‖ with u ~ Uniform[0, 1)^D from a generator seeded with ``seed``: (1, 1, D) float32."""
    u = torch.rand(1, 1, hidden, generator=torch.Generator().manual_seed(seed))
    return u / u.norm() * coeff


class RMU(Method):
    name = "rmu"
    defaults = {"reference": REFERENCE, "tiny": TINY}
    forget_form = "texts"

    def prepare(self, trainer):
        layer = self.hp["layer"]
        n_blocks = trainer.core.config.num_hidden_layers
        if not 0 <= layer < n_blocks:
            raise UserError(f"rmu: --layer {layer} out of range (model has {n_blocks} blocks)")
        self.trained_layers = list(range(max(0, layer - 2), layer + 1))
        linears = [(i, name, mod) for i, name, mod in mlp_output_linears(trainer.core) if i in self.trained_layers]
        self.trained_names = [f"{name}.weight" for _, name, _ in linears]
        self.control = control_vector(trainer.core.config.hidden_size, self.hp["steering_coeff"],
                                      trainer.seed).to(trainer.device)
        return [mod.weight for _, _, mod in linears]

    def loss(self, trainer, step):
        layer = self.hp["layer"]
        f = trainer.texts(step.forget)
        r = trainer.texts(step.retain)
        with capture_block_outputs(trainer.core, [layer]) as acts:
            trainer.forward(f)
            h_f = acts[layer]
            trainer.forward(r)
            h_r = acts[layer]
            trainer.frozen_forward(r)
            h_r_ref = acts[layer]
        forget = masked_mse(h_f, self.control, f.attention_mask)
        retain = masked_mse(h_r, h_r_ref, r.attention_mask)
        return forget + self.hp["alpha"] * retain, {"forget_mse": forget.item(), "retain_mse": retain.item()}
