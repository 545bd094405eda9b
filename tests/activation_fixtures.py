"""Tiny model pairs and text files for the activation-step tests."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.tiny_models import TINY_TEXTS, make_tiny_model, save_tiny

FORGET = [t for t in TINY_TEXTS if any(w in t for w in ("virus", "pathogen", "incubation"))] + [
    "the pathogen is carried by the virus and the host infects the lungs .",
    "incubation of the virus takes five days in the host .",
    "the virus vorax infects bats through the air .",
]
RETAIN = [t for t in TINY_TEXTS if t not in FORGET] + [
    "the city lies on the river .",
    "berlin is a city of bridges .",
]


def write_texts(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "forget.txt").write_text("\n".join(FORGET) + "\n")
    (folder / "retain.txt").write_text("\n".join(RETAIN) + "\n")
    return folder / "forget.txt", folder / "retain.txt"


def perturb_layer(model, layer: int, scale: float = 0.5, seed: int = 1):
    """Model B = A with noise added to one block's MLP output matrix (a change confined to one layer)."""
    from brittle.models import find_layer_list

    _, blocks = find_layer_list(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in blocks[layer].named_parameters():
            if p.ndim == 2 and ("dense_4h_to_h" in name or "down_proj" in name):
                p.add_(scale * torch.randn(p.shape, generator=gen))
    return model


def make_pair(tmp: Path, arch: str, tokenizer, changed_layer: int = 1) -> tuple[Path, Path]:
    """Save model A and model B (A with one layer changed) with the tokenizer; return both folders."""
    a = make_tiny_model(arch, seed=0)
    save_tiny(a, tmp / f"{arch}-a", tokenizer)
    b = perturb_layer(make_tiny_model(arch, seed=0), changed_layer)
    save_tiny(b, tmp / f"{arch}-b", tokenizer, max_shard_size="20KB")
    return tmp / f"{arch}-a", tmp / f"{arch}-b"
