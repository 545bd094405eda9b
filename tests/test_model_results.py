"""brittle/model_results.py: a model's stored results come back bit for bit, and any change to what
keys them (weights, spec, step) computes them again."""

from __future__ import annotations

import os

import numpy as np

from brittle import model_results


def _model_folder(tmp_path, name="m"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    return folder


def _counting(value):
    calls = []

    def compute():
        calls.append(1)
        return value
    return compute, calls


def test_second_call_returns_the_stored_arrays_without_computing(tmp_path):
    model = _model_folder(tmp_path)
    value = {"states": np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32),
             "auc": np.float64(0.25)}
    compute, calls = _counting(value)
    first = model_results.cached(tmp_path / "out", "step", str(model), None, {"texts": "abc"}, compute)
    second = model_results.cached(tmp_path / "out", "step", str(model), None, {"texts": "abc"}, compute)
    assert len(calls) == 1
    for got in (first, second):
        assert got.keys() == value.keys()
        for k in value:
            assert got[k].dtype == np.asarray(value[k]).dtype and np.array_equal(got[k], value[k])


def test_changed_weights_spec_step_or_library_compute_again(tmp_path, monkeypatch):
    model = _model_folder(tmp_path)
    compute, calls = _counting({"x": np.arange(3)})
    args = (tmp_path / "out", "step", str(model), None)
    model_results.cached(*args, {"seed": 0}, compute)
    model_results.cached(*args, {"seed": 1}, compute)                       # another spec
    model_results.cached(tmp_path / "out", "other", str(model), None, {"seed": 0}, compute)  # another step
    assert len(calls) == 3
    stat = (model / "model.safetensors").stat()
    os.utime(model / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # retrained in place
    model_results.cached(*args, {"seed": 0}, compute)
    assert len(calls) == 4
    model_results.cached(*args, {"seed": 0}, compute)                       # negative control: nothing changed
    assert len(calls) == 4
    versions = model_results.library_versions()
    monkeypatch.setattr(model_results, "library_versions", lambda: {**versions, "torch": "0.0"})  # upgraded
    model_results.cached(*args, {"seed": 0}, compute)
    assert len(calls) == 5


def test_a_model_without_a_local_folder_is_never_stored(tmp_path):
    compute, calls = _counting({"x": np.zeros(2)})
    for _ in range(2):
        model_results.cached(tmp_path / "out", "step", "org/hub-model", None, {}, compute)
    assert len(calls) == 2 and not (tmp_path / "out").exists()
