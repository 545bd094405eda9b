"""Plain causal-LM fine-tuning on a list of texts: the loop behind the relearning attacks.

Float32 master weights: the model is trained in float32 and, on a GPU, run under ``torch.autocast``
in bf16/fp16 when asked. Storing the weights in 16 bits would round updates smaller than the
format's resolution to zero (DESIGN.md §5), so a short attack would partly measure rounding.

Batches are drawn from the texts by epochs of a seeded permutation (without replacement inside an
epoch, reshuffled each epoch), so two runs with one seed see the same batches in the same order.
The loss is the mean next-token negative log-likelihood over the non-padding target tokens of the
batch (padding is masked from the labels through the attention mask).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from brittle.errors import UserError, require_finite
from brittle.padding import pad_id, right_pad


@dataclass(frozen=True)
class FinetuneConfig:
    """Optimiser and batching settings (AdamW, constant learning rate after a linear warm-up)."""

    lr: float
    batch_size: int
    max_length: int
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0  # max global gradient norm; None = no clipping
    warmup_steps: int = 0


def text_batches(tokenizer, texts: Sequence[str], batch_size: int, max_length: int,
                 seed: int) -> Iterator[dict[str, torch.Tensor]]:
    """Endless stream of padded batches: ``input_ids``, ``attention_mask`` (long, [B, T]) and
    ``labels`` (= input_ids with -100 on padding). Epochs of a seeded permutation of ``texts``."""
    if not texts:
        raise UserError("no training texts")
    gen = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(texts), generator=gen).tolist()
        # The incomplete tail of each epoch is dropped (a different tail every epoch), so every
        # batch has the same size; fewer texts than a batch give one batch of all of them.
        size = min(batch_size, len(order))
        for start in range(0, len(order) - size + 1, size):
            yield pad_batch(tokenizer, [texts[i] for i in order[start:start + size]], max_length)


def pad_texts(tokenizer, texts: Sequence[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One example per text (EOS appended, truncated to ``max_length``), right-padded.

    Returns ``(input_ids, attention_mask)``, both int64 ``[len(texts), longest]``.
    """
    ids = tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    eos = tokenizer.eos_token_id
    return right_pad([(s + [eos])[:max_length] for s in ids], pad_id(tokenizer))


def pad_batch(tokenizer, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask``, ``labels`` (int64 [B, T]) for a list of texts, tokenised
    as pretraining's fine-tuning mode does (EOS appended, truncated, right-padded); labels are -100
    on padding, so a pad id equal to EOS still leaves each text's real EOS in the loss."""
    input_ids, mask = pad_texts(tokenizer, texts, max_length)
    return {"input_ids": input_ids, "attention_mask": mask, "labels": input_ids.masked_fill(mask == 0, -100)}


def causal_lm_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token NLL (nats) over the target tokens whose label is not -100."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=-100)


def autocast_context(device: torch.device, dtype: torch.dtype):
    """bf16/fp16 autocast on an accelerator; nothing on CPU or for float32 (weights stay fp32)."""
    if dtype == torch.float32 or device.type == "cpu":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def finetune(model: nn.Module, batches: Iterator[dict[str, torch.Tensor]], steps: int, cfg: FinetuneConfig,
             device: torch.device, compute_dtype: torch.dtype = torch.float32,
             checkpoints: Sequence[int] = (), on_checkpoint: Callable[[int], None] | None = None,
             on_step: Callable[[dict], None] | None = None, progress: bool = True) -> list[dict]:
    """Train ``model`` (its trainable parameters, float32) for ``steps`` optimiser steps.

    ``on_checkpoint(step)`` is called with the model in eval mode *before* the first update when 0
    is in ``checkpoints`` and after update ``k`` for every ``k`` in ``checkpoints``. Returns one
    record per step: step (1-based), loss (float, nats/token), grad_norm (before clipping), lr.
    """
    from tqdm.auto import tqdm

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise UserError("the model has no trainable parameters")
    bad = sorted({str(p.dtype) for p in params if p.dtype != torch.float32})
    if bad:
        raise UserError(f"trainable parameters must be float32 master weights (found {', '.join(bad)})")
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: min(1.0, (k + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0)
    wanted = set(checkpoints)

    def checkpoint(step: int) -> None:
        if on_checkpoint is not None and step in wanted:
            model.eval()
            with torch.no_grad():
                on_checkpoint(step)

    checkpoint(0)
    log = []
    bar = tqdm(range(1, steps + 1), desc="fine-tune", disable=not progress, leave=False)
    for step in bar:
        model.train()
        batch = {k: v.to(device) for k, v in next(batches).items()}
        with autocast_context(device, compute_dtype):
            loss = causal_lm_loss(model, batch)
        require_finite(loss.detach(), f"the fine-tuning loss at step {step}", "lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = cfg.grad_clip if cfg.grad_clip is not None else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        schedule.step()
        record = {"step": step, "loss": float(loss.detach()), "grad_norm": grad_norm, "lr": lr}
        log.append(record)
        if on_step is not None:
            on_step(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}")
        checkpoint(step)
    model.eval()
    return log
