"""Device, dtype and seed resolution, and secrets from ``.env``."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda if available, else mps, else cpu; anything else is passed to torch."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def resolve_dtype(name: str = "auto", device: torch.device | str = "cpu") -> torch.dtype:
    """``auto`` -> bfloat16 on a GPU that supports it, float32 otherwise (CPU bf16 matmuls are slow
    and lossy for statistics); otherwise one of float32/bfloat16/float16 (or fp32/bf16/fp16)."""
    if name == "auto":
        dev = torch.device(device)
        if dev.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; choose from auto, {', '.join(sorted(_DTYPES))}") from None


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_env() -> None:
    """Read ``.env`` (HF_TOKEN, WANDB_API_KEY) into the environment without overriding what is set.

    Nothing here prints or logs the values.
    """
    try:
        from dotenv import load_dotenv
    except ImportError:  # pragma: no cover - dependency is declared
        return
    load_dotenv(override=False)


def hf_token() -> str | None:
    """The HuggingFace token from the environment (after ``load_env``), or None."""
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None
