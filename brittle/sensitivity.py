"""Local sensitivity of a causal LM to perturbations of its input embeddings (local Lipschitzness).

For one batch of texts (right-padded, ``attention_mask`` marks real tokens) with input embeddings
E (B, T, d), the output is the model's log-probabilities f(E) = log_softmax(logits) (B, T, V),
on real positions only (log-probabilities, not logits: logits are defined up to a per-position
constant that does not change the prediction). For R random perturbations δ_r, each token's
δ_{r,t} is uniform on the sphere of radius ε·‖E_t‖ (so ε is relative to the token's own
embedding norm; pad positions are not perturbed), and per text:

- ``lipschitz``: mean over r of ‖f(E + δ_r) − f(E)‖_F / ‖δ_r‖_F (finite-difference estimate of the
  local Lipschitz constant of E ↦ f(E); Frobenius norms over the text's real positions),
- ``output_variance``: mean over real positions and vocabulary of the variance over r of f(E + δ_r),
- ``grad_norm``: ‖∂L/∂E‖_F with L the text's summed next-token negative log-likelihood.

Texts in a batch do not interact (causal attention within each row, padding masked), so the
gradient of the batch's summed loss with respect to a text's embeddings is that text's own.
"""

from __future__ import annotations

import torch
from torch import nn


def _sphere(shape, radius: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    return noise / noise.norm(dim=-1, keepdim=True) * radius


def perturbation_stats(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       epsilon: float, n_perturbations: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Per-text ``lipschitz``, ``output_variance`` and ``grad_norm``, each (B,) float64 on CPU.

    ``generator`` is a CPU generator (noise is drawn on CPU, then moved, so results do not depend
    on the device's RNG).
    """
    device = model.get_input_embeddings().weight.device
    ids, mask = input_ids.to(device), attention_mask.to(device)
    real = mask.bool().unsqueeze(-1)
    emb = model.get_input_embeddings()(ids).detach()

    def log_probs(e):
        return torch.log_softmax(model(inputs_embeds=e, attention_mask=mask).logits.float(), -1) * real

    # Gradient of each text's summed next-token NLL w.r.t. its embeddings.
    e = emb.clone().requires_grad_(True)
    lp = log_probs(e)
    targets = ids[:, 1:].unsqueeze(-1)
    nll = -(lp[:, :-1].gather(-1, targets).squeeze(-1) * mask[:, 1:]).sum()
    (grad,) = torch.autograd.grad(nll, e)
    grad_norm = (grad.float() * real).flatten(1).norm(dim=1)

    with torch.no_grad():
        base = lp.detach()
        radius = (epsilon * emb.float().norm(dim=-1, keepdim=True)).cpu()
        ratios, total, total_sq = [], torch.zeros_like(base), torch.zeros_like(base)
        for _ in range(n_perturbations):
            delta = (_sphere(emb.shape, radius, generator).to(device) * real)
            out = log_probs(emb + delta.to(emb.dtype))
            ratios.append((out - base).flatten(1).norm(dim=1) / delta.flatten(1).norm(dim=1))
            total += out
            total_sq += out * out
        r = n_perturbations
        var = (total_sq - total * total / r) / max(r - 1, 1)  # unbiased variance over perturbations
        positions = mask.sum(1) * base.shape[-1]
        output_variance = var.clamp_min(0).flatten(1).sum(1) / positions
    return {"lipschitz": torch.stack(ratios).mean(0).double().cpu(),
            "output_variance": output_variance.double().cpu(), "grad_norm": grad_norm.double().cpu()}
