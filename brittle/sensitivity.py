"""Local sensitivity of a causal LM to perturbations of its input embeddings (local Lipschitzness).

For one batch of texts (right-padded, ``attention_mask`` marks real tokens) with input embeddings
E (B, T, d), the output is the model's log-probabilities f(E) = log_softmax(logits) (B, T, V),
on real positions only (log-probabilities, not logits: logits are defined up to a per-position
constant that does not change the prediction). For R random perturbations δ_r, each token's
δ_{r,t} is uniform on the sphere of radius ε·‖E_t‖ (so ε is relative to the token's own
embedding norm; pad positions are not perturbed), and per text, with d_r = f(E + δ_r) − f(E):

- ``lipschitz``: mean over r of ‖d_r‖_F / ‖δ_r‖_F (finite-difference estimate of the local
  Lipschitz constant of E ↦ f(E); Frobenius norms over the text's real positions). For a map
  that is linear with Jacobian J per token it lies between σ_min(J) and σ_max(J); it equals the
  operator norm only when all singular values are equal (random directions, not the worst one).
- ``output_variance``: mean over real positions and vocabulary of the unbiased variance over r of
  f(E + δ_r) (nats²). Grows as ε² while ε is small enough for f to be locally linear.
- ``grad_norm``: ‖∂L/∂E‖_F with L the text's summed next-token negative log-likelihood (nats per
  unit of embedding norm). It grows with the text's length and with its loss level.
- ``grad_norm_per_token``: ‖∂(L/n)/∂E‖_F = grad_norm / n, n = n_tokens − 1 the text's predicted
  tokens (the gradient of its mean per-token loss; 0 for a one-token text, which has no loss).
  This removes the length dependence, not the loss-level dependence: for one text, B/A is the same
  for both columns; means over texts of different lengths differ.

Cost. One forward and backward pass (the gradient, and f(E)) plus R perturbed forward passes per
batch. The R perturbed copies of a batch are stacked into as few passes as fit in
:data:`PASS_ELEMENTS` log-probabilities (all R at once for the tiny world, where a small model's
per-call overhead is then paid once; benchmarks/bench_comparison_steps.md); the numbers are those of one pass
per perturbation (tests/test_lipschitz_numerics.py).

Texts in a batch do not interact (causal attention within each row, padding masked), so the
gradient of the batch's summed loss with respect to a text's embeddings is that text's own.

Numerics. Everything here is a small difference of large numbers, so it is computed in float32:

- The model must run in float32 (:func:`for_sensitivity` upcasts it in place). In bfloat16 (8
  significant bits, relative resolution 2⁻⁸ ≈ 0.4 %) each element of a perturbation of relative
  size ε = 0.01 is about two units in the last place, and every layer rounds its activations at
  0.4 %: f(E + δ) − f(E) is rounding noise. Reported from a GPU run on the same texts: a
  Lipschitz estimate of 118 in bf16 against 63 in float32, and 4196 at ε = 1e-4 (on the tiny test
  pair, 14.4 against 11.9; tests/test_lipschitz_numerics.py). float32 (2⁻²⁴ ≈ 6e-8)
  leaves the ε = 0.01 difference about five orders of magnitude above rounding. Upcasting the
  whole model is the simplest correct choice (a float32 difference of two bf16 forward passes is
  still bf16 noise); its cost is 4 bytes per parameter (28 GB for a 6.9B model).
- The noise δ is drawn in float32 on CPU; E + δ, d_r and the norms are float32.
- The variance is Welford's running update on d_r (Welford 1962; Knuth TAOCP vol. 2, 4.2.2),
  not Σx² − (Σx)²/R: on log-probabilities of size ~10 the latter cancels catastrophically in
  float32 and, clamped at 0, left a positive floor of about 1e-5 where the true variance is 0.
  Constant outputs give exactly 0. Working on d_r rather than f (a shift by f(E)) keeps the
  numbers small as well.
"""

from __future__ import annotations

import torch
from torch import nn

COMPUTE_DTYPE = torch.float32


def for_sensitivity(model: nn.Module) -> nn.Module:
    """``model`` cast in place to float32 (and returned), the precision every number of this
    module needs (see the module docstring). A model loaded in bfloat16 keeps its bf16-rounded
    weights, now evaluated in float32 arithmetic."""
    return model.to(COMPUTE_DTYPE)


# Most log-probability elements (rows × positions × vocabulary) one stacked pass may produce: 2²⁸
# float32 values are 1 GiB, and the forward's activations scale with it. A 6.9B model's batch of
# 8 × 512 tokens × 50k vocabulary alone is 2²⁷·1.5, so it keeps one perturbation per pass.
PASS_ELEMENTS = 2 ** 28


def perturbations_per_pass(batch: int, length: int, vocab: int, n_perturbations: int) -> int:
    """How many perturbed copies of a (batch, length) batch go through the model together: as many
    as keep the stacked log-probabilities within :data:`PASS_ELEMENTS`, at least 1, at most all."""
    return max(1, min(n_perturbations, PASS_ELEMENTS // max(batch * length * vocab, 1)))


def _sphere(shape, radius: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    return noise / noise.norm(dim=-1, keepdim=True) * radius


def perturbation_stats(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       epsilon: float, n_perturbations: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Per-text ``lipschitz``, ``output_variance``, ``grad_norm`` and ``grad_norm_per_token``,
    each (B,) float64 on CPU.

    ``input_ids``, ``attention_mask``: (B, T) int, right-padded. ``model`` should be float32
    (:func:`for_sensitivity`); in a lower precision the forward passes run in that precision and
    the differences measure its rounding (the tests show it). ``generator`` is a CPU generator
    (noise is drawn on CPU, then moved, so results do not depend on the device's RNG); with the
    same generator state, the directions do not depend on ``epsilon``.
    """
    weight = model.get_input_embeddings().weight
    device = weight.device
    ids, mask = input_ids.to(device), attention_mask.to(device)
    real = mask.bool().unsqueeze(-1)
    emb = model.get_input_embeddings()(ids).detach().float()

    def log_probs(e, mask=mask, real=real):
        # e is float32; the cast is a no-op for a float32 model (a lower-precision one rounds E + δ here).
        out = model(inputs_embeds=e.to(weight.dtype), attention_mask=mask).logits
        return torch.log_softmax(out.float(), -1) * real

    # Gradient of each text's summed next-token NLL w.r.t. its embeddings.
    e = emb.clone().requires_grad_(True)
    lp = log_probs(e)
    targets = ids[:, 1:].unsqueeze(-1)
    nll = -(lp[:, :-1].gather(-1, targets).squeeze(-1) * mask[:, 1:]).sum()
    (grad,) = torch.autograd.grad(nll, e)
    grad_norm = (grad.float() * real).flatten(1).norm(dim=1)
    predicted = (mask.sum(1) - 1).clamp_min(1)  # next-token targets per text (0 for one token: grad is 0)

    with torch.no_grad():
        base = lp.detach()
        radius = (epsilon * emb.norm(dim=-1, keepdim=True)).cpu()
        ratios, mean, m2 = [], torch.zeros_like(base), torch.zeros_like(base)
        per_pass = perturbations_per_pass(*ids.shape, base.shape[-1], n_perturbations)
        k = 0
        for first in range(0, n_perturbations, per_pass):
            # Noise drawn one perturbation at a time, in the same order as one pass per perturbation
            # would: the directions (and every number below) do not depend on how passes are stacked.
            chunk = [_sphere(emb.shape, radius, generator).to(device) * real
                     for _ in range(min(per_pass, n_perturbations - first))]
            # Several perturbed copies of the batch in one forward pass (rows do not interact:
            # causal attention per row), so a small model pays its per-call overhead once.
            stacked = log_probs(torch.cat([emb + delta for delta in chunk]), mask.repeat(len(chunk), 1),
                                real.repeat(len(chunk), 1, 1))
            for delta, out in zip(chunk, stacked.split(len(ids))):
                k += 1
                d = out - base
                ratios.append(d.flatten(1).norm(dim=1) / delta.flatten(1).norm(dim=1))
                # Welford: mean_k = mean_{k-1} + (d − mean_{k-1})/k; M2 += (d − mean_{k-1})(d − mean_k).
                step = d - mean
                mean += step / k
                m2 += step * (d - mean)
        var = m2 / max(n_perturbations - 1, 1)  # unbiased variance over perturbations, ≥ 0 by construction
        positions = mask.sum(1) * base.shape[-1]
        output_variance = var.flatten(1).sum(1) / positions
    return {"lipschitz": torch.stack(ratios).mean(0).double().cpu(),
            "output_variance": output_variance.double().cpu(), "grad_norm": grad_norm.double().cpu(),
            "grad_norm_per_token": (grad_norm.double() / predicted.double()).cpu()}
