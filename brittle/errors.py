"""The error a user can fix, and the finiteness check every step applies to what it reads.

A leaf module: it imports nothing from ``brittle``, so any module can raise :class:`UserError`
without pulling in the command-line layer (and without an import cycle). Scripts turn a
``UserError`` into one line, ``error: <cause>; <fix>``, and exit status 2 (``brittle.cli``).
"""

from __future__ import annotations

import math


class UserError(Exception):
    """A problem the user can fix (bad path, bad flag, mismatched models, NaN weights, missing data).

    The message says what is wrong and what to do about it, in one line.
    """


def require_finite(values, what: str, fix: str = "") -> None:
    """Raise :class:`UserError` when ``values`` holds NaN or ±Inf.

    ``values``: a torch tensor, a numpy array, a pandas object or a Python number; ``what`` names
    it in the message (e.g. "tensor gpt_neox.layers.0.mlp.dense_h_to_4h.weight of model A");
    ``fix`` is appended after a semicolon. A result computed from non-finite inputs is never a
    result, so steps check before they write.
    """
    if not _all_finite(values):
        raise UserError(f"{what} holds NaN or Inf" + (f"; {fix}" if fix else ""))


def _all_finite(values) -> bool:
    """A finite sum implies finite elements (NaN propagates, ±Inf propagates or turns to NaN), and
    a sum is one cheap reduction with no temporary the size of the input; only when the sum is not
    finite (an overflow of the sum, or a real NaN/Inf) are the elements checked one by one."""
    if isinstance(values, (int, float)):
        return math.isfinite(values)
    if hasattr(values, "isfinite") and hasattr(values, "is_floating_point"):     # torch.Tensor
        if not values.is_floating_point() or values.numel() == 0:
            return True
        return bool(values.sum().isfinite()) or bool(values.isfinite().all())
    import numpy as np

    array = np.asarray(values, dtype=np.float64)
    return bool(np.isfinite(array.sum())) or bool(np.isfinite(array).all())
