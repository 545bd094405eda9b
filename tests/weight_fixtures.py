"""Planted model pairs for the weight-space tests: B = A with known changes in named tensors.

``planted_pair`` saves a tiny GPT-NeoX A (sharded and unsharded) and several B's next to it:
    b_planted    rank-1 change in layer 1's dense_h_to_4h, full-rank change in layer 2's attention
                 output; every other tensor bit-identical to A
    b_same       A again (identical weights)
    b_unrelated  an independently initialised model of the same architecture
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from tests.tiny_models import make_tiny_model, save_tiny

RANK1 = "gpt_neox.layers.1.mlp.dense_h_to_4h.weight"
FULL = "gpt_neox.layers.2.attention.dense.weight"
# 4 KB shards split the tiny model (~60 KB) into many files; tensors do not straddle files.
SHARD = "4KB"
# Planted sizes, small against the ~0.02 init scale so that B stays a modification of A.
RANK1_SCALE = 0.005
FULL_SCALE = 0.01


@dataclass
class Pair:
    a: Path            # A, sharded
    a_single: Path     # A, one file
    b_planted: Path
    b_same: Path
    b_unrelated: Path
    rank1_u: np.ndarray
    rank1_v: np.ndarray
    full_delta: np.ndarray


def make_planted_pair(root: Path, seed: int = 0) -> Pair:
    root = Path(root)
    a = make_tiny_model("gpt_neox", seed=seed)
    save_tiny(a, root / "a", max_shard_size=SHARD)
    save_tiny(a, root / "a_single")
    save_tiny(a, root / "b_same")
    gen = torch.Generator().manual_seed(seed + 100)
    params = dict(a.named_parameters())
    m, n = params[RANK1].shape
    u, v = torch.randn(m, 1, generator=gen), torch.randn(1, n, generator=gen)
    full = FULL_SCALE * torch.randn(params[FULL].shape, generator=gen)
    with torch.no_grad():
        params[RANK1] += RANK1_SCALE * u @ v
        params[FULL] += full
    save_tiny(a, root / "b_planted", max_shard_size=SHARD)
    save_tiny(make_tiny_model("gpt_neox", seed=seed + 1), root / "b_unrelated")
    return Pair(root / "a", root / "a_single", root / "b_planted", root / "b_same", root / "b_unrelated",
                u.numpy(), v.numpy(), full.numpy())


def state_dict(folder: Path) -> dict[str, np.ndarray]:
    """Every tensor of a saved checkpoint as float64 numpy (the independent reference)."""
    out = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        out.update({k: t.double().numpy() for k, t in load_file(f).items()})
    return out


_CACHE: dict[Path, Pair] = {}


def shared_planted_pair(tmp_path_factory) -> Pair:
    """One planted pair per test session (building it costs seconds), shared by every module."""
    root = Path(tmp_path_factory.getbasetemp()) / "planted_pair"
    if root not in _CACHE:
        _CACHE[root] = make_planted_pair(root)
    return _CACHE[root]
