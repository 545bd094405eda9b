"""The capture pass: one forward pass per (model, split), every model of a comparison in lockstep.

Model A and model B run on the same batch one after the other; A's hidden states of the batch
are held until B has produced the same index, then reduced to per-text sums of ‖h_b − h_a‖ and
per-group cross-moments Σ h_a h_bᵀ, so differences never need per-token storage. Second moments
and cross-moments are kept only at the moment layers (``--moment-layers``, ``brittle.moment_layers``):
their float64 sums are what the pass holds in memory, d²·8 bytes per kept hidden state, MLP input
and cross-moment (134 MB each at d = 4096, on the model's device). The
same pass fills both models' own cache entries; a second comparison against the same base re-runs
only what is missing. Both models must fit in memory together (two 6.9B models in bf16 take 28 GB
on a GPU; ``--device-map auto`` spreads them).
The LM head never runs: the decoder is called directly and its states are taken by hooks.

:func:`input_energies` is the other pass, for what the cache cannot hold: the energy of a wide
module input (an MLP output projection's, width d_ff) on a given subspace, batched and grouped
exactly as the cache is.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from brittle.capture.accumulators import ModelAccumulator, PairAccumulator, ProjectedEnergy
from brittle.capture.cache import (
    CACHE_VERSION,
    PAIR_LAYOUT,
    CaptureConfig,
    Captures,
    ModelCapture,
    ModelSpec,
    PairCapture,
    model_key,
    publish,
)
from brittle.capture.hooks import input_hooks, mlp_input_hooks, mlp_slots, n_hidden_states, residual_hooks
from brittle.errors import UserError
from brittle.io import json_digest, make_folder, model_slug, sweep_stale_temporaries, temp_path, write_json
from brittle.models import decoder_module, io_features, load_model, load_tokenizer
from brittle.moment_layers import layer_indices
from brittle.padding import pad_id, right_pad


def tokenize_texts(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids of each text, truncated to ``max_length``; a text with no tokens is a UserError."""
    ids = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    empty = [i for i, x in enumerate(ids) if not x]
    if empty:
        raise UserError(f"{len(empty)} text(s) tokenize to nothing (first: line {empty[0] + 1})")
    return ids


def batches(token_ids: list[list[int]], groups: int, batch_size: int) -> Iterator[tuple[int, list[int], bool]]:
    """Yield ``(group, text indices, last batch of the group)``. Groups are contiguous blocks of
    texts; inside a group texts are sorted by length so batches carry little padding."""
    n = len(token_ids)
    g_count = max(1, min(groups, n))
    bounds = [round(k * n / g_count) for k in range(g_count + 1)]
    for g in range(g_count):
        members = sorted(range(bounds[g], bounds[g + 1]), key=lambda i: -len(token_ids[i]))
        chunks = [members[i:i + batch_size] for i in range(0, len(members), batch_size)]
        for j, chunk in enumerate(chunks):
            yield g, chunk, j == len(chunks) - 1


def common_token_ids(specs: list[ModelSpec], tokenizers: list, texts: list[str], max_length: int) -> list[list[int]]:
    """The texts' token ids by the first model's tokenizer; a UserError unless every other model's
    tokenizer gives the same ids (one input for every model, so differences are the models')."""
    token_ids = tokenize_texts(tokenizers[0], texts, max_length)
    for tok, spec in zip(tokenizers[1:], specs[1:]):
        if tokenize_texts(tok, texts, max_length) != token_ids:
            raise UserError(f"{specs[0].model} and {spec.model} tokenize the texts differently; "
                            "activation comparisons need one tokenizer")
    return token_ids


def padded_batches(token_ids: list[list[int]], pad: int, cfg: CaptureConfig, desc: str,
                   progress: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]]:
    """Yield ``(text indices (B,), ids (B, T), mask (B, T), last batch of its group)`` over
    :func:`batches` with ``cfg.moment_groups`` groups (at least one) and ``cfg.batch_size``, right
    padded (``brittle.padding``): every pass over texts batches and groups them the same way."""
    from tqdm.auto import tqdm

    todo = list(batches(token_ids, cfg.moment_groups or 1, cfg.batch_size))
    for _group, chunk, group_done in tqdm(todo, desc=desc, disable=not progress, leave=False):
        ids, mask = right_pad([token_ids[i] for i in chunk], pad)
        yield torch.tensor(chunk), ids, mask, group_done


def _input_device(model: nn.Module, device: torch.device) -> torch.device:
    emb = model.get_input_embeddings()
    return emb.weight.device if emb is not None else device


def run_decoder(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, device: torch.device) -> int:
    """Run the decoder (no LM head: hooks take what a pass needs) on one batch, its inputs on the
    device of the embeddings (with ``--device-map`` that is not ``device``); returns the tokens run."""
    dev = _input_device(model, device)
    decoder_module(model)(input_ids=ids.to(dev), attention_mask=mask.to(dev))
    return ids.numel()


def _dims(model: nn.Module) -> tuple[int, int, int, int]:
    """(hidden states L+1, hidden width, MLP slots, MLP input width)."""
    slots = mlp_slots(model)
    return n_hidden_states(model), model.config.hidden_size, len(slots), io_features(slots[0][2])[0]


def ensure_captures(specs: list[ModelSpec], splits: dict[str, list[str]], cfg: CaptureConfig,
                    root: str | os.PathLike, pair: bool = False, progress: bool = True) -> Captures:
    """Return the cached captures of ``specs`` (1 model, or 2 with ``pair=True``) on every split,
    running only what is missing. Models are loaded at most once per call."""
    root = Path(root)
    device, dtype = cfg.resolved()
    keys = [{s: model_key(m.model, m.revision, texts, cfg) for s, texts in splits.items()} for m in specs]
    model_dirs = [{s: root / model_slug(m.model) / f"{s}-{keys[i][s]}" for s in splits} for i, m in enumerate(specs)]
    pair_dirs = {}
    if pair:
        pair_root = root / "_pairs" / f"{model_slug(specs[0].model)}__vs__{model_slug(specs[1].model)}"
        pair_dirs = {s: pair_root / f"{s}-{json_digest([keys[0][s], keys[1][s], PAIR_LAYOUT])}" for s in splits}
    todo = [s for s in splits
            if (pair and not (pair_dirs[s] / "meta.json").exists())
            or any(not (d[s] / "meta.json").exists() for d in model_dirs)]
    total_tokens, t0 = 0, time.time()
    if todo:
        models, tokenizers = [], []
        try:
            for m in specs:
                tokenizers.append(load_tokenizer(m.model, m.revision, cfg.trust_remote_code))
                models.append(load_model(m.model, dtype=dtype, device=device, revision=m.revision,
                                         trust_remote_code=cfg.trust_remote_code, device_map=cfg.device_map))
            for s in todo:
                total_tokens += _run_split(specs, models, tokenizers, splits[s], cfg, s,
                                           [d[s] for d in model_dirs], pair_dirs.get(s), device, progress)
        finally:
            del models
    return Captures(models=[{s: ModelCapture(d[s]) for s in splits} for d in model_dirs],
                    pair={s: PairCapture(p) for s, p in pair_dirs.items()},
                    forward_tokens=total_tokens, seconds=time.time() - t0)


def _temp_folder(final: Path) -> Path:
    parent = make_folder(final.parent)
    sweep_stale_temporaries(parent)
    tmp = temp_path(final, "tmp")
    tmp.mkdir()
    return tmp


def _run_split(specs, models, tokenizers, texts, cfg, split, model_dirs, pair_dir, device, progress) -> int:
    """One pass over ``texts`` with every model in lockstep; writes the missing cache entries."""
    token_ids = common_token_ids(specs, tokenizers, texts, cfg.max_length)
    dims = [_dims(m) for m in models]
    if len(set(d[:2] for d in dims)) != 1:
        raise UserError(f"models have different depths or widths: {[d[:2] for d in dims]}")
    n_states = dims[0][0]
    layers = layer_indices(cfg.moment_layers, n_states)
    want = [not (d / "meta.json").exists() for d in model_dirs]
    tmps = [_temp_folder(d) if w else None for d, w in zip(model_dirs, want)]
    accs = [ModelAccumulator(len(texts), *dims[i], tmps[i], f"{specs[i].model} on {split} texts",
                             [block for block, _, _ in mlp_slots(models[i])], layers) if want[i] else None
            for i in range(len(models))]
    # The pair entry's folder exists from the start: its cross-moment files are written per group.
    pair_tmp = _temp_folder(pair_dir) if pair_dir is not None else None
    pair_acc = (PairAccumulator(len(texts), n_states, dims[0][1], pair_tmp if cfg.moment_groups > 0 else None,
                                layers) if pair_dir is not None else None)
    t0, n_forward = time.time(), 0
    hooks = []
    try:
        for i, model in enumerate(models):
            sink = _sink(i, accs[i], pair_acc)
            hooks.append(residual_hooks(model, range(n_states), sink))
            if accs[i] is not None:
                hooks.append(mlp_input_hooks(model, accs[i].mlp_input))
        run = [i for i in range(len(models)) if accs[i] is not None or pair_acc is not None]
        with torch.no_grad():
            for idx, ids, mask, group_done in padded_batches(token_ids, pad_id(tokenizers[0]), cfg,
                                                             f"capture {split}", progress):
                for acc in [*accs, pair_acc]:
                    if acc is not None:
                        acc.start_batch(idx, mask)
                for i in run:
                    n_forward += run_decoder(models[i], ids, mask, device)
                if group_done and cfg.moment_groups > 0:
                    for acc in [*accs, pair_acc]:
                        if acc is not None:
                            acc.end_group()
        seconds = time.time() - t0
        for i, acc in enumerate(accs):
            if acc is None:
                continue
            acc.save()
            write_json(tmps[i] / "meta.json", {
                "version": CACHE_VERSION, "model": specs[i].model, "revision": specs[i].revision,
                "split": split, "n_texts": len(texts), "n_tokens": int(acc.n_tokens.sum()),
                "n_hidden_states": n_states, "hidden_size": dims[i][1], "mlp_input_size": dims[i][3],
                "mlp_blocks": [block for block, _, _ in mlp_slots(models[i])],
                "mlp_modules": [names for _, names, _ in mlp_slots(models[i])],
                "moment_groups_written": acc.groups_written, "moment_layers": acc.moment_layers,
                "mlp_moment_slots": acc.mlp_moment_slots, "config": cfg.__dict__,
                "forward_tokens": n_forward // len(run), "seconds": round(seconds, 3),
                "hidden_state_numbering": "0 = embeddings; i = output of block i-1; last = after the final norm"})
            publish(tmps[i], model_dirs[i])
        if pair_acc is not None:
            torch.save({"n_tokens": pair_acc.n_tokens, "dh_l1": pair_acc.l1, "dh_l2": pair_acc.l2}, pair_tmp / "dh.pt")
            write_json(pair_tmp / "meta.json", {"version": CACHE_VERSION, "pair_layout": PAIR_LAYOUT,
                                                "model_a": specs[0].model, "model_b": specs[1].model, "split": split,
                                                "n_texts": len(texts), "n_hidden_states": n_states,
                                                "hidden_size": dims[0][1],
                                                "moment_groups_written": pair_acc.groups_written,
                                                "moment_layers": pair_acc.moment_layers,
                                                "forward_tokens": n_forward, "seconds": round(seconds, 3)})
            publish(pair_tmp, pair_dir)
    finally:
        for h in hooks:
            h.close()
        for t in [*tmps, pair_tmp]:
            if t is not None and t.exists():
                shutil.rmtree(t, ignore_errors=True)
    return n_forward


def _sink(i: int, acc: ModelAccumulator | None, pair_acc: PairAccumulator | None):
    def sink(index, tensor):
        if acc is not None:
            acc.hidden_state(index, tensor)
        if pair_acc is not None:
            (pair_acc.from_a if i == 0 else pair_acc.from_b)(index, tensor)
    return sink


def input_energies(specs: list[ModelSpec], splits: dict[str, list[str]], bases: dict[str, torch.Tensor],
                   cfg: CaptureConfig, progress: bool = True) -> list[dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per model and split, each named module's input energy on its basis and in all, per text group:
    ``[{split: (inside (G, M), total (G, M))} per spec]``, float64, modules in the order of ``bases``
    (``{qualified module name: orthonormal basis (n, k)}``, n the module's input width).

    For inputs too wide for the cache's second moments (:class:`ProjectedEnergy`). Groups and
    batches are the cache's (:func:`padded_batches`), so group g here is group g of the moments;
    the token ids are the first model's, checked against every other tokenizer. Models run one at a
    time, each once per split, and are freed before the next loads.
    """
    device, dtype = cfg.resolved()
    tokenizers = [load_tokenizer(m.model, m.revision, cfg.trust_remote_code) for m in specs]
    ids = {s: common_token_ids(specs, tokenizers, texts, cfg.max_length) for s, texts in splits.items()}
    pad, names = pad_id(tokenizers[0]), list(bases)
    out = []
    for spec in specs:
        model = load_model(spec.model, dtype=dtype, device=device, revision=spec.revision,
                           trust_remote_code=cfg.trust_remote_code, device_map=cfg.device_map)
        modules = []
        try:
            modules = [model.get_submodule(name) for name in names]
            found = {}
            for split, token_ids in ids.items():
                acc = ProjectedEnergy(list(bases.values()), f"{spec.model} on {split} texts", names)
                with input_hooks(modules, acc.module_input), torch.no_grad():
                    for _, batch, mask, group_done in padded_batches(token_ids, pad, cfg, f"project {split}",
                                                                     progress):
                        acc.start_batch(mask)
                        run_decoder(model, batch, mask, device)
                        if group_done:
                            acc.end_group()
                found[split] = acc.result()
            out.append(found)
        finally:
            del model, modules    # the submodules would keep the weights alive while the next model loads
    return out
