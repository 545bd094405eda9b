"""LoRA adapters for circuit breakers, CB-LAT and LAT, via peft.

Which blocks: for cb and cb_lat 0..max(target) of their target hidden states (the references pass
``layers_to_transform = range(max(target_layers) + 1)`` with hidden-state indices); for lat every
block, as its reference. Which modules (``lora_modules``):

* ``all-linear``: every linear projection of those blocks (the circuit-breakers reference lists
  q, k, v, o, gate, up and down);
* ``peft-default``: the modules peft adapts when given no ``target_modules`` (GPT-NeoX:
  ``query_key_value``; Llama: ``q_proj``, ``v_proj``), which is what the deep-ignorance CB-LAT
  reference does for its GPT-NeoX models;
* ``qkv-up-down``: the targeted-LAT reference's list, attention q, k, v and MLP up and down
  projections (GPT-NeoX: ``query_key_value``, ``dense_h_to_4h``, ``dense_4h_to_h``).

The adapters are merged into the base weights before saving, so the saved model is an
ordinary HF model whose ΔW has rank ≤ r in every adapted matrix.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from brittle.errors import UserError
from brittle.models import linear_module_names


LORA_MODULES = ("all-linear", "peft-default", "qkv-up-down")
# The targeted-LAT reference's list (q, k, v, up, down: no attention output, no gate), by the
# module names of the architectures the presets use (Llama/Mistral, GPT-NeoX).
QKV_UP_DOWN = {"q_proj", "k_proj", "v_proj", "up_proj", "down_proj",
               "query_key_value", "dense_h_to_4h", "dense_4h_to_h"}


def lora_target_names(model: nn.Module, blocks: Sequence[int], modules: str = "all-linear") -> list[str]:
    """Qualified names of the modules that get adapters (see the module docstring)."""
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

    if modules not in LORA_MODULES:
        raise UserError(f"--lora-modules must be one of {', '.join(LORA_MODULES)}, got {modules!r}")
    names = linear_module_names(model, blocks)
    if modules == "all-linear":
        return names
    if modules == "qkv-up-down":
        chosen = [n for n in names if n.rsplit(".", 1)[-1] in QKV_UP_DOWN]
        if not chosen:
            raise UserError(f"no q/k/v/up/down projections recognised in {type(model).__name__}; use --lora-modules all-linear")
        return chosen
    model_type = model.config.model_type
    if model_type not in PEFT_DEFAULTS:
        raise UserError(f"peft has no default LoRA modules for model type {model_type!r}; use --lora-modules all-linear")
    chosen = [n for n in names if n.rsplit(".", 1)[-1] in PEFT_DEFAULTS[model_type]]
    if not chosen:
        raise UserError(f"none of peft's default LoRA modules {PEFT_DEFAULTS[model_type]} found in blocks {list(blocks)}")
    return chosen


def add_lora(trainer, blocks: Sequence[int], r: int, alpha: float, dropout: float,
             modules: str = "all-linear") -> list[nn.Parameter]:
    """Wrap ``trainer.model`` with LoRA on the ``modules`` of ``blocks``; return the adapter
    parameters (the only ones that will train)."""
    from peft import LoraConfig, get_peft_model

    targets = lora_target_names(trainer.model, blocks, modules)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                        target_modules=targets, task_type="CAUSAL_LM")
    trainer.model = get_peft_model(trainer.model, config)
    return [p for n, p in trainer.model.named_parameters() if "lora_" in n]


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the adapters into the weights (no-op for a model without adapters)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
