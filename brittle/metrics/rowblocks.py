"""Norms and σ₁ of a matrix that is never upcast whole: it is kept in its stored dtype (bf16 for
most checkpoints, 2 bytes an entry) and handed out as float32 row blocks.

At the 6.9B layout the 50k×4096 embedding and unembedding matrices are 0.83 GB each in float32;
holding W_a, W_b and ΔW in float32 put step 1 at 3.3 GB. Here a matrix is a :class:`RowBlocks`:
the stored W_a (and W_b, for ΔW = W_b − W_a), and an iterator over float32 blocks of at most
``block_elements`` entries. Every statistic accumulates over the blocks, so the float32 memory
is one block per running computation:

* ‖W‖_F² = Σ_b ‖W_b‖_F² (each block's norm in float32 as torch computes it, summed in float64);
* the Gram operator for σ₁: WᵀW·x = Σ_b W_bᵀ(W_b x) for a tall W (each block is read once per
  Lanczos step and used twice while it is in cache); for a wide W, WWᵀ·x = concat_b W_b·(Σ_b W_bᵀ x_b)
  (two passes);
* the formed Gram matrix (``--empirical-rank`` and small d): WᵀW = Σ_b W_bᵀW_b, and for a wide W
  the blocks W_i W_jᵀ of WWᵀ.

ΔW blocks are ``float(W_b) − float(W_a)`` on the same rows, bit-identical to the rows of the
whole-matrix difference; the sums differ from whole-matrix ones only in float32 summation order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch

from brittle.metrics import linalg

# Largest float32 block: 2**20 entries (4 MB) keeps the buffers small against the 0.8 GB matrices
# they replace, lets the tall Gram operator's second product find its block still in cache, and
# keeps the Python loop over blocks (about 200 per pass for a 50k×4096 matrix) cheap against the data.
BLOCK_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class RowBlocks:
    """W_a, or ΔW = W_b − W_a when ``b`` is given, as float32 row blocks.

    ``a``, ``b``: (m, n) tensors in their stored dtype (not modified). ``block_rows``: rows per
    block (default: as many as fit ``BLOCK_ELEMENTS``, at least 1).
    """

    a: torch.Tensor
    b: torch.Tensor | None = None
    block_rows: int | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.a.shape[0]), int(self.a.shape[1])

    @property
    def rows(self) -> int:
        m, n = self.shape
        return self.block_rows or max(1, BLOCK_ELEMENTS // max(n, 1))

    def __iter__(self) -> Iterator[tuple[slice, torch.Tensor]]:
        """``(row slice, float32 block)``; the block buffer is reused: copy it to keep it."""
        for rows, block_a, block_b in pair_blocks(self.a, self.b, self.rows):
            yield rows, (block_a if block_b is None else block_b.sub_(block_a))


def pair_blocks(a: torch.Tensor, b: torch.Tensor | None, rows: int
                ) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor | None]]:
    """``(row slice, float32 rows of a, float32 rows of b or None)`` over (m, n) stored tensors,
    ``rows`` rows at a time, in two reused buffers (the caller may modify them in place)."""
    m, n = int(a.shape[0]), int(a.shape[1])
    buf_a = torch.empty(min(rows, m), n, dtype=torch.float32)
    buf_b = torch.empty_like(buf_a) if b is not None else None
    for start in range(0, m, rows):
        stop = min(start + rows, m)
        block_a = buf_a[: stop - start]
        block_a.copy_(a[start:stop])            # the upcast, exactly as .float()
        block_b = None
        if buf_b is not None:
            block_b = buf_b[: stop - start]
            block_b.copy_(b[start:stop])
        yield slice(start, stop), block_a, block_b


def blocked_frobenius(blocks: RowBlocks) -> float:
    """‖W‖_F from the blocks' float32 norms (squares summed in float64)."""
    return math.sqrt(sum(float(torch.linalg.vector_norm(w)) ** 2 for _, w in blocks))


def gram_operator(blocks: RowBlocks):
    """(d, apply): the smaller Gram matrix of W as an operator x ↦ G·x, d = min(m, n)."""
    m, n = blocks.shape
    if m >= n:
        def apply(x: torch.Tensor) -> torch.Tensor:
            out = torch.zeros(n, dtype=torch.float32)
            for _, w in blocks:
                out.addmv_(w.T, w.mv(x))
            return out
        return n, apply

    def apply_wide(x: torch.Tensor) -> torch.Tensor:
        y = torch.zeros(n, dtype=torch.float32)
        for rows, w in blocks:
            y.addmv_(w.T, x[rows])
        out = torch.empty(m, dtype=torch.float32)
        for rows, w in blocks:
            torch.mv(w, y, out=out[rows])
        return out
    return m, apply_wide


def gram_matrix(blocks: RowBlocks) -> torch.Tensor:
    """The smaller Gram matrix, (d, d) float32: Σ_b W_bᵀW_b (tall) or [W_i W_jᵀ] (wide; every
    pair of blocks, so the blocks are produced once per block row)."""
    m, n = blocks.shape
    if m >= n:
        g = torch.zeros(n, n, dtype=torch.float32)
        for _, w in blocks:
            g.addmm_(w.T, w)
        return g
    g = torch.empty(m, m, dtype=torch.float32)
    for rows_i, w_i in blocks:
        w_i = w_i.clone()                 # the iterator below reuses its own buffers, not this one
        for rows_j, w_j in blocks:
            torch.mm(w_i, w_j.T, out=g[rows_i, rows_j])
    return g


def blocked_gram_eigenvalues(blocks: RowBlocks) -> torch.Tensor:
    """All σ_i², descending, float64 (as :func:`brittle.metrics.linalg.gram_eigenvalues`)."""
    return torch.linalg.eigvalsh(gram_matrix(blocks)).double().clamp_min(0.0).flip(0)


def blocked_spectral_norm(blocks: RowBlocks, tol: float = linalg.SPECTRAL_TOL, seed: int = 0) -> float:
    """σ₁(W) by the same Lanczos as :func:`brittle.metrics.linalg.spectral_norm` (same start vector,
    vectors and tolerance) on the blockwise Gram operator; the Gram matrix is formed (blockwise)
    where that function would form it. 0.0 for a zero matrix; exact for tiny d or if ARPACK fails."""
    m, n = blocks.shape
    if not any(bool(torch.any(w)) for _, w in blocks):
        return 0.0
    d = min(m, n)
    if d <= max(linalg.EXACT_BELOW, 2):
        return math.sqrt(float(blocked_gram_eigenvalues(blocks)[0]))
    if d <= linalg.FORM_GRAM_MAX_SIDE and m * n >= linalg.FORM_GRAM_MIN_ELEMENTS:
        d, apply = d, gram_matrix(blocks).mv
    else:
        d, apply = gram_operator(blocks)
    lam = linalg.top_gram_eigenvalue(apply, d, tol=tol, seed=seed)
    if lam is None:
        return math.sqrt(float(blocked_gram_eigenvalues(blocks)[0]))
    return math.sqrt(lam)
