"""collect_param_stats.py / plot_param_stats.py on planted pairs, every column against numpy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import collect_param_stats
import plot_param_stats
from brittle import steps
from brittle.metrics import linalg
from brittle.param_stats import EMPIRICAL_COLUMNS
from tests.weight_fixtures import FULL, RANK1, RANK1_SCALE, shared_planted_pair, state_dict


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return shared_planted_pair(tmp_path_factory)


def collect(a, b, outdir, *extra):
    rc = collect_param_stats.main(["--model-a", str(a), "--model-b", str(b), "--outdir", str(outdir), *extra])
    assert rc == 0
    return pd.read_csv(outdir / "per_matrix.csv"), pd.read_csv(outdir / "per_layer.csv")


def numpy_reference(a: dict, b: dict) -> pd.DataFrame:
    """Every per-matrix column recomputed in float64 with numpy's dense SVD."""
    rows = []
    for name, wa in a.items():
        if wa.ndim != 2:
            continue
        d = b[name] - wa
        sa, sd = np.linalg.svd(wa, compute_uv=False), np.linalg.svd(d, compute_uv=False)

        def erank(s):
            e = s ** 2
            return int(np.argmax(np.cumsum(e) >= 0.99 * e.sum()) + 1) if e.sum() > 0 else 0

        fa, fb, fd = np.linalg.norm(wa), np.linalg.norm(b[name]), np.linalg.norm(d)
        rows.append({"name": name, "dW_fro": fd, "W_fro": fa, "dW_fro_rel": fd / fa, "dW_spectral": sd[0],
                     "W_spectral": sa[0], "dW_spectral_rel": sd[0] / sa[0],
                     "dW_stable_rank": fd ** 2 / sd[0] ** 2 if sd[0] > 0 else np.nan,
                     "W_stable_rank": fa ** 2 / sa[0] ** 2, "dW_empirical_rank": erank(sd),
                     "W_empirical_rank": erank(sa), "W_cosine": float((wa * b[name]).sum() / (fa * fb)),
                     "dW_zero_frac": float((d == 0).mean())})
    return pd.DataFrame(rows).set_index("name")


@pytest.mark.parametrize("empirical", [False, True], ids=["arpack", "empirical"])
def test_every_column_matches_numpy(pair, tmp_path, empirical):
    flag = ["--empirical-rank"] if empirical else []
    pm, pl = collect(pair.a, pair.b_planted, tmp_path / "out", *flag)
    registered = {f.name: [c.name for c in f.columns if empirical or not c.optional]
                  for f in steps.step("param_stats").files}
    assert list(pm.columns) == registered["per_matrix.csv"] and list(pl.columns) == registered["per_layer.csv"]
    ref = numpy_reference(state_dict(pair.a), state_dict(pair.b_planted))
    pm = pm.set_index("name")
    assert set(pm.index) == set(ref.index)
    for col in ref.columns:
        if col in EMPIRICAL_COLUMNS and not empirical:
            continue
        np.testing.assert_allclose(pm[col], ref.loc[pm.index, col], rtol=1e-4, atol=1e-7, err_msg=col)
    # shapes and the layer/group classification
    sd = state_dict(pair.a)
    assert all(tuple(sd[n].shape) == (r.shape0, r.shape1) for n, r in pm.iterrows())
    assert pm.loc[RANK1, ["block", "group"]].tolist() == [1, "mlp"]
    assert pm.loc[FULL, ["block", "group"]].tolist() == [2, "attn"]
    assert pd.isna(pm.loc["gpt_neox.embed_in.weight", "block"])          # outside the blocks: empty
    assert pm.loc["gpt_neox.embed_in.weight", "group"] == "other"


def test_planted_changes_found_with_closed_forms(pair, tmp_path):
    pm, pl = collect(pair.a, pair.b_planted, tmp_path / "out", "--empirical-rank")
    pm = pm.set_index("name")
    changed = set(pm.index[pm["dW_fro"] > 0])
    assert changed == {RANK1, FULL}                      # exactly the planted tensors
    # rank-1 dW = c u v^T: stable rank 1, one direction, sigma_1 = c |u| |v| (closed form)
    assert pm.loc[RANK1, "dW_stable_rank"] == pytest.approx(1.0, abs=1e-4)
    assert pm.loc[RANK1, "dW_empirical_rank"] == 1
    assert pm.loc[RANK1, "dW_spectral"] == pytest.approx(
        RANK1_SCALE * np.linalg.norm(pair.rank1_u) * np.linalg.norm(pair.rank1_v), rel=1e-4)
    # full-rank Gaussian dW on 32x32: many directions (negative control for the rank-1 case)
    assert pm.loc[FULL, "dW_empirical_rank"] > 20
    assert pm.loc[FULL, "dW_stable_rank"] > 4
    # untouched matrices: zero norms, undefined stable rank, zero rank, every entry zero
    same = pm.drop([RANK1, FULL])
    assert (same[["dW_fro", "dW_spectral", "dW_fro_rel", "dW_empirical_rank"]] == 0).all().all()
    assert same["dW_stable_rank"].isna().all() and (same["dW_zero_frac"] == 1).all()
    # per_layer: root-sum-square over the group, max, count (pandas oracle on per_matrix)
    pl = pl.set_index(["block", "group"])
    grp = pm.reset_index().groupby(["block", "group"], dropna=False)
    np.testing.assert_allclose(pl["dW_fro_layer"], np.sqrt(grp["dW_fro"].apply(lambda s: (s ** 2).sum())))
    np.testing.assert_allclose(pl["W_fro_layer"], np.sqrt(grp["W_fro"].apply(lambda s: (s ** 2).sum())))
    np.testing.assert_allclose(pl["max_dW_spectral_rel"], grp["dW_spectral"].max() / grp["W_spectral"].max())
    np.testing.assert_array_equal(pl["count_mats"].to_numpy(), grp.size().to_numpy())
    assert pl.loc[(1, "mlp"), "dW_fro_layer"] == pytest.approx(pm.loc[RANK1, "dW_fro"])
    assert pl.loc[(1, "mlp"), "mean_dW_stable_rank"] == pytest.approx(pm.loc[RANK1, "dW_stable_rank"])
    assert pl.loc[(0, "attn"), "dW_fro_layer"] == 0


def test_identical_models_give_zeros_and_a_warning(pair, tmp_path, capsys):
    pm, pl = collect(pair.a, pair.b_same, tmp_path / "out")
    assert (pm[["dW_fro", "dW_spectral", "dW_fro_rel", "dW_spectral_rel"]] == 0).all().all()
    assert np.allclose(pm["W_cosine"], 1.0) and (pm["dW_zero_frac"] == 1).all()
    assert (pl["dW_fro_layer"] == 0).all()
    assert "identical" in capsys.readouterr().err


def test_relatedness_separates_an_edit_from_unrelated_weights(pair, tmp_path, capsys):
    pm_edit, _ = collect(pair.a, pair.b_planted, tmp_path / "edit")
    out_edit = capsys.readouterr().out
    pm_unrel, pl_unrel = collect(pair.a, pair.b_unrelated, tmp_path / "unrel")
    out_unrel = capsys.readouterr().out
    assert pm_edit["W_cosine"].min() > 0.9
    # independent Gaussian inits: cosine ~ N(0, 1/mn), relative distance ~ sqrt(2)
    assert pm_unrel["W_cosine"].abs().max() < 0.2
    blocks = pm_unrel[pm_unrel["block"].notna()]
    assert np.allclose(blocks["dW_fro_rel"], math.sqrt(2), atol=0.15)
    assert "modification of A" in out_edit and "unrelated" in out_unrel


def test_sharded_and_single_file_give_the_same_csv(pair, tmp_path):
    sharded, _ = collect(pair.a, pair.b_planted, tmp_path / "s", "--empirical-rank")
    single, _ = collect(pair.a_single, pair.b_planted, tmp_path / "u", "--empirical-rank")
    pd.testing.assert_frame_equal(sharded.sort_values("name").reset_index(drop=True),
                                  single.sort_values("name").reset_index(drop=True))


def test_bf16_rounding_is_reported(tmp_path, capsys):
    from tests.tiny_models import make_tiny_model, save_tiny

    a = make_tiny_model("gpt_neox", seed=3)
    save_tiny(a.to(torch.bfloat16), tmp_path / "a16")
    with torch.no_grad():
        for p in a.parameters():      # 1e-3 relative updates: mostly below bf16's resolution (2^-8)
            p.mul_(1 + 1e-3 * torch.randn_like(p))
    save_tiny(a.to(torch.bfloat16), tmp_path / "b16")
    pm, _ = collect(tmp_path / "a16", tmp_path / "b16", tmp_path / "out")
    # oracle: the stored bf16 tensors themselves
    ref = numpy_reference(state_dict(tmp_path / "a16"), state_dict(tmp_path / "b16"))
    np.testing.assert_allclose(pm.set_index("name")["dW_zero_frac"], ref["dW_zero_frac"].loc[pm["name"]])
    assert 0.6 < pm["dW_zero_frac"].mean() < 1  # DESIGN §5 measured 78 %
    assert "round to zero" in capsys.readouterr().err


def test_plots_are_written_from_the_csvs(pair, tmp_path):
    collect(pair.a, pair.b_planted, tmp_path / "cmp" / "param_stats", "--empirical-rank")
    assert plot_param_stats.main(["--param-stats", str(tmp_path / "cmp" / "param_stats")]) == 0
    out = tmp_path / "cmp" / "param_plots"
    for name in ("layer_locality", "spectral_norm", "stable_rank", "rank_comparison", "relatedness"):
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert (out / "_DONE.json").exists()


def test_plot_without_stats_is_a_one_line_error(tmp_path, capsys):
    rc = plot_param_stats.main(["--param-stats", str(tmp_path / "missing")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1


def test_spectral_norm_converges_on_flat_spectra():
    # A Gaussian matrix has a flat top spectrum (small gap): the hard case for Lanczos/power.
    gen = torch.Generator().manual_seed(0)
    for shape in [(300, 120), (120, 300), (200, 200)]:
        w = torch.randn(*shape, generator=gen)
        exact = float(np.linalg.svd(w.double().numpy(), compute_uv=False)[0])
        assert linalg.spectral_norm(w) == pytest.approx(exact, rel=5e-5)        # the tol/2 bound
        assert linalg.spectral_norm(w, exact_below=0) == pytest.approx(exact, rel=5e-5)
    assert linalg.spectral_norm(torch.zeros(50, 40)) == 0.0


def test_energy_rank_and_top_k_closed_forms():
    e = torch.tensor([50.0, 49.0, 1.0], dtype=torch.float64)   # 99 % reached exactly at k = 2
    assert linalg.energy_rank(e, 0.99) == 2
    assert linalg.energy_rank(e, 0.995) == 3
    assert linalg.energy_rank(torch.zeros(4, dtype=torch.float64)) == 0
    assert linalg.top_k_energy(e, 1) == pytest.approx(0.5)
    w = torch.randn(40, 30)
    np.testing.assert_allclose(linalg.gram_eigenvalues(w).numpy(),
                               np.linalg.svd(w.double().numpy(), compute_uv=False) ** 2, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(linalg.gram_eigenvalues(w.T).numpy(), linalg.gram_eigenvalues(w).numpy(), rtol=1e-4)


def test_spectral_norm_with_formed_gram_matches_exact(monkeypatch):
    # The explicit-Gram path normally runs only on large matrices; force it on small ones.
    monkeypatch.setattr(linalg, "FORM_GRAM_MIN_ELEMENTS", 0)
    monkeypatch.setattr(linalg, "FORM_GRAM_MAX_SIDE", 10 ** 6)
    gen = torch.Generator().manual_seed(1)
    for shape in [(400, 90), (90, 400), (150, 150)]:
        w = torch.randn(*shape, generator=gen)
        exact = float(np.linalg.svd(w.double().numpy(), compute_uv=False)[0])
        assert linalg.spectral_norm(w) == pytest.approx(exact, rel=5e-5)


def test_spectral_norm_does_not_settle_on_the_second_eigenvalue():
    # Regression: with ARPACK's default 20 Lanczos vectors, σ₁ of this Gaussian matrix (nearly
    # degenerate top of spectrum) came out 4.3e-4 low, converged to the second eigenvalue.
    w = torch.randn(768, 768, generator=torch.Generator().manual_seed(0))
    exact = float(torch.linalg.svdvals(w.double())[0])
    assert linalg.spectral_norm(w) == pytest.approx(exact, rel=5e-5)
