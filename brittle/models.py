"""Model loading, layer discovery and weight classification, for any HF causal LM.

Nothing here knows a model class by name. The transformer blocks are found as the one
``nn.ModuleList`` whose length is ``config.num_hidden_layers`` (GPT-NeoX ``gpt_neox.layers``,
Llama ``model.layers``, GPT-2 ``transformer.h``); a parameter's layer index is the integer that
follows that list's path in its name; its group comes from the sub-module it lives in.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from torch import nn

from brittle.cli import UserError
from brittle.runtime import hf_token

# Sub-module names that mark attention and MLP blocks across GPT-NeoX, Llama/Mistral/Qwen, GPT-2,
# OPT, Falcon, Phi. Checked as whole dotted components of a parameter name.
_ATTN_PARTS = {"attention", "attn", "self_attn", "self_attention", "query_key_value", "q_proj", "k_proj",
               "v_proj", "o_proj", "c_attn", "out_proj", "dense_qkv"}
_MLP_PARTS = {"mlp", "feed_forward", "ffn", "dense_h_to_4h", "dense_4h_to_h", "up_proj", "down_proj",
              "gate_proj", "c_fc", "fc1", "fc2", "fc_in", "fc_out", "w1", "w2", "w3"}


def is_local(model: str | os.PathLike) -> bool:
    return Path(model).is_dir()


def _check_exists(model: str) -> None:
    """Fail early and clearly for a path that looks local but is not there."""
    text = str(model)
    looks_local = text.startswith((".", "/", "~")) or text.count("/") > 1
    if looks_local and not Path(text).expanduser().is_dir():
        raise UserError(f"model folder not found: {text}")


def load_tokenizer(model: str, revision: str | None = None, trust_remote_code: bool = False):
    """Load a tokenizer; give it a pad token (EOS) if it has none. Padding side is right."""
    from transformers import AutoTokenizer

    _check_exists(model)
    try:
        tok = AutoTokenizer.from_pretrained(str(model), revision=revision, token=hf_token(),
                                            trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise UserError(f"cannot load tokenizer for {model}: {str(exc).splitlines()[0]}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


def load_model(model: str, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
               revision: str | None = None, trust_remote_code: bool = False,
               device_map: str | None = None) -> nn.Module:
    """Load a causal LM from a Hub id or a local folder, safetensors only, in eval mode.

    ``device_map="auto"`` spreads a model larger than one GPU over all of them (accelerate); the
    model is then not moved to ``device``.
    """
    from transformers import AutoModelForCausalLM

    _check_exists(model)
    kwargs = dict(revision=revision, token=hf_token(), trust_remote_code=trust_remote_code,
                  use_safetensors=True, dtype=dtype)
    if device_map:
        kwargs["device_map"] = device_map
    try:
        net = AutoModelForCausalLM.from_pretrained(str(model), **kwargs)
    except OSError as exc:
        raise UserError(f"cannot load model {model}: {str(exc).splitlines()[0]}") from None
    if not device_map:
        net = net.to(device)
    net.eval()
    return net


def find_layer_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """Return ``(path, blocks)``: the ModuleList of transformer blocks.

    It is the ``nn.ModuleList`` whose length equals ``config.num_hidden_layers`` (or, without a
    config, the longest ModuleList). Raises :class:`UserError` when none is found.
    """
    n_layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    candidates = [(name, mod) for name, mod in model.named_modules() if isinstance(mod, nn.ModuleList)]
    if n_layers is not None:
        matching = [(n, m) for n, m in candidates if len(m) == n_layers]
    else:
        matching = sorted(candidates, key=lambda nm: -len(nm[1]))[:1]
    if not matching:
        raise UserError(f"no transformer layer list found in {type(model).__name__} "
                        f"(looked for a ModuleList of length {n_layers})")
    # The shortest path is the outer decoder stack (a nested list of equal length would be deeper).
    return min(matching, key=lambda nm: nm[0].count("."))


def layer_prefix_pattern(layer_path: str) -> re.Pattern:
    """Regex that extracts the layer index from a parameter name, given the layer list's path.

    Checkpoint names may carry or drop a leading wrapper (``model.``), so only the last two path
    components are matched (``gpt_neox.layers``, ``model.layers``, ``transformer.h``).
    """
    tail = ".".join(layer_path.split(".")[-2:])
    return re.compile(rf"(?:^|\.){re.escape(tail)}\.(\d+)\.")


_GENERIC_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer|decoder\.layers)\.(\d+)\.")


def classify_param(name: str, layer_pattern: re.Pattern | None = None) -> tuple[int, str]:
    """``(layer, group)`` of a parameter name: layer index (-1 outside the blocks) and group in
    ``{"attn", "mlp", "other"}`` (embeddings, norms and the head are "other")."""
    match = (layer_pattern or _GENERIC_LAYER).search(name)
    layer = int(match.group(1)) if match else -1
    parts = set(name.split("."))
    if layer < 0:
        return layer, "other"
    if parts & _MLP_PARTS:
        return layer, "mlp"
    if parts & _ATTN_PARTS:
        return layer, "attn"
    return layer, "other"


def mlp_input_linears(model: nn.Module) -> list[tuple[int, str, nn.Module]]:
    """``[(layer, qualified_name, module)]`` for every module that reads the MLP's input.

    Found without class names: inside each block, the linear-like modules (``weight`` of ndim 2)
    under an MLP sub-module whose input width equals the hidden size (``dense_h_to_4h``;
    ``gate_proj`` and ``up_proj``; GPT-2's ``c_fc``, a Conv1D stored transposed).
    """
    path, blocks = find_layer_list(model)
    hidden = model.config.hidden_size
    found = []
    for i, block in enumerate(blocks):
        for sub_name, mod in block.named_modules():
            weight = getattr(mod, "weight", None)
            if not isinstance(weight, torch.Tensor) or weight.ndim != 2 or not sub_name:
                continue
            if classify_param(f"{path}.{i}.{sub_name}.weight", layer_prefix_pattern(path))[1] != "mlp":
                continue
            in_features = weight.shape[0] if type(mod).__name__ == "Conv1D" else weight.shape[1]
            out_features = weight.shape[1] if type(mod).__name__ == "Conv1D" else weight.shape[0]
            if in_features == hidden and out_features != hidden:
                found.append((i, f"{path}.{i}.{sub_name}", mod))
    return found


def checkpoint_files(model: str, revision: str | None = None) -> list[Path]:
    """The safetensors files of a checkpoint, in shard order (local folder or Hub id).

    For a Hub id only ``*.safetensors`` and the index/config JSON are downloaded (to the HF cache).
    """
    _check_exists(model)
    if is_local(model):
        root = Path(model)
    else:
        from huggingface_hub import snapshot_download

        try:
            root = Path(snapshot_download(str(model), revision=revision, token=hf_token(),
                                          allow_patterns=["*.safetensors", "*.json"]))
        except Exception as exc:  # network, auth or missing repo: all user-fixable
            raise UserError(f"cannot fetch {model}: {str(exc).splitlines()[0]}") from None
    index = root / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        shards = sorted(set(weight_map.values()))
        files = [root / s for s in shards]
    else:
        files = sorted(root.glob("*.safetensors"))
    if not files:
        raise UserError(f"no .safetensors files in {model} (only safetensors checkpoints are read)")
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise UserError(f"checkpoint {model} is missing shard(s): {', '.join(missing)}")
    return files


def read_config(model: str, revision: str | None = None) -> dict:
    """The checkpoint's ``config.json`` as a dict."""
    files = checkpoint_files(model, revision)
    cfg = files[0].parent / "config.json"
    if not cfg.exists():
        raise UserError(f"{model} has no config.json")
    return json.loads(cfg.read_text())
