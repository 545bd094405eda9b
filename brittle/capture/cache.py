"""The activation cache on disk: its keys, its layout and its read side.

One entry per (model, split) in ``<cache>/<model_slug>/<split>-<key>/``:

- ``per_text.pt``: per text, its non-pad token count, the sums over its tokens of ‖h‖₁ and ‖h‖₂
  per hidden state (n, L+1) float64, and its last non-pad token's state (n, L+1, d) float32.
- ``moments_g<k>.pt``: for text group k (contiguous blocks of texts), token count, Σh (K, d)
  and Σhhᵀ of the K hidden states that are moment layers (``--moment-layers``,
  ``brittle.moment_layers``), and the same for the MLP input of each block that reads one; each
  Σhhᵀ is stored as its upper triangle, d(d+1)/2 float32 (``brittle.moments.pack_symmetric``).
  Bootstrap intervals of covariance-derived numbers resample these groups (``--moment-groups``).
- ``meta.json``: model, texts, shapes, module names, forward tokens and seconds.

A pair entry ``<cache>/_pairs/<slug_a>__vs__<slug_b>/<split>-<key>/`` holds ``dh.pt``, per-text sums
of ‖h_b − h_a‖₁ and ‖h_b − h_a‖₂, and ``cross_g<k>.pt``, per text group the cross-moment
Σ h_a h_bᵀ (K, d, d) of the two models' hidden states on the same tokens at the moment layers
(linear CKA). The key hashes everything that changes the numbers: the model and its weights'
fingerprint, the dtype, the length limit, the group count, the moment layers and the texts. Entries are
written to a temporary folder and renamed into place, so a killed pass leaves no entry (and its
temporary folder is swept by the next pass).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from brittle.errors import UserError
from brittle.io import json_digest, weights_fingerprint
from brittle.moment_layers import DEFAULT_MOMENT_LAYERS, parse_spec
from brittle.moments import unpack_symmetric

# 3: second moments packed as upper triangles, kept at the moment layers only.
CACHE_VERSION = 3
# Layout of pair entries, part of their key: 2 added the cross-moments (cross_g<k>.pt), 3 keeps
# them at the moment layers only. Bumping it alone re-runs the pair pass without invalidating the
# per-model entries.
PAIR_LAYOUT = 3
SPLITS = ("forget", "retain")


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
    moment_layers: str = DEFAULT_MOMENT_LAYERS     # a spec of brittle.moment_layers, normalised

    @classmethod
    def from_args(cls, args) -> "CaptureConfig":
        return cls(max_length=args.max_length, moment_groups=args.moment_groups, dtype=args.dtype,
                   device=args.device, batch_size=args.batch_size, device_map=args.device_map,
                   trust_remote_code=args.trust_remote_code,
                   moment_layers=parse_spec(getattr(args, "moment_layers", DEFAULT_MOMENT_LAYERS)))

    def resolved(self) -> tuple[torch.device, torch.dtype]:
        from brittle.runtime import resolve_device, resolve_dtype

        device = resolve_device(self.device)
        return device, resolve_dtype(self.dtype, device)


def entry_bytes(n_texts: int, n_hidden_states: int, dim: int, n_mlp: int, mlp_dim: int, groups: int,
                hidden_moments: int | None = None, mlp_moments: int | None = None) -> int:
    """Bytes of the arrays in one (model, split) cache entry (file headers add 2-3 KB per file).

    ``per_text.pt``: n·8 (token counts, int64) + 2·n·(L+1)·8 (norm sums, float64)
    + n·(L+1)·d·4 (last-token states, float32), for every hidden state; each of the ``groups``
    moment files: K·(d·8 + d(d+1)/2·4) for the K = ``hidden_moments`` moment layers (default all
    L+1) and K_m·(m·8 + m(m+1)/2·4) for the K_m = ``mlp_moments`` MLP inputs that read one
    (default all ``n_mlp``); sums in float64, second moments as float32 upper triangles. At the
    Pythia-6.9B layout (L = 32, d = m = 4096, 500 texts, 10 groups) and the default 7 moment
    layers (6 MLP inputs): 4.6 GB; with every layer, 22.1 GB. ``groups = 0`` writes no moment
    files."""
    hidden_moments = n_hidden_states if hidden_moments is None else hidden_moments
    mlp_moments = n_mlp if mlp_moments is None else mlp_moments
    per_text = n_texts * 8 + 2 * n_texts * n_hidden_states * 8 + n_texts * n_hidden_states * dim * 4
    per_group = (hidden_moments * (dim * 8 + dim * (dim + 1) // 2 * 4)
                 + mlp_moments * (mlp_dim * 8 + mlp_dim * (mlp_dim + 1) // 2 * 4))
    return per_text + groups * per_group


def pair_entry_bytes(n_texts: int, n_hidden_states: int, dim: int, groups: int, cross_moments: int | None = None) -> int:
    """Bytes of the arrays in one pair entry (headers add 2-3 KB per file).

    ``dh.pt``: n·8 (token counts) + 2·n·(L+1)·8 (difference norm sums, float64); each of the
    ``groups`` cross-moment files: K·d²·4 (Σ h_a h_bᵀ in float32, whole: it is not symmetric) for
    the K = ``cross_moments`` moment layers (default all L+1). Only the hidden width d enters,
    never the MLP width. At the Pythia-6.9B layout (d = 4096, 10 groups) and the default 7
    moment layers: 4.7 GB per split; with every layer, 22.1 GB."""
    cross_moments = n_hidden_states if cross_moments is None else cross_moments
    return n_texts * 8 + 2 * n_texts * n_hidden_states * 8 + groups * cross_moments * dim * dim * 4


@dataclass
class ModelSpec:
    model: str
    revision: str | None = None


def cache_root(args) -> Path:
    """``--cache-dir``, or ``<output-root>/_activation_cache``."""
    return Path(args.cache_dir) if getattr(args, "cache_dir", None) else Path(args.output_root) / "_activation_cache"


def model_key(model: str, revision: str | None, texts: list[str], cfg: CaptureConfig) -> str:
    _, dtype = cfg.resolved()
    ident = str(Path(model).resolve()) if Path(model).is_dir() else str(model)
    return json_digest({"v": CACHE_VERSION, "model": ident, "revision": revision, "files": weights_fingerprint(model),
                        "dtype": str(dtype), "max_length": cfg.max_length, "groups": cfg.moment_groups,
                        "moment_layers": cfg.moment_layers, "texts": json_digest(texts)})


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
        """(n_texts, L+1, d) float32: each text's last non-pad token state per hidden state."""
        return self.per_text["last_token"].numpy()

    def moment_index(self, kind: str = "hidden") -> list[int]:
        """The hidden states (``kind="hidden"``) or MLP slots (``"mlp"``) that have moments."""
        return list(self.meta["moment_layers" if kind == "hidden" else "mlp_moment_slots"])

    def moments(self, kind: str = "hidden", index: int | None = None) -> dict[str, torch.Tensor]:
        """Group moments stacked over groups: ``count`` (G,), ``sum`` (G, K, d) float64,
        ``sq`` (G, K, d, d) float64 and ``index``, the K hidden states (or MLP slots) with moments
        (:meth:`moment_index`; every one unless ``--moment-layers`` dropped some).
        ``index``: only that hidden state (or slot), ``sum`` (G, d) and ``sq`` (G, d, d), a
        UserError if it has none; the files are memory-mapped, so one layer of a large model is
        read without the others."""
        groups = self.meta["moment_groups_written"]
        if groups == 0:
            raise UserError(f"{self.path} was captured without moments (--moment-groups 0)")
        kept = self.moment_index(kind)
        if index is not None and index not in kept:
            what = "hidden state" if kind == "hidden" else "MLP slot"
            raise UserError(f"{what} {index} has no moments in {self.path} (moment layers "
                            f"{self.meta['config']['moment_layers']}); use --moment-layers all")
        pick = (lambda t: t) if index is None else (lambda t: t[kept.index(index)])
        parts = [torch.load(self.path / f"moments_g{g}.pt", weights_only=True, mmap=True)[kind] for g in range(groups)]
        width = self.meta["hidden_size" if kind == "hidden" else "mlp_input_size"]
        return {"count": torch.tensor([p["count"] for p in parts], dtype=torch.float64),
                "sum": torch.stack([pick(p["sum"]) for p in parts]).double(),
                "sq": unpack_symmetric(torch.stack([pick(p["sq"]) for p in parts]), width).double(),
                "index": kept if index is None else [index]}


class PairCapture:
    """Read side of a pair entry: per-text sums of ‖h_b − h_a‖ per hidden state."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.meta = json.loads((self.path / "meta.json").read_text())
        data = torch.load(self.path / "dh.pt", weights_only=True)
        self.n_tokens = data["n_tokens"].numpy()
        self.dh_l1 = data["dh_l1"].numpy()  # (n_texts, L+1) float64
        self.dh_l2 = data["dh_l2"].numpy()

    def cross_moments(self, index: int | None = None) -> dict[str, torch.Tensor]:
        """Per text group (the same groups as the model entries' moments): ``count`` (G,) tokens
        and ``cross`` (G, K, d, d) float64, Σ h_a h_bᵀ at the K moment layers (``meta["moment_layers"]``);
        with ``index``, (G, d, d) of that hidden state only (memory-mapped reads), a UserError if
        it has none."""
        groups = self.meta.get("moment_groups_written", 0)
        if groups == 0:
            raise UserError(f"{self.path} was captured without cross-moments (--moment-groups 0)")
        kept = self.meta["moment_layers"]
        if index is not None and index not in kept:
            raise UserError(f"hidden state {index} has no cross-moments in {self.path} "
                            f"(moment layers {kept}); use --moment-layers all")
        parts = [torch.load(self.path / f"cross_g{g}.pt", weights_only=True, mmap=True) for g in range(groups)]
        pos = None if index is None else kept.index(index)
        return {"count": torch.tensor([p["count"] for p in parts], dtype=torch.float64),
                "cross": torch.stack([p["cross"] if pos is None else p["cross"][pos] for p in parts]).double()}


@dataclass
class Captures:
    """What :func:`brittle.capture.ensure_captures` returns: ``models[i][split]`` and ``pair[split]``."""

    models: list[dict[str, ModelCapture]]
    pair: dict[str, PairCapture] = field(default_factory=dict)
    forward_tokens: int = 0      # padded tokens run through a model by this call (0 if all cached)
    seconds: float = 0.0


def publish(tmp: Path, final: Path) -> None:
    """Move a finished temporary folder into place (atomic rename); a concurrent winner is kept."""
    try:
        os.replace(tmp, final)
    except OSError:
        if not (final / "meta.json").exists():
            raise
