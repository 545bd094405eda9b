"""Model loading, layer discovery and weight classification, for any HF causal LM.

Nothing here knows a model class by name. The transformer blocks are found as the one
``nn.ModuleList`` whose length is ``config.num_hidden_layers`` (GPT-NeoX ``gpt_neox.layers``,
Llama ``model.layers``, GPT-2 ``transformer.h``); a parameter's block index is the integer that
follows that list's path in its name; its group comes from the sub-module it lives in.

A model is a local folder or a Hub id. A folder must hold a model (config.json and weights); a
path that looks local but does not exist is reported as missing, never tried on the Hub; a Hub id
is loaded from the local cache when it is there, and the Hub is asked only when it is reachable,
so an offline machine fails in seconds with a message that says what to do.
"""

from __future__ import annotations

import json
import os
import re
import socket
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from brittle.errors import UserError, require_finite
from brittle.runtime import hf_token

# Sub-module names that mark attention and MLP blocks across GPT-NeoX, Llama/Mistral/Qwen, GPT-2,
# OPT, Falcon, Phi. Checked as whole dotted components of a parameter name.
_ATTN_PARTS = {"attention", "attn", "self_attn", "self_attention", "query_key_value", "q_proj", "k_proj",
               "v_proj", "o_proj", "c_attn", "out_proj", "dense_qkv"}
_MLP_PARTS = {"mlp", "feed_forward", "ffn", "dense_h_to_4h", "dense_4h_to_h", "up_proj", "down_proj",
              "gate_proj", "c_fc", "fc1", "fc2", "fc_in", "fc_out", "w1", "w2", "w3"}
_MLP_CHILD_NAMES = ("mlp", "feed_forward", "ffn")


# ------------------------------------------------------------------------------------ sources
def is_local(model: str | os.PathLike) -> bool:
    return Path(model).expanduser().is_dir()


def looks_local(model: str | os.PathLike) -> bool:
    """A path rather than a Hub id: starts with ``.``, ``/`` or ``~``, or has more than one ``/``
    (Hub ids are ``owner/name``)."""
    text = str(model)
    return text.startswith((".", "/", "~")) or text.count("/") > 1 or Path(text).exists()


@lru_cache(maxsize=64)
def resolve_source(model: str, revision: str | None = None, need_config: bool = True) -> tuple[str, bool]:
    """``(what to pass to from_pretrained, local_files_only)`` for a folder or a Hub id.

    Raises :class:`UserError` for a folder that holds no model (no weights; no config.json when
    ``need_config``: weight-space steps read only the safetensors), a local-looking path that does
    not exist, and a Hub id that is neither in the local cache nor reachable.
    """
    text = str(model)
    path = Path(text).expanduser()
    if path.is_dir():
        if need_config and not (path / "config.json").is_file():
            raise UserError(f"{text} is a folder but not a model: it has no config.json "
                            "(a model folder holds config.json and *.safetensors)")
        if not any(path.glob("*.safetensors")) and not (path / "model.safetensors.index.json").is_file():
            raise UserError(f"{text} has no *.safetensors weights (only safetensors checkpoints are read)")
        return str(path), True
    if looks_local(text):
        raise UserError(f"model folder not found: {text}")
    if _in_hub_cache(text, revision):
        return text, True
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        raise UserError(f"{text} is not in the local HuggingFace cache and HF_HUB_OFFLINE is set; "
                        "download it first or give a local model folder")
    reachable, why = hub_reachable()
    if not reachable:
        raise UserError(f"cannot reach the HuggingFace Hub for {text} ({why}) and it is not in the local cache; "
                        "connect, or give a local model folder")
    return text, False


def _in_hub_cache(repo_id: str, revision: str | None) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except Exception:  # malformed id and the like: let the loader give its own message
        return False
    return isinstance(found, str)


@lru_cache(maxsize=1)
def hub_reachable(timeout: float = 5.0) -> tuple[bool, str]:
    """Whether a TCP connection to the Hub endpoint, or to the proxy that reaches it (``HTTPS_PROXY``
    and the like, as ``urllib`` reads them), opens within ``timeout`` seconds.

    transformers retries an unreachable Hub for about a minute per model; one socket tells in
    seconds. Behind a proxy the endpoint itself is unreachable by design, so the proxy is asked."""
    from urllib.request import getproxies, proxy_bypass

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    proxy = getproxies().get(url.scheme) or getproxies().get("all")
    if proxy and not proxy_bypass(host):
        proxy_url = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_url.hostname or host, proxy_url.port or 8080
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return False, f"{host}: {exc.strerror or exc}"
    return True, ""


def load_tokenizer(model: str, revision: str | None = None, trust_remote_code: bool = False):
    """Load a tokenizer; give it a pad token (EOS) if it has none. Padding side is right."""
    from transformers import AutoTokenizer

    source, local_only = resolve_source(str(model), revision)
    try:
        tok = AutoTokenizer.from_pretrained(source, revision=revision, token=hf_token(),
                                            trust_remote_code=trust_remote_code, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load the tokenizer of {model}: {_first_line(exc)}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


def load_model(model: str, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
               revision: str | None = None, trust_remote_code: bool = False,
               device_map: str | None = None) -> nn.Module:
    """Load a causal LM from a Hub id or a local folder, safetensors only, in eval mode.

    ``device_map="auto"`` spreads a model larger than one GPU over all of them (accelerate); the
    model is then not moved to ``device``. Every parameter is checked for NaN/Inf: a result
    computed from broken weights would look like a finding.
    """
    from transformers import AutoModelForCausalLM

    source, local_only = resolve_source(str(model), revision)
    kwargs = dict(revision=revision, token=hf_token(), trust_remote_code=trust_remote_code,
                  use_safetensors=True, dtype=dtype, local_files_only=local_only)
    if device_map:
        kwargs["device_map"] = device_map
    try:
        net = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model {model}: {_first_line(exc)}") from None
    if not device_map:
        net = net.to(device)
    for name, param in net.named_parameters():
        require_finite(param.detach(), f"weight {name} of {model}", "the checkpoint is broken; retrain or re-download it")
    net.eval()
    return net


def model_skeleton(model: str, revision: str | None = None, trust_remote_code: bool = False) -> nn.Module:
    """The model's module tree on the meta device: every module and weight shape, no weight read or
    allocated (about a second for a 6.9B model). For finding modules by structure before deciding
    what to compute; it cannot run. Built from the checkpoint's config by the class
    :func:`load_model` builds, so its module names are the loaded model's."""
    from transformers import AutoConfig, AutoModelForCausalLM

    source, local_only = resolve_source(str(model), revision)
    try:
        config = AutoConfig.from_pretrained(source, revision=revision, token=hf_token(),
                                            trust_remote_code=trust_remote_code, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the config of {model}: {_first_line(exc)}") from None
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def checkpoint_files(model: str, revision: str | None = None) -> list[Path]:
    """The safetensors files of a checkpoint, in shard order (local folder or Hub id).

    For a Hub id only ``*.safetensors`` and the index/config JSON are downloaded (to the HF cache).
    """
    source, local_only = resolve_source(str(model), revision, need_config=False)
    if is_local(source):
        root = Path(source).expanduser()
    else:
        from huggingface_hub import snapshot_download

        try:
            root = Path(snapshot_download(source, revision=revision, token=hf_token(), local_files_only=local_only,
                                          allow_patterns=["*.safetensors", "*.json"]))
        except Exception as exc:  # network, auth or missing repo: all user-fixable
            raise UserError(f"cannot fetch {model}: {_first_line(exc)}") from None
    index = root / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = [root / s for s in sorted(set(weight_map.values()))]
    else:
        files = sorted(root.glob("*.safetensors"))
    if not files:
        raise UserError(f"no .safetensors files in {model} (only safetensors checkpoints are read)")
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise UserError(f"checkpoint {model} is missing shard(s): {', '.join(missing)}")
    return files


# ------------------------------------------------------------------------------------ discovery
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


def decoder_module(model: nn.Module) -> nn.Module:
    """The module that holds the block list and returns the final-normed hidden states
    (GPT-NeoX ``gpt_neox``, Llama ``model``, GPT-2 ``transformer``): the block list's parent."""
    path, _ = find_layer_list(model)
    parent = path.rsplit(".", 1)[0] if "." in path else ""
    return model.get_submodule(parent) if parent else model


def layer_prefix_pattern(layer_path: str) -> re.Pattern:
    """Regex that extracts the block index from a parameter name, given the layer list's path.

    Checkpoint names may carry or drop a leading wrapper (``model.``), so only the last two path
    components are matched (``gpt_neox.layers``, ``model.layers``, ``transformer.h``).
    """
    tail = ".".join(layer_path.split(".")[-2:])
    return re.compile(rf"(?:^|\.){re.escape(tail)}\.(\d+)\.")


_GENERIC_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer|decoder\.layers)\.(\d+)\.")


def classify_param(name: str, layer_pattern: re.Pattern | None = None) -> tuple[int | None, str]:
    """``(block, group)`` of a parameter name: block index (None outside the blocks) and group in
    ``{"attn", "mlp", "other"}`` (embeddings, norms and the head are "other")."""
    match = (layer_pattern or _GENERIC_LAYER).search(name)
    if not match:
        return None, "other"
    block = int(match.group(1))
    parts = set(name.split("."))
    if parts & _MLP_PARTS:
        return block, "mlp"
    if parts & _ATTN_PARTS:
        return block, "attn"
    return block, "other"


def io_features(mod: nn.Module) -> tuple[int, int] | None:
    """``(in_features, out_features)`` of a linear-like module (GPT-2 Conv1D stores (in, out))."""
    weight = getattr(mod, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        return None
    if type(mod).__name__ == "Conv1D":
        return weight.shape[0], weight.shape[1]
    return weight.shape[1], weight.shape[0]


def _mlp_linears(model: nn.Module, reads_hidden: bool) -> list[tuple[int, str, nn.Module]]:
    path, blocks = find_layer_list(model)
    hidden = model.config.hidden_size
    pattern = layer_prefix_pattern(path)
    found = []
    for i, block in enumerate(blocks):
        for sub, mod in block.named_modules():
            io = io_features(mod)
            if io is None or not sub or "lora_" in sub or "base_layer" in sub:
                continue
            if classify_param(f"{path}.{i}.{sub}.weight", pattern)[1] != "mlp":
                continue
            if (io[0] == hidden and io[1] != hidden) if reads_hidden else (io[1] == hidden and io[0] != hidden):
                found.append((i, f"{path}.{i}.{sub}", mod))
    return found


def mlp_input_linears(model: nn.Module) -> list[tuple[int, str, nn.Module]]:
    """``[(block, qualified_name, module)]`` for every module that reads the MLP's input
    (``dense_h_to_4h``; ``gate_proj`` and ``up_proj``; GPT-2's ``c_fc``): linear-like modules under
    an MLP sub-module whose input width is the hidden size."""
    return _mlp_linears(model, reads_hidden=True)


def mlp_output_linears(model: nn.Module) -> list[tuple[int, str, nn.Module]]:
    """``[(block, qualified_name, module)]`` for each block's MLP output projection, the module
    that maps the intermediate width back to the hidden size (``dense_4h_to_h``, ``down_proj``,
    GPT-2's MLP ``c_proj``). Raises :class:`UserError` unless every block has exactly one."""
    found = _mlp_linears(model, reads_hidden=False)
    _, blocks = find_layer_list(model)
    for i in range(len(blocks)):
        here = [name for b, name, _ in found if b == i]
        if len(here) != 1:
            raise UserError(f"block {i}: expected one MLP output projection, found {here}")
    return found


def mlp_module(model: nn.Module, block: int) -> nn.Module:
    """The MLP sub-module of ``block`` (child named mlp / feed_forward / ffn)."""
    _, blocks = find_layer_list(model)
    for name in _MLP_CHILD_NAMES:
        if hasattr(blocks[block], name):
            return getattr(blocks[block], name)
    raise UserError(f"block {block} has no MLP child named one of {_MLP_CHILD_NAMES}")


def linear_module_names(model: nn.Module, blocks_wanted) -> list[str]:
    """Qualified names of every linear-like module (2-D weight) inside the given blocks."""
    path, blocks = find_layer_list(model)
    names = [f"{path}.{i}.{sub}" for i in blocks_wanted for sub, mod in blocks[i].named_modules()
             if sub and (isinstance(mod, nn.Linear) or type(mod).__name__ == "Conv1D")]
    if not names:
        raise UserError(f"no linear modules found in blocks {list(blocks_wanted)}")
    return names


def check_blocks(model: nn.Module, blocks, what: str) -> None:
    """A :class:`UserError` naming ``what`` unless every index in ``blocks`` is a block of ``model``."""
    n = model.config.num_hidden_layers
    bad = [b for b in blocks if not 0 <= b < n]
    if bad:
        raise UserError(f"{what} {','.join(map(str, bad))} out of range: the model has {n} blocks (0..{n - 1})")
