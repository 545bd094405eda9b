"""Hook points of the unlearning methods, found from the model and never by class name.

The transformer blocks come from :func:`brittle.models.find_layer_list`; a block's output is the
residual stream after that block (``hidden_states[i + 1]`` in HF's numbering, without the final
norm that HF applies to the last entry). Hooks are always removed in ``finally``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from brittle.cli import UserError
from brittle.models import classify_param, find_layer_list, layer_prefix_pattern

_MLP_CHILD_NAMES = ("mlp", "feed_forward", "ffn")


def blocks_of(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """``(path, blocks)`` of a (possibly peft-wrapped) causal LM."""
    return find_layer_list(model)


def _hidden(out):
    return out[0] if isinstance(out, tuple) else out


def _replace_hidden(out, new):
    return (new, *out[1:]) if isinstance(out, tuple) else new


@contextmanager
def capture_block_outputs(model: nn.Module, layers: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Record the residual stream after each block in ``layers`` during forward passes.

    Yields a dict ``{layer: (B, T, D) tensor}`` refreshed on every forward; the tensors keep
    their autograd graph (use under ``torch.no_grad()`` for frozen activations)."""
    _, blocks = blocks_of(model)
    store: dict[int, torch.Tensor] = {}
    handles = []
    try:
        for i in layers:
            if not 0 <= i < len(blocks):
                raise UserError(f"layer {i} out of range: the model has {len(blocks)} blocks")
            handles.append(blocks[i].register_forward_hook(
                lambda _m, _a, out, i=i: store.__setitem__(i, _hidden(out))))
        yield store
    finally:
        for h in handles:
            h.remove()


@contextmanager
def perturb_output(module: nn.Module, perturb: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace ``module``'s (first) output h by ``perturb(h)`` during forward passes."""
    handle = module.register_forward_hook(lambda _m, _a, out: _replace_hidden(out, perturb(_hidden(out))))
    try:
        yield
    finally:
        handle.remove()


def _io_features(mod: nn.Module) -> tuple[int, int] | None:
    weight = getattr(mod, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        return None
    if type(mod).__name__ == "Conv1D":  # GPT-2 stores (in, out)
        return weight.shape[0], weight.shape[1]
    return weight.shape[1], weight.shape[0]


def mlp_output_linears(model: nn.Module) -> list[tuple[int, str, nn.Module]]:
    """``[(layer, qualified_name, module)]`` for each block's MLP output projection: the
    linear-like module under the MLP that maps the intermediate width back to the hidden size
    (GPT-NeoX ``dense_4h_to_h``, Llama ``down_proj``, GPT-2 ``c_proj`` of the MLP).

    Raises :class:`UserError` unless every block has exactly one."""
    path, blocks = blocks_of(model)
    hidden = model.config.hidden_size
    pattern = layer_prefix_pattern(path)
    found = []
    for i, block in enumerate(blocks):
        here = []
        for sub, mod in block.named_modules():
            io = _io_features(mod)
            if io is None or not sub or "lora_" in sub or "base_layer" in sub:
                continue
            if classify_param(f"{path}.{i}.{sub}.weight", pattern)[1] != "mlp":
                continue
            if io[1] == hidden and io[0] != hidden:
                here.append((i, f"{path}.{i}.{sub}", mod))
        if len(here) != 1:
            raise UserError(f"block {i}: expected one MLP output projection, found {[n for _, n, _ in here]}")
        found.extend(here)
    return found


def mlp_module(model: nn.Module, layer: int) -> nn.Module:
    """The MLP sub-module of block ``layer`` (child named mlp / feed_forward / ffn)."""
    _, blocks = blocks_of(model)
    for name in _MLP_CHILD_NAMES:
        if hasattr(blocks[layer], name):
            return getattr(blocks[layer], name)
    raise UserError(f"block {layer} has no MLP child named one of {_MLP_CHILD_NAMES}")


def linear_module_names(model: nn.Module, layers: Sequence[int]) -> list[str]:
    """Qualified names of every linear-like module (2-D weight) inside the given blocks: the
    LoRA targets of circuit breakers (all attention and MLP projections, as in the reference)."""
    path, blocks = blocks_of(model)
    names = []
    for i in layers:
        for sub, mod in blocks[i].named_modules():
            if sub and (isinstance(mod, nn.Linear) or type(mod).__name__ == "Conv1D"):
                names.append(f"{path}.{i}.{sub}")
    if not names:
        raise UserError(f"no linear modules found in blocks {list(layers)}")
    return names


def embedding_module(model: nn.Module) -> nn.Module:
    """The input token embedding (``get_input_embeddings``)."""
    return model.get_input_embeddings()
