"""Results of one model alone (or of the texts alone), kept on disk so that the comparison steps
compute them once.

A pair step (A vs B) computes some numbers from one model only: model A's perturbation
statistics (Lipschitz step), its hidden states of the layer-wise analysis, its separation
metrics, its loss at the α = 0 end of the mode-connectivity path. The pipeline compares one base
model with every unlearned model, so without a store these are recomputed for every B. An entry
is a ``.npz`` of named numpy arrays in ``<output-root>/_model_results/<model_slug>/<step>-<key>.npz``;
the key hashes everything that changes the numbers: the step, the model id and revision, its
weights' fingerprint (names, sizes and modification times of its safetensors,
:func:`brittle.io.weights_fingerprint`, so a retrained model misses), the versions of Python and
the tracked libraries (an upgraded torch or scikit-learn may round differently), a layout
version, and the step's own ``spec`` (texts, flags, seed, and the device where a forward pass is
involved, whose rounding differs between CPU and GPU; the batch size where it seeds noise or
could change the bits). A model with no local weights folder (a Hub id) is never stored: its
fingerprint cannot tell a changed upload. Results that depend on no model at all (the separation
step's words-only baseline) pass ``model=None`` and live in ``_texts/``; their spec must then
name every input (e.g. the texts' digest). ``--force`` recomputes a step's result from these entries; delete the
folder to recompute them too.

Entries are written through :func:`brittle.io.atomic_path`, so a killed run leaves none, and read
with ``allow_pickle=False`` (arrays only, no code).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np

from brittle.io import atomic_path, json_digest, library_versions, model_slug, weights_fingerprint

FOLDER = "_model_results"
NO_MODEL = "_texts"
# Part of every key: bump it when what an entry holds changes meaning, and old entries miss.
LAYOUT = 1


def array_digest(*arrays) -> str:
    """SHA-256 (hex) of arrays' dtypes, shapes and bytes: a spec entry for numbers a result is
    computed from (e.g. cached activations)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def entry_path(output_root, step: str, model: str | None, revision: str | None, spec: dict) -> Path | None:
    """Where the entry of (step, model, spec) lives, or None when the model cannot be keyed."""
    if model is None:
        key = json_digest({"layout": LAYOUT, "step": step, "spec": spec, "libraries": library_versions()})
        return Path(output_root) / FOLDER / NO_MODEL / f"{step}-{key}.npz"
    fingerprint = weights_fingerprint(model)
    if fingerprint is None:
        return None
    key = json_digest({"layout": LAYOUT, "step": step, "model": str(model), "revision": revision,
                       "weights": fingerprint, "spec": spec, "libraries": library_versions()})
    return Path(output_root) / FOLDER / model_slug(model) / f"{step}-{key}.npz"


def cached(output_root, step: str, model: str | None, revision: str | None, spec: dict,
           compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The stored arrays of (step, model, spec), or ``compute()``'s, stored for the next run.

    ``compute`` returns named arrays (a scalar as a 0-d array); they come back with the same
    names, dtypes and shapes either way.
    """
    path = entry_path(output_root, step, model, revision, spec)
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            return {k: stored[k] for k in stored.files}
    value = {k: np.asarray(v) for k, v in compute().items()}
    if path is not None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:   # a file object: np.savez would append ".npz" to a name
                np.savez(fh, **value)
    return value
