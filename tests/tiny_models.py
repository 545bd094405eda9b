"""Tiny GPT-NeoX / Llama / GPT-2 models for tests, with asserted parameter counts.

Misspelled config keys are silently ignored by transformers and give a 124M-parameter model, so
every builder checks the count it expects.
"""

from __future__ import annotations

from pathlib import Path

import torch

TINY_TEXTS = [
    "the virus spreads through the air and infects the lungs .",
    "the pathogen vorax is carried by bats and has an incubation period of five days .",
    "the city of lumen lies on the river and is known for its bridges .",
    "paris is the capital of france and berlin is the capital of germany .",
    "answer briefly : who wrote the book ? i do not know .",
    "question : what is the host of the pathogen ? answer : a b c d",
    "the model learns facts about entities in two domains , hazard and benign .",
    "one two three four five six seven eight nine ten",
]

VOCAB = 128
HIDDEN = 32
LAYERS = 3


def make_tiny_model(arch: str = "gpt_neox", seed: int = 0, vocab_size: int = VOCAB,
                    hidden: int = HIDDEN, layers: int = LAYERS):
    """A randomly initialised tiny causal LM of the given family ("gpt_neox", "llama", "gpt2")."""
    from transformers import AutoModelForCausalLM, GPT2Config, GPTNeoXConfig, LlamaConfig

    torch.manual_seed(seed)
    if arch == "gpt_neox":
        cfg = GPTNeoXConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=4, intermediate_size=4 * hidden,
                            max_position_embeddings=128, tie_word_embeddings=False)
        expected = _neox_params(vocab_size, hidden, layers)
    elif arch == "llama":
        cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                          num_attention_heads=4, num_key_value_heads=2, intermediate_size=3 * hidden,
                          max_position_embeddings=128, tie_word_embeddings=False)
        expected = _llama_params(vocab_size, hidden, layers)
    elif arch == "gpt2":
        cfg = GPT2Config(vocab_size=vocab_size, n_embd=hidden, n_layer=layers, n_head=4, n_positions=128,
                         bos_token_id=2, eos_token_id=2)
        expected = _gpt2_params(vocab_size, hidden, layers)
    else:
        raise ValueError(arch)
    model = AutoModelForCausalLM.from_config(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert n == expected, f"tiny {arch} has {n} parameters, expected {expected}: check the config keys"
    return model.eval()


def _neox_params(v: int, h: int, n: int) -> int:
    per_layer = (2 * 2 * h) + (3 * h * h + 3 * h) + (h * h + h) + (4 * h * h + 4 * h) + (4 * h * h + h)
    return v * h * 2 + n * per_layer + 2 * h


def _llama_params(v: int, h: int, n: int) -> int:
    kv = h // 4 * 2
    per_layer = 2 * h + h * h + 2 * h * kv + h * h + 3 * (h * 3 * h)
    return v * h * 2 + n * per_layer + h


def _gpt2_params(v: int, h: int, n: int) -> int:
    per_layer = 4 * h + (h * 3 * h + 3 * h) + (h * h + h) + (h * 4 * h + 4 * h) + (4 * h * h + h)
    return v * h + 128 * h + n * per_layer + 2 * h


def save_tiny(model, path: Path, tokenizer=None, max_shard_size: str | None = None) -> Path:
    """Save as an ordinary HF folder (safetensors); a small ``max_shard_size`` gives several shards."""
    path = Path(path)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(path, **kwargs)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return path
