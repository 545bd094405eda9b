"""Steps 6, 7, 10 on planted pairs (numpy/scipy references, closed forms) and --help of every
weight-space script."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch

import analyze_mlp_vs_attn
import collect_param_stats
import mlp_nullspace_alignment
import null_space_analysis
import plot_param_stats
from brittle.metrics import subspaces
from brittle.weight_geometry import nullspace_split_row, sample_names
from tests.weight_fixtures import FULL, RANK1, shared_planted_pair, state_dict

SCRIPTS = [collect_param_stats, plot_param_stats, analyze_mlp_vs_attn, null_space_analysis, mlp_nullspace_alignment]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return shared_planted_pair(tmp_path_factory)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda m: m.__name__)
def test_help(script, capsys):
    with pytest.raises(SystemExit) as exc:
        script.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "uv run" in out and "writes" in out.lower() and "--force" in out


def test_mlp_vs_attn_pools_norms(pair, tmp_path):
    stats = tmp_path / "cmp" / "param_stats"
    assert collect_param_stats.main(["--model-a", str(pair.a), "--model-b", str(pair.b_planted),
                                     "--outdir", str(stats)]) == 0
    assert analyze_mlp_vs_attn.main(["--param-stats", str(stats)]) == 0
    out = tmp_path / "cmp" / "mlp_attn_analysis"
    layers = pd.read_csv(out / "mlp_attn_by_block.csv").set_index("block")
    summ = pd.read_csv(out / "mlp_attn_summary.csv").iloc[0]
    pm = pd.read_csv(stats / "per_matrix.csv").set_index("name")
    blocks = pm[pm["block"].notna()]
    # oracle: pooled norms recomputed from the per-matrix rows
    for layer in (0, 1, 2):
        for group in ("attn", "mlp"):
            g = blocks[(blocks["block"] == layer) & (blocks["group"] == group)]
            rel = np.sqrt((g["dW_fro"] ** 2).sum() / (g["W_fro"] ** 2).sum())
            assert layers.loc[layer, f"{group}_dW_fro_rel"] == pytest.approx(rel)
    # planted: layer 1 changed only in the MLP, layer 2 only in attention
    assert layers.loc[1, "mlp_dW_energy_share"] == 1.0 and layers.loc[2, "mlp_dW_energy_share"] == 0.0
    assert np.isnan(layers.loc[0, "mlp_dW_energy_share"])          # nothing changed: undefined
    d1, d2 = pm.loc[RANK1, "dW_fro"], pm.loc[FULL, "dW_fro"]
    assert summ["mlp_dW_energy_share"] == pytest.approx(d1 ** 2 / (d1 ** 2 + d2 ** 2))
    g = blocks.groupby("group")
    w2 = g["W_fro"].apply(lambda s: (s ** 2).sum())
    assert summ["mlp_W_energy_share"] == pytest.approx(w2["mlp"] / w2.sum())
    assert summ["top_block_mlp"] == 1 and summ["top_block_attn"] == 2
    assert (out / "mlp_attn_ratio.png").exists() and (out / "energy_share.png").exists()


def _numpy_top_k(w: np.ndarray, k: int):
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    return u[:, :k], vt[:k].T


def test_null_space_analysis_against_scipy(pair, tmp_path):
    out = tmp_path / "ns"
    args = ["--model-a", str(pair.a), "--model-b", str(pair.b_planted), "--outdir", str(out), "--k", "4"]
    assert null_space_analysis.main([*args, "--n-matrices", "100"]) == 0
    res = pd.read_csv(out / "null_space_results.csv").set_index("name")
    a, b = state_dict(pair.a), state_dict(pair.b_planted)
    assert set(res.index) == {n for n, t in a.items() if t.ndim == 2 and ".layers." in n}  # attn + mlp only
    # closed forms: a rank-1 dW has all its energy in one direction
    assert res.loc[RANK1, "dW_top10_energy"] == pytest.approx(1.0) and res.loc[RANK1, "dW_effective_rank"] == 1
    for name, row in res.iterrows():
        d = b[name] - a[name]
        s2 = np.linalg.svd(d, compute_uv=False) ** 2
        if s2.sum() > 0:
            assert row["dW_top10_energy"] == pytest.approx(s2[:10].sum() / s2.sum(), rel=1e-4)
            assert row["dW_effective_rank"] == np.argmax(np.cumsum(s2) >= 0.99 * s2.sum()) + 1
        ua, va = _numpy_top_k(a[name], 4)
        ub, vb = _numpy_top_k(b[name], 4)
        for side, (qa, qb) in {"out": (ua, ub), "in": (va, vb)}.items():
            theta = scipy.linalg.subspace_angles(qa, qb)
            assert row[f"{side}_geodesic"] == pytest.approx(np.sqrt((theta ** 2).sum()), abs=1e-3)
            assert row[f"{side}_chordal"] == pytest.approx(np.sqrt((np.sin(theta) ** 2).sum()), abs=1e-3)
            assert row[f"{side}_mean_cos2_random"] == pytest.approx(4 / row[f"shape{0 if side == 'out' else 1}"])
        if name not in (RANK1, FULL):   # unchanged matrix: same subspaces
            assert row["out_geodesic"] < 1e-4 and row["in_geodesic"] < 1e-4
    # the full-rank change rotates the top subspaces far more than the unchanged matrices
    assert res.loc[FULL, "out_geodesic"] > 0.1
    # a seeded sample: same seed same matrices, and only the number asked for
    assert null_space_analysis.main([*args, "--n-matrices", "3", "--outdir", str(tmp_path / "s1")]) == 0
    assert null_space_analysis.main([*args, "--n-matrices", "3", "--outdir", str(tmp_path / "s2")]) == 0
    s1 = pd.read_csv(tmp_path / "s1" / "null_space_results.csv")["name"].tolist()
    assert len(s1) == 3 and s1 == pd.read_csv(tmp_path / "s2" / "null_space_results.csv")["name"].tolist()


def test_sample_names_is_seeded_and_keeps_disk_order():
    shapes = {f"model.layers.{i}.mlp.up_proj.weight": (8, 4) for i in range(20)}
    shapes["model.embed_tokens.weight"] = (10, 4)
    a, b, c = sample_names(shapes, 5, 0), sample_names(shapes, 5, 0), sample_names(shapes, 5, 1)
    assert a == b and a != c and len(a) == 5
    order = list(shapes)
    assert [order.index(n) for n in a] == sorted(order.index(n) for n in a)
    assert "model.embed_tokens.weight" not in sample_names(shapes, 100, 0)


def test_random_subspace_baseline_matches_scipy_monte_carlo():
    d, k = 40, 5
    base = subspaces.random_subspace_baseline(d, k, draws=100)
    rng = np.random.default_rng(123)          # independent draws, scipy's angles
    geo = [np.sqrt((scipy.linalg.subspace_angles(np.linalg.qr(rng.standard_normal((d, k)))[0],
                                                 np.linalg.qr(rng.standard_normal((d, k)))[0]) ** 2).sum())
           for _ in range(100)]
    assert base.geodesic == pytest.approx(np.mean(geo), rel=0.05)
    assert base.mean_cos2 == k / d
    assert base.chordal <= base.geodesic <= np.sqrt(k) * np.pi / 2


def test_principal_angles_small_and_known():
    q, _ = torch.linalg.qr(torch.randn(30, 3, dtype=torch.float64))
    assert subspaces.geodesic_distance(subspaces.principal_angles(q, q)) < 1e-7
    # rotate one basis vector by a known angle inside a fresh direction
    e = torch.eye(6, dtype=torch.float64)
    t = 0.3
    q2 = torch.stack([e[0], e[1], np.cos(t) * e[2] + np.sin(t) * e[5]], 1)
    theta = subspaces.principal_angles(e[:, :3], q2)
    assert theta.tolist() == pytest.approx([0, 0, t], abs=1e-12)
    assert subspaces.chordal_distance(theta) == pytest.approx(np.sin(t))


def _numpy_split(w: np.ndarray, d: np.ndarray, energy=0.99):
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    r = int(np.argmax(np.cumsum(s ** 2) >= energy * (s ** 2).sum()) + 1)
    tot = (d ** 2).sum()
    return r, ((u[:, :r].T @ d) ** 2).sum() / tot, ((d @ vt[:r].T) ** 2).sum() / tot


def test_nullspace_split_planted_directions():
    gen = torch.Generator().manual_seed(0)
    # W of shape 60x20 with a decaying spectrum, so the 99% rank is well below 20
    u, _ = torch.linalg.qr(torch.randn(60, 20, generator=gen))
    v, _ = torch.linalg.qr(torch.randn(20, 20, generator=gen))
    w = (u * torch.logspace(0, -3, 20)) @ v.T
    w_np = w.double().numpy()
    r, _, _ = _numpy_split(w_np, np.ones((60, 20)))
    assert 3 < r < 20
    x = torch.randn(60, 20, generator=gen)
    ur = torch.from_numpy(np.linalg.svd(w_np)[0][:, :r]).float()
    for dw, expected in [(ur @ (ur.T @ x), 1.0), (x - ur @ (ur.T @ x), 0.0)]:   # in col(W) / in null(W^T)
        row = nullspace_split_row("model.layers.0.mlp.down_proj.weight", w.clone(), w + dw)
        assert row["rank"] == r and row["out_random_col_frac"] == r / 60 and row["in_random_col_frac"] == r / 20
        assert row["out_col_frac"] == pytest.approx(expected, abs=1e-4)
        assert row["out_col_frac"] + row["out_null_frac"] == pytest.approx(1.0, abs=1e-5)
        assert row["in_col_frac"] + row["in_null_frac"] == pytest.approx(1.0, abs=1e-5)
        _, out_ref, in_ref = _numpy_split(w_np, dw.double().numpy())
        assert row["in_col_frac"] == pytest.approx(in_ref, abs=1e-4)


def test_mlp_nullspace_script_against_numpy(pair, tmp_path):
    out = tmp_path / "mn"
    assert mlp_nullspace_alignment.main(["--model-a", str(pair.a), "--model-b", str(pair.b_planted),
                                         "--outdir", str(out)]) == 0
    res = pd.read_csv(out / "mlp_nullspace.csv").set_index("name")
    a, b = state_dict(pair.a), state_dict(pair.b_planted)
    assert set(res.index) == {n for n in a if ".mlp." in n and n.endswith(".weight")}
    r, out_ref, in_ref = _numpy_split(a[RANK1], b[RANK1] - a[RANK1])
    row = res.loc[RANK1]
    assert row["rank"] == r
    assert row["out_col_frac"] == pytest.approx(out_ref, abs=1e-4)
    assert row["in_col_frac"] == pytest.approx(in_ref, abs=1e-4)
    assert res.drop(RANK1)["out_col_frac"].isna().all()          # unchanged: no dW to split
    summ = pd.read_csv(out / "mlp_nullspace_summary.csv").set_index("side")
    assert summ.loc["output", "col_frac"] == pytest.approx(out_ref, abs=1e-4)   # one changed matrix
    assert summ.loc["input", "random_col_frac"] == pytest.approx(r / a[RANK1].shape[1])


def test_steps_fail_clearly_without_matrices_to_analyse(pair, tmp_path, capsys):
    rc = mlp_nullspace_alignment.main(["--model-a", str(pair.a), "--model-b", str(pair.b_planted),
                                       "--outdir", str(tmp_path / "x"), "--energy", "1.5"])
    assert rc == 2 and capsys.readouterr().err.startswith("error:")
