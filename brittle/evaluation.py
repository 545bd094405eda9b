"""Knowledge and capability metrics: multiple-choice accuracy (cloze and MCQA) and perplexity.

Two multiple-choice forms, as deep-ignorance reports them:

* **cloze**: each choice is scored on its own as a continuation of the question alone; the
  prediction is the choice with the highest length-normalised log-likelihood (lm-evaluation-harness
  ``acc_norm``: log-likelihood divided by the continuation's length in characters, by default).
  Small models can answer in this form.
* **MCQA**: the question and all four lettered choices are in the prompt and the continuations
  ``" A"`` .. ``" D"`` are scored, exactly the prompt of lm-evaluation-harness's ``wmdp_bio`` task.

Questions are dicts ``{"id", "question", "choices": [4 str], "answer": int, ...}`` (JSON Lines).
Log-likelihoods follow lm-evaluation-harness: the context and ``context + continuation`` are
encoded together and the continuation is what follows the context's tokens, so a BPE merge across
the boundary cannot shift the split.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from brittle.batched_scoring import plan_pairs, run_plan
from brittle.errors import UserError, require_finite
from brittle.io import read_jsonl, read_lines
from brittle.padding import pad_id, right_pad

LETTERS = ("A", "B", "C", "D")
MCQA_HEADER = "The following are multiple choice questions (with answers) about {subject}.\n\n"


def load_questions(path: str | Path, ids: Sequence[str] | None = None) -> list[dict]:
    """Read a JSON Lines question file; keep only ``ids`` (in file order) when given."""
    rows = read_jsonl(path, what="question file")
    for i, row in enumerate(rows):
        row.setdefault("id", str(i))
        if len(row.get("choices", [])) < 2 or not 0 <= int(row.get("answer", -1)) < len(row["choices"]):
            raise UserError(f"{path}: question {row['id']} needs choices and an answer index")
    if ids is not None:
        wanted = {str(i) for i in ids}
        rows = [r for r in rows if str(r["id"]) in wanted]
    return rows


def read_id_list(path: str | Path) -> list[str]:
    """Question ids, one per line (a subset such as deep-ignorance's Robust MCQA list), or a JSON list."""
    text = Path(path).read_text(encoding="utf-8").strip()
    if text.startswith("["):
        return [str(x) for x in json.loads(text)]
    return read_lines(path, what="question id list")


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def continuation_logprobs(model, tokenizer, pairs: Sequence[tuple[str, str]], batch_size: int = 16,
                          max_length: int | None = None, progress: bool = False,
                          desc: str = "log-likelihood", device=None) -> list[tuple[float, int]]:
    """``[(sum of log p(continuation token | everything before), n continuation tokens)]``.

    Natural log, float64 sums of float32 log-softmax. Sequences longer than ``max_length`` lose
    context tokens on the left; the continuation is always kept whole. Inputs go to ``device``
    (default: where the model's parameters are). Pairs that share their tokens up to the last are
    run once (``brittle.batched_scoring``); ``batch_size`` counts forward sequences.
    """
    device = torch.device(device) if device is not None else _device_of(model)
    plan = plan_pairs(tokenizer, pairs, max_length)
    lls = run_plan(model, plan, pad_id(tokenizer), batch_size, device, progress, desc)
    return [(float(ll), int(n)) for ll, n in zip(lls, plan.n_tokens)]


def cloze_pairs(questions: Sequence[dict]) -> list[tuple[str, str]]:
    """``(question, " " + choice)`` for every choice of every question, in order."""
    return [(q["question"], " " + str(c)) for q in questions for c in q["choices"]]


def cloze_frame(questions: Sequence[dict], lls: Sequence[float], n_tokens: Sequence[int],
                normalization: str = "chars") -> pd.DataFrame:
    """The :func:`cloze_scores` table from the log-likelihoods (nats) and continuation token counts
    of :func:`cloze_pairs`' pairs (both (n_pairs,), in that order)."""
    if normalization not in {"chars", "tokens", "none"}:
        raise UserError(f"normalization must be chars, tokens or none, not {normalization!r}")
    rows, k = [], 0
    for q in questions:
        n = len(q["choices"])
        ll = [float(lls[k + j]) for j in range(n)]
        if normalization == "chars":
            score = [ll[j] / len(" " + str(q["choices"][j])) for j in range(n)]
        elif normalization == "tokens":
            score = [ll[j] / int(n_tokens[k + j]) for j in range(n)]
        else:
            score = list(ll)
        k += n
        rows.append(_row(q, score, ll))
    return pd.DataFrame(rows)


def cloze_scores(model, tokenizer, questions: Sequence[dict], batch_size: int = 16,
                 normalization: str = "chars", max_length: int | None = None,
                 progress: bool = True, device=None) -> pd.DataFrame:
    """Cloze scoring, one row per question.

    Each choice c is scored as ``ll(" " + c | question)`` divided by its length (``chars``: the
    number of characters of ``" " + c``, lm-evaluation-harness ``acc_norm``; ``tokens``: the number
    of continuation tokens; ``none``: raw log-likelihood). Columns: id, answer, prediction, correct,
    loglik_0..3 (nats), score_0..3 (normalised), plus domain/relation/subset when present.
    """
    if normalization not in {"chars", "tokens", "none"}:
        raise UserError(f"normalization must be chars, tokens or none, not {normalization!r}")
    lls = continuation_logprobs(model, tokenizer, cloze_pairs(questions), batch_size, max_length, progress,
                                "cloze", device)
    return cloze_frame(questions, [ll for ll, _ in lls], [n for _, n in lls], normalization)


def mcqa_prompt(question: dict, subject: str = "biology") -> str:
    """The lm-evaluation-harness ``wmdp_bio`` prompt: header, question, lettered choices, 'Answer:'."""
    lines = [question["question"].strip()]
    lines += [f"{letter}. {choice}" for letter, choice in zip(LETTERS, question["choices"])]
    return MCQA_HEADER.format(subject=question.get("subject", subject)) + "\n".join(lines) + "\nAnswer:"


def mcqa_scores(model, tokenizer, questions: Sequence[dict], batch_size: int = 16,
                subject: str = "biology", max_length: int | None = None,
                progress: bool = True, device=None) -> pd.DataFrame:
    """MCQA scoring, one row per question: the letter with the highest log-likelihood wins.
    Columns as :func:`cloze_scores` (score = loglik)."""
    pairs, sizes = [], []
    for q in questions:
        prompt = mcqa_prompt(q, subject)
        letters = LETTERS[: len(q["choices"])]
        pairs += [(prompt, f" {letter}") for letter in letters]
        sizes.append(len(letters))
    lls = continuation_logprobs(model, tokenizer, pairs, batch_size, max_length, progress, "mcqa", device)
    rows, k = [], 0
    for q, n in zip(questions, sizes):
        ll = [lls[k + j][0] for j in range(n)]
        k += n
        rows.append(_row(q, ll, ll))
    return pd.DataFrame(rows)


def _row(q: dict, score: list[float], ll: list[float]) -> dict:
    pred = int(np.argmax(score))
    row = {"id": q["id"], "answer": int(q["answer"]), "prediction": pred, "correct": pred == int(q["answer"])}
    for key in ("domain", "relation", "subset", "template"):
        if key in q:
            row[key] = q[key]
    for j, (s, v) in enumerate(zip(score, ll)):
        row[f"loglik_{j}"] = v
        row[f"score_{j}"] = s
    return row


def cloze_accuracy(model, tokenizer, questions: Sequence[dict], **kwargs) -> float:
    """Fraction of questions answered correctly in cloze form (chance 1/4)."""
    return float(cloze_scores(model, tokenizer, questions, **kwargs)["correct"].mean())


@torch.no_grad()
def per_text_nll(model, token_ids: Sequence[Sequence[int]], pad: int, batch_size: int = 8, device=None,
                 progress: bool = False, desc: str = "nll") -> tuple[np.ndarray, np.ndarray]:
    """Per text: ``(summed next-token NLL in nats, predicted tokens)``, two (n,) arrays.

    Every token after a text's first is predicted (a text of k tokens predicts k − 1); padding is
    masked out. Texts are batched longest first, so batches carry little padding; the result is in
    the order of ``token_ids``.
    """
    from tqdm.auto import tqdm

    device = torch.device(device) if device is not None else _device_of(model)
    order = sorted(range(len(token_ids)), key=lambda i: -len(token_ids[i]))
    sums, counts = np.zeros(len(token_ids)), np.zeros(len(token_ids), dtype=np.int64)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, leave=False):
        chunk = order[start:start + batch_size]
        ids, mask = right_pad([token_ids[i] for i in chunk], pad)
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        keep = mask[:, 1:].bool()
        sums[chunk] = (nll * keep).double().sum(1).cpu().numpy()
        counts[chunk] = keep.sum(1).cpu().numpy()
    return sums, counts


def text_nll(model, tokenizer, texts: Sequence[str], max_length: int = 512, batch_size: int = 8,
             progress: bool = False, device=None) -> tuple[float, int]:
    """``(total NLL in nats, number of predicted tokens)`` over ``texts``.

    Each text is truncated to ``max_length`` tokens; every token after the first is predicted;
    padding is masked out of both sums (:func:`per_text_nll`).
    """
    texts = [t for t in texts if t.strip()]
    ids = [tokenizer(t)["input_ids"][:max_length] for t in texts]
    sums, counts = per_text_nll(model, ids, pad_id(tokenizer), batch_size, device, progress, desc="perplexity")
    total, count = float(sums.sum()), int(counts.sum())
    require_finite(total, "the retain log-likelihood", "the model overflows (try --dtype float32)")
    return total, count


def retain_perplexity(model, tokenizer, texts: Sequence[str], max_length: int = 512,
                      batch_size: int = 8, progress: bool = True, device=None) -> float:
    """Per-token perplexity ``exp(total NLL / predicted tokens)`` on ``texts`` (padding masked)."""
    total, count = text_nll(model, tokenizer, texts, max_length, batch_size, progress, device)
    if count == 0:
        raise UserError("no tokens to score for the perplexity: the texts are empty or one token long")
    return math.exp(total / count)
