"""From-scratch GPT-NeoX pretraining (the tiny world's base and filtered models).

:func:`train_causal_lm` trains on packed blocks of a corpus: AdamW on float32 master weights
(a bf16 update below bf16 resolution would round to zero), linear warm-up then cosine decay,
gradient clipping, and a seeded batch order, so one seed gives one result.
"""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd
import torch
from torch import nn

from brittle.errors import UserError, require_finite


def gpt_neox_config(vocab_size: int, hidden: int = 128, layers: int = 2, heads: int = 4,
                    intermediate: int | None = None, max_positions: int = 128,
                    bos_token_id: int | None = None, eos_token_id: int | None = None,
                    pad_token_id: int | None = None):
    """A GPT-NeoX config (the Pythia / deep-ignorance family) with untied embeddings."""
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, intermediate_size=intermediate or 4 * hidden,
                         max_position_embeddings=max_positions, tie_word_embeddings=False,
                         bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id)


def init_model(config, seed: int) -> nn.Module:
    """A randomly initialised causal LM; one seed gives bit-identical weights (base and filtered
    start from the same point when their configs match)."""
    from transformers import AutoModelForCausalLM

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = AutoModelForCausalLM.from_config(config)
    finally:
        torch.random.set_rng_state(state)
    return model


def pack_blocks(stream: list[int], seq_len: int) -> torch.Tensor:
    """Cut a token stream into int64 ``[n_blocks, seq_len]`` blocks; the incomplete tail is dropped."""
    n_blocks = len(stream) // seq_len
    if n_blocks == 0:
        raise UserError(f"the corpus has {len(stream)} tokens, fewer than one training block of {seq_len} "
                        "(--seq-len); give a longer corpus or a shorter --seq-len")
    return torch.tensor(stream[: n_blocks * seq_len], dtype=torch.long).view(n_blocks, seq_len)


def packed_batches(tokenizer, texts: Sequence[str], seq_len: int, batch_size: int, steps: int,
                    generator: torch.Generator):
    """Pretraining batches: every epoch the texts are put in a new seeded order and re-packed, so
    a block's neighbouring sentences differ between epochs (a fixed packing lets a small model
    memorise which sentence follows which instead of the facts themselves)."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    pending: list[torch.Tensor] = []
    for _ in range(steps):
        while len(pending) < batch_size:
            order = torch.randperm(len(ids), generator=generator).tolist()
            pending.extend(pack_blocks([t for i in order for t in (*ids[i], eos)], seq_len))
        batch, pending = torch.stack(pending[:batch_size]), pending[batch_size:]
        yield batch, torch.ones_like(batch)


def lr_at(step: int, steps: int, lr: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio * lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def train_causal_lm(model: nn.Module, tokenizer, texts: Sequence[str], steps: int, lr: float,
                    batch_size: int = 32, seed: int = 0, seq_len: int = 64,
                    warmup: int | None = None, min_lr_ratio: float = 0.1, weight_decay: float = 0.01,
                    grad_clip: float = 1.0, device: torch.device | str | None = None,
                    amp_dtype: torch.dtype | None = None, progress: bool = True,
                    desc: str = "train", log_every: int = 1) -> pd.DataFrame:
    """Train ``model`` in place with next-token cross-entropy on ``texts``.

    Texts are joined with EOS and cut into ``seq_len`` blocks, re-shuffled and re-packed every
    epoch. (Fine-tuning on one padded example per text, with checkpoints for evaluation, is
    :func:`brittle.finetuning.finetune`.)
    ``amp_dtype`` (e.g. torch.bfloat16 on a GPU) runs forward/backward under autocast while the
    weights and AdamW state stay in the model's own dtype (keep it float32).
    Returns a DataFrame with one row per logged step: step (1-based), loss (mean nats per
    predicted token), lr, tokens (predicted tokens so far).
    """
    from tqdm.auto import tqdm

    device = torch.device(device) if device is not None else next(model.parameters()).device
    warmup = max(1, steps // 20) if warmup is None else max(1, warmup)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(seed)
    batches = packed_batches(tokenizer, texts, seq_len, batch_size, steps, gen)
    model.train()
    rows, seen = [], 0
    bar = tqdm(batches, total=steps, desc=desc, disable=not progress)
    for step, (input_ids, attn) in enumerate(bar):
        current_lr = lr_at(step, steps, lr, warmup, min_lr_ratio)
        for group in opt.param_groups:
            group["lr"] = current_lr
        input_ids, attn = input_ids.to(device), attn.to(device)
        labels = input_ids.masked_fill(attn == 0, -100)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = model(input_ids=input_ids, attention_mask=attn, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        seen += int((labels[:, 1:] != -100).sum())
        value = float(loss.detach())
        require_finite(value, f"the training loss at step {step + 1}", "lower --lr")
        if (step + 1) % log_every == 0 or step + 1 == steps:
            rows.append({"step": step + 1, "loss": value, "lr": current_lr, "tokens": seen})
        bar.set_postfix(loss=f"{value:.3f}", refresh=False)
    model.eval()
    return pd.DataFrame(rows, columns=["step", "loss", "lr", "tokens"])


def auto_threads(requested: str | int = "auto") -> int:
    """Torch CPU threads for training: ``auto`` gives all cores on an idle machine and one thread
    when the load average says the cores are busy (measured on a shared 2-core CPU: with other
    jobs running, 2 spinning OpenMP threads were 4x slower per step than 1)."""
    import os

    if str(requested) != "auto":
        return max(1, int(requested))
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return cores
    return cores if load < 0.5 * cores else max(1, cores - int(round(load)))
