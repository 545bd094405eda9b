"""The interpolated model of the mode-connectivity step: θ(α) built in place, one model at a time.

Both endpoints are held as float32 state dicts on the CPU and one working model is overwritten for
every α, so memory is three copies of the weights (two float32 endpoints plus the working model in
its compute dtype), never eleven models. The interpolation is ``torch.lerp`` in float32, which
returns θ_a exactly at α = 0 and θ_b exactly at α = 1 (so the curve's ends are the two models' own
losses) and θ_a at every α when θ_a = θ_b; interpolating in 16-bit would round small differences
away (DESIGN.md §5).
"""

from __future__ import annotations

import torch
from torch import nn

from brittle.errors import UserError


def float32_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every entry of ``model.state_dict()`` on the CPU, floating ones in float32 (a copy)."""
    return {k: (v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu()).clone()
            for k, v in model.state_dict().items()}


def check_compatible(state_a: dict, state_b: dict, label_a: str, label_b: str) -> None:
    """Same names and shapes, and identical non-float entries (nothing to interpolate there)."""
    if state_a.keys() != state_b.keys():
        only = sorted(set(state_a) ^ set(state_b))[:3]
        raise UserError(f"{label_a} and {label_b} have different parameters (e.g. {', '.join(only)}); "
                        "mode connectivity needs one architecture")
    for k, a in state_a.items():
        b = state_b[k]
        if a.shape != b.shape:
            raise UserError(f"{k} has shape {tuple(a.shape)} in {label_a} and {tuple(b.shape)} in {label_b}")
        if not a.is_floating_point() and not torch.equal(a, b):
            raise UserError(f"{k} (non-float) differs between {label_a} and {label_b}")


@torch.no_grad()
def set_interpolation(model: nn.Module, state_a: dict, state_b: dict, alpha: float) -> None:
    """Overwrite ``model``'s weights with θ(α) = lerp(θ_a, θ_b, α), computed in float32 and cast to
    the model's own dtype and device. Tied weights share storage and are written twice, equally."""
    for k, target in model.state_dict().items():
        if target.is_floating_point():
            target.copy_(torch.lerp(state_a[k], state_b[k], alpha))


@torch.no_grad()
def weight_distance(state_a: dict, state_b: dict, names) -> tuple[float, float]:
    """``(‖θ_b − θ_a‖₂, ‖θ_a‖₂)`` over the parameters ``names`` (each stored tensor once), float64 sums."""
    diff = base = 0.0
    for k in names:
        a, b = state_a[k], state_b[k]
        diff += float((b - a).double().pow(2).sum())
        base += float(a.double().pow(2).sum())
    return diff ** 0.5, base ** 0.5
