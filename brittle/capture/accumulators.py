"""Streaming reductions of hidden states during a capture pass: nothing per token is kept.

:class:`ModelAccumulator` reduces one model's states on one split to per-text norm sums, each
text's last-token state, and per-group moments; :class:`PairAccumulator` reduces the difference
of two models' states on the same batch; :class:`ProjectedEnergy` reduces module inputs too wide
for moments to their energy on given subspaces. Padding is masked out of everything (right
padding: only positions with mask 1 count), and a non-finite state is an error, never a statistic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from brittle.errors import require_finite
from brittle.moment_layers import mlp_slots_with_moments
from brittle.moments import StreamingMoments, pack_symmetric
from brittle.padding import last_positions


class ModelAccumulator:
    """Per-text sums (‖h‖₁, ‖h‖₂ over tokens), last-token states and group moments of one model
    on one split. ``n_states`` hidden states of width ``dim``; ``n_mlp`` MLP inputs of width
    ``mlp_dim`` (of the blocks ``mlp_blocks``); group moment files are written to ``folder`` as
    groups complete; ``label`` names the model and split in error messages.

    Moments are kept only at the hidden states ``moment_layers`` (default all) and at the MLP
    inputs of the blocks that read them (``brittle.moment_layers``): their float64 sums are the
    memory of the pass, (d·8 + d²·8) bytes per kept hidden state or MLP input, on the model's
    device. Norms and last-token states are kept at every hidden state."""

    def __init__(self, n_texts: int, n_states: int, dim: int, n_mlp: int, mlp_dim: int, folder: Path, label: str,
                 mlp_blocks: list[int] | None = None, moment_layers: list[int] | None = None):
        self.folder, self.n_states, self.dim, self.n_mlp, self.mlp_dim = folder, n_states, dim, n_mlp, mlp_dim
        self.label = label
        self.mlp_blocks = mlp_blocks if mlp_blocks is not None else list(range(n_mlp))
        self.moment_layers = list(range(n_states)) if moment_layers is None else sorted(moment_layers)
        self.mlp_moment_slots = mlp_slots_with_moments(self.moment_layers, self.mlp_blocks)
        self.n_tokens = torch.zeros(n_texts, dtype=torch.int64)
        self.l1 = torch.zeros(n_texts, n_states, dtype=torch.float64)
        self.l2 = torch.zeros(n_texts, n_states, dtype=torch.float64)
        self.last = torch.zeros(n_texts, n_states, dim, dtype=torch.float32)
        self.groups_written = 0
        self._new_group()

    def _new_group(self):
        self.hidden = {i: StreamingMoments(self.dim) for i in self.moment_layers}
        self.mlp = {slot: StreamingMoments(self.mlp_dim) for slot in self.mlp_moment_slots}

    def start_batch(self, idx: torch.Tensor, mask: torch.Tensor):
        self.idx, self.mask = idx, mask.bool()
        self.n_tokens[idx] = self.mask.sum(1).cpu()
        self.last_pos = last_positions(mask)
        self._masks: dict[torch.device, tuple] = {}

    def _mask_on(self, device):
        if device not in self._masks:
            self._masks[device] = (self.mask.to(device), self.last_pos.to(device))
        return self._masks[device]

    def hidden_state(self, index: int, h: torch.Tensor):
        mask, last = self._mask_on(h.device)
        hf = h.float()
        real = hf[mask]                                   # (real tokens, d): padding never counts
        require_finite(real, f"hidden state {index} of {self.label}",
                       "the model overflows on these texts (try --dtype float32) or its weights are broken")
        self.l1[self.idx, index] = (hf.abs().sum(-1) * mask).sum(1).double().cpu()
        self.l2[self.idx, index] = (hf.norm(dim=-1) * mask).sum(1).double().cpu()
        self.last[self.idx, index] = hf[torch.arange(hf.shape[0], device=hf.device), last].cpu()
        if index in self.hidden:
            self.hidden[index].update(real)

    def mlp_input(self, slot: int, x: torch.Tensor):
        if slot not in self.mlp:
            return                                        # a block without moments: nothing kept
        mask, _ = self._mask_on(x.device)
        xf = x.float()[mask]
        require_finite(xf, f"the MLP input of block {self.mlp_blocks[slot]} of {self.label}",
                       "the model overflows on these texts (try --dtype float32) or its weights are broken")
        self.mlp[slot].update(xf)

    def end_group(self):
        """Write ``moments_g<k>.pt``: per kind ("hidden", "mlp") the kept ``index`` list (hidden
        states, or MLP slots), the group's token ``count``, ``sum`` (K, width) float64 and ``sq``
        (K, width(width+1)/2) float32, each Σxxᵀ packed as its upper triangle
        (``brittle.moments.pack_symmetric``: lossless, half the disk)."""
        def pack(moments: dict[int, StreamingMoments], dim: int) -> dict:
            index = sorted(moments)
            count = moments[index[0]].count if index else 0
            if count == 0:
                return {"index": index, "count": 0, "sum": torch.zeros(len(index), dim, dtype=torch.float64),
                        "sq": torch.zeros(len(index), dim * (dim + 1) // 2)}
            # Sums accumulate in float64 and are stored in float32: half the disk, and the
            # bootstrap resamples whole groups, so their float32 rounding does not accumulate.
            return {"index": index, "count": count, "sum": torch.stack([moments[i].sum.cpu() for i in index]),
                    "sq": torch.stack([pack_symmetric(moments[i].sq).cpu().float() for i in index])}
        torch.save({"hidden": pack(self.hidden, self.dim), "mlp": pack(self.mlp, self.mlp_dim)},
                   self.folder / f"moments_g{self.groups_written}.pt")
        self.groups_written += 1
        self._new_group()

    def save(self):
        torch.save({"n_tokens": self.n_tokens, "norm_l1": self.l1, "norm_l2": self.l2, "last_token": self.last},
                   self.folder / "per_text.pt")


class PairAccumulator:
    """Per-text sums of ‖h_b − h_a‖₁ and ‖h_b − h_a‖₂ and, when ``folder`` is given, per-group
    cross-moments Σ h_a h_bᵀ (K, d, d) at the hidden states ``moment_layers`` (default all): model
    A's states of the current batch are held until model B has produced the same hidden state.

    The cross-moment is what linear CKA needs beyond each model's own moments (it pairs the two
    models token by token, which no per-model statistic can); it is d × d, never the MLP width,
    and not symmetric, so it is stored whole."""

    def __init__(self, n_texts: int, n_states: int, dim: int | None = None, folder: Path | None = None,
                 moment_layers: list[int] | None = None):
        self.n_tokens = torch.zeros(n_texts, dtype=torch.int64)
        self.l1 = torch.zeros(n_texts, n_states, dtype=torch.float64)
        self.l2 = torch.zeros(n_texts, n_states, dtype=torch.float64)
        self.stash: dict[int, torch.Tensor] = {}
        self.folder, self.dim, self.n_states = folder, dim, n_states
        self.moment_layers = list(range(n_states)) if moment_layers is None else sorted(moment_layers)
        self.groups_written = 0
        self._new_group()

    def _new_group(self):
        self.group_count = 0
        self.cross: dict[int, torch.Tensor | None] = {i: None for i in self.moment_layers}

    def start_batch(self, idx, mask):
        self.idx, self.mask = idx, mask.bool()
        self.n_tokens[idx] = self.mask.sum(1)
        self.group_count += int(self.mask.sum())
        self.stash.clear()

    def from_a(self, index, h):
        self.stash[index] = h.detach()

    def from_b(self, index, h):
        a = self.stash.pop(index).to(h.device).float()
        diff = h.float() - a
        mask = self.mask.to(h.device)
        require_finite(diff[mask.bool()], f"difference of the two models' hidden state {index}")
        self.l1[self.idx, index] = (diff.abs().sum(-1) * mask).sum(1).double().cpu()
        self.l2[self.idx, index] = (diff.norm(dim=-1) * mask).sum(1).double().cpu()
        if self.folder is not None and index in self.cross:
            # float64 sums, as for the per-model second moments (brittle.moments.StreamingMoments).
            xa, xb = a[mask.bool()].double(), h.float()[mask.bool()].double()
            if self.cross[index] is None:
                self.cross[index] = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=h.device)
            self.cross[index] += xa.T @ xb

    def end_group(self):
        """Write ``cross_g<k>.pt``: the kept hidden states ``index``, the group's token count and
        Σ h_a h_bᵀ (K, d, d), stored in float32 like the per-model second moments
        (``pair_entry_bytes`` counts them)."""
        if self.folder is None:
            return
        index = sorted(self.cross)
        cross = torch.stack([self.cross[i].cpu().float() if self.cross[i] is not None
                             else torch.zeros(self.dim, self.dim) for i in index])
        torch.save({"index": index, "count": self.group_count, "cross": cross},
                   self.folder / f"cross_g{self.groups_written}.pt")
        self.groups_written += 1
        self._new_group()


class ProjectedEnergy:
    """Per text group, each hooked module input's energy on a subspace and in all: Σ‖Vⱼᵀx‖² and
    Σ‖x‖² over the real tokens x (width n) of module j, for one orthonormal basis Vⱼ (n, k) per module.

    These are tr(VᵀMV) and tr(M) of :func:`brittle.metrics.distributions.subspace_energy` without
    M = Σxxᵀ itself: for an input too wide for second moments (an MLP output projection reads
    d_ff = 16384 at the 6.9B layout, 1 GB per M) memory stays n·k per module. Per-token squares are
    summed in float32 on the model's device, the sums over tokens in float64.
    """

    def __init__(self, bases: list[torch.Tensor], label: str, names: list[str] | None = None):
        self.bases = [b.float() for b in bases]
        self.label, self.names = label, names or [f"module {j}" for j in range(len(bases))]
        self.inside: list[torch.Tensor] = []      # one (M,) float64 per finished group
        self.total: list[torch.Tensor] = []
        self._new_group()

    def _new_group(self):
        self._inside = torch.zeros(len(self.bases), dtype=torch.float64)
        self._total = torch.zeros(len(self.bases), dtype=torch.float64)

    def start_batch(self, mask: torch.Tensor):
        self.mask = mask.bool()
        self._masks: dict[torch.device, torch.Tensor] = {}

    def module_input(self, j: int, x: torch.Tensor):
        if x.device not in self._masks:
            self._masks[x.device] = self.mask.to(x.device)
        mask = self._masks[x.device]
        if self.bases[j].device != x.device:      # moved once: with --device-map the blocks sit on several GPUs
            self.bases[j] = self.bases[j].to(x.device)
        xf = x.float()
        total = xf.square().sum(-1)[mask]                         # (real tokens,): padding never counts
        require_finite(total, f"the input of {self.names[j]} of {self.label}",
                       "the model overflows on these texts (try --dtype float32) or its weights are broken")
        inside = (xf @ self.bases[j]).square().sum(-1)[mask]
        self._inside[j] += inside.double().sum().cpu()
        self._total[j] += total.double().sum().cpu()

    def end_group(self):
        self.inside.append(self._inside)
        self.total.append(self._total)
        self._new_group()

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(inside, total)``, each (groups, modules) float64."""
        return torch.stack(self.inside).numpy(), torch.stack(self.total).numpy()
