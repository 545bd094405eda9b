"""Forget / retain data for unlearning: loading, prompt/answer pairs, tokenised batches.

Two forms of forget data:

* **texts** (``forget.txt``, one document per line): every token is a target.
* **pairs** (``forget_qa.jsonl``, ``{"prompt", "answer"}`` per line): only the answer tokens are
  targets (the prompt is context), as in TOFU. A preset without QA pairs gets them from its texts
  by :func:`split_text`: the first half of the words is the prompt, the rest the answer.

IdkDPO's preferred answers come from ``idk.txt`` ("I don't know"-style refusals). Retain data is
texts, or (``retain_qa.jsonl``, TOFU) pairs too when the forget data is pairs.

How a pair is written for the model is its :data:`QA_FORMATS` entry: ``plain`` (prompt, a space,
answer) or ``llama3-tofu``, the chat tags open-unlearning trains and evaluates TOFU's Llama-3.2
checkpoints with (``configs/model/Llama-3.2-1B-Instruct.yaml``: its fixed system prompt, no
date header, the tokenizer's own BOS added in front as its code does, EOS appended to the answer).
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


@dataclass(frozen=True)
class QAFormat:
    """``template`` wraps the prompt ({prompt}); ``sep`` goes between prompt and answer;
    ``append_eos``: the tokenizer's EOS ends every answer (and is a target)."""

    template: str = "{prompt}"
    sep: str = " "
    append_eos: bool = False


_LLAMA3_SYSTEM = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                  "You are a helpful assistant.<|eot_id|>")
QA_FORMATS: dict[str, QAFormat] = {
    "plain": QAFormat(),
    "llama3-tofu": QAFormat(_LLAMA3_SYSTEM + "<|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|>"
                            "<|start_header_id|>assistant<|end_header_id|>\n\n", sep="", append_eos=True),
}


def qa_format(name: str) -> QAFormat:
    if name not in QA_FORMATS:
        raise UserError(f"unknown QA format {name!r}; choose from {', '.join(QA_FORMATS)}")
    return QA_FORMATS[name]


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


def encode_pairs(tokenizer, prompts: Sequence[str], answers: Sequence[str], max_length: int,
                 fmt: QAFormat = QAFormat()) -> Batch:
    """Right-padded batch of prompt + answer written in ``fmt``; only answer tokens are targets.

    The prompt is tokenised with the tokenizer's special tokens (e.g. BOS), the answer without,
    after ``fmt.sep``. The answer is truncated to fit ``max_length``; a prompt that alone fills it
    keeps its last ``max_length - 1`` tokens so at least one answer token remains."""
    rows = []
    for prompt, answer in zip(prompts, answers):
        p = tokenizer(fmt.template.format(prompt=prompt))["input_ids"] if prompt else []
        a = tokenizer((fmt.sep + answer) if prompt else answer, add_special_tokens=False)["input_ids"]
        if fmt.append_eos and (not a or a[-1] != tokenizer.eos_token_id):
            a = a + [tokenizer.eos_token_id]
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


TEXT_ONLY = {"rmu", "cb", "lat", "cb_lat"}


def forget_form(method: str, default: str, requested: str, have_pairs: bool) -> str:
    """What ``method`` trains on: ``requested`` (texts or pairs) where it applies, else its
    ``default``, with npo/simnpo falling back to whole texts when the data has no pairs."""
    if requested != "auto":
        if method == "dpo" and requested == "texts":
            raise UserError("dpo trains on prompt/answer pairs; --forget-format texts does not apply")
        if method in TEXT_ONLY and requested == "pairs":
            raise UserError(f"{method} trains on whole forget texts; --forget-format pairs does not apply")
        return requested
    if default == "pairs" and method != "dpo" and not have_pairs:
        return "texts"   # npo/simnpo without QA pairs: the whole text is y
    return default
