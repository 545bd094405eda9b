"""Per-prompt hidden states at every depth, for comparing models on identical inputs.

Prompts are tokenized once (:func:`build_inputs`) and the same token ids are fed to every model,
so a difference between two models' states is the models', never the tokenizers' (a chat template
that stamps today's date, or two checkpoints shipping different templates, would otherwise change
the inputs). Each prompt is reduced to one vector per layer: the last prompt token's state (the
one that predicts the answer's first token) or the mean over the answer's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from brittle.cli import UserError
from brittle.generation import encode_prompt, has_chat_template

POSITIONS = ("last", "answer_mean")


@dataclass
class Inputs:
    """Token ids per prompt and the half-open span ``[start, end)`` of positions to average."""

    ids: list[list[int]]
    spans: list[tuple[int, int]]


def build_inputs(tokenizer, questions: list[str], answers: list[str] | None = None,
                 template: str = "Answer briefly: {question}", chat_template: bool = True,
                 position: str = "last", max_length: int = 512) -> Inputs:
    """Tokenize ``template.format(question=q)`` (through the chat template when there is one).

    ``position="last"``: the span is the last prompt token. ``position="answer_mean"``: the answer
    text's tokens are appended to the prompt (no special tokens) and the span covers them, cut
    at ``max_length`` tokens in total.
    """
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
    if position == "answer_mean" and (answers is None or any(not a for a in answers)):
        raise UserError("--position answer_mean needs an answer text for every question")
    # After a chat template's assistant header the answer starts a fresh line; after a raw prompt it
    # continues the sentence, so it needs a separating space.
    sep = "" if chat_template and has_chat_template(tokenizer) else " "
    ids, spans = [], []
    for i, question in enumerate(questions):
        prompt = encode_prompt(tokenizer, template.format(question=question), chat_template)
        if len(prompt) > max_length:
            raise UserError(f"question {i} is {len(prompt)} tokens long, over --max-length {max_length}")
        if position == "last":
            ids.append(prompt)
            spans.append((len(prompt) - 1, len(prompt)))
            continue
        answer = tokenizer(sep + answers[i].strip(), add_special_tokens=False)["input_ids"]
        full = (prompt + answer)[:max_length]
        if len(full) == len(prompt):
            raise UserError(f"question {i} leaves no room for its answer within --max-length {max_length}")
        ids.append(full)
        spans.append((len(prompt), len(full)))
    return Inputs(ids, spans)


@torch.no_grad()
def capture(model, inputs: Inputs, pad_id: int, batch_size: int = 8, desc: str = "hidden states") -> torch.Tensor:
    """``(n_prompts, n_layers + 1, hidden)`` float32 on the CPU: the model's ``output_hidden_states``
    averaged over each prompt's span. Batches are right-padded; padding never enters the span and
    cannot affect real tokens under a causal mask."""
    vocab = model.get_input_embeddings().num_embeddings
    top = max(max(seq) for seq in inputs.ids)
    if top >= vocab:
        raise UserError(f"token id {top} is outside the model's vocabulary ({vocab}): "
                        "the tokenizer does not belong to this model")
    device = next(model.parameters()).device
    out = []
    for start in tqdm(range(0, len(inputs.ids), batch_size), desc=desc, leave=False):
        seqs = inputs.ids[start:start + batch_size]
        spans = inputs.spans[start:start + batch_size]
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            input_ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
        hidden = model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                       output_hidden_states=True).hidden_states       # (L+1) x (B, T, d)
        stacked = torch.stack(hidden, dim=1)                            # (B, L+1, T, d)
        for row, (a, b) in enumerate(spans):
            out.append(stacked[row, :, a:b].float().mean(1).cpu())      # (L+1, d)
    return torch.stack(out)
