"""Device, dtype and seed resolution, and secrets from ``.env``.

torch is imported inside the functions that need it, so that command-line parsing (which checks
``--device`` and ``--dtype`` through :func:`check_device` and :data:`DTYPES`) stays instant.
"""

from __future__ import annotations

import os
import random

from brittle.errors import UserError

# --dtype spellings -> torch dtype names
DTYPES = {"auto": "auto", "float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}


def check_device(name: str) -> str:
    """``name`` if it is auto, cpu, cuda, cuda:N or mps and this machine has it; else a
    :class:`UserError` that says what to use instead. torch is imported only for cuda and mps."""
    kind, _, index = name.partition(":")
    if kind not in ("auto", "cpu", "cuda", "mps") or (index and (kind != "cuda" or not index.isdigit())):
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"{name}: no CUDA GPU is visible on this machine; use --device cpu "
                            "(or auto, which picks a GPU when there is one)")
        if index and int(index) >= torch.cuda.device_count():
            raise UserError(f"{name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if kind == "mps":
        import torch

        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserError(f"{name}: Apple MPS is not available here; use --device cpu")
    return name


def resolve_device(name: str = "auto"):
    """``auto`` -> cuda if available, else mps, else cpu; anything else is checked by
    :func:`check_device` and returned as a ``torch.device``."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(check_device(str(name)))


def resolve_dtype(name: str = "auto", device="cpu"):
    """``auto`` -> bfloat16 on a GPU that supports it, float32 otherwise (CPU bf16 matmuls are slow
    and lossy for statistics); otherwise one of :data:`DTYPES`."""
    import torch

    if name not in DTYPES:
        raise UserError(f"unknown dtype {name!r}; choose from {', '.join(DTYPES)}")
    if DTYPES[name] == "auto":
        dev = torch.device(device)
        if dev.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, DTYPES[name])


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    import numpy as np
    import torch

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
