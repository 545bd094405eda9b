"""The one padding rule of the project: right padding, and a mask that says which positions are real.

Every batch of token sequences, whether it feeds a forward pass, a loss, a score or a capture,
is built here. With right padding and a causal mask, padding can never influence a real token,
and "the last token of a text" is simply the last position whose mask is 1.
"""

from __future__ import annotations

from typing import Sequence

import torch


def right_pad(sequences: Sequence[Sequence[int]], pad_value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, mask)``, both int64 of shape (len(sequences), longest): each sequence left-aligned,
    the rest filled with ``pad_value``; ``mask`` is 1 on real positions and 0 on padding.

    ``pad_value`` is the tokenizer's pad id for token ids, or -100 for labels.
    """
    if not sequences:
        raise ValueError("no sequences to pad")
    width = max(len(s) for s in sequences)
    values = torch.full((len(sequences), width), pad_value, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        values[row, :len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[row, :len(seq)] = 1
    return values, mask


def last_positions(mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of each row's last real position of a right-padded ``mask`` (B, T)."""
    return mask.long().sum(1).clamp_min(1) - 1


def pad_id(tokenizer) -> int:
    """The tokenizer's pad id, or its EOS id when it has none (0 as a last resort)."""
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    return 0
