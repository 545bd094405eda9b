"""Which hidden states get second moments in the activation cache (``--moment-layers``).

Every hidden state gets its per-text norms and last-token state; only the "moment layers" get the
d × d second moments (and, in a comparison, the d × d cross-moments) that covariance, CKA and the
MLP-input row-space energies need. Those are what make the cache large: at the Pythia-6.9B
layout (33 hidden states, d = 4096, 10 text groups) every layer's second moments, MLP-input
moments and cross-moments take 44 GB per split even with the second moments packed
(``brittle.capture.cache.entry_bytes``, ``pair_entry_bytes``), and their float64 sums 22 GB of
memory during a comparison's pass.

A spec is ``"all"``, a count ``"N"`` (N evenly spaced hidden states, the first and the last
included; every hidden state when the model has at most N) or an explicit list ``"i,j,..."`` of
hidden-state indices (one index is written with a trailing comma, ``"32,"``, to tell it from a
count). The MLP input of block b reads hidden state b, so block b's MLP-input moments are kept
exactly when hidden state b is a moment layer (the last hidden state, after the final norm, feeds
no block).

Default 7: at the 6.9B layout with 10 groups one model entry plus the pair entry of a comparison
then take 9.3 GB per split, under the 10 GB budget of issue #14 (8 layers would take 10.7 GB);
docs/performance.md has the table. The tiny world (6 blocks, 7 hidden states) keeps every layer.
"""

from __future__ import annotations

import argparse

from brittle.errors import UserError

DEFAULT_MOMENT_LAYERS = "7"


def parse_spec(text: str) -> str:
    """The normalised spec (``"all"``, ``"N"`` or ``"i,j,..."`` sorted, no duplicates), or an
    ``argparse.ArgumentTypeError``; for ``type=`` of the flag. Normalising makes equal specs one
    cache key."""
    text = text.strip().lower()
    if text == "all":
        return text
    try:
        if "," not in text:
            count = int(text)
            if count < 2:
                raise argparse.ArgumentTypeError(
                    f"a count of moment layers must be at least 2 (the first and the last), got {count}; "
                    "for one hidden state write it with a trailing comma, e.g. '32,'")
            return str(count)
        indices = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'all', a count or a comma-separated list of hidden-state "
                                         f"indices, got {text!r}") from None
    if not indices or indices[0] < 0:
        raise argparse.ArgumentTypeError(f"hidden-state indices are 0 or more, got {text!r}")
    return ",".join(map(str, indices)) + ("," if len(indices) == 1 else "")


def layer_indices(spec: str, n_states: int) -> list[int]:
    """The hidden-state indices (ascending) with moments, for a model with ``n_states`` = L + 1.

    A count N < n_states takes round(k·L/(N − 1)) for k = 0..N−1 (halves rounded up), so the
    spacing differs by at most one block; an explicit index past L is a UserError."""
    spec = parse_spec(spec)
    if spec == "all":
        return list(range(n_states))
    if "," in spec:
        indices = [int(part) for part in spec.split(",") if part]
        if indices[-1] >= n_states:
            raise UserError(f"--moment-layers {spec}: the model has hidden states 0..{n_states - 1}")
        return indices
    count = int(spec)
    if count >= n_states:
        return list(range(n_states))
    last = n_states - 1
    # Integer arithmetic: (2kL + N − 1) // (2(N − 1)) is round(kL/(N − 1)) with halves up, exact.
    return [(2 * k * last + count - 1) // (2 * (count - 1)) for k in range(count)]


def mlp_slots_with_moments(layers: list[int], mlp_blocks: list[int]) -> list[int]:
    """MLP slots (positions in ``mlp_blocks``) whose block reads a moment layer: block b reads
    hidden state b."""
    keep = set(layers)
    return [slot for slot, block in enumerate(mlp_blocks) if block in keep]
