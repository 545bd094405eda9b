"""brittle.weights.WeightPairs: exact float32 tensors, shard order, subsets, clear mismatch errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import collect_param_stats
from brittle.cli import UserError
from brittle.weights import WeightPairs, read_header, stored_transposed
from tests.tiny_models import make_tiny_model, save_tiny
from tests.weight_fixtures import RANK1, shared_planted_pair, state_dict


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return shared_planted_pair(tmp_path_factory)


def test_pairs_are_the_stored_tensors_in_shard_order(pair):
    pairs = WeightPairs(pair.a, pair.b_planted)
    a, b = state_dict(pair.a), state_dict(pair.b_planted)
    seen = []
    for name, w_a, w_b in pairs:
        assert w_a.dtype == w_b.dtype == torch.float32
        np.testing.assert_array_equal(w_a.numpy(), a[name])
        np.testing.assert_array_equal(w_b.numpy(), b[name])
        seen.append(name)
    assert sorted(seen) == sorted(a) and len(pairs) == len(a)
    # A's files are visited once each, in shard order, and by byte offset inside a file
    files = sorted(pair.a.glob("*.safetensors"))
    expected = [e.name for f in files for e in read_header(f)]
    assert seen == expected


def test_matrices_only_and_select_read_a_subset(pair):
    mats = WeightPairs(pair.a, pair.b_planted, matrices_only=True)
    assert all(len(s) == 2 for s in mats.shapes.values())
    assert len(mats) == sum(t.ndim == 2 for t in state_dict(pair.a).values())
    one = WeightPairs(pair.a, pair.b_planted, select=lambda name, shape: name == RANK1)
    assert [n for n, _, _ in one] == [RANK1] and one.config["model_type"] == "gpt_neox"


def test_upcast_before_subtracting(tmp_path):
    # bf16 values of different magnitude: their bf16 difference needs more than 8 significant bits
    # and rounds; the float32 difference of the stored values is exact
    a = torch.tensor([[1.0, 256.0], [3.0, 0.1]]).to(torch.bfloat16)
    b = torch.tensor([[0.001, 1.5], [3.0, 0.1]]).to(torch.bfloat16)
    for name, t in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        save_file({"layers.0.mlp.w": t}, tmp_path / name / "model.safetensors")
    (_, w_a, w_b), = WeightPairs(tmp_path / "a", tmp_path / "b")
    exact = b.double() - a.double()
    assert torch.equal((w_b - w_a).double(), exact)
    assert not torch.equal((b - a).double(), exact)      # why: bf16 subtraction would round


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_name_mismatch_names_the_tensors(pair, tmp_path):
    b = _copy(pair.a_single, tmp_path / "b")
    f = b / "model.safetensors"
    tensors = load_file(f)
    tensors.pop(RANK1)
    save_file(tensors, f)
    with pytest.raises(UserError, match=f"only in A: {RANK1.replace('.', '[.]')}; only in B: none"):
        WeightPairs(pair.a_single, b)


def test_shape_mismatch_names_the_tensor(pair, tmp_path):
    b = _copy(pair.a_single, tmp_path / "b")
    f = b / "model.safetensors"
    tensors = load_file(f)
    tensors[RANK1] = tensors[RANK1][:-1].clone()
    save_file(tensors, f)
    with pytest.raises(UserError, match=r"has shape \[128, 32\] in .* but \[127, 32\]"):
        WeightPairs(pair.a_single, b)


def test_architecture_mismatch_is_a_one_line_cli_error(pair, tmp_path, capsys):
    other = save_tiny(make_tiny_model("gpt_neox", layers=2), tmp_path / "two_layers")
    capsys.readouterr()
    rc = collect_param_stats.main(["--model-a", str(pair.a), "--model-b", str(other),
                                   "--outdir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and "num_hidden_layers: 3 vs 2" in err
    assert err.strip().count("\n") == 0
    assert not (tmp_path / "o" / "_DONE.json").exists()


def test_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        WeightPairs(str(tmp_path / "nope"), str(tmp_path / "nope2"))


def test_gpt2_conv1d_orientation(tmp_path):
    cfg = json.loads(json.dumps({"model_type": "gpt2"}))
    assert stored_transposed(cfg, "transformer.h.0.mlp.c_fc.weight")
    assert not stored_transposed(cfg, "transformer.wte.weight")
    assert not stored_transposed({"model_type": "llama"}, "model.layers.0.mlp.up_proj.weight")
    model = make_tiny_model("gpt2")
    conv = model.transformer.h[0].mlp.c_fc
    assert type(conv).__name__ == "Conv1D" and conv.weight.shape == (32, 128)   # (in, out) as stored
