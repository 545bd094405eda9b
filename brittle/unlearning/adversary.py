"""Latent adversaries: perturbations of hidden activations, optimised to make forget text likely.

Two threat models, one per paper:

* :func:`ball_attack` (targeted LAT, Sheshadri et al. 2024, arXiv:2407.15549; reference
  ``GDAdversary``): a free perturbation δ (B, T, D) added to the residual stream at chosen hidden
  states, each token's δ projected onto the L2 ball of radius ε after every AdamW step; it makes
  the forget text likely and, in the targeted form, the retain text unlikely. (The reference adds
  δ to the MLP output of a block; Llama and GPT-NeoX blocks add that output to the residual
  stream unchanged, so this equals adding δ to the block's output, hidden state block + 1.)
* :class:`SteeringPrefixAdversary` (the CB-LAT of deep ignorance, O'Brien et al. 2025,
  arXiv:2508.06601; reference ``CombinedAdversary`` in EleutherAI/unlearn): at the embedding and
  at the MLP outputs of chosen blocks, a steering vector added at every position plus a "soft
  prefix" added to the first 32 positions, shared across the batch, unconstrained, trained with
  AdamW.

Both lower the forget NLL, i.e. the adversary makes hazardous text *more* likely; only the
adversary's tensors receive gradients here (``torch.autograd.grad``), never the model's.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from brittle.capture.hooks import add_to_residual, perturb_output
from brittle.models import mlp_module
from brittle.unlearning.data import Batch
from brittle.unlearning.losses import log_one_minus_p_loss, mean_nll


def project_ball(delta: torch.Tensor, epsilon: float, mask: torch.Tensor) -> None:
    """In place: scale each token's vector (last dim) to norm ≤ ε; zero it where ``mask`` is 0."""
    with torch.no_grad():
        norms = delta.norm(dim=-1, keepdim=True)
        delta.div_(torch.clamp(norms / epsilon, min=1.0))
        delta.mul_(mask.unsqueeze(-1).to(delta.dtype))


def cut(deltas: dict[int, torch.Tensor], batch: Batch) -> dict[int, torch.Tensor]:
    """The (B, T', D) perturbations fitted to ``batch``'s length T: their first T positions, or
    zeros appended up to T."""
    length = batch.input_ids.shape[1]
    return {i: torch.nn.functional.pad(d, (0, 0, 0, max(0, length - d.shape[1])))[:, :length]
            for i, d in deltas.items()}


@dataclass
class BallAttack:
    """A fitted ball adversary: ``deltas`` {hidden state: (B, T, D) float32, detached}, and the
    forget ("toward") NLL without and with it (``nll_attacked < nll_clean`` when it works)."""

    deltas: dict[int, torch.Tensor]
    nll_clean: float
    nll_attacked: float


def ball_attack(trainer, toward: Batch, states: Sequence[int], epsilon: float, steps: int, lr: float,
                away: Batch | None = None, away_threshold: float = -5.0) -> BallAttack:
    """Fit per-token perturbations δ (‖δ_t‖₂ ≤ ε) at hidden ``states`` that make ``toward`` likely
    and, given ``away``, ``away`` unlikely: minimise ½·NLL(toward | δ) + ½·away-loss(away | δ)
    (the targeted-LAT reference's WMDP adversary: toward the forget text, away from the retain
    text, coefficients 1 and 1 normalised to sum 1; without ``away``, NLL(toward | δ) alone).

    δ is (B, T, D) with T the longer batch's length and is non-zero only on ``toward``'s real
    tokens; the same δ, cut to length, perturbs the ``away`` batch position by position (the
    reference pads both batches to one length and masks its attack with the forget mask for both).
    A fresh AdamW (torch defaults, weight decay 0.01) each call, as the reference creates its
    adversary and optimiser anew every step; δ is projected onto the ball after every step."""
    if away is not None and away.input_ids.shape[0] != toward.input_ids.shape[0]:
        raise ValueError("ball_attack: toward and away batches must hold as many texts")
    length = max(toward.input_ids.shape[1], away.input_ids.shape[1] if away is not None else 0)
    mask = torch.zeros(toward.input_ids.shape[0], length, device=trainer.device)
    mask[:, :toward.input_ids.shape[1]] = toward.attention_mask
    shape = (*mask.shape, trainer.core.config.hidden_size)
    deltas = {i: torch.zeros(shape, device=trainer.device, requires_grad=True) for i in states}
    optim = torch.optim.AdamW(list(deltas.values()), lr=lr)

    def toward_nll(d) -> torch.Tensor:
        with add_to_residual(trainer.core, cut(d, toward)):
            return mean_nll(trainer.inner_forward(toward).logits, toward.labels)

    nll_clean = None
    for _ in range(steps):
        nll = toward_nll(deltas)
        nll_clean = nll.item() if nll_clean is None else nll_clean
        loss = nll
        if away is not None:
            with add_to_residual(trainer.core, cut(deltas, away)):
                away_loss = log_one_minus_p_loss(trainer.inner_forward(away).logits, away.labels, away_threshold)
            loss = 0.5 * nll + 0.5 * away_loss
        grads = torch.autograd.grad(loss, list(deltas.values()))
        optim.zero_grad()
        for d, g in zip(deltas.values(), grads):
            d.grad = g
        optim.step()
        for d in deltas.values():
            project_ball(d, epsilon, mask)
    final = {i: d.detach() for i, d in deltas.items()}
    with torch.no_grad():
        nll_attacked = toward_nll(final).item()
    return BallAttack(final, nll_attacked if nll_clean is None else nll_clean, nll_attacked)


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
