"""Paired weight streaming: the tensors of two checkpoints, one pair in memory at a time.

Two 6.9B checkpoints are 27 GB in bf16 and do not fit a 24 GiB machine together, so weight-space
steps never load models. They read model A shard by shard, each shard's tensors in the order
they are laid out on disk (sequential reads, no shard read twice), fetch the same-named tensor
from model B, and upcast both to float32 *before* any arithmetic (subtracting in bf16 gets
0.005–5 % of the elements wrong).

Tensors are read with plain positioned file reads from the safetensors header offsets rather than
through a memory map, so pages of finished tensors do not stay in the process's resident set.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from brittle.errors import UserError, require_finite
from brittle.models import checkpoint_files

# safetensors dtype codes -> torch dtypes
_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


def stored_itemsize(code: str) -> int:
    """Bytes per entry of a safetensors dtype code (e.g. 2 for "BF16")."""
    if code not in _ST_DTYPES:
        raise UserError(f"unsupported safetensors dtype {code}")
    return _ST_DTYPES[code].itemsize


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str          # safetensors code, e.g. "BF16"
    shape: tuple[int, ...]
    start: int          # absolute byte offset in the file
    end: int
    path: Path


def read_header(path: Path) -> list[TensorEntry]:
    """Entries of one ``.safetensors`` file, sorted by their byte offset (on-disk order)."""
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    base = 8 + n
    entries = [
        TensorEntry(name, meta["dtype"], tuple(meta["shape"]), base + meta["data_offsets"][0],
                    base + meta["data_offsets"][1], Path(path))
        for name, meta in header.items() if name != "__metadata__"
    ]
    return sorted(entries, key=lambda e: e.start)


def read_tensor(entry: TensorEntry, fh=None) -> torch.Tensor:
    """Read one tensor (its stored dtype) with a positioned read; ``fh`` may be an open file."""
    if entry.dtype not in _ST_DTYPES:
        raise UserError(f"unsupported safetensors dtype {entry.dtype} for tensor {entry.name}")
    own = fh is None
    fh = open(entry.path, "rb") if own else fh
    try:
        fh.seek(entry.start)
        buf = bytearray(entry.end - entry.start)
        fh.readinto(buf)
    finally:
        if own:
            fh.close()
    if not buf:
        return torch.empty(entry.shape, dtype=_ST_DTYPES[entry.dtype])
    return torch.frombuffer(buf, dtype=torch.uint8).view(_ST_DTYPES[entry.dtype]).reshape(entry.shape)


class WeightPairs:
    """Iterate ``(name, W_a, W_b)`` over two checkpoints of one architecture, float32 on CPU.

    ``len()`` is the number of pairs (for progress bars). A tensor holding NaN or Inf is a
    :class:`UserError` naming it (statistics of a broken checkpoint are not results). ``matrices_only`` keeps 2-D tensors;
    ``select(name, shape) -> bool`` keeps a subset (the others are never read). Raises
    :class:`UserError` naming the tensors when names, shapes or configs disagree.

    Each yielded pair is a fresh pair of tensors the caller may modify in place (e.g. turn W_b
    into ΔW). Drop your references before asking for the next pair (``del w_a, w_b`` at the end
    of the loop body), or two pairs are alive at once.
    """

    def __init__(self, model_a: str, model_b: str, revision_a: str | None = None,
                 revision_b: str | None = None, matrices_only: bool = False,
                 select: Callable[[str, tuple[int, ...]], bool] | None = None):
        self.model_a, self.model_b = str(model_a), str(model_b)
        files_a = checkpoint_files(self.model_a, revision_a)
        files_b = checkpoint_files(self.model_b, revision_b)
        _check_same_architecture(self.model_a, files_a[0].parent, self.model_b, files_b[0].parent)
        self.entries_a = [e for f in files_a for e in read_header(f)]
        self.entries_b = {e.name: e for f in files_b for e in read_header(f)}
        names_a = {e.name for e in self.entries_a}
        only_a = sorted(names_a - set(self.entries_b))
        only_b = sorted(set(self.entries_b) - names_a)
        if only_a or only_b:
            raise UserError(
                f"{self.model_a} and {self.model_b} hold different tensors: "
                f"only in A: {_few(only_a)}; only in B: {_few(only_b)}")
        for e in self.entries_a:
            other = self.entries_b[e.name]
            if e.shape != other.shape:
                raise UserError(f"tensor {e.name} has shape {list(e.shape)} in {self.model_a} "
                                f"but {list(other.shape)} in {self.model_b}")
        if matrices_only:
            self.entries_a = [e for e in self.entries_a if len(e.shape) == 2]
        if select is not None:
            self.entries_a = [e for e in self.entries_a if select(e.name, e.shape)]
        self.config = _read_config(files_a[0].parent)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """``{name: shape}`` of the pairs this iterator yields, in yield order (nothing is read)."""
        return {e.name: e.shape for e in self.entries_a}

    def __len__(self) -> int:
        return len(self.entries_a)

    @property
    def stored_dtypes(self) -> tuple[set[str], set[str]]:
        names = {e.name for e in self.entries_a}
        return ({e.dtype for e in self.entries_a},
                {e.dtype for n, e in self.entries_b.items() if n in names})

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
        for name, raw_a, raw_b in self.stored():
            w_a, w_b = self.upcast(name, raw_a, raw_b)
            del raw_a, raw_b
            yield name, w_a, w_b
            del w_a, w_b  # so the next pair is not read while this one is still alive

    def upcast(self, name: str, raw_a: torch.Tensor, raw_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A pair from :meth:`stored` as fresh float32 tensors, checked for NaN/Inf."""
        w_a, w_b = raw_a.float(), raw_b.float()
        for tensor, model in ((w_a, self.model_a), (w_b, self.model_b)):
            self.check_finite(tensor, name, model)
        return w_a, w_b

    @staticmethod
    def check_finite(tensor: torch.Tensor, name: str, model: str) -> None:
        """:class:`UserError` naming tensor ``name`` of ``model`` when ``tensor`` (all of it or
        one of its blocks) holds NaN or Inf."""
        require_finite(tensor, f"tensor {name} of {model}", "the checkpoint is broken; retrain or re-download it")

    def stored(self) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
        """``(name, A's tensor, B's tensor)`` in their stored dtype, unchecked, in the same order
        as iterating the object: for callers that upcast large matrices in row blocks (a bf16
        matrix stays at 2 bytes an entry). Check what you upcast with :meth:`check_finite`."""
        handles: dict[Path, object] = {}
        try:
            current = None
            for entry in self.entries_a:
                if entry.path != current:  # A's shards are visited once, in order
                    if current is not None:
                        handles.pop(current).close()
                    current = entry.path
                    handles[current] = open(current, "rb")
                other = self.entries_b[entry.name]
                if other.path not in handles:
                    handles[other.path] = open(other.path, "rb")
                raw_a = read_tensor(entry, handles[entry.path])
                raw_b = read_tensor(other, handles[other.path])
                yield entry.name, raw_a, raw_b
                del raw_a, raw_b
        finally:
            for fh in handles.values():
                fh.close()


def _few(names: list[str], k: int = 5) -> str:
    if not names:
        return "none"
    more = f" (+{len(names) - k} more)" if len(names) > k else ""
    return ", ".join(names[:k]) + more


_ARCH_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size",
              "num_attention_heads", "vocab_size")


def _read_config(root: Path) -> dict:
    cfg = root / "config.json"
    return json.loads(cfg.read_text()) if cfg.exists() else {}


# Model families whose linear layers are GPT-2 ``Conv1D`` modules, stored as (in, out) instead of
# nn.Linear's (out, in).
_CONV1D_MODEL_TYPES = {"gpt2", "openai-gpt"}


def stored_transposed(config: dict, name: str) -> bool:
    """True when the 2-D tensor ``name`` is stored (in_features, out_features) (GPT-2 Conv1D):
    transpose it to read rows as outputs. Embeddings and heads are stored as nn.Linear/Embedding."""
    if config.get("model_type") not in _CONV1D_MODEL_TYPES:
        return False
    return any(part in name.split(".") for part in ("c_attn", "c_proj", "c_fc"))


def _check_same_architecture(name_a: str, root_a: Path, name_b: str, root_b: Path) -> None:
    cfg_a, cfg_b = root_a / "config.json", root_b / "config.json"
    if not (cfg_a.exists() and cfg_b.exists()):
        return  # tensor names and shapes are still checked
    a, b = json.loads(cfg_a.read_text()), json.loads(cfg_b.read_text())
    diffs = [f"{k}: {a.get(k)} vs {b.get(k)}" for k in _ARCH_KEYS if a.get(k) != b.get(k)]
    if diffs:
        raise UserError(f"{name_a} and {name_b} are different architectures ({'; '.join(diffs)})")


def parameter_distance(model_a: str, model_b: str, revision_a: str | None = None,
                       revision_b: str | None = None) -> float:
    """‖θ_b − θ_a‖₂ over every tensor of two checkpoints (float64 sum of squares, one pair in
    memory at a time)."""
    import math

    total = 0.0
    for _, w_a, w_b in WeightPairs(model_a, model_b, revision_a, revision_b):
        total += float(((w_b.double() - w_a.double()) ** 2).sum())
        del w_a, w_b
    return math.sqrt(total)
