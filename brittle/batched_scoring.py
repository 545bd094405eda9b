"""Continuation log-likelihoods of many (context, continuation) pairs in few forward passes.

The log-probability of continuation token k depends only on the tokens before it, and a causal
model's logits at position t depend only on tokens 0..t. So a pair whose tokens are ``seq`` (context
then continuation, ``n`` continuation tokens) needs the logits at positions ``len(seq)-n-1 ..
len(seq)-2`` of *any* forward sequence that starts with ``seq[:-1]``. A plan therefore runs each
distinct ``seq[:-1]`` once, and only those that are not a prefix of another one:

* MCQA: the four letters of a question share one prompt, so its four pairs need one sequence
  (the prompt itself) instead of four;
* cloze: single-token choices of one question share one sequence, the question.

The scores are then gathered from the logits in one vectorised step per batch instead of one
log-softmax per pair. Batches use the project's one padding rule (``brittle.padding.right_pad``):
right padding cannot touch a real position under a causal mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from brittle.errors import UserError, require_finite
from brittle.padding import right_pad


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """``(context ids, continuation ids)``, split as lm-evaluation-harness splits them: the context
    and ``context + continuation`` are encoded and the continuation is what follows the context's
    tokens (a BPE merge across the boundary cannot shift the split); a trailing space of the
    context belongs to the continuation."""
    n_spaces = len(context) - len(context.rstrip(" "))
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer(context + continuation)["input_ids"]
    ctx = tokenizer(context)["input_ids"]
    return whole[: len(ctx)], whole[len(ctx):]


@dataclass(frozen=True)
class ScoringPlan:
    """What to run and what to read for ``n_pairs`` pairs.

    ``inputs``: the distinct forward sequences (token ids), longest first. Per scored token (M of
    them, sorted by input row): ``row`` (M,) its input sequence, ``position`` (M,) the position whose
    logits predict it, ``target`` (M,) its id, ``pair`` (M,) the pair it belongs to.
    ``n_tokens`` (n_pairs,): continuation tokens per pair.
    """

    inputs: list[list[int]]
    row: np.ndarray
    position: np.ndarray
    target: np.ndarray
    pair: np.ndarray
    n_tokens: np.ndarray

    @property
    def n_pairs(self) -> int:
        return len(self.n_tokens)


def plan_pairs(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int | None = None) -> ScoringPlan:
    """Tokenise ``pairs`` once and plan their forward passes (module docstring).

    Sequences longer than ``max_length`` lose context tokens on the left; the continuation is
    always kept whole.
    """
    seqs, n_cont = [], []
    for context, continuation in pairs:
        ctx, cont = encode_pair(tokenizer, context, continuation)
        if not cont:
            raise UserError(f"empty continuation for context {context[:60]!r}")
        seq = ctx + cont
        if max_length and len(seq) > max_length:
            seq = seq[-max_length:]
        seqs.append(seq)
        n_cont.append(len(cont))
    needed = [tuple(s[:-1]) for s in seqs]
    if any(len(s) == 0 for s in needed):
        # a lone continuation token has no position predicting it (lm-evaluation-harness prepends EOS)
        raise UserError("a pair has no context token before its continuation")
    # Drop every needed sequence that is a prefix of another: in sorted order the sequences that
    # start with s come right after s, so comparing each with its successor finds them all.
    distinct = sorted(set(needed))
    kept = [s for s, nxt in zip(distinct, distinct[1:] + [None]) if nxt is None or nxt[:len(s)] != s]
    kept.sort(key=len, reverse=True)   # longest first: little padding per batch
    # Each needed sequence is read from a kept one that starts with it: itself, or (walking the
    # sorted list backwards) its successor's host, since a dropped sequence prefixes its successor.
    kept_index = {s: i for i, s in enumerate(kept)}
    host: dict[tuple, int] = {}
    for i in range(len(distinct) - 1, -1, -1):
        s = distinct[i]
        host[s] = kept_index[s] if s in kept_index else host[distinct[i + 1]]
    rows, positions, targets, owners = [], [], [], []
    for p, (seq, n) in enumerate(zip(seqs, n_cont)):
        r = host[needed[p]]
        start = len(seq) - n - 1
        rows += [r] * n
        positions += range(start, start + n)
        targets += seq[len(seq) - n:]
        owners += [p] * n
    # sorted by input row, so each batch's scored tokens are one contiguous slice
    order = np.argsort(np.asarray(rows), kind="stable")
    row, position, target, pair = (np.asarray(v, dtype=np.int64)[order] for v in (rows, positions, targets, owners))
    return ScoringPlan([list(s) for s in kept], row, position, target, pair, np.asarray(n_cont, dtype=np.int64))


@torch.no_grad()
def run_plan(model, plan: ScoringPlan, pad: int, batch_size: int, device: torch.device,
             progress: bool = False, desc: str = "log-likelihood") -> np.ndarray:
    """Summed log-probabilities (n_pairs,) float64, natural log, of each pair's continuation.

    float32 log-softmax over the vocabulary at the scored positions only, summed in float64.
    ``batch_size``: forward sequences per pass.
    """
    from tqdm.auto import tqdm

    totals = torch.zeros(plan.n_pairs, dtype=torch.float64)
    bounds = np.searchsorted(plan.row, np.arange(0, len(plan.inputs) + batch_size, batch_size))
    for b, start in enumerate(tqdm(range(0, len(plan.inputs), batch_size), desc=desc, disable=not progress)):
        ids, mask = right_pad(plan.inputs[start:start + batch_size], pad)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        lo, hi = bounds[b], bounds[b + 1]
        rows = torch.as_tensor(plan.row[lo:hi] - start, device=logits.device)
        picked = logits[rows, torch.as_tensor(plan.position[lo:hi], device=logits.device)].float()
        logp = F.log_softmax(picked, dim=-1)
        values = logp.gather(-1, torch.as_tensor(plan.target[lo:hi], device=logp.device)[:, None])[:, 0]
        totals.index_add_(0, torch.as_tensor(plan.pair[lo:hi]), values.double().cpu())
    out = totals.numpy()
    require_finite(out, "a log-likelihood", "the model overflows (try --dtype float32)")
    return out
