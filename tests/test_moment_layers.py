"""Moment layers (``--moment-layers``) and packed second moments: the cache's disk budget.

Oracles: closed forms for the layer choice and the packing, the full capture (every layer) for
what a subset keeps, the same step run with every layer for the rows a subset writes, and the
token-by-token projection pass for the MLP-input rows a subset takes from it instead of the cache.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
import torch

from brittle.capture import CaptureConfig, ModelSpec, ensure_captures
from brittle.errors import UserError
from brittle.moment_layers import layer_indices, mlp_slots_with_moments, parse_spec
from brittle.moments import pack_symmetric, unpack_symmetric
from tests.activation_fixtures import FORGET, RETAIN, make_pair, write_texts
from tests.tiny_models import TINY_TEXTS


def test_counts_resolve_to_evenly_spaced_hidden_states_with_first_and_last():
    assert layer_indices("7", 33) == [0, 5, 11, 16, 21, 27, 32]       # Pythia-6.9B: 32 blocks
    assert layer_indices("7", 25) == [0, 4, 8, 12, 16, 20, 24]        # Pythia-410M
    assert layer_indices("7", 17) == [0, 3, 5, 8, 11, 13, 16]         # Llama-3.2-1B: 16/6 = 2.67 per step
    assert layer_indices("7", 7) == layer_indices("all", 7) == list(range(7))   # the tiny world: every layer
    assert layer_indices("9", 4) == [0, 1, 2, 3]
    for count in range(2, 11):
        for n in range(2, 41):
            got = layer_indices(str(count), n)
            gaps = np.diff(got)
            assert len(got) == min(count, n) and got[0] == 0 and got[-1] == n - 1
            assert (gaps > 0).all() and gaps.max() - gaps.min() <= 1, (count, n, got)


def test_specs_normalise_and_bad_ones_are_refused():
    assert parse_spec(" ALL ") == "all" and parse_spec("07") == "7"
    assert parse_spec("3,1,1") == "1,3" and parse_spec("32,") == "32,"
    assert layer_indices("3,1", 4) == [1, 3] and layer_indices("2,", 4) == [2]
    for bad in ("1", "0", "x", "-1,2", ",", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_spec(bad)
    with pytest.raises(UserError, match="hidden states 0..3"):
        layer_indices("1,4", 4)
    # block b's MLP reads hidden state b; the last hidden state (after the final norm) feeds no block
    assert mlp_slots_with_moments([0, 2, 3], [0, 1, 2]) == [0, 2]


def test_packing_keeps_the_upper_triangle_and_round_trips_symmetric_matrices():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(3, 40, 5)))
    sym = x.transpose(1, 2) @ x                                  # (3, 5, 5), symmetric
    sym = (sym + sym.transpose(1, 2)) / 2
    packed = pack_symmetric(sym)
    assert packed.shape == (3, 15)
    assert torch.equal(unpack_symmetric(packed, 5), sym)
    assert torch.equal(pack_symmetric(unpack_symmetric(packed, 5)), packed)
    # which triangle: an asymmetric matrix comes back as its upper triangle mirrored (closed form)
    a = torch.tensor(rng.normal(size=(4, 4)))
    assert torch.equal(unpack_symmetric(pack_symmetric(a), 4), torch.triu(a) + torch.triu(a, 1).T)
    with pytest.raises(ValueError):
        unpack_symmetric(packed, 4)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from brittle.tokenizer import train_word_tokenizer

    tok = train_word_tokenizer(TINY_TEXTS + FORGET + RETAIN)
    tmp = tmp_path_factory.mktemp("moment-layers")
    forget, retain = write_texts(tmp / "data")
    a, b = make_pair(tmp, "gpt_neox", tok, changed_layer=1)      # 3 blocks: hidden states 0..3
    return tmp, tok, forget, retain, a, b


def _captures(tmp, a, b, layers: str, name: str):
    cfg = CaptureConfig(device="cpu", batch_size=4, moment_groups=3, moment_layers=parse_spec(layers))
    return ensure_captures([ModelSpec(str(a)), ModelSpec(str(b))], {"forget": FORGET, "retain": RETAIN}, cfg,
                           tmp / name, pair=True, progress=False)


def test_a_subset_keeps_exactly_the_full_captures_moments_at_its_layers(world):
    tmp, _, _, _, a, b = world
    full, part = _captures(tmp, a, b, "all", "cache-all"), _captures(tmp, a, b, "1,3", "cache-13")
    for split in ("forget", "retain"):
        for i in range(2):
            whole, some = full.models[i][split], part.models[i][split]
            assert some.moment_index("hidden") == [1, 3] and some.moment_index("mlp") == [1]
            assert whole.moment_index("hidden") == [0, 1, 2, 3]
            for kind, index in (("hidden", 1), ("hidden", 3), ("mlp", 1)):
                want, got = whole.moments(kind, index), some.moments(kind, index)
                for key in ("count", "sum", "sq"):
                    assert torch.equal(got[key], want[key]), (kind, index, key)
            stacked = some.moments("hidden")
            assert stacked["index"] == [1, 3] and torch.equal(stacked["sq"][:, 1], whole.moments("hidden", 3)["sq"])
            # every hidden state keeps its per-text numbers
            np.testing.assert_array_equal(some.norm_sums[1], whole.norm_sums[1])
            np.testing.assert_array_equal(some.last_token, whole.last_token)
            with pytest.raises(UserError, match="hidden state 2 has no moments"):
                some.moments("hidden", 2)
            with pytest.raises(UserError, match="no moments"):
                some.moments("mlp", 0)
        assert torch.equal(part.pair[split].cross_moments(3)["cross"], full.pair[split].cross_moments(3)["cross"])
        assert part.pair[split].cross_moments()["cross"].shape[1] == 2
        with pytest.raises(UserError, match="no cross-moments"):
            part.pair[split].cross_moments(0)
    assert part.forward_tokens > 0       # a different key: its own entries, not the full capture's


@pytest.mark.parametrize("layers,hidden,mlp", [("all", 4, 3), ("0,2", 2, 2), ("3,", 1, 0)])
def test_size_formulas_match_the_files_for_any_moment_layers(world, layers, hidden, mlp):
    """entry_bytes and pair_entry_bytes (docs/performance.md's table) with K moment layers and K_m
    MLP inputs against the files: the arrays plus 2-3 KB of headers per file."""
    from brittle.capture.cache import entry_bytes, pair_entry_bytes

    tmp, _, _, _, a, b = world
    caps = _captures(tmp, a, b, layers, f"cache-size-{layers}")
    n_states, dim, groups = 4, 32, 3
    for split, texts in (("forget", FORGET), ("retain", RETAIN)):
        for folder, expected in ((caps.models[0][split].path, entry_bytes(len(texts), n_states, dim, 3, dim, groups,
                                                                          hidden, mlp)),
                                 (caps.pair[split].path, pair_entry_bytes(len(texts), n_states, dim, groups, hidden))):
            files = [f for f in folder.iterdir() if f.suffix == ".pt"]
            real = sum(f.stat().st_size for f in files)
            assert len(files) == 1 + groups
            assert expected <= real <= expected + 4096 * len(files), (folder.name, real, expected)


def test_budget_of_issue_14_at_the_6_9b_layout():
    """The defaults (10 groups, 7 moment layers, 500 texts) put one model entry plus a comparison's
    pair entry under 10 GB per split at Pythia-6.9B's layout; every layer would not, and neither would 8."""
    from brittle.capture.cache import entry_bytes, pair_entry_bytes
    from brittle.moment_layers import DEFAULT_MOMENT_LAYERS

    def total(spec):
        layers = layer_indices(spec, 33)
        mlp = len(mlp_slots_with_moments(layers, list(range(32))))
        return (entry_bytes(500, 33, 4096, 32, 4096, 10, len(layers), mlp)
                + pair_entry_bytes(500, 33, 4096, 10, len(layers)))

    assert total(DEFAULT_MOMENT_LAYERS) <= 10e9 < total("8") < total("all")


def _step(script, tmp, forget, retain, a, b, *extra):
    import importlib

    argv = ["--model-a", str(a), "--model-b", str(b), "--forget-file", str(forget), "--retain-file", str(retain),
            "--device", "cpu", "--n-bootstrap", "30", "--moment-groups", "3", "--batch-size", "4",
            "--cache-dir", str(tmp / "step-cache"), *extra]
    assert importlib.import_module(script).main(argv) == 0


def test_covariance_and_cka_write_the_full_runs_rows_at_the_moment_layers_and_name_the_rest(world, capsys):
    tmp, _, forget, retain, a, b = world
    files = {"activation_covariance_analysis": ("activation_covariance",
                                                ["covariance_metrics.csv", "covariance_comparison.csv",
                                                 "eigenspectra.csv"]),
             "representation_similarity_analysis": ("representation_similarity", ["representation_similarity.csv"])}
    for script, (step, names) in files.items():
        tables = {}
        for layers in ("all", "0,2"):
            root = tmp / f"out-{layers}"
            _step(script, tmp, forget, retain, a, b, "--moment-layers", layers, "--output-root", str(root))
            folder = root / f"{a.name}__vs__{b.name}" / step
            tables[layers] = {n: pd.read_csv(folder / n) for n in names}
            meta = json.loads((folder / "run_meta.json").read_text())
            note = capsys.readouterr().out
            if layers == "all":
                assert "hidden_states_without_moments" not in meta and "no second moments" not in note
            else:
                assert meta["hidden_states_without_moments"] == [1, 3]
                assert "note: hidden states 1,3 have no" in note
        for name in names:
            full, part = tables["all"][name], tables["0,2"][name]
            assert sorted(part.hidden_state.unique()) == [0, 2], (script, name)
            keep = full[full.hidden_state.isin([0, 2])].reset_index(drop=True)
            pd.testing.assert_frame_equal(part.reset_index(drop=True), keep)


def test_row_space_takes_the_input_matrices_of_blocks_without_moments_from_the_projection_pass(world):
    """B changes block 1's MLP input matrices; with moment layers 0,2 block 1 has no cached MLP-input
    moments, so its energies come from the projection pass: the same fractions as the cache route
    (every layer), to float32 rounding, and no row lost."""
    from tests.test_activation_steps import _planted_row_space_pair

    tmp, tok, forget, retain, _, _ = world
    a, b = _planted_row_space_pair(tmp, tok, "gpt_neox", forget, retain, "forget")
    tables = {}
    for layers in ("all", "0,2"):
        root = tmp / f"rs-{layers}"
        _step("row_space_projection_analysis", tmp, forget, retain, a, b, "--top-k", "1",
              "--moment-layers", layers, "--output-root", str(root))
        tables[layers] = pd.read_csv(root / f"{a.name}__vs__{b.name}" / "row_space_projection"
                                     / "row_space_projection.csv")
    full, part = tables["all"], tables["0,2"]
    assert len(part) == len(full)
    hit = (full.block == 1) & (full.mlp_role == "input")
    assert hit.sum() == 2 and (full.loc[hit, "k"] == 1).all()      # dense_h_to_4h, as A and as B
    fractions = [c for c in full.columns if c.startswith(("fraction_", "selectivity_"))]
    same = [c for c in full.columns if c not in fractions]
    pd.testing.assert_frame_equal(part[same], full[same])
    np.testing.assert_allclose(part.loc[hit, fractions], full.loc[hit, fractions], rtol=1e-4)
    assert np.isfinite(part.loc[hit, fractions].to_numpy(float)).all()
    pd.testing.assert_frame_equal(part.loc[~hit, fractions], full.loc[~hit, fractions])
