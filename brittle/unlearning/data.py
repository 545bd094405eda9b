"""Forget / retain data for unlearning: loading, prompt/answer pairs, tokenised batches.

Two forms of forget data:

* **texts** (``forget.txt``, one document per line): every token is a target.
* **pairs** (``forget_qa.jsonl``, ``{"prompt", "answer"}`` per line): only the answer tokens are
  targets (the prompt is context), as in TOFU. A preset without QA pairs gets them from its texts
  by :func:`split_text`: the first half of the words is the prompt, the rest the answer.

IdkDPO's preferred answers come from ``idk.txt`` ("I don't know"-style refusals).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from brittle.errors import UserError
from brittle.io import read_jsonl
from brittle.padding import pad_id, right_pad
from brittle.unlearning.losses import IGNORE

# Used only when a data folder has no idk.txt; the TOFU file holds 100 answers of this kind.
DEFAULT_IDK = [
    "I don't know.",
    "I'm not sure.",
    "I have no idea.",
    "I cannot answer that.",
    "That is not something I know.",
]


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """``(prompt, answer)`` pairs from a JSONL file with ``prompt`` and ``answer`` fields."""
    pairs = []
    for n, row in enumerate(read_jsonl(path, what="forget prompt/answer pairs"), 1):
        if not isinstance(row, dict) or "prompt" not in row or "answer" not in row:
            raise UserError(f"{path}:{n}: expected a JSON object with 'prompt' and 'answer'")
        pairs.append((str(row["prompt"]), str(row["answer"])))
    return pairs


def split_text(text: str) -> tuple[str, str]:
    """A plain forget text as a (prompt, answer) pair: first half of the words, then the rest."""
    words = text.split()
    if len(words) < 2:
        return "", text
    k = len(words) // 2
    return " ".join(words[:k]), " ".join(words[k:])


@dataclass
class Batch:
    """Token ids (B, T) int64, attention mask (B, T) int64, labels (B, T) int64 (-100 = ignored)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def to(self, device) -> "Batch":
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))

    @property
    def inputs(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}


def encode_texts(tokenizer, texts: Sequence[str], max_length: int) -> Batch:
    """Right-padded batch of whole texts; every real token is a target."""
    ids, mask = right_pad(tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"], pad_id(tokenizer))
    return Batch(ids, mask, ids.masked_fill(mask == 0, IGNORE))


def encode_pairs(tokenizer, prompts: Sequence[str], answers: Sequence[str], max_length: int) -> Batch:
    """Right-padded batch of prompt + answer; only answer tokens are targets.

    The prompt is tokenised with the tokenizer's special tokens (e.g. BOS), the answer without,
    after a separating space. The answer is truncated to fit ``max_length``; a prompt that alone
    fills it keeps its last ``max_length - 1`` tokens so at least one answer token remains."""
    rows = []
    for prompt, answer in zip(prompts, answers):
        p = tokenizer(prompt)["input_ids"] if prompt else []
        a = tokenizer((" " + answer) if prompt else answer, add_special_tokens=False)["input_ids"]
        if not a:
            raise UserError(f"empty answer after tokenisation: {answer!r}")
        p = p[-(max_length - 1):] if len(p) >= max_length else p
        a = a[: max_length - len(p)]
        rows.append((p, a))
    ids, mask = right_pad([p + a for p, a in rows], pad_id(tokenizer))
    labels, _ = right_pad([[IGNORE] * len(p) + a for p, a in rows], IGNORE)
    return Batch(ids, mask, labels)


def batch_indices(n: int, batch_size: int, generator: torch.Generator, rank: int = 0,
                  world: int = 1) -> Iterator[list[int]]:
    """Endless batches of indices into a list of length ``n``: seeded shuffled epochs.

    With several processes the global batch (``batch_size * world``) is drawn once and each rank
    takes its own slice, so the data seen does not depend on how many GPUs ran it. Lists shorter
    than a batch repeat items."""
    order: list[int] = []
    while True:
        while len(order) < batch_size * world:
            order += torch.randperm(n, generator=generator).tolist()
        chunk, order = order[: batch_size * world], order[batch_size * world:]
        yield chunk[rank * batch_size:(rank + 1) * batch_size]
