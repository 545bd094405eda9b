"""Row-blocked statistics (brittle.metrics.rowblocks, the blocked path of step 1) against whole-
matrix numpy in float64, with blocks smaller than the matrix; and the blocked, threaded step 1
against the whole-matrix, in-order one on the same checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

import collect_param_stats
from brittle.cli import UserError
from brittle.metrics import linalg, rowblocks
from brittle.param_stats import blocked_norms
from brittle.param_stats_run import collect_rows
from brittle.weights import WeightPairs
from tests.weight_fixtures import shared_planted_pair


def _pair(shape, seed, dtype=torch.bfloat16):
    gen = torch.Generator().manual_seed(seed)
    a = (0.02 * torch.randn(*shape, generator=gen)).to(dtype)
    b = (a.float() + 0.01 * torch.randn(*shape, generator=gen)).to(dtype)
    return a, b


def _svd(w: torch.Tensor) -> np.ndarray:
    return np.linalg.svd(w.double().numpy(), compute_uv=False)


@pytest.mark.parametrize("shape", [(300, 70), (70, 300)], ids=["tall", "wide"])
def test_blocked_norms_and_sigma1_match_whole_matrix_numpy(shape):
    a, b = _pair(shape, seed=0)
    rows = 16                                         # 5 or 19 blocks, the last one partial
    blocks_a, blocks_d = rowblocks.RowBlocks(a, block_rows=rows), rowblocks.RowBlocks(a, b, block_rows=rows)
    assert len(list(blocks_d)) == math.ceil(shape[0] / rows) > 1
    wa, wb = a.double().numpy(), b.double().numpy()
    dw = (b.float() - a.float()).double().numpy()     # float32 difference, as the step computes it
    norms = blocked_norms(a, b, rows)
    assert norms["fro_a"] == pytest.approx(np.linalg.norm(wa), rel=1e-6)
    assert norms["fro_b"] == pytest.approx(np.linalg.norm(wb), rel=1e-6)
    assert norms["fro_d"] == pytest.approx(np.linalg.norm(dw), rel=1e-6)
    assert rowblocks.blocked_frobenius(blocks_d) == pytest.approx(np.linalg.norm(dw), rel=1e-6)
    assert norms["zero_frac"] == pytest.approx(float((dw == 0).mean()), abs=0)
    assert 0 < norms["zero_frac"] < 1                 # bf16 rounding leaves some exact zeros: a real count
    for blocks, ref in ((blocks_a, wa), (blocks_d, dw)):
        s = _svd(torch.from_numpy(ref))
        assert rowblocks.blocked_spectral_norm(blocks) == pytest.approx(s[0], rel=5e-5)   # ARPACK's tol/2 bound
        np.testing.assert_allclose(rowblocks.blocked_gram_eigenvalues(blocks).numpy(), s ** 2, rtol=1e-4, atol=1e-9)


def test_blocked_operator_applies_the_whole_gram_matrix():
    # The operator itself, not only the eigenvalue it leads to: G·x against numpy's WᵀW·x / WWᵀ·x.
    for shape in [(130, 40), (40, 130)]:
        a, b = _pair(shape, seed=1)
        dw = (b.float() - a.float()).double().numpy()
        d, apply = rowblocks.gram_operator(rowblocks.RowBlocks(a, b, block_rows=9))
        gram = dw.T @ dw if shape[0] >= shape[1] else dw @ dw.T
        x = np.random.default_rng(0).standard_normal(d).astype(np.float32)
        got = apply(torch.from_numpy(x)).double().numpy()
        np.testing.assert_allclose(got, gram @ x, rtol=1e-4, atol=1e-6 * np.abs(gram @ x).max())


def test_blocked_formed_gram_and_exact_branches(monkeypatch):
    a, b = _pair((200, 60), seed=2)
    exact = _svd(b.float() - a.float())[0]
    monkeypatch.setattr(linalg, "FORM_GRAM_MIN_ELEMENTS", 0)      # the formed-Gram path, blockwise
    assert rowblocks.blocked_spectral_norm(rowblocks.RowBlocks(a, b, block_rows=7)) == pytest.approx(exact, rel=5e-5)
    monkeypatch.setattr(linalg, "EXACT_BELOW", 100)               # the dense eigensolve, blockwise
    assert rowblocks.blocked_spectral_norm(rowblocks.RowBlocks(a, b, block_rows=7)) == pytest.approx(exact, rel=1e-5)
    assert rowblocks.blocked_spectral_norm(rowblocks.RowBlocks(a, a, block_rows=7)) == 0.0   # ΔW = 0


def test_blocks_are_the_rows_of_the_whole_difference():
    # Invariant: upcasting and subtracting per block gives bit for bit the rows of float(B) − float(A).
    a, b = _pair((50, 33), seed=3)
    whole = b.float() - a.float()
    for rows, block in rowblocks.RowBlocks(a, b, block_rows=8):
        assert torch.equal(block, whole[rows])


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return shared_planted_pair(tmp_path_factory)


def _table(rows):
    return pd.DataFrame(rows).set_index("name").drop(columns=["block", "group"])


@pytest.mark.parametrize("empirical", [False, True], ids=["arpack", "empirical"])
def test_blocked_threaded_rows_equal_whole_in_order_rows(pair, monkeypatch, empirical):
    monkeypatch.setattr(rowblocks, "BLOCK_ELEMENTS", 200)        # several blocks per matrix
    whole = _table(collect_rows(WeightPairs(pair.a, pair.b_planted, matrices_only=True), empirical))
    blocked = _table(collect_rows(WeightPairs(pair.a, pair.b_planted, matrices_only=True), empirical,
                                  workers=2, block_above=0, budget_bytes=1))
    assert list(blocked.index) == list(whole.index)
    assert (blocked["dW_fro"] > 0).any()                          # the planted changes are there
    np.testing.assert_allclose(blocked.to_numpy(float), whole.to_numpy(float), rtol=1e-6, atol=1e-12)
    # Negative control: the comparison resolves a difference of 1e-5 in one σ₁.
    shifted = blocked.copy()
    shifted.iloc[0, shifted.columns.get_loc("W_spectral")] *= 1 + 1e-5
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(shifted.to_numpy(float), whole.to_numpy(float), rtol=1e-6, atol=1e-12)


def test_nan_in_a_blocked_matrix_is_a_user_error(pair, tmp_path, monkeypatch, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(pair.b_planted, bad)
    f = sorted(bad.glob("*.safetensors"))[0]
    tensors = load_file(f)
    name = next(n for n, t in tensors.items() if t.ndim == 2)
    tensors[name][3, 1] = float("nan")
    save_file(tensors, f, metadata={"format": "pt"})
    monkeypatch.setattr("brittle.param_stats_run.BLOCK_ABOVE", 0)     # every matrix on the blocked path
    with pytest.raises(UserError, match=name):
        collect_rows(WeightPairs(pair.a, bad, matrices_only=True))
    rc = collect_param_stats.main(["--model-a", str(pair.a), "--model-b", str(bad), "--outdir", str(tmp_path / "o"),
                                   "--workers", "2"])
    assert rc == 2 and name in capsys.readouterr().err
