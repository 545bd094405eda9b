"""Latent adversaries: perturbations of hidden activations, optimised to make forget text likely.

Two threat models, one per paper:

* :func:`ball_attack` (targeted LAT, Sheshadri et al. 2024, arXiv:2407.15549; reference
  ``GDAdversary``): a free perturbation δ (B, T, D) added to the residual stream at chosen hidden
  states, each token's δ projected onto the L2 ball of radius ε after every Adam step.
* :class:`SteeringPrefixAdversary` (the CB-LAT of deep ignorance, O'Brien et al. 2025,
  arXiv:2508.06601; reference ``CombinedAdversary`` in EleutherAI/unlearn): at the embedding and
  at the MLP outputs of chosen blocks, a steering vector added at every position plus a "soft
  prefix" added to the first 32 positions, shared across the batch, unconstrained, trained with
  AdamW.

Both minimise the forget NLL, i.e. the adversary makes hazardous text *more* likely; only the
adversary's tensors receive gradients here (``torch.autograd.grad``), never the model's.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

from brittle.capture.hooks import add_to_residual, perturb_output
from brittle.models import mlp_module
from brittle.unlearning.data import Batch
from brittle.unlearning.losses import mean_nll


def project_ball(delta: torch.Tensor, epsilon: float, mask: torch.Tensor) -> None:
    """In place: scale each token's vector (last dim) to norm ≤ ε; zero it on padding."""
    with torch.no_grad():
        norms = delta.norm(dim=-1, keepdim=True)
        delta.div_(torch.clamp(norms / epsilon, min=1.0))
        delta.mul_(mask.unsqueeze(-1).to(delta.dtype))


def ball_attack(trainer, batch: Batch, states: Sequence[int], epsilon: float, steps: int,
                lr: float) -> tuple[dict[int, torch.Tensor], float, float]:
    """Optimise per-token perturbations (‖δ_t‖₂ ≤ ε) at hidden ``states`` to minimise the forget NLL.

    Returns ``(deltas, nll_before, nll_after)``: detached (B, T, D) float32 perturbations, and the
    forget NLL without and with them (nll_after < nll_before when the attack works)."""
    hidden = trainer.core.config.hidden_size
    shape = (*batch.input_ids.shape, hidden)
    deltas = {i: torch.zeros(shape, device=trainer.device, requires_grad=True) for i in states}
    optim = torch.optim.Adam(list(deltas.values()), lr=lr)
    nll_before = None
    for _ in range(steps):
        with add_to_residual(trainer.core, deltas):
            nll = mean_nll(trainer.inner_forward(batch).logits, batch.labels)
        nll_before = nll.item() if nll_before is None else nll_before
        grads = torch.autograd.grad(nll, list(deltas.values()))
        optim.zero_grad()
        for d, g in zip(deltas.values(), grads):
            d.grad = g
        optim.step()
        for d in deltas.values():
            project_ball(d, epsilon, batch.attention_mask)
    final = {i: d.detach() for i, d in deltas.items()}
    with torch.no_grad(), add_to_residual(trainer.core, final):
        nll_after = mean_nll(trainer.inner_forward(batch).logits, batch.labels).item()
    if nll_before is None:
        nll_before = nll_after
    return final, nll_before, nll_after


class SteeringPrefixAdversary(nn.Module):
    """Steering vector (D,) at every position plus a soft prefix (P, D) on the first P positions."""

    def __init__(self, hidden: int, prefix: int = 32, device=None):
        super().__init__()
        self.steer = nn.Parameter(torch.zeros(hidden, device=device))
        self.prefix = nn.Parameter(torch.zeros(prefix, hidden, device=device))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n = min(self.prefix.shape[0], h.shape[1])
        pad = torch.zeros(h.shape[1] - n, h.shape[2], device=h.device, dtype=self.prefix.dtype)
        per_position = torch.cat([self.prefix[:n], pad], dim=0)               # (T, D)
        return h + (self.steer + per_position).to(h.dtype)


def steering_sites(model: nn.Module, blocks: Sequence[int]) -> list[nn.Module]:
    """The modules whose outputs the deep-ignorance adversary perturbs: the input embedding and
    the MLPs of ``blocks``."""
    return [model.get_input_embeddings()] + [mlp_module(model, b) for b in blocks]


@contextmanager
def applied(sites: Sequence[nn.Module], adversaries: Sequence[nn.Module]) -> Iterator[None]:
    with ExitStack() as stack:
        for site, adv in zip(sites, adversaries):
            stack.enter_context(perturb_output(site, adv))
        yield


def steering_attack(trainer, batch: Batch, blocks: Sequence[int], steps: int, lr: float,
                    weight_decay: float = 0.01) -> tuple[list[nn.Module], list[nn.Module], float, float]:
    """Train fresh :class:`SteeringPrefixAdversary` s (zero init, AdamW as in the reference) at the
    embedding and the MLP outputs of ``blocks``. Returns ``(sites, adversaries, nll_before,
    nll_after)``; apply them with :func:`applied`."""
    sites = steering_sites(trainer.core, blocks)
    hidden = trainer.core.config.hidden_size
    advs = [SteeringPrefixAdversary(hidden, device=trainer.device) for _ in sites]
    params = [p for a in advs for p in a.parameters()]
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    nll_before = None
    for _ in range(steps):
        with applied(sites, advs):
            nll = mean_nll(trainer.inner_forward(batch).logits, batch.labels)
        nll_before = nll.item() if nll_before is None else nll_before
        grads = torch.autograd.grad(nll, params)
        optim.zero_grad()
        for p, g in zip(params, grads):
            p.grad = g
        optim.step()
    for a in advs:
        a.requires_grad_(False)
    with torch.no_grad(), applied(sites, advs):
        nll_after = mean_nll(trainer.inner_forward(batch).logits, batch.labels).item()
    return sites, advs, (nll_after if nll_before is None else nll_before), nll_after
