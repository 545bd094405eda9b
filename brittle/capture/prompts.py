"""Per-prompt hidden states at every depth, for comparing models on identical inputs
(layer-wise forgetting).

Prompts are tokenized once (:func:`build_inputs`) and the same token ids are fed to every model,
so a difference between two models' states is the models', never the tokenizers' (a chat template
that stamps today's date, or two checkpoints shipping different templates, would otherwise change
the inputs). Each prompt is reduced to one vector per hidden state: the last prompt token's state
(the one that predicts the answer's first token) or the mean over the answer's tokens. States are
taken with the project's residual hooks (``brittle.capture.hooks``), numbered as transformers
numbers ``output_hidden_states``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from brittle.capture.hooks import n_hidden_states, record_residual
from brittle.errors import UserError, require_finite
from brittle.generation import encode_prompt, has_chat_template
from brittle.models import decoder_module
from brittle.padding import right_pad

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
        raise UserError(f"position must be one of {POSITIONS}, got {position!r}")
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
def capture(model, inputs: Inputs, pad: int, batch_size: int = 8, desc: str = "hidden states") -> torch.Tensor:
    """``(n_prompts, L + 1, hidden)`` float32 on the CPU: every hidden state averaged over each
    prompt's span. Batches are right-padded; padding never enters the span and cannot affect real
    tokens under a causal mask."""
    from tqdm.auto import tqdm

    vocab = model.get_input_embeddings().num_embeddings
    top = max(max(seq) for seq in inputs.ids)
    if top >= vocab:
        raise UserError(f"token id {top} is outside the model's vocabulary ({vocab}): "
                        "the tokenizer does not belong to this model")
    device = model.get_input_embeddings().weight.device
    n = n_hidden_states(model)
    out = []
    with record_residual(model, range(n)) as states:
        for start in tqdm(range(0, len(inputs.ids), batch_size), desc=desc, leave=False):
            ids, mask = right_pad(inputs.ids[start:start + batch_size], pad)
            decoder_module(model)(input_ids=ids.to(device), attention_mask=mask.to(device))
            stacked = torch.stack([states[i] for i in range(n)], dim=1)         # (B, L+1, T, d)
            for row, (a, b) in enumerate(inputs.spans[start:start + batch_size]):
                out.append(stacked[row, :, a:b].float().mean(1).cpu())         # (L+1, d)
    result = torch.stack(out)
    require_finite(result, f"hidden states of {getattr(model.config, '_name_or_path', 'the model')}",
                   "the model overflows on these prompts (try --dtype float32) or its weights are broken")
    return result
