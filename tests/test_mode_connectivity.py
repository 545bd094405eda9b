"""Mode connectivity (mode_connectivity_analysis.py, brittle/metrics/connectivity.py,
brittle/mode_connectivity.py): the barrier formula on planted curves, the curve's ends against HF's
own loss, a model against itself, and independently trained models against a fine-tuned copy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from brittle.metrics.connectivity import barrier, excess_over_chord, path_losses
from tests.activation_fixtures import FORGET, RETAIN, make_pair, write_texts
from tests.tiny_models import TINY_TEXTS, make_tiny_model, save_tiny

ALPHAS = np.linspace(0, 1, 11)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from brittle.tokenizer import train_word_tokenizer

    tok = train_word_tokenizer(TINY_TEXTS + FORGET + RETAIN)
    tmp = tmp_path_factory.mktemp("lmc")
    forget, retain = write_texts(tmp / "data")
    a, b = make_pair(tmp, "gpt_neox", tok, changed_layer=1)
    return tmp, tok, forget, retain, a, b


def _run(tmp, forget, retain, a, b, *extra):
    import mode_connectivity_analysis

    argv = ["--model-a", str(a), "--model-b", str(b), "--forget-file", str(forget), "--retain-file", str(retain),
            "--device", "cpu", "--n-bootstrap", "30", "--output-root", str(tmp / "out"), "--batch-size", "3", *extra]
    assert mode_connectivity_analysis.main(argv) == 0
    folder = tmp / "out" / f"{a.name}__vs__{b.name}" / "mode_connectivity"
    return pd.read_csv(folder / "connectivity_curve.csv"), pd.read_csv(folder / "connectivity_summary.csv"), folder


# ------------------------------------------------------------------ the formula (numpy oracles)

def test_barrier_of_planted_curves_against_a_hand_computation():
    rng = np.random.default_rng(0)
    l0, l1 = 2.0, 3.5
    chord = (1 - ALPHAS) * l0 + ALPHAS * l1            # written out, not the library's form
    bump = 0.7 * np.sin(np.pi * ALPHAS)                 # peak 0.7 at α = 0.5, a grid point
    noisy = chord + rng.normal(0, 0.05, len(ALPHAS))
    noisy[[0, -1]] = l0, l1
    for curve, expected in ((chord, 0.0), (chord + bump, 0.7), (noisy, max(0.0, (noisy - chord).max())),
                            (chord - bump, 0.0)):      # convex: below its chord everywhere -> 0
        assert barrier(ALPHAS, curve) == pytest.approx(expected, abs=1e-12)
    # batched: one barrier per row
    stacked = np.stack([chord, chord + bump])
    assert np.allclose(barrier(ALPHAS, stacked), [0.0, 0.7])
    assert excess_over_chord(ALPHAS, chord + bump)[5] == pytest.approx(0.7)
    with pytest.raises(ValueError):
        barrier(np.linspace(0.1, 1, 11), chord)


def test_path_losses_are_token_weighted_and_bootstrap_is_a_resampling():
    rng = np.random.default_rng(1)
    tokens = np.array([3, 10, 1, 7])
    nll = rng.uniform(0, 5, size=(11, 4)) * tokens     # per-text summed nats
    assert np.allclose(path_losses(nll, tokens), nll.sum(1) / tokens.sum())
    w = np.array([[2, 0, 1, 1], [0, 0, 4, 0]])
    batched = path_losses(nll, tokens, w)
    assert batched.shape == (2, 11)
    for row, got in zip(w, batched):   # reference: the resampled texts listed out and pooled directly
        idx = np.repeat(np.arange(4), row)
        assert np.allclose(got, nll[:, idx].sum(1) / tokens[idx].sum())


# ------------------------------------------------------------------ the step on tiny models

def test_model_against_itself_has_a_flat_curve_and_exactly_zero_barrier(world):
    tmp, _, forget, retain, a, _ = world
    curve, summary, _ = _run(tmp, forget, retain, a, a)
    for _, part in curve.groupby("split"):
        assert part["loss"].nunique() == 1             # bitwise constant: lerp(θ, θ, α) = θ
    assert (summary["barrier"] == 0).all() and (summary["barrier_ci_high"] == 0).all()
    assert (summary["l2_distance"] == 0).all() and (summary["loss_a"] == summary["loss_b"]).all()


def test_curve_ends_are_each_models_own_loss_from_hf(world):
    from transformers import AutoModelForCausalLM

    tmp, tok, forget, retain, a, b = world
    curve, summary, folder = _run(tmp, forget, retain, a, b)
    for split, texts in (("forget", FORGET), ("retain", RETAIN)):
        for end, path in (("loss_a", a), ("loss_b", b)):
            model = AutoModelForCausalLM.from_pretrained(path).eval()
            total = count = 0.0
            for text in texts:   # one unpadded text at a time: HF's mean loss times its predicted tokens
                ids = torch.tensor([tok(text)["input_ids"]])
                with torch.no_grad():
                    total += float(model(input_ids=ids, labels=ids).loss) * (ids.shape[1] - 1)
                count += ids.shape[1] - 1
            row = summary[summary.split == split].iloc[0]
            assert row[end] == pytest.approx(total / count, rel=1e-5), (split, end)
    # the distance against a direct computation over the stored weights
    sa = AutoModelForCausalLM.from_pretrained(a).state_dict()
    sb = AutoModelForCausalLM.from_pretrained(b).state_dict()
    ref = np.sqrt(sum(float((sb[k].double() - sa[k].double()).pow(2).sum()) for k in sa))
    assert summary["l2_distance"].iloc[0] == pytest.approx(ref, rel=1e-6)
    assert len(curve) == 2 * 11 and (folder / "connectivity.png").is_file()
    lo, hi = summary["barrier_ci_low"], summary["barrier_ci_high"]
    assert ((lo <= summary["barrier"]) & (summary["barrier"] <= hi)).all()


def _barrier_between(model_a, model_b, tok, texts) -> float:
    """The library path: float32 endpoints, θ(α) in place, per-text losses, the barrier."""
    from brittle.evaluation import per_text_nll
    from brittle.mode_connectivity import float32_state, set_interpolation

    state_a, state_b = float32_state(model_a), float32_state(model_b)
    work = make_tiny_model(seed=0)
    ids = [tok(t)["input_ids"] for t in texts]
    rows = []
    for alpha in ALPHAS:
        set_interpolation(work, state_a, state_b, float(alpha))
        rows.append(per_text_nll(work, ids, tok.pad_token_id or 0, batch_size=4))
    nll = np.stack([r[0] for r in rows])
    return float(barrier(ALPHAS, path_losses(nll, rows[0][1])))


def test_independent_models_have_a_barrier_a_fine_tuned_copy_has_less(tiny_tokenizer):
    """Planted: two models trained from different seeds on the same texts sit in different basins
    (Frankle et al. 2020: a positive barrier); a copy fine-tuned a few small steps stays in its
    basin (negative control: a barrier well below that)."""
    import copy

    from brittle.pretraining import train_causal_lm

    texts = TINY_TEXTS * 4
    trained = []
    for seed in (0, 1):
        model = make_tiny_model(seed=seed)
        train_causal_lm(model, tiny_tokenizer, texts, steps=300, lr=3e-3, batch_size=8, seed=seed, seq_len=32,
                        progress=False)
        trained.append(model)
    tuned = copy.deepcopy(trained[0])
    train_causal_lm(tuned, tiny_tokenizer, TINY_TEXTS[:4], steps=10, lr=1e-4, batch_size=4, seed=2, seq_len=32,
                    progress=False)
    independent = _barrier_between(trained[0], trained[1], tiny_tokenizer, TINY_TEXTS)
    nearby = _barrier_between(trained[0], tuned, tiny_tokenizer, TINY_TEXTS)
    assert independent > 0.1, independent
    assert nearby < independent / 10, (nearby, independent)


def test_bad_points_is_a_user_error(world, capsys):
    import mode_connectivity_analysis

    tmp, _, forget, retain, a, b = world
    assert mode_connectivity_analysis.main(["--model-a", str(a), "--model-b", str(b), "--forget-file", str(forget),
                                            "--retain-file", str(retain), "--n-points", "2",
                                            "--output-root", str(tmp / "bad")]) == 2
    assert "--n-points" in capsys.readouterr().err


def test_help(capsys):
    import mode_connectivity_analysis

    with pytest.raises(SystemExit) as exc:
        mode_connectivity_analysis.main(["--help"])
    assert exc.value.code == 0 and "uv run" in capsys.readouterr().out


def test_report_reader_takes_the_forget_and_retain_rows(tmp_path):
    from brittle.report_numbers import mode_connectivity

    path = tmp_path / "connectivity_summary.csv"
    pd.DataFrame([{"split": "forget", "barrier": 0.8, "l2_distance": 11.7},
                  {"split": "retain", "barrier": 0.1, "l2_distance": 11.7}]).to_csv(path, index=False)
    assert mode_connectivity(path, "x") == {"lmc_barrier_forget": 0.8, "lmc_barrier_retain": 0.1,
                                            "lmc_l2_distance": 11.7}


def test_stored_start_of_the_path_gives_the_same_curve_and_skips_its_passes(world, tmp_path):
    """Invariant: the α = 0 losses read back from brittle/model_results.py give bit-identical CSVs,
    with one point's forward tokens fewer; a rerun with the store emptied (negative control of the
    skip) computes every point again."""
    import json
    import shutil

    _, _, forget, retain, a, b = world
    first, first_summary, folder = _run(tmp_path, forget, retain, a, b)
    tokens = json.loads((folder / "run_meta.json").read_text())["forward_tokens"]
    assert len(list((tmp_path / "out" / "_model_results").rglob("mode_connectivity_start-*.npz"))) == 1
    again, again_summary, _ = _run(tmp_path, forget, retain, a, b, "--force")
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    pd.testing.assert_frame_equal(first_summary, again_summary, check_exact=True)
    stored = json.loads((folder / "run_meta.json").read_text())["forward_tokens"]
    assert stored == tokens * 10 // 11
    shutil.rmtree(tmp_path / "out" / "_model_results")
    _run(tmp_path, forget, retain, a, b, "--force")
    assert json.loads((folder / "run_meta.json").read_text())["forward_tokens"] == tokens
