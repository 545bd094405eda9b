"""The one hook vocabulary of the project: read or change the residual stream at a hidden-state
index, read an MLP's (or any module's) input, change a module's output.

**Numbering** (transformers' ``output_hidden_states``): with L blocks there are L + 1 hidden
states. Index 0 is the input of block 0 (the embeddings), index i (1 ≤ i ≤ L) the output of block
i − 1. transformers applies the model's final norm to the last entry; :func:`residual_hooks` does
the same when ``final_norm=True`` (every CSV and plot) and gives the last block's raw output when
``final_norm=False`` (training objectives defined on a block's output, as RMU's reference hooks
the block module itself). The two differ only at index L.

Hooks are registered on modules found by ``brittle.models`` (never by class name), hand tensors
to a callback with their autograd graph intact, and are always removed (``with`` blocks; a
registration that fails removes the ones already made).
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from brittle.errors import UserError
from brittle.models import decoder_module, find_layer_list, mlp_input_linears


def _hidden(out):
    """The hidden-state tensor of a block's or decoder's output (tuple, ModelOutput or tensor)."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state
    return out[0]


def _replace_hidden(out, new: torch.Tensor):
    if isinstance(out, torch.Tensor):
        return new
    return (new, *out[1:])


def n_hidden_states(model: nn.Module) -> int:
    """L + 1 for a model with L blocks."""
    return len(find_layer_list(model)[1]) + 1


def check_indices(model: nn.Module, indices: Sequence[int], what: str = "hidden state") -> None:
    """A :class:`UserError` unless every index names a hidden state of ``model`` (0..L)."""
    n = n_hidden_states(model)
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise UserError(f"{what} {','.join(map(str, bad))} out of range: the model has {n - 1} blocks, "
                        f"hidden states 0..{n - 1}")


class _Handles:
    """Hook handles removed together (a context manager)."""

    def __init__(self):
        self.handles = []

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def residual_hooks(model: nn.Module, indices: Sequence[int], sink: Callable[[int, torch.Tensor], None],
                   final_norm: bool = True) -> _Handles:
    """Call ``sink(index, tensor)`` with hidden state ``index`` (B, T, D) on every forward pass.

    Use as ``with residual_hooks(...):``. See the module docstring for the numbering and
    ``final_norm``."""
    check_indices(model, indices)
    _, blocks = find_layer_list(model)
    last = len(blocks)
    handles = _Handles()
    try:
        for i in sorted(set(indices)):
            if i == 0:
                handles.handles.append(blocks[0].register_forward_pre_hook(
                    lambda _m, args, kwargs: sink(0, args[0] if args else kwargs["hidden_states"]), with_kwargs=True))
            elif i == last and final_norm:
                handles.handles.append(decoder_module(model).register_forward_hook(
                    lambda _m, _a, out: sink(last, _hidden(out))))
            else:
                handles.handles.append(blocks[i - 1].register_forward_hook(
                    lambda _m, _a, out, i=i: sink(i, _hidden(out))))
    except BaseException:
        handles.close()
        raise
    return handles


@contextmanager
def record_residual(model: nn.Module, indices: Sequence[int], final_norm: bool = True) -> Iterator[dict[int, torch.Tensor]]:
    """Yield a dict ``{index: (B, T, D) tensor}`` refreshed on every forward pass; the tensors keep
    their autograd graph (use under ``torch.no_grad()`` for frozen activations)."""
    store: dict[int, torch.Tensor] = {}
    with residual_hooks(model, indices, store.__setitem__, final_norm):
        yield store


@contextmanager
def add_to_residual(model: nn.Module, deltas: dict[int, torch.Tensor]) -> Iterator[None]:
    """Add ``deltas[index]`` (broadcastable to (B, T, D)) to the residual stream at hidden state
    ``index`` (1..L: the raw output of block index − 1) during forward passes."""
    check_indices(model, list(deltas), "perturbed hidden state")
    if 0 in deltas:
        raise UserError("the residual stream can be perturbed at hidden states 1..L (block outputs), not 0")
    _, blocks = find_layer_list(model)
    with ExitStack() as stack:
        for index, delta in deltas.items():
            stack.enter_context(perturb_output(blocks[index - 1], lambda h, d=delta: h + d.to(h.dtype)))
        yield


@contextmanager
def perturb_output(module: nn.Module, perturb: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace ``module``'s (first) output h by ``perturb(h)`` during forward passes."""
    handle = module.register_forward_hook(lambda _m, _a, out: _replace_hidden(out, perturb(_hidden(out))))
    try:
        yield
    finally:
        handle.remove()


def mlp_slots(model: nn.Module) -> list[tuple[int, list[str], nn.Module]]:
    """One slot per block with MLP input linears: (block, all their qualified names, the first
    module; they all read the same tensor). Raises UserError when the model has none (a step
    must not silently analyse nothing)."""
    by_block: dict[int, list] = {}
    for block, name, mod in mlp_input_linears(model):
        by_block.setdefault(block, []).append((name, mod))
    if not by_block:
        raise UserError(f"no MLP input linears recognised in {type(model).__name__}")
    return [(b, [n for n, _ in by_block[b]], by_block[b][0][1]) for b in sorted(by_block)]


def input_hooks(modules: Sequence[nn.Module], sink: Callable[[int, torch.Tensor], None]) -> _Handles:
    """Call ``sink(j, tensor)`` with the (first) input of ``modules[j]`` on every forward pass (a
    forward pre-hook: the tensor the module reads, e.g. (B, T, d_ff) for an MLP output projection).
    Use as ``with input_hooks(...):``."""
    handles = _Handles()
    try:
        for j, mod in enumerate(modules):
            handles.handles.append(mod.register_forward_pre_hook(
                lambda _m, args, kwargs, j=j: sink(j, args[0] if args else next(iter(kwargs.values()))),
                with_kwargs=True))
    except BaseException:
        handles.close()
        raise
    return handles


def mlp_input_hooks(model: nn.Module, sink: Callable[[int, torch.Tensor], None]) -> _Handles:
    """Call ``sink(slot, tensor)`` with the input (B, T, d_in) of each block's MLP on every forward
    pass; ``slot`` indexes :func:`mlp_slots`. Use as ``with mlp_input_hooks(...):``."""
    return input_hooks([mod for _, _, mod in mlp_slots(model)], sink)


def hidden_states(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """All L + 1 hidden states of one batch through the hooks, without running the LM head:
    equal to ``output_hidden_states`` (the test's oracle)."""
    n = n_hidden_states(model)
    with record_residual(model, range(n)) as found, torch.no_grad():
        decoder_module(model)(input_ids=input_ids, attention_mask=attention_mask)
        return [found[i].detach() for i in range(n)]
