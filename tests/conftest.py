"""Shared fixtures: tiny models and tokenizers built in-process (no Hub access)."""

import os

# Must be set before anything imports huggingface_hub: later it is ignored.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.pop("WANDB_API_KEY", None)
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.tiny_models import TINY_TEXTS  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from brittle.tokenizer import train_word_tokenizer

    return train_word_tokenizer(TINY_TEXTS)


@pytest.fixture
def shared_data():
    """The genuine offline dataset copies, or a skip where they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"offline data copies not present at {SHARED_DATA}")
    return SHARED_DATA


# Test models are tiny: one thread avoids thread-pool overhead that dominates their forward passes.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Every test starts seeded and single-threaded (a script run in-process, e.g. pretrain.py
    with --threads auto, may have changed the thread count)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
