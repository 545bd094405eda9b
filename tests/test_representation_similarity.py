"""Linear CKA from cached moments (brittle/metrics/cka.py, the pair cross-moments of
brittle/capture/, representation_similarity_analysis.py): against a direct numpy computation from
HF output_hidden_states, its invariances, a random negative control, the permutation null, and the
size of the pair cache entry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from brittle.metrics.cka import grouped_linear_cka
from tests.activation_fixtures import FORGET, RETAIN, make_pair, write_texts
from tests.tiny_models import TINY_TEXTS


def direct_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. eq. 5 on per-token rows, written from the definition."""
    x, y = x - x.mean(0), y - y.mean(0)
    return float(np.linalg.norm(x.T @ y) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def grouped_moments(x: np.ndarray, y: np.ndarray, groups: int):
    """Per contiguous group: count, Σx, Σy, Σxxᵀ, Σyyᵀ, Σxyᵀ (the cache's layout)."""
    parts = np.array_split(np.arange(len(x)), groups)
    return (np.array([len(p) for p in parts], float), np.stack([x[p].sum(0) for p in parts]),
            np.stack([y[p].sum(0) for p in parts]), np.stack([x[p].T @ x[p] for p in parts]),
            np.stack([y[p].T @ y[p] for p in parts]), np.stack([x[p].T @ y[p] for p in parts]))


# ------------------------------------------------------------------ the metric (numpy oracles)

def test_grouped_cka_equals_the_definition_and_resampled_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) + 5.0      # an offset: centring matters
    y = np.tanh(x @ rng.normal(size=(6, 4))) + 0.3 * rng.normal(size=(400, 4))
    mom = grouped_moments(x, y, 5)
    assert grouped_linear_cka(*mom)["cka"] == pytest.approx(direct_cka(x, y), rel=1e-10)
    w = np.array([[2, 0, 1, 1, 1], [0, 5, 0, 0, 0], [1, 1, 1, 1, 1]], float)
    got = grouped_linear_cka(*mom, weights=w)["cka"]
    parts = np.array_split(np.arange(400), 5)
    for row, value in zip(w, got):   # reference: the resampled groups' rows listed out
        idx = np.concatenate([parts[g] for g in range(5) for _ in range(int(row[g]))])
        assert value == pytest.approx(direct_cka(x[idx], y[idx]), rel=1e-9)


def test_cka_is_invariant_to_rotation_and_isotropic_scaling():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8)) * np.linspace(0.2, 3, 8) + 1.0
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    for y in (x @ q, 7.5 * x @ q, -0.01 * x):
        assert grouped_linear_cka(*grouped_moments(x, y, 4))["cka"] == pytest.approx(1.0, abs=1e-10)
    # not invariant to an anisotropic rescaling (negative control of the invariance)
    stretched = x * np.array([1.0] * 7 + [10.0])   # the widest direction made 10x wider
    assert grouped_linear_cka(*grouped_moments(x, stretched, 4))["cka"] < 0.9


def test_random_representation_gives_cka_near_zero_and_near_the_null():
    rng = np.random.default_rng(2)
    n, d = 20000, 8
    x, y = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    out = grouped_linear_cka(*grouped_moments(x, y, 10))
    # E[CKA] of independent isotropic rows is d·d/(N·d) = d/N = 4e-4; the null predicts the same.
    assert out["cka"] < 3 * d / n and out["null"] == pytest.approx(d / n, rel=0.05)
    planted = grouped_linear_cka(*grouped_moments(x, x + y, 10))["cka"]   # half shared: ≈ 0.5
    assert planted == pytest.approx(0.5, abs=0.03)


def test_null_is_the_mean_over_random_token_pairings():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 3)) * [3.0, 1.0, 0.2]
    y = x @ rng.normal(size=(3, 3)) + rng.normal(size=(60, 3))
    null = grouped_linear_cka(*grouped_moments(x, y, 3))["null"]
    monte_carlo = np.mean([direct_cka(x, y[rng.permutation(60)]) for _ in range(20000)])
    assert null == pytest.approx(monte_carlo, rel=0.02)


# ------------------------------------------------------------------ the cache and the step

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from brittle.tokenizer import train_word_tokenizer

    tok = train_word_tokenizer(TINY_TEXTS + FORGET + RETAIN)
    tmp = tmp_path_factory.mktemp("cka")
    forget, retain = write_texts(tmp / "data")
    a, b = make_pair(tmp, "gpt_neox", tok, changed_layer=1)
    return tmp, tok, forget, retain, a, b


def _run(tmp, forget, retain, a, b):
    import representation_similarity_analysis

    argv = ["--model-a", str(a), "--model-b", str(b), "--forget-file", str(forget), "--retain-file", str(retain),
            "--device", "cpu", "--n-bootstrap", "30", "--output-root", str(tmp / "out"), "--moment-groups", "3",
            "--batch-size", "4"]
    assert representation_similarity_analysis.main(argv) == 0
    folder = tmp / "out" / f"{a.name}__vs__{b.name}" / "representation_similarity"
    return (pd.read_csv(folder / "representation_similarity.csv"),
            pd.read_csv(folder / "representation_similarity_summary.csv"), folder)


def test_step_matches_numpy_on_hf_hidden_states_of_unpadded_texts(world):
    from transformers import AutoModelForCausalLM

    tmp, tok, forget, retain, a, b = world
    table, summary, folder = _run(tmp, forget, retain, a, b)
    models = [AutoModelForCausalLM.from_pretrained(p).eval() for p in (a, b)]
    for split, texts in (("forget", FORGET), ("retain", RETAIN)):
        states = [[], []]
        for text in texts:   # one text at a time: no padding anywhere in the reference
            ids = torch.tensor([tok(text)["input_ids"]])
            for m, model in enumerate(models):
                with torch.no_grad():
                    states[m].append(torch.stack(model(input_ids=ids, output_hidden_states=True).hidden_states)[:, 0])
        ha, hb = (torch.cat(s, 1).double().numpy() for s in states)   # (L+1, tokens, d)
        rows = table[table.split == split].sort_values("hidden_state")
        ref = [direct_cka(ha[i], hb[i]) for i in range(ha.shape[0])]
        # second moments are stored in float32: agreement to ~1e-5, not 1e-12
        assert np.allclose(rows["cka"], ref, atol=2e-5), (split, rows["cka"].tolist(), ref)
        assert (rows["n_tokens"] == ha.shape[1]).all()
    # planted: B differs from A from block 1 on, so hidden states 0 and 1 are identical (CKA 1)
    assert np.allclose(table.loc[table.hidden_state <= 1, "cka"], 1.0, atol=1e-5)
    assert (table.loc[table.hidden_state >= 2, "cka"] < 0.999).all()
    assert ((table.cka_ci_low <= table.cka + 1e-9) & (table.cka <= table.cka_ci_high + 1e-9)).all()
    assert (table.cka_null < table.cka).all()
    forget_rows = table[table.split == "forget"]
    assert summary.set_index("split").loc["forget", "min_cka"] == pytest.approx(forget_rows.cka.min())
    assert (folder / "representation_similarity.png").is_file()


def test_model_against_itself_is_one_everywhere(world):
    tmp, _, forget, retain, a, _ = world
    table, summary, _ = _run(tmp, forget, retain, a, a)
    assert np.allclose(table.cka, 1.0, atol=1e-5) and np.allclose(summary.min_cka, 1.0, atol=1e-5)


def test_pair_entry_size_formula_matches_the_files(world):
    """brittle.capture.cache.pair_entry_bytes (the formula docs/performance.md uses for the 6.9B
    layout) against the files of a real pair entry: the arrays plus 2-3 KB of headers per file."""
    from transformers import AutoConfig

    from brittle.capture import CaptureConfig, ModelSpec, ensure_captures
    from brittle.capture.cache import pair_entry_bytes

    tmp, _, forget, retain, a, b = world
    splits = {"forget": FORGET, "retain": RETAIN}
    groups = 3
    caps = ensure_captures([ModelSpec(str(a)), ModelSpec(str(b))], splits,
                           CaptureConfig(device="cpu", batch_size=4, moment_groups=groups), tmp / "cache-size",
                           pair=True, progress=False)
    config = AutoConfig.from_pretrained(a)
    for split, texts in splits.items():
        files = [f for f in caps.pair[split].path.iterdir() if f.suffix == ".pt"]
        real = sum(f.stat().st_size for f in files)
        expected = pair_entry_bytes(len(texts), config.num_hidden_layers + 1, config.hidden_size, groups)
        assert len(files) == 1 + groups
        assert expected <= real <= expected + 4096 * len(files), (split, real, expected)


def test_help(capsys):
    import representation_similarity_analysis

    with pytest.raises(SystemExit) as exc:
        representation_similarity_analysis.main(["--help"])
    assert exc.value.code == 0 and "uv run" in capsys.readouterr().out


def test_report_reader_takes_the_forget_and_retain_rows(tmp_path):
    from brittle.report_numbers import representation_similarity

    path = tmp_path / "representation_similarity_summary.csv"
    pd.DataFrame([{"split": "forget", "min_cka": 0.42, "max_cka_null": 0.01},
                  {"split": "retain", "min_cka": 0.71, "max_cka_null": 0.02}]).to_csv(path, index=False)
    assert representation_similarity(path, "x") == {"cka_min_forget": 0.42, "cka_null_forget": 0.01,
                                                    "cka_min_retain": 0.71}
