"""Steps 6, 7, 10 on planted pairs (numpy/scipy references, closed forms, first-order perturbation
theory) and --help of every weight-space script."""

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
from brittle.weight_geometry import null_space_row, nullspace_split_row, sample_names
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
    # ... yet it is an i.i.d. Gaussian ΔW, i.e. itself a draw from the norm-matched null: its angle
    # lies within the null's spread, while unchanged matrices have a null of exactly 0 and no ratio
    for side in ("out", "in"):
        full = res.loc[FULL]
        assert full[f"{side}_geodesic_null"] > 0.1
        assert abs(full[f"{side}_geodesic"] - full[f"{side}_geodesic_null"]) < 3 * full[f"{side}_geodesic_null_std"]
        same = res.drop([RANK1, FULL])
        assert (same[f"{side}_geodesic_null"] == 0).all() and same[f"{side}_geodesic_over_null"].isna().all()
    summ = pd.read_csv(out / "null_space_summary.csv").set_index("group")
    changed = res.loc[[RANK1, FULL]]
    assert summ.loc["all", "median_out_geodesic_over_null"] == pytest.approx(changed["out_geodesic_over_null"].median())
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


def _spectrum_matrix(m: int, n: int, seed: int = 0):
    """W = U diag(σ) Vᵀ (m >= n) with σ = logspace(1, -1, n): known singular vectors and gaps."""
    gen = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(m, m, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    s = torch.logspace(1, -1, n, dtype=torch.float64)
    return ((u[:, :n] * s) @ v.T).float(), u, s, v


def test_norm_matched_null_follows_first_order_perturbation_theory():
    """For a small Gaussian G (i.i.d. entries of variance s² = ‖G‖_F²/(mn)) the top-k left subspace
    of W + G turns by Σθ² ≈ Σ_{i<=k<j<=n} s²(σ_i² + σ_j²)/(σ_i² − σ_j²)² + (m − n) s² Σ_{i<=k} 1/σ_i²
    (the eigenvector perturbation of WWᵀ; the second term: directions outside W's column space),
    the right one by the first sum alone. The null's mean square must match; it is 0 at ‖G‖ = 0,
    grows linearly while small and saturates below the random-subspace level."""
    m, n, k, draws = 80, 30, 4, 64
    w, _, s, _ = _spectrum_matrix(m, n)
    ua, va = subspaces.top_singular_subspaces(w, k)
    sig2 = s.numpy() ** 2
    gaps = sum((sig2[i] + sig2[j]) / (sig2[i] - sig2[j]) ** 2 for i in range(k) for j in range(k, n))
    fro_w = float(torch.linalg.vector_norm(w))
    means = []
    for rel in (1e-3, 1e-2):
        null = subspaces.norm_matched_rotation(w, ua, va, rel * fro_w, draws=draws)
        var = (rel * fro_w) ** 2 / (m * n)
        out_rms = np.sqrt(null.out_mean ** 2 + null.out_std ** 2 * (draws - 1) / draws)
        in_rms = np.sqrt(null.in_mean ** 2 + null.in_std ** 2 * (draws - 1) / draws)
        assert out_rms == pytest.approx(np.sqrt(var * (gaps + (m - n) * (1 / sig2[:k]).sum())), rel=0.05)
        assert in_rms == pytest.approx(np.sqrt(var * gaps), rel=0.05)
        means.append(null.out_mean)
    assert means[1] / means[0] == pytest.approx(10, rel=0.05)            # linear while small
    assert subspaces.norm_matched_rotation(w, ua, va, 0.0) == subspaces.NormMatchedNull(0.0, 0.0, 0.0, 0.0, 8)
    big = [subspaces.norm_matched_rotation(w, ua, va, r * fro_w).out_mean for r in (0.3, 1.0, 3.0)]
    assert means[1] < big[0] < big[1] < big[2] < subspaces.random_subspace_baseline(m, k).geodesic
    again = subspaces.norm_matched_rotation(w, ua, va, 0.3 * fro_w)
    assert again.out_mean == big[0]                                          # seeded: deterministic


def test_norm_matched_null_separates_a_planted_rotation_from_a_random_update():
    """Planted: ΔW turns W's top left singular vector by t = 0.3 rad into a direction outside its
    column space (closed form: output geodesic t, input 0). It must score well above the null of
    its norm; a Gaussian ΔW of the same norm (negative control) must score near 1."""
    m, n, k, t = 200, 100, 4, 0.3
    w, u, s, v = _spectrum_matrix(m, n)
    turned = np.cos(t) * u[:, 0] + np.sin(t) * u[:, n]
    dw = (s[0] * torch.outer(turned - u[:, 0], v[:, 0])).float()
    name = "model.layers.0.mlp.up_proj.weight"
    planted = null_space_row(name, w, w + dw, k=k)
    assert planted["out_geodesic"] == pytest.approx(t, abs=1e-4) and planted["in_geodesic"] < 1e-4
    assert planted["out_geodesic_over_null"] > 2.5
    assert planted["out_geodesic"] > planted["out_geodesic_null"] + 5 * planted["out_geodesic_null_std"]
    gen = torch.Generator().manual_seed(12345)                  # not the null's seed
    g = torch.randn(m, n, generator=gen)
    control = null_space_row(name, w, w + g * (float(dw.norm()) / float(g.norm())), k=k)
    assert control["out_geodesic_null"] == planted["out_geodesic_null"]   # same norm, same null
    for side in ("out", "in"):
        assert 0.6 < control[f"{side}_geodesic_over_null"] < 1.5
    unchanged = null_space_row(name, w, w.clone(), k=k)
    assert unchanged["out_geodesic"] < 1e-5 and unchanged["out_geodesic_null"] == 0   # float32 bases: ~1e-7
    assert np.isnan(unchanged["out_geodesic_over_null"])


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


def test_nullspace_headline_is_the_informative_side():
    """A tall (up-projection) W: a ΔW planted inside W's column space (col fraction 1) and one in
    the null space of Wᵀ (0) differ by 1 on the output side, but on the input side both sit near
    the baseline r/n (every update is mostly "in the row space" when r is near n): the headline
    must be the output side. The transposed (down-projection) case must headline the input side,
    and a random ΔW (negative control) must score near 1x its baseline there."""
    gen = torch.Generator().manual_seed(1)
    m, n = 200, 50
    u, _ = torch.linalg.qr(torch.randn(m, n, generator=gen))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=gen))
    w = (u * torch.logspace(0, -1, n)) @ v.T             # slow decay: r close to n, as in trained MLPs
    r = subspaces.energy_subspace(w).r
    assert r > 0.8 * n
    x = torch.randn(m, n, generator=gen)
    ur = subspaces.energy_subspace(w).u
    inside, outside = ur @ (ur.T @ x), x - ur @ (ur.T @ x)
    rows = {label: nullspace_split_row("model.layers.0.mlp.up_proj.weight", w.clone(), w + dw)
            for label, dw in (("inside", inside), ("outside", outside), ("random", x))}
    for row in rows.values():
        assert row["side"] == "output" and row["random_col_frac"] == pytest.approx(r / m)
        assert row["col_frac"] == row["out_col_frac"] and row["null_frac"] == row["out_null_frac"]
        assert row["in_random_col_frac"] == pytest.approx(r / n) and row["in_col_frac"] > 0.7   # uninformative
    assert rows["inside"]["col_frac"] == pytest.approx(1.0, abs=1e-4)
    assert rows["outside"]["col_frac"] == pytest.approx(0.0, abs=1e-4)
    assert abs(rows["inside"]["in_col_frac"] - rows["outside"]["in_col_frac"]) < 0.05
    assert rows["random"]["col_over_random"] == pytest.approx(1.0, abs=0.2)
    assert rows["inside"]["col_over_random"] > 3
    # a down-projection: the same planted change, transposed, is read on the input side
    down = nullspace_split_row("model.layers.0.mlp.down_proj.weight", w.T.contiguous(), (w + outside).T.contiguous())
    assert down["side"] == "input" and down["random_col_frac"] == pytest.approx(r / m)
    assert down["col_frac"] == pytest.approx(0.0, abs=1e-4) and down["null_frac"] == down["in_null_frac"]


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
    m, n = a[RANK1].shape
    assert row["side"] == ("output" if m > n else "input")
    head = "out" if m > n else "in"
    assert row["col_frac"] == row[f"{head}_col_frac"] and row["random_col_frac"] == r / max(m, n)
    summ = pd.read_csv(out / "mlp_nullspace_summary.csv").set_index("side")
    assert summ.loc["output", "col_frac"] == pytest.approx(out_ref, abs=1e-4)   # one changed matrix
    assert summ.loc["input", "random_col_frac"] == pytest.approx(r / n)
    assert summ.loc["informative", "col_frac"] == pytest.approx(row["col_frac"])
    assert summ.loc["informative", "random_col_frac"] == pytest.approx(r / max(m, n))


def test_steps_fail_clearly_without_matrices_to_analyse(pair, tmp_path, capsys):
    rc = mlp_nullspace_alignment.main(["--model-a", str(pair.a), "--model-b", str(pair.b_planted),
                                       "--outdir", str(tmp_path / "x"), "--energy", "1.5"])
    assert rc == 2 and capsys.readouterr().err.startswith("error:")


def test_weight_space_steps_never_import_transformers(pair, tmp_path):
    """Steps 1, 2, 6, 7, 10 read safetensors and config.json directly: a process that runs all five
    must not have loaded transformers (its import alone costs seconds of every start)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    pair_args = ["--model-a", str(pair.a), "--model-b", str(pair.b_planted), "--output-root", str(tmp_path)]
    code = ("import sys\n"
            f"sys.path.insert(0, {str(root)!r})\n"
            "import collect_param_stats, plot_param_stats, analyze_mlp_vs_attn, null_space_analysis, mlp_nullspace_alignment\n"
            f"for m in (collect_param_stats, plot_param_stats, analyze_mlp_vs_attn, null_space_analysis, mlp_nullspace_alignment):\n"
            f"    assert m.main({pair_args!r}) == 0, m.__name__\n"
            "print('transformers' in sys.modules, 'torch' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    # torch is loaded (the steps compute with it): the check can tell a loaded module from an absent one
    assert run.stdout.strip().splitlines()[-1] == "False True"
