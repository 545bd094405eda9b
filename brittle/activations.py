"""Shared activation capture: one forward pass per (model, split), cached on disk for every step.

Activation steps (norms, separation, covariance, row-space projection, probes) all read what one
pass over the texts produced, so a model is never re-run per step or per analysed layer.

**Layer indexing** (identical to transformers' ``output_hidden_states``): with L transformer
blocks there are L + 1 hidden-state layers. Layer 0 is the input of block 0 (token embeddings,
plus position embeddings where the model adds them); layer i (1 ≤ i < L) is the output of block
i − 1 (the residual stream); layer L is the output of the last block *with the model's final
layer norm applied* (transformers puts the normed state last). The states are taken with hooks
(pre-hook on block 0, forward hooks on blocks 0..L−2, the decoder's ``last_hidden_state``), so the
LM head never runs and no (batch × seq × vocab) logits are materialised.

**What one pass stores** for (model, split), in ``<cache>/<model_slug>/<split>-<key>/``:

- ``per_text.pt``: per text, its non-pad token count, the sums over its tokens of ‖h‖₁ and ‖h‖₂
  per layer (n, L+1) float64, and its last non-pad token's state per layer (n, L+1, d) float32.
- ``moments_g<k>.pt``: for text group k (G contiguous groups of texts), token count, Σh (L+1, d)
  float64 and Σhhᵀ (L+1, d, d) of the hidden states, and the same for the input of each layer's
  MLP (what ``dense_h_to_4h`` / ``gate_proj``+``up_proj`` / ``c_fc`` read; all input linears of
  one MLP read the same tensor). Sums are accumulated in float64 and stored in float32 to halve
  the disk (G × (2L+1) × d² × 4 bytes). Bootstrap CIs of covariance-derived quantities resample
  these groups, so G (``--moment-groups``) sets their resolution.
- ``meta.json``: model, texts hash, shapes, module names, forward tokens and seconds.

**Differences between two models** (mean ‖h_b − h_a‖ per token) need both models on the same
tokens. Storing every per-token state of a 6.9B model (270 KB per token) does not scale, so a
*pair pass* runs A and B in lockstep on each batch: A's states of the batch are held until B has
produced the same layer, then reduced to per-text sums of ‖h_b − h_a‖₁ and ‖h_b − h_a‖₂ in
``<cache>/_pairs/<slug_a>__vs__<slug_b>/<split>-<key>/dh.pt``. The same pass fills the two
models' own caches, so one comparison costs one forward pass per model and split for all steps;
a second comparison against the same base re-runs only that base (its own cache is reused).
Both models must fit in memory together (two 6.9B models in bf16 take 28 GB on a GPU; use
``--device-map auto`` to spread them over several).

Padding is masked everywhere: right padding, only positions with ``attention_mask == 1`` count,
and "last token" is the last non-pad position. Writes are atomic (a temporary folder renamed into
place), so an interrupted pass leaves no cache entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from brittle.cli import UserError
from brittle.io import model_slug, weights_fingerprint, write_json
from brittle.models import find_layer_list, load_model, load_tokenizer, mlp_input_linears
from brittle.stats import StreamingMoments

CACHE_VERSION = 1
SPLITS = ("forget", "retain")


# ----------------------------------------------------------------------------------------- input
def read_texts(path: str | os.PathLike, max_samples: int | None) -> list[str]:
    """Non-blank lines of a UTF-8 file (one text per line), the first ``max_samples`` of them."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"text file not found: {path}")
    texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise UserError(f"{path} holds no texts (one text per line expected)")
    return texts[:max_samples] if max_samples else texts


def add_capture_args(p, forget_default: str = "data/tiny/forget.txt",
                     retain_default: str = "data/tiny/retain.txt") -> None:
    """Flags shared by every step that reads the activation cache."""
    p.add_argument("--forget-file", default=forget_default, help="forget texts, one per line")
    p.add_argument("--retain-file", default=retain_default, help="retain texts, one per line")
    p.add_argument("--max-samples", type=int, default=500, help="texts per split (the first N lines)")
    p.add_argument("--max-length", type=int, default=512, help="tokens per text (longer texts are truncated)")
    p.add_argument("--moment-groups", type=int, default=10,
                   help="text groups for covariance / MLP-input moments (bootstrap resolution; disk grows with it)")
    p.add_argument("--cache-dir", default=None, help="activation cache (default: <output-root>/_activation_cache)")
    p.add_argument("--device-map", default=None, help="'auto' spreads large models over all GPUs (accelerate)")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap replicates for confidence intervals")


@dataclass(frozen=True)
class CaptureConfig:
    """Everything that changes a capture's result (batch size and device do not, up to rounding)."""
    max_length: int = 512
    moment_groups: int = 10
    dtype: str = "auto"
    device: str = "auto"
    batch_size: int = 8
    device_map: str | None = None
    trust_remote_code: bool = False

    @classmethod
    def from_args(cls, args) -> "CaptureConfig":
        return cls(max_length=args.max_length, moment_groups=args.moment_groups, dtype=args.dtype,
                   device=args.device, batch_size=args.batch_size, device_map=args.device_map,
                   trust_remote_code=args.trust_remote_code)

    def resolved(self) -> tuple[torch.device, torch.dtype]:
        from brittle.runtime import resolve_device, resolve_dtype

        device = resolve_device(self.device)
        return device, resolve_dtype(self.dtype, device)


def split_texts(args) -> dict[str, list[str]]:
    """``{"forget": [...], "retain": [...]}`` from the shared flags."""
    return {"forget": read_texts(args.forget_file, args.max_samples),
            "retain": read_texts(args.retain_file, args.max_samples)}


def step_params(args, splits: dict[str, list[str]]) -> dict:
    """A step's parameters for its done-marker: its flags (not where results or caches go)
    plus a hash of the texts, so edited text files recompute."""
    skip = {"force", "outdir", "output_root", "cache_dir"}
    params = {k: v for k, v in vars(args).items() if k not in skip}
    params["texts_sha"] = {s: _hash(t) for s, t in splits.items()}
    return params


def cache_root(args) -> Path:
    return Path(args.cache_dir) if getattr(args, "cache_dir", None) else Path(args.output_root) / "_activation_cache"


# ----------------------------------------------------------------------------------------- keys
def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_key(model: str, revision: str | None, texts: list[str], cfg: CaptureConfig) -> str:
    _, dtype = cfg.resolved()
    ident = str(Path(model).resolve()) if Path(model).is_dir() else str(model)
    return _hash({"v": CACHE_VERSION, "model": ident, "revision": revision, "files": weights_fingerprint(model),
                  "dtype": str(dtype), "max_length": cfg.max_length, "groups": cfg.moment_groups,
                  "texts": _hash(texts)})


# ----------------------------------------------------------------------------------------- results
class ModelCapture:
    """Read side of one (model, split) cache entry. Arrays load lazily, on CPU."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.meta = json.loads((self.path / "meta.json").read_text())
        self._per_text = None

    @property
    def per_text(self) -> dict[str, torch.Tensor]:
        if self._per_text is None:
            self._per_text = torch.load(self.path / "per_text.pt", weights_only=True)
        return self._per_text

    @property
    def n_tokens(self) -> np.ndarray:
        """(n_texts,) non-pad tokens per text."""
        return self.per_text["n_tokens"].numpy()

    @property
    def norm_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-text sums over tokens of ‖h‖₁ and ‖h‖₂, each (n_texts, L+1) float64."""
        return self.per_text["norm_l1"].numpy(), self.per_text["norm_l2"].numpy()

    @property
    def last_token(self) -> np.ndarray:
        """(n_texts, L+1, d) float32: each text's last non-pad token state per layer."""
        return self.per_text["last_token"].numpy()

    def moments(self, kind: str = "hidden") -> dict[str, torch.Tensor]:
        """Group moments stacked over groups: ``count`` (G,), ``sum`` (G, K, d) float64,
        ``sq`` (G, K, d, d) float64 (K = L+1 hidden layers, or one slot per MLP layer)."""
        groups = self.meta["moment_groups_written"]
        if groups == 0:
            raise UserError(f"{self.path} was captured without moments (--moment-groups 0)")
        parts = [torch.load(self.path / f"moments_g{g}.pt", weights_only=True)[kind] for g in range(groups)]
        return {"count": torch.tensor([p["count"] for p in parts], dtype=torch.float64),
                "sum": torch.stack([p["sum"] for p in parts]).double(),
                "sq": torch.stack([p["sq"] for p in parts]).double()}


class PairCapture:
    """Read side of a pair entry: per-text sums of ‖h_b − h_a‖ per layer."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.meta = json.loads((self.path / "meta.json").read_text())
        data = torch.load(self.path / "dh.pt", weights_only=True)
        self.n_tokens = data["n_tokens"].numpy()
        self.dh_l1 = data["dh_l1"].numpy()  # (n_texts, L+1) float64
        self.dh_l2 = data["dh_l2"].numpy()


@dataclass
class ModelSpec:
    model: str
    revision: str | None = None


@dataclass
class Captures:
    """What :func:`ensure_captures` returns: ``models[i][split]`` and ``pair[split]``."""
    models: list[dict[str, ModelCapture]]
    pair: dict[str, PairCapture] = field(default_factory=dict)
    forward_tokens: int = 0      # padded tokens run through a model by this call (0 if all cached)
    seconds: float = 0.0


# ----------------------------------------------------------------------------------------- hooks
class _Hooks:
    """Hooks that hand each hidden-state layer and each MLP input of one forward to ``sink``.

    ``sink(kind, index, tensor)``; kind is "hidden" (index 0..L−1; layer L comes from the
    decoder output) or "mlp" (index = slot of the layer's MLP). Removed in ``close`` (always call
    it, e.g. through ``with``).
    """

    def __init__(self, model: nn.Module, sink, mlp: bool):
        _, blocks = find_layer_list(model)
        self.handles = []

        def pre_block0(_mod, args, kwargs):
            sink("hidden", 0, args[0] if args else kwargs["hidden_states"])

        def post_block(i):
            def hook(_mod, _args, out):
                sink("hidden", i + 1, out[0] if isinstance(out, tuple) else out)
            return hook

        try:
            self.handles.append(blocks[0].register_forward_pre_hook(pre_block0, with_kwargs=True))
            for i in range(len(blocks) - 1):  # the last block's state is taken after the final norm
                self.handles.append(blocks[i].register_forward_hook(post_block(i)))
            if mlp:
                for slot, (_, mod) in enumerate(mlp_slots(model)):
                    def pre_mlp(_mod, args, kwargs, slot=slot):
                        sink("mlp", slot, args[0] if args else next(iter(kwargs.values())))
                    self.handles.append(mod.register_forward_pre_hook(pre_mlp, with_kwargs=True))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def mlp_slots(model: nn.Module) -> list[tuple[list[str], nn.Module]]:
    """One slot per layer with MLP input linears: (all their qualified names, the first module).

    Raises UserError when the model has none (a step must not silently analyse nothing).
    """
    by_layer: dict[int, list] = {}
    for layer, name, mod in mlp_input_linears(model):
        by_layer.setdefault(layer, []).append((name, mod))
    if not by_layer:
        raise UserError(f"no MLP input linears recognised in {type(model).__name__}")
    return [([n for n, _ in by_layer[k]], by_layer[k][0][1]) for k in sorted(by_layer)]


def hidden_states(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """All L+1 hidden states of one batch through the hooks (for tests and small inputs)."""
    found: dict[int, torch.Tensor] = {}
    with _Hooks(model, lambda kind, i, t: found.__setitem__(i, t.detach()), mlp=False), torch.no_grad():
        out = model.base_model(input_ids=input_ids, attention_mask=attention_mask)
    found[len(found)] = out.last_hidden_state
    return [found[i] for i in range(len(found))]


# ----------------------------------------------------------------------------------------- accumulators
class _ModelAccumulator:
    """Streaming per-text sums, last-token states and per-group moments of one model and split."""

    def __init__(self, n_texts: int, n_layers: int, dim: int, n_mlp: int, mlp_dim: int, tmp: Path):
        self.tmp, self.n_layers, self.dim, self.n_mlp, self.mlp_dim = tmp, n_layers, dim, n_mlp, mlp_dim
        self.n_tokens = torch.zeros(n_texts, dtype=torch.int64)
        self.l1 = torch.zeros(n_texts, n_layers, dtype=torch.float64)
        self.l2 = torch.zeros(n_texts, n_layers, dtype=torch.float64)
        self.last = torch.zeros(n_texts, n_layers, dim, dtype=torch.float32)
        self.groups_written = 0
        self._new_group()

    def _new_group(self):
        self.hidden = [StreamingMoments(self.dim) for _ in range(self.n_layers)]
        self.mlp = [StreamingMoments(self.mlp_dim) for _ in range(self.n_mlp)]

    def start_batch(self, idx: torch.Tensor, mask: torch.Tensor):
        self.idx, self.mask = idx, mask.bool()
        self.n_tokens[idx] = self.mask.sum(1).cpu()
        last = (self.mask.long() * torch.arange(mask.shape[1])).argmax(1)  # last non-pad position
        self.last_pos = last
        self._masks: dict[torch.device, tuple] = {}

    def _mask_on(self, device):
        if device not in self._masks:
            self._masks[device] = (self.mask.to(device), self.last_pos.to(device))
        return self._masks[device]

    def hidden_state(self, layer: int, h: torch.Tensor):
        mask, last = self._mask_on(h.device)
        hf = h.float()
        self.l1[self.idx, layer] = (hf.abs().sum(-1) * mask).sum(1).double().cpu()
        self.l2[self.idx, layer] = (hf.norm(dim=-1) * mask).sum(1).double().cpu()
        self.last[self.idx, layer] = hf[torch.arange(hf.shape[0], device=hf.device), last].cpu()
        self.hidden[layer].update(hf[mask])

    def mlp_input(self, slot: int, x: torch.Tensor):
        mask, _ = self._mask_on(x.device)
        self.mlp[slot].update(x.float()[mask])

    def end_group(self):
        def pack(moments: list[StreamingMoments], dim: int) -> dict:
            count = moments[0].count if moments else 0
            if count == 0:
                zeros = torch.zeros(len(moments), dim, dtype=torch.float64)
                return {"count": 0, "sum": zeros, "sq": torch.zeros(len(moments), dim, dim)}
            return {"count": count, "sum": torch.stack([m.sum.cpu() for m in moments]),
                    "sq": torch.stack([m.sq.cpu().float() for m in moments])}
        torch.save({"hidden": pack(self.hidden, self.dim), "mlp": pack(self.mlp, self.mlp_dim)},
                   self.tmp / f"moments_g{self.groups_written}.pt")
        self.groups_written += 1
        self._new_group()

    def save(self):
        torch.save({"n_tokens": self.n_tokens, "norm_l1": self.l1, "norm_l2": self.l2, "last_token": self.last},
                   self.tmp / "per_text.pt")


class _PairAccumulator:
    """Per-text sums of ‖h_b − h_a‖₁ and ‖h_b − h_a‖₂ from A's stashed states of the batch."""

    def __init__(self, n_texts: int, n_layers: int):
        self.n_tokens = torch.zeros(n_texts, dtype=torch.int64)
        self.l1 = torch.zeros(n_texts, n_layers, dtype=torch.float64)
        self.l2 = torch.zeros(n_texts, n_layers, dtype=torch.float64)
        self.stash: dict[int, torch.Tensor] = {}

    def start_batch(self, idx, mask):
        self.idx, self.mask = idx, mask.bool()
        self.n_tokens[idx] = self.mask.sum(1)
        self.stash.clear()

    def from_a(self, layer, h):
        self.stash[layer] = h.detach()

    def from_b(self, layer, h):
        diff = h.float() - self.stash.pop(layer).to(h.device).float()
        mask = self.mask.to(h.device)
        self.l1[self.idx, layer] = (diff.abs().sum(-1) * mask).sum(1).double().cpu()
        self.l2[self.idx, layer] = (diff.norm(dim=-1) * mask).sum(1).double().cpu()


# ----------------------------------------------------------------------------------------- the pass
def _batches(token_ids: list[list[int]], groups: int, batch_size: int) -> Iterator[tuple[int, list[int], bool]]:
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


def pad_batch(token_ids: list[list[int]], chunk: list[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention_mask)``, both (len(chunk), longest) int64."""
    width = max(len(token_ids[i]) for i in chunk)
    ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(chunk), width), dtype=torch.long)
    for row, i in enumerate(chunk):
        ids[row, :len(token_ids[i])] = torch.tensor(token_ids[i])
        mask[row, :len(token_ids[i])] = 1
    return ids, mask


def tokenize_texts(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids of each text, truncated to ``max_length``; a text with no tokens is a UserError."""
    ids = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    empty = [i for i, x in enumerate(ids) if not x]
    if empty:
        raise UserError(f"{len(empty)} text(s) tokenize to nothing (first: line {empty[0] + 1})")
    return ids


def _input_device(model: nn.Module, device: torch.device) -> torch.device:
    emb = model.get_input_embeddings()
    return emb.weight.device if emb is not None else device


def _dims(model: nn.Module) -> tuple[int, int, int, int]:
    """(hidden layers L+1, hidden width, MLP slots, MLP input width)."""
    _, blocks = find_layer_list(model)
    slots = mlp_slots(model)
    w = slots[0][1].weight
    mlp_dim = w.shape[0] if type(slots[0][1]).__name__ == "Conv1D" else w.shape[1]
    return len(blocks) + 1, model.config.hidden_size, len(slots), mlp_dim


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
        pair_dirs = {s: pair_root / f"{s}-{_hash([keys[0][s], keys[1][s]])}" for s in splits}
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
    caps = Captures(models=[{s: ModelCapture(d[s]) for s in splits} for d in model_dirs],
                    pair={s: PairCapture(p) for s, p in pair_dirs.items()},
                    forward_tokens=total_tokens, seconds=time.time() - t0)
    return caps


def _run_split(specs, models, tokenizers, texts, cfg, split, model_dirs, pair_dir, device, progress) -> int:
    """One pass over ``texts`` with every model in lockstep; writes the missing cache entries."""
    from tqdm.auto import tqdm

    token_ids = tokenize_texts(tokenizers[0], texts, cfg.max_length)
    for tok, spec in zip(tokenizers[1:], specs[1:]):
        if tokenize_texts(tok, texts, cfg.max_length) != token_ids:
            raise UserError(f"{specs[0].model} and {spec.model} tokenize the texts differently; "
                            "activation comparisons need one tokenizer")
    dims = [_dims(m) for m in models]
    if len(set(d[:2] for d in dims)) != 1:
        raise UserError(f"models have different layer counts or widths: {[d[:2] for d in dims]}")
    n_layers = dims[0][0]
    pad_id = tokenizers[0].pad_token_id if tokenizers[0].pad_token_id is not None else 0
    want = [not (d / "meta.json").exists() for d in model_dirs]
    tmps = [Path(tempfile.mkdtemp(prefix=f".{d.name}.", dir=_mkdir(d.parent))) if w else None
            for d, w in zip(model_dirs, want)]
    accs = [_ModelAccumulator(len(texts), *dims[i][:2], *dims[i][2:], tmps[i]) if want[i] else None
            for i in range(len(models))]
    pair_acc = _PairAccumulator(len(texts), n_layers) if pair_dir is not None else None
    t0, n_forward = time.time(), 0
    hooks = []
    try:
        for i, model in enumerate(models):
            hooks.append(_Hooks(model, _sink(i, accs[i], pair_acc), mlp=accs[i] is not None))
        run = [i for i in range(len(models)) if accs[i] is not None or pair_acc is not None]
        batches = list(_batches(token_ids, cfg.moment_groups or 1, cfg.batch_size))
        with torch.no_grad():
            for group, chunk, group_done in tqdm(batches, desc=f"capture {split}", disable=not progress, leave=False):
                ids, mask = pad_batch(token_ids, chunk, pad_id)
                idx = torch.tensor(chunk)
                for acc in [*accs, pair_acc]:
                    if acc is not None:
                        acc.start_batch(idx, mask)
                for i in run:
                    dev = _input_device(models[i], device)
                    out = models[i].base_model(input_ids=ids.to(dev), attention_mask=mask.to(dev))
                    _sink(i, accs[i], pair_acc)("hidden", n_layers - 1, out.last_hidden_state)
                    n_forward += ids.numel()
                if group_done and cfg.moment_groups > 0:
                    for acc in accs:
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
                "n_layers": n_layers, "hidden_size": dims[i][1], "mlp_input_size": dims[i][3],
                "mlp_modules": [names for names, _ in mlp_slots(models[i])],
                "moment_groups_written": acc.groups_written, "config": cfg.__dict__,
                "forward_tokens": n_forward // len(run), "seconds": round(seconds, 3),
                "layer_indexing": "0 = embeddings (block 0 input); i = block i-1 output; last = final-normed"})
            _publish(tmps[i], model_dirs[i])
        if pair_acc is not None:
            tmp = Path(tempfile.mkdtemp(prefix=f".{pair_dir.name}.", dir=_mkdir(pair_dir.parent)))
            torch.save({"n_tokens": pair_acc.n_tokens, "dh_l1": pair_acc.l1, "dh_l2": pair_acc.l2}, tmp / "dh.pt")
            write_json(tmp / "meta.json", {"version": CACHE_VERSION, "model_a": specs[0].model,
                                           "model_b": specs[1].model, "split": split, "n_texts": len(texts),
                                           "forward_tokens": n_forward, "seconds": round(seconds, 3)})
            _publish(tmp, pair_dir)
    finally:
        for h in hooks:
            h.close()
        for t in tmps:
            if t is not None and t.exists():
                shutil.rmtree(t, ignore_errors=True)
    return n_forward


def _sink(i: int, acc: _ModelAccumulator | None, pair_acc: _PairAccumulator | None):
    def sink(kind, index, tensor):
        if kind == "mlp":
            if acc is not None:
                acc.mlp_input(index, tensor)
            return
        if acc is not None:
            acc.hidden_state(index, tensor)
        if pair_acc is not None:
            (pair_acc.from_a if i == 0 else pair_acc.from_b)(index, tensor)
    return sink


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _publish(tmp: Path, final: Path) -> None:
    """Move a finished temporary folder into place (atomic rename); a concurrent winner is kept."""
    try:
        os.replace(tmp, final)
    except OSError:
        if not (final / "meta.json").exists():
            raise
