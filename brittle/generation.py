"""Prompt formatting and text generation for any HF causal LM (used by ``infer.py`` and the
layer-wise analysis).

A prompt goes through the tokenizer's chat template when it has one (instruct models answer
differently, usually better, inside their template) unless the caller turns that off. Sampling is
seeded per call, so the same prompt, model, settings and seed give the same text whatever was
generated before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def format_prompt(tokenizer, prompt: str, chat_template: bool = True) -> str:
    """The text the model sees: ``prompt`` as one user turn of the chat template plus the
    assistant header, or ``prompt`` unchanged when the tokenizer has no template or
    ``chat_template`` is False."""
    if chat_template and has_chat_template(tokenizer):
        messages = [{"role": "user", "content": prompt}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return prompt


def encode_prompt(tokenizer, prompt: str, chat_template: bool = True) -> list[int]:
    """Token ids of :func:`format_prompt`'s text.

    A chat template writes its own special tokens (e.g. Llama-3's ``<|begin_of_text|>``), so the
    tokenizer must not add them a second time; a plain prompt gets the tokenizer's usual ones.
    """
    templated = chat_template and has_chat_template(tokenizer)
    text = format_prompt(tokenizer, prompt, chat_template)
    return tokenizer(text, add_special_tokens=not templated)["input_ids"]


@dataclass(frozen=True)
class GenerationSettings:
    """How to decode. ``greedy`` (or ``temperature == 0``) ignores temperature and top-p."""

    max_new_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 0.9
    greedy: bool = False
    seed: int = 0
    chat_template: bool = True

    @property
    def sampling(self) -> bool:
        return not self.greedy and self.temperature > 0

    def generate_kwargs(self, tokenizer) -> dict:
        kwargs = dict(max_new_tokens=self.max_new_tokens, do_sample=self.sampling,
                      pad_token_id=tokenizer.pad_token_id)
        if self.sampling:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        else:
            # Override sampling defaults a checkpoint's generation_config may carry, so that
            # greedy decoding neither warns nor samples.
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs


@torch.no_grad()
def generate(model, tokenizer, prompt: str, settings: GenerationSettings, streamer=None) -> str:
    """Generate a continuation of ``prompt`` and return only the new text (special tokens removed).

    ``streamer`` (e.g. ``transformers.TextStreamer``) receives tokens as they are produced.
    Generation stops at ``settings.max_new_tokens`` new tokens or at the end-of-sequence token.
    """
    ids = encode_prompt(tokenizer, prompt, settings.chat_template)
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    attention_mask = torch.ones_like(input_ids)
    torch.manual_seed(settings.seed)  # per call: independent of what ran before
    out = model.generate(input_ids=input_ids, attention_mask=attention_mask, streamer=streamer,
                         **settings.generate_kwargs(tokenizer))
    return tokenizer.decode(out[0, input_ids.shape[1]:], skip_special_tokens=True).strip()


def text_streamer(tokenizer):
    """A streamer that prints only the generated tokens (not the prompt) to stdout as they come."""
    from transformers import TextStreamer

    return TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
