"""LoRA adapters for the representation-engineering methods (circuit breakers, CB-LAT), via peft.

The adapters go on every linear projection (attention and MLP) of the blocks that produce the
target hidden states, blocks 0..max(target) − 1. (The circuit-breakers reference passes
``layers_to_transform = range(max(target_layers) + 1)`` with hidden-state indices, which also
adapts block max(target), whose output no loss term reads.) The adapters are merged into the base weights before saving, so the saved model is an ordinary HF model
whose ΔW has rank ≤ r in every adapted matrix.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from brittle.models import linear_module_names


def add_lora(trainer, blocks: Sequence[int], r: int, alpha: float, dropout: float) -> list[nn.Parameter]:
    """Wrap ``trainer.model`` with LoRA on the linear modules of ``blocks``; return the adapter
    parameters (the only ones that will train)."""
    from peft import LoraConfig, get_peft_model

    targets = linear_module_names(trainer.model, blocks)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                        target_modules=targets, task_type="CAUSAL_LM")
    trainer.model = get_peft_model(trainer.model, config)
    return [p for n, p in trainer.model.named_parameters() if "lora_" in n]


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the adapters into the weights (no-op for a model without adapters)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
