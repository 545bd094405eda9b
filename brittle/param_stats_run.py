"""Step 1's per-matrix work over a streamed checkpoint pair: which matrices are upcast whole and
which in row blocks, and where the σ₁ solves run.

* A matrix with more than ``block_above`` entries stays in its stored dtype and is upcast in row
  blocks (:mod:`brittle.metrics.rowblocks`): at the 6.9B layout that is the 50k×4096 embedding and
  unembedding, 1.65 GB for W_a and ΔW in float32, 0.83 GB as the two bf16 tensors.
* With ``workers`` > 1 the two eigen-solves of a pair (W_a and ΔW) run on worker threads, one
  torch thread each, while the main thread reads and upcasts the next pairs. On two cores this
  replaces torch's two OpenMP threads per matrix-vector product, whose barrier every Lanczos step
  waits at (a step costs a scheduler time slice whenever another process holds one of the cores),
  by two independent solves that never wait for each other. Reading ahead stops when the pairs in
  flight would exceed ``budget_bytes``; a pair larger than the budget runs alone.
* ``workers`` = 1 runs everything in order on the calling thread with torch's own threading.

Two ARPACK solves at once are safe: scipy 1.15+ (the lock file has 1.17) keeps ARPACK's state in
each solver object, and older scipy versions, whose Fortran ARPACK kept state in SAVE variables,
serialise ``eigsh`` calls behind a lock (correct, only not concurrent).
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch

from brittle.metrics import linalg, rowblocks
from brittle.param_stats import assemble_row, blocked_norms, norms_in_place, spectrum
from brittle.weights import WeightPairs, stored_itemsize, stored_transposed

# Matrices above 2**26 entries are processed in row blocks: the largest matrix of the 6.9B layout
# that is not an (un)embedding, 4096×16384 (0.27 GB in float32), is exactly 2**26 and stays whole;
# the (un)embeddings of 1.4B (50304×2048) and 6.9B (50432×4096) are blocked.
BLOCK_ABOVE = 1 << 26
# Bytes of pairs in flight (float32 copies plus their stored read buffers) before reading ahead
# waits: a 6.9B MLP pair (0.8 GB counted this way) or a 410M embedding pair (0.62 GB) runs alone,
# smaller ones several at a time, so reading ahead adds at most 0.5 GB to the peak.
BUDGET_BYTES = 1 << 29


def pair_bytes(shape: tuple[int, ...], itemsize: int, blocked: bool) -> int:
    """Memory a pair holds while in flight: both stored tensors, plus float32 W_a and ΔW unless
    it is blocked (then two float32 block buffers per solve, BLOCK_ELEMENTS each, for two solves)."""
    numel = math.prod(shape)
    stored = 2 * numel * itemsize
    return stored + (4 * 2 * 4 * rowblocks.BLOCK_ELEMENTS if blocked else 2 * numel * 4)


def collect_rows(pairs: WeightPairs, empirical_rank: bool = False, tol: float = linalg.SPECTRAL_TOL,
                 workers: int = 1, block_above: int | None = None, budget_bytes: int | None = None,
                 on_row: Callable[[], None] | None = None) -> list[dict]:
    """One :func:`brittle.param_stats.assemble_row` row per pair of ``pairs`` (2-D tensors), in
    order. ``on_row`` is called after each finished row (progress bars). ``block_above`` and
    ``budget_bytes`` default to BLOCK_ABOVE and BUDGET_BYTES (read at call time)."""
    block_above = BLOCK_ABOVE if block_above is None else block_above
    budget_bytes = BUDGET_BYTES if budget_bytes is None else budget_bytes
    shapes = list(pairs.shapes.values())
    itemsize = max(stored_itemsize(code) for code in set().union(*pairs.stored_dtypes))

    def prepare(name: str, raw_a: torch.Tensor, raw_b: torch.Tensor):
        """(shape, norms, operand for W_a, operand for ΔW); the stored tensors are released."""
        if stored_transposed(pairs.config, name):  # GPT-2 Conv1D: shape0 is always out_features
            raw_a, raw_b = raw_a.T, raw_b.T
        shape = tuple(raw_a.shape)
        if raw_a.numel() > block_above:
            check = {"a": (name, pairs.model_a), "b": (name, pairs.model_b)}
            blocks_a = rowblocks.RowBlocks(raw_a)
            norms = blocked_norms(raw_a, raw_b, blocks_a.rows,
                                  check=lambda block, which: pairs.check_finite(block, *check[which]))
            return shape, norms, blocks_a, rowblocks.RowBlocks(raw_a, raw_b)
        w_a, w_b = pairs.upcast(name, raw_a, raw_b)
        del raw_a, raw_b
        return shape, norms_in_place(w_a, w_b), w_a, w_b

    rows: list[dict] = []
    if workers <= 1:
        for name, raw_a, raw_b in pairs.stored():
            shape, norms, op_a, op_d = prepare(name, raw_a, raw_b)
            del raw_a, raw_b
            rows.append(assemble_row(name, shape, norms, spectrum(op_a, empirical_rank, tol),
                                     spectrum(op_d, empirical_rank, tol)))
            del op_a, op_d
            if on_row:
                on_row()
        return rows

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pending: deque = deque()   # (name, shape, norms, future W_a, future ΔW, bytes)
    in_flight = 0

    def finish_oldest() -> None:
        nonlocal in_flight
        name, shape, norms, fut_a, fut_d, nbytes = pending.popleft()
        rows.append(assemble_row(name, shape, norms, fut_a.result(), fut_d.result()))
        in_flight -= nbytes
        if on_row:
            on_row()

    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="param_stats") as pool:
            for i, (name, raw_a, raw_b) in enumerate(pairs.stored()):
                shape, norms, op_a, op_d = prepare(name, raw_a, raw_b)
                del raw_a, raw_b
                nbytes = pair_bytes(shapes[i], itemsize, len(shapes[i]) == 2 and math.prod(shapes[i]) > block_above)
                pending.append((name, shape, norms, pool.submit(spectrum, op_a, empirical_rank, tol),
                                pool.submit(spectrum, op_d, empirical_rank, tol), nbytes))
                in_flight += nbytes
                del op_a, op_d   # the futures hold them until their solves are done
                if i + 1 < len(shapes):
                    following = pair_bytes(shapes[i + 1], itemsize, math.prod(shapes[i + 1]) > block_above)
                    while pending and in_flight + following > budget_bytes:
                        finish_oldest()
            while pending:
                finish_oldest()
    finally:
        torch.set_num_threads(threads)
    return rows
