"""Device, dtype and seed resolution, and secrets from ``.env``."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from brittle.errors import UserError

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda if available, else mps, else cpu; anything else must name a device this
    machine has (scripts check it at parse time with ``brittle.cli.device_arg``)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    from brittle.cli import device_arg

    try:
        return torch.device(device_arg(str(name)))
    except Exception as exc:  # argparse.ArgumentTypeError or torch's RuntimeError
        raise UserError(str(exc)) from None


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
        raise UserError(f"unknown dtype {name!r}; choose from auto, {', '.join(sorted(_DTYPES))}") from None


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
